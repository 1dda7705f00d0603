//! Coding agents: per-agent priority queues in front of CLIs the host owns.
//!
//! A command goes `queued → running → completed | failed | interrupted`.
//! Each agent runs `concurrency` commands at once (one by default), takes
//! waiting commands high before normal before low and first come first
//! served within a priority, and refuses, never silently queues, a request
//! that is invalid, for an agent that is offline, or beyond `queue_limit`.
//!
//! The adapter plugin is pure: it builds the command line and reads the
//! output lines; the host spawns the CLI in its own process group and
//! kills the group on timeout, interrupt or shutdown.

mod approvals;
mod budget;
mod command;
mod convert;
mod prompts;
mod queue;

pub use approvals::{Answer, Approvals, DecisionError, MAX_PENDING_PER_COMMAND};
pub use budget::{RunBudget, Spent, dollars};
pub use convert::activity;

use crate::config::AgentDecl;
use crate::events::EventBus;
use crate::plugin::Plugins;
use crate::slots::Slots;
use indexmap::IndexMap;
use protocol::{Activity, AgentStatus, CommandStatus, Priority};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A prompt for an agent.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub agent: String,
    pub prompt: String,
    pub priority: Priority,
    /// The agent's own session id, to resume.
    pub resume_session: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    /// Where the CLI runs (the agent's `working_dir` when `None`).
    pub working_dir: Option<PathBuf>,
    /// The agent's `timeout` when `None`.
    pub timeout: Option<Duration>,
    /// The task's own cap, besides the agent's (`Budget::default()`: none).
    pub budget: crate::config::Budget,
    /// The run's cap, shared by its commands (`None`: not in a run, or no cap).
    pub run_budget: Option<Arc<RunBudget>>,
}

/// Why a request was refused before it was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no agent `{0}`; declare it as [agents.{0}] in runner.toml")]
    UnknownAgent(String),
    #[error(
        "agent `{agent}` is offline: its command `{program}` was not found (set `command` in [agents.{agent}] or put it on PATH)"
    )]
    Offline { agent: String, program: String },
    #[error("agent `{agent}` has {limit} commands waiting, its `queue_limit`; try again later")]
    QueueFull { agent: String, limit: usize },
    #[error("agent `{agent}` refused the request: {message}")]
    Invalid { agent: String, message: String },
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    pub command_id: String,
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub summary: Option<String>,
    pub session_id: Option<String>,
    pub usage: Usage,
    pub files_changed: Vec<String>,
    pub tools_used: Vec<String>,
    /// Terminal output dropped past the agent's `output` limit.
    pub output_cut: Option<crate::process::output::OutputCut>,
}

/// Tokens and cost an agent reported for one command, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
}

impl CommandResult {
    /// The output of an agent task.
    pub fn to_json(&self, agent: &str) -> Value {
        let json = json!({
            "agent": agent,
            "command_id": self.command_id,
            "session_id": self.session_id,
            "summary": self.summary,
            "exit_code": self.exit_code,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "cached_tokens": self.usage.cached_tokens,
                "cost_usd": self.usage.cost_usd,
            },
            "files_changed": self.files_changed,
            "tools_used": self.tools_used,
        });
        match self.output_cut {
            Some(cut) => cut.annotate(Some(json)),
            None => json,
        }
    }
}

/// A queued command: its id, and its result once it ends.
pub struct CommandHandle {
    pub id: String,
    pub done: oneshot::Receiver<CommandResult>,
}

/// What `runner agents` and the state snapshot show of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub name: String,
    pub adapter: String,
    pub program: Option<String>,
    pub status: AgentStatus,
    pub queued: usize,
    pub running: Vec<String>,
    pub concurrency: usize,
    pub queue_limit: usize,
}

struct Agent {
    decl: AgentDecl,
    slots: Arc<Slots>,
    queued: AtomicUsize,
    running: Mutex<Vec<String>>,
    /// The CLI as last resolved, and whether it was found.
    program: Mutex<Option<(String, bool)>>,
}

pub struct Agents {
    bus: Arc<EventBus>,
    plugins: Arc<Plugins>,
    agents: IndexMap<String, Arc<Agent>>,
    /// Queued and running commands, to interrupt them.
    commands: Mutex<HashMap<String, CancellationToken>>,
    /// Cancelled at shutdown: every command is interrupted.
    shutdown: CancellationToken,
    /// Permission prompts waiting for an answer.
    approvals: Approvals,
}

/// Sums what a command reported, for its result (also used by a client
/// that follows a command through its events).
pub fn track(result: &mut CommandResult, activity: &Activity) {
    match activity {
        Activity::SessionStarted { session_id } => result.session_id = Some(session_id.clone()),
        Activity::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cost_usd,
        } => {
            result.usage.input_tokens += input_tokens;
            result.usage.output_tokens += output_tokens;
            result.usage.cached_tokens += cached_tokens;
            if let Some(cost) = cost_usd {
                result.usage.cost_usd = Some(result.usage.cost_usd.unwrap_or(0.0) + cost);
            }
        }
        Activity::FileChange { path, .. } if !result.files_changed.contains(path) => {
            result.files_changed.push(path.clone())
        }
        Activity::ToolUse { name, .. } if !result.tools_used.contains(name) => {
            result.tools_used.push(name.clone())
        }
        Activity::FinalResult { summary, .. } if !summary.is_empty() => {
            result.summary = Some(summary.clone())
        }
        _ => {}
    }
}
