//! Every Claude Code transcript in `shared/fixtures/agents/claude` replayed
//! through the parser, checking what a user of the run would look at.

use std::path::PathBuf;

use claude_adapter::parse::ClaudeParser;
use runner_plugin_sdk::agent::{AgentEvent, ChangeKind, OutputStream};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/agents/claude")
}

fn replay(name: &str) -> (Vec<AgentEvent>, ClaudeParser) {
    let path = fixtures_dir().join(name);
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = ClaudeParser::default();
    let events = transcript
        .lines()
        .flat_map(|line| parser.parse_line(OutputStream::Stdout, line))
        .collect();
    (events, parser)
}

fn sessions(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::SessionStarted(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

fn tool_names(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolUse(tool) => Some(tool.name.as_str()),
            _ => None,
        })
        .collect()
}

fn raw_lines(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Raw(line) => Some(line.as_str()),
            _ => None,
        })
        .collect()
}

fn finals(events: &[AgentEvent]) -> Vec<(&str, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::FinalResult(result) => Some((result.summary.as_str(), result.is_error)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_fixture_parses_without_unknown_lines_except_permission_requests() {
    let mut names: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir: clone the repo with shared/ beside it")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 7, "{names:?}");
    for name in names {
        let (events, parser) = replay(&name);
        for raw in raw_lines(&events) {
            assert!(
                raw.contains("\"control_request\""),
                "{name}: unexpected raw line {raw}"
            );
        }
        assert_eq!(sessions(&events).len(), 1, "{name}");
        assert!(!finals(&events).is_empty(), "{name}: no final result");
        assert!(parser.finish(Some(0)).session_id.is_some(), "{name}");
    }
}

#[test]
fn success_run_reports_tools_commands_file_changes_usage_and_summary() {
    let (events, parser) = replay("success-bash-write-read.jsonl");
    assert_eq!(sessions(&events), ["65206fb7-610c-417e-89cd-7590603606a1"]);
    assert_eq!(tool_names(&events), ["Bash", "Write", "Read"]);

    let commands: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::CommandRun(run) => Some((run.command.as_str(), run.exit_code)),
            _ => None,
        })
        .collect();
    assert_eq!(commands, [("ls", Some(0))]);

    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::FileChange(change) => Some((change.path.as_str(), change.kind)),
            _ => None,
        })
        .collect();
    assert!(matches!(
        changes.as_slice(),
        [("/home/daytona/hello.txt", ChangeKind::Add)]
    ));

    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult(result) => Some((result.id.as_deref(), result.is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0], (Some("toolu_018Sn7GkKeYGKwkK5PQorHN9"), false));

    let usage = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::Usage(usage) => Some(*usage),
            _ => None,
        })
        .expect("usage");
    assert_eq!(usage.output_tokens, 298);
    assert_eq!(usage.cached_tokens, 69608);
    assert_eq!(usage.input_tokens, 18 + 5252 + 69608);
    assert_eq!(usage.cost_usd, Some(0.0455704));

    let messages = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::AssistantMessage(_)))
        .count();
    assert_eq!(messages, 4);

    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(
        outcome.summary.as_deref(),
        Some("All tasks completed. The file contains: \"Hello, World!\"")
    );
    assert_eq!(outcome.error, None);
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("65206fb7-610c-417e-89cd-7590603606a1")
    );
}

#[test]
fn success_run_fails_when_the_process_exits_non_zero_or_is_killed() {
    let (_, parser) = replay("success-bash-write-read.jsonl");
    let outcome = parser.finish(Some(1));
    assert!(!outcome.success);
    assert_eq!(outcome.error.as_deref(), Some("claude exited with code 1"));
    let outcome = parser.finish(None);
    assert!(!outcome.success);
    assert!(outcome.error.unwrap().contains("killed"));
}

#[test]
fn not_logged_in_fails_with_exit_code_zero_and_names_authentication_failed() {
    let (events, parser) = replay("error-not-logged-in.jsonl");
    assert_eq!(
        finals(&events),
        [("Not logged in · Please run /login", true)]
    );
    let outcome = parser.finish(Some(0));
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("authentication_failed: Not logged in · Please run /login")
    );
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("00000000-0000-7000-8000-000000000006")
    );
}

#[test]
fn model_not_found_fails_with_the_api_error_decoded() {
    let (events, parser) = replay("error-model-not-found-404.jsonl");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error(_))));
    let outcome = parser.finish(Some(0));
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("API Error: 404 not_found_error: model: oups")
    );
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("16a26db9-fd28-4a13-b08f-8b06aed6552c")
    );
}

#[test]
fn legacy_error_during_execution_fails_even_though_is_error_is_false() {
    let (events, parser) = replay("legacy-1.0-error-during-execution-excerpt.jsonl");
    let results = finals(&events);
    assert_eq!(results.len(), 1);
    assert!(results[0].1, "error_during_execution must be an error");
    let outcome = parser.finish(Some(0));
    assert!(!outcome.success);
    assert_eq!(outcome.error.as_deref(), Some("error_during_execution"));
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("79fac4e0-79bd-4489-afb5-6023fa22cc47")
    );
    assert!(
        outcome
            .summary
            .unwrap()
            .starts_with("I'll study the ccagent codebase")
    );
}

#[test]
fn permission_write_reports_thinking_the_write_and_the_result_at_the_end_of_the_object() {
    let (events, parser) = replay("stdio-permission-allow-write.jsonl");
    assert_eq!(sessions(&events), ["25f505f3-79a7-4119-8ffa-23ce6efc7560"]);
    assert_eq!(tool_names(&events), ["Write"]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Thinking(_)))
            .count(),
        2
    );
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::FileChange(change)
            if change.path == r"C:\work\repo\hello.txt" && matches!(change.kind, ChangeKind::Add)
    )));
    assert_eq!(
        raw_lines(&events).len(),
        1,
        "the control_request stays visible as a log line"
    );
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(
        outcome.summary.as_deref(),
        Some("Done. Created `hello.txt` with content `hi`.")
    );
}

#[test]
fn ask_user_question_reports_the_tool_and_the_answer() {
    let (events, parser) = replay("stdio-permission-ask-user-question.jsonl");
    assert_eq!(tool_names(&events), ["AskUserQuestion"]);
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::ToolResult(result) if result.output.contains("=\"Red\"") && !result.is_error
    )));
    assert_eq!(parser.finish(Some(0)).summary.as_deref(), Some("Red"));
}

#[test]
fn background_task_stream_with_two_inits_and_two_results_keeps_one_session_and_the_last_summary() {
    let (events, parser) = replay("partial-messages-multimodel-background-task.jsonl");
    assert_eq!(sessions(&events), ["7a77dc87-84cd-44eb-aa5a-756575b9ebe5"]);
    assert_eq!(tool_names(&events), ["Agent"]);
    assert_eq!(finals(&events), [("waiting", false), ("done", false)]);

    let costs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Usage(usage) => usage.cost_usd,
            _ => None,
        })
        .collect();
    assert_eq!(costs.len(), 2);
    assert!((costs[0] - 0.1072833).abs() < 1e-9);
    assert!(
        (costs[1] - (0.1393799 - 0.1072833)).abs() < 1e-9,
        "second cost is what was added"
    );

    // The sub-agent's "Iron oxide." is reported, but is not the run's summary.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::AssistantMessage(m) if m == "Iron oxide."))
    );
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(outcome.summary.as_deref(), Some("done"));
}

#[test]
fn truncated_lines_and_other_agents_transcripts_never_panic() {
    let root = fixtures_dir().join("..");
    for agent in ["claude", "gemini", "codex"] {
        for entry in std::fs::read_dir(root.join(agent)).unwrap() {
            let transcript = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut parser = ClaudeParser::default();
            for line in transcript.lines() {
                for cut in [
                    0,
                    1,
                    line.len() / 3,
                    line.len() / 2,
                    line.len().saturating_sub(1),
                ] {
                    let cut = (0..=cut)
                        .rev()
                        .find(|&i| line.is_char_boundary(i))
                        .unwrap_or(0);
                    parser.parse_line(OutputStream::Stdout, &line[..cut]);
                }
                parser.parse_line(OutputStream::Stdout, line);
                parser.parse_line(OutputStream::Stderr, line);
            }
            parser.finish(None);
        }
    }
}

/// Claude Code 2.1 announces each retry of a failed API request as
/// `system/api_retry` (shape as the CLI prints it; not in `shared/fixtures`).
#[test]
fn api_retries_are_raw_notices_and_name_the_status_when_the_run_dies() {
    let mut parser = ClaudeParser::default();
    let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":600,"error_status":529,"error":"overloaded","session_id":"s1"}"#;
    let events = parser.parse_line(OutputStream::Stdout, retry);
    assert_eq!(
        raw_lines(&events),
        ["API request failed (529 overloaded); retry 1 of 10 in 600 ms"]
    );
    assert!(
        !events.iter().any(|e| matches!(e, AgentEvent::Error(_))),
        "a retry is not an error: {events:?}"
    );
    assert_eq!(
        parser.finish(Some(1)).error.as_deref(),
        Some("claude exited with code 1 (after 1 retry; the last: 529 overloaded)")
    );
    // When the final result says it, the retries add nothing.
    parser.parse_line(
        OutputStream::Stdout,
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}","session_id":"s1"}"#,
    );
    assert_eq!(
        parser.finish(Some(1)).error.as_deref(),
        Some("API Error: 529 overloaded_error: Overloaded")
    );
}

#[test]
fn stderr_lines_are_raw_and_explain_a_failed_exit() {
    let mut parser = ClaudeParser::default();
    let events = parser.parse_line(OutputStream::Stderr, "Error: Invalid API key");
    assert!(
        matches!(events.as_slice(), [AgentEvent::Raw(line)] if line == "Error: Invalid API key")
    );
    assert_eq!(
        parser.finish(Some(1)).error.as_deref(),
        Some("claude exited with code 1: Error: Invalid API key")
    );
}

#[test]
fn the_fake_claude_default_transcript_is_a_successful_run() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/fake-agents/transcripts/claude.jsonl");
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = ClaudeParser::default();
    for line in transcript.lines() {
        parser.parse_line(OutputStream::Stdout, line);
    }
    let outcome = parser.finish(Some(0));
    assert!(outcome.success, "{:?}", outcome.error);
    assert!(outcome.summary.is_some());
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("65206fb7-610c-417e-89cd-7590603606a1")
    );
}
