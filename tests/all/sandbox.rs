//! The sandbox: misbehaving plugins fail alone, and a plugin reaches only
//! the directories and variables it was granted.

use crate::pipelines::{error_of, result_of, run_binary, status_of};
use crate::support::{Project, output_of};
use protocol::{Event, EventKind, RunStatus, Stream, TaskStatus};
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::Runner;
use serde_json::Value;
use std::sync::Arc;

/// One chaos task in `mode` (with `task_extra` keys), then a task after it
/// in the same batch and an independent batch: both must still run.
async fn misbehave(mode: &str, plugin_extra: &str, task_extra: &str) -> Vec<Arc<Event>> {
    let project = Project::new(&format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"

[plugins.chaos]
path = "{{chaos}}"
{plugin_extra}

[[pipelines.default.batches]]
id = "risky"
with = {{ continue_on_failure = true }}

[[pipelines.default.batches.tasks]]
id = "culprit"
type = "chaos"
config = {{ mode = "{mode}" }}
{task_extra}

[[pipelines.default.batches.tasks]]
id = "next-task"
type = "chaos"
config = {{ mode = "echo" }}

[[pipelines.default.batches]]
id = "elsewhere"

[[pipelines.default.batches.tasks]]
id = "next-batch"
type = "exec"
config = {{ command = "echo fine" }}
"#
    ));
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&events, "culprit"), TaskStatus::Failed);
    assert_eq!(
        status_of(&events, "next-task"),
        TaskStatus::Completed,
        "the next task of the batch ran"
    );
    assert_eq!(
        status_of(&events, "next-batch"),
        TaskStatus::Completed,
        "the other batch ran"
    );
    assert_eq!(output_of(&events, "next-batch"), "fine\n");
    events
}

#[tokio::test]
async fn times_out_a_spinning_plugin_and_runs_the_next_block() {
    let events = misbehave("spin", "", r#"timeout = "1s""#).await;
    assert_eq!(
        error_of(&events, "culprit"),
        "plugin `chaos` timed out after 1s"
    );
}

#[tokio::test]
async fn a_plugin_that_allocates_past_its_memory_limit_fails_with_out_of_memory() {
    let events = misbehave("memory-bomb", r#"limits.memory = "32MiB""#, "").await;
    let error = error_of(&events, "culprit");
    assert!(
        error.starts_with("plugin `chaos` ran out of memory"),
        "{error}"
    );
    assert!(
        error.contains("its limit is 32 MiB") && error.contains("limits.memory"),
        "{error}"
    );
}

#[tokio::test]
async fn a_plugin_that_traps_fails_its_task_with_trapped() {
    let events = misbehave("trap", "", "").await;
    let error = error_of(&events, "culprit");
    assert!(error.starts_with("plugin `chaos` trapped"), "{error}");
    // The guest's panic message reaches the task's stderr.
    assert!(
        output_of(&events, "culprit").contains("chaos trapped on purpose"),
        "{}",
        output_of(&events, "culprit")
    );
}

#[tokio::test]
async fn a_plugin_that_recurses_forever_fails_its_task_alone() {
    let events = misbehave("stack-overflow", "", "").await;
    assert!(
        error_of(&events, "culprit").starts_with("plugin `chaos` "),
        "{}",
        error_of(&events, "culprit")
    );
}

#[tokio::test]
async fn a_plugin_that_recurses_forever_fails_with_overflowed_its_stack() {
    let events = misbehave("stack-overflow", "", "").await;
    assert_eq!(
        error_of(&events, "culprit"),
        "plugin `chaos` overflowed its stack"
    );
}

#[tokio::test]
async fn a_plugin_whose_stack_in_linear_memory_runs_out_fails_with_overflowed_its_stack() {
    // Rust keeps its frames in linear memory, at the bottom: running out
    // wraps the stack pointer below 0, an out-of-bounds access for wasm.
    let events = misbehave("stack-overflow-in-memory", "", "").await;
    assert_eq!(
        error_of(&events, "culprit"),
        "plugin `chaos` overflowed its stack (an out-of-bounds access below the stack region)"
    );
}

#[tokio::test]
async fn a_plugin_whose_zeroed_frames_run_out_of_stack_fails_with_possibly_a_stack_overflow() {
    // Clearing the frame that crosses address 0 is one `memory.fill`,
    // whose trap comes without an address: the recursion is the clue.
    let events = misbehave("stack-overflow-in-memory-zeroed", "", "").await;
    assert_eq!(
        error_of(&events, "culprit"),
        "plugin `chaos` trapped: wasm trap: out of bounds memory access (possibly a stack overflow)"
    );
}

#[tokio::test]
async fn a_plugin_that_reads_far_outside_its_memory_is_not_called_a_stack_overflow() {
    let events = misbehave("out-of-bounds", "", "").await;
    assert_eq!(
        error_of(&events, "culprit"),
        "plugin `chaos` trapped: wasm trap: out of bounds memory access"
    );
}

const PROBE: &str = r#"
version = 1

[defaults]
state_dir = "{state}"

[plugins.probe]
path = "{probe}"
capabilities.dirs = [
    { host = "granted", guest = "/granted" },
    { host = "shared", guest = "/shared", access = "read-write" },
]
"#;

fn script(id: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "\n[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"script\"\nconfig = {{ component = \"probe\", args = [{}] }}\n",
        args.join(", ")
    )
}

fn exit_code_of(events: &[Arc<Event>], task: &str) -> Option<i32> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::TaskFinished {
            task_id, exit_code, ..
        } if task_id == task => *exit_code,
        _ => None,
    })
}

/// The task's output on one stream.
fn stream_of(events: &[Arc<Event>], task: &str, wanted: Stream) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TerminalOutput {
                task_id: Some(t),
                stream,
                data,
                ..
            } if t == task && *stream == wanted => Some(data.as_str()),
            _ => None,
        })
        .collect()
}

fn stderr_of(events: &[Arc<Event>], task: &str) -> String {
    stream_of(events, task, Stream::Stderr)
}

#[tokio::test]
async fn a_script_reads_its_granted_directory_but_gets_an_error_for_anything_outside_it() {
    let mut toml =
        format!("{PROBE}\n[[pipelines.default.batches]]\nid = \"reads\"\ntype = \"parallel\"\n");
    toml.push_str(&script("inside", &["read", "/granted/hello.txt"]));
    toml.push_str(&script("system-file", &["read", "/etc/passwd"]));
    toml.push_str(&script("dot-dot", &["read", "/granted/../runner.toml"]));
    toml.push_str(&script(
        "secret-beside",
        &["read", "/granted/../secret.txt"],
    ));
    let project = Project::new(&toml);
    project.file("granted/hello.txt", "hello from the granted dir\n");
    project.file("shared/.keep", "");
    project.file("secret.txt", "the secret beside the granted dir\n");

    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&events, "inside"), TaskStatus::Completed);
    assert_eq!(output_of(&events, "inside"), "hello from the granted dir\n");
    for task in ["system-file", "dot-dot", "secret-beside"] {
        assert_eq!(
            status_of(&events, task),
            TaskStatus::Failed,
            "`{task}` read outside its directory"
        );
        // WASI 0.2 carries only success or failure, so the probe's exit 3 arrives as 1.
        assert_eq!(
            exit_code_of(&events, task),
            Some(1),
            "`{task}` exits with failure"
        );
        assert!(
            stderr_of(&events, task).starts_with("cannot read /"),
            "`{task}`: {}",
            stderr_of(&events, task)
        );
        assert_eq!(
            stream_of(&events, task, Stream::Stdout),
            "",
            "`{task}` printed what it should not have read"
        );
        assert_eq!(error_of(&events, task), "script `probe` exited with code 1");
    }
}

#[tokio::test]
async fn a_read_only_directory_cannot_be_written_and_a_read_write_one_can() {
    let mut toml =
        format!("{PROBE}\n[[pipelines.default.batches]]\nid = \"writes\"\ntype = \"parallel\"\n");
    toml.push_str(&script(
        "into-read-only",
        &["write", "/granted/new.txt", "nope"],
    ));
    toml.push_str(&script(
        "over-read-only",
        &["write", "/granted/hello.txt", "overwritten"],
    ));
    toml.push_str(&script(
        "into-read-write",
        &["write", "/shared/new.txt", "written by the probe"],
    ));
    let project = Project::new(&toml);
    let hello = project.file("granted/hello.txt", "original\n");
    project.file("shared/.keep", "");

    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    for task in ["into-read-only", "over-read-only"] {
        assert_eq!(
            status_of(&events, task),
            TaskStatus::Failed,
            "`{task}` wrote into a read-only dir"
        );
        assert!(
            stderr_of(&events, task).starts_with("cannot write /granted/"),
            "{}",
            stderr_of(&events, task)
        );
    }
    assert!(!project.dir.path().join("granted/new.txt").exists());
    assert_eq!(std::fs::read_to_string(hello).unwrap(), "original\n");
    assert_eq!(
        status_of(&events, "into-read-write"),
        TaskStatus::Completed,
        "{}",
        error_of(&events, "into-read-write")
    );
    let written = std::fs::read_to_string(project.dir.path().join("shared/new.txt")).unwrap();
    assert_eq!(written, "written by the probe");
}

/// `NAME=value` lines printed by `probe env`, as (name, value).
fn variables(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_script_sees_only_the_variables_it_was_granted() {
    let home = std::env::var("HOME").expect("the test process has HOME");
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test process has PATH"
    );
    let toml = r#"
version = 1

[defaults]
state_dir = "{state}"

[plugins.probe]
path = "{probe}"
capabilities.env = ["HOME", "RUNNER_TEST_SURELY_UNSET_VARIABLE"]
capabilities.vars = { MODE = "ci" }

[[pipelines.default.batches]]
id = "env"

[[pipelines.default.batches.tasks]]
id = "show"
type = "script"
config = { component = "probe", args = ["env"], env = { EXTRA = "from the task" } }
"#;
    let (report, events) = Project::new(toml).run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let mut seen = variables(&output_of(&events, "show"));
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("EXTRA".to_string(), "from the task".to_string()),
            ("HOME".to_string(), home),
            ("MODE".to_string(), "ci".to_string()),
        ],
        "granted variables only; PATH and the unset one stay out"
    );
}

#[tokio::test]
async fn a_secret_in_the_runners_environment_does_not_reach_a_script() {
    let project = Project::new(
        r#"
version = 1

[defaults]
state_dir = "{state}"

[plugins.probe]
path = "{probe}"
capabilities.env = ["RUNNER_TEST_PASSED", "RUNNER_TEST_ABSENT"]

[[pipelines.default.batches]]
id = "env"

[[pipelines.default.batches.tasks]]
id = "show"
type = "script"
config = { component = "probe", args = ["env"] }
"#,
    );
    let env = [
        ("RUNNER_TEST_SECRET", "hunter2"),
        ("RUNNER_TEST_PASSED", "visible"),
    ];
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run", "--json"], &env).await;
    assert_eq!(code, 0, "stderr: {stderr}");
    let output: String = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON event"))
        .filter(|e| e["type"] == "terminal_output" && e["task_id"] == "show")
        .map(|e| e["data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        variables(&output),
        vec![("RUNNER_TEST_PASSED".to_string(), "visible".to_string())]
    );
    assert!(
        !stdout.contains("hunter2"),
        "the secret leaked into the events"
    );
}

#[tokio::test]
async fn a_plugin_whose_sha256_does_not_match_is_refused_at_load_naming_the_plugin() {
    let project = Project::new(&format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"

[plugins.chaos]
path = "{{chaos}}"
sha256 = "{}"

[[pipelines.default.batches]]
id = "b"

[[pipelines.default.batches.tasks]]
id = "t"
type = "chaos"
"#,
        "0".repeat(64)
    ));
    let config = project.config();
    let err = Plugins::load(&config, None)
        .await
        .err()
        .expect("a wrong sha256 is refused")
        .to_string();
    assert!(err.starts_with("plugin `chaos` ("), "{err}");
    assert!(
        err.contains(&format!(
            "sha256 mismatch: runner.toml says {}",
            "0".repeat(64)
        )),
        "{err}"
    );
    assert!(
        err.contains("plugins.chaos.sha256"),
        "it says what to update: {err}"
    );
}

/// The sha256 of a file, from `sha256sum` (the tests crate has no hash dependency).
async fn sha256_of_file(path: &str) -> String {
    let output = tokio::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .await
        .expect("sha256sum runs");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

#[tokio::test]
async fn a_plugin_with_the_right_sha256_loads_and_runs() {
    let digest = sha256_of_file(&crate::support::plugin("chaos")).await;
    let project = Project::new(&format!(
        "version = 1\n[defaults]\nstate_dir = \"{{state}}\"\n[plugins.chaos]\npath = \"{{chaos}}\"\nsha256 = \"{digest}\"\n\
         [[pipelines.default.batches]]\nid = \"b\"\n[[pipelines.default.batches.tasks]]\nid = \"t\"\ntype = \"chaos\"\n"
    ));
    let (report, _) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
}

async fn world_error(toml: &str) -> String {
    let project = Project::new(toml);
    let config = project.config();
    let plugins = Arc::new(
        Plugins::load(&config, None)
            .await
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let err = Runner::new(config, plugins, EventBus::new(1))
        .err()
        .expect("the wrong world is refused");
    err.to_string()
        .replace(&project.dir.path().display().to_string(), "$DIR")
}

#[tokio::test]
async fn a_batch_type_used_as_a_task_type_is_refused_naming_the_plugin_and_its_world() {
    let err = world_error(
        r#"
version = 1
[defaults]
state_dir = "{state}"

[[pipelines.default.batches]]
id = "b"

[[pipelines.default.batches.tasks]]
id = "t"
type = "parallel"
"#,
    )
    .await;
    assert_eq!(
        err.lines().next().unwrap(),
        "$DIR/runner.toml:11:8: `pipelines.default.batches[0].tasks[0].type`: \
         plugin `parallel` is a batch-plugin, not a block type or a script"
    );
}

#[tokio::test]
async fn a_block_used_as_a_batch_type_is_refused_naming_the_plugin_and_its_world() {
    let err = world_error(
        r#"
version = 1
[defaults]
state_dir = "{state}"

[plugins.chaos]
path = "{chaos}"

[[pipelines.default.batches]]
id = "b"
type = "chaos"

[[pipelines.default.batches.tasks]]
id = "t"
type = "exec"
config = { command = "true" }
"#,
    )
    .await;
    assert_eq!(
        err.lines().next().unwrap(),
        "$DIR/runner.toml:11:8: `pipelines.default.batches[0].type`: plugin `chaos` is a block-plugin, not a batch type"
    );
}

#[tokio::test]
async fn a_block_returns_its_output_as_the_tasks_result() {
    let project = Project::new(
        r#"
version = 1
[defaults]
state_dir = "{state}"
[plugins.chaos]
path = "{chaos}"
[[pipelines.default.batches]]
id = "b"
[[pipelines.default.batches.tasks]]
id = "t"
type = "chaos"
config = { mode = "echo", n = 7 }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let result = result_of(&events, "t");
    assert_eq!(result["config"]["n"], 7);
    assert_eq!(result["input"]["task"]["id"], "t");
    assert_eq!(result["input"]["run"]["id"], report.run_id);
}
