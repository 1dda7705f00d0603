//! Claude Code's `--output-format stream-json --verbose` lines → agent events.
//!
//! | line | events |
//! |---|---|
//! | any line with a new `session_id` | `session-started` (once per id) |
//! | `assistant` text / thinking / tool_use blocks | `assistant-message` / `thinking` / `tool-use` |
//! | `user` tool_result blocks | `tool-result`, plus `command-run` for `Bash` and `file-change` for `Write`, `Edit`, `MultiEdit`, `NotebookEdit` |
//! | `result` | `usage`, `error` when it failed, `final-result` |
//! | `system` `api_retry` | `raw`: a retry notice, not an error |
//! | `system` (other than init), `stream_event`, `rate_limit_event` | nothing: the complete `assistant` lines carry the same content |
//! | `control_request`, unknown types, non-JSON, stderr | `raw` |
//!
//! ## Edges
//! - A `result` failed when `is_error` is true *or* its subtype is not
//!   `success`: Claude Code 1.0 reported `error_during_execution` with
//!   `is_error: false`, and newer versions report API failures as
//!   `subtype: "success", is_error: true`.
//! - Token counts follow one rule for every adapter: `input-tokens` counts
//!   every prompt token (Claude's `input_tokens` + `cache_creation_input_tokens`
//!   + `cache_read_input_tokens`) and `cached-tokens` the part read from cache.
//! - `total_cost_usd` is cumulative over the process, so when one process
//!   prints several results each `usage` carries the cost added since the
//!   previous one.
//! - Assistant lines of sub-agents (`parent_tool_use_id` set) are reported
//!   but never become the run's summary.
//! - `error` on an `assistant` line (`authentication_failed`, ...) is kept and
//!   prefixes the error of the failed `result` that follows.
//! - Retries are not errors: `{"type":"system","subtype":"api_retry","attempt":1,
//!   "max_retries":10,"retry_delay_ms":600,"error_status":529,"error":"overloaded"}`
//!   becomes the `raw` line `API request failed (529 overloaded); retry 1 of 10
//!   in 600 ms`, and `529 overloaded` is added to the run's error when that
//!   error does not say it.

use std::collections::HashMap;

use runner_plugin_sdk::agent::{
    AgentEvent, ChangeKind, CommandRun, FileChange, FinalResult, Outcome, OutputStream, ToolResult,
    ToolUse, Usage,
};
use serde_json::Value;

use crate::support::{Retries, StderrHint, json_text, readable_error, run_error, text};

const AGENT: &str = "claude";

/// The state of one execution: what a later line or `finish` needs.
#[derive(Default)]
pub struct ClaudeParser {
    session_id: Option<String>,
    /// The last top-level assistant text.
    last_message: Option<String>,
    /// The summary of the last `result`.
    last_result: Option<String>,
    /// The error of the first failed `result`.
    failure: Option<String>,
    /// `assistant.error`, for example `authentication_failed`.
    error_code: Option<String>,
    last_error: Option<String>,
    /// Tool uses by id, to interpret their results.
    tools: HashMap<String, (String, Value)>,
    /// `total_cost_usd` of the previous result.
    cost_so_far: f64,
    stderr: StderrHint,
    retries: Retries,
}

impl ClaudeParser {
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
        if let Some(session) = text(&value, "session_id")
            && self.session_id.as_deref() != Some(session)
        {
            self.session_id = Some(session.to_string());
            events.push(AgentEvent::SessionStarted(session.to_string()));
        }
        match value.get("type").and_then(Value::as_str) {
            Some("assistant") => self.assistant(&value, &mut events),
            Some("user") => self.user(&value, &mut events),
            Some("result") => self.result(&value, &mut events),
            Some("system") if text(&value, "subtype") == Some("api_retry") => {
                events.push(self.api_retry(&value));
            }
            Some("system" | "stream_event" | "rate_limit_event" | "keep_alive") => {}
            _ => events.push(AgentEvent::Raw(line.to_string())),
        }
        events
    }

    fn assistant(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        let is_subagent = value
            .get("parent_tool_use_id")
            .is_some_and(|p| !p.is_null());
        if let Some(code) = text(value, "error") {
            self.error_code = Some(code.to_string());
        }
        for block in content_blocks(value) {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(message) = text(block, "text") {
                        if !is_subagent {
                            self.last_message = Some(message.to_string());
                        }
                        events.push(AgentEvent::AssistantMessage(message.to_string()));
                    }
                }
                Some("thinking") => {
                    if let Some(thought) = text(block, "thinking") {
                        events.push(AgentEvent::Thinking(thought.to_string()));
                    }
                }
                Some("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                    let name = text(block, "name").unwrap_or("tool").to_string();
                    let id = text(block, "id").map(String::from);
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    if let Some(id) = &id {
                        self.tools.insert(id.clone(), (name.clone(), input.clone()));
                    }
                    events.push(AgentEvent::ToolUse(ToolUse {
                        id,
                        name,
                        input: json_text(Some(&input)),
                    }));
                }
                _ => {}
            }
        }
    }

    /// `system/api_retry`: the notice as a `raw` line.
    fn api_retry(&mut self, value: &Value) -> AgentEvent {
        let number = |key: &str| value.get(key).and_then(Value::as_u64);
        let status = number("error_status").map(|status| status.to_string());
        let reason = [status.as_deref(), text(value, "error")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let reason = if reason.is_empty() {
            "unknown error".to_string()
        } else {
            reason
        };
        let mut notice = format!("API request failed ({reason}); retry");
        if let Some(attempt) = number("attempt") {
            notice.push_str(&format!(" {attempt}"));
            if let Some(max) = number("max_retries") {
                notice.push_str(&format!(" of {max}"));
            }
        }
        if let Some(delay) = number("retry_delay_ms") {
            notice.push_str(&format!(" in {delay} ms"));
        }
        self.retries.note(&notice, &reason)
    }

    fn user(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        let details = value.get("tool_use_result");
        for block in content_blocks(value) {
            if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                continue;
            }
            let id = text(block, "tool_use_id").map(String::from);
            let is_error = block
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let output = tool_output(block.get("content"));
            if let Some((name, input)) = id.as_ref().and_then(|id| self.tools.get(id))
                && let Some(event) = derived_event(name, input, details, &output, is_error)
            {
                events.push(event);
            }
            events.push(AgentEvent::ToolResult(ToolResult {
                id,
                output,
                is_error,
            }));
        }
    }

    fn result(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        let subtype = text(value, "subtype").unwrap_or("success");
        let is_error = value
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || subtype != "success";
        let result_text = text(value, "result");

        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            let cached = count("cache_read_input_tokens");
            let cost = value
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .map(|total| {
                    let added = total - self.cost_so_far;
                    self.cost_so_far = total;
                    if added >= 0.0 { added } else { total }
                });
            events.push(AgentEvent::Usage(Usage {
                input_tokens: count("input_tokens")
                    .saturating_add(count("cache_creation_input_tokens"))
                    .saturating_add(cached),
                output_tokens: count("output_tokens"),
                cached_tokens: cached,
                cost_usd: cost,
            }));
        }

        let summary = result_text
            .map(String::from)
            .or_else(|| self.last_message.clone())
            .unwrap_or_default();
        if is_error {
            let error = self.result_error(value, subtype, result_text);
            self.last_error = Some(error.clone());
            if self.failure.is_none() {
                self.failure = Some(error.clone());
            }
            events.push(AgentEvent::Error(error));
        }
        if !summary.is_empty() {
            self.last_result = Some(summary.clone());
        }
        events.push(AgentEvent::FinalResult(FinalResult { summary, is_error }));
    }

    /// The clearest message of a failed result: its `errors` list, else its
    /// text (API errors decoded), prefixed by the assistant's error code;
    /// else its subtype.
    fn result_error(&self, value: &Value, subtype: &str, result_text: Option<&str>) -> String {
        let listed: Vec<&str> = value
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let message = if !listed.is_empty() {
            listed.join("; ")
        } else if let Some(result_text) = result_text {
            readable_error(result_text)
        } else if subtype != "success" {
            subtype.to_string()
        } else {
            "the result reported an error".to_string()
        };
        match self.error_code.as_deref() {
            Some(code) if code != "unknown" && !message.contains(code) => {
                format!("{code}: {message}")
            }
            _ => message,
        }
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

fn content_blocks(value: &Value) -> &[Value] {
    value
        .get("message")
        .and_then(|message| message.get("content"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A tool result's content: a string, or text blocks joined by newlines.
fn tool_output(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The command run or file change a built-in tool's result stands for.
fn derived_event(
    tool: &str,
    input: &Value,
    details: Option<&Value>,
    output: &str,
    is_error: bool,
) -> Option<AgentEvent> {
    match tool {
        "Bash" => {
            let command = text(input, "command")?.to_string();
            let interrupted = details
                .and_then(|d| d.get("interrupted"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let exit_code = if interrupted {
                None
            } else if is_error {
                exit_code_in(output)
            } else {
                Some(0)
            };
            let stdout = details
                .and_then(|d| d.get("stdout"))
                .and_then(Value::as_str);
            let stderr = details
                .and_then(|d| d.get("stderr"))
                .and_then(Value::as_str);
            let output = match (stdout, stderr) {
                (Some(out), Some(err)) if !err.is_empty() => format!("{out}{err}"),
                (Some(out), _) => out.to_string(),
                _ => output.to_string(),
            };
            Some(AgentEvent::CommandRun(CommandRun {
                command,
                exit_code,
                output: Some(output),
            }))
        }
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" if !is_error => {
            let path = text(input, "file_path")
                .or_else(|| text(input, "notebook_path"))
                .or_else(|| details.and_then(|d| text(d, "filePath")))?;
            let kind = match (tool, details.and_then(|d| text(d, "type"))) {
                ("Write", Some("create")) => ChangeKind::Add,
                ("Write", Some("update")) => ChangeKind::Update,
                ("Write", _) => ChangeKind::Unknown,
                _ => ChangeKind::Update,
            };
            Some(AgentEvent::FileChange(FileChange {
                path: path.to_string(),
                kind,
            }))
        }
        _ => None,
    }
}

/// Claude reports a failed command as `Exit code <n>` on the first line.
fn exit_code_in(output: &str) -> Option<i32> {
    let rest = output.trim_start().strip_prefix("Exit code ")?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_exit_code_of_a_failed_bash_call() {
        assert_eq!(exit_code_in("Exit code 2\nls: cannot access"), Some(2));
        assert_eq!(exit_code_in("Permission denied"), None);
    }

    #[test]
    fn a_failed_bash_result_becomes_a_command_run_with_its_exit_code() {
        let mut parser = ClaudeParser::default();
        parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"false"}}]}}"#,
        );
        let events = parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"Exit code 1"}]}}"#,
        );
        let Some(AgentEvent::CommandRun(run)) = events.first() else {
            panic!("{events:?}");
        };
        assert_eq!(run.command, "false");
        assert_eq!(run.exit_code, Some(1));
    }

    #[test]
    fn garbage_and_odd_json_become_raw_lines() {
        let mut parser = ClaudeParser::default();
        for line in [
            "not json",
            "[]",
            "null",
            "42",
            r#"{"type":5}"#,
            "{\"type\":\"assi",
        ] {
            let events = parser.parse_line(OutputStream::Stdout, line);
            assert!(
                matches!(events.as_slice(), [AgentEvent::Raw(raw)] if raw == line),
                "{line}"
            );
        }
        assert!(parser.parse_line(OutputStream::Stdout, "   ").is_empty());
    }
}
