//! Every Codex CLI transcript in `shared/fixtures/agents/codex` replayed
//! through the parser, checking what a user of the run would look at.

use std::path::PathBuf;

use codex_adapter::parse::CodexParser;
use runner_plugin_sdk::agent::{AgentEvent, ChangeKind, OutputStream, Usage};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/fixtures/agents/codex")
}

fn replay(name: &str) -> (Vec<AgentEvent>, CodexParser) {
    let path = fixtures_dir().join(name);
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = CodexParser::default();
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

fn commands(events: &[AgentEvent]) -> Vec<(&str, Option<i32>)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::CommandRun(run) => Some((run.command.as_str(), run.exit_code)),
            _ => None,
        })
        .collect()
}

fn changes(events: &[AgentEvent]) -> Vec<(&str, &'static str)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::FileChange(change) => Some((
                change.path.as_str(),
                match change.kind {
                    ChangeKind::Add => "add",
                    ChangeKind::Update => "update",
                    ChangeKind::Delete => "delete",
                    ChangeKind::Unknown => "unknown",
                },
            )),
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

fn errors(events: &[AgentEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Error(message) => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_fixture_parses_with_only_the_stdin_and_reconnect_notices_left_raw() {
    let mut names: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir: clone the repo with shared/ beside it")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".jsonl"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    for name in names {
        let (events, _) = replay(&name);
        for raw in raw_lines(&events) {
            assert!(
                raw.starts_with("Reading ") || raw.starts_with("Reconnecting... "),
                "{name}: unexpected raw line {raw}"
            );
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, AgentEvent::FinalResult(_) | AgentEvent::FileChange(_))),
            "{name}: nothing reported"
        );
    }
}

#[test]
fn success_with_stdin_notice_reports_the_command_its_exit_code_and_the_summary() {
    let (events, parser) = replay("success-command-with-stdin-notice.jsonl");
    assert_eq!(
        raw_lines(&events),
        ["Reading additional input from stdin..."]
    );
    assert_eq!(sessions(&events), ["019d53c0-4d8a-7ff2-9600-63d8e0673623"]);
    assert_eq!(tool_names(&events), ["command_execution"]);
    let runs = commands(&events);
    assert_eq!(runs.len(), 1);
    assert!(runs[0].0.contains("cat hello.txt"));
    assert_eq!(runs[0].1, Some(0));
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (20643, 239, 10240)
    );
    assert_eq!(usage.cost_usd, None);

    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert!(outcome.summary.unwrap().starts_with("1. `2 + 2 = 4`"));
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("019d53c0-4d8a-7ff2-9600-63d8e0673623")
    );
}

#[test]
fn model_error_before_turn_started_fails_with_the_decoded_message() {
    let (events, parser) = replay("error-model-requires-newer-codex.jsonl");
    assert_eq!(
        errors(&events).first().copied(),
        Some(
            "Model metadata for `gpt-5.6-sol` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."
        )
    );
    let decoded = "400 invalid_request_error: The 'gpt-5.6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again.";
    assert_eq!(errors(&events).len(), 2, "the warning and the error once");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::FinalResult(r) if r.is_error && r.summary == decoded))
    );
    for exit in [Some(0), Some(1)] {
        let outcome = parser.finish(exit);
        assert!(!outcome.success);
        assert_eq!(outcome.error.as_deref(), Some(decoded));
        assert_eq!(
            outcome.session_id.as_deref(),
            Some("019fe040-c131-7d31-a9bd-83df751b4d4a")
        );
    }
}

/// The transcript: `thread.started`, `turn.started`, nine `error` lines
/// `Reconnecting... n/5 (…)` (2/5 to 5/5 over wss, then 1/5 to 5/5 over
/// https), one `error` with the bare 401 message, and `turn.failed` with
/// the same message.
#[test]
fn unauthorized_run_reports_reconnects_as_raw_lines_and_fails_with_the_turn_error() {
    let (events, parser) = replay("error-401-reconnecting.jsonl");
    let final_error = "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, url: https://api.openai.com/v1/responses, cf-ray: REDACTED-SEA, request id: REDACTED";
    let reconnects = raw_lines(&events);
    assert_eq!(reconnects.len(), 9, "{reconnects:?}");
    assert_eq!(
        reconnects[0],
        "Reconnecting... 2/5 (unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, url: wss://api.openai.com/v1/responses, cf-ray: REDACTED-SEA)"
    );
    assert_eq!(
        reconnects[8],
        format!("Reconnecting... 5/5 ({final_error})")
    );
    assert_eq!(
        errors(&events),
        [final_error],
        "retries are no errors, and turn.failed does not repeat the error"
    );
    assert!(events.iter().any(
        |e| matches!(e, AgentEvent::FinalResult(r) if r.is_error && r.summary == final_error)
    ));
    for exit in [Some(0), Some(1)] {
        let outcome = parser.finish(exit);
        assert!(!outcome.success);
        assert_eq!(outcome.error.as_deref(), Some(final_error));
        assert_eq!(
            outcome.session_id.as_deref(),
            Some("00000000-0000-7000-8000-000000000005")
        );
    }
}

#[test]
fn a_run_killed_while_reconnecting_says_what_it_was_retrying() {
    let mut parser = CodexParser::default();
    parser.parse_line(
        OutputStream::Stdout,
        r#"{"type":"thread.started","thread_id":"t1"}"#,
    );
    let events = parser.parse_line(
        OutputStream::Stdout,
        r#"{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion: error sending request)"}"#,
    );
    assert!(
        matches!(events.as_slice(), [AgentEvent::Raw(_)]),
        "{events:?}"
    );
    assert_eq!(
        parser.finish(Some(1)).error.as_deref(),
        Some(
            "codex exited with code 1 (after 1 retry; the last: stream disconnected before completion: error sending request)"
        )
    );
}

#[test]
fn a_legacy_stream_error_is_a_retry_notice_not_an_error() {
    let mut parser = CodexParser::default();
    let notice = "stream error: stream disconnected before completion; retrying 1/5 in 188ms…";
    let events = parser.parse_line(
        OutputStream::Stdout,
        &format!(r#"{{"id":"1","msg":{{"type":"stream_error","message":"{notice}"}}}}"#),
    );
    assert!(
        matches!(events.as_slice(), [AgentEvent::Raw(line)] if line == notice),
        "{events:?}"
    );
    parser.parse_line(
        OutputStream::Stdout,
        r#"{"id":"1","msg":{"type":"task_complete","last_agent_message":"done"}}"#,
    );
    assert!(parser.finish(Some(0)).success);
}

#[test]
fn failed_command_keeps_exit_code_128_and_file_changes_keep_their_kinds() {
    let (events, parser) = replay("file-change-and-failed-command.jsonl");
    assert_eq!(
        commands(&events),
        [("/bin/zsh -lc 'git status --short'", Some(128))]
    );
    assert_eq!(
        changes(&events),
        [
            ("/private/tmp/facet-probe/scratch/alpha.txt", "update"),
            ("/private/tmp/facet-probe/scratch/zeta.txt", "add"),
        ],
        "reported once, on completion"
    );
    let usage = usage(&events).unwrap();
    assert_eq!(
        (usage.input_tokens, usage.cached_tokens, usage.output_tokens),
        (61559, 47616, 396)
    );
    let outcome = parser.finish(Some(0));
    assert!(outcome.success, "a failed command does not fail the run");
    assert_eq!(outcome.summary.as_deref(), Some("done"));
}

#[test]
fn docs_sample_reports_reasoning_the_command_and_the_answer() {
    let (events, parser) = replay("docs-sample-readme-check.jsonl");
    assert_eq!(sessions(&events), ["0199a213-81c0-7800-8aa1-bbab2a035a53"]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Thinking(_)))
            .count(),
        2
    );
    assert_eq!(commands(&events), [("bash -lc ls", Some(0))]);
    assert_eq!(
        parser.finish(Some(0)).summary.as_deref(),
        Some("Yep — there’s a `README.md` in the repository root.")
    );
}

#[test]
fn todo_list_run_reports_plan_updates_files_and_every_command() {
    let (events, parser) = replay("todo-list-file-change-commands.jsonl");
    assert_eq!(raw_lines(&events), ["Reading prompt from stdin..."]);
    let todo_updates = tool_names(&events)
        .iter()
        .filter(|name| **name == "todo_list")
        .count();
    assert_eq!(
        todo_updates, 4,
        "started + 3 changes; the unchanged completion is not repeated"
    );
    assert_eq!(
        changes(&events),
        [
            ("/tmp/gh-issue-solver-1762008239822/main.v", "add"),
            ("/tmp/gh-issue-solver-1762008239822/hello.v", "add"),
            ("/tmp/gh-issue-solver-1762008239822/hello_test.v", "add"),
        ]
    );
    let runs = commands(&events);
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|(_, exit)| *exit == Some(0)));
    assert_eq!(usage(&events).unwrap().output_tokens, 2836);
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert!(outcome.summary.unwrap().starts_with("**What I Did**"));
}

#[test]
fn pwsh_tool_use_keeps_crlf_output_and_exit_code() {
    let (events, parser) = replay("tool-use-pwsh.jsonl");
    let output = events.iter().find_map(|e| match e {
        AgentEvent::CommandRun(run) => run.output.clone(),
        _ => None,
    });
    assert_eq!(output.as_deref(), Some("vincent-fixture\r\n"));
    assert_eq!(
        commands(&events),
        [("pwsh -Command 'echo vincent-fixture'", Some(0))]
    );
    assert_eq!(usage(&events).unwrap().input_tokens, 28858);
    assert!(parser.finish(Some(0)).success);
}

#[test]
fn legacy_envelope_reports_reasoning_the_command_and_task_complete() {
    let (events, parser) = replay("legacy-msg-envelope-exec-command.jsonl");
    assert_eq!(tool_names(&events), ["exec_command"]);
    assert_eq!(commands(&events), [("bash -lc 'ls -1'", Some(0))]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Thinking(_)))
            .count(),
        1
    );
    let outcome = parser.finish(Some(0));
    assert!(outcome.success);
    assert!(
        outcome
            .summary
            .unwrap()
            .starts_with("I can see the directory structure")
    );
    assert_eq!(
        outcome.session_id, None,
        "the excerpt has no session_configured"
    );
}

#[test]
fn legacy_patch_apply_reports_the_updated_file() {
    let (events, parser) = replay("legacy-msg-envelope-patch-apply.jsonl");
    assert_eq!(tool_names(&events), ["apply_patch"]);
    assert_eq!(
        changes(&events),
        [(
            "/private/var/folders/4m/6cwx14sx59lc2k9km5ph76gh0000gn/T/vibe-kanban-dev/vk-a712-minor-rest/README.md",
            "update"
        )]
    );
    assert!(parser.finish(Some(0)).success);
}

#[test]
fn truncated_lines_and_other_agents_transcripts_never_panic() {
    let root = fixtures_dir().join("..");
    for agent in ["claude", "gemini", "codex"] {
        for entry in std::fs::read_dir(root.join(agent)).unwrap() {
            let transcript = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut parser = CodexParser::default();
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
fn a_killed_run_fails_and_says_so() {
    let (_, parser) = replay("success-command-with-stdin-notice.jsonl");
    let outcome = parser.finish(None);
    assert!(!outcome.success);
    assert_eq!(
        outcome.error.as_deref(),
        Some("codex was killed by a signal before it finished")
    );
}

#[test]
fn the_fake_codex_default_transcript_is_a_successful_run() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../examples/fake-agents/transcripts/codex.jsonl");
    let transcript = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut parser = CodexParser::default();
    for line in transcript.lines() {
        parser.parse_line(OutputStream::Stdout, line);
    }
    let outcome = parser.finish(Some(0));
    assert!(outcome.success, "{:?}", outcome.error);
    assert!(outcome.summary.is_some());
    assert_eq!(
        outcome.session_id.as_deref(),
        Some("019d53c0-4d8a-7ff2-9600-63d8e0673623")
    );
}
