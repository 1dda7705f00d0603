//! `exec` payloads: the `exec` task's fields (`command`, `args`, `env`,
//! `timeout`), run in the worker's directory in a process group of their
//! own; the output goes to the worker's [`Tee`] as it comes, and the result
//! keeps the exit code and the end of the output. With a
//! `git` field the command runs in a worktree of a batch branch instead,
//! and what it changed is pushed back (`git.rs`); its `cwd` must then stay
//! inside the worktree (relative, not climbing out with `..`, not through a
//! symlink that leads out), or the task fails before anything runs.

use super::git::{self, GitTask};
use super::{Context, Tee, failed};
use crate::process::exec::{self, Ending, ExecSpec};
use crate::queue::{Lease, Outcome};
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};
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
    in_checkout(context, lease, |cwd| async move {
        run(lease, &cwd, cancel, tee).await
    })
    .await
}

/// Runs `task` in the directory the payload says: a worktree of its `git`
/// branch, whose changes are pushed back when `task` completes, else the
/// worker's own directory.
pub(super) async fn in_checkout<F, Fut>(
    context: &Context,
    lease: &Lease,
    task: F,
) -> Option<Outcome>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Option<Outcome>>,
{
    let git = match GitTask::from_payload(&lease.payload) {
        Ok(Some(git)) => git,
        Ok(None) => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
            return task(cwd).await;
        }
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    if let Err(err) = relative_cwd(&lease.payload) {
        return failed(format!("task {}: {err}", lease.task));
    }
    let worktree = match git.checkout(context).await {
        Ok(worktree) => worktree,
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    let ran = match stays_inside(&lease.payload, worktree.path()) {
        Ok(()) => task(worktree.path().to_path_buf()).await,
        Err(err) => failed(format!("task {}: {err}", lease.task)),
    };
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

/// Checks that the payload's `cwd` (if any) names a directory inside the
/// worktree it is joined to: relative, and never above it with `..`.
fn relative_cwd(payload: &Value) -> Result<(), String> {
    let Some(cwd) = payload.get("cwd").and_then(Value::as_str) else {
        return Ok(());
    };
    let path = Path::new(cwd);
    if path.has_root() {
        return Err(format!(
            "`cwd` = {cwd:?} is absolute, but a task with `git` runs in a worktree of its branch: give `cwd` relative to the repository's root"
        ));
    }
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => {
                return Err(format!(
                    "`cwd` = {cwd:?} leaves the task's worktree: a task with `git` runs inside it"
                ));
            }
        }
    }
    Ok(())
}

/// Checks that `cwd`, once in `worktree`, is still inside it after
/// symlinks (a link in the branch may lead anywhere).
fn stays_inside(payload: &Value, worktree: &Path) -> Result<(), String> {
    let Some(cwd) = payload.get("cwd").and_then(Value::as_str) else {
        return Ok(());
    };
    let (Ok(root), Ok(dir)) = (worktree.canonicalize(), worktree.join(cwd).canonicalize()) else {
        return Ok(()); // a missing directory fails when the command starts
    };
    if dir.starts_with(&root) {
        Ok(())
    } else {
        Err(format!(
            "`cwd` = {cwd:?} leads out of the task's worktree (to {}) through a symlink: a task with `git` runs inside it",
            dir.display()
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd(dir: &str) -> Result<(), String> {
        relative_cwd(&json!({"cwd": dir}))
    }

    #[test]
    fn a_git_tasks_cwd_must_stay_below_its_worktree() {
        assert!(relative_cwd(&json!({})).is_ok());
        assert!(cwd("sub/dir").is_ok());
        assert!(cwd("./sub/../other").is_ok());
        assert!(cwd("/etc").unwrap_err().contains("is absolute"));
        assert!(
            cwd("..")
                .unwrap_err()
                .contains("leaves the task's worktree")
        );
        assert!(cwd("sub/../../x").unwrap_err().contains("leaves"));
    }
}
