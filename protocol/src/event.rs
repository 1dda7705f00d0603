//! [`Event`]: one numbered, timestamped state change.

use crate::status::*;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One state change, numbered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Grows by one with every event a runner publishes; never repeats.
    pub seq: u64,
    /// When the change happened (RFC 3339, UTC, milliseconds).
    #[serde(with = "rfc3339")]
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The run this event belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        use EventKind::*;
        match &self.kind {
            RunStatus { run_id, .. }
            | BatchStatus { run_id, .. }
            | TaskStarted { run_id, .. }
            | TaskProgress { run_id, .. }
            | TaskFinished { run_id, .. } => Some(run_id),
            Log { run_id, .. } | TerminalOutput { run_id, .. } | CommandStatus { run_id, .. } => {
                run_id.as_deref()
            }
            AgentActivity { run_id, .. } => run_id.as_deref(),
            AgentStatus { .. } => None,
        }
    }

    /// The `type` field of the event's JSON form.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// What changed. Serialized with a `type` tag in snake case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run changed state.
    RunStatus {
        run_id: String,
        pipeline: String,
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Why the run failed or was aborted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A batch changed state. `error` is set when it failed.
    BatchStatus {
        run_id: String,
        pipeline: String,
        batch_id: String,
        batch_name: String,
        status: BatchStatus,
        /// The git branch holding the batch's changes, when it completed in a repository.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// One line from the batch type, for example `3 of 4 tasks completed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// A task (a block) started.
    TaskStarted {
        run_id: String,
        batch_id: String,
        task_id: String,
        task_type: String,
        name: String,
        priority: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_text: Option<String>,
    },
    /// A running task said what it is doing.
    TaskProgress {
        run_id: String,
        batch_id: String,
        task_id: String,
        display_text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<u8>,
    },
    /// A task finished, one way or another.
    TaskFinished {
        run_id: String,
        batch_id: String,
        task_id: String,
        task_type: String,
        name: String,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
        started_at: Option<DateTime<Utc>>,
        #[serde(with = "rfc3339")]
        finished_at: DateTime<Utc>,
        duration_ms: u64,
        /// The task's output (JSON), when it completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// For processes: how they exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A log line from the runner or a plugin.
    Log {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        level: LogLevel,
        /// Who logged it: `runner`, or the plugin's name.
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<Stream>,
        message: String,
    },
    /// A chunk (at most 10 KB) of a process's or plugin's output.
    TerminalOutput {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command_id: Option<String>,
        stream: Stream,
        /// 0, 1, 2, ... within one task or command, over both streams.
        sequence: u64,
        data: String,
    },
    /// A command sent to an agent changed state.
    CommandStatus {
        command_id: String,
        agent: String,
        status: CommandStatus,
        priority: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        /// Set when the command completed or failed with an exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An agent changed state.
    AgentStatus {
        agent: String,
        status: AgentStatus,
        /// Commands waiting in its queue.
        queued: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_command: Option<String>,
    },
    /// Something an agent did, parsed from its output by its adapter.
    AgentActivity {
        command_id: String,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        activity: Activity,
    },
}

impl EventKind {
    /// The `type` field of the JSON form.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStatus { .. } => "run_status",
            Self::BatchStatus { .. } => "batch_status",
            Self::TaskStarted { .. } => "task_started",
            Self::TaskProgress { .. } => "task_progress",
            Self::TaskFinished { .. } => "task_finished",
            Self::Log { .. } => "log",
            Self::TerminalOutput { .. } => "terminal_output",
            Self::CommandStatus { .. } => "command_status",
            Self::AgentStatus { .. } => "agent_status",
            Self::AgentActivity { .. } => "agent_activity",
        }
    }
}

/// One thing an agent did, as its adapter understood it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    SessionStarted {
        session_id: String,
    },
    AssistantMessage {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolUse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        input: Value,
    },
    ToolResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        output: String,
        is_error: bool,
    },
    FileChange {
        path: String,
        /// `add`, `update`, `delete` or `unknown`.
        change: String,
    },
    CommandRun {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        cached_tokens: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    Error {
        message: String,
    },
    FinalResult {
        summary: String,
        is_error: bool,
    },
    /// A line the adapter did not understand.
    Raw {
        line: String,
    },
}

/// Formats a timestamp the way every event does: RFC 3339, UTC, milliseconds.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => s.serialize_str(&super::format_time(time)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_status_event_round_trips_through_json_with_its_type_tag() {
        let event = Event {
            seq: 7,
            time: DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123Z").unwrap().with_timezone(&Utc),
            kind: EventKind::BatchStatus {
                run_id: "r1".into(),
                pipeline: "default".into(),
                batch_id: "build".into(),
                batch_name: "Build".into(),
                status: BatchStatus::Failed,
                branch: None,
                error: Some("task `x` failed".into()),
                summary: None,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "batch_status");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["time"], "2026-11-22T10:00:00.123Z");
        assert_eq!(json["error"], "task `x` failed");
        assert!(json.get("branch").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
