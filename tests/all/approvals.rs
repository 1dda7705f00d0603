//! Permission prompts answered from anywhere: the real Claude adapter
//! recognises the `control_request` of a real transcript, replayed by the
//! fake `claude` CLI, which blocks until it reads the `control_response` on
//! its standard input (and, like the real CLI, runs until that input is
//! closed). Answers come from WebSocket clients, the host API, the
//! `approval_timeout`, or a terminal running `runner ask`.

use crate::agents::{agent_project, fake, none_left, processes_with, request};
use crate::server_support::{Served, WAIT, settings};
use protocol::{CommandStatus, EventKind, Priority};
use runner::agents::Answer;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn transcript(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("shared/fixtures/agents/claude")
        .join(name)
        .display()
        .to_string()
}

/// The request id of the `control_request` in the allow-write transcript.
const WRITE_PROMPT: &str = "0a796fa8-74c6-4c82-82a7-fb161e77a51b";

/// The `[agents.a]` keys of a claude agent with prompts on, replaying
/// `transcript` and logging its standard input to `stdin_log`.
fn prompting_agent(transcript_file: &str, stdin_log: &Path, extra: &str) -> String {
    format!(
        "options = {{ permission_prompts = true }}\nenv = {{ FAKE_AGENT_TRANSCRIPT = \"{}\", FAKE_AGENT_STDIN_LOG = \"{}\" }}\n{extra}",
        transcript(transcript_file),
        stdin_log.display()
    )
}

/// What the CLI read on its standard input, one JSON message per line.
fn stdin_messages(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// Whether a second answer to `approval_id` is refused.
fn refuses_a_late_answer(runner: &runner::run::Runner, approval_id: &str) -> bool {
    let late = Answer {
        allow: true,
        message: None,
        by: "late".into(),
    };
    runner.agents().decide_approval(approval_id, late).is_err()
}

/// A runner whose agent `a` has prompts on and replays `transcript_file`,
/// its events, and the command it was just given.
async fn prompting_command(
    transcript_file: &str,
    stdin_log: &Path,
    extra: &str,
) -> (
    crate::support::Project,
    runner::run::Runner,
    runner::events::Subscription,
    runner::agents::CommandHandle,
) {
    let project = agent_project(
        "claude",
        &prompting_agent(transcript_file, stdin_log, extra),
    );
    let runner = project.runner().await;
    let events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(request("a", "write", Priority::Normal))
        .await
        .unwrap();
    (project, runner, events, handle)
}

async fn next_approval(events: &mut runner::events::Subscription) -> (String, EventKind) {
    for _ in 0..10_000 {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("the bus is open");
        if let EventKind::ApprovalRequested { approval_id, .. } = &event.kind {
            return (approval_id.clone(), event.kind.clone());
        }
    }
    panic!("no approval_requested");
}

async fn next_decided(events: &mut runner::events::Subscription) -> EventKind {
    for _ in 0..10_000 {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("the bus is open");
        if matches!(event.kind, EventKind::ApprovalDecided { .. }) {
            return event.kind.clone();
        }
    }
    panic!("no approval_decided");
}

#[tokio::test]
async fn a_prompt_allowed_by_one_dashboard_is_written_to_the_cli_and_a_second_answer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let agent = format!(
        "[agents.a]\nadapter = \"claude\"\ncommand = \"{}\"\n{}",
        fake("claude"),
        prompting_agent("stdio-permission-allow-write.jsonl", &log, "")
    );
    let served = Served::start(&agent, settings()).await;
    let (mut first, _) = served.dashboard().await;
    let (mut second, _) = served.dashboard().await;
    first
        .send(
            json!({"type": "command_request", "id": 1, "agent": "a", "prompt": "write hello.txt"}),
        )
        .await;
    let is_prompt = |m: &Value| m["type"] == "approval_requested";
    let prompt = first.recv_until(is_prompt).await.pop().unwrap();
    assert_eq!(prompt["tool"], "Write");
    assert_eq!(prompt["input"]["content"], "hi", "{prompt}");
    assert_eq!(prompt["description"], "hello.txt");
    assert_eq!(
        prompt["timeout_ms"], 300_000,
        "the default approval_timeout"
    );
    let seen_by_second = second.recv_until(is_prompt).await.pop().unwrap();
    assert_eq!(seen_by_second["approval_id"], prompt["approval_id"]);
    let approval_id = prompt["approval_id"].as_str().unwrap().to_string();

    // A dashboard that joins now finds the prompt in its state.
    let (mut late, state) = served.dashboard().await;
    let pending = state["snapshot"]["pending_approvals"]
        .as_array()
        .unwrap_or_else(|| panic!("pending_approvals in {state}"));
    assert_eq!(pending.len(), 1, "{state}");
    assert_eq!(pending[0]["approval_id"], approval_id.as_str());

    second
        .send(json!({"type": "approval_decision", "id": 7, "approval_id": approval_id, "allow": true}))
        .await;
    let accepted = second.recv_until(|m| m["id"] == 7).await.pop().unwrap();
    assert_eq!(accepted["type"], "approval_accepted", "{accepted}");
    first
        .send(json!({"type": "approval_decision", "id": 8, "approval_id": approval_id, "allow": false}))
        .await;
    let refused = first.recv_until(|m| m["id"] == 8).await.pop().unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "rejected");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("already answered"),
        "{refused}"
    );

    let decided = late
        .recv_until(|m| m["type"] == "approval_decided")
        .await
        .pop()
        .unwrap();
    assert_eq!(decided["allow"], true);
    assert_eq!(decided["decided_by"], "dashboard");
    let end = first
        .recv_until(|m| {
            m["type"] == "command_status"
                && !matches!(m["status"].as_str(), Some("queued" | "running"))
        })
        .await
        .pop()
        .unwrap();
    assert_eq!(end["status"], "completed", "{end}");

    let input = stdin_messages(&log);
    assert_eq!(input.len(), 2, "the prompt, then one answer: {input:?}");
    assert_eq!(input[0]["type"], "user");
    assert_eq!(input[0]["message"]["content"], "write hello.txt");
    assert_eq!(input[1]["type"], "control_response");
    assert_eq!(input[1]["response"]["request_id"], WRITE_PROMPT);
    assert_eq!(input[1]["response"]["response"]["behavior"], "allow");
    assert_eq!(
        input[1]["response"]["response"]["updatedInput"]["content"],
        "hi"
    );
    // Once answered it is gone from the state.
    let (_, state) = served.dashboard().await;
    assert!(
        !state.to_string().contains(&approval_id),
        "no pending approval left: {state}"
    );
}

#[tokio::test]
async fn a_denied_prompt_tells_the_agent_why() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let (_project, runner, mut events, handle) =
        prompting_command("stdio-permission-ask-user-question.jsonl", &log, "").await;
    let (approval_id, prompt) = next_approval(&mut events).await;
    let EventKind::ApprovalRequested {
        tool, description, ..
    } = prompt
    else {
        unreachable!()
    };
    assert_eq!(tool, "AskUserQuestion");
    assert_eq!(description.as_deref(), Some("Which color do you prefer?"));
    runner
        .agents()
        .decide_approval(
            &approval_id,
            Answer {
                allow: false,
                message: Some("Blue, and stop asking".into()),
                by: "test".into(),
            },
        )
        .unwrap();
    let result = tokio::time::timeout(WAIT, handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Completed, "{result:?}");
    let answer = stdin_messages(&log).pop().unwrap();
    assert_eq!(answer["response"]["response"]["behavior"], "deny");
    assert_eq!(
        answer["response"]["response"]["message"],
        "Blue, and stop asking"
    );
    assert!(
        refuses_a_late_answer(&runner, &approval_id),
        "an answered prompt takes no second answer"
    );
}

#[tokio::test]
async fn a_prompt_nobody_answers_is_denied_at_the_approval_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let (_project, runner, mut events, handle) = prompting_command(
        "stdio-permission-allow-write.jsonl",
        &log,
        "approval_timeout = \"1s\"",
    )
    .await;
    let (approval_id, _) = next_approval(&mut events).await;
    let EventKind::ApprovalDecided {
        allow,
        decided_by,
        message,
        approval_id: decided,
        ..
    } = next_decided(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!(decided, approval_id);
    assert!(!allow);
    assert_eq!(decided_by, "timeout");
    assert_eq!(message.as_deref(), Some("nobody answered within 1s"));
    assert!(
        refuses_a_late_answer(&runner, &approval_id),
        "a timed-out prompt takes no answer"
    );
    let result = tokio::time::timeout(WAIT, handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Completed, "{result:?}");
    let answer = stdin_messages(&log).pop().unwrap();
    assert_eq!(answer["response"]["request_id"], WRITE_PROMPT);
    assert_eq!(answer["response"]["response"]["behavior"], "deny");
}

#[tokio::test]
async fn a_prompt_still_waiting_when_its_command_is_interrupted_is_withdrawn() {
    let marker = crate::agents::unique("approval");
    let (key, value) = marker.split_once('=').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let project = agent_project(
        "claude",
        &format!(
            "options = {{ permission_prompts = true }}\nenv = {{ FAKE_AGENT_TRANSCRIPT = \"{}\", FAKE_AGENT_STDIN_LOG = \"{}\", {key} = \"{value}\" }}",
            transcript("stdio-permission-allow-write.jsonl"),
            log.display()
        ),
    );
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(request("a", "write", Priority::Normal))
        .await
        .unwrap();
    let (approval_id, _) = next_approval(&mut events).await;
    assert!(
        !processes_with(&marker).is_empty(),
        "the CLI waits for its answer"
    );
    runner.agents().interrupt(&handle.id).unwrap();
    let EventKind::ApprovalDecided {
        decided_by, allow, ..
    } = next_decided(&mut events).await
    else {
        unreachable!()
    };
    assert_eq!((decided_by.as_str(), allow), ("ended", false));
    let result = tokio::time::timeout(WAIT, handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Interrupted);
    none_left(&marker).await;
    assert!(refuses_a_late_answer(&runner, &approval_id));
}

#[tokio::test]
async fn an_agent_without_prompts_gets_its_stdin_closed_as_before() {
    // The same transcript without `permission_prompts`: the prompt is an
    // argument, standard input is closed at once, so the fake CLI replays
    // through the control_request without waiting (it reads nothing).
    let project = agent_project(
        "claude",
        &format!(
            "env = {{ FAKE_AGENT_TRANSCRIPT = \"{}\" }}",
            transcript("stdio-permission-allow-write.jsonl")
        ),
    );
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(request("a", "write", Priority::Normal))
        .await
        .unwrap();
    let result = tokio::time::timeout(WAIT, handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Completed, "{result:?}");
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event.kind, EventKind::ApprovalRequested { .. }),
            "no prompt relayed: {event:?}"
        );
    }
}

#[tokio::test]
async fn prompts_cannot_be_combined_with_skipped_permissions() {
    let project = agent_project(
        "claude",
        "options = { permission_prompts = true, skip_permissions = true }",
    );
    let runner = project.runner().await;
    let refusal = match runner
        .agents()
        .submit(request("a", "hi", Priority::Normal))
        .await
    {
        Err(refusal) => refusal.to_string(),
        Ok(_) => panic!("the request was queued"),
    };
    assert!(
        refusal.contains("`permission_prompts` and `skip_permissions` cannot both be set"),
        "{refusal}"
    );
}

#[test]
fn runner_ask_in_a_terminal_asks_and_the_typed_answer_reaches_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdin.log");
    let project = agent_project(
        "claude",
        &prompting_agent("stdio-permission-allow-write.jsonl", &log, ""),
    );
    // `script` gives `runner ask` a terminal; "y" is typed once it asks.
    let command = format!(
        "{} ask --config {} a 'write hello.txt'",
        crate::pipelines::runner_binary().display(),
        project.path().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    // Typed ahead: the terminal holds it until `runner ask` reads.
    use std::io::Write;
    stdin.write_all(b"y\n").unwrap();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            drop(stdin);
            let output = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(status.success(), "{text}");
            assert!(
                text.contains("allow Write?"),
                "asked in the terminal: {text}"
            );
            assert!(text.contains("allowed by terminal"), "{text}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "runner ask did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = stdin_messages(&log).pop().unwrap();
    assert_eq!(answer["response"]["response"]["behavior"], "allow");
}
