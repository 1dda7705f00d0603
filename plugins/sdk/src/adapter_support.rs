//! Request checks, option parsing and JSON helpers for agent adapters.

use crate::agent::{AgentEvent, AgentRequest};
use serde_json::{Map, Value};

/// Refuses requests no agent CLI can run: an empty prompt, an empty model,
/// program or working directory, a session id that would read as a flag.
pub fn check_request(agent: &str, request: &AgentRequest) -> Result<(), String> {
    if request.prompt.trim().is_empty() {
        return Err(format!(
            "{agent}: the prompt is empty; give the agent something to do"
        ));
    }
    if request.working_dir.trim().is_empty() {
        return Err(format!("{agent}: the working directory is empty"));
    }
    if let Some(model) = &request.model
        && model.trim().is_empty()
    {
        return Err(format!(
            "{agent}: `model` is empty; remove it to use the CLI's default model"
        ));
    }
    if let Some(program) = &request.program
        && program.trim().is_empty()
    {
        return Err(format!(
            "{agent}: `program` is empty; remove it to run `{agent}`"
        ));
    }
    if let Some(session) = &request.resume_session {
        if session.trim().is_empty() {
            return Err(format!("{agent}: the session to resume is empty"));
        }
        if session.starts_with('-') || session.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{agent}: `{session}` is not a session id (it starts with `-` or holds spaces)"
            ));
        }
    }
    Ok(())
}

/// Parses the `(key, JSON value)` options, refusing keys the adapter does
/// not know and values that are not JSON.
pub fn parse_options(
    agent: &str,
    options: &[(String, String)],
    known: &[&str],
) -> Result<Map<String, Value>, String> {
    let mut parsed = Map::new();
    for (key, value) in options {
        if !known.contains(&key.as_str()) {
            return Err(format!(
                "{agent}: unknown option `{key}`; known options: {}",
                known.join(", ")
            ));
        }
        let value: Value = serde_json::from_str(value)
            .map_err(|e| format!("{agent}: option `{key}` is not JSON ({e}): {value}"))?;
        parsed.insert(key.clone(), value);
    }
    Ok(parsed)
}

/// A typed view of the parsed options, naming the option in every error.
pub struct Options<'a> {
    pub agent: &'a str,
    pub values: Map<String, Value>,
}

impl Options<'_> {
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(on)) => Ok(*on),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => Ok(Some(text.clone())),
            Some(other) => Err(self.wrong_type(key, "a non-empty string", other)),
        }
    }

    pub fn positive_integer(&self, key: &str) -> Result<Option<u64>, String> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(self.wrong_type(key, "a positive integer", value)),
            },
        }
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        match self.values.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(text)) => Ok(vec![text.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.wrong_type(key, "a list of strings", other)),
                })
                .collect(),
            Some(other) => Err(self.wrong_type(key, "a list of strings", other)),
        }
    }

    /// `env = { NAME = "value" }`: variables set for the CLI.
    pub fn env(&self) -> Result<Vec<(String, String)>, String> {
        match self.values.get("env") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(vars)) => vars
                .iter()
                .map(|(name, value)| match value {
                    Value::String(text) if !name.is_empty() && !name.contains('=') => {
                        Ok((name.clone(), text.clone()))
                    }
                    other => {
                        Err(self.wrong_type("env", "a table of NAME = \"string\" pairs", other))
                    }
                })
                .collect(),
            Some(other) => Err(self.wrong_type("env", "a table of strings", other)),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> String {
        format!(
            "{}: option `{key}` must be {expected}, got {got}",
            self.agent
        )
    }
}

/// The JSON Schema fragment of the `env` option, shared by every adapter.
pub fn env_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": { "type": "string" },
        "description": "Environment variables set for the CLI, for example { CLAUDE_CONFIG_DIR = \"/home/me/.claude-work\" }"
    })
}

/// A string field that is present and not blank.
pub fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
}

/// The JSON text of an optional value; absent becomes `{}`.
pub fn json_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "{}".to_string(),
        Some(value) => value.to_string(),
    }
}

/// Makes API errors that arrive as JSON text readable.
///
/// `API Error: 404 {"type":"error","error":{"type":"not_found_error","message":"model: oups"}}`
/// becomes `API Error: 404 not_found_error: model: oups`, and
/// `{"type":"error","status":400,"error":{...}}` becomes `400 invalid_request_error: ...`.
/// Text without embedded JSON is returned as given.
pub fn readable_error(raw: &str) -> String {
    let raw = raw.trim();
    let Some(start) = raw.find('{') else {
        return raw.to_string();
    };
    let Ok(value) = serde_json::from_str::<Value>(&raw[start..]) else {
        return raw.to_string();
    };
    let inner = value
        .get("error")
        .filter(|e| e.is_object())
        .unwrap_or(&value);
    let Some(message) =
        text(inner, "message").or_else(|| inner.get("error").and_then(Value::as_str))
    else {
        return raw.to_string();
    };
    let mut readable = raw[..start].to_string();
    if let Some(status) = value.get("status").and_then(Value::as_u64) {
        readable.push_str(&format!("{status} "));
    }
    if let Some(kind) = text(inner, "type").filter(|kind| *kind != "error") {
        readable.push_str(kind);
        readable.push_str(": ");
    }
    readable.push_str(message);
    readable
}

/// The stderr line most likely to explain a failure: an `[API Error: …]`
/// line (the Gemini CLI's own account of a failed request), else the first
/// line that mentions an error, else the first non-blank one.
///
/// Stack frames (`at foo (bar.js:1:2)`), lines of a JSON dump, pointers to a
/// report file and retry notices never count as the line that mentions an
/// error: they say less than the lines around them.
#[derive(Default)]
pub struct StderrHint {
    first: Option<String>,
    first_error: Option<String>,
    api_error: Option<String>,
}

impl StderrHint {
    pub fn note(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if self.first.is_none() {
            self.first = Some(line.to_string());
        }
        if self.api_error.is_none()
            && let Some(start) = line.find("[API Error:")
        {
            self.api_error = Some(line[start..].to_string());
        }
        if self.first_error.is_none()
            && !is_noise(line)
            && !is_retry_notice(line)
            && line.to_ascii_lowercase().contains("error")
        {
            self.first_error = Some(line.to_string());
        }
    }

    pub fn best(&self) -> Option<&str> {
        self.api_error
            .as_deref()
            .or(self.first_error.as_deref())
            .or(self.first.as_deref())
    }

    /// An `[API Error: …]` line, the most specific thing stderr can say.
    pub fn api_error(&self) -> Option<&str> {
        self.api_error.as_deref()
    }
}

/// Lines that mention an error without saying which.
fn is_noise(line: &str) -> bool {
    line.starts_with("at ")
        || line.starts_with(['"', '{', '}'])
        || line.chars().all(|c| "[]{},".contains(c))
        || line.contains("Full report available at")
        || line.contains("[object Object]")
}

/// Whether a CLI's message says that it is retrying a request:
/// codex's `Reconnecting... 2/5 (…)`, its older
/// `stream error: …; retrying 1/5 in 200ms…`, the Gemini CLI's
/// `Attempt 1 failed with status 429. Retrying with backoff...`.
pub fn is_retry_notice(message: &str) -> bool {
    let lower = message.trim_start().to_ascii_lowercase();
    if lower.starts_with("reconnecting") || lower.starts_with("re-connecting") {
        return true;
    }
    if lower.starts_with("attempt ") && lower.contains("retrying") {
        return true;
    }
    // `retrying 1/5`
    lower.match_indices("retrying ").any(|(at, word)| {
        let rest = &lower[at + word.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('/')
    })
}

/// The retries a CLI announced. A retry is not an error (the request may
/// still succeed), and `runner:plugin@0.1.0` is frozen without a notice
/// kind, so adapters report each one as a `raw` activity, a log line. The
/// last reason is kept: it explains a failure that says less, and it is
/// added to the run's error when that error does not already say it.
#[derive(Default)]
pub struct Retries {
    count: u32,
    reason: Option<String>,
}

impl Retries {
    /// Notes one retry, `notice` as the CLI said it and `reason` the failure
    /// being retried; returns the `raw` event that reports it.
    pub fn note(&mut self, notice: &str, reason: &str) -> AgentEvent {
        self.count = self.count.saturating_add(1);
        self.set_reason(reason);
        AgentEvent::Raw(notice.to_string())
    }

    /// Replaces the reason of the latest retry with a clearer one.
    pub fn set_reason(&mut self, reason: &str) {
        let reason = reason.trim();
        if !reason.is_empty() {
            self.reason = Some(reason.to_string());
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// `error`, followed by the last retry's reason when it adds something:
    /// `gemini exited with code 1 (after 3 retries; the last: status 429: …)`.
    pub fn annotate(&self, error: String) -> String {
        match &self.reason {
            Some(reason)
                if self.count > 0
                    && !error.contains(reason.as_str())
                    && !reason.contains(&error) =>
            {
                let retries = if self.count == 1 { "retry" } else { "retries" };
                format!(
                    "{error} (after {} {retries}; the last: {reason})",
                    self.count
                )
            }
            _ => error,
        }
    }
}

/// The reason in a codex retry notice:
/// `Reconnecting... 2/5 (unexpected status 401 …)` → `unexpected status 401 …`.
pub fn parenthesized_reason(notice: &str) -> &str {
    let notice = notice.trim();
    match (notice.find('('), notice.ends_with(')')) {
        (Some(open), true) => &notice[open + 1..notice.len() - 1],
        _ => notice,
    }
}

/// Why a run failed when nothing in its output said so.
pub fn exit_description(agent: &str, exit_code: Option<i32>, stderr: &StderrHint) -> String {
    let base = match exit_code {
        None => format!("{agent} was killed by a signal before it finished"),
        Some(0) => format!("{agent} exited with code 0"),
        Some(code) => format!("{agent} exited with code {code}"),
    };
    match stderr.best() {
        Some(hint) => format!("{base}: {hint}"),
        None => base,
    }
}

/// The error of a run that did not succeed, the most specific first: the
/// failure the stream reported, else the last error it reported, else an
/// `[API Error: …]` line on stderr, else the exit code with the stderr line
/// most likely to explain it. A process killed by a signal is said to be
/// so. The last retry's reason is added when the error does not say it.
pub fn run_error(
    agent: &str,
    exit_code: Option<i32>,
    failure: Option<&str>,
    last_error: Option<&str>,
    stderr: &StderrHint,
    retries: &Retries,
) -> String {
    let error = match exit_code {
        None => exit_description(agent, None, stderr),
        Some(_) => failure
            .or(last_error)
            .or(stderr.api_error())
            .map(String::from)
            .unwrap_or_else(|| exit_description(agent, exit_code, stderr)),
    };
    retries.annotate(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_error_decodes_json_after_a_prefix() {
        let text = r#"API Error: 404 {"type":"error","error":{"type":"not_found_error","message":"model: oups"},"request_id":"req_1"}"#;
        assert_eq!(
            readable_error(text),
            "API Error: 404 not_found_error: model: oups"
        );
    }

    #[test]
    fn readable_error_decodes_a_json_encoded_error_with_status() {
        let text = r#"{"type":"error","status":400,"error":{"type":"invalid_request_error","message":"too new"}}"#;
        assert_eq!(readable_error(text), "400 invalid_request_error: too new");
    }

    #[test]
    fn readable_error_keeps_plain_text_and_broken_json() {
        assert_eq!(readable_error("plain failure"), "plain failure");
        assert_eq!(readable_error("oops {not json"), "oops {not json");
        assert_eq!(readable_error(r#"{"a":1}"#), r#"{"a":1}"#);
    }

    #[test]
    fn stderr_hint_prefers_a_line_that_mentions_an_error() {
        let mut hint = StderrHint::default();
        hint.note("");
        hint.note("Loaded cached credentials.");
        hint.note("ModelNotFoundError: Requested entity was not found.");
        hint.note("    at foo (bar.js:1:2)");
        assert_eq!(
            hint.best(),
            Some("ModelNotFoundError: Requested entity was not found.")
        );
    }

    #[test]
    fn stderr_hint_prefers_an_api_error_over_pointers_and_stack_dumps() {
        let mut hint = StderrHint::default();
        for line in [
            "Loaded cached credentials.",
            "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{",
            r#"  "error": {"#,
            "    at async retryWithBackoff (file:///x/retry.js:127:37)",
            "Error when talking to Gemini API Full report available at: /tmp/gemini-client-error.json",
            "[API Error: You have exhausted your capacity on this model.]",
            "An unexpected critical error occurred:[object Object]",
        ] {
            hint.note(line);
        }
        assert_eq!(
            hint.best(),
            Some("[API Error: You have exhausted your capacity on this model.]")
        );
        let mut hint = StderrHint::default();
        hint.note("Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{");
        hint.note(r#"  "error": {"#);
        hint.note("]");
        assert_eq!(
            hint.best(),
            Some("Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{"),
            "with nothing better, the first line"
        );
    }

    #[test]
    fn stderr_hint_keeps_a_bracketed_log_line() {
        let mut hint = StderrHint::default();
        hint.note("[INFO] starting");
        hint.note("[ERROR] config.toml: no model set");
        assert_eq!(hint.best(), Some("[ERROR] config.toml: no model set"));
    }

    #[test]
    fn recognises_the_retry_notices_of_codex_and_gemini() {
        for notice in [
            "Reconnecting... 2/5 (unexpected status 401 Unauthorized)",
            "stream error: exceeded retry limit; retrying 1/5 in 190ms…",
            "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{",
            "Attempt 2 failed: You have exhausted your capacity on this model.. Retrying after 2772ms...",
        ] {
            assert!(is_retry_notice(notice), "{notice}");
        }
        for message in [
            "unexpected status 401 Unauthorized",
            "Invalid stream: The model returned an empty response or malformed tool call.",
            "not retrying: quota exhausted",
        ] {
            assert!(!is_retry_notice(message), "{message}");
        }
    }

    #[test]
    fn retries_add_their_reason_to_an_error_that_lacks_it() {
        let mut retries = Retries::default();
        assert_eq!(retries.annotate("boom".into()), "boom");
        let event = retries.note("Reconnecting... 1/5 (status 401)", "status 401");
        assert!(
            matches!(event, AgentEvent::Raw(line) if line == "Reconnecting... 1/5 (status 401)")
        );
        retries.note("Reconnecting... 2/5 (status 401)", "status 401");
        assert_eq!(
            retries.annotate("codex exited with code 1".into()),
            "codex exited with code 1 (after 2 retries; the last: status 401)"
        );
        assert_eq!(retries.annotate("status 401".into()), "status 401");
        assert_eq!(
            parenthesized_reason("Reconnecting... 2/5 (unexpected status 401 (x))"),
            "unexpected status 401 (x)"
        );
    }

    #[test]
    fn options_name_the_key_and_the_expected_type() {
        let values = parse_options(
            "x",
            &[("max_turns".into(), "\"ten\"".into())],
            &["max_turns"],
        )
        .unwrap();
        let options = Options { agent: "x", values };
        let err = options.positive_integer("max_turns").unwrap_err();
        assert!(
            err.contains("`max_turns` must be a positive integer"),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_non_json_options_are_refused() {
        let err = parse_options("x", &[("colour".into(), "1".into())], &["env"]).unwrap_err();
        assert!(err.contains("unknown option `colour`"), "{err}");
        let err = parse_options("x", &[("env".into(), "{".into())], &["env"]).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }
}
