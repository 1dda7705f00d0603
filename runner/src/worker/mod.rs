//! What a `runner worker` does with a task it claimed: runs its payload
//! and says how it ended (the claiming, heartbeats and completion are in
//! `cli/worker.rs`; the queue itself is `queue`).
//!
//! A payload is JSON with a `kind`: `exec` (the default; the `exec` task's
//! fields, see `exec.rs`; with `git`, in a worktree of a batch branch
//! that is pushed back, see `git.rs`), `script` and `block` (a plugin from
//! the queue, see `plugin.rs`), `agent` (a coding agent's turn, its adapter
//! from the queue, see `agent.rs`) or `noop`.
//!
//! A plugin is fetched before the task runs ([`prepare`], with the
//! worker's connection), so `execute` itself needs no database: what the
//! task writes goes to a [`Tee`] (`output.rs`), which the caller sends on.

mod agent;
mod exec;
mod git;
pub mod output;
mod plugin;

pub use output::Tee;

use crate::queue::{Lease, Outcome, Queue, QueueError};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every task of one worker shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// This worker's name, as leases and claims record it.
    pub name: String,
    /// Where this worker keeps what it fetched (plugins, repositories).
    pub cache: PathBuf,
    /// The plugins this process checked and loaded.
    plugins: Arc<plugin::PluginCache>,
}

impl Context {
    pub fn new(name: String, cache: PathBuf) -> Self {
        Self {
            name,
            cache,
            plugins: Arc::default(),
        }
    }
}

/// What a task got from the queue before it runs.
pub enum Prepared {
    /// It needs nothing (`exec`, `noop`).
    Nothing,
    /// Its plugin (an agent task's adapter), checked and loaded.
    Plugin(Arc<crate::plugin::Plugin>),
    /// An agent task's adapter, and what its run's agent tasks spent so far
    /// across the cluster (dollars, tokens).
    Agent(Arc<crate::plugin::Plugin>, (f64, u64)),
    /// Why its plugin will not run: the task fails with this.
    Refused(String),
}

fn kind(lease: &Lease) -> &str {
    lease
        .payload
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("exec")
}

/// Fetches what a task needs from the queue: `Err` only when the
/// connection was lost (the task is then not run; its lease lapses).
pub async fn prepare(
    context: &Context,
    queue: &Queue,
    lease: &Lease,
) -> Result<Prepared, QueueError> {
    match kind(lease) {
        "script" | "block" => plugin::prepare(context, queue, lease).await,
        "agent" => match agent::adapter_ref(&lease.payload) {
            Ok((run, name, sha256)) => {
                match plugin::prepare_named(context, queue, &run, &name, &sha256).await? {
                    Prepared::Plugin(adapter) => {
                        Ok(Prepared::Agent(adapter, queue.run_spent(&run).await?))
                    }
                    other => Ok(other),
                }
            }
            Err(message) => Ok(Prepared::Refused(format!("task {}: {message}", lease.task))),
        },
        _ => Ok(Prepared::Nothing),
    }
}

/// A failed outcome with no result.
fn failed(error: String) -> Option<Outcome> {
    Some(Outcome::Failed {
        error,
        result: Value::Null,
    })
}

/// Runs a task's payload with what [`prepare`] got, its output going to
/// `tee` as it comes. `None`: aborted (the worker hands it back).
pub async fn execute(
    context: &Context,
    lease: &Lease,
    prepared: &Prepared,
    cancel: &CancellationToken,
    tee: &Tee,
) -> Option<Outcome> {
    match (kind(lease), prepared) {
        ("noop", _) => Some(Outcome::Completed(json!({}))),
        ("exec", _) => exec::execute(context, lease, cancel, tee).await,
        ("script" | "block", Prepared::Plugin(found)) => {
            plugin::execute(found, lease, cancel, tee).await
        }
        ("agent", Prepared::Agent(adapter, spent)) => {
            agent::execute(context, adapter, *spent, lease, cancel, tee).await
        }
        ("script" | "block" | "agent", Prepared::Refused(message)) => failed(message.clone()),
        ("script" | "block" | "agent", _) => failed(format!(
            "task {}: its plugin was not fetched (call `prepare` first)",
            lease.task
        )),
        (other, _) => failed(format!(
            "unknown task kind `{other}`: this worker runs `exec`, `script`, `block`, `agent` and `noop` tasks"
        )),
    }
}
