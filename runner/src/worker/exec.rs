//! `exec` payloads: the `exec` task's fields (`command`, `args`, `env`,
//! `timeout`), run in the worker's directory in a process group of their
//! own; the output goes to the worker's [`Tee`] as it comes, and the result
//! keeps the exit code and the end of the output. With a
//! `git` field the command runs in a worktree of a batch branch instead,
//! and what it changed is pushed back (`git.rs`).

use super::git::{self, GitTask};
use super::{Context, Tee, failed};
use crate::process::exec::{self, Ending, ExecSpec};
use crate::queue::{Lease, Outcome};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How much of a task's output its result keeps (the end of it).
const OUTPUT_TAIL: usize = 4096;
/// A task with no `timeout` may run this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub(super) async fn execute(
    context: &Context,
    lease: &Lease,
    cancel: &CancellationToken,
    tee: &Tee,
) -> Option<Outcome> {
    let git = match GitTask::from_payload(&lease.payload) {
        Ok(Some(git)) => git,
        Ok(None) => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
            return run(lease, &cwd, cancel, tee).await;
        }
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    let worktree = match git.checkout(context).await {
        Ok(worktree) => worktree,
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    let ran = run(lease, worktree.path(), cancel, tee).await;
    let (worktree, outcome) = match ran {
        Some(Outcome::Completed(mut result)) => {
            let message = format!("runner: task {} on {}", task_name(lease), context.name);
            let (worktree, published) = git.publish(worktree, message).await;
            let outcome = match published {
                Ok(pushed) => {
                    result["git"] = pushed;
                    Outcome::Completed(result)
                }
                Err(error) => Outcome::Failed {
                    error: format!("task {}: {error}", lease.task),
                    result,
                },
            };
            (worktree, Some(outcome))
        }
        other => (Some(worktree), other),
    };
    if let Some(worktree) = worktree {
        git::remove(worktree).await;
    }
    outcome
}

/// The payload's `task` (its name in the pipeline), else the queue's id.
fn task_name(lease: &Lease) -> String {
    match lease.payload.get("task").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => name.to_string(),
        _ => lease.task.to_string(),
    }
}

/// Runs the payload's command in `cwd` (a relative `cwd` in the payload is
/// relative to it).
async fn run(lease: &Lease, cwd: &Path, cancel: &CancellationToken, tee: &Tee) -> Option<Outcome> {
    let mut spec = match ExecSpec::from_config(&lease.payload, cwd) {
        Ok(spec) => spec,
        Err(err) => return failed(format!("task {}: {err:#}", lease.task)),
    };
    spec.env.extend([
        ("RUNNER_TASK_ID".to_string(), lease.task.to_string()),
        ("RUNNER_TASK_ATTEMPT".to_string(), lease.attempt.to_string()),
        ("RUNNER_WORKER".to_string(), lease.worker.clone()),
    ]);
    let timeout = match timeout(&lease.payload) {
        Ok(timeout) => timeout,
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    let mut output = Vec::new();
    let ending = exec::run(&spec, timeout, cancel, |stream, data| {
        tee.output(stream, data);
        output.extend_from_slice(data);
        if output.len() > 2 * OUTPUT_TAIL {
            output.drain(..output.len() - OUTPUT_TAIL);
        }
    })
    .await;
    let start = output.len().saturating_sub(OUTPUT_TAIL);
    let tail = String::from_utf8_lossy(&output[start..]).into_owned();
    match ending {
        Err(err) => failed(format!("{err:#}")),
        Ok(Ending::Aborted) => None,
        Ok(ending) => {
            let result = json!({"exit_code": ending.exit_code(), "output": tail});
            Some(
                match ending.error(&format!("`{}`", spec.program), timeout) {
                    None => Outcome::Completed(result),
                    Some(error) => Outcome::Failed { error, result },
                },
            )
        }
    }
}

/// The payload's `timeout` ("30s"), or a day.
pub(super) fn timeout(payload: &Value) -> Result<Duration, String> {
    match payload.get("timeout") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(Value::String(text)) => {
            crate::units::parse_duration(text).map_err(|err| format!("`timeout`: {err}"))
        }
        Some(_) => Err("`timeout` must be a string like \"30s\"".to_string()),
    }
}
