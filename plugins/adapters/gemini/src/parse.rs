//! Gemini CLI's `--output-format stream-json` lines → agent events.
//!
//! | line | events |
//! |---|---|
//! | `init` | `session-started(session_id)` |
//! | `message` (assistant) | `assistant-message`; `delta: true` fragments are joined first |
//! | `message` (user) | nothing: it echoes the prompt |
//! | `tool_use` | `tool-use` |
//! | `tool_result` | `tool-result`, plus `command-run` for shell tools and `file-change` for `write_file` / `replace` |
//! | `error` | `error`; a retry notice becomes `raw` |
//! | `result` | `usage`, `error` when it failed, `final-result` |
//! | one `--output-format json` object (`response`, `stats`, `error`) | the same, at once |
//! | non-JSON (`YOLO mode is enabled...`), unknown types, stderr | `raw` |
//!
//! ## Edges
//! - Fragments with `delta: true` are held until the next stdout line that is
//!   not a fragment, so a message arrives as one `assistant-message`. The last
//!   joined message is the run's summary.
//! - Gemini reports no exit code for shell commands; `command-run` carries one
//!   only when the output states it (`Command exited with code: 1`, `Exit Code: 1`).
//! - `write_file` results carry no output in stream-json, so whether the file
//!   was created or overwritten is unknown (`change-kind.unknown`).
//! - A failed `result` may carry no `error` (after `Invalid stream: …`, for
//!   instance): its error is then the last `error` line before it.
//! - Retries are not errors. The CLI announces them on stderr
//!   (`Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{`,
//!   then the API's error as indented JSON); they stay `raw` lines, and the
//!   API's `message` becomes the retry's reason, added to the run's error
//!   when that error does not say it. `[API Error: …]` on stderr is the
//!   CLI's own account of a failed request and explains a failed exit first.
//! - Token counts: `input_tokens` already includes `cached`; reported as given.
//!   The json format's per-model `tokens` are summed (`prompt`, `candidates`, `cached`).

use std::collections::HashMap;

use runner_plugin_sdk::agent::{
    AgentEvent, ChangeKind, CommandRun, FileChange, FinalResult, Outcome, OutputStream, ToolResult,
    ToolUse, Usage,
};
use serde_json::Value;

use crate::support::{
    Retries, StderrHint, is_retry_notice, json_text, readable_error, run_error, text,
};

const AGENT: &str = "gemini";

/// The state of one execution: what a later line or `finish` needs.
#[derive(Default)]
pub struct GeminiParser {
    session_id: Option<String>,
    /// Assistant fragments (`delta: true`) not reported yet.
    pending: String,
    last_message: Option<String>,
    last_result: Option<String>,
    /// The error of the first failed `result`.
    failure: Option<String>,
    last_error: Option<String>,
    /// Tool uses by id, to interpret their results.
    tools: HashMap<String, (String, Value)>,
    stderr: StderrHint,
    retries: Retries,
    /// `status 429` of a stderr retry notice whose JSON dump may follow.
    retry_status: Option<String>,
}

impl GeminiParser {
    /// Parses one output line (without its newline); never panics.
    pub fn parse_line(&mut self, stream: OutputStream, line: &str) -> Vec<AgentEvent> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Vec::new();
        }
        if let OutputStream::Stderr = stream {
            self.stderr.note(line);
            return vec![self.stderr_line(line)];
        }
        let mut events = Vec::new();
        let value = match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                self.flush(&mut events);
                events.push(AgentEvent::Raw(line.to_string()));
                return events;
            }
        };
        let kind = value.get("type").and_then(Value::as_str);
        let is_assistant = text(&value, "role") == Some("assistant");
        if kind == Some("message") && is_assistant && value.get("delta") == Some(&Value::Bool(true))
        {
            if let Some(fragment) = value.get("content").and_then(Value::as_str) {
                self.pending.push_str(fragment);
            }
            return events;
        }
        self.flush(&mut events);

        match kind {
            Some("init") => {
                if let Some(id) = text(&value, "session_id") {
                    self.start_session(id, &mut events);
                }
            }
            Some("message") => {
                if let Some(content) = text(&value, "content").filter(|_| is_assistant) {
                    self.message(content.to_string(), &mut events);
                }
            }
            Some("tool_use") => self.tool_use(&value, &mut events),
            Some("tool_result") => self.tool_result(&value, &mut events),
            Some("error") => {
                let message = text(&value, "message")
                    .map(readable_error)
                    .unwrap_or_else(|| "gemini reported an error".to_string());
                if is_retry_notice(&message) {
                    events.push(self.retries.note(&message, &message));
                } else {
                    if text(&value, "severity") != Some("warning") {
                        self.last_error = Some(message.clone());
                    }
                    events.push(AgentEvent::Error(message));
                }
            }
            Some("result") => {
                if let Some(stats) = value.get("stats").filter(|s| s.is_object()) {
                    events.push(AgentEvent::Usage(stream_usage(stats)));
                }
                let failed = text(&value, "status") == Some("error")
                    || value.get("error").is_some_and(|e| !e.is_null());
                let error = failed.then(|| {
                    error_message(value.get("error"))
                        .or_else(|| self.last_error.clone())
                        .or_else(|| self.stderr.api_error().map(String::from))
                        .unwrap_or_else(|| "gemini reported an error".to_string())
                });
                self.complete(error, &mut events);
            }
            None if ["response", "stats", "error"]
                .iter()
                .any(|k| value.get(*k).is_some()) =>
            {
                self.json_output(&value, &mut events);
            }
            _ => events.push(AgentEvent::Raw(line.to_string())),
        }
        events
    }

    /// A stderr line: always `raw`, but a retry notice and the API error
    /// dumped after it are remembered as the retry's reason.
    fn stderr_line(&mut self, line: &str) -> AgentEvent {
        let trimmed = line.trim();
        if is_retry_notice(trimmed) {
            let (reason, dump_follows) = retry_reason(trimmed);
            self.retry_status = dump_follows.then(|| reason.clone());
            return self.retries.note(line, &reason);
        }
        if let Some(status) = &self.retry_status {
            if let Some(message) = dumped_message(trimmed) {
                let reason = format!("{status}: {message}");
                self.retries.set_reason(&reason);
                self.retry_status = None;
            } else if !trimmed.starts_with(['"', '{', '}', '[', ']']) {
                self.retry_status = None;
            }
        }
        AgentEvent::Raw(line.to_string())
    }

    /// Reports the joined assistant fragments, if any.
    fn flush(&mut self, events: &mut Vec<AgentEvent>) {
        if !self.pending.trim().is_empty() {
            let message = std::mem::take(&mut self.pending);
            self.message(message, events);
        }
        self.pending.clear();
    }

    fn message(&mut self, message: String, events: &mut Vec<AgentEvent>) {
        self.last_message = Some(message.clone());
        events.push(AgentEvent::AssistantMessage(message));
    }

    fn start_session(&mut self, id: &str, events: &mut Vec<AgentEvent>) {
        if self.session_id.as_deref() != Some(id) {
            self.session_id = Some(id.to_string());
            events.push(AgentEvent::SessionStarted(id.to_string()));
        }
    }

    fn tool_use(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        let name = text(value, "tool_name").unwrap_or("tool").to_string();
        let id = text(value, "tool_id").map(String::from);
        let parameters = value.get("parameters").cloned().unwrap_or(Value::Null);
        if let Some(id) = &id {
            self.tools
                .insert(id.clone(), (name.clone(), parameters.clone()));
        }
        events.push(AgentEvent::ToolUse(ToolUse {
            id,
            name,
            input: json_text(Some(&parameters)),
        }));
    }

    fn tool_result(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        let id = text(value, "tool_id").map(String::from);
        let is_error = text(value, "status") == Some("error");
        let output = match value.get("output") {
            Some(Value::String(output)) => output.clone(),
            Some(Value::Null) | None if is_error => {
                error_message(value.get("error")).unwrap_or_else(|| "the tool failed".to_string())
            }
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        if let Some((name, parameters)) = id.as_ref().and_then(|id| self.tools.get(id))
            && let Some(event) =
                derived_event(name, parameters, value.get("output"), &output, is_error)
        {
            events.push(event);
        }
        events.push(AgentEvent::ToolResult(ToolResult {
            id,
            output,
            is_error,
        }));
    }

    /// The single object of `--output-format json`.
    fn json_output(&mut self, value: &Value, events: &mut Vec<AgentEvent>) {
        if let Some(id) = text(value, "session_id") {
            self.start_session(id, events);
        }
        if let Some(response) = text(value, "response") {
            self.message(response.to_string(), events);
        }
        if let Some(models) = value
            .get("stats")
            .and_then(|stats| stats.get("models"))
            .and_then(Value::as_object)
        {
            let mut usage = Usage {
                input_tokens: 0,
                output_tokens: 0,
                cached_tokens: 0,
                cost_usd: None,
            };
            for tokens in models.values().filter_map(|model| model.get("tokens")) {
                let count = |key: &str| tokens.get(key).and_then(Value::as_u64).unwrap_or(0);
                usage.input_tokens = usage.input_tokens.saturating_add(count("prompt"));
                usage.output_tokens = usage.output_tokens.saturating_add(count("candidates"));
                usage.cached_tokens = usage.cached_tokens.saturating_add(count("cached"));
            }
            events.push(AgentEvent::Usage(usage));
        }
        let error = value.get("error").filter(|e| !e.is_null());
        let error = error.map(|e| {
            error_message(Some(e)).unwrap_or_else(|| "gemini reported an error".to_string())
        });
        self.complete(error, events);
    }

    /// A final result: failed with `error`, else summarised by the last message.
    fn complete(&mut self, error: Option<String>, events: &mut Vec<AgentEvent>) {
        let is_error = error.is_some();
        if let Some(error) = &error {
            // Said already by the `error` line just before.
            if self.last_error.as_ref() != Some(error) {
                events.push(AgentEvent::Error(error.clone()));
            }
            self.last_error = Some(error.clone());
            if self.failure.is_none() {
                self.failure = Some(error.clone());
            }
        }
        let summary = self.last_message.clone().or(error).unwrap_or_default();
        if !summary.is_empty() {
            self.last_result = Some(summary.clone());
        }
        events.push(AgentEvent::FinalResult(FinalResult { summary, is_error }));
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
        let pending = Some(self.pending.clone()).filter(|text| !text.trim().is_empty());
        Outcome {
            success,
            summary: pending
                .or_else(|| self.last_result.clone())
                .or_else(|| self.last_message.clone()),
            error,
            session_id: self.session_id.clone(),
        }
    }
}

/// `{"type": "unknown", "message": "[API Error: ...]"}` → its message, with
/// the type when it says something; `None` when there is no error value.
fn error_message(error: Option<&Value>) -> Option<String> {
    let error = error.filter(|e| !e.is_null())?;
    if let Some(message) = error.as_str() {
        return Some(readable_error(message));
    }
    let message = text(error, "message").map(readable_error);
    Some(match (text(error, "type"), message) {
        (Some(kind), Some(message)) if kind != "unknown" && !message.contains(kind) => {
            format!("{kind}: {message}")
        }
        (_, Some(message)) => message,
        (Some(kind), None) => kind.to_string(),
        (None, None) => error.to_string(),
    })
}

/// The reason in a stderr retry notice, and whether the API's error is
/// dumped as JSON on the lines after it:
/// `Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{`
/// → (`status 429`, true);
/// `Attempt 2 failed: You have exhausted your capacity on this model.. Retrying after 2772ms...`
/// → (`You have exhausted your capacity on this model`, false).
fn retry_reason(notice: &str) -> (String, bool) {
    let cut = notice
        .to_ascii_lowercase()
        .find("retrying")
        .unwrap_or(notice.len());
    let head = notice[..cut].trim().trim_end_matches('.').trim_end();
    let reason = match (head.find("failed: "), head.find("failed with ")) {
        (Some(at), _) => &head[at + "failed: ".len()..],
        (None, Some(at)) => &head[at + "failed with ".len()..],
        (None, None) => head,
    };
    let detail = notice[cut..]
        .split_once("...")
        .map_or("", |(_, detail)| detail.trim());
    let dump_follows = detail.ends_with(['{', '[']);
    if detail.is_empty() || dump_follows {
        (reason.to_string(), dump_follows)
    } else {
        (format!("{reason}: {detail}"), false)
    }
}

/// `"message": "No capacity available …",` in a dumped API error.
fn dumped_message(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("\"message\":")?
        .trim()
        .trim_end_matches(',');
    serde_json::from_str::<String>(rest)
        .ok()
        .filter(|message| !message.trim().is_empty())
}

fn stream_usage(stats: &Value) -> Usage {
    let count = |key: &str| stats.get(key).and_then(Value::as_u64);
    Usage {
        input_tokens: count("input_tokens").unwrap_or(0),
        output_tokens: count("output_tokens").unwrap_or(0),
        cached_tokens: count("cached").unwrap_or(0),
        cost_usd: None,
    }
}

/// The command run or file change a built-in tool's result stands for.
fn derived_event(
    tool: &str,
    parameters: &Value,
    raw_output: Option<&Value>,
    output: &str,
    is_error: bool,
) -> Option<AgentEvent> {
    match tool {
        "run_shell_command" | "Shell" | "Bash" => Some(AgentEvent::CommandRun(CommandRun {
            command: text(parameters, "command")?.to_string(),
            exit_code: stated_exit_code(output),
            output: Some(output.to_string()),
        })),
        "write_file" | "WriteFile" if !is_error => {
            // A diff object (when present) tells a new file from an overwritten one.
            let kind = match raw_output.and_then(|o| o.get("originalContent")) {
                Some(Value::Null) => ChangeKind::Add,
                Some(Value::String(_)) => ChangeKind::Update,
                _ => ChangeKind::Unknown,
            };
            Some(AgentEvent::FileChange(FileChange {
                path: text(parameters, "file_path")?.to_string(),
                kind,
            }))
        }
        "replace" | "edit" | "Edit" if !is_error => Some(AgentEvent::FileChange(FileChange {
            path: text(parameters, "file_path")?.to_string(),
            kind: ChangeKind::Update,
        })),
        _ => None,
    }
}

/// `Command exited with code: 2` or `Exit Code: 2` in a shell tool's output.
fn stated_exit_code(output: &str) -> Option<i32> {
    ["Command exited with code: ", "Exit Code: "]
        .iter()
        .find_map(|marker| {
            let rest = &output[output.find(marker)? + marker.len()..];
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            digits.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stated_exit_code() {
        assert_eq!(stated_exit_code("Command exited with code: 2"), Some(2));
        assert_eq!(stated_exit_code("Output: x\nExit Code: 127\n"), Some(127));
        assert_eq!(stated_exit_code("hello.txt"), None);
    }

    #[test]
    fn a_failed_tool_result_carries_the_error_message() {
        let mut parser = GeminiParser::default();
        parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"tool_use","tool_name":"read_file","tool_id":"r1","parameters":{"file_path":"x"}}"#,
        );
        let events = parser.parse_line(
            OutputStream::Stdout,
            r#"{"type":"tool_result","tool_id":"r1","status":"error","error":{"type":"file_not_found","message":"File not found: x"}}"#,
        );
        let [AgentEvent::ToolResult(result)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert!(result.is_error);
        assert_eq!(result.output, "file_not_found: File not found: x");
    }

    #[test]
    fn garbage_and_odd_json_become_raw_lines() {
        let mut parser = GeminiParser::default();
        for line in ["not json", "[]", "null", r#"{"type":5}"#, r#"{"kind":"x"}"#] {
            let events = parser.parse_line(OutputStream::Stdout, line);
            assert!(
                matches!(events.as_slice(), [AgentEvent::Raw(raw)] if raw == line),
                "{line}"
            );
        }
    }
}
