//! `agent` payloads: one turn of a coding agent, run through the same
//! machinery as a local agent task (`crate::agents`), with the agent's
//! adapter fetched from the queue as a script's plugin is.
//!
//! ```json
//! {"kind": "agent", "run": "RUN", "task": "ID", "timeout": "30m",
//!  "agent": {"name": "a", "adapter": {"name": "claude", "sha256": "<hex>"},
//!            "command": "claude", "model": null, "args": [], "options": [["k", "\"v\""]],
//!            "env": [["K", "V"]], "output": 1048576, "timeout": "30m",
//!            "budget": {"max_cost_usd": 1.0, "max_tokens": null}},
//!  "prompt": "fix it", "resume_session": null, "priority": "normal",
//!  "budget": {"max_cost_usd": null, "max_tokens": 5000},
//!  "run_budget": {"cap": {...}, "spent": {"cost_usd": 0.2, "tokens": 900}}}
//! ```
//!
//! The CLI is looked up on this worker's `PATH` (or is the absolute
//! `command`); not found, the task fails with the local "offline" refusal.
//! It runs in the worker's directory, or in a worktree of the batch's
//! branch when the payload has `git` (pushed back when it completes, as an
//! `exec` task's). The agent's `concurrency` and `queue_limit` are held by
//! the queue's pools, not here: this worker runs what it claimed. A stop
//! (heartbeat lost, run cancelled, worker stopping) interrupts the command:
//! its process group is killed.
//!
//! A run's budget counts what the run had spent when the task was queued
//! (the payload's `run_budget.spent`) or, when larger, what its agent
//! tasks spent across the cluster as the queue has it at the claim
//! (`queue/spent.rs`).
//!
//! The command's events (its statuses, activity, terminal output and log
//! lines: what a local agent command publishes on the run's bus) go to the
//! task's [`Tee`] as they come, each as its JSON, under the task's output
//! limit; the coordinator republishes them (`run/remote_agents.rs`).
//!
//! The result is the local agent task's output (`CommandResult::to_json`),
//! on failure too; the error is the local task's error.

use super::{Context, Tee, failed};
use crate::agents::{Agents, CommandRequest, RunBudget, Spent};
use crate::config::{AgentDecl, Budget, DEFAULT_APPROVAL_TIMEOUT, Location};
use crate::events::EventBus;
use crate::plugin::{Plugin, Plugins};
use crate::queue::{Lease, Outcome};
use indexmap::IndexMap;
use protocol::{CommandStatus, EventKind, Priority};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The payload's `run` and `agent.adapter`: what [`super::prepare`] fetches.
pub(super) fn adapter_ref(payload: &Value) -> Result<(String, String, String), String> {
    let run = text(payload, "run")?.ok_or("the payload has no `run`")?;
    let adapter = payload
        .get("agent")
        .and_then(|agent| agent.get("adapter"))
        .ok_or("the payload has no `agent.adapter` ({\"name\": ..., \"sha256\": ...})")?;
    let name = text(adapter, "name")?.ok_or("`agent.adapter` has no `name`")?;
    let sha256 = text(adapter, "sha256")?.ok_or("`agent.adapter` has no `sha256`")?;
    Ok((run, name, sha256))
}

fn text(value: &Value, key: &str) -> Result<Option<String>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn strings(value: &Value, key: &str) -> Result<Vec<String>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| format!("`{key}` must be a list of strings")),
    }
}

fn pairs(value: &Value, key: &str) -> Result<Vec<(String, String)>, String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| format!("`{key}` must be a list of [key, value] strings")),
    }
}

/// A budget as the coordinator writes it (`{"max_cost_usd", "max_tokens"}`).
fn budget(value: Option<&Value>) -> Budget {
    let value = value.unwrap_or(&Value::Null);
    Budget {
        max_cost_usd: value.get("max_cost_usd").and_then(Value::as_f64),
        max_tokens: value.get("max_tokens").and_then(Value::as_u64),
    }
}

/// What the payload asks: the agent as the worker declares it, and the request.
/// `spent`: what the run's agent tasks spent across the cluster, from the
/// queue; the run's budget counts the larger of it and the payload's.
fn parse(
    lease: &Lease,
    adapter: &Plugin,
    spent: (f64, u64),
    dir: &Path,
) -> Result<(AgentDecl, CommandRequest), String> {
    let payload = &lease.payload;
    let agent = payload.get("agent").ok_or("the payload has no `agent`")?;
    let name = text(agent, "name")?.ok_or("`agent` has no `name`")?;
    let timeout = super::exec::timeout(agent).map_err(|err| format!("agent {err}"))?;
    let decl = AgentDecl {
        name: name.clone(),
        adapter: adapter.name().to_string(),
        command: text(agent, "command")?,
        model: text(agent, "model")?,
        args: strings(agent, "args")?,
        concurrency: 1,
        queue_limit: 1,
        timeout,
        output: agent
            .get("output")
            .and_then(Value::as_u64)
            .ok_or("`agent.output` must be a number of bytes")?,
        working_dir: dir.to_path_buf(),
        options: pairs(agent, "options")?,
        env: pairs(agent, "env")?,
        adapter_at: Location { line: 1, column: 1 },
        budget: budget(agent.get("budget")),
        approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
    };
    let priority = match payload.get("priority") {
        None | Some(Value::Null) => Priority::Normal,
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| "`priority` must be \"high\", \"normal\" or \"low\"")?,
    };
    let queued_spent = spent;
    let run_budget = match payload.get("run_budget") {
        None | Some(Value::Null) => None,
        Some(run) => {
            let spent = run.get("spent").unwrap_or(&Value::Null);
            let spent = Spent {
                cost_usd: spent
                    .get("cost_usd")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .max(queued_spent.0),
                tokens: spent
                    .get("tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .max(queued_spent.1),
            };
            Some(Arc::new(RunBudget::with_spent(
                budget(run.get("cap")),
                spent,
            )))
        }
    };
    let request = CommandRequest {
        agent: name,
        prompt: text(payload, "prompt")?.unwrap_or_default(),
        priority,
        resume_session: text(payload, "resume_session")?,
        run_id: text(payload, "run")?,
        task_id: text(payload, "task")?,
        working_dir: Some(dir.to_path_buf()),
        timeout: Some(super::exec::timeout(payload)?),
        budget: budget(payload.get("budget")),
        run_budget,
    };
    Ok((decl, request))
}

/// Runs a prepared agent task. `None`: aborted (the worker hands it back).
pub(super) async fn execute(
    context: &Context,
    adapter: &Arc<Plugin>,
    spent: (f64, u64),
    lease: &Lease,
    cancel: &CancellationToken,
    tee: &Tee,
) -> Option<Outcome> {
    super::exec::in_checkout(context, lease, |dir| async move {
        let dir = match text(&lease.payload, "cwd") {
            Ok(Some(cwd)) => dir.join(cwd),
            Ok(None) => dir,
            Err(err) => return failed(format!("task {}: {err}", lease.task)),
        };
        run(context, adapter, spent, lease, dir, cancel, tee).await
    })
    .await
}

/// Whether the coordinator is sent `kind`: what a local agent command says
/// of itself; not this worker's own view of its one-agent queue.
fn forwarded(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::CommandStatus { .. }
            | EventKind::AgentActivity { .. }
            | EventKind::TerminalOutput { .. }
            | EventKind::Log { .. }
    )
}

async fn run(
    context: &Context,
    adapter: &Arc<Plugin>,
    spent: (f64, u64),
    lease: &Lease,
    dir: PathBuf,
    cancel: &CancellationToken,
    tee: &Tee,
) -> Option<Outcome> {
    let (decl, request) = match parse(lease, adapter, spent, &dir) {
        Ok(parsed) => parsed,
        Err(message) => return failed(format!("task {}: {message}", lease.task)),
    };
    let engine = match super::plugin::engine(context) {
        Ok(engine) => engine,
        Err(message) => return failed(message),
    };
    let name = decl.name.clone();
    let plugins = Arc::new(Plugins::from_loaded(engine, [adapter.clone()]));
    let bus = EventBus::new(1);
    let mut events = bus.subscribe();
    let agents = Agents::new(&IndexMap::from([(name.clone(), decl)]), plugins, bus);
    let handle = match agents.submit(request).await {
        Ok(handle) => handle,
        Err(refusal) => return failed(refusal.to_string()),
    };
    let forward = |event: &protocol::Event| {
        if forwarded(&event.kind) {
            tee.event(&event.kind);
        }
    };
    let mut done = handle.done;
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            result = &mut done => break result,
            Some(event) = events.recv() => forward(&event),
            () = cancel.cancelled(), if !interrupted => {
                interrupted = true;
                let _ = agents.interrupt(&handle.id);
            }
        }
    };
    // The command's last events were published before its result was sent.
    while let Ok(event) = events.try_recv() {
        forward(&event);
    }
    let Ok(result) = result else {
        return failed("the agent command ended without a result".to_string());
    };
    match result.status {
        CommandStatus::Completed => Some(Outcome::Completed(result.to_json(&name))),
        CommandStatus::Interrupted if cancel.is_cancelled() => None,
        _ => Some(Outcome::Failed {
            error: format!(
                "agent `{name}`: {}",
                result.error.clone().unwrap_or_else(|| "failed".into())
            ),
            result: result.to_json(&name),
        }),
    }
}
