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

pub(crate) fn request(agent: &str, prompt: &str, priority: Priority) -> CommandRequest {
    CommandRequest {
        agent: agent.into(),
        prompt: prompt.into(),
        priority,
        resume_session: None,
        run_id: None,
        task_id: None,
        working_dir: None,
        timeout: None,
        budget: Default::default(),
        run_budget: None,
    }
}

/// A project with one agent `a` driving the fake `cli`, plus extra agent keys.
pub(crate) fn agent_project(cli: &str, extra: &str) -> Project {
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

pub(crate) async fn none_left(marker: &str) {
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
            // Checked before the golden file, so that a wrong parse cannot be blessed.
            let name = format!("{cli}/{stem}");
            EXPECTED
                .iter()
                .find(|e| e.fixture == name)
                .unwrap_or_else(|| {
                    panic!("{name}: write down in EXPECTED what the transcript says")
                })
                .check(&actual);
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
    assert_eq!(
        checked,
        EXPECTED.len(),
        "an entry of EXPECTED names no fixture"
    );
    assert!(
        mismatches.is_empty(),
        "adapter output differs from the golden files for {mismatches:?}; if intended, rerun with RUNNER_BLESS=1 and review the diff"
    );
}

/// A summary as the transcript gives it.
#[derive(Clone, Copy)]
enum Text {
    Exact(&'static str),
    StartsWith(&'static str),
    Absent,
}

/// What a transcript says, written down from reading the transcript in
/// `shared/fixtures/agents/` (not from the adapter's output), for a replay
/// that ends with exit code 0.
struct Expected {
    fixture: &'static str,
    session: Option<&'static str>,
    success: bool,
    summary: Text,
    /// The outcome's error.
    error: Option<&'static str>,
    /// Every `error` activity, in order.
    errors: &'static [&'static str],
    /// Summed `usage`: input, output and cached tokens (Claude's input
    /// counts `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens`).
    tokens: [u64; 3],
    /// Summed cost in USD; `None`: no usage carries a cost.
    cost: Option<f64>,
    /// Every `file_change`: path and change, in order.
    files: &'static [(&'static str, &'static str)],
}

const NOTHING: Expected = Expected {
    fixture: "",
    session: None,
    success: true,
    summary: Text::Absent,
    error: None,
    errors: &[],
    tokens: [0, 0, 0],
    cost: None,
    files: &[],
};

const CODEX_401: &str = "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, url: https://api.openai.com/v1/responses, cf-ray: REDACTED-SEA, request id: REDACTED";
const CODEX_NEWER: &str = "400 invalid_request_error: The 'gpt-5.6-sol' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again.";

const EXPECTED: &[Expected] = &[
    // claude: `session_id` of `system/init`; the `result` line's `result`,
    // `is_error`/`subtype`, `usage` and `total_cost_usd`.
    Expected {
        fixture: "claude/error-model-not-found-404",
        session: Some("16a26db9-fd28-4a13-b08f-8b06aed6552c"),
        success: false,
        summary: Text::Exact(
            r#"API Error: 404 {"type":"error","error":{"type":"not_found_error","message":"model: oups"},"request_id":"req_011CVk2vdLxynFeaMQaoKZPH"}"#,
        ),
        error: Some("API Error: 404 not_found_error: model: oups"),
        errors: &["API Error: 404 not_found_error: model: oups"],
        cost: Some(0.027108),
        ..NOTHING
    },
    Expected {
        fixture: "claude/error-not-logged-in",
        session: Some("00000000-0000-7000-8000-000000000006"),
        success: false,
        summary: Text::Exact("Not logged in · Please run /login"),
        error: Some("authentication_failed: Not logged in · Please run /login"),
        errors: &["authentication_failed: Not logged in · Please run /login"],
        cost: Some(0.0),
        ..NOTHING
    },
    Expected {
        fixture: "claude/legacy-1.0-error-during-execution-excerpt",
        session: Some("79fac4e0-79bd-4489-afb5-6023fa22cc47"),
        success: false,
        // No `result` text: the last assistant text.
        summary: Text::Exact(
            "I'll study the ccagent codebase to understand its logging architecture and propose options for implementing persistent logging.",
        ),
        error: Some("error_during_execution"),
        errors: &["error_during_execution"],
        tokens: [337 + 33704 + 286445, 4075, 286445],
        cost: Some(0.21045915),
        ..NOTHING
    },
    Expected {
        fixture: "claude/partial-messages-multimodel-background-task",
        session: Some("7a77dc87-84cd-44eb-aa5a-756575b9ebe5"),
        // Two results, `waiting` then `done`; the cost is cumulative.
        summary: Text::Exact("done"),
        tokens: [
            5551 + 12052 + 52111 + 1444 + 325 + 35107,
            179 + 3,
            52111 + 35107,
        ],
        cost: Some(0.1393799),
        ..NOTHING
    },
    Expected {
        fixture: "claude/stdio-permission-allow-write",
        session: Some("25f505f3-79a7-4119-8ffa-23ce6efc7560"),
        summary: Text::Exact("Done. Created `hello.txt` with content `hi`."),
        tokens: [18 + 548 + 66670, 491, 66670],
        cost: Some(0.009825),
        files: &[("C:\\work\\repo\\hello.txt", "add")],
        ..NOTHING
    },
    Expected {
        fixture: "claude/stdio-permission-ask-user-question",
        session: Some("26c9ed13-7965-46e0-b2b5-da98ba1676a9"),
        summary: Text::Exact("Red"),
        tokens: [18 + 250 + 66750, 238, 66750],
        cost: Some(0.0081955),
        ..NOTHING
    },
    Expected {
        fixture: "claude/success-bash-write-read",
        session: Some("65206fb7-610c-417e-89cd-7590603606a1"),
        summary: Text::Exact(r#"All tasks completed. The file contains: "Hello, World!""#),
        tokens: [18 + 5252 + 69608, 298, 69608],
        cost: Some(0.0455704),
        files: &[("/home/daytona/hello.txt", "add")],
        ..NOTHING
    },
    // codex: `thread.started`'s `thread_id`, the turn's last `agent_message`,
    // `turn.completed`'s `usage`, `file_change` items; no cost is printed.
    Expected {
        fixture: "codex/docs-sample-readme-check",
        session: Some("0199a213-81c0-7800-8aa1-bbab2a035a53"),
        summary: Text::Exact("Yep — there’s a `README.md` in the repository root."),
        tokens: [24763, 122, 24448],
        ..NOTHING
    },
    Expected {
        fixture: "codex/error-401-reconnecting",
        session: Some("00000000-0000-7000-8000-000000000005"),
        success: false,
        error: Some(CODEX_401),
        // The nine `Reconnecting... n/5` lines are retries, not errors.
        errors: &[CODEX_401],
        ..NOTHING
    },
    Expected {
        fixture: "codex/file-change-and-failed-command",
        session: Some("00000000-0000-7000-8000-000000000030"),
        // The command's exit code 128 does not fail the run.
        summary: Text::Exact("done"),
        tokens: [61559, 396, 47616],
        files: &[
            ("/private/tmp/facet-probe/scratch/alpha.txt", "update"),
            ("/private/tmp/facet-probe/scratch/zeta.txt", "add"),
        ],
        ..NOTHING
    },
    Expected {
        fixture: "codex/legacy-msg-envelope-exec-command",
        summary: Text::Exact(
            "I can see the directory structure of your project. This appears to be a Rust project with a frontend/backend architecture, using pnpm for package management. The project includes various configuration files, documentation, and development assets.",
        ),
        ..NOTHING
    },
    Expected {
        fixture: "codex/legacy-msg-envelope-patch-apply",
        files: &[(
            "/private/var/folders/4m/6cwx14sx59lc2k9km5ph76gh0000gn/T/vibe-kanban-dev/vk-a712-minor-rest/README.md",
            "update",
        )],
        ..NOTHING
    },
    Expected {
        fixture: "codex/success-command-with-stdin-notice",
        session: Some("019d53c0-4d8a-7ff2-9600-63d8e0673623"),
        summary: Text::Exact(
            "1. `2 + 2 = 4`\n\n2. `ls` output: *(no files were listed at the time of running it)*\n\n3. Created `hello.txt` with:\n`Hello, World!`\n\n4. Read back from `hello.txt`:\n`Hello, World!`",
        ),
        tokens: [20643, 239, 10240],
        ..NOTHING
    },
    Expected {
        fixture: "codex/todo-list-file-change-commands",
        session: Some("019a3fe0-82fb-7e31-8e96-1d5c0544fd8a"),
        summary: Text::StartsWith(
            "**What I Did**\n- Implemented a V “Hello, World!” program\n- Added a unit test to verify the greeting",
        ),
        tokens: [177136, 2836, 163840],
        files: &[
            ("/tmp/gh-issue-solver-1762008239822/main.v", "add"),
            ("/tmp/gh-issue-solver-1762008239822/hello.v", "add"),
            ("/tmp/gh-issue-solver-1762008239822/hello_test.v", "add"),
        ],
        ..NOTHING
    },
    Expected {
        fixture: "codex/tool-use-pwsh",
        session: Some("019fe042-697a-79a0-8b8e-7a1a9551fde5"),
        summary: Text::Exact("The output is:\n\n```text\nvincent-fixture\n```"),
        tokens: [28858, 196, 16128],
        ..NOTHING
    },
    // gemini: `init`'s `session_id`, the assistant messages (fragments with
    // `delta: true` joined), `result.stats` (`input_tokens`, `output_tokens`,
    // `cached`) or, for `--output-format json`, the per-model `tokens` summed.
    Expected {
        fixture: "gemini/docs-example-stream",
        session: Some("abc123"),
        summary: Text::Exact("Here are the files..."),
        tokens: [50, 200, 0],
        ..NOTHING
    },
    Expected {
        fixture: "gemini/error-invalid-model",
        session: Some("00000000-0000-4000-8000-000000000003"),
        success: false,
        // No assistant message: the error is the summary.
        summary: Text::Exact("[API Error: Requested entity was not found.]"),
        error: Some("[API Error: Requested entity was not found.]"),
        errors: &["[API Error: Requested entity was not found.]"],
        ..NOTHING
    },
    Expected {
        fixture: "gemini/happy-path-ack",
        session: Some("00000000-0000-4000-8000-000000000001"),
        summary: Text::Exact("ack"),
        tokens: [10178, 1, 0],
        ..NOTHING
    },
    Expected {
        fixture: "gemini/json-output-docs-example",
        summary: Text::Exact("The capital of France is Paris."),
        tokens: [24939 + 8965, 20 + 10, 21263],
        ..NOTHING
    },
    Expected {
        fixture: "gemini/success-parallel-tools-yolo-notices",
        session: Some("9ea39555-d63b-4283-b9da-0ec0cda51203"),
        summary: Text::Exact(
            "I have calculated the sum, listed the directory, created 'hello.txt', and read its content as requested.",
        ),
        tokens: [25439, 217, 8111],
        // `write_file`'s result carries no diff: new or overwritten is unknown.
        files: &[("hello.txt", "unknown")],
        ..NOTHING
    },
    Expected {
        fixture: "gemini/tool-use-read-file",
        session: Some("00000000-0000-4000-8000-000000000002"),
        // `SWITCHBOARD_GEMINI_PROBE_TOOL_5F8A2` + `1`.
        summary: Text::Exact("SWITCHBOARD_GEMINI_PROBE_TOOL_5F8A21"),
        tokens: [20525, 100, 7559],
        ..NOTHING
    },
    Expected {
        fixture: "codex/error-model-requires-newer-codex",
        session: Some("019fe040-c131-7d31-a9bd-83df751b4d4a"),
        success: false,
        error: Some(CODEX_NEWER),
        errors: &[
            "Model metadata for `gpt-5.6-sol` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.",
            CODEX_NEWER,
        ],
        ..NOTHING
    },
];

impl Expected {
    fn check(&self, actual: &Value) {
        let name = self.fixture;
        let outcome = &actual["outcome"];
        let events = actual["events"].as_array().unwrap();
        let of_kind = |kind: &'static str| events.iter().filter(move |e| e["kind"] == kind);
        assert_eq!(
            outcome["session_id"].as_str(),
            self.session,
            "{name}: session"
        );
        assert_eq!(outcome["success"], self.success, "{name}: success");
        assert_eq!(outcome["error"].as_str(), self.error, "{name}: error");
        let summary = outcome["summary"].as_str();
        match self.summary {
            Text::Exact(text) => assert_eq!(summary, Some(text), "{name}: summary"),
            Text::StartsWith(text) => assert!(
                summary.is_some_and(|s| s.starts_with(text)),
                "{name}: summary {summary:?} does not start with {text:?}"
            ),
            Text::Absent => assert_eq!(summary, None, "{name}: summary"),
        }
        let errors: Vec<&str> = of_kind("error")
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert_eq!(errors, self.errors, "{name}: error activities");
        let tokens = ["input_tokens", "output_tokens", "cached_tokens"].map(|key| {
            of_kind("usage")
                .map(|e| e[key].as_u64().unwrap())
                .sum::<u64>()
        });
        assert_eq!(tokens, self.tokens, "{name}: input, output, cached tokens");
        let costs: Vec<f64> = of_kind("usage")
            .filter_map(|e| e["cost_usd"].as_f64())
            .collect();
        match self.cost {
            Some(cost) => assert!(
                (costs.iter().sum::<f64>() - cost).abs() < 1e-9,
                "{name}: cost {costs:?}, expected {cost}"
            ),
            None => assert!(costs.is_empty(), "{name}: cost {costs:?}"),
        }
        let files: Vec<(&str, &str)> = of_kind("file_change")
            .map(|e| (e["path"].as_str().unwrap(), e["change"].as_str().unwrap()))
            .collect();
        assert_eq!(files, self.files, "{name}: file changes");
    }
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

/// `codex/error-401-reconnecting.jsonl`: nine `Reconnecting... n/5 (…)`
/// lines, then the 401 as an `error` and as `turn.failed`.
#[tokio::test]
async fn a_failed_command_carries_the_streams_own_error_and_its_retries_are_not_errors() {
    let transcript = fixtures().join("codex/error-401-reconnecting.jsonl");
    let project = agent_project(
        "codex",
        &format!(
            "env = {{ FAKE_AGENT_TRANSCRIPT = \"{}\", FAKE_AGENT_EXIT = \"1\" }}",
            transcript.display()
        ),
    );
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(request("a", "hello", Priority::Normal))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), handle.done)
        .await
        .unwrap()
        .unwrap();
    let final_error = "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header, url: https://api.openai.com/v1/responses, cf-ray: REDACTED-SEA, request id: REDACTED";
    assert_eq!(result.status, CommandStatus::Failed);
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(result.error.as_deref(), Some(final_error));
    let (mut errors, mut retries) = (Vec::new(), 0);
    while let Ok(event) = events.try_recv() {
        match &event.kind {
            EventKind::AgentActivity {
                activity: Activity::Error { message },
                ..
            } => errors.push(message.clone()),
            EventKind::AgentActivity {
                activity: Activity::Raw { line },
                ..
            } if line.starts_with("Reconnecting... ") => retries += 1,
            _ => {}
        }
    }
    assert_eq!(
        errors,
        [final_error],
        "one error; the retries are raw lines"
    );
    assert_eq!(retries, 9);
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
