//! Claude Code's permission prompts in stream-json mode
//! (`--input-format stream-json --permission-prompt-tool stdio`).
//!
//! The CLI asks on stdout:
//! `{"type":"control_request","request_id":"…","request":{"subtype":"can_use_tool","tool_name":"Write","input":{…},"description":"…"}}`
//! and reads the answer on stdin:
//! `{"type":"control_response","response":{"subtype":"success","request_id":"…","response":{"behavior":"allow","updatedInput":{…}}}}`
//! (or `"behavior":"deny","message":"…"`).

use runner_plugin_sdk::approvals::{ApprovalDecision, ApprovalRequest};
use serde_json::{Value, json};

/// Told to the agent when a prompt is denied without a message.
pub const DENIED: &str = "The user denied this tool use.";

/// Whether these adapter options (key, JSON value) turn prompts on.
pub fn asks_permission(options: &[(String, String)]) -> bool {
    options
        .iter()
        .any(|(key, value)| key == "permission_prompts" && value.trim() == "true")
}

/// The first stdin message: the prompt as a stream-json `user` message.
pub fn user_message(prompt: &str) -> String {
    let message = json!({
        "type": "user",
        "message": { "role": "user", "content": prompt },
    });
    format!("{message}\n")
}

/// The permission prompt in one stdout line, if it is one.
pub fn recognise(line: &str) -> Option<ApprovalRequest> {
    // Cheap test first: most lines are not prompts.
    if !line.contains("control_request") {
        return None;
    }
    let value: Value = serde_json::from_str(line).ok()?;
    if value.get("type")?.as_str()? != "control_request" {
        return None;
    }
    let request = value.get("request")?;
    if request.get("subtype")?.as_str()? != "can_use_tool" {
        return None;
    }
    let tool = request.get("tool_name")?.as_str()?.to_string();
    let input = request.get("input").cloned().unwrap_or(json!({}));
    let description = request
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| first_question(&input));
    Some(ApprovalRequest {
        id: value.get("request_id")?.as_str()?.to_string(),
        tool,
        input: input.to_string(),
        description,
    })
}

/// `AskUserQuestion` gives no description: its first question says what it wants.
fn first_question(input: &Value) -> Option<String> {
    input
        .get("questions")?
        .as_array()?
        .first()?
        .get("question")?
        .as_str()
        .map(str::to_string)
}

/// The stdin line that answers `request` with `decision`.
pub fn answer(request: &ApprovalRequest, decision: &ApprovalDecision) -> String {
    let response = if decision.allow {
        let input: Value = serde_json::from_str(&request.input).unwrap_or(json!({}));
        json!({ "behavior": "allow", "updatedInput": input })
    } else {
        let message = decision
            .message
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(DENIED);
        json!({ "behavior": "deny", "message": message })
    };
    json!({
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request.id,
            "response": response,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../../shared/fixtures/agents/claude"
    );

    fn prompts_in(file: &str) -> Vec<ApprovalRequest> {
        let path = format!("{FIXTURES}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines().filter_map(recognise).collect()
    }

    #[test]
    fn recognises_the_write_prompt_of_a_real_transcript() {
        let found = prompts_in("stdio-permission-allow-write.jsonl");
        assert_eq!(found.len(), 1, "one control_request in the transcript");
        let prompt = &found[0];
        assert_eq!(prompt.id, "0a796fa8-74c6-4c82-82a7-fb161e77a51b");
        assert_eq!(prompt.tool, "Write");
        assert_eq!(prompt.description.as_deref(), Some("hello.txt"));
        let input: Value = serde_json::from_str(&prompt.input).unwrap();
        assert_eq!(input["content"], "hi");
    }

    #[test]
    fn an_ask_user_question_prompt_is_described_by_its_question() {
        let found = prompts_in("stdio-permission-ask-user-question.jsonl");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tool, "AskUserQuestion");
        assert_eq!(
            found[0].description.as_deref(),
            Some("Which color do you prefer?")
        );
    }

    #[test]
    fn other_lines_are_not_prompts() {
        assert!(prompts_in("success-bash-write-read.jsonl").is_empty());
        assert!(recognise("not json control_request").is_none());
        let other =
            r#"{"type":"control_request","request_id":"x","request":{"subtype":"interrupt"}}"#;
        assert!(recognise(other).is_none());
    }

    #[test]
    fn allow_echoes_the_input_and_deny_carries_the_message() {
        let prompt = &prompts_in("stdio-permission-allow-write.jsonl")[0];
        let allow: Value = serde_json::from_str(&answer(
            prompt,
            &ApprovalDecision {
                allow: true,
                message: None,
            },
        ))
        .unwrap();
        assert_eq!(allow["type"], "control_response");
        assert_eq!(allow["response"]["request_id"], prompt.id.as_str());
        assert_eq!(allow["response"]["response"]["behavior"], "allow");
        assert_eq!(
            allow["response"]["response"]["updatedInput"]["content"],
            "hi"
        );

        let deny: Value = serde_json::from_str(&answer(
            prompt,
            &ApprovalDecision {
                allow: false,
                message: Some("not in this repo".into()),
            },
        ))
        .unwrap();
        assert_eq!(deny["response"]["response"]["behavior"], "deny");
        assert_eq!(deny["response"]["response"]["message"], "not in this repo");
        let bare = answer(
            prompt,
            &ApprovalDecision {
                allow: false,
                message: None,
            },
        );
        assert!(bare.contains(DENIED), "{bare}");
        assert!(!bare.contains('\n'), "one line: {bare}");
    }

    #[test]
    fn only_the_option_turns_prompts_on() {
        assert!(asks_permission(&[(
            "permission_prompts".into(),
            "true".into()
        )]));
        assert!(!asks_permission(&[(
            "permission_prompts".into(),
            "false".into()
        )]));
        assert!(!asks_permission(&[(
            "skip_permissions".into(),
            "true".into()
        )]));
        assert!(!asks_permission(&[]));
    }

    #[test]
    fn the_prompt_is_one_stream_json_user_message() {
        let line = user_message("fix \"it\"\nnow");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["type"], "user");
        assert_eq!(value["message"]["content"], "fix \"it\"\nnow");
    }
}
