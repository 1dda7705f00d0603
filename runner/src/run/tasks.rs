//! A batch's tasks: expanded from the batch, run through the queue (each
//! with its sink and its input), and reduced back into the batch.

use super::*;
use crate::config::{Batch, Task, TaskKind};
use crate::plugin::{ExecutionMode, Signal, Sink, TaskResult, TaskSpec, TaskState};
use crate::process::output::{self, Chunker};
use chrono::{DateTime, Utc};
use protocol::{BatchStatus, EventKind, LogLevel, Stream, TaskStatus};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// How one task ended.
pub(super) struct TaskOutcome {
    pub(super) status: TaskStatus,
    pub(super) output: Option<Value>,
    pub(super) error: Option<String>,
    pub(super) exit_code: Option<i32>,
    /// Output dropped past the task's limit.
    pub(super) output_cut: Option<output::OutputCut>,
}

impl TaskOutcome {
    /// The `result` of its `task_finished`: the output, saying whether the
    /// terminal output was cut (later tasks see the output as it is).
    pub(super) fn result(&self) -> Option<Value> {
        match self.output_cut {
            Some(cut) => Some(cut.annotate(self.output.clone())),
            None => self.output.clone(),
        }
    }

    pub(super) fn completed(output: Value, exit_code: Option<i32>) -> Self {
        Self {
            status: TaskStatus::Completed,
            output: Some(output),
            error: None,
            exit_code,
            output_cut: None,
        }
    }

    pub(super) fn failed(error: impl Into<String>, exit_code: Option<i32>) -> Self {
        Self {
            status: TaskStatus::Failed,
            output: None,
            error: Some(error.into()),
            exit_code,
            output_cut: None,
        }
    }

    pub(super) fn interrupted() -> Self {
        Self {
            status: TaskStatus::Interrupted,
            output: None,
            error: Some("the run was aborted".into()),
            exit_code: None,
            output_cut: None,
        }
    }
}

impl RunCtx {
    /// Expands the batch, runs its tasks in `dir` and reduces their results.
    pub(super) async fn run_tasks(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
        dir: Arc<PathBuf>,
    ) -> (BatchStatus, Option<String>, Option<String>) {
        let fail = |error: String| (BatchStatus::Failed, Some(error), None);
        let Some(plugin) = self.plugins.get(&batch.batch_type).cloned() else {
            return fail(format!("batch type `{}` is not loaded", batch.batch_type));
        };
        let with = batch.with.to_string();
        let declared: Vec<TaskSpec> = batch
            .tasks
            .iter()
            .map(|t| TaskSpec {
                id: t.id.clone(),
                name: t.name.clone(),
                template: t.id.clone(),
                config: t.config.to_string(),
            })
            .collect();
        let sink = self.batch_sink(&batch.batch_type);
        let expansion = match plugin.expand(&with, &declared, sink.clone()).await {
            Ok(Ok(expansion)) => expansion,
            Ok(Err(message)) => {
                return fail(format!(
                    "batch type `{}` refused the batch: {message}",
                    batch.batch_type
                ));
            }
            Err(err) => return fail(format!("batch type `{}` {err}", batch.batch_type)),
        };
        if let Err(message) = check_expansion(batch, &expansion.tasks) {
            return fail(format!(
                "batch type `{}` expanded the batch wrongly: {message}",
                batch.batch_type
            ));
        }
        // A task names its template by index: nothing of it is copied.
        let templates: HashMap<&str, usize> = batch
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let shared = batch.clone();
        let any_failed = Arc::new(AtomicBool::new(false));
        let fail_fast = expansion.fail_fast;
        let mut results: Vec<TaskResult> = Vec::with_capacity(expansion.tasks.len());
        match expansion.mode {
            ExecutionMode::Sequential => {
                for spec in &expansion.tasks {
                    let task = templates[spec.template.as_str()];
                    let result = self
                        .clone()
                        .run_task(
                            shared.clone(),
                            dir.clone(),
                            spec.clone(),
                            task,
                            fail_fast,
                            any_failed.clone(),
                        )
                        .await;
                    results.push(result);
                }
            }
            ExecutionMode::Parallel => {
                let mut set = JoinSet::new();
                for (index, spec) in expansion.tasks.iter().enumerate() {
                    let task = templates[spec.template.as_str()];
                    let (ctx, batch, spec, flag) = (
                        self.clone(),
                        shared.clone(),
                        spec.clone(),
                        any_failed.clone(),
                    );
                    let dir = dir.clone();
                    set.spawn(async move {
                        (
                            index,
                            ctx.run_task(batch, dir, spec, task, fail_fast, flag).await,
                        )
                    });
                }
                let mut indexed = Vec::new();
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok(pair) => indexed.push(pair),
                        Err(err) => {
                            self.log(None, LogLevel::Error, format!("a task panicked: {err}"))
                        }
                    }
                }
                indexed.sort_by_key(|(index, _)| *index);
                results.extend(indexed.into_iter().map(|(_, result)| result));
            }
        }
        if self.cancel.is_cancelled() {
            return fail("the run was aborted".into());
        }
        let outcome = match plugin.reduce(&with, &results, sink).await {
            Ok(outcome) => outcome,
            Err(err) => return fail(format!("batch type `{}` {err}", batch.batch_type)),
        };
        if outcome.completed {
            (BatchStatus::Completed, None, Some(outcome.summary))
        } else {
            let error = outcome.error.unwrap_or_else(|| outcome.summary.clone());
            (BatchStatus::Failed, Some(error), Some(outcome.summary))
        }
    }

    pub(super) async fn run_task(
        self: Arc<Self>,
        batch: Arc<Batch>,
        dir: Arc<PathBuf>,
        spec: TaskSpec,
        task: usize,
        fail_fast: bool,
        any_failed: Arc<AtomicBool>,
    ) -> TaskResult {
        let task = &batch.tasks[task];
        let finish =
            |status: TaskStatus, started_at: Option<DateTime<Utc>>, outcome: &TaskOutcome| {
                let finished_at = Utc::now();
                let duration_ms =
                    started_at.map_or(0, |s| (finished_at - s).num_milliseconds().max(0) as u64);
                self.publish(EventKind::TaskFinished {
                    run_id: self.run_id.clone(),
                    batch_id: batch.id.clone(),
                    task_id: spec.id.clone(),
                    task_type: task.kind.type_name().to_string(),
                    name: spec.name.clone(),
                    status,
                    started_at,
                    finished_at,
                    duration_ms,
                    result: outcome.result(),
                    error: outcome.error.clone(),
                    exit_code: outcome.exit_code,
                });
            };
        let skip = |reason: &str| {
            let outcome = TaskOutcome {
                status: TaskStatus::Skipped,
                output: None,
                error: Some(reason.into()),
                exit_code: None,
                output_cut: None,
            };
            finish(TaskStatus::Skipped, None, &outcome);
            TaskResult {
                id: spec.id.clone(),
                state: TaskState::Skipped,
                output: None,
                error: outcome.error,
            }
        };
        if fail_fast && any_failed.load(Ordering::SeqCst) {
            return skip("an earlier task of the batch failed");
        }
        let interrupted = || {
            let outcome = TaskOutcome::interrupted();
            finish(TaskStatus::Interrupted, None, &outcome);
            TaskResult {
                id: spec.id.clone(),
                state: TaskState::Failed,
                output: None,
                error: outcome.error,
            }
        };
        // An agent task takes a slot only when its agent takes its command
        // (`Agents::submit_for_run`): waiting in the agent's queue holds none.
        // A task a worker runs is limited by its run's pool in the queue.
        let config: Value = serde_json::from_str(&spec.config).unwrap_or(Value::Null);
        let dispatched = self.dispatches(task);
        let permit = match task.kind {
            TaskKind::Agent(_) if self.cancel.is_cancelled() => return interrupted(),
            TaskKind::Agent(_) => None,
            _ if dispatched && self.cancel.is_cancelled() => return interrupted(),
            _ if dispatched => None,
            _ => tokio::select! {
                permit = self.slots.acquire(task.priority) => Some(permit),
                _ = self.cancel.cancelled() => return interrupted(),
            },
        };
        if fail_fast && any_failed.load(Ordering::SeqCst) {
            return skip("an earlier task of the batch failed");
        }
        let started_at = Utc::now();
        self.publish(EventKind::TaskStarted {
            run_id: self.run_id.clone(),
            batch_id: batch.id.clone(),
            task_id: spec.id.clone(),
            task_type: task.kind.type_name().to_string(),
            name: spec.name.clone(),
            priority: task.priority,
            display_text: None,
        });
        // Boxed: a task waiting for its slot holds a small future, not
        // the state of every executor (a 10,000-task batch spawns them all).
        let outcome = Box::pin(self.execute(&batch, &dir, &spec, task, &config)).await;
        drop(permit);
        if outcome.status != TaskStatus::Completed {
            any_failed.store(true, Ordering::SeqCst);
        }
        if let Some(output) = &outcome.output {
            self.outputs
                .lock()
                .expect("outputs lock")
                .insert(spec.id.clone(), output.clone());
        }
        finish(outcome.status, Some(started_at), &outcome);
        TaskResult {
            id: spec.id.clone(),
            state: if outcome.status == TaskStatus::Completed {
                TaskState::Completed
            } else {
                TaskState::Failed
            },
            output: outcome.output.as_ref().map(Value::to_string),
            error: outcome.error,
        }
    }

    /// A sink for a task: output becomes numbered chunks, logs and progress
    /// become the task's events.
    pub(super) fn task_sink(
        self: &Arc<Self>,
        batch: &Batch,
        task_id: &str,
        source: &str,
        chunker: Arc<Mutex<Chunker>>,
    ) -> Sink {
        let (ctx, batch_id, task_id, source) = (
            self.clone(),
            batch.id.clone(),
            task_id.to_string(),
            source.to_string(),
        );
        Arc::new(move |signal| match signal {
            Signal::Output { stream, data } => {
                let chunks = chunker.lock().expect("chunker lock").push(stream, &data);
                ctx.output_chunks(&task_id, stream, chunks);
            }
            Signal::Log { level, message } => ctx.publish(EventKind::log(
                Some(ctx.run_id.clone()),
                Some(task_id.clone()),
                level,
                source.clone(),
                message,
            )),
            Signal::Progress {
                display_text,
                percent,
            } => ctx.publish(EventKind::TaskProgress {
                run_id: ctx.run_id.clone(),
                batch_id: batch_id.clone(),
                task_id: task_id.clone(),
                display_text,
                percent,
            }),
        })
    }

    pub(super) fn output_chunks(&self, task_id: &str, stream: Stream, chunks: Vec<(u64, String)>) {
        for (sequence, data) in chunks {
            self.publish(EventKind::TerminalOutput {
                run_id: Some(self.run_id.clone()),
                task_id: Some(task_id.to_string()),
                command_id: None,
                stream,
                sequence,
                data,
            });
        }
    }

    /// The input of a block, as JSON text, serialized straight from the
    /// shared outputs (no copy of them).
    pub(super) fn input(&self, batch: &Batch, spec: &TaskSpec, task: &Task) -> String {
        #[derive(serde::Serialize)]
        struct Input<'a> {
            run: Value,
            batch: Value,
            task: Value,
            outputs: &'a Map<String, Value>,
        }
        let outputs = self.outputs.lock().expect("outputs lock");
        let input = Input {
            run: json!({ "id": self.run_id, "pipeline": self.pipeline }),
            batch: json!({ "id": batch.id, "name": batch.name }),
            task: json!({ "id": spec.id, "name": spec.name, "type": task.kind.type_name() }),
            outputs: &outputs,
        };
        serde_json::to_string(&input).expect("JSON values serialize")
    }
}

/// Expanded tasks must come from declared tasks and have distinct ids.
pub(super) fn check_expansion(batch: &Batch, tasks: &[TaskSpec]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let declared: std::collections::HashSet<&str> =
        batch.tasks.iter().map(|t| t.id.as_str()).collect();
    for spec in tasks {
        if !declared.contains(spec.template.as_str()) {
            return Err(format!(
                "task `{}` names template `{}`, which the batch does not declare",
                spec.id, spec.template
            ));
        }
        if !seen.insert(spec.id.as_str()) {
            return Err(format!("task id `{}` appears twice", spec.id));
        }
        if serde_json::from_str::<Value>(&spec.config).is_err() {
            return Err(format!("task `{}` has a config that is not JSON", spec.id));
        }
    }
    Ok(())
}
