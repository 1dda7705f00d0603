//! `codex exec --json` lines → agent events.
//!
//! Two formats exist and both are read:
//!
//! **thread / turn / item** (codex ≥ 0.44):
//!
//! | line | events |
//! |---|---|
//! | `thread.started` | `session-started(thread_id)` |
//! | `item.*` `agent_message` / `reasoning` | `assistant-message` / `thinking` (on completion) |
//! | `item.started` `command_execution` | `tool-use` named `command_execution` |
//! | `item.completed` `command_execution` | `command-run` with its exit code and output |
//! | `item.completed` `file_change` | one `file-change` per path (`error` when the patch failed) |
//! | `item.*` `todo_list` | `tool-use` named `todo_list` whenever the list changes |
//! | `item.*` `mcp_tool_call`, `web_search` | `tool-use`, then `tool-result` for MCP calls |
//! | `item.completed` `error` | `error` (a warning: the turn goes on) |
//! | `error` | `error` (not fatal by itself); a retry notice (`Reconnecting... 2/5 (…)`) becomes `raw` |
//! | `turn.completed` | `usage`, `final-result` with the turn's last agent message |
//! | `turn.failed` | `error`, failed `final-result`: the run failed |
//!
//! **`{"id", "msg": {...}}` envelope** (before 0.44): `session_configured`,
//! `agent_message`, `agent_reasoning`, `exec_command_begin/end`,
//! `patch_apply_begin/end`, `mcp_tool_call_begin/end`, `web_search_end`,
//! `plan_update`, `token_count`, `task_complete`, `error` (fatal),
//! `stream_error` (a retry notice: `raw`), `turn_aborted` (fatal); streaming
//! deltas are dropped and `background_event` becomes a `raw` log line.
//!
//! Retries are not errors: codex retries a failed request five times
//! (`Reconnecting... 1/5 (unexpected status 401 …)`) before it gives up with
//! `turn.failed`. Each notice is a `raw` line; the reason in its parentheses
//! is added to the run's error when that error does not already say it.
//!
//! Non-JSON lines (`Reading additional input from stdin...`), unknown types
//! and stderr become `raw`. Error messages that are JSON text
//! (`{"type":"error","status":400,"error":{...}}`) are decoded into
//! `400 invalid_request_error: <message>`.
//!
//! Token counts: codex's `input_tokens` already includes
//! `cached_input_tokens`; they are reported as given (no cost is printed).

use std::collections::{HashMap, HashSet};

use runner_plugin_sdk::agent::{
    AgentEvent, ChangeKind, CommandRun, FileChange, FinalResult, Outcome, OutputStream, ToolResult,
    ToolUse, Usage,
};
use serde_json::{Value, json};

use crate::support::{
    Retries, StderrHint, is_retry_notice, json_text, parenthesized_reason, readable_error,
    run_error, text,
};

const AGENT: &str = "codex";

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

/// The state of one execution: what a later line or `finish` needs.
#[derive(Default)]
pub struct CodexParser {
    session_id: Option<String>,
    /// The last agent message of the whole run.
    last_message: Option<String>,
    /// The last agent message of the current turn.
    turn_message: Option<String>,
    last_result: Option<String>,
    /// The first fatal error (`turn.failed`, legacy `error`).
    failure: Option<String>,
    last_error: Option<String>,
    /// Items whose `tool-use` was already reported.
    announced: HashSet<String>,
    /// The last todo list reported, by item id.
    todo_lists: HashMap<String, String>,
    /// Legacy: commands and patches by call id, until their end event.
    commands: HashMap<String, String>,
    patches: HashMap<String, Vec<FileChange>>,
    /// Legacy: the latest `token_count`, reported at `task_complete`.
    usage: Option<Usage>,
    stderr: StderrHint,
    retries: Retries,
}

impl CodexParser {
    /// Parses one output line (without its newline); never panics.
    pub fn parse_line(&mut self, stream: OutputStream, line: &str) -> Vec<AgentEvent> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Vec::new();
        }
        if let OutputStream::Stderr = stream {
            self.stderr.note(line);
            return vec![AgentEvent::Raw(line.to_string())];
        }
        let value = match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => value,
            _ => return vec![AgentEvent::Raw(line.to_string())],
        };
        let mut events = Vec::new();
        let understood = match (value.get("type").and_then(Value::as_str), value.get("msg")) {
            (Some(kind), _) => self.event(kind, &value, &mut events),
            (None, Some(msg)) if msg.is_object() => self.legacy(msg, &mut events),
            _ => false,
        };
        if !understood {
            events.push(AgentEvent::Raw(line.to_string()));
        }
        events
    }

    /// A thread / turn / item event; `false` when the type is unknown.
    fn event(&mut self, kind: &str, value: &Value, events: &mut Vec<AgentEvent>) -> bool {
        match kind {
            "thread.started" => {
                if let Some(id) = text(value, "thread_id") {
                    self.start_session(id, events);
                }
            }
            "turn.started" => self.turn_message = None,
            "turn.completed" => {
                if let Some(usage) = value.get("usage") {
                    events.push(AgentEvent::Usage(usage_from(usage)));
                }
                self.complete_turn(self.turn_message.clone(), events);
            }
            "turn.failed" => {
                let message = value
                    .get("error")
                    .and_then(|error| text(error, "message"))
                    .map(readable_error)
                    .unwrap_or_else(|| "the turn failed".to_string());
                self.fail(message.clone(), events);
                events.push(AgentEvent::FinalResult(FinalResult {
                    summary: message,
                    is_error: true,
                }));
            }
            "error" => {
                let message = text(value, "message")
                    .map(readable_error)
                    .unwrap_or_else(|| "codex reported an error".to_string());
                self.warn_or_retry(message, events);
            }
            "item.started" | "item.updated" | "item.completed" => {
                let phase = match kind {
                    "item.started" => Phase::Started,
                    "item.updated" => Phase::Updated,
                    _ => Phase::Completed,
                };
                return match value.get("item") {
                    Some(item) if item.is_object() => self.item(phase, item, events),
                    _ => false,
                };
            }
            _ => return false,
        }
        true
    }

    fn item(&mut self, phase: Phase, item: &Value, events: &mut Vec<AgentEvent>) -> bool {
        let id = text(item, "id").map(String::from);
        let completed = phase == Phase::Completed;
        match text(item, "type").unwrap_or("") {
            "agent_message" if completed => {
                if let Some(message) = text(item, "text") {
                    self.message(message, events);
                }
            }
            "reasoning" if completed => {
                if let Some(thought) = text(item, "text") {
                    events.push(AgentEvent::Thinking(thought.to_string()));
                }
            }
            "command_execution" => {
                let command = text(item, "command").unwrap_or("").to_string();
                if phase == Phase::Started {
                    self.announce(
                        id,
                        "command_execution",
                        json!({ "command": command }),
                        events,
                    );
                } else if completed {
                    events.push(AgentEvent::CommandRun(CommandRun {
                        command,
                        exit_code: item.get("exit_code").and_then(exit_code),
                        output: item
                            .get("aggregated_output")
                            .and_then(Value::as_str)
                            .map(String::from),
                    }));
                }
            }
            "file_change" if completed => {
                let changes: Vec<FileChange> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .map(|changes| changes.iter().filter_map(file_change).collect())
                    .unwrap_or_default();
                if text(item, "status") == Some("failed") {
                    let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
                    self.warn(format!("file change failed: {}", paths.join(", ")), events);
                } else {
                    events.extend(changes.into_iter().map(AgentEvent::FileChange));
                }
            }
            "todo_list" => {
                let items = item.get("items").cloned().unwrap_or(Value::Null);
                let input = json!({ "items": items }).to_string();
                let key = id.clone().unwrap_or_default();
                if self.todo_lists.get(&key) != Some(&input) {
                    self.todo_lists.insert(key, input.clone());
                    events.push(AgentEvent::ToolUse(ToolUse {
                        id,
                        name: "todo_list".into(),
                        input,
                    }));
                }
            }
            "mcp_tool_call" => {
                let name = match (text(item, "server"), text(item, "tool")) {
                    (Some(server), Some(tool)) => format!("{server}.{tool}"),
                    (None, Some(tool)) => tool.to_string(),
                    _ => "mcp_tool_call".to_string(),
                };
                let arguments = item.get("arguments").cloned().unwrap_or(Value::Null);
                self.announce(id.clone(), &name, arguments, events);
                if completed {
                    let is_error = text(item, "status") == Some("failed")
                        || item.get("error").is_some_and(|e| !e.is_null());
                    let output = item
                        .get("error")
                        .and_then(|e| text(e, "message"))
                        .map(String::from)
                        .or_else(|| item.get("result").filter(|r| !r.is_null()).map(mcp_output))
                        .unwrap_or_default();
                    events.push(AgentEvent::ToolResult(ToolResult {
                        id,
                        output,
                        is_error,
                    }));
                }
            }
            "web_search" => {
                let query = text(item, "query").unwrap_or("");
                self.announce(id, "web_search", json!({ "query": query }), events);
            }
            "error" if completed => {
                let message = text(item, "message")
                    .map(readable_error)
                    .unwrap_or_else(|| "codex reported an error".to_string());
                self.warn_or_retry(message, events);
            }
            "agent_message" | "reasoning" | "file_change" | "error" => {}
            _ => return false,
        }
        true
    }

    /// An `{"id", "msg": {...}}` event of codex before 0.44.
    fn legacy(&mut self, msg: &Value, events: &mut Vec<AgentEvent>) -> bool {
        let call_id = text(msg, "call_id").map(String::from);
        match text(msg, "type").unwrap_or("") {
            "session_configured" => {
                if let Some(id) = text(msg, "session_id") {
                    self.start_session(id, events);
                }
            }
            "task_started" => self.turn_message = None,
            "agent_message" => {
                if let Some(message) = text(msg, "message") {
                    self.message(message, events);
                }
            }
            "agent_reasoning" => {
                if let Some(thought) = text(msg, "text") {
                    events.push(AgentEvent::Thinking(thought.to_string()));
                }
            }
            "exec_command_begin" => {
                let command = match msg.get("command") {
                    Some(Value::Array(parts)) => shell_join(parts.iter().filter_map(Value::as_str)),
                    Some(Value::String(command)) => command.clone(),
                    _ => String::new(),
                };
                if let Some(call_id) = &call_id {
                    self.commands.insert(call_id.clone(), command.clone());
                }
                let input = json!({ "command": command, "cwd": msg.get("cwd") });
                self.announce(call_id, "exec_command", input, events);
            }
            "exec_command_end" => {
                let command = call_id
                    .as_ref()
                    .and_then(|id| self.commands.remove(id))
                    .unwrap_or_default();
                let output = match msg.get("aggregated_output").and_then(Value::as_str) {
                    Some(output) => output.to_string(),
                    None => {
                        let part = |key| msg.get(key).and_then(Value::as_str).unwrap_or("");
                        format!("{}{}", part("stdout"), part("stderr"))
                    }
                };
                events.push(AgentEvent::CommandRun(CommandRun {
                    command,
                    exit_code: msg.get("exit_code").and_then(exit_code),
                    output: Some(output),
                }));
            }
            "patch_apply_begin" => {
                let changes = legacy_changes(msg.get("changes"));
                let paths: Vec<_> = changes.iter().map(|c| c.path.clone()).collect();
                if let Some(call_id) = &call_id {
                    self.patches.insert(call_id.clone(), changes);
                }
                self.announce(call_id, "apply_patch", json!({ "paths": paths }), events);
            }
            "patch_apply_end" => {
                let changes = call_id
                    .as_ref()
                    .and_then(|id| self.patches.remove(id))
                    .unwrap_or_default();
                if msg.get("success").and_then(Value::as_bool).unwrap_or(true) {
                    events.extend(changes.into_iter().map(AgentEvent::FileChange));
                } else {
                    let reason = text(msg, "stderr").unwrap_or("no details");
                    self.warn(
                        format!("applying a patch failed: {}", reason.trim()),
                        events,
                    );
                }
            }
            "mcp_tool_call_begin" => {
                let invocation = msg.get("invocation").unwrap_or(&Value::Null);
                let name = match (text(invocation, "server"), text(invocation, "tool")) {
                    (Some(server), Some(tool)) => format!("{server}.{tool}"),
                    _ => "mcp_tool_call".to_string(),
                };
                let arguments = invocation.get("arguments").cloned().unwrap_or(Value::Null);
                self.announce(call_id, &name, arguments, events);
            }
            "mcp_tool_call_end" => {
                let result = msg.get("result").unwrap_or(&Value::Null);
                let (output, is_error) = match (result.get("Ok"), result.get("Err")) {
                    (_, Some(err)) => (
                        err.as_str().map_or_else(|| err.to_string(), String::from),
                        true,
                    ),
                    (Some(ok), _) => (mcp_output(ok), false),
                    _ => (mcp_output(result), false),
                };
                events.push(AgentEvent::ToolResult(ToolResult {
                    id: call_id,
                    output,
                    is_error,
                }));
            }
            "web_search_end" => {
                let query = text(msg, "query").unwrap_or("");
                self.announce(call_id, "web_search", json!({ "query": query }), events);
            }
            "plan_update" => {
                events.push(AgentEvent::ToolUse(ToolUse {
                    id: None,
                    name: "update_plan".into(),
                    input: msg.to_string(),
                }));
            }
            "token_count" => {
                let totals = msg
                    .get("info")
                    .and_then(|info| info.get("total_token_usage"))
                    .unwrap_or(msg);
                if totals.get("input_tokens").is_some() {
                    self.usage = Some(usage_from(totals));
                }
            }
            "task_complete" => {
                if let Some(usage) = self.usage.take() {
                    events.push(AgentEvent::Usage(usage));
                }
                let summary = text(msg, "last_agent_message")
                    .map(String::from)
                    .or_else(|| self.turn_message.clone());
                self.complete_turn(summary, events);
            }
            "error" => {
                let message = text(msg, "message")
                    .map(readable_error)
                    .unwrap_or_else(|| "codex reported an error".to_string());
                self.fail(message, events);
            }
            "turn_aborted" => {
                let reason = text(msg, "reason").unwrap_or("unknown reason");
                self.fail(format!("the turn was aborted: {reason}"), events);
            }
            "stream_error" => {
                let message = text(msg, "message").unwrap_or("stream error");
                events.push(self.retries.note(message, message));
            }
            "background_event" => {
                let message = text(msg, "message").unwrap_or("");
                events.push(AgentEvent::Raw(message.to_string()));
            }
            "agent_message_delta"
            | "agent_reasoning_delta"
            | "agent_reasoning_raw_content"
            | "agent_reasoning_raw_content_delta"
            | "agent_reasoning_section_break"
            | "exec_command_output_delta"
            | "web_search_begin"
            | "turn_diff"
            | "user_message"
            | "shutdown_complete" => {}
            _ => return false,
        }
        true
    }

    fn start_session(&mut self, id: &str, events: &mut Vec<AgentEvent>) {
        if self.session_id.as_deref() != Some(id) {
            self.session_id = Some(id.to_string());
            events.push(AgentEvent::SessionStarted(id.to_string()));
        }
    }

    fn message(&mut self, message: &str, events: &mut Vec<AgentEvent>) {
        self.last_message = Some(message.to_string());
        self.turn_message = Some(message.to_string());
        events.push(AgentEvent::AssistantMessage(message.to_string()));
    }

    /// Reports a tool use once per item or call id.
    fn announce(
        &mut self,
        id: Option<String>,
        name: &str,
        input: Value,
        events: &mut Vec<AgentEvent>,
    ) {
        if let Some(id) = &id
            && !self.announced.insert(id.clone())
        {
            return;
        }
        events.push(AgentEvent::ToolUse(ToolUse {
            id,
            name: name.to_string(),
            input: json_text(Some(&input)),
        }));
    }

    fn complete_turn(&mut self, summary: Option<String>, events: &mut Vec<AgentEvent>) {
        if let Some(summary) = &summary {
            self.last_result = Some(summary.clone());
        }
        events.push(AgentEvent::FinalResult(FinalResult {
            summary: summary.unwrap_or_default(),
            is_error: false,
        }));
    }

    /// An error the run does not survive.
    fn fail(&mut self, message: String, events: &mut Vec<AgentEvent>) {
        if self.failure.is_none() {
            self.failure = Some(message.clone());
        }
        // `turn.failed` repeats the `error` line just before it.
        if self.last_error.as_ref() != Some(&message) {
            self.warn(message, events);
        }
    }

    /// A retry notice (`Reconnecting... 2/5 (…)`) is no error: a `raw` line.
    fn warn_or_retry(&mut self, message: String, events: &mut Vec<AgentEvent>) {
        if is_retry_notice(&message) {
            events.push(self.retries.note(&message, parenthesized_reason(&message)));
        } else {
            self.warn(message, events);
        }
    }

    /// An error reported by codex; it decides the run only if nothing clearer comes.
    fn warn(&mut self, message: String, events: &mut Vec<AgentEvent>) {
        self.last_error = Some(message.clone());
        events.push(AgentEvent::Error(message));
    }

    /// The outcome once the process ended with `exit_code` (none: killed).
    pub fn finish(&self, exit_code: Option<i32>) -> Outcome {
        let success = exit_code == Some(0) && self.failure.is_none();
        let error = (!success).then(|| {
            run_error(
                AGENT,
                exit_code,
                self.failure.as_deref(),
                self.last_error.as_deref(),
                &self.stderr,
                &self.retries,
            )
        });
        Outcome {
            success,
            summary: self
                .last_result
                .clone()
                .or_else(|| self.last_message.clone()),
            error,
            session_id: self.session_id.clone(),
        }
    }
}

fn usage_from(usage: &Value) -> Usage {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: count("input_tokens"),
        output_tokens: count("output_tokens"),
        cached_tokens: count("cached_input_tokens"),
        cost_usd: None,
    }
}

fn exit_code(value: &Value) -> Option<i32> {
    value.as_i64().and_then(|code| i32::try_from(code).ok())
}

fn change_kind(kind: &str) -> ChangeKind {
    match kind {
        "add" => ChangeKind::Add,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        _ => ChangeKind::Unknown,
    }
}

/// `{"path": "...", "kind": "update"}`; newer versions nest `kind` as `{"type": "update"}`.
fn file_change(change: &Value) -> Option<FileChange> {
    let path = text(change, "path")?.to_string();
    let kind = match change.get("kind") {
        Some(Value::String(kind)) => change_kind(kind),
        Some(kind) => text(kind, "type").map_or(ChangeKind::Unknown, change_kind),
        None => ChangeKind::Unknown,
    };
    Some(FileChange { path, kind })
}

/// Legacy `changes`: `{"<path>": {"add": {...}} | {"update": {...}} | {"delete": {...}}}`.
fn legacy_changes(changes: Option<&Value>) -> Vec<FileChange> {
    let Some(Value::Object(changes)) = changes else {
        return Vec::new();
    };
    changes
        .iter()
        .map(|(path, change)| {
            let kind = match change {
                Value::Object(fields) => fields
                    .keys()
                    .map(|key| change_kind(key))
                    .find(|kind| !matches!(kind, ChangeKind::Unknown))
                    .or_else(|| text(change, "type").map(change_kind))
                    .unwrap_or(ChangeKind::Unknown),
                _ => ChangeKind::Unknown,
            };
            FileChange {
                path: path.clone(),
                kind,
            }
        })
        .collect()
}

/// An MCP result's text blocks, or its JSON when it has none.
fn mcp_output(result: &Value) -> String {
    let texts: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if texts.is_empty() {
        result.to_string()
    } else {
        texts.join("\n")
    }
}

/// `["bash", "-lc", "ls -1"]` → `bash -lc 'ls -1'`.
fn shell_join<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts
        .map(|part| {
            let plain = !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                part.to_string()
            } else {
                format!("'{}'", part.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_legacy_argv_commands_with_shell_quoting() {
        let parts = ["bash", "-lc", "ls -1", "it's"];
        assert_eq!(
            shell_join(parts.into_iter()),
            r#"bash -lc 'ls -1' 'it'\''s'"#
        );
    }

    #[test]
    fn reads_nested_change_kinds() {
        let change = json!({"path": "a.rs", "kind": {"type": "delete"}});
        assert!(matches!(
            file_change(&change).unwrap().kind,
            ChangeKind::Delete
        ));
    }

    #[test]
    fn mcp_calls_become_a_tool_use_and_a_tool_result() {
        let mut parser = CodexParser::default();
        let mut events = parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"item.started","item":{"id":"item_5","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"wit"},"status":"in_progress"}}"#,
        );
        events.extend(parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"item.completed","item":{"id":"item_5","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"wit"},"result":{"content":[{"type":"text","text":"found"}]},"error":null,"status":"completed"}}"#,
        ));
        let [AgentEvent::ToolUse(tool), AgentEvent::ToolResult(result)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(tool.name, "docs.search");
        assert_eq!(result.output, "found");
        assert!(!result.is_error);
    }

    #[test]
    fn garbage_and_odd_json_become_raw_lines() {
        let mut parser = CodexParser::default();
        for line in [
            "not json",
            "[]",
            "null",
            r#"{"type":5}"#,
            r#"{"msg":"x"}"#,
            r#"{"type":"item.completed"}"#,
        ] {
            let events = parser.parse_line(OutputStream::Stdout, line);
            assert!(
                matches!(events.as_slice(), [AgentEvent::Raw(raw)] if raw == line),
                "{line}"
            );
        }
    }
}
