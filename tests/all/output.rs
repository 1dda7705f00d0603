//! Output limits: a task or agent command that floods its terminal is cut
//! at its limit, says so once, and goes on; the history keeps to its size
//! budget.

use crate::support::{Project, finished, output_of, shared_state_dir};
use protocol::{CommandStatus, EventKind, LogLevel, Priority, RunStatus, TaskStatus};
use runner::agents::CommandRequest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The `log` warnings of `task`.
fn warnings(events: &[Arc<protocol::Event>], task: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log {
                task_id: Some(t),
                level: LogLevel::Warn,
                message,
                ..
            } if t == task => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn output_events(events: &[Arc<protocol::Event>], task: &str) -> usize {
    events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::TerminalOutput { task_id: Some(t), .. } if t == task),
        )
        .count()
}

#[tokio::test]
async fn an_exec_task_printing_20_mib_under_a_1_mib_limit_gives_1_mib_of_output_one_marker_and_completes()
 {
    let project = Project::new(
        r#"
version = 1

[defaults]
state_dir = "{state}"
output = "1MiB"

[[pipelines.default.batches]]
id = "flood"

[[pipelines.default.batches.tasks]]
id = "loud"
type = "exec"
config = { command = "yes | head -c 20971520; echo '{\"done\": true}'" }

[[pipelines.default.batches.tasks]]
id = "after"
type = "exec"
config = { command = "echo after" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);

    let written = 20 * 1024 * 1024 + "{\"done\": true}\n".len() as u64;
    let kept = output_of(&events, "loud");
    assert_eq!(kept.len(), 1024 * 1024);
    assert!(kept.starts_with("y\ny\n"));
    // 10 KB chunks: a hundred-odd events, not two thousand.
    let chunks = output_events(&events, "loud");
    assert!((103..=300).contains(&chunks), "{chunks} chunks");

    let dropped = written - 1024 * 1024;
    assert_eq!(
        warnings(&events, "loud"),
        vec![format!(
            "output cut at 1 MiB: {dropped} bytes dropped (the `output` limit)"
        )]
    );
    let EventKind::TaskFinished { status, result, .. } = finished(&events, "loud") else {
        unreachable!()
    };
    assert_eq!(*status, TaskStatus::Completed);
    let result = result.as_ref().expect("a result");
    assert_eq!(result["output_cut"]["limit_bytes"], 1024 * 1024);
    assert_eq!(result["output_cut"]["dropped_bytes"], dropped);
    // The end of stdout is kept for the result: its last JSON line still counts.
    assert_eq!(result["json"]["done"], true, "{result}");

    assert_eq!(output_of(&events, "after"), "after\n");
    let EventKind::TaskFinished { status, result, .. } = finished(&events, "after") else {
        unreachable!()
    };
    assert_eq!(*status, TaskStatus::Completed);
    assert!(result.as_ref().unwrap().get("output_cut").is_none());
}

#[tokio::test]
async fn a_wasi_plugin_writing_64_mib_of_stdout_is_cut_at_its_plugins_limit_and_its_result_kept() {
    let project = Project::new(
        r#"
version = 1

[defaults]
state_dir = "{state}"

[plugins.chaos]
path = "{chaos}"
limits.output = "1MiB"

[[pipelines.default.batches]]
id = "flood"

[[pipelines.default.batches.tasks]]
id = "loud"
type = "chaos"
config = { mode = "flood", bytes = 67108864 }

[[pipelines.default.batches.tasks]]
id = "after"
type = "exec"
config = { command = "echo after" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);

    let kept = output_of(&events, "loud");
    assert_eq!(kept.len(), 1024 * 1024);
    assert!(kept.starts_with("xxxx"));
    // 64 MiB in 10 KB chunks would be 6,700 events; 1 MiB is about a hundred.
    let chunks = output_events(&events, "loud");
    assert!((103..=300).contains(&chunks), "{chunks} chunks");
    let dropped = 64 * 1024 * 1024 - 1024 * 1024;
    assert_eq!(
        warnings(&events, "loud"),
        vec![format!(
            "output cut at 1 MiB: {dropped} bytes dropped (the `output` limit)"
        )]
    );
    let EventKind::TaskFinished { status, result, .. } = finished(&events, "loud") else {
        unreachable!()
    };
    assert_eq!(*status, TaskStatus::Completed);
    let result = result.as_ref().expect("a result");
    assert_eq!(result["written"], 64 * 1024 * 1024, "{result}");
    assert_eq!(result["output_cut"]["dropped_bytes"], dropped, "{result}");
    assert_eq!(output_of(&events, "after"), "after\n");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test]
async fn an_agent_command_flooding_its_terminal_is_cut_at_its_limit_and_its_stream_still_read() {
    let fake = repo().join("examples/fake-agents");
    let mut transcript = String::new();
    for i in 0..300 {
        transcript.push_str(&format!("noise {i:03} {}\n", "z".repeat(1000)));
    }
    transcript.push_str(&std::fs::read_to_string(fake.join("transcripts/claude.jsonl")).unwrap());
    let project = Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = \"{{state}}\"\n[agents.a]\nadapter = \"claude\"\ncommand = \"{}\"\noutput = \"64KiB\"\nenv = {{ FAKE_AGENT_TRANSCRIPT = \"transcript.jsonl\" }}\n",
        fake.join("claude").display()
    ));
    project.file("transcript.jsonl", &transcript);
    let runner = project.runner().await;
    let mut events = runner.bus().subscribe();
    let handle = runner
        .agents()
        .submit(CommandRequest {
            agent: "a".into(),
            prompt: "hello".into(),
            priority: Priority::Normal,
            resume_session: None,
            run_id: None,
            task_id: None,
            working_dir: Some(project.dir.path().to_path_buf()),
            timeout: None,
            budget: Default::default(),
            run_budget: None,
        })
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), handle.done)
        .await
        .expect("the command ends within a minute")
        .unwrap();
    assert_eq!(
        result.status,
        CommandStatus::Completed,
        "{:?}",
        result.error
    );
    // The transcript's own lines came after the noise: they were still parsed.
    assert_eq!(
        result.session_id.as_deref(),
        Some("65206fb7-610c-417e-89cd-7590603606a1")
    );
    let cut = result.output_cut.expect("the output was cut");
    assert_eq!(cut.limit, 64 * 1024);
    assert_eq!(cut.dropped, transcript.len() as u64 - 64 * 1024);
    assert_eq!(
        result.to_json("a")["output_cut"]["dropped_bytes"],
        cut.dropped
    );

    let mut shown = 0;
    let mut markers = Vec::new();
    while let Ok(event) = events.try_recv() {
        match &event.kind {
            EventKind::TerminalOutput { data, .. } => shown += data.len(),
            EventKind::Log {
                level: LogLevel::Warn,
                message,
                ..
            } if message.contains("output cut") => markers.push(message.clone()),
            _ => {}
        }
    }
    assert_eq!(shown, 64 * 1024);
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(markers[0].contains("output cut at 64 KiB"), "{markers:?}");
}

/// Runs the `runner` binary in `dir`; returns its stdout, failing on a
/// non-zero exit.
fn runner_in(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(crate::pipelines::runner_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "runner {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_history_stays_under_its_max_size_over_several_runs_and_keeps_the_newest_runs_logs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // The shared compile cache: nothing compiles again.
    let cache = Path::new(&shared_state_dir()).join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&cache, state.join("cache")).unwrap();
    let toml = format!(
        r#"version = 1

[defaults]
state_dir = "{}"
output = "256KiB"

[history]
max_size = "4MiB"

[[pipelines.default.batches]]
id = "noisy"

[[pipelines.default.batches.tasks]]
id = "one"
type = "exec"
config = {{ command = "yes one | head -c 1000000" }}

[[pipelines.default.batches.tasks]]
id = "two"
type = "exec"
config = {{ command = "yes two | head -c 1000000" }}
"#,
        state.display()
    );
    std::fs::write(dir.path().join("runner.toml"), toml).unwrap();
    let db = state.join("history.db");
    let max = 4 * 1024 * 1024;
    for run in 0..6 {
        runner_in(dir.path(), &["run"]);
        // The file and its write-ahead log, as they are on disk.
        let file = std::fs::metadata(&db).unwrap().len();
        let wal = std::fs::metadata(state.join("history.db-wal")).map_or(0, |m| m.len());
        assert!(
            file + wal <= max,
            "run {run}: history.db is {file} bytes and its WAL {wal}, over their 4 MiB"
        );
    }

    // Every run is still listed; the newest one has all its output and the
    // marker of each cut; the oldest lost theirs.
    let runs: serde_json::Value =
        serde_json::from_str(&runner_in(dir.path(), &["history", "--json"])).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{runs:?}");
    let newest = runner_in(dir.path(), &["logs", "last"]);
    assert_eq!(newest.matches("one\n").count(), 256 * 1024 / 4);
    assert_eq!(newest.matches("two\n").count(), 256 * 1024 / 4);
    assert_eq!(
        newest.matches("output cut at 256 KiB").count(),
        2,
        "`runner logs` says each task's output was cut"
    );
    let shown = runner_in(dir.path(), &["show", "last"]);
    assert_eq!(
        shown
            .matches(&format!(
                "output cut: {} bytes dropped",
                1_000_000 - 256 * 1024
            ))
            .count(),
        2,
        "{shown}"
    );
    let oldest = runs.last().unwrap()["id"].as_str().unwrap().to_string();
    let old_logs = runner_in(dir.path(), &["logs", &oldest]);
    assert!(
        old_logs.len() < newest.len() / 2,
        "the oldest run's logs were pruned first ({} bytes left)",
        old_logs.len()
    );
}

#[test]
fn a_tasks_output_limit_comes_from_its_plugin_or_agent_then_from_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.toml");
    let text = r#"version = 1

[defaults]
output = "2MiB"

[plugins.words]
builtin = "wordcount"
limits.output = "64KiB"

[agents.quiet]
adapter = "claude"
output = "8KiB"

[history]
max_size = "500MiB"

[[pipelines.default.batches]]
id = "b"

[[pipelines.default.batches.tasks]]
id = "shell"
type = "exec"
config = { command = "true" }

[[pipelines.default.batches.tasks]]
id = "count"
type = "words"

[[pipelines.default.batches.tasks]]
id = "ask"
type = "agent"
config = { agent = "quiet", prompt = "hi" }
"#;
    let config = runner::config::Config::parse(&path, text).unwrap_or_else(|err| panic!("{err}"));
    let limits: Vec<(&str, u64)> = config.pipelines["default"].batches[0]
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.output))
        .collect();
    assert_eq!(
        limits,
        vec![("shell", 2 << 20), ("count", 64 << 10), ("ask", 8 << 10)]
    );
    assert_eq!(config.agents["quiet"].output, 8 << 10);
    assert_eq!(
        runner::store::Retention::from(&config.history).max_bytes,
        Some(500 << 20)
    );

    let plain = runner::config::Config::parse(
        &path,
        "version = 1\n[[pipelines.default.batches]]\nid = \"b\"\n[[pipelines.default.batches.tasks]]\nid = \"t\"\ntype = \"exec\"\nconfig = { command = \"true\" }\n",
    )
    .unwrap();
    assert_eq!(plain.defaults.output, 4 << 20, "4 MiB unless configured");
    assert_eq!(
        plain.pipelines["default"].batches[0].tasks[0].output,
        4 << 20
    );
    assert_eq!(
        runner::store::Retention::from(&plain.history).max_bytes,
        None
    );
}
