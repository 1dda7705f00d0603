//! One batch: its status, its workspace around its tasks, and the setup
//! and cleanup scripts, each recorded as an execution of its own.

use super::RunCtx;
use crate::config::Batch;
use crate::plugin::{Signal, Sink};
use crate::process::exec;
use crate::process::output::Chunker;
use protocol::{BatchStatus, EventKind, ExecutionState, LogLevel, RunReason, Stream};
use std::sync::Arc;

impl RunCtx {
    pub(super) fn batch_status(
        &self,
        batch: &Batch,
        status: BatchStatus,
        error: Option<String>,
        summary: Option<String>,
    ) {
        self.publish(EventKind::BatchStatus {
            run_id: self.run_id.clone(),
            pipeline: self.pipeline.clone(),
            batch_id: batch.id.clone(),
            batch_name: batch.name.clone(),
            status,
            branch: None,
            error,
            summary,
            depends_on: if status == BatchStatus::Pending {
                batch.depends_on.clone()
            } else {
                Vec::new()
            },
        });
    }

    /// A sink for a batch-type plugin: its logs become run logs.
    pub(super) fn batch_sink(self: &Arc<Self>, plugin: &str) -> Sink {
        let (ctx, plugin) = (self.clone(), plugin.to_string());
        Arc::new(move |signal| {
            if let Signal::Log { level, message } = signal {
                ctx.publish(EventKind::log(
                    Some(ctx.run_id.clone()),
                    None,
                    level,
                    plugin.clone(),
                    message,
                ));
            }
        })
    }

    /// Runs one batch in its own workspace: a git worktree on its own
    /// branch when the project is a repository, else the project directory.
    pub(super) async fn run_batch(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
    ) -> (BatchStatus, Option<String>) {
        self.batch_status(batch, BatchStatus::Running, None, None);
        let workspace = match self.prepare_workspace(batch).await {
            Ok(workspace) => workspace,
            Err(error) => {
                let error = format!("cannot prepare the batch's git workspace: {error}");
                self.batch_status(batch, BatchStatus::Failed, Some(error.clone()), None);
                return (BatchStatus::Failed, Some(error));
            }
        };
        if let Err(error) = self.share_batch(batch, workspace.as_ref()).await {
            if let Some(workspace) = &workspace {
                let _ = self.finish_workspace(batch, workspace, false).await;
            }
            self.batch_status(batch, BatchStatus::Failed, Some(error.clone()), None);
            return (BatchStatus::Failed, Some(error));
        }
        let dir = workspace
            .as_ref()
            .map_or_else(|| self.config.base_dir.clone(), |ws| ws.dir.clone());
        // A batch type that tries the batch on several branches runs the
        // setup and cleanup scripts in each attempt's worktree instead.
        let attempts = self
            .plugins
            .get(&batch.batch_type)
            .filter(|plugin| plugin.plans_attempts())
            .cloned();
        let setup = match &self.config.git.setup {
            Some(script) if attempts.is_none() => {
                self.execution(batch, &dir, RunReason::SetupScript, script)
                    .await
            }
            _ => Ok(()),
        };
        let (mut status, mut error, summary) = match (setup, attempts) {
            (Ok(()), Some(plugin)) => self.run_attempts(batch, &plugin, workspace.as_ref()).await,
            (Ok(()), None) => self.run_tasks(batch, Arc::new(dir.clone())).await,
            (Err(message), _) => (
                BatchStatus::Failed,
                Some(format!("the setup script failed: {message}")),
                None,
            ),
        };
        let (mut branch, mut merge_failed) = (None, false);
        if let Some(workspace) = workspace {
            // Work pushed by workers comes back before the batch is committed.
            if let Err(message) = self.take_back(batch, &workspace).await {
                if status == BatchStatus::Completed {
                    status = BatchStatus::Failed;
                    error = Some(message);
                } else {
                    self.log(
                        None,
                        LogLevel::Error,
                        format!("batch `{}`: {message}", batch.id),
                    );
                }
            }
            match self
                .finish_workspace(batch, &workspace, status == BatchStatus::Completed)
                .await
            {
                Ok(None) => branch = Some(workspace.branch.clone()),
                // The work is committed on its branch, but not where the user
                // asked for it: the batch fails, naming the branch.
                Ok(Some(merge_error)) => {
                    branch = Some(workspace.branch.clone());
                    merge_failed = true;
                    status = BatchStatus::Failed;
                    error = Some(merge_error);
                }
                Err(message) if status == BatchStatus::Completed => {
                    status = BatchStatus::Failed;
                    error = Some(format!("cannot commit the batch's changes: {message}"));
                }
                Err(message) => self.log(
                    None,
                    LogLevel::Error,
                    format!("batch `{}`: {message}", batch.id),
                ),
            }
        }
        if let Some(script) = &self.config.git.cleanup
            && !self
                .plugins
                .get(&batch.batch_type)
                .is_some_and(|plugin| plugin.plans_attempts())
            && let Err(message) = self
                .execution(batch, &dir, RunReason::CleanupScript, script)
                .await
        {
            self.log(
                None,
                LogLevel::Warn,
                format!("batch `{}`: the cleanup script failed: {message}", batch.id),
            );
        }
        self.batch_dirs
            .lock()
            .expect("batch dirs lock")
            .remove(&batch.id);
        self.publish(EventKind::BatchStatus {
            run_id: self.run_id.clone(),
            pipeline: self.pipeline.clone(),
            batch_id: batch.id.clone(),
            batch_name: batch.name.clone(),
            status,
            // A batch whose merge failed still names the branch its work is on.
            branch: if status == BatchStatus::Completed || merge_failed {
                branch
            } else {
                None
            },
            error: error.clone(),
            summary,
            depends_on: Vec::new(),
        });
        (status, error)
    }

    /// A setup or cleanup script, recorded as an execution of its own.
    pub(super) async fn execution(
        &self,
        batch: &Batch,
        dir: &std::path::Path,
        reason: RunReason,
        script: &str,
    ) -> Result<(), String> {
        let prefix = if reason == RunReason::SetupScript {
            "setup"
        } else {
            "cleanup"
        };
        let execution_id = format!("{prefix}:{}", batch.id);
        match self
            .execution_as(batch, &execution_id, dir, reason, script)
            .await
            .2
        {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// A command of the batch that is not one of its tasks, recorded as
    /// execution `execution_id`: how it ended, its exit code and its error.
    pub(super) async fn execution_as(
        &self,
        batch: &Batch,
        execution_id: &str,
        dir: &std::path::Path,
        reason: RunReason,
        script: &str,
    ) -> (ExecutionState, Option<i32>, Option<String>) {
        let execution_id = execution_id.to_string();
        let status = |status: ExecutionState, exit_code: Option<i32>, error: Option<String>| {
            self.publish(EventKind::ExecutionStatus {
                run_id: self.run_id.clone(),
                batch_id: batch.id.clone(),
                execution_id: execution_id.clone(),
                reason,
                command: script.to_string(),
                status,
                exit_code,
                error,
            });
        };
        status(ExecutionState::Running, None, None);
        let spec = exec::ExecSpec::shell(script, dir);
        let mut chunker = Chunker::with_limit(self.config.defaults.output);
        let on_output = |stream: Stream, data: &[u8]| {
            let chunks = chunker.push(stream, data);
            self.output_chunks(&execution_id, stream, chunks);
        };
        let timeout = self.config.defaults.timeout;
        let (state, code, error) = match exec::run(&spec, timeout, &self.cancel, on_output).await {
            Ok(exec::Ending::Aborted) => (
                ExecutionState::Interrupted,
                None,
                Some("the run was aborted".into()),
            ),
            Ok(ending) => (
                ending.state(),
                ending.exit_code(),
                ending.error(&format!("`{script}`"), timeout),
            ),
            Err(err) => (ExecutionState::Failed, None, Some(format!("{err:#}"))),
        };
        if let Some(cut) = chunker.cut() {
            self.log(Some(&execution_id), LogLevel::Warn, cut.message());
        }
        status(state, code, error.clone());
        (state, code, error)
    }
}
