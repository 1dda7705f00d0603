//! `exec` payloads: the `exec` task's fields (`command`, `args`, `env`,
//! `timeout`), run in the worker's directory in a process group of their
//! own; the result keeps the exit code and the end of the output.

use super::{Context, failed};
use crate::process::exec::{self, Ending, ExecSpec};
use crate::queue::{Lease, Outcome};
use serde_json::{Value, json};
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
) -> Option<Outcome> {
    let _ = context;
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut spec = match ExecSpec::from_config(&lease.payload, &cwd) {
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
    let ending = exec::run(&spec, timeout, cancel, |_, data| {
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
