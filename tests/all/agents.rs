//! Agent adapters (real components) and agent queues driving fake CLIs
//! (scripts that replay real transcripts) as real processes.

use crate::support::Project;
use protocol::{Activity, CommandStatus, EventKind, Priority};
use runner::agents::{CommandRequest, Refusal};
use runner::plugin::{AgentRequest, Plugins};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixtures() -> PathBuf {
    repo().parent().unwrap().join("shared/fixtures/agents")
}

pub(crate) fn fake(cli: &str) -> String {
    repo()
        .join("examples/fake-agents")
        .join(cli)
        .display()
        .to_string()
}

fn request(agent: &str, prompt: &str, priority: Priority) -> CommandRequest {
    CommandRequest {
        agent: agent.into(),
        prompt: prompt.into(),
        priority,
        resume_session: None,
        run_id: None,
        task_id: None,
        working_dir: None,
        timeout: None,
    }
}

/// A project with one agent `a` driving the fake `cli`, plus extra agent keys.
fn agent_project(cli: &str, extra: &str) -> Project {
    Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = \"{{state}}\"\n[agents.a]\nadapter = \"{cli}\"\ncommand = \"{}\"\n{extra}\n",
        fake(cli)
    ))
}

/// Whether any process still carries `marker` in its environment.
pub(crate) fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(environ) = std::fs::read(entry.path().join("environ"))
            && environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes())
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

async fn none_left(marker: &str) {
    for _ in 0..50 {
        if processes_with(marker).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("processes survived: {:?}", processes_with(marker));
}

/// Reads events until a command starts running (at most 10 s per event).
async fn wait_until_running(events: &mut runner::events::Subscription) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the bus is open");
        if matches!(
            &event.kind,
            EventKind::CommandStatus {
                status: CommandStatus::Running,
                ..
            }
        ) {
            return;
        }
    }
}

pub(crate) fn unique(name: &str) -> String {
    format!(
        "RUNNER_TEST_MARK={name}-{}-{}",
        std::process::id(),
        chrono_free_nanos()
    )
}

fn chrono_free_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn every_fixture_transcript_gives_the_expected_events() {
    let project = Project::new("version = 1\n[defaults]\nstate_dir = \"{state}\"\n");
    let config = project.config();
    let names: Vec<String> = ["claude", "gemini", "codex"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let plugins = Plugins::load(&config, Some(&names)).await.unwrap();
    let bless = std::env::var_os("RUNNER_BLESS").is_some();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for cli in &names {
        let adapter = plugins.get(cli).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(cli))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let mut session = adapter
                .agent_session(Duration::from_secs(30), runner::plugin::discard())
                .await
                .unwrap();
            let wire = AgentRequest {
                prompt: "replay".into(),
                model: None,
                working_dir: "/tmp".into(),
                resume_session: None,
                program: None,
                extra_args: Vec::new(),
                options: Vec::new(),
            };
            session.start(&wire).await.unwrap().unwrap();
            let mut events = Vec::new();
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                for event in session
                    .parse_line(protocol::Stream::Stdout, line)
                    .await
                    .unwrap()
                {
                    events.push(serde_json::to_value(runner::agents::activity(event)).unwrap());
                }
            }
            let outcome = session.finish(Some(0)).await.unwrap();
            let actual = json!({
                "events": events,
                "outcome": {
                    "success": outcome.success,
                    "summary": outcome.summary,
                    "error": outcome.error,
                    "session_id": outcome.session_id,
                },
            });
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let golden = repo()
                .join("tests/golden/agents")
                .join(cli)
                .join(format!("{stem}.json"));
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            if bless {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, &text).unwrap();
            } else {
                let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                    panic!(
                        "no golden file {}; run with RUNNER_BLESS=1 and review it",
                        golden.display()
                    )
                });
                if expected != text {
                    mismatches.push(format!("{cli}/{stem}"));
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20,
        "only {checked} fixtures found under {}",
        fixtures().display()
    );
    assert!(
        mismatches.is_empty(),
        "adapter output differs from the golden files for {mismatches:?}; if intended, rerun with RUNNER_BLESS=1 and review the diff"
    );
}

#[test]
fn golden_files_say_what_a_user_would_check() {
    let read = |path: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(repo().join("tests/golden/agents").join(path)).unwrap(),
        )
        .unwrap()
    };
    let claude = read("claude/success-bash-write-read.json");
    assert_eq!(claude["outcome"]["success"], true);
    assert_eq!(
        claude["outcome"]["session_id"],
        "65206fb7-610c-417e-89cd-7590603606a1"
    );
    let kinds: Vec<&str> = claude["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "session_started",
        "assistant_message",
        "tool_use",
        "tool_result",
        "file_change",
        "usage",
        "final_result",
    ] {
        assert!(
            kinds.contains(&kind),
            "claude success lacks {kind}: {kinds:?}"
        );
    }
    // An error reported with is_error and exit code 0 is still a failure.
    let not_logged_in = read("claude/error-not-logged-in.json");
    assert_eq!(not_logged_in["outcome"]["success"], false);
    assert!(
        not_logged_in["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("authentication_failed")
    );
    // Non-JSON notices become raw lines, not crashes.
    let codex = read("codex/success-command-with-stdin-notice.json");
    assert_eq!(codex["events"][0]["kind"], "raw");
    let failed = read("codex/file-change-and-failed-command.json");
    let exit_codes: Vec<i64> = failed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "command_run")
        .filter_map(|e| e["exit_code"].as_i64())
        .collect();
    assert!(exit_codes.contains(&128), "{exit_codes:?}");
}

#[tokio::test]
async fn runs_each_fake_cli_to_completion_with_its_session_and_summary() {
    for (cli, session) in [
        ("claude", "65206fb7-610c-417e-89cd-7590603606a1"),
        ("gemini", "9ea39555-d63b-4283-b9da-0ec0cda51203"),
        ("codex", "019d53c0-4d8a-7ff2-9600-63d8e0673623"),
    ] {
        let project = agent_project(cli, "");
        let runner = project.runner().await;
        let handle = runner
            .agents()
            .submit(request("a", "hello", Priority::Normal))
            .await
            .unwrap();
        let result = tokio::time::timeout(Duration::from_secs(30), handle.done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            result.status,
            CommandStatus::Completed,
            "{cli}: {:?}",
            result.error
        );
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.session_id.as_deref(), Some(session), "{cli}");
        assert!(
            result.summary.as_deref().is_some_and(|s| !s.is_empty()),
            "{cli} has a summary"
        );
    }
}

#[tokio::test]
async fn serves_high_before_normal_before_low_one_command_at_a_time() {
    let project = agent_project("claude", "env = { FAKE_AGENT_DELAY = \"0.03\" }");
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let agents = runner.agents().clone();
    let first = agents
        .submit(request("a", "first", Priority::Normal))
        .await
        .unwrap();
    // Wait until the first one runs, so the others queue behind it.
    wait_until_running(&mut events).await;
    let low = agents
        .submit(request("a", "low", Priority::Low))
        .await
        .unwrap();
    let normal = agents
        .submit(request("a", "normal", Priority::Normal))
        .await
        .unwrap();
    let high = agents
        .submit(request("a", "high", Priority::High))
        .await
        .unwrap();
    let ids = [
        first.id.clone(),
        high.id.clone(),
        normal.id.clone(),
        low.id.clone(),
    ];
    for handle in [first, low, normal, high] {
        let result = tokio::time::timeout(Duration::from_secs(60), handle.done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.status, CommandStatus::Completed);
    }
    let mut started = Vec::new();
    let mut running_now = 1; // the first command is running already
    while let Ok(event) = events.try_recv() {
        if let EventKind::CommandStatus {
            command_id, status, ..
        } = &event.kind
        {
            match status {
                CommandStatus::Running => {
                    running_now += 1;
                    assert_eq!(running_now, 1, "two commands ran at once");
                    started.push(command_id.clone());
                }
                CommandStatus::Completed | CommandStatus::Failed | CommandStatus::Interrupted => {
                    running_now -= 1
                }
                CommandStatus::Queued => {}
            }
        }
    }
    assert_eq!(
        started,
        ids[1..].to_vec(),
        "after the first: high, normal, low"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_hanging_cli_and_its_children() {
    let marker = unique("timeout");
    let (key, value) = marker.split_once('=').unwrap();
    let project = agent_project(
        "claude",
        &format!("timeout = \"1s\"\nenv = {{ FAKE_AGENT_HANG = \"1\", {key} = \"{value}\" }}"),
    );
    let runner = project.runner().await;
    let handle = runner
        .agents()
        .submit(request("a", "hang", Priority::Normal))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Failed);
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("timed out after 1s"),
        "{:?}",
        result.error
    );
    none_left(&marker).await;
}

#[tokio::test]
async fn an_interrupt_stops_a_running_command_and_its_process_group() {
    let marker = unique("interrupt");
    let (key, value) = marker.split_once('=').unwrap();
    let project = agent_project(
        "claude",
        &format!("env = {{ FAKE_AGENT_DELAY = \"1\", {key} = \"{value}\" }}"),
    );
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(request("a", "slow", Priority::Normal))
        .await
        .unwrap();
    wait_until_running(&mut events).await;
    runner.agents().interrupt(&handle.id).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), handle.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.status, CommandStatus::Interrupted);
    none_left(&marker).await;
    assert!(
        runner.agents().interrupt(&handle.id).is_err(),
        "an ended command cannot be interrupted"
    );
}

#[tokio::test]
async fn refuses_an_offline_agent_a_full_queue_and_an_invalid_request() {
    let offline = Project::new(
        "version = 1\n[defaults]\nstate_dir = \"{state}\"\n[agents.gone]\nadapter = \"claude\"\ncommand = \"/nonexistent/claude\"\n",
    );
    let runner = offline.runner().await;
    let refusal = runner
        .agents()
        .submit(request("gone", "hi", Priority::High))
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        Refusal::Offline {
            agent: "gone".into(),
            program: "/nonexistent/claude".into()
        }
    );
    assert!(refusal.to_string().contains("offline"));

    let project = agent_project(
        "claude",
        "queue_limit = 1\nenv = { FAKE_AGENT_DELAY = \"0.2\" }",
    );
    let runner = project.runner().await;
    let agents = runner.agents().clone();
    let mut events = runner.bus().subscribe();
    let running = agents
        .submit(request("a", "one", Priority::Normal))
        .await
        .unwrap();
    wait_until_running(&mut events).await;
    let queued = agents
        .submit(request("a", "two", Priority::Normal))
        .await
        .unwrap();
    let refusal = agents
        .submit(request("a", "three", Priority::Normal))
        .await
        .err()
        .unwrap();
    assert_eq!(
        refusal,
        Refusal::QueueFull {
            agent: "a".into(),
            limit: 1
        }
    );
    let invalid = agents
        .submit(request("a", "   ", Priority::Normal))
        .await
        .err()
        .unwrap();
    assert!(matches!(invalid, Refusal::Invalid { .. }), "{invalid:?}");
    let unknown = agents
        .submit(request("nobody", "hi", Priority::Normal))
        .await
        .err()
        .unwrap();
    assert_eq!(unknown, Refusal::UnknownAgent("nobody".into()));
    agents.interrupt(&running.id).unwrap();
    agents.interrupt(&queued.id).unwrap();
    let queued = tokio::time::timeout(Duration::from_secs(30), queued.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.status, CommandStatus::Interrupted);
}

#[tokio::test]
async fn a_follow_up_task_resumes_the_agent_session_and_the_run_reports_usage() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let project = agent_project(
        "claude",
        &format!(
            "env = {{ FAKE_AGENT_ARGS_LOG = \"{}\" }}\n\
             [[pipelines.p.batches]]\nid = \"b\"\n\
             [[pipelines.p.batches.tasks]]\nid = \"first\"\ntype = \"agent\"\nconfig = {{ agent = \"a\", prompt = \"start\" }}\n\
             [[pipelines.p.batches.tasks]]\nid = \"second\"\ntype = \"agent\"\nconfig = {{ agent = \"a\", prompt = \"go on\", resume = \"first\" }}\n",
            log.path().display()
        ),
    );
    let (report, events) = project.run("p").await;
    assert_eq!(
        report.status,
        protocol::RunStatus::Completed,
        "{:?}",
        report.error
    );
    let calls: Vec<Vec<String>> = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(calls.len(), 2);
    assert!(!calls[0].contains(&"--resume".to_string()));
    let at = calls[1]
        .iter()
        .position(|a| a == "--resume")
        .expect("second call resumes");
    assert_eq!(calls[1][at + 1], "65206fb7-610c-417e-89cd-7590603606a1");
    assert_eq!(calls[1].last().unwrap(), "go on");
    let usage = events.iter().any(|e| {
        matches!(&e.kind, EventKind::AgentActivity { task_id: Some(t), activity: Activity::Usage { output_tokens, .. }, .. } if t == "first" && *output_tokens > 0)
    });
    assert!(usage, "the run shows the tokens the agent reported");
    let EventKind::TaskFinished {
        result: Some(output),
        ..
    } = crate::support::finished(&events, "second")
    else {
        panic!()
    };
    assert_eq!(output["session_id"], "65206fb7-610c-417e-89cd-7590603606a1");
    assert!(
        output["tools_used"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "Write")
    );
    let _ = Arc::new(());
}

#[tokio::test]
async fn agent_tasks_waiting_for_their_agent_leave_the_run_slots_to_other_tasks() {
    let done = tempfile::tempdir().unwrap();
    // The agent's CLI goes on only once both exec tasks have run. If agent
    // tasks waiting for the agent held the two run slots, the exec tasks
    // could not run and the CLI would give up.
    let cli = done.path().join("claude-after-exec");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\nfor i in $(seq 1 200); do\n  [ -f {0}/one ] && [ -f {0}/two ] && exec {1} \"$@\"\n  sleep 0.1\ndone\necho 'the exec tasks never ran' >&2\nexit 1\n",
            done.path().display(),
            fake("claude")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut tasks = String::new();
    for id in ["ask1", "ask2", "ask3"] {
        tasks.push_str(&format!(
            "[[pipelines.p.batches.tasks]]\nid = \"{id}\"\ntype = \"agent\"\nconfig = {{ agent = \"a\", prompt = \"{id}\" }}\n"
        ));
    }
    for id in ["one", "two"] {
        tasks.push_str(&format!(
            "[[pipelines.p.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = \"touch {}/{id}\" }}\n",
            done.path().display()
        ));
    }
    let project = Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = \"{{state}}\"\nconcurrency = 2\n\
         [agents.a]\nadapter = \"claude\"\ncommand = \"{}\"\nconcurrency = 1\n\
         [[pipelines.p.batches]]\nid = \"b\"\ntype = \"parallel\"\n{tasks}",
        cli.display()
    ));
    let (report, events) = project.run("p").await;
    assert_eq!(
        report.status,
        protocol::RunStatus::Completed,
        "{:?}",
        report.error
    );
    let finished_seq = |task: &str| {
        events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::TaskFinished { task_id, .. } if task_id == task))
            .map(|e| e.seq)
            .unwrap_or_else(|| panic!("{task} finished"))
    };
    let first_agent_done = ["ask1", "ask2", "ask3"].map(finished_seq).into_iter().min();
    for exec in ["one", "two"] {
        assert!(
            Some(finished_seq(exec)) < first_agent_done,
            "exec task {exec} finished while the agent tasks waited"
        );
    }
}
