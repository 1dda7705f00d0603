//! `runner worker`: claims tasks from a PostgreSQL queue and runs them;
//! `runner queue`: enqueues tasks and shows the counts.
//!
//! A task runs while its lease holds: heartbeats every third of the lease;
//! when one finds the lease gone (the worker was stopped or cut off past
//! it, and the reaper gave the task back) the task's process group is
//! killed and the task is not completed; when one finds the task asked to
//! stop (its run was aborted), the group is killed and the task completed
//! failed, `cancelled`. Meanwhile its output is sent to the queue in
//! batches (`worker/output.rs`), all of it before the completion. A lost
//! connection is reconnected with backoff; Ctrl-C or SIGTERM stops
//! claiming, hands the running task back and exits.

use super::{Error, exit};
use crate::queue::{Completion, Heartbeat, Lease, NewTask, Outcome, Queue, QueueError};
use crate::worker::Tee;
use crate::worker::output::Pending;
use clap::Subcommand;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Enqueue one exec task: `runner queue enqueue --queue URL -- make test`,
    /// or with `--plugin FILE` one script task: `... --plugin probe.wasm -- env`.
    Enqueue {
        #[arg(long)]
        queue: String,
        #[arg(long, default_value = "runner")]
        schema: String,
        /// Lower runs first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        #[arg(long, default_value_t = 3)]
        max_attempts: i32,
        /// A script component (a WASI command): uploaded, declared for a
        /// fresh run, and run with the arguments after `--`.
        #[arg(long, value_name = "FILE")]
        plugin: Option<std::path::PathBuf>,
        /// The command and its arguments (with `--plugin`: the script's arguments).
        #[arg(required_unless_present = "plugin", last = true)]
        command: Vec<String>,
    },
    /// How many tasks are in each state.
    Status {
        #[arg(long)]
        queue: String,
        #[arg(long, default_value = "runner")]
        schema: String,
    },
}

/// What `runner worker` was asked.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub url: String,
    pub schema: String,
    pub lease: Duration,
    pub name: String,
    pub poll: Duration,
    pub cache: std::path::PathBuf,
}

/// `$XDG_CACHE_HOME/runner/worker`, or `~/.cache/runner/worker`.
pub fn default_cache() -> std::path::PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("runner").join("worker")
}

/// HOST-PID.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

pub async fn queue_command(command: QueueCommand) -> Result<i32, Error> {
    match command {
        QueueCommand::Enqueue {
            queue,
            schema,
            priority,
            max_attempts,
            plugin,
            command,
        } => {
            let mut queue = Queue::connect(&queue, &schema, "runner queue").await?;
            let payload = match plugin {
                None => json!({"kind": "exec", "command": command}),
                Some(file) => script_payload(&queue, &file, command).await?,
            };
            let task = NewTask {
                priority,
                payload,
                max_attempts,
                pool: None,
                second_pool: None,
            };
            let ids = queue.enqueue(&[task]).await?;
            println!("{}", ids[0]);
        }
        QueueCommand::Status { queue, schema } => {
            let queue = Queue::connect(&queue, &schema, "runner queue").await?;
            for (state, count) in queue.counts().await? {
                println!("{state:<22} {count}");
            }
        }
    }
    Ok(exit::OK)
}

/// Uploads `file`, declares it for a fresh run and says how to run it.
async fn script_payload(
    queue: &Queue,
    file: &std::path::Path,
    args: Vec<String>,
) -> Result<serde_json::Value, Error> {
    let bytes = std::fs::read(file)
        .map_err(|err| Error::Usage(format!("cannot read the plugin {}: {err}", file.display())))?;
    let name = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let sha256 = queue.put_plugin(&name, &bytes).await?;
    let run = crate::ids::run_id();
    queue
        .declare_run(&run, std::slice::from_ref(&sha256))
        .await?;
    eprintln!("plugin {name} ({sha256}) declared for run {run}");
    Ok(json!({
        "kind": "script",
        "run": run,
        "task": name,
        "plugin": {"name": name, "sha256": sha256},
        "config": {"args": args},
    }))
}

/// Doubling waits between reconnections, up to [`MAX_BACKOFF`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(50))
    }
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

struct Worker {
    options: WorkerOptions,
    context: crate::worker::Context,
    queue: Option<Queue>,
    backoff: Backoff,
    stop: CancellationToken,
}

impl Worker {
    /// The connection, connecting once if there is none. A URL or schema
    /// that can never work is an error; anything else waits the backoff.
    async fn queue(&mut self) -> Result<Option<&mut Queue>, QueueError> {
        if self.queue.as_ref().is_some_and(Queue::is_closed) {
            eprintln!(
                "worker {}: the connection ended; reconnecting",
                self.options.name
            );
            self.queue = None;
        }
        if self.queue.is_none() {
            let application = format!("runner worker {}", self.options.name);
            let connected =
                match Queue::connect(&self.options.url, &self.options.schema, &application).await {
                    Ok(queue) => queue.listen().await.map(|()| queue),
                    Err(err) => Err(err),
                };
            match connected {
                Ok(queue) => {
                    self.backoff = Backoff::new();
                    self.queue = Some(queue);
                }
                Err(err) if err.is_disconnect() => {
                    let wait = self.backoff.next();
                    eprintln!(
                        "worker {}: {err}; retrying in {}",
                        self.options.name,
                        crate::units::format_duration(wait)
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.stop.cancelled() => {}
                    }
                    return Ok(None);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(self.queue.as_mut())
    }

    /// Notes a failed statement: a lost connection is reconnected later.
    fn failed(&mut self, err: &QueueError) {
        eprintln!("worker {}: {err}", self.options.name);
        if err.is_disconnect() {
            self.queue = None;
        }
    }

    async fn run(mut self) -> Result<(), QueueError> {
        let WorkerOptions { lease, poll, .. } = self.options;
        let name = self.options.name.clone();
        let stop = self.stop.clone();
        // Expired leases are looked for a few times a lease, not before
        // every claim (a round trip each).
        let reap_every = (lease / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut last_reap: Option<Instant> = None;
        while !stop.is_cancelled() {
            let Some(queue) = self.queue().await? else {
                continue;
            };
            if last_reap.is_none_or(|at| at.elapsed() >= reap_every) {
                if let Err(err) = queue.reap().await {
                    self.failed(&err);
                    continue;
                }
                last_reap = Some(Instant::now());
            }
            match queue.claim(&name, lease).await {
                Ok(Some(claimed)) => self.run_task(claimed).await,
                Ok(None) => {
                    tokio::select! {
                        () = queue.woken() => {}
                        () = tokio::time::sleep(poll) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Err(err) => self.failed(&err),
            }
        }
        eprintln!("worker {name}: stopped");
        Ok(())
    }

    /// Runs one claimed task while its lease holds, then completes it.
    async fn run_task(&mut self, lease: Lease) {
        let length = self.options.lease;
        let name = self.options.name.clone();
        eprintln!(
            "worker {name}: task {} attempt {}/{}",
            lease.task, lease.attempt, lease.max_attempts
        );
        let context = self.context.clone();
        let prepared = match self.queue().await {
            Ok(Some(queue)) => crate::worker::prepare(&context, queue, &lease).await,
            Ok(None) => return,
            Err(err) => Err(err),
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(err) => {
                // Its lease lapses and the reaper gives the task back.
                self.failed(&err);
                return;
            }
        };
        let stop = self.stop.clone();
        let cancel = CancellationToken::new();
        let (tee, mut heard) = Tee::new(crate::worker::output::limit(&lease.payload));
        let mut pending = Pending::default();
        let task = crate::worker::execute(&context, &lease, &prepared, &cancel, &tee);
        tokio::pin!(task);
        let mut tick = tokio::time::interval_at(Instant::now() + length / 3, length / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held_until = Instant::now() + length;
        let outcome = loop {
            let due = pending.due();
            tokio::select! {
                biased;
                outcome = &mut task => break outcome,
                () = stop.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
                _ = tick.tick() => {
                    // A task that ended while this worker was stopped is
                    // reported (and fenced by the database), not stopped.
                    if let Ok(outcome) = tokio::time::timeout(Duration::from_millis(100), &mut task).await {
                        break outcome;
                    }
                    let beat = match self.queue().await {
                        Ok(Some(queue)) => queue.heartbeat(&lease, length).await,
                        Ok(None) => Err(QueueError::Disconnected { message: "reconnecting".into() }),
                        Err(err) => Err(err),
                    };
                    match beat {
                        Ok(Heartbeat::Held) => held_until = Instant::now() + length,
                        Ok(Heartbeat::CancelRequested) => {
                            eprintln!("worker {name}: task {} was cancelled; stopping it", lease.task);
                            cancel.cancel();
                            let ended = (&mut task).await;
                            break Some(ended.unwrap_or_else(|| Outcome::Failed {
                                error: "cancelled: its run was aborted".to_string(),
                                result: serde_json::Value::Null,
                            }));
                        }
                        Ok(Heartbeat::Lost) => {
                            eprintln!("worker {name}: the lease of task {} is gone; stopping it", lease.task);
                            cancel.cancel();
                            let _ = (&mut task).await;
                            return;
                        }
                        Err(err) => {
                            self.failed(&err);
                            if Instant::now() > held_until {
                                eprintln!("worker {name}: no heartbeat for the whole lease of task {}; stopping it", lease.task);
                                cancel.cancel();
                                let _ = (&mut task).await;
                                return;
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.send_output(&lease, &mut pending).await;
                }
                Some(piece) = heard.recv() => pending.add(piece),
            }
        };
        let Some(outcome) = outcome else {
            // Stopped by Ctrl-C or SIGTERM: hand the task back.
            if let Ok(Some(queue)) = self.queue().await {
                let _ = queue.release(&lease).await;
            }
            return;
        };
        while let Ok(piece) = heard.try_recv() {
            pending.add(piece);
        }
        let agent = lease
            .payload
            .get("kind")
            .and_then(serde_json::Value::as_str)
            == Some("agent");
        let outcome = streamed(outcome, &tee, agent);
        // The lease fences the completion, so it may be retried freely;
        // the output goes first, so whoever sees the end has all of it.
        for _ in 0..20 {
            self.send_output(&lease, &mut pending).await;
            let completed = match self.queue().await {
                Ok(Some(queue)) if pending.is_empty() => queue.complete(&lease, &outcome).await,
                Ok(_) => continue,
                Err(err) => Err(err),
            };
            match completed {
                Ok(Completion::Applied) => return,
                Ok(Completion::Rejected { reason }) => {
                    eprintln!(
                        "worker {name}: the completion of task {} was rejected: {reason}",
                        lease.task
                    );
                    return;
                }
                Err(err) => self.failed(&err),
            }
            if self.stop.is_cancelled() {
                return;
            }
        }
    }

    /// Sends the output gathered in `pending`. What could not be sent for
    /// a lost connection waits for the next try; the rest is forgotten
    /// (sent, or its lease is gone and it is nobody's any more).
    async fn send_output(&mut self, lease: &Lease, pending: &mut Pending) {
        if pending.is_empty() {
            return;
        }
        let sent = match self.queue().await {
            Ok(Some(queue)) => queue.put_output(lease, pending.rows()).await,
            Ok(None) => return,
            Err(err) => Err(err),
        };
        match sent {
            Ok(_) => pending.clear(),
            Err(err) => {
                self.failed(&err);
                if !err.is_disconnect() {
                    pending.clear();
                }
            }
        }
    }
}

/// `outcome` with what its result says of the output: it was `streamed`
/// (the reader has it already), and what was cut past the limit. An agent
/// task's result keeps its own `output_cut` (its terminal output past the
/// agent's `output`): what the tee cut were its events, which the reader
/// learns from the `cut` marker.
fn streamed(outcome: Outcome, tee: &Tee, agent: bool) -> Outcome {
    let annotate = |mut result: serde_json::Value| {
        if let Some(map) = result.as_object_mut() {
            map.insert("streamed".into(), json!(true));
            if let Some(cut) = tee.cut().filter(|_| !agent) {
                map.insert("output_cut".into(), cut.to_json());
            }
        }
        result
    };
    match outcome {
        Outcome::Completed(result) => Outcome::Completed(annotate(result)),
        Outcome::Failed { error, result } => Outcome::Failed {
            error,
            result: annotate(result),
        },
    }
}

/// `runner worker`: until Ctrl-C or SIGTERM.
pub async fn worker(options: WorkerOptions) -> Result<i32, Error> {
    let stop = super::run::cancel_on_signal();
    eprintln!(
        "worker {}: schema {}, lease {}",
        options.name,
        options.schema,
        crate::units::format_duration(options.lease)
    );
    let context = crate::worker::Context::new(options.name.clone(), options.cache.clone());
    let worker = Worker {
        options,
        context,
        queue: None,
        backoff: Backoff::new(),
        stop,
    };
    worker.run().await?;
    Ok(exit::OK)
}
