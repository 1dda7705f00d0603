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
