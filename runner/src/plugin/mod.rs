//! Plugins: WASI components loaded once, instantiated fresh for every call.
//!
//! Loading is `bytes → (sha256 check) → compiled or cached Component →
//! world detected from its exports → InstancePre`; every call then gets a
//! new [`wasmtime::Store`] with the plugin's own capabilities, memory limit
//! and deadline, so one plugin's trap, timeout or memory bomb fails that
//! call alone.
//!
//! ## Versions
//! Components built against any released `runner:plugin` version load: one
//! bindings module per version ([`bindings`]), the older ones converting
//! their types to the newest, which is all the rest of the crate sees.
//! [`check`] says why a component does not fit.

mod agent;
mod attempts;
mod bindings;
mod call;
pub mod check;
mod engine;
mod load;
mod state;
mod trap;
mod worlds;

pub use agent::{
    AgentEvent, AgentRequest, AgentSession, ApprovalDecision, ApprovalRequest, ChangeKind,
    Invocation, Outcome, OutputStream,
};
pub use attempts::{AttemptPlan, AttemptReport, AttemptSpec, AttemptTask, CheckResult, Verdict};
pub use bindings::latest::batch::exports::runner::plugin::batch::{
    BatchOutcome, ExecutionMode, Expansion, TaskResult, TaskSpec, TaskState,
};
pub use engine::{Compiled, EPOCH_TICK, Engine, EngineLimits};
pub use load::Plugins;
pub use state::{MemoryLimitExceeded, Signal, Sink, discard};
pub use worlds::check_worlds;

use crate::config::{DirGrant, PluginDecl};
use bindings::latest::agent::AgentPluginPre;
use bindings::latest::approvals::GuestIndices as ApprovalsIndices;
use bindings::latest::attempts::GuestIndices as AttemptsIndices;
use bindings::latest::batch::BatchPluginPre;
use bindings::latest::block::BlockPluginPre;
use bindings::types::PluginInfo;
use state::StoreState;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi::p2::bindings::CommandPre;

/// How long `describe`, `expand` and `reduce` may take.
pub const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(30);

/// Which world a component implements, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Block,
    Batch,
    AgentAdapter,
    /// An agent adapter that also relays permission prompts (0.2.0).
    ApprovingAgent,
    /// A batch type that also plans attempts and picks the best (0.2.0).
    AttemptsBatch,
    /// A `wasi:cli/command`: a script.
    Command,
}

impl World {
    /// The world's name as `runner plugins` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block-plugin",
            Self::Batch => "batch-plugin",
            Self::AgentAdapter => "agent-plugin",
            Self::ApprovingAgent => "approving-agent-plugin",
            Self::AttemptsBatch => "attempts-batch-plugin",
            Self::Command => "wasi:cli/command",
        }
    }

    /// Whether it is a batch type (with or without attempts).
    pub fn is_batch(self) -> bool {
        matches!(self, Self::Batch | Self::AttemptsBatch)
    }

    /// Whether it adapts an agent CLI (with or without approvals).
    pub fn is_agent(self) -> bool {
        matches!(self, Self::AgentAdapter | Self::ApprovingAgent)
    }
}

/// A plugin that could not be loaded. Names the plugin and what to fix.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` ({origin}): {message}")]
pub struct LoadError {
    pub plugin: String,
    pub origin: String,
    pub message: String,
}

/// Why a call into a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {}", crate::units::format_duration(*.0))]
    TimedOut(Duration),
    #[error("{0}")]
    OutOfMemory(MemoryLimitExceeded),
    #[error("overflowed its stack")]
    StackOverflow,
    /// The stack Rust and C keep in linear memory ran out ([`trap`]).
    #[error("overflowed its stack (an out-of-bounds access below the stack region)")]
    LinearStackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exited with code {0}")]
    Exit(i32),
    #[error("was stopped: the run was aborted")]
    Aborted,
    #[error("{0}")]
    Other(String),
}

/// The epoch callback's error once a deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline reached")]
struct TimedOut;

/// One loaded plugin.
pub struct Plugin {
    pub decl: PluginDecl,
    pub world: World,
    /// The WIT package (or WASI version) the component was built against.
    pub wit_version: String,
    /// What `describe` returned (scripts have none).
    pub info: Option<Info>,
    pub compiled: Compiled,
    pub sha256: String,
    engine: Arc<Engine>,
    pre: Pre,
}

/// A plugin's own description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: String,
}

impl From<PluginInfo> for Info {
    fn from(info: PluginInfo) -> Self {
        Self {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema,
        }
    }
}

/// A component linked and typed, ready to instantiate.
enum Pre {
    Block(BlockPluginPre<StoreState>),
    Batch {
        pre: BatchPluginPre<StoreState>,
        /// Where an attempts batch plugin's `attempts` functions are.
        attempts: Option<AttemptsIndices>,
    },
    Agent {
        pre: AgentPluginPre<StoreState>,
        /// Where an approving adapter's `approvals` functions are.
        approvals: Option<ApprovalsIndices>,
    },
    Command(CommandPre<StoreState>),
    /// A component built against `runner:plugin@0.1.0`.
    V0_1(bindings::v0_1_0::Pre),
}

/// Extra settings of one call (scripts take arguments and variables).
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Directories to grant instead of the plugin's own `capabilities.dirs`
    /// (a batch's worktree remaps those inside the repository).
    pub dirs: Option<Vec<DirGrant>>,
}

impl CallOptions {
    /// A script task's `args = [...]` and `env = { K = "V" }`.
    pub fn for_script(config: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        let args = match config.get("args") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or("`args` must hold strings")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`args` must be a list of strings".into()),
        };
        let env = crate::process::exec::env_table(config)?;
        Ok(Self {
            args,
            env,
            dirs: None,
        })
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.decl.name)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}
