//! Plugins in other languages: each example under `examples/plugins/` is
//! built by its real toolchain (into the target dir) and run through
//! `runner run`, which sees the same sandbox whatever the language.

use crate::pipelines::{error_of, result_of, run_binary, status_of};
use crate::support::{Project, output_of};
use crate::toolchains::{Lang, available, example, examples};
use protocol::{Activity, Event, EventKind, LogLevel, Stream, TaskStatus};
use serde_json::{Value, json};
use std::sync::Arc;

/// Runs `runner run --json` in `project` with `env`; (exit code, events, stderr).
pub(crate) async fn run_json(
    project: &Project,
    env: &[(&str, &str)],
) -> (i32, Vec<Arc<Event>>, String) {
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run", "--json"], env).await;
    let events = stdout
        .lines()
        .map(|line| {
            Arc::new(
                serde_json::from_str::<Event>(line)
                    .unwrap_or_else(|err| panic!("not an event ({err}): {line}\nstderr: {stderr}")),
            )
        })
        .collect();
    (code, events, stderr)
}

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

/// The `(level, message)` of every log line plugin `source` wrote for `task`.
fn logs_of(events: &[Arc<Event>], task: &str, source: &str) -> Vec<(LogLevel, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log {
                task_id: Some(t),
                source: s,
                level,
                message,
                ..
            } if t == task && s == source => Some((*level, message.clone())),
            _ => None,
        })
        .collect()
}

fn progress_of(events: &[Arc<Event>], task: &str) -> Vec<(String, Option<u8>)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskProgress {
                task_id,
                display_text,
                percent,
                ..
            } if task_id == task => Some((display_text.clone(), *percent)),
            _ => None,
        })
        .collect()
}

/// The block example of `lang` (`greet`): its output, log, progress and
/// its error for a config without `name`.
async fn block_example(lang: Lang, test: &str) {
    if !available(lang, test) {
        return;
    }
    let wasm = example(match lang {
        Lang::Rust => "rust/block",
        Lang::Python => "python/block",
        Lang::JavaScript => "javascript/block",
        Lang::C => "c/block",
    });
    let project = Project::new(&format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"

[plugins.greet]
path = "{}"

[[pipelines.default.batches]]
id = "before"

[[pipelines.default.batches.tasks]]
id = "first"
type = "exec"
config = {{ command = "echo first" }}

[[pipelines.default.batches]]
id = "greetings"
depends_on = ["before"]
with = {{ continue_on_failure = true }}

[[pipelines.default.batches.tasks]]
id = "hello"
type = "greet"
config = {{ name = "Ada" }}

[[pipelines.default.batches.tasks]]
id = "nameless"
type = "greet"
config = {{ name = "" }}
"#,
        wasm.display()
    ));
    let (code, events, stderr) = run_json(&project, &[]).await;
    assert_eq!(code, 1, "one task fails on purpose; stderr: {stderr}");
    assert_eq!(
        status_of(&events, "hello"),
        TaskStatus::Completed,
        "{}",
        error_of(&events, "hello")
    );
    assert_eq!(
        result_of(&events, "hello"),
        json!({"greeting": "hello, Ada", "language": lang.name(), "upstream": ["first"]})
    );
    assert_eq!(
        logs_of(&events, "hello", "greet"),
        vec![(LogLevel::Info, "greeting Ada".to_string())]
    );
    assert_eq!(
        progress_of(&events, "hello"),
        vec![("greeting Ada".to_string(), Some(50))]
    );
    assert_eq!(status_of(&events, "nameless"), TaskStatus::Failed);
    assert_eq!(
        error_of(&events, "nameless"),
        "config needs `name` (a non-empty string)"
    );
}

#[tokio::test]
async fn a_rust_block_greets_logs_and_reports_progress_through_runner_run() {
    block_example(Lang::Rust, "a_rust_block").await;
}

#[tokio::test]
async fn a_python_block_greets_logs_and_reports_progress_through_runner_run() {
    block_example(Lang::Python, "a_python_block").await;
}

#[tokio::test]
async fn a_javascript_block_greets_logs_and_reports_progress_through_runner_run() {
    block_example(Lang::JavaScript, "a_javascript_block").await;
}

#[tokio::test]
async fn a_c_block_greets_logs_and_reports_progress_through_runner_run() {
    block_example(Lang::C, "a_c_block").await;
}

fn script_task(id: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "\n[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"script\"\nconfig = {{ component = \"linecount\", args = [{}] }}\n",
        args.join(", ")
    )
}

/// The script example of `lang` (`linecount`): it counts the lines of the
/// files in its granted directory, is refused a file outside it (the
/// system's, or one beside the directory), and sees only the variable it
/// was granted, not the secret in the runner's environment.
async fn script_example(lang: Lang, test: &str) {
    if !available(lang, test) {
        return;
    }
    let wasm = example(match lang {
        Lang::Rust => "rust/script",
        Lang::Python => "python/script",
        Lang::JavaScript => "javascript/script",
        Lang::C => "c/script",
    });
    let mut toml = format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"

[plugins.linecount]
path = "{}"
capabilities.dirs = [{{ host = "data", guest = "/data" }}]
capabilities.env = ["RUNNER_TEST_GRANTED"]

[[pipelines.default.batches]]
id = "count"
type = "parallel"
"#,
        wasm.display()
    );
    toml.push_str(&script_task("inside", &["/data/a.txt", "/data/b.txt"]));
    toml.push_str(&script_task("system-file", &["/etc/passwd"]));
    toml.push_str(&script_task("beside", &["/data/../secret.txt"]));
    let project = Project::new(&toml);
    project.file("data/a.txt", "one\ntwo\nthree\n");
    project.file("data/b.txt", "four\n");
    project.file("secret.txt", "the secret beside the granted dir\n");

    let env = [
        ("RUNNER_TEST_GRANTED", "yes"),
        ("RUNNER_TEST_SECRET", "hunter2"),
    ];
    let (code, events, stderr) = run_json(&project, &env).await;
    assert_eq!(code, 1, "two tasks are refused; stderr: {stderr}");
    assert_eq!(
        status_of(&events, "inside"),
        TaskStatus::Completed,
        "{}: {}",
        error_of(&events, "inside"),
        output_of(&events, "inside")
    );
    let stdout = stream_of(&events, "inside", Stream::Stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..2],
        ["/data/a.txt: 3 lines", "/data/b.txt: 1 lines"],
        "{stdout}"
    );
    let summary: Value = serde_json::from_str(lines[2]).expect("a JSON summary last");
    assert_eq!(
        summary,
        json!({"files": 2, "lines": 4, "env": ["RUNNER_TEST_GRANTED"]}),
        "only the granted variable reaches the script"
    );
    assert_eq!(
        result_of(&events, "inside")["json"],
        summary,
        "later tasks get the summary"
    );
    for (task, path) in [
        ("system-file", "/etc/passwd"),
        ("beside", "/data/../secret.txt"),
    ] {
        assert_eq!(
            status_of(&events, task),
            TaskStatus::Failed,
            "`{task}` read outside its directory"
        );
        let stderr = stream_of(&events, task, Stream::Stderr);
        assert!(
            stderr.starts_with(&format!("cannot read {path}: ")),
            "`{task}`: {stderr}"
        );
        assert_eq!(
            stream_of(&events, task, Stream::Stdout),
            "",
            "`{task}` printed what it should not have read"
        );
        assert_eq!(
            error_of(&events, task),
            "script `linecount` exited with code 1"
        );
    }
    let everything: String = events
        .iter()
        .map(|e| serde_json::to_string(&**e).unwrap())
        .collect();
    assert!(!everything.contains("hunter2"), "the secret leaked");
    assert!(!everything.contains("the secret beside"), "the file leaked");
}

#[tokio::test]
async fn a_rust_script_counts_lines_in_its_directory_and_is_denied_the_rest() {
    script_example(Lang::Rust, "a_rust_script").await;
}

#[tokio::test]
async fn a_python_script_is_denied_a_file_outside_its_directory_and_an_ungranted_variable() {
    script_example(Lang::Python, "a_python_script").await;
}

#[tokio::test]
async fn a_javascript_script_is_denied_a_file_outside_its_directory_and_an_ungranted_variable() {
    script_example(Lang::JavaScript, "a_javascript_script").await;
}

#[tokio::test]
async fn a_c_script_counts_lines_in_its_directory_and_is_denied_the_rest() {
    script_example(Lang::C, "a_c_script").await;
}

#[tokio::test]
async fn a_python_agent_adapter_drives_its_cli_resumes_the_session_and_reports_failure() {
    if !available(Lang::Python, "a_python_agent_adapter") {
        return;
    }
    let wasm = example("python/agent");
    let cli = examples().join("python/agent/fake-cli");
    let project = Project::new(&format!(
        r#"
version = 1

[defaults]
state_dir = "{{state}}"

[plugins.jsonl]
path = "{wasm}"

[agents.helper]
adapter = "jsonl"
command = "{cli}"
model = "small"

[agents.overloaded]
adapter = "jsonl"
command = "{cli}"
env = {{ FAKE_CLI_FAIL = "1" }}

[[pipelines.default.batches]]
id = "ask"
with = {{ continue_on_failure = true }}

[[pipelines.default.batches.tasks]]
id = "first"
type = "agent"
config = {{ agent = "helper", prompt = "write notes" }}

[[pipelines.default.batches.tasks]]
id = "again"
type = "agent"
config = {{ agent = "helper", prompt = "more", resume = "first" }}

[[pipelines.default.batches.tasks]]
id = "refused"
type = "agent"
config = {{ agent = "overloaded", prompt = "anything" }}
"#,
        wasm = wasm.display(),
        cli = cli.display()
    ));
    let (code, events, stderr) = run_json(&project, &[]).await;
    assert_eq!(code, 1, "one agent fails on purpose; stderr: {stderr}");
    assert_eq!(
        status_of(&events, "first"),
        TaskStatus::Completed,
        "{}",
        error_of(&events, "first")
    );
    let first = result_of(&events, "first");
    assert_eq!(first["session_id"], "session-1");
    assert_eq!(
        first["summary"],
        "done with: write notes (new session, model small)"
    );
    assert_eq!(first["tools_used"], json!(["Write"]));
    assert_eq!(first["files_changed"], json!(["notes.md"]));
    assert_eq!(first["usage"]["output_tokens"], 34);
    let again = result_of(&events, "again");
    assert_eq!(
        again["summary"], "done with: more (resumed session-1, model small)",
        "the follow-up resumed the first session"
    );
    let thinking = events.iter().any(|e| {
        matches!(&e.kind, EventKind::AgentActivity { task_id: Some(t), activity: Activity::Thinking { text }, .. } if t == "first" && text == "reading the prompt")
    });
    assert!(thinking, "the adapter's events reach the run");
    assert_eq!(status_of(&events, "refused"), TaskStatus::Failed);
    assert!(
        error_of(&events, "refused").contains("the model is overloaded"),
        "{}",
        error_of(&events, "refused")
    );
}
