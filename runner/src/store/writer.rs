//! The writer thread: owns the writing connection, stores each event and
//! projects it into the tables `runner history` and `runner show` read.

use super::lock::Holder;
use super::{ConnectionAudit, Pruned, Recovery, Shared, StoreError};
use chrono::{DateTime, Duration as Days, Utc};
use protocol::{
    Activity, BatchStatus, CommandStatus, Event, EventKind, ExecutionState, Priority, RunReason,
    RunStatus, TaskStatus, WatchState, format_time,
};
use rusqlite::{Connection, Transaction, params};
use serde_json::Value;
use std::sync::{Arc, mpsc};

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

/// Event types whose rows the retention and the size budget prune.
const PRUNABLE: &str = "('log', 'terminal_output', 'agent_activity')";

/// What a pruned event row costs beyond its JSON: its row in `logs`, and
/// index entries.
const ROW_OVERHEAD: u64 = 160;

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
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Events(events) => pending.extend(events),
                    other => {
                        self.write_events(&mut pending);
                        self.handle(other);
                    }
                }
                if pending.len() >= self.max_batch {
                    self.write_events(&mut pending);
                }
                next = rx.try_recv().ok();
            }
            self.write_events(&mut pending);
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
        }
    }

    fn failed(&self, message: String) {
        tracing::error!("history: {message}");
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        progress.error.get_or_insert(message);
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
            for event in events.iter() {
                match insert_event(&tx, event) {
                    Ok(Some(bytes)) => {
                        self.since_budget_check += bytes as u64;
                        written = written.max(event.seq);
                        if let Err(err) = project(&tx, event, self.pid) {
                            problems.push(format!("event {} ({}): {err}", event.seq, event.type_name()));
                        }
                    }
                    Ok(None) => problems.push(format!(
                        "event {} is already recorded; create the bus with `EventBus::new(store.last_seq() + 1)`",
                        event.seq
                    )),
                    Err(err) => problems.push(format!("event {}: {err}", event.seq)),
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

    /// The bytes the database's pages hold (free pages not counted).
    fn used_bytes(&self) -> rusqlite::Result<u64> {
        let pragma = |name: &str| -> rusqlite::Result<i64> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
        };
        let pages = pragma("page_count")? - pragma("freelist_count")?;
        Ok((pages.max(0) as u64) * pragma("page_size")?.max(0) as u64)
    }

    /// Keeps the database within `max_size`: from 13/16 of it (so that what
    /// is written until the next check, and the WAL, still fit), deletes the
    /// oldest log lines, terminal output and agent activity (never those of
    /// the newest run) until it is back under 3/4 of it, and gives the pages
    /// back to the file system. Returns the events removed.
    pub fn fit_budget(&mut self) -> rusqlite::Result<usize> {
        self.since_budget_check = 0;
        let Some(max) = self.shared.retention.max_bytes else {
            return Ok(0);
        };
        if self.used_bytes()? <= max / 16 * 13 {
            self.truncate_wal()?;
            return Ok(0);
        }
        let target = max / 4 * 3;
        let newest_run: Option<i64> =
            self.conn
                .query_row("SELECT MAX(first_seq) FROM runs", [], |row| row.get(0))?;
        let mut removed = 0;
        // Estimates of what a row frees are rough: a few rounds at most.
        for _ in 0..8 {
            let used = self.used_bytes()?;
            if used <= target {
                break;
            }
            let to_free = used - target;
            let candidates: Vec<(i64, i64)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT seq, length(json) FROM events WHERE type IN {PRUNABLE} AND seq < ?1
                     ORDER BY seq LIMIT 20000"
                ))?
                .query_map([newest_run.unwrap_or(i64::MAX)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut freed = 0;
            let mut cutoff = None;
            for (seq, bytes) in candidates {
                freed += bytes.max(0) as u64 + ROW_OVERHEAD;
                cutoff = Some(seq);
                if freed >= to_free {
                    break;
                }
            }
            let Some(cutoff) = cutoff else {
                if !self.warned_over_budget {
                    self.warned_over_budget = true;
                    tracing::warn!(
                        "history: {} is over its max_size ({max} bytes) with only the newest run's logs left; they are kept until the next run",
                        self.shared.path.display()
                    );
                }
                break;
            };
            let tx = self.conn.transaction()?;
            removed += tx.execute(
                &format!("DELETE FROM events WHERE seq <= ?1 AND type IN {PRUNABLE}"),
                [cutoff],
            )?;
            tx.execute("DELETE FROM logs WHERE seq <= ?1", [cutoff])?;
            tx.commit()?;
            // One row per page freed: it frees them all only when read to the end.
            let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut pages = vacuum.query([])?;
            while pages.next()?.is_some() {}
        }
        self.truncate_wal()?;
        Ok(removed)
    }

    /// Writes the WAL into the file and empties it: the file shrinks to
    /// what pruning left, and the WAL takes no room. A reader in another
    /// process can hold it back; the next check tries again.
    fn truncate_wal(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Deletes logs and the audit past their retention.
    pub fn prune(&mut self, now: DateTime<Utc>) -> rusqlite::Result<Pruned> {
        let retention = self.shared.retention;
        let tx = self.conn.transaction()?;
        let mut pruned = Pruned::default();
        if let Some(days) = retention.log_days {
            let cutoff = format_time(&(now - Days::days(days.into())));
            pruned.logs = tx.execute("DELETE FROM logs WHERE time < ?1", [&cutoff])?;
            pruned.events = tx.execute(
                &format!("DELETE FROM events WHERE time < ?1 AND type IN {PRUNABLE}"),
                [&cutoff],
            )?;
        }
        let cutoff = format_time(&(now - Days::days(retention.audit_days.into())));
        pruned.connections = tx.execute("DELETE FROM connections WHERE time < ?1", [&cutoff])?;
        tx.commit()?;
        pruned.events += self.fit_budget()?;
        Ok(pruned)
    }

    /// Interrupts what dead runners left running, as events.
    fn recover(&mut self, reason: &str) -> Result<Recovery, StoreError> {
        let path = self.shared.path.clone();
        let sqlite = |err| StoreError::from_sqlite(&path, err);
        let (events, recovery) = self.recovery_events(reason).map_err(sqlite)?;
        if events.is_empty() {
            return Ok(recovery);
        }
        let mut events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        self.write_events(&mut events);
        let mut progress = self.shared.progress.lock().expect("store progress lock");
        match progress.error.take() {
            Some(message) => Err(StoreError::Write(message)),
            None => Ok(recovery),
        }
    }

    fn recovery_events(&self, reason: &str) -> rusqlite::Result<(Vec<Event>, Recovery)> {
        let now = Utc::now();
        let mut seq = self
            .shared
            .progress
            .lock()
            .expect("store progress lock")
            .last_seq;
        let mut events = Vec::new();
        let mut push = |kind: EventKind| {
            seq += 1;
            events.push(Event {
                seq,
                time: now,
                kind,
            });
        };
        let mut recovery = Recovery::default();
        // The lock file tells who records: while this process holds it, a
        // run of any other process is dead, even one whose id was reused.
        let holder = Holder::of(&self.shared.path);
        let dead = |pid: Option<i64>| {
            pid.is_none_or(|pid| pid as u32 == self.pid || !holder.owns(Some(pid)))
        };

        let runs: Vec<(String, String, Option<i64>)> = self
            .conn
            .prepare("SELECT id, pipeline, owner_pid FROM runs WHERE status = 'running' ORDER BY first_seq")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (run_id, pipeline, _) in runs.into_iter().filter(|r| dead(r.2)) {
            let executions: Vec<LeftRunning> = self
                .conn
                .prepare(
                    "SELECT execution_id, batch_id, reason, name, kind, command, started_at FROM executions
                     WHERE run_id = ?1 AND status IN ('running', 'pending') ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| {
                    Ok(LeftRunning {
                        execution_id: row.get(0)?,
                        batch_id: row.get(1)?,
                        reason: row.get(2)?,
                        name: row.get(3)?,
                        kind: row.get(4)?,
                        command: row.get(5)?,
                        started_at: row.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for LeftRunning {
                execution_id,
                batch_id,
                reason: reason_text,
                name,
                kind,
                command,
                started_at,
            } in executions
            {
                recovery.executions += 1;
                let script = match reason_text.as_str() {
                    "setup_script" => Some(RunReason::SetupScript),
                    "cleanup_script" => Some(RunReason::CleanupScript),
                    _ => None,
                };
                if let Some(run_reason) = script {
                    push(EventKind::ExecutionStatus {
                        run_id: run_id.clone(),
                        batch_id,
                        execution_id,
                        reason: run_reason,
                        command: command.unwrap_or_default(),
                        status: ExecutionState::Interrupted,
                        exit_code: None,
                        error: Some(reason.to_string()),
                    });
                } else {
                    let started_at = started_at.as_deref().and_then(parse_time);
                    let duration_ms =
                        started_at.map_or(0, |s| (now - s).num_milliseconds().max(0) as u64);
                    push(EventKind::TaskFinished {
                        run_id: run_id.clone(),
                        batch_id,
                        task_id: execution_id,
                        task_type: kind,
                        name,
                        status: TaskStatus::Interrupted,
                        started_at,
                        finished_at: now,
                        duration_ms,
                        result: None,
                        error: Some(reason.to_string()),
                        exit_code: None,
                    });
                }
            }
            let turns: Vec<(String, String, Option<String>, Option<String>)> = self
                .conn
                .prepare(
                    "SELECT command_id, agent, priority, task_id FROM agent_turns
                     WHERE run_id = ?1 AND status IN ('queued', 'running') ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (command_id, agent, priority, task_id) in turns {
                recovery.agent_turns += 1;
                push(interrupted_command(
                    command_id,
                    agent,
                    priority,
                    Some(run_id.clone()),
                    task_id,
                    reason,
                ));
            }
            let batches: Vec<(String, String)> = self
                .conn
                .prepare(
                    "SELECT batch_id, name FROM batches WHERE run_id = ?1 AND status IN ('pending', 'running')
                     ORDER BY first_seq",
                )?
                .query_map([&run_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (batch_id, batch_name) in batches {
                recovery.batches += 1;
                push(EventKind::BatchStatus {
                    run_id: run_id.clone(),
                    pipeline: pipeline.clone(),
                    batch_id,
                    batch_name,
                    status: BatchStatus::Failed,
                    branch: None,
                    error: Some(reason.to_string()),
                    summary: None,
                });
            }
            push(EventKind::RunStatus {
                run_id: run_id.clone(),
                pipeline,
                status: RunStatus::Interrupted,
                message: Some(format!("interrupted: {reason}")),
                error: Some(reason.to_string()),
            });
            recovery.runs.push(run_id);
        }

        // Agent commands outside any run (queued from the dashboard).
        let loose: Vec<(String, String, Option<String>, Option<i64>)> = self
            .conn
            .prepare(
                "SELECT command_id, agent, priority, owner_pid FROM agent_turns
                 WHERE run_id IS NULL AND status IN ('queued', 'running') ORDER BY first_seq",
            )?
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (command_id, agent, priority, _) in loose.into_iter().filter(|t| dead(t.3)) {
            recovery.agent_turns += 1;
            push(interrupted_command(
                command_id, agent, priority, None, None, reason,
            ));
        }
        recovery.seqs = events
            .first()
            .map(|first| (first.seq, events.last().map_or(first.seq, |e| e.seq)));
        Ok((events, recovery))
    }
}

/// An execution a dead runner left running.
struct LeftRunning {
    execution_id: String,
    batch_id: String,
    reason: String,
    name: String,
    kind: String,
    command: Option<String>,
    started_at: Option<String>,
}

fn interrupted_command(
    command_id: String,
    agent: String,
    priority: Option<String>,
    run_id: Option<String>,
    task_id: Option<String>,
    reason: &str,
) -> EventKind {
    EventKind::CommandStatus {
        command_id,
        agent,
        status: CommandStatus::Interrupted,
        priority: priority
            .as_deref()
            .and_then(Priority::parse)
            .unwrap_or_default(),
        run_id,
        task_id,
        exit_code: None,
        error: Some(reason.to_string()),
        prompt: None,
    }
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

fn task_reason(task_type: &str) -> RunReason {
    if task_type == "agent" {
        RunReason::CodingAgent
    } else {
        RunReason::Task
    }
}

/// Updates the tables the event says something about.
fn project(tx: &Transaction, event: &Event, pid: u32) -> rusqlite::Result<()> {
    let seq = event.seq as i64;
    let time = format_time(&event.time);
    match &event.kind {
        EventKind::RunStatus {
            run_id,
            pipeline,
            status,
            message,
            error,
        } => {
            let finished = status.is_final().then_some(&time);
            tx.prepare_cached(
                "INSERT INTO runs (id, pipeline, status, message, error, started_at, finished_at, owner_pid, first_seq, last_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     message = COALESCE(excluded.message, message), error = excluded.error,
                     finished_at = excluded.finished_at, last_seq = excluded.last_seq",
            )?
            .execute(params![run_id, pipeline, status.as_str(), message, error, time, finished, pid, seq])?;
        }
        EventKind::BatchStatus {
            run_id,
            batch_id,
            batch_name,
            status,
            branch,
            error,
            summary,
            ..
        } => {
            let started = (*status == BatchStatus::Running).then_some(&time);
            let finished =
                matches!(status, BatchStatus::Completed | BatchStatus::Failed).then_some(&time);
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, error, summary, branch, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET name = excluded.name, status = excluded.status,
                     error = excluded.error, summary = COALESCE(excluded.summary, summary),
                     branch = COALESCE(excluded.branch, branch), started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = COALESCE(excluded.finished_at, finished_at)",
            )?
            .execute(params![run_id, batch_id, seq, batch_name, status.as_str(), error, summary, branch, started, finished])?;
        }
        EventKind::TaskStarted {
            run_id,
            batch_id,
            task_id,
            task_type,
            name,
            display_text,
            ..
        } => {
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, status, progress, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = 'running', started_at = excluded.started_at,
                     progress = COALESCE(excluded.progress, progress)",
            )?
            .execute(params![
                run_id,
                task_id,
                batch_id,
                seq,
                task_reason(task_type).as_str(),
                name,
                task_type,
                display_text,
                time
            ])?;
        }
        EventKind::TaskProgress {
            run_id,
            task_id,
            display_text,
            ..
        } => {
            tx.prepare_cached(
                "UPDATE executions SET progress = ?3 WHERE run_id = ?1 AND execution_id = ?2",
            )?
            .execute(params![run_id, task_id, display_text])?;
        }
        EventKind::TaskFinished {
            run_id,
            batch_id,
            task_id,
            task_type,
            name,
            status,
            started_at,
            finished_at,
            duration_ms,
            result,
            error,
            exit_code,
        } => {
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, status, exit_code,
                     error, result, started_at, finished_at, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                     error = excluded.error, result = excluded.result,
                     started_at = COALESCE(excluded.started_at, started_at), finished_at = excluded.finished_at,
                     duration_ms = excluded.duration_ms",
            )?
            .execute(params![
                run_id,
                task_id,
                batch_id,
                seq,
                task_reason(task_type).as_str(),
                name,
                task_type,
                status.as_str(),
                exit_code,
                error,
                result.as_ref().map(Value::to_string),
                started_at.as_ref().map(format_time),
                format_time(finished_at),
                *duration_ms as i64
            ])?;
        }
        EventKind::ExecutionStatus {
            run_id,
            batch_id,
            execution_id,
            reason,
            command,
            status,
            exit_code,
            error,
        } => {
            let running = *status == ExecutionState::Running;
            let started = running.then_some(&time);
            let finished = (!running).then_some(&time);
            tx.prepare_cached(
                "INSERT INTO executions (run_id, execution_id, batch_id, first_seq, reason, name, kind, command, status,
                     exit_code, error, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?2, 'script', ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id, execution_id) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                     error = excluded.error, started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = excluded.finished_at,
                     duration_ms = CAST(ROUND((julianday(excluded.finished_at) - julianday(started_at)) * 86400000) AS INTEGER)",
            )?
            .execute(params![
                run_id,
                execution_id,
                batch_id,
                seq,
                reason.as_str(),
                command,
                status.as_str(),
                exit_code,
                error,
                started,
                finished
            ])?;
        }
        EventKind::Log {
            run_id,
            task_id,
            level,
            source,
            stream,
            message: _,
        } => {
            tx.prepare_cached(
                "INSERT INTO logs (seq, time, run_id, task_id, kind, level, source, stream)
                 VALUES (?1, ?2, ?3, ?4, 'log', ?5, ?6, ?7)",
            )?
            .execute(params![
                seq,
                time,
                run_id,
                task_id,
                level.as_str(),
                source,
                stream.map(|s| s.as_str())
            ])?;
        }
        EventKind::TerminalOutput {
            run_id,
            task_id,
            command_id,
            stream,
            sequence,
            data: _,
        } => {
            tx.prepare_cached(
                "INSERT INTO logs (seq, time, run_id, task_id, command_id, kind, stream, chunk)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'output', ?6, ?7)",
            )?
            .execute(params![
                seq,
                time,
                run_id,
                task_id,
                command_id,
                stream.as_str(),
                *sequence as i64
            ])?;
        }
        EventKind::CommandStatus {
            command_id,
            agent,
            status,
            priority,
            run_id,
            task_id,
            exit_code,
            error,
            prompt,
        } => {
            let started = (*status == CommandStatus::Running).then_some(&time);
            let finished = matches!(
                status,
                CommandStatus::Completed | CommandStatus::Failed | CommandStatus::Interrupted
            )
            .then_some(&time);
            tx.prepare_cached(
                "INSERT INTO agent_turns (command_id, run_id, task_id, agent, status, priority, prompt, exit_code, error,
                     owner_pid, started_at, finished_at, first_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (command_id) DO UPDATE SET status = excluded.status, priority = excluded.priority,
                     run_id = COALESCE(excluded.run_id, run_id), task_id = COALESCE(excluded.task_id, task_id),
                     prompt = COALESCE(excluded.prompt, prompt), exit_code = COALESCE(excluded.exit_code, exit_code),
                     error = COALESCE(excluded.error, error), started_at = COALESCE(started_at, excluded.started_at),
                     finished_at = COALESCE(excluded.finished_at, finished_at)",
            )?
            .execute(params![
                command_id,
                run_id,
                task_id,
                agent,
                status.as_str(),
                priority.as_str(),
                prompt,
                exit_code,
                error,
                pid,
                started,
                finished,
                seq
            ])?;
        }
        EventKind::AgentStatus { .. } => {}
        EventKind::AgentActivity {
            command_id,
            agent,
            run_id,
            task_id,
            activity,
        } => {
            tx.prepare_cached(
                "INSERT INTO agent_turns (command_id, run_id, task_id, agent, status, owner_pid, started_at, first_seq)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7) ON CONFLICT (command_id) DO NOTHING",
            )?
            .execute(params![command_id, run_id, task_id, agent, pid, time, seq])?;
            match activity {
                Activity::SessionStarted { session_id } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET agent_session_id = ?2 WHERE command_id = ?1",
                    )?
                    .execute(params![command_id, session_id])?;
                }
                // One usage report per turn; a command with several turns adds them up.
                Activity::Usage {
                    input_tokens,
                    output_tokens,
                    cached_tokens,
                    cost_usd,
                } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3,
                             cached_tokens = cached_tokens + ?4,
                             cost_usd = CASE WHEN ?5 IS NULL THEN cost_usd ELSE COALESCE(cost_usd, 0) + ?5 END
                         WHERE command_id = ?1",
                    )?
                    .execute(params![
                        command_id,
                        *input_tokens as i64,
                        *output_tokens as i64,
                        *cached_tokens as i64,
                        cost_usd
                    ])?;
                }
                Activity::FinalResult { summary, is_error } => {
                    tx.prepare_cached(
                        "UPDATE agent_turns SET summary = ?2, is_error = ?3 WHERE command_id = ?1",
                    )?
                    .execute(params![command_id, summary, is_error])?;
                }
                _ => {}
            }
        }
        EventKind::WorkspacePrepared {
            run_id,
            batch_id,
            path,
            branch,
            base_commit,
            note,
        } => {
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, branch, worktree, base_commit, head_before, note)
                 VALUES (?1, ?2, ?3, ?2, 'running', ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET branch = COALESCE(excluded.branch, branch),
                     worktree = excluded.worktree, base_commit = excluded.base_commit,
                     head_before = excluded.head_before, note = excluded.note",
            )?
            .execute(params![run_id, batch_id, seq, branch, path, base_commit, note])?;
        }
        EventKind::RepoState {
            run_id,
            batch_id,
            branch,
            head_before,
            head_after,
            files_changed,
        } => {
            tx.prepare_cached(
                "INSERT INTO batches (run_id, batch_id, first_seq, name, status, branch, head_before, head_after, files_changed)
                 VALUES (?1, ?2, ?3, ?2, 'running', ?4, ?5, ?6, ?7)
                 ON CONFLICT (run_id, batch_id) DO UPDATE SET branch = excluded.branch,
                     head_before = COALESCE(head_before, excluded.head_before), head_after = excluded.head_after,
                     files_changed = excluded.files_changed",
            )?
            .execute(params![run_id, batch_id, seq, branch, head_before, head_after, *files_changed as i64])?;
        }
        EventKind::MergeStatus {
            run_id,
            batch_id,
            branch,
            target,
            status,
            commit,
            conflicts,
            error,
        } => {
            let conflicts =
                (!conflicts.is_empty()).then(|| serde_json::to_string(conflicts).expect("strings"));
            tx.prepare_cached(
                "INSERT INTO merges (seq, time, run_id, batch_id, branch, target, status, commit_id, conflicts, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![seq, time, run_id, batch_id, branch, target, status.as_str(), commit, conflicts, error])?;
        }
        EventKind::WatchStatus {
            status: WatchState::Triggered,
            run_id: Some(run_id),
            paths,
            ..
        } => {
            let changed = serde_json::to_string(paths).expect("strings");
            tx.prepare_cached(
                "INSERT INTO run_triggers (run_id, trigger, changed) VALUES (?1, 'watch', ?2)
                 ON CONFLICT (run_id) DO UPDATE SET trigger = excluded.trigger, changed = excluded.changed",
            )?
            .execute(params![run_id, changed])?;
        }
        EventKind::WatchStatus { .. } | EventKind::PluginCompile { .. } => {}
    }
    Ok(())
}

/// For the queries: a stored time, when there is one and it reads.
pub(crate) fn read_time(text: Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref().and_then(parse_time)
}
