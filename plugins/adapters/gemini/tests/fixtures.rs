//! Every Gemini CLI transcript in `shared/fixtures/agents/gemini` replayed
//! through the parser, checking what a user of the run would look at.

use std::path::PathBuf;

use gemini_adapter::parse::GeminiParser;
use runner_plugin_sdk::agent::{AgentEvent, ChangeKind, OutputStream, Usage};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/agents/gemini")
}

fn replay(name: &str) -> (Vec<AgentEvent>, GeminiParser) {
    let path = fixtures_dir().join(name);
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = GeminiParser::default();
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

fn messages(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::AssistantMessage(message) => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn usage(events: &[AgentEvent]) -> Option<Usage> {
    events.iter().find_map(|e| match e {
        AgentEvent::Usage(usage) => Some(*usage),
        _ => None,
    })
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

#[test]
fn every_fixture_ends_in_one_final_result_with_only_yolo_notices_left_raw() {
    let mut names: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir: clone the repo with shared/ beside it")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let (events, _) = replay(&name);
        for raw in raw_lines(&events) {
            assert!(
                raw.starts_with("YOLO mode is enabled"),
                "{name}: unexpected raw line {raw}"
            );
        }
        let finals = events
            .iter()
            .filter(|e| matches!(e, AgentEvent::FinalResult(_)))
            .count();
        assert_eq!(finals, 1, "{name}");
        assert!(usage(&events).is_some(), "{name}");
    }
}

#[test]
fn happy_path_joins_the_answer_and_succeeds() {
    let (events, parser) = replay("happy-path-ack.jsonl");
    assert_eq!(sessions(&events), ["00000000-0000-4000-8000-000000000001"]);
    assert_eq!(
        messages(&events),
        ["ack"],
        "the echoed user prompt is not an assistant message"
    );
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (10178, 1, 0)
    );
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(outcome.summary.as_deref(), Some("ack"));
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("00000000-0000-4000-8000-000000000001")
    );
}

#[test]
fn parallel_tools_report_the_command_the_written_file_and_joined_messages() {
    let (events, parser) = replay("success-parallel-tools-yolo-notices.jsonl");
    assert_eq!(raw_lines(&events).len(), 2);
    assert_eq!(sessions(&events), ["9ea39555-d63b-4283-b9da-0ec0cda51203"]);
    assert_eq!(
        tool_names(&events),
        ["run_shell_command", "write_file", "read_file"]
    );
    assert_eq!(
        messages(&events),
        [
            "2 + 2 equals 4.\n\nI will list the current directory, create 'hello.txt', and then read its contents.\n",
            "I have calculated the sum, listed the directory, created 'hello.txt', and read its content as requested.",
        ]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::CommandRun(run) if run.command == "ls" && run.output.as_deref() == Some("hello.txt")
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::FileChange(change) if change.path == "hello.txt" && matches!(change.kind, ChangeKind::Unknown)
    )));
    let results = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::ToolResult(r) if !r.is_error))
        .count();
    assert_eq!(results, 3, "including the write_file result without output");
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (25439, 217, 8111)
    );

    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(
        outcome.summary.as_deref(),
        Some(
            "I have calculated the sum, listed the directory, created 'hello.txt', and read its content as requested."
        )
    );
}

#[test]
fn read_file_tool_use_reports_both_tools_and_the_answer_split_over_fragments() {
    let (events, parser) = replay("tool-use-read-file.jsonl");
    assert_eq!(tool_names(&events), ["update_topic", "read_file"]);
    assert_eq!(messages(&events), ["SWITCHBOARD_GEMINI_PROBE_TOOL_5F8A21"]);
    assert_eq!(usage(&events).unwrap().cached_tokens, 7559);
    assert_eq!(
        parser.finish(Some(0)).summary.as_deref(),
        Some("SWITCHBOARD_GEMINI_PROBE_TOOL_5F8A21")
    );
}

#[test]
fn invalid_model_fails_with_the_api_error() {
    let (events, parser) = replay("error-invalid-model.jsonl");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::FinalResult(r) if r.is_error))
    );
    for exit in [Some(0), Some(1)] {
        let outcome = parser.finish(exit);
        assert!(!outcome.success);
        assert_eq!(
            outcome.error.as_deref(),
            Some("[API Error: Requested entity was not found.]")
        );
        assert_eq!(
            outcome.session_id.as_deref(),
            Some("00000000-0000-4000-8000-000000000003")
        );
    }
}

fn errors(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Error(message) => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// Feeds `(stream, line)` pairs to a fresh parser.
fn feed(lines: &[(OutputStream, &str)]) -> (Vec<AgentEvent>, GeminiParser) {
    let mut parser = GeminiParser::default();
    let events = lines
        .iter()
        .flat_map(|(stream, line)| parser.parse_line(*stream, line))
        .collect();
    (events, parser)
}

/// The shape Gemini CLI 0.4x prints when the model's stream breaks off: an
/// `error` line that says why, then a `result` with `status: "error"` and
/// no `error` object. (Not in `shared/fixtures`; the lines follow a capture
/// of that case with the session, text and counts changed.)
#[test]
fn an_invalid_stream_fails_with_the_reason_the_error_line_gave() {
    use OutputStream::Stdout;
    let (events, parser) = feed(&[
        (
            Stdout,
            r#"{"type":"init","timestamp":"2026-05-31T22:57:23.596Z","session_id":"6f1e0c2a-0000-4000-8000-00000000000a","model":"auto"}"#,
        ),
        (
            Stdout,
            r#"{"type":"message","timestamp":"2026-05-31T22:57:30.135Z","role":"assistant","content":"The directory holds two files.","delta":true}"#,
        ),
        (
            Stdout,
            r#"{"type":"error","timestamp":"2026-05-31T22:57:32.176Z","severity":"error","message":"Invalid stream: The model returned an empty response or malformed tool call."}"#,
        ),
        (
            Stdout,
            r#"{"type":"result","timestamp":"2026-05-31T22:57:32.177Z","status":"error","stats":{"total_tokens":700,"input_tokens":600,"output_tokens":100,"cached":50,"input":550,"duration_ms":8581,"tool_calls":0}}"#,
        ),
    ]);
    let reason = "Invalid stream: The model returned an empty response or malformed tool call.";
    assert_eq!(errors(&events), [reason], "reported once");
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::FinalResult(r) if r.is_error && r.summary == "The directory holds two files."
    )));
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (600, 100, 50)
    );
    for exit in [Some(0), Some(1)] {
        let outcome = parser.finish(exit);
        assert!(!outcome.success);
        assert_eq!(outcome.error.as_deref(), Some(reason));
    }
}

/// What the Gemini CLI prints on stderr when a quota runs out while it
/// retries: a retry notice with the API's 429 dumped as JSON, a stack, a
/// pointer to a report file, the CLI's own `[API Error: …]` line; then it
/// exits 1 without a `result`.
const QUOTA_STDERR: &[&str] = &[
    "Loaded cached credentials.",
    "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{",
    r#"  "error": {"#,
    r#"    "code": 429,"#,
    r#"    "message": "No capacity available for model gemini-2.5-pro on the server","#,
    r#"    "errors": ["#,
    r#"      {"#,
    r#"        "message": "No capacity available for model gemini-2.5-pro on the server","#,
    r#"        "domain": "global","#,
    r#"        "reason": "rateLimitExceeded""#,
    r#"      }"#,
    r#"    ],"#,
    r#"    "status": "RESOURCE_EXHAUSTED""#,
    r#"  }"#,
    r#"}"#,
    r#"]"#,
    "    at Gaxios._request (/usr/lib/node_modules/@google/gemini-cli/node_modules/gaxios/build/src/gaxios.js:142:23)",
    "Error when talking to Gemini API Full report available at: /tmp/gemini-client-error-Turn.run-sendMessageStream-2026-01-01T10-36-16-891Z.json",
    "[API Error: You have exhausted your capacity on this model. Your quota will reset after 2h52m39s.]",
    "An unexpected critical error occurred:[object Object]",
];

#[test]
fn a_quota_failure_on_stderr_becomes_the_error_with_the_retried_429() {
    let mut lines = vec![(
        OutputStream::Stdout,
        r#"{"type":"init","timestamp":"2026-01-01T10:36:10.000Z","session_id":"6f1e0c2a-0000-4000-8000-00000000000b","model":"gemini-2.5-pro"}"#,
    )];
    lines.extend(
        QUOTA_STDERR
            .iter()
            .map(|line| (OutputStream::Stderr, *line)),
    );
    let (events, parser) = feed(&lines);
    assert!(errors(&events).is_empty(), "a retry is not an error");
    assert_eq!(raw_lines(&events).len(), QUOTA_STDERR.len());
    let outcome = parser.finish(Some(1));
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some(
            "[API Error: You have exhausted your capacity on this model. Your quota will reset after 2h52m39s.] (after 1 retry; the last: status 429: No capacity available for model gemini-2.5-pro on the server)"
        )
    );
}

#[test]
fn a_quota_result_after_retries_keeps_its_type_and_message() {
    let mut lines: Vec<_> = QUOTA_STDERR[..16]
        .iter()
        .map(|line| (OutputStream::Stderr, *line))
        .collect();
    lines.push((
        OutputStream::Stderr,
        "Attempt 2 failed: You have exhausted your capacity on this model. Your quota will reset after 0s.. Retrying after 282.610258ms...",
    ));
    lines.push((
        OutputStream::Stdout,
        r#"{"type":"result","timestamp":"2026-01-01T10:36:16.000Z","status":"error","error":{"type":"TerminalQuotaError","message":"You have exhausted your daily quota on this model."},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0}}"#,
    ));
    let (events, parser) = feed(&lines);
    let error = "TerminalQuotaError: You have exhausted your daily quota on this model.";
    assert_eq!(errors(&events), [error]);
    assert_eq!(
        parser.finish(Some(1)).error.as_deref(),
        Some(
            "TerminalQuotaError: You have exhausted your daily quota on this model. (after 2 retries; the last: You have exhausted your capacity on this model. Your quota will reset after 0s)"
        )
    );
}

#[test]
fn a_retry_that_succeeds_leaves_no_error() {
    let mut lines: Vec<_> = QUOTA_STDERR[..16]
        .iter()
        .map(|line| (OutputStream::Stderr, *line))
        .collect();
    let transcript = std::fs::read_to_string(fixtures_dir().join("happy-path-ack.jsonl")).unwrap();
    lines.extend(transcript.lines().map(|line| (OutputStream::Stdout, line)));
    let (events, parser) = feed(&lines);
    assert!(errors(&events).is_empty());
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.summary.as_deref(), Some("ack"));
}

#[test]
fn docs_stream_example_with_old_stats_reports_the_bash_command() {
    let (events, parser) = replay("docs-example-stream.jsonl");
    assert_eq!(sessions(&events), ["abc123"]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::CommandRun(run) if run.command == "ls -la"))
    );
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (50, 200, 0)
    );
    assert_eq!(
        parser.finish(Some(0)).summary.as_deref(),
        Some("Here are the files...")
    );
}

#[test]
fn json_output_object_reports_the_response_and_summed_model_tokens() {
    let (events, parser) = replay("json-output-docs-example.jsonl");
    assert_eq!(messages(&events), ["The capital of France is Paris."]);
    let usage = usage(&events).unwrap();
    assert_eq!(usage.input_tokens, 24939 + 8965);
    assert_eq!(usage.output_tokens, 20 + 10);
    assert_eq!(usage.cached_tokens, 21263);
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert_eq!(
        outcome.summary.as_deref(),
        Some("The capital of France is Paris.")
    );
}

#[test]
fn truncated_lines_and_other_agents_transcripts_never_panic() {
    let root = fixtures_dir().join("..");
    for agent in ["claude", "gemini", "codex"] {
        for entry in std::fs::read_dir(root.join(agent)).unwrap() {
            let transcript = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut parser = GeminiParser::default();
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

#[test]
fn a_failed_exit_without_a_result_is_explained_by_stderr() {
    let mut parser = GeminiParser::default();
    parser.parse_line(OutputStream::Stderr, "Loaded cached credentials.");
    parser.parse_line(
        OutputStream::Stderr,
        "ModelNotFoundError: Requested entity was not found.",
    );
    let outcome = parser.finish(Some(1));
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("gemini exited with code 1: ModelNotFoundError: Requested entity was not found.")
    );
}

#[test]
fn the_fake_gemini_default_transcript_is_a_successful_run() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/fake-agents/transcripts/gemini.jsonl");
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = GeminiParser::default();
    for line in transcript.lines() {
        parser.parse_line(OutputStream::Stdout, line);
    }
    let outcome = parser.finish(Some(0));
    assert!(outcome.success, "{:?}", outcome.error);
    assert!(outcome.summary.is_some());
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("9ea39555-d63b-4283-b9da-0ec0cda51203")
    );
}
