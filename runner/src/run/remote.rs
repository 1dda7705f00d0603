//! Tasks of a run handed to `runner worker`s through the PostgreSQL queue
//! (`runner run --queue`): this process stays the coordinator, expanding
//! and reducing batches, and a task it would run itself is enqueued when
//! the scheduler starts it.
//!
//! ## What goes out
//! Only the kinds [`payload`] builds a payload for (`exec`, and `script`
//! and `block` tasks whose plugin workers can run: `remote_plugins.rs`)
//! and `agent` tasks (most of them: `remote_agents.rs`); the others run
//! here. A dispatched task holds no local slot: its run's pool (`run:<run
//! id>`, `max_running` = `[defaults] concurrency`) holds the limit across
//! every worker; an agent task is in its agent's pool too.
//!
//! ## Waiting
//! The end of a task is announced on the queue's completion channel; a
//! poll every [`POLL`] stands behind the notifications, and a lost
//! connection is retried for [`LOST_FOR`] before the task fails. Enqueueing
//! is retried the same way; the payload's `dispatch` mark lets a retry find
//! a task whose enqueue committed though its answer was lost, so a task is
//! never queued twice.
//!
//! ## Output and claims (`remote_heard.rs`)
//! While a task runs its worker sends its output to the queue; the waiting
//! coordinator takes it every [`OUTPUT_POLL`] and passes it through the
//! task's chunker as a local task's output goes (the result's tail is not
//! passed again). Each claim is said on the task when it is seen, with the
//! attempt that came before it when a worker was lost. An agent task's
//! output is its command's events, published as a local command's are
//! (`remote_agents.rs`).
//!
//! ## Abort
//! A queued task is cancelled at once; a running one is asked to stop (its
//! worker sees it at its next heartbeat) and waited for up to
//! [`STOP_WAIT`]. The task ends `interrupted`, as a local one does.

use super::RunCtx;
use super::tasks::TaskOutcome;
use crate::config::{Batch, Task, TaskKind};
use crate::plugin::TaskSpec;
use crate::process::exec::ExecSpec;
use crate::process::output::Chunker;
use crate::queue::{ClaimRow, NewTask, OutputRow, Queue, QueueError, TaskRow};
use protocol::{CommandStatus, LogLevel, Priority, Stream};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The poll behind the completion notifications.
const POLL: Duration = Duration::from_millis(500);
/// The poll for the output of a running task.
const OUTPUT_POLL: Duration = Duration::from_millis(200);
/// How long an aborted run waits for a running task's worker to stop it
/// (a worker heartbeats every third of its lease: 10s by default).
const STOP_WAIT: Duration = Duration::from_secs(15);
/// How long a task may wait for a worker before the run says so.
pub(super) const UNCLAIMED_NOTE: Duration = Duration::from_secs(5);
/// How long the queue may be unreachable before a waiting task fails.
const LOST_FOR: Duration = Duration::from_secs(30);

/// The payload a worker runs for `task`, or `None` when its kind runs on
/// the coordinator; `Some(Err)` when the task's config cannot run (the
/// message a local run gives). One arm per kind workers run.
pub(super) fn payload(
    ctx: &RunCtx,
    batch: &Batch,
    spec: &TaskSpec,
    task: &Task,
    config: &Value,
    dir: &Path,
) -> Option<Result<Value, String>> {
    match &task.kind {
        TaskKind::Exec => Some(exec_payload(task, config, dir)),
        TaskKind::Script(name) | TaskKind::Plugin(name) => {
            ctx.plugin_payload(name, batch, spec, task, config)
        }
        // Decided with the adapter, at the task's start (`remote_agents.rs`).
        TaskKind::Agent(_) => None,
    }
}

/// The task's config (`command`, `args`, `env`, `cwd`) with its timeout.
fn exec_payload(task: &Task, config: &Value, dir: &Path) -> Result<Value, String> {
    ExecSpec::from_config(config, dir).map_err(|err| format!("exec config: {err:#}"))?;
    let mut payload: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    payload.insert("kind".into(), json!("exec"));
    payload.insert(
        "timeout".into(),
        json!(crate::units::format_duration(task.timeout)),
    );
    Ok(Value::Object(payload))
}

/// The queue's priority (lower first) for the scheduler's (high first).
fn rank(priority: Priority) -> i32 {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// The pool that holds a run's limit.
pub(super) fn pool_of(run_id: &str) -> String {
    format!("run:{run_id}")
}

/// What waiting for a task saw, in the order it happened.
pub(super) enum Seen<'a> {
    /// It is still waiting for a worker.
    Unclaimed,
    /// A worker claimed it.
    Claimed(&'a ClaimRow),
    /// A piece of its output.
    Output(&'a OutputRow),
}

/// The coordinator's side of the queue, shared by every run of a runner.
pub struct Remote {
    url: String,
    pub(super) schema: String,
    queue: tokio::sync::Mutex<Queue>,
    /// Bumped at each completion notification.
    ended: watch::Receiver<u64>,
    stop_listening: CancellationToken,
    pub(super) plugins: super::remote_plugins::Declarations,
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop_listening.cancel();
    }
}

impl Remote {
    /// Connects to the queue in `schema` (migrating it), and listens for the
    /// ends of tasks on a second connection.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, QueueError> {
        let queue = Queue::connect(url, schema, "runner run (coordinator)").await?;
        let listener = Queue::connect(url, schema, "runner run (coordinator, listening)").await?;
        listener.listen_done().await?;
        let (bump, ended) = watch::channel(0u64);
        let stop_listening = CancellationToken::new();
        let stop = stop_listening.clone();
        tokio::spawn(async move {
            while !listener.is_closed() {
                tokio::select! {
                    () = listener.woken() => bump.send_modify(|n| *n += 1),
                    () = stop.cancelled() => break,
                }
            }
        });
        Ok(Self {
            url: url.to_string(),
            schema: schema.to_string(),
            queue: tokio::sync::Mutex::new(queue),
            ended,
            stop_listening,
            plugins: Default::default(),
        })
    }

    /// The statement connection, reconnected when it ended.
    pub(super) async fn queue(&self) -> Result<tokio::sync::MutexGuard<'_, Queue>, QueueError> {
        let mut queue = self.queue.lock().await;
        if queue.is_closed() {
            *queue = Queue::connect(&self.url, &self.schema, "runner run (coordinator)").await?;
        }
        Ok(queue)
    }

    /// Enqueues `task` in `pool`, limited to `max_running`; its id. A lost
    /// connection is retried for [`LOST_FOR`] (see the module docs).
    async fn enqueue(
        &self,
        pool: &str,
        max_running: usize,
        mut task: NewTask,
    ) -> Result<i64, QueueError> {
        let key = uuid::Uuid::now_v7().to_string();
        task.payload["dispatch"] = json!(key);
        let mut lost_since: Option<Instant> = None;
        loop {
            match self
                .enqueue_once(pool, max_running, &task, &key, lost_since.is_some())
                .await
            {
                Err(err) if err.is_disconnect() => {
                    let since = *lost_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > LOST_FOR {
                        return Err(err);
                    }
                    tokio::time::sleep(POLL).await;
                }
                other => return other,
            }
        }
    }

    async fn enqueue_once(
        &self,
        pool: &str,
        max_running: usize,
        task: &NewTask,
        key: &str,
        retrying: bool,
    ) -> Result<i64, QueueError> {
        let mut queue = self.queue().await?;
        let max = i32::try_from(max_running).unwrap_or(i32::MAX).max(1);
        queue.set_pool(pool, max).await?;
        if retrying && let Some(id) = queue.task_dispatched_as(key).await? {
            return Ok(id);
        }
        let ids = queue.enqueue(std::slice::from_ref(task)).await?;
        Ok(ids[0])
    }

    /// One look at task `id`: tells `watch` what happened since the last
    /// (`last_claim` is the last claim it was told of); the task's row.
    ///
    /// The output is taken before the row is read and the claims after it,
    /// so every claim of an attempt whose output was taken is known; when
    /// the row says the task ended, the output is taken once more: its
    /// worker wrote all of it before the end.
    async fn look(
        &self,
        id: i64,
        last_claim: &mut i64,
        watch: &mut impl FnMut(Seen<'_>),
    ) -> Result<Option<TaskRow>, QueueError> {
        let queue = self.queue().await?;
        let mut output = queue.take_output(id).await?;
        let row = queue.task(id).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let ended = row.state == "completed" || row.state == "failed";
        let claims = if row.state == "queued" && output.is_empty() {
            Vec::new()
        } else {
            queue.claims_of(id, *last_claim).await?
        };
        if ended {
            output.extend(queue.take_output(id).await?);
        }
        drop(queue);
        let mut claims = claims.iter().peekable();
        for piece in &output {
            while let Some(claim) = claims.next_if(|claim| claim.attempt <= piece.attempt) {
                *last_claim = claim.seq;
                watch(Seen::Claimed(claim));
            }
            watch(Seen::Output(piece));
        }
        for claim in claims {
            *last_claim = claim.seq;
            watch(Seen::Claimed(claim));
        }
        if row.state == "queued" {
            watch(Seen::Unclaimed);
        }
        Ok(Some(row))
    }

    /// Waits for task `id` to end (`Some`), or for `until` and then the
    /// task's stop (`None`), bounded; `watch` is told of its claims and
    /// output meanwhile.
    async fn wait(
        &self,
        id: i64,
        until: &CancellationToken,
        deadline: Option<Instant>,
        watch: &mut impl FnMut(Seen<'_>),
    ) -> Result<Option<TaskRow>, QueueError> {
        let mut ended = self.ended.clone();
        let mut lost_since: Option<Instant> = None;
        let mut last_claim = 0;
        loop {
            let mut poll = POLL;
            match self.look(id, &mut last_claim, watch).await {
                Ok(Some(row)) if row.state == "completed" || row.state == "failed" => {
                    return Ok(Some(row));
                }
                Ok(row) => {
                    lost_since = None;
                    if row.is_some_and(|row| row.state == "running") {
                        poll = OUTPUT_POLL;
                    }
                }
                Err(err) if err.is_disconnect() => {
                    let since = *lost_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > LOST_FOR {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(None);
            }
            tokio::select! {
                changed = ended.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(poll).await;
                    }
                }
                () = tokio::time::sleep(poll) => {}
                () = until.cancelled() => return Ok(None),
            }
        }
    }

    /// Cancels task `id` and waits, up to [`STOP_WAIT`], for a running one
    /// to be stopped by its worker (`watch` is told of its output until then).
    async fn cancel(&self, id: i64, watch: &mut impl FnMut(Seen<'_>)) -> Result<(), QueueError> {
        let state = self
            .queue()
            .await?
            .cancel(id, "cancelled: its run was aborted")
            .await?;
        if state.as_deref() == Some("running") {
            let never = CancellationToken::new();
            self.wait(id, &never, Some(Instant::now() + STOP_WAIT), watch)
                .await?;
        }
        Ok(())
    }

    /// Removes a finished run's pool.
    pub(super) async fn end_run(&self, run_id: &str) -> Result<(), QueueError> {
        self.plugins.forget(run_id);
        let queue = self.queue().await?;
        queue.forget_run_spent(run_id).await?;
        queue.drop_pool(&pool_of(run_id)).await
    }
}

impl RunCtx {
    /// Whether `task` goes to a worker ([`payload`] builds it then).
    pub(super) fn dispatches(&self, task: &Task) -> bool {
        self.remote.is_some()
            && match &task.kind {
                TaskKind::Exec => true,
                TaskKind::Script(name) | TaskKind::Plugin(name) => self
                    .plugins
                    .get(name)
                    .is_some_and(|plugin| super::remote_plugins::remote_kind(plugin).is_some()),
                // Whether it does is decided at its start (`remote_agents.rs`);
                // an agent task holds no local slot until its agent runs it either way.
                TaskKind::Agent(_) => false,
            }
    }

    /// Runs `task` on a worker: enqueues `payload`, waits for its end and
    /// turns the result into the outcome a local run gives.
    pub(super) async fn execute_remote(
        &self,
        remote: &Remote,
        batch: &Batch,
        spec: &TaskSpec,
        task: &Task,
        payload: Result<Value, String>,
        chunker: &Mutex<Chunker>,
    ) -> TaskOutcome {
        let mut payload = match payload {
            Ok(payload) => payload,
            Err(message) => return TaskOutcome::failed(message, None),
        };
        if let Err(message) = remote.declare_plugins(self).await {
            return TaskOutcome::failed(message, None);
        }
        let block = (payload["kind"] == "block").then(|| {
            payload["plugin"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let agent = (payload["kind"] == "agent")
            .then(|| payload["agent"]["name"].as_str().unwrap_or_default())
            .and_then(|name| self.config.agents.get(name));
        payload["run"] = json!(self.run_id);
        payload["task"] = json!(spec.id);
        payload["batch"] = json!(batch.id);
        payload["output_limit"] = json!(task.output);
        let source = payload["plugin"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let pool = pool_of(&self.run_id);
        let new = NewTask::new(rank(task.priority), payload).in_pool(pool.clone());
        let concurrency = self.config.defaults.concurrency;
        let enqueued = match agent {
            Some(decl) => remote.enqueue_agent(&pool, concurrency, decl, new).await,
            None => remote.enqueue(&pool, concurrency, new).await.map(Ok),
        };
        let id = match enqueued {
            Ok(Ok(id)) => id,
            Ok(Err(refusal)) => return TaskOutcome::failed(refusal.to_string(), None),
            Err(err) => return TaskOutcome::failed(format!("cannot queue the task: {err}"), None),
        };
        self.log(
            Some(&spec.id),
            LogLevel::Debug,
            format!("queued as task {id} of queue schema `{}`", remote.schema),
        );
        let mut heard = super::remote_heard::Heard::new(&spec.id, &batch.id, &source);
        heard.turn =
            agent.map(|decl| super::remote_agents::RemoteTurn::new(&decl.name, task.priority));
        let mut watch = |seen: Seen<'_>| heard.saw(self, remote, chunker, seen);
        let row = match remote.wait(id, &self.cancel, None, &mut watch).await {
            Ok(Some(row)) => row,
            Ok(None) => {
                if let Err(err) = remote.cancel(id, &mut watch).await {
                    self.log(
                        Some(&spec.id),
                        LogLevel::Warn,
                        format!("cannot cancel queue task {id}: {err}"),
                    );
                }
                if let Some(turn) = &mut heard.turn {
                    let error = Some("interrupted: its run was aborted".to_string());
                    turn.end(self, &spec.id, CommandStatus::Interrupted, None, error);
                }
                return TaskOutcome::interrupted();
            }
            Err(err) => {
                let error = format!("lost queue task {id} while waiting for it: {err}");
                if let Some(turn) = &mut heard.turn {
                    turn.end(
                        self,
                        &spec.id,
                        CommandStatus::Failed,
                        None,
                        Some(error.clone()),
                    );
                }
                return TaskOutcome::failed(error, None);
            }
        };
        if let Some(turn) = &mut heard.turn {
            if heard.cut {
                self.log(
                    Some(&spec.id),
                    LogLevel::Warn,
                    format!(
                        "the agent's events were cut at {} on the worker (the `output` limit): the rest of its activity and terminal output was not sent",
                        crate::units::format_size_exact(task.output)
                    ),
                );
            }
            let (status, error) = match row.state.as_str() {
                "completed" => (CommandStatus::Completed, None),
                _ => (CommandStatus::Failed, row.error.clone()),
            };
            let exit_code = row
                .result
                .as_ref()
                .and_then(|result| result["exit_code"].as_i64());
            let exit_code = exit_code.and_then(|code| i32::try_from(code).ok());
            let command_id = turn.end(self, &spec.id, status, exit_code, error);
            return self.agent_outcome(row, command_id);
        }
        let result = row.result.unwrap_or(Value::Null);
        let streamed = result.get("streamed") == Some(&Value::Bool(true));
        let dropped = result["output_cut"]["dropped_bytes"].as_u64();
        match dropped {
            Some(dropped) => chunker.lock().expect("chunker lock").dropped(dropped),
            None if heard.cut => self.log(
                Some(&spec.id),
                LogLevel::Warn,
                format!(
                    "output cut at {} on the worker (the `output` limit)",
                    crate::units::format_size_exact(task.output)
                ),
            ),
            None => {}
        }
        if let Some(plugin) = block {
            let completed = row.state == "completed";
            return self.block_outcome(&spec.id, &plugin, completed, row.error, &result);
        }
        let tail = result.get("output").and_then(Value::as_str);
        if let Some(output) = tail.filter(|_| !streamed) {
            let chunks = chunker
                .lock()
                .expect("chunker lock")
                .push(Stream::Stdout, output.as_bytes());
            self.output_chunks(&spec.id, Stream::Stdout, chunks);
        }
        let exit_code = result
            .get("exit_code")
            .and_then(Value::as_i64)
            .and_then(|code| i32::try_from(code).ok());
        if row.state == "completed" {
            let stdout = chunker.lock().expect("chunker lock").stdout_tail();
            TaskOutcome::completed(super::execute::process_output(0, stdout), Some(0))
        } else {
            let error = row
                .error
                .unwrap_or_else(|| format!("queue task {id} failed on its worker"));
            TaskOutcome::failed(error, exit_code)
        }
    }
}
