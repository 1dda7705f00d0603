//! Runs a pipeline: batches in dependency order, tasks through one
//! priority queue under the concurrency limit, every change published as
//! an event.
//!
//! ## Failure
//! A failed batch fails its dependents without running them. A task that
//! traps, times out or runs out of memory fails alone; its batch type
//! decides what that means for the batch.
//!
//! ## On a cluster
//! With a [`Remote`] (`runner run --queue`), the tasks workers can run are
//! enqueued when they start and their ends awaited (see `remote.rs`);
//! the rest runs here. With `[git] remote`, they work on their batch's
//! branch there, fetched back and merged here (`remote_git.rs`).
//!
//! ## Abort
//! Cancelling the token stops running tasks (process groups are killed,
//! wasm calls dropped), marks them `interrupted`, fails the batches that
//! were running or waiting, and ends the run `aborted`.

mod attempts;
mod batch;
mod execute;
mod remote;
mod remote_agents;
mod remote_git;
mod remote_heard;
mod remote_plugins;
mod tasks;
mod workspace;

use crate::agents::{Agents, RunBudget};
use crate::config::{Batch, Config, ConfigError, DirGrant};
use crate::events::EventBus;
use crate::git::Project as GitProject;
use crate::plugin::{Plugins, check_worlds};
use crate::slots::Slots;
use protocol::{BatchStatus, EventKind, LogLevel, RunStatus};
pub use remote::Remote;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs pipelines of one `runner.toml`.
pub struct Runner {
    config: Arc<Config>,
    plugins: Arc<Plugins>,
    bus: Arc<EventBus>,
    slots: Arc<Slots>,
    agents: Arc<Agents>,
    remote: Option<Arc<Remote>>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Every batch's final status, in pipeline order.
    pub batches: Vec<(String, BatchStatus)>,
    /// Every completed task's output by task id (reused ones included).
    pub outputs: Map<String, Value>,
}

/// Which batches a run runs; the others count as completed with the
/// outputs of an earlier run (`runner watch` re-runs only what changed).
///
/// `only` must hold every dependent of each batch it holds: a batch that is
/// not run is never waiting on one that is.
#[derive(Debug, Clone, Default)]
pub struct RunScope {
    pub only: std::collections::HashSet<String>,
    /// Outputs of the batches that are not run, by task id.
    pub reused_outputs: Map<String, Value>,
}

impl Runner {
    /// Checks that every batch type is a batch plugin and every task plugin
    /// a block or a command, for the plugins that were loaded.
    pub fn new(
        config: Arc<Config>,
        plugins: Arc<Plugins>,
        bus: Arc<EventBus>,
    ) -> Result<Self, ConfigError> {
        check_worlds(&config, &plugins)?;
        let slots = Slots::new(config.defaults.concurrency);
        let agents = Agents::new(&config.agents, plugins.clone(), bus.clone());
        Ok(Self {
            config,
            plugins,
            bus,
            slots,
            agents,
            remote: None,
        })
    }

    /// The same runner, handing the tasks workers can run to `remote`'s queue.
    pub fn with_remote(self, remote: Remote) -> Self {
        Self {
            remote: Some(Arc::new(remote)),
            ..self
        }
    }

    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }

    pub fn agents(&self) -> &Arc<Agents> {
        &self.agents
    }

    /// Runs `pipeline` to its end (or until `cancel`).
    pub async fn run(&self, pipeline: &str, cancel: CancellationToken) -> RunReport {
        self.run_with_id(new_run_id(), pipeline, cancel).await
    }

    /// Like [`Runner::run`], under a run id chosen by the caller.
    pub async fn run_with_id(
        &self,
        run_id: String,
        pipeline: &str,
        cancel: CancellationToken,
    ) -> RunReport {
        self.run_scoped(run_id, pipeline, cancel, None).await
    }

    /// Like [`Runner::run_with_id`], running only the batches in `scope`
    /// (every batch when `None`); the others are reported completed
    /// ("not re-run") and their `reused_outputs` stay available to later tasks.
    pub async fn run_scoped(
        &self,
        run_id: String,
        pipeline: &str,
        cancel: CancellationToken,
        scope: Option<RunScope>,
    ) -> RunReport {
        let pipeline = self
            .config
            .pipelines
            .get(pipeline)
            .cloned()
            .expect("pipeline was checked");
        let (project, notes) = self.open_project().await;
        let ctx = Arc::new(RunCtx {
            run_id: run_id.clone(),
            pipeline: pipeline.name.clone(),
            config: self.config.clone(),
            plugins: self.plugins.clone(),
            agents: self.agents.clone(),
            bus: self.bus.clone(),
            slots: self.slots.clone(),
            budget: (!self.config.defaults.run_budget.is_none())
                .then(|| Arc::new(RunBudget::new(self.config.defaults.run_budget))),
            cancel: cancel.clone(),
            outputs: Mutex::new(
                scope
                    .as_ref()
                    .map(|s| s.reused_outputs.clone())
                    .unwrap_or_default(),
            ),
            project,
            heads: Mutex::new(HashMap::new()),
            batch_dirs: Mutex::new(HashMap::new()),
            remote: self.remote.clone(),
            shared_batches: Mutex::new(HashMap::new()),
        });
        let started = Instant::now();
        ctx.publish(EventKind::RunStatus {
            run_id: run_id.clone(),
            pipeline: pipeline.name.clone(),
            status: RunStatus::Running,
            message: Some(format!("running pipeline `{}`", pipeline.name)),
            error: None,
        });
        for note in notes.into_iter().chain(ctx.remote_git_note()) {
            ctx.log(None, LogLevel::Warn, note);
        }
        for batch in &pipeline.batches {
            ctx.batch_status(batch, BatchStatus::Pending, None, None);
        }

        let mut states: HashMap<String, (BatchStatus, Option<String>)> = HashMap::new();
        let mut started_batches = std::collections::HashSet::new();
        let mut running = JoinSet::new();
        loop {
            for batch in &pipeline.batches {
                if started_batches.contains(&batch.id) {
                    continue;
                }
                if let Some(scope) = &scope
                    && !scope.only.contains(&batch.id)
                {
                    started_batches.insert(batch.id.clone());
                    let summary = "not re-run: its inputs did not change".to_string();
                    ctx.batch_status(batch, BatchStatus::Completed, None, Some(summary));
                    states.insert(batch.id.clone(), (BatchStatus::Completed, None));
                    continue;
                }
                if cancel.is_cancelled() {
                    started_batches.insert(batch.id.clone());
                    let error = "the run was aborted before this batch started".to_string();
                    ctx.batch_status(batch, BatchStatus::Failed, Some(error.clone()), None);
                    states.insert(batch.id.clone(), (BatchStatus::Failed, Some(error)));
                    continue;
                }
                let failed_dep = batch
                    .depends_on
                    .iter()
                    .find(|d| matches!(states.get(*d), Some((BatchStatus::Failed, _))));
                if let Some(dep) = failed_dep {
                    started_batches.insert(batch.id.clone());
                    let error = format!("dependency `{dep}` failed, so this batch did not run");
                    ctx.batch_status(batch, BatchStatus::Failed, Some(error.clone()), None);
                    states.insert(batch.id.clone(), (BatchStatus::Failed, Some(error)));
                    continue;
                }
                let ready = batch
                    .depends_on
                    .iter()
                    .all(|d| matches!(states.get(d), Some((BatchStatus::Completed, _))));
                if ready {
                    started_batches.insert(batch.id.clone());
                    let (ctx, batch) = (ctx.clone(), batch.clone());
                    running.spawn(async move {
                        let (status, error) = ctx.run_batch(&batch).await;
                        (batch.id.clone(), status, error)
                    });
                }
            }
            match running.join_next().await {
                Some(Ok((id, status, error))) => {
                    states.insert(id, (status, error));
                }
                Some(Err(err)) => {
                    // A panic in a batch is a bug; report it rather than hang.
                    ctx.log(
                        None,
                        LogLevel::Error,
                        format!("a batch task panicked: {err}"),
                    );
                }
                None if started_batches.len() == pipeline.batches.len() => break,
                None => {
                    // Nothing running and nothing ready: only possible when a
                    // batch panicked; fail what is left.
                    let left: Vec<&Arc<Batch>> = pipeline
                        .batches
                        .iter()
                        .filter(|b| !started_batches.contains(&b.id))
                        .collect();
                    for batch in left {
                        let error = "an earlier batch ended abnormally".to_string();
                        ctx.batch_status(batch, BatchStatus::Failed, Some(error.clone()), None);
                        states.insert(batch.id.clone(), (BatchStatus::Failed, Some(error)));
                        started_batches.insert(batch.id.clone());
                    }
                }
            }
        }

        let batches: Vec<(String, BatchStatus)> = pipeline
            .batches
            .iter()
            .map(|b| {
                (
                    b.id.clone(),
                    states.get(&b.id).map_or(BatchStatus::Failed, |s| s.0),
                )
            })
            .collect();
        let failed: Vec<&str> = batches
            .iter()
            .filter(|(_, s)| *s != BatchStatus::Completed)
            .map(|(id, _)| id.as_str())
            .collect();
        let elapsed = crate::units::format_elapsed(started.elapsed());
        let (status, error, message) = if cancel.is_cancelled() {
            (
                RunStatus::Aborted,
                Some("the run was aborted".to_string()),
                format!("aborted after {elapsed}"),
            )
        } else if failed.is_empty() {
            (
                RunStatus::Completed,
                None,
                format!("all {} batches completed in {elapsed}", batches.len()),
            )
        } else {
            // A batch whose task panicked has no state: it failed unsaid.
            let first = states.get(failed[0]).and_then(|s| s.1.clone());
            let error = format!(
                "{} of {} batches failed; batch `{}`: {}",
                failed.len(),
                batches.len(),
                failed[0],
                first.as_deref().unwrap_or("failed")
            );
            (
                RunStatus::Failed,
                Some(error),
                format!("failed after {elapsed}"),
            )
        };
        if let Some(remote) = &ctx.remote
            && let Err(err) = remote.end_run(&run_id).await
        {
            ctx.log(
                None,
                LogLevel::Warn,
                format!("cannot remove the run's pool from the queue: {err}"),
            );
        }
        ctx.publish(EventKind::RunStatus {
            run_id: run_id.clone(),
            pipeline: pipeline.name.clone(),
            status,
            message: Some(message),
            error: error.clone(),
        });
        let outputs = ctx.outputs.lock().expect("outputs lock").clone();
        RunReport {
            run_id,
            pipeline: pipeline.name.clone(),
            status,
            error,
            batches,
            outputs,
        }
    }
}

impl Runner {
    /// Opens the project's repository (sweeping worktrees a crashed run
    /// left); a directory that is not one runs without branches.
    async fn open_project(&self) -> (Arc<GitProject>, Vec<String>) {
        let (dir, state, settings) = (
            self.config.base_dir.clone(),
            self.config.state_dir().to_path_buf(),
            self.config.git.clone(),
        );
        let fallback = dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let mut notes = Vec::new();
            let project = match GitProject::open(&dir, &state, &settings) {
                Ok(project) => project,
                Err(err) => {
                    notes.push(format!("git: {err}; batches run without branches"));
                    GitProject::Plain {
                        dir: dir.clone(),
                        reason: err.to_string(),
                    }
                }
            };
            if let Some(workspaces) = project.workspaces() {
                notes.extend(workspaces.warnings().iter().map(|w| format!("git: {w}")));
                match workspaces.sweep_orphans() {
                    Ok(swept) => notes.extend(swept.iter().map(|s| {
                        let saved = s
                            .saved
                            .as_ref()
                            .map(|c| format!(" (its changes are saved as {c})"))
                            .unwrap_or_default();
                        format!(
                            "git: removed the worktree {} left by a stopped run{saved}",
                            s.path.display()
                        )
                    })),
                    Err(err) => notes.push(format!("git: cannot sweep old worktrees: {err}")),
                }
                match workspaces.prune_branches(false) {
                    Ok(pruned) if !pruned.removed.is_empty() => {
                        let names: Vec<&str> =
                            pruned.removed.iter().map(|b| b.branch.as_str()).collect();
                        notes.push(format!(
                            "git: deleted {} branch{} of old runs (`[git] keep_branches`): {}",
                            names.len(),
                            if names.len() == 1 { "" } else { "es" },
                            names.join(", ")
                        ));
                    }
                    Ok(_) => {}
                    Err(err) => notes.push(format!("git: cannot prune old branches: {err}")),
                }
            }
            (Arc::new(project), notes)
        })
        .await;
        opened.unwrap_or_else(|err| {
            let reason = format!("opening the repository panicked: {err}");
            (
                Arc::new(GitProject::Plain {
                    dir: fallback,
                    reason: reason.clone(),
                }),
                vec![reason],
            )
        })
    }
}

/// A new run id (see [`crate::ids::run_id`]).
pub fn new_run_id() -> String {
    crate::ids::run_id()
}

/// What one run shares between its batches and tasks.
struct RunCtx {
    run_id: String,
    pipeline: String,
    config: Arc<Config>,
    plugins: Arc<Plugins>,
    agents: Arc<Agents>,
    bus: Arc<EventBus>,
    slots: Arc<Slots>,
    /// What the run's agent commands may still spend (`[defaults]`).
    budget: Option<Arc<RunBudget>>,
    cancel: CancellationToken,
    /// Outputs of completed tasks, by task id: the `outputs` of later tasks' input.
    outputs: Mutex<Map<String, Value>>,
    /// The project's git repository, if it is one.
    project: Arc<GitProject>,
    /// Each finished batch's head after, by batch id: where dependents branch from.
    heads: Mutex<HashMap<String, String>>,
    /// By batch id, then plugin name: the plugin's granted directories as
    /// the batch's worktree has them (only while the batch runs).
    batch_dirs: Mutex<HashMap<String, HashMap<String, Vec<DirGrant>>>>,
    /// Where the tasks workers can run go (`runner run --queue`).
    remote: Option<Arc<Remote>>,
    /// By batch id: the batches whose branch is on `[git] remote`.
    shared_batches: Mutex<HashMap<std::path::PathBuf, remote_git::SharedBatch>>,
}

/// A run that ends any other way than through its last line (its future
/// dropped by a shutdown, a panic) still leaves no declaration behind in a
/// long-lived coordinator (`runner serve --queue`).
impl Drop for RunCtx {
    fn drop(&mut self) {
        if let Some(remote) = &self.remote {
            remote.plugins.forget(&self.run_id);
        }
    }
}

impl RunCtx {
    fn publish(&self, kind: EventKind) {
        self.bus.publish(kind);
    }

    fn log(&self, task_id: Option<&str>, level: LogLevel, message: String) {
        self.publish(EventKind::log(
            Some(self.run_id.clone()),
            task_id.map(str::to_string),
            level,
            "runner",
            message,
        ));
    }
}
