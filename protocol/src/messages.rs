//! The WebSocket protocol: what a client sends ([`ClientMessage`]) and what
//! the server sends back ([`ServerMessage`]).
//!
//! Every message is one JSON text frame with a `type` field. A client may
//! put an `id` (a string or a number) on any request; the answer to it, and
//! an `error` about it, carry the same `id`.
//!
//! ## Session
//! 1. The client connects to `/ws` and sends `identify` (protocol version,
//!    token, who it is). A bad token closes the connection with 1008; one
//!    client too many (dashboards or agents) closes it with 1013.
//! 2. The server answers `identified`, then either a `state` snapshot
//!    (current to its `seq`) or, when `identify` carried `after_seq`, the
//!    events after that number. Then every event, live, in `seq` order.
//! 3. At any time the client may `subscribe` (filters), `resume`,
//!    `request_state`, `start_run`, `abort_run`, `command_request`,
//!    `command_interrupt`, `approval_decision` or `ping`.
//!
//! Events are sent exactly as [`Event`] serializes: `seq`, `time` and the
//! kind's fields beside `type`. Everything else the server sends is a
//! [`ServerReply`]. A `node_status` follows each `batch_status` event.
//!
//! ## Lagging
//! Each client has a bounded queue. A client that reads too slowly to keep
//! it from overflowing gets `lagged` and then the events it missed, from the
//! server's replay ring; if the ring no longer holds them the server closes
//! the connection with 1013 and the client should reconnect and ask for
//! `state`.
//!
//! ## Close codes
//! | code | when |
//! |---|---|
//! | 1001 | the server shuts down (after every event published before it was sent) |
//! | 1002 | `identify` with a `protocol_version` whose major version the server does not speak (after an `error` with code `unsupported_version`) |
//! | 1008 | bad or missing token, or no `identify` within one heartbeat interval |
//! | 1009 | a message larger than the limit (1 MiB by default) |
//! | 1013 | too many dashboards or agents, or the client fell behind the replay ring |
//!
//! Without an upgrade, `GET /ws` is answered with HTTP 426.
//!
//! ## The seeds' message types, mapped to ours
//! | seed | seed message | ours |
//! |---|---|---|
//! | 000 | `status` (`running/completed/failed/aborted`) | event `run_status` |
//! | 000 | `batch_status` (`batch_id`, `batch_name`, `branch`, `error`) | event `batch_status`, then `node_status` |
//! | 000 | `info`, `error`, `log` (with `stream`) | event `log` (`level`, `stream`); raw process output is `terminal_output` |
//! | 000 | `start` | event `run_status` `running` (its `message` says what starts) |
//! | 000 | `success` | event `run_status` `completed` |
//! | 000 | `batch_start` / `batch_complete` / `batch_error` | event `batch_status` `running` / `completed` / `failed` |
//! | 001 | `dashboard:connect` (`version`, `token`, `clientInfo`) | `identify` with `client.kind = "dashboard"` |
//! | 001 | agent connection (`agentId`, `agentType`, `capabilities`) | `identify` with `client.kind = "agent"`, `client.name`, `client.capabilities` |
//! | 001 | `command:request` (`agentId`, `command`, `priority`) | `command_request` (`agent`, `prompt`, `priority`), answered by `command_accepted` |
//! | 001 | `command:interrupt` (`commandId`) | `command_interrupt` (`command_id`), answered by `interrupt_requested` |
//! | 001 | `agent:status` (`online/busy/offline`) | event `agent_status` |
//! | 001 | `terminal:output` (`sequence`, `stream`, `data`) | event `terminal_output` |
//! | 001 | `command:status` (`queued/running/completed/failed/interrupted`, `exitCode`) | event `command_status` |
//! | 001 | HTTP 426, close 1008, close 1013 | the same |
//! | 002 | `nodeExecutionStatusChanged(projectId)` / `NodeExecutionStatusEvent` | `node_status` (per pipeline), narrowed with `subscribe { filter: { pipelines } }` |
//! | 004 | `identify_client` (`clientInfo`) | `identify` (`client`) |
//! | 004 | `client_identified` (`clientId`) | `identified` (`client_id`) |
//! | 004 | `ping` / `pong` | `ping` / `pong` |
//! | 004 | `request_initial_state` | `request_state` |
//! | 004 | `initial_execution_state` (`active`, `recent`) | `state` (`snapshot.active_runs`, `snapshot.recent_runs`, ...) |
//! | 004 | `subscribe_logs` (`filters.level`, `filters.tag`, `filters.module`) | `subscribe` (`filter.levels`, `filter.tags`; a log's `source` is its tag) |
//! | 004 | `block_started_enhanced` (`blockType`, `blockName`, `displayText`, `timing`) | event `task_started` (`task_type`, `name`, `display_text`, `time`) |
//! | 004 | `block_executed_enhanced` (`status`, `timing`, `result`) | event `task_finished` (`status`, `started_at`, `finished_at`, `duration_ms`, `result`) |
//! | 004 | `hardware_health_update` | none: out of scope |
//! | — | — | ours only: `resume`, `start_run` / `run_started`, `abort_run` / `abort_requested`, `subscribed`, `resumed`, `lagged`, `error`, events `approval_requested` / `approval_decided` and `approval_decision` / `approval_accepted` (permission prompts) |

use crate::event::Event;
use crate::status::*;
use crate::time::{rfc3339, rfc3339_opt};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every client request type, as its `type` field spells it.
pub const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "identify",
    "ping",
    "request_state",
    "subscribe",
    "resume",
    "start_run",
    "abort_run",
    "command_request",
    "command_interrupt",
    "approval_decision",
];

/// The id a client gave a request; echoed in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    Text(String),
}

/// A secret (the token): serialized as-is, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One message from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientMessage {
    /// Echoed in the answer and in any error about this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    #[serde(flatten)]
    pub body: ClientBody,
}

/// What a client asks. Tagged by `type`.
// `identify` is the large one; a message is parsed once and handled at
// once, so boxing its fields would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientBody {
    /// Must be the first message. Answered by `identified`, then `state`
    /// (or, with `after_seq`, the events after it), then the live stream.
    Identify {
        /// The protocol version the client speaks, for example `1.0.0`;
        /// the major version must match the server's.
        #[serde(alias = "version")]
        protocol_version: String,
        /// Needed unless the client is on loopback and the server allows
        /// loopback clients without one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        client: ClientInfo,
        /// Resume: send the events after this number instead of a snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
        /// The filter to start with (default: everything).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
    /// Answered by `pong`.
    Ping,
    /// Answered by `state`; the stream goes on after the snapshot's `seq`.
    RequestState,
    /// Replaces the client's filter. Answered by `subscribed`.
    Subscribe {
        #[serde(default)]
        filter: Filter,
    },
    /// Answered by `resumed`, then every event after `after_seq` (that
    /// passes the filter), then the live stream; or an `error` with code
    /// `resume_unavailable` when the server no longer holds them.
    Resume { after_seq: u64 },
    /// Starts a run of `pipeline` (the default one when absent). Answered by `run_started`.
    StartRun {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
    /// Aborts a run that is still going. Answered by `abort_requested`;
    /// the run then ends with a `run_status` `aborted` event.
    AbortRun { run_id: String },
    /// Queues a prompt for an agent. Answered by `command_accepted`; the
    /// command then reports through `command_status` events.
    CommandRequest {
        /// The agent's name, for example `claude`.
        #[serde(alias = "agent_id")]
        agent: String,
        /// What to ask the agent.
        #[serde(alias = "command")]
        prompt: String,
        #[serde(default)]
        priority: Priority,
        /// Resume this agent session (the agent's own session id, printed
        /// by an earlier command) instead of starting a new one.
        #[serde(default, alias = "resume", skip_serializing_if = "Option::is_none")]
        resume_session: Option<String>,
    },
    /// Interrupts a queued or running command. Answered by `interrupt_requested`.
    CommandInterrupt { command_id: String },
    /// Answers a permission prompt (`approval_requested`). Answered by
    /// `approval_accepted` when this was the first answer; an `error` with
    /// code `rejected` when it was already answered, timed out or is unknown.
    ApprovalDecision {
        approval_id: String,
        allow: bool,
        /// Told to the agent, for example why it was denied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

impl ClientBody {
    /// The `type` field of the JSON form.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Identify { .. } => "identify",
            Self::Ping => "ping",
            Self::RequestState => "request_state",
            Self::Subscribe { .. } => "subscribe",
            Self::Resume { .. } => "resume",
            Self::StartRun { .. } => "start_run",
            Self::AbortRun { .. } => "abort_run",
            Self::CommandRequest { .. } => "command_request",
            Self::CommandInterrupt { .. } => "command_interrupt",
            Self::ApprovalDecision { .. } => "approval_decision",
        }
    }

    /// The seeds' validation rules that serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        fn non_empty(field: &str, value: &str) -> Result<(), String> {
            if value.trim().is_empty() {
                Err(format!("`{field}` must not be empty"))
            } else {
                Ok(())
            }
        }
        match self {
            Self::Identify {
                protocol_version, ..
            } => {
                let major = |v: &str| v.split('.').next().map(str::to_string);
                if major(protocol_version) != major(crate::PROTOCOL_VERSION) {
                    return Err(format!(
                        "protocol version `{protocol_version}` is not supported; this server speaks {}",
                        crate::PROTOCOL_VERSION
                    ));
                }
                Ok(())
            }
            Self::AbortRun { run_id } => non_empty("run_id", run_id),
            Self::CommandRequest { agent, prompt, .. } => {
                non_empty("agent", agent)?;
                non_empty("prompt", prompt)
            }
            Self::CommandInterrupt { command_id } => non_empty("command_id", command_id),
            Self::ApprovalDecision { approval_id, .. } => non_empty("approval_id", approval_id),
            Self::StartRun {
                pipeline: Some(pipeline),
            } => non_empty("pipeline", pipeline),
            _ => Ok(()),
        }
    }
}

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    #[serde(default)]
    pub kind: ClientKind,
    /// For example `ProgramDashboard`, or the agent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The page or view of a dashboard, for example `logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// What an agent client can do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// Dashboards and agents count against separate limits (50 and 10 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    #[default]
    Dashboard,
    Agent,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Agent => "agent",
        }
    }
}

/// Which events a client receives. Every list narrows; an empty list does
/// not narrow. Answers (with an `id`), `lagged` and `error` always pass.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Filter {
    /// Only events of runs of these pipelines. Events that belong to no
    /// run (agents, commands queued by clients) are not narrowed by this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<String>,
    /// Only events of these runs; events of no run pass, as above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// Only these `type`s (event types and `node_status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Only `log` events of these levels; other events pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<LogLevel>,
    /// Only events carrying one of these tags: a log's `source`, a task's
    /// id or type, a batch's id, an agent's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What the server sends: a numbered [`Event`] or a [`ServerReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ServerMessage {
    Event(Event),
    Reply(ServerReply),
}

/// Everything the server sends that is not an event: answers to requests
/// (with the request's `id`) and notices (`node_status`, `lagged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerReply {
    /// The `id` of the request this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    #[serde(flatten)]
    pub body: ReplyBody,
}

impl ServerReply {
    pub fn new(id: Option<RequestId>, body: ReplyBody) -> Self {
        Self { id, body }
    }
}

/// Tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyBody {
    /// The answer to `identify`.
    Identified {
        client_id: String,
        kind: ClientKind,
        protocol_version: String,
        /// The runner's version.
        server_version: String,
        /// The server pings this often; a client that does not answer within
        /// one interval is dropped.
        heartbeat_ms: u64,
        /// Larger messages close the connection with 1009.
        max_message_bytes: usize,
        /// The `runner.toml` the server runs, as an absolute path: a
        /// `runner ask` or `runner run` checks that it is its own project
        /// before handing the server its work.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<String>,
    },
    /// The current state, reflecting every event up to `snapshot.seq`.
    State {
        snapshot: Snapshot,
    },
    /// A pipeline's graph node (a batch) changed state (seed 002); follows
    /// the `batch_status` event it is derived from.
    NodeStatus {
        pipeline: String,
        run_id: String,
        /// The batch id.
        node_id: String,
        node_name: String,
        status: NodeStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The `seq` of the `batch_status` event.
        event_seq: u64,
        #[serde(with = "rfc3339")]
        #[schemars(with = "String")]
        time: DateTime<Utc>,
    },
    Pong,
    /// A request failed, or a message could not be read; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The client's queue overflowed; the events after `after_seq` follow.
    Lagged {
        /// The last event the client was sent.
        after_seq: u64,
        /// How many queued messages were dropped.
        missed: u64,
    },
    /// The answer to `subscribe`: the filter now in force.
    Subscribed {
        filter: Filter,
    },
    /// The answer to `resume`: the events after `after_seq` follow.
    Resumed {
        after_seq: u64,
    },
    RunStarted {
        run_id: String,
        pipeline: String,
    },
    AbortRequested {
        run_id: String,
    },
    CommandAccepted {
        command_id: String,
        agent: String,
    },
    InterruptRequested {
        command_id: String,
    },
    /// This client's `approval_decision` was the first: it was written to the agent.
    ApprovalAccepted {
        approval_id: String,
    },
}

impl ReplyBody {
    /// The `type` field of the JSON form.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Identified { .. } => "identified",
            Self::State { .. } => "state",
            Self::NodeStatus { .. } => "node_status",
            Self::Pong => "pong",
            Self::Error { .. } => "error",
            Self::Lagged { .. } => "lagged",
            Self::Subscribed { .. } => "subscribed",
            Self::Resumed { .. } => "resumed",
            Self::RunStarted { .. } => "run_started",
            Self::AbortRequested { .. } => "abort_requested",
            Self::CommandAccepted { .. } => "command_accepted",
            Self::InterruptRequested { .. } => "interrupt_requested",
            Self::ApprovalAccepted { .. } => "approval_accepted",
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object, or not text.
    Malformed,
    /// A `type` the server does not know.
    UnknownType,
    /// A known `type` with missing or wrong fields.
    Invalid,
    /// The request needs `identify` first.
    NotIdentified,
    /// The client's protocol version has another major version.
    UnsupportedVersion,
    /// The runner refused: no such pipeline, run, agent or command.
    Rejected,
    /// The events after the requested number are no longer held; ask for `state`.
    ResumeUnavailable,
}

/// The state a client needs to draw everything, current to `seq`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    /// Every event up to and including this one is reflected (0: none yet).
    pub seq: u64,
    /// Runs still going, oldest first.
    pub active_runs: Vec<RunState>,
    /// Runs that ended, newest first (a bounded number).
    pub recent_runs: Vec<RunState>,
    /// Per pipeline: its nodes (batches) as of its latest run.
    pub pipelines: Vec<PipelineNodes>,
    /// Agents and their queues.
    pub agents: Vec<AgentState>,
    /// Commands that ended, newest first (a bounded number).
    pub recent_commands: Vec<CommandState>,
    /// Permission prompts waiting for an answer, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
}

/// A permission prompt nobody has answered yet (its `approval_requested`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PendingApproval {
    pub approval_id: String,
    pub command_id: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub tool: String,
    pub input: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The `seq` of its `approval_requested` event.
    pub seq: u64,
    /// Milliseconds it waits in all, from its `approval_requested`.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunState {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In pipeline order.
    pub batches: Vec<BatchState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BatchState {
    pub batch_id: String,
    pub batch_name: String,
    pub status: BatchStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<DateTime<Utc>>,
    /// In the order they started.
    pub tasks: Vec<TaskState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskState {
    pub task_id: String,
    pub task_type: String,
    pub name: String,
    pub status: TaskStatus,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    #[schemars(with = "Option<String>")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A pipeline's graph as its latest run left it (seed 002).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineNodes {
    pub pipeline: String,
    pub run_id: String,
    /// In pipeline order.
    pub nodes: Vec<NodeState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeState {
    pub node_id: String,
    pub node_name: String,
    pub status: NodeStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentState {
    pub agent: String,
    pub status: AgentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_command: Option<String>,
    /// Its queued and running commands, in the order they were queued.
    pub queue: Vec<CommandState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandState {
    pub command_id: String,
    pub agent: String,
    pub status: CommandStatus,
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was last updated.
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_its_id_beside_its_type() {
        let text = r#"{"type":"command_request","id":7,"agent":"claude","prompt":"fix it","priority":"high"}"#;
        let message: ClientMessage = serde_json::from_str(text).unwrap();
        assert_eq!(message.id, Some(RequestId::Number(7)));
        assert!(matches!(
            message.body,
            ClientBody::CommandRequest {
                priority: Priority::High,
                ..
            }
        ));
        let back = serde_json::to_value(&message).unwrap();
        assert_eq!(back["type"], "command_request");
        assert_eq!(back["id"], 7);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let text = r#"{"type":"identify","protocol_version":"1.0.0","token":"hunter2","client":{"kind":"agent"}}"#;
        let message: ClientMessage = serde_json::from_str(text).unwrap();
        assert!(!format!("{message:?}").contains("hunter2"));
    }

    #[test]
    fn an_event_and_a_reply_are_told_apart_by_their_shape() {
        let pong: ServerMessage = serde_json::from_str(r#"{"type":"pong","id":"a"}"#).unwrap();
        assert!(matches!(
            pong,
            ServerMessage::Reply(ServerReply {
                body: ReplyBody::Pong,
                ..
            })
        ));
        let event = r#"{"seq":3,"time":"2026-01-01T00:00:00.000Z","type":"log","level":"info","source":"runner","message":"hi"}"#;
        assert!(matches!(
            serde_json::from_str::<ServerMessage>(event).unwrap(),
            ServerMessage::Event(_)
        ));
    }

    #[test]
    fn a_protocol_of_another_major_version_is_refused() {
        let body = ClientBody::Identify {
            protocol_version: "2.0.0".into(),
            token: None,
            client: ClientInfo::default(),
            after_seq: None,
            filter: None,
        };
        assert!(body.validate().unwrap_err().contains("not supported"));
    }
}
