//! The writer thread: owns the writing connection, stores each event and
//! projects it into the tables `runner history` and `runner show` read.

use super::{ConnectionAudit, Pruned, Recovery, Shared, StoreError};
use chrono::{DateTime, Utc};
use protocol::{Event, EventKind, format_time};
use rusqlite::{Connection, Transaction, params};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, mpsc};

mod project;
mod prune;
mod recover;

use project::project;

/// What the handles ask of the writer thread.
pub enum Command {
    Events(Vec<Arc<Event>>),
    Recover {
        reason: String,
        reply: mpsc::Sender<Result<Recovery, StoreError>>,
    },
    Audit(ConnectionAudit, DateTime<Utc>),
    Prune {
        now: DateTime<Utc>,
        reply: mpsc::Sender<Result<Pruned, StoreError>>,
    },
    Flush(mpsc::Sender<()>),
    /// Writes what is pending, then the WAL into the file (see
    /// [`super::Store::checkpoint`]).
    Checkpoint(mpsc::Sender<()>),
}

/// At most this many events go into one transaction.
const MAX_BATCH: usize = 4096;

pub struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    pid: u32,
    /// Bytes of event JSON written since the size budget was last checked.
    since_budget_check: u64,
    /// Whether it said that the newest run alone is over the budget.
    warned_over_budget: bool,
    /// At most this many events go into one transaction: fewer under a
    /// small size budget, so one transaction never floods the WAL.
    max_batch: usize,
}

impl Writer {
    pub fn new(conn: Connection, shared: Arc<Shared>) -> Self {
        // A chunk of terminal output is at most 10 KB.
        let max_batch = shared.retention.max_bytes.map_or(MAX_BATCH, |max| {
            usize::try_from(max / 32 / 10_240)
                .unwrap_or(MAX_BATCH)
                .clamp(16, MAX_BATCH)
        });
        Self {
            max_batch,
            conn,
            shared,
            pid: std::process::id(),
            since_budget_check: 0,
            warned_over_budget: false,
        }
    }

    /// Handles commands until every handle is gone.
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        let mut pending: Vec<Arc<Event>> = Vec::new();
        // What the last process left in the WAL goes into the file the
        // first time this thread has nothing else to do after its first
        // command (a runner's recovery, which its start waits for; see
        // `super::KEEP_WAL`): off the path of a starting run.
        let mut left_wal = self.wal_len() > 0;
        let mut handled = false;
        loop {
            let first = if left_wal && handled {
                match rx.try_recv() {
                    Ok(command) => command,
                    Err(mpsc::TryRecvError::Empty) => {
                        left_wal = false;
                        let _ = self.checkpoint_wal();
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                }
            };
            handled = true;
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Events(events) => pending.extend(events),
                    other => {
                        self.write_pending(&mut pending);
                        self.handle(other);
                    }
                }
                if pending.len() >= self.max_batch {
                    self.write_pending(&mut pending);
                }
                next = rx.try_recv().ok();
            }
            self.write_pending(&mut pending);
        }
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        progress.stopped = Some("the store was closed".into());
        self.shared.written.notify_all();
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Events(_) => unreachable!("events are batched by the caller"),
            Command::Recover { reason, reply } => {
                let _ = reply.send(self.recover(&reason));
            }
            Command::Audit(entry, time) => {
                let result = self.conn.execute(
                    "INSERT INTO connections (time, client, peer, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![format_time(&time), entry.client, entry.peer, entry.action, entry.detail],
                );
                if let Err(err) = result {
                    self.failed(format!("connection audit: {err}"));
                }
            }
            Command::Prune { now, reply } => {
                let path = self.shared.path.clone();
                let _ = reply.send(
                    self.prune(now)
                        .map_err(|err| StoreError::from_sqlite(&path, err)),
                );
            }
            Command::Flush(reply) => {
                let _ = reply.send(());
            }
            Command::Checkpoint(reply) => {
                // A reader elsewhere may hold the WAL back: the next open
                // then reads what is left, as before.
                if self.wal_len() > self.shared.keep_wal {
                    let _ = self.truncate_wal();
                }
                let _ = reply.send(());
            }
        }
    }

    fn failed(&self, message: String) {
        tracing::error!("history: {message}");
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        progress.error.get_or_insert(message);
    }

    /// Writes `pending` in transactions of at most `max_batch` events, each
    /// followed by the size budget's check: the recorder may hand over a
    /// whole run's events at once.
    fn write_pending(&mut self, pending: &mut Vec<Arc<Event>>) {
        while pending.len() > self.max_batch {
            let mut first: Vec<Arc<Event>> = pending.drain(..self.max_batch).collect();
            self.write_events(&mut first);
        }
        self.write_events(pending);
    }

    /// Writes `events` in one transaction and wakes whoever waits for them.
    fn write_events(&mut self, events: &mut Vec<Arc<Event>>) {
        if events.is_empty() {
            return;
        }
        let handled = events.iter().map(|e| e.seq).max().unwrap_or(0);
        let result = (|| -> rusqlite::Result<(u64, Vec<String>)> {
            let tx = self.conn.transaction()?;
            let mut written = 0;
            let mut problems = Vec::new();
            let starts = coalesced_starts(events);
            let folded: HashSet<usize> = starts.values().copied().collect();
            for (index, event) in events.iter().enumerate() {
                let start = starts.get(&index).map(|&start| &*events[start]);
                match insert_event(&tx, event) {
                    Ok(Some(bytes)) => {
                        self.since_budget_check += bytes as u64;
                        written = written.max(event.seq);
                        if folded.contains(&index) {
                            continue;
                        }
                        if let Err(err) = project(&tx, event, start, self.pid) {
                            problems.push(format!("event {} ({}): {err}", event.seq, event.type_name()));
                        }
                        continue;
                    }
                    Ok(None) => problems.push(format!(
                        "event {} is already recorded; create the bus with `EventBus::new(store.last_seq() + 1)`",
                        event.seq
                    )),
                    Err(err) => problems.push(format!("event {}: {err}", event.seq)),
                }
                // A finish not written leaves its folded start to write the row.
                if let Some(start) = start
                    && let Err(err) = project(&tx, start, None, self.pid)
                {
                    problems.push(format!(
                        "event {} ({}): {err}",
                        start.seq,
                        start.type_name()
                    ));
                }
            }
            tx.commit()?;
            Ok((written, problems))
        })();
        events.clear();
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        match result {
            Ok((written, problems)) => {
                progress.last_seq = progress.last_seq.max(written);
                if let Some(first) = problems.first() {
                    tracing::error!("history: {} problems; first: {first}", problems.len());
                    progress.error.get_or_insert_with(|| first.clone());
                }
            }
            Err(err) => {
                tracing::error!("history: cannot write events: {err}");
                progress
                    .error
                    .get_or_insert_with(|| format!("cannot write events: {err}"));
            }
        }
        progress.handled_seq = progress.handled_seq.max(handled);
        self.shared.written.notify_all();
        drop(progress);
        // Checked every 1/32 of the budget written, so the file overshoots
        // it by little between checks.
        if let Some(max) = self.shared.retention.max_bytes
            && self.since_budget_check >= (max / 32).max(64 << 10)
            && let Err(err) = self.fit_budget()
        {
            self.failed(format!(
                "cannot keep the history within its max_size: {err}"
            ));
        }
    }
}

/// For each task's finish whose start came earlier in the same
/// transaction with nothing else about that execution between them (its
/// progress, another start, an execution status of the same id): the index
/// of that start. The finish then writes the execution's row once, with
/// what the start said, instead of the start inserting it and the finish
/// updating it: a run of many short tasks has most of them so.
fn coalesced_starts(events: &[Arc<Event>]) -> HashMap<usize, usize> {
    let mut open: HashMap<(&str, &str), Option<usize>> = HashMap::new();
    let mut pairs = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        match &event.kind {
            EventKind::TaskStarted {
                run_id, task_id, ..
            } => {
                // A second start of the same task: neither is folded.
                open.entry((run_id.as_str(), task_id.as_str()))
                    .and_modify(|start| *start = None)
                    .or_insert(Some(index));
            }
            EventKind::TaskProgress {
                run_id, task_id, ..
            }
            | EventKind::ExecutionStatus {
                run_id,
                execution_id: task_id,
                ..
            } => {
                if let Some(start) = open.get_mut(&(run_id.as_str(), task_id.as_str())) {
                    *start = None;
                }
            }
            EventKind::TaskFinished {
                run_id, task_id, ..
            } => {
                if let Some(Some(start)) = open.remove(&(run_id.as_str(), task_id.as_str())) {
                    pairs.insert(index, start);
                }
            }
            _ => {}
        }
    }
    pairs
}

pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Inserts the event itself; the bytes of its JSON, or `None` when its
/// sequence number is taken.
fn insert_event(tx: &Transaction, event: &Event) -> rusqlite::Result<Option<usize>> {
    let json = serde_json::to_string(event).expect("events serialize");
    let inserted = tx.prepare_cached(
        "INSERT INTO events (seq, time, type, run_id, json) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (seq) DO NOTHING",
    )?
    .execute(params![event.seq as i64, format_time(&event.time), event.type_name(), event.run_id(), json])?;
    Ok((inserted == 1).then_some(json.len()))
}

/// For the queries: a stored time, when there is one and it reads.
pub(crate) fn read_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref().and_then(parse_time)
}
