//! The states a run, a batch, a task, a command and an agent go through.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! display_as_serde {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}

/// A pipeline run: `running → completed | failed | aborted | interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Every batch completed.
    Completed,
    /// A batch failed.
    Failed,
    /// Stopped on request: Ctrl-C, `abort_run`, a shutting-down server.
    Aborted,
    /// The runner stopped without finishing it (a crash or `kill -9`); the
    /// next runner to open the history records this, with the reason.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn is_final(self) -> bool {
        self != Self::Running
    }
}

/// A batch: `pending → running → completed | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// A task: `pending → running → completed | failed | skipped | interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
    /// Never started: an earlier task failed in a fail-fast batch.
    Skipped,
    /// Stopped by an abort.
    Interrupted,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Interrupted => "interrupted",
        }
    }
}

/// A node of a pipeline's graph as a per-pipeline view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Pending,
    Processing,
    Completed,
    Error,
}

impl From<BatchStatus> for NodeStatus {
    fn from(status: BatchStatus) -> Self {
        match status {
            BatchStatus::Pending => Self::Pending,
            BatchStatus::Running => Self::Processing,
            BatchStatus::Completed => Self::Completed,
            BatchStatus::Failed => Self::Error,
        }
    }
}

/// Queue priority: high before normal before low, first in first out within one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Default,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "normal" => Some(Self::Normal),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// A command sent to an agent: `queued → running → completed | failed | interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Interrupted,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// An agent: `online` (idle), `busy` (running a command), `offline` (its CLI cannot be found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Busy,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Busy => "busy",
            Self::Offline => "offline",
        }
    }
}

/// Severity of a log line.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// What a `plugin_compile` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompileStatus {
    /// Compiling has started.
    Compiling,
    /// Compiled, and written to the compile cache.
    Compiled,
    /// The component did not compile.
    Failed,
}

impl CompileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiling => "compiling",
            Self::Compiled => "compiled",
            Self::Failed => "failed",
        }
    }
}

/// Which output stream a chunk or line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

display_as_serde!(
    RunStatus,
    BatchStatus,
    TaskStatus,
    Priority,
    CommandStatus,
    AgentStatus,
    LogLevel,
    Stream,
    CompileStatus
);

/// What a `watch_status` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// Watching (again), after a run.
    Watching,
    /// Changed files start a run of the batches they select.
    Triggered,
    /// `on_busy = "restart"`: changed files stop the running run.
    Restarting,
    /// Changes seen while a run is going, queued or dropped.
    SeenWhileBusy,
    /// `runner.toml` changed and checks: the next run uses it.
    ConfigReloaded,
    /// `runner.toml` changed and does not check: the last good one stays.
    ConfigError,
    /// A plugin's component file changed and loads: the next run uses it.
    PluginReloaded,
    /// A plugin's component file changed and cannot be used (does not
    /// compile, or speaks the wrong world): the one loaded before stays.
    PluginError,
    /// Something the user should know (lost events, polling fallback).
    Warning,
}

impl WatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watching => "watching",
            Self::Triggered => "triggered",
            Self::Restarting => "restarting",
            Self::SeenWhileBusy => "seen_while_busy",
            Self::ConfigReloaded => "config_reloaded",
            Self::ConfigError => "config_error",
            Self::PluginReloaded => "plugin_reloaded",
            Self::PluginError => "plugin_error",
            Self::Warning => "warning",
        }
    }
}
