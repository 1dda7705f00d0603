//! What a `runner worker` does with a task it claimed: runs its payload
//! and says how it ended (the claiming, heartbeats and completion are in
//! `cli/worker.rs`; the queue itself is `queue`).
//!
//! A payload is JSON with a `kind`: `exec` (the default; the `exec` task's
//! fields, see `exec.rs`; with `git`, in a worktree of a batch branch
//! that is pushed back, see `git.rs`) or `noop`.

mod exec;
mod git;

use crate::queue::{Lease, Outcome};
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// What every task of one worker shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// This worker's name, as leases and claims record it.
    pub name: String,
    /// Where this worker keeps what it fetched (plugins, repositories).
    pub cache: PathBuf,
}

/// A failed outcome with no result.
fn failed(error: String) -> Option<Outcome> {
    Some(Outcome::Failed {
        error,
        result: Value::Null,
    })
}

/// Runs a task's payload. `None`: aborted (the worker hands it back).
pub async fn execute(
    context: &Context,
    lease: &Lease,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let kind = lease
        .payload
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("exec");
    match kind {
        "noop" => Some(Outcome::Completed(json!({}))),
        "exec" => exec::execute(context, lease, cancel).await,
        other => failed(format!(
            "unknown task kind `{other}`: this worker runs `exec` and `noop` tasks"
        )),
    }
}
