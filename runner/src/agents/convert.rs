//! Adapter events (WIT types) → protocol [`Activity`].

use crate::plugin::{AgentEvent, ChangeKind};
use protocol::Activity;
use serde_json::Value;

pub fn activity(event: AgentEvent) -> Activity {
    match event {
        AgentEvent::SessionStarted(session_id) => Activity::SessionStarted { session_id },
        AgentEvent::AssistantMessage(text) => Activity::AssistantMessage { text },
        AgentEvent::Thinking(text) => Activity::Thinking { text },
        AgentEvent::ToolUse(tool) => Activity::ToolUse {
            id: tool.id,
            name: tool.name,
            input: serde_json::from_str(&tool.input).unwrap_or(Value::String(tool.input)),
        },
        AgentEvent::ToolResult(result) => Activity::ToolResult {
            id: result.id,
            output: result.output,
            is_error: result.is_error,
        },
        AgentEvent::FileChange(change) => Activity::FileChange {
            path: change.path,
            change: match change.kind {
                ChangeKind::Add => "add",
                ChangeKind::Update => "update",
                ChangeKind::Delete => "delete",
                ChangeKind::Unknown => "unknown",
            }
            .to_string(),
        },
        AgentEvent::CommandRun(run) => Activity::CommandRun {
            command: run.command,
            exit_code: run.exit_code,
            output: run.output,
        },
        AgentEvent::Usage(usage) => Activity::Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_tokens: usage.cached_tokens,
            cost_usd: usage.cost_usd,
        },
        AgentEvent::Error(message) => Activity::Error { message },
        AgentEvent::FinalResult(result) => Activity::FinalResult {
            summary: result.summary,
            is_error: result.is_error,
        },
        AgentEvent::Raw(line) => Activity::Raw { line },
    }
}
