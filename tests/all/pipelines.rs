//! Pipelines end to end: ordering, failure, priorities, batch types,
//! outputs, timeouts, abort, output chunks, event numbering and the
//! `runner run --json` command line.

use crate::support::{Project, finished, output_of, shared_state_dir};
use protocol::{BatchStatus, Event, EventKind, MAX_CHUNK_BYTES, Priority, RunStatus, TaskStatus};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The top of every `runner.toml` here: the shared compile cache and the chaos block.
const HEADER: &str = r#"
version = 1

[defaults]
state_dir = "{state}"
concurrency = 4

[plugins.chaos]
path = "{chaos}"
"#;

fn project(pipelines: &str) -> Project {
    Project::new(&format!("{HEADER}\n{pipelines}"))
}

/// The sequence number of `task`'s `task_started`, if it started.
fn started_seq(events: &[Arc<Event>], task: &str) -> Option<u64> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::TaskStarted { task_id, .. } if task_id == task => Some(e.seq),
        _ => None,
    })
}

fn finished_seq(events: &[Arc<Event>], task: &str) -> u64 {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TaskFinished { task_id, .. } if task_id == task => Some(e.seq),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no task_finished for `{task}`"))
}

/// Task ids in the order they started.
fn start_order(events: &[Arc<Event>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskStarted { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn status_of(events: &[Arc<Event>], task: &str) -> TaskStatus {
    match finished(events, task) {
        EventKind::TaskFinished { status, .. } => *status,
        _ => unreachable!(),
    }
}

pub(crate) fn error_of(events: &[Arc<Event>], task: &str) -> String {
    match finished(events, task) {
        EventKind::TaskFinished { error, .. } => error.clone().unwrap_or_default(),
        _ => unreachable!(),
    }
}

pub(crate) fn result_of(events: &[Arc<Event>], task: &str) -> Value {
    match finished(events, task) {
        EventKind::TaskFinished { result, .. } => result.clone().unwrap_or(Value::Null),
        _ => unreachable!(),
    }
}

/// The last `batch_status` of `batch`: its status and error.
fn final_batch(events: &[Arc<Event>], batch: &str) -> (BatchStatus, Option<String>) {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::BatchStatus {
                batch_id,
                status,
                error,
                ..
            } if batch_id == batch => Some((*status, error.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no batch_status for `{batch}`"))
}

fn report_batches(batches: &[(String, BatchStatus)]) -> Vec<(&str, BatchStatus)> {
    batches.iter().map(|(id, s)| (id.as_str(), *s)).collect()
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state is the field after the `(comm)`, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
    }
}

/// Waits (boundedly) until none of `pids` is alive; returns the survivors.
pub(crate) async fn survivors(pids: &[u32]) -> Vec<u32> {
    for _ in 0..100 {
        if pids.iter().all(|&p| !alive(p)) {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

fn read_pids(path: &Path) -> Vec<u32> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.split_whitespace()
        .map(|w| w.parse().expect("a pid"))
        .collect()
}

#[tokio::test]
async fn starts_a_batch_only_after_the_batches_it_depends_on_have_finished() {
    // `second` is declared first, so declaration order alone would run it first.
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "second"
depends_on = ["first"]
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "b1"
type = "chaos"

[[pipelines.default.batches.tasks]]
id = "b2"
type = "exec"
config = { command = "echo b2" }

[[pipelines.default.batches]]
id = "first"
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "a1"
type = "exec"
config = { command = "sleep 0.3" }

[[pipelines.default.batches.tasks]]
id = "a2"
type = "chaos"
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let last_of_first = finished_seq(&events, "a1").max(finished_seq(&events, "a2"));
    for task in ["b1", "b2"] {
        let started =
            started_seq(&events, task).unwrap_or_else(|| panic!("`{task}` never started"));
        assert!(
            started > last_of_first,
            "`{task}` started (seq {started}) before batch `first` finished"
        );
    }
    assert_eq!(
        report_batches(&report.batches),
        vec![
            ("first", BatchStatus::Completed),
            ("second", BatchStatus::Completed)
        ]
    );
}

#[tokio::test]
async fn a_failed_batch_fails_its_dependents_without_running_them_while_independent_batches_complete()
 {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "build"

[[pipelines.default.batches.tasks]]
id = "compile"
type = "chaos"
config = { mode = "fail", message = "the compiler is on fire" }

[[pipelines.default.batches]]
id = "deploy"
depends_on = ["build"]

[[pipelines.default.batches.tasks]]
id = "ship"
type = "exec"
config = { command = "echo shipping" }

[[pipelines.default.batches]]
id = "docs"

[[pipelines.default.batches.tasks]]
id = "write-docs"
type = "exec"
config = { command = "echo docs" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        report_batches(&report.batches),
        vec![
            ("build", BatchStatus::Failed),
            ("deploy", BatchStatus::Failed),
            ("docs", BatchStatus::Completed)
        ]
    );
    assert_eq!(error_of(&events, "compile"), "the compiler is on fire");
    let (_, build_error) = final_batch(&events, "build");
    assert!(build_error.unwrap().contains("the compiler is on fire"));
    let (_, deploy_error) = final_batch(&events, "deploy");
    let deploy_error = deploy_error.expect("a failed batch carries an error");
    assert!(
        deploy_error.contains("`build`"),
        "the error names the failed dependency: {deploy_error}"
    );
    assert_eq!(
        started_seq(&events, "ship"),
        None,
        "a task of a failed dependent started"
    );
    assert!(
        !events.iter().any(
            |e| matches!(&e.kind, EventKind::TaskFinished { task_id, .. } if task_id == "ship")
        )
    );
    assert_eq!(output_of(&events, "write-docs"), "docs\n");
    let error = report.error.expect("a failed run says why");
    assert!(error.contains("build"), "{error}");
}

#[tokio::test]
async fn a_single_slot_is_handed_out_high_before_normal_before_low_and_in_order_within_a_priority()
{
    // One slot: whichever task takes it first holds it while the others
    // queue; they must then start by priority, in declaration order within one.
    let declared = [
        ("low1", Priority::Low),
        ("normal1", Priority::Normal),
        ("high1", Priority::High),
        ("low2", Priority::Low),
        ("high2", Priority::High),
        ("normal2", Priority::Normal),
    ];
    let mut toml = String::from(
        r#"
version = 1

[defaults]
state_dir = "{state}"
concurrency = 1

[[pipelines.default.batches]]
id = "queue"
type = "parallel"
"#,
    );
    for (id, priority) in declared {
        toml.push_str(&format!(
            "\n[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = \"sleep 0.2\" }}\npriority = \"{}\"\n",
            priority.as_str()
        ));
    }
    let (report, events) = Project::new(&toml).run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let order = start_order(&events);
    assert_eq!(order.len(), declared.len());
    let first = &order[0];
    let mut expected: Vec<(usize, &str, Priority)> = declared
        .iter()
        .enumerate()
        .filter(|(_, (id, _))| id != first)
        .map(|(i, (id, p))| (i, *id, *p))
        .collect();
    expected.sort_by_key(|(i, _, p)| (std::cmp::Reverse(*p), *i));
    let expected: Vec<&str> = expected.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(
        &order[1..],
        expected.as_slice(),
        "start order after `{first}` took the slot"
    );
    // With one slot, no two tasks overlap.
    for pair in order.windows(2) {
        assert!(finished_seq(&events, &pair[0]) < started_seq(&events, &pair[1]).unwrap());
    }
}

#[tokio::test]
async fn a_sequential_batch_skips_the_tasks_after_the_first_failure() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "steps"

[[pipelines.default.batches.tasks]]
id = "one"
type = "chaos"

[[pipelines.default.batches.tasks]]
id = "two"
type = "chaos"
config = { mode = "fail", message = "step two broke" }

[[pipelines.default.batches.tasks]]
id = "three"
type = "exec"
config = { command = "echo never" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&events, "one"), TaskStatus::Completed);
    assert_eq!(status_of(&events, "two"), TaskStatus::Failed);
    assert_eq!(status_of(&events, "three"), TaskStatus::Skipped);
    assert_eq!(started_seq(&events, "three"), None);
    assert!(
        error_of(&events, "three").contains("earlier task"),
        "{}",
        error_of(&events, "three")
    );
    let (status, error) = final_batch(&events, "steps");
    assert_eq!(status, BatchStatus::Failed);
    assert_eq!(error.unwrap(), "task `two` failed: step two broke");
}

#[tokio::test]
async fn a_parallel_batch_completes_with_as_many_failures_as_it_allows_and_fails_with_more() {
    let project = project(
        r#"
[[pipelines.tolerant.batches]]
id = "checks"
type = "parallel"
with = { allow_failures = 1 }

[[pipelines.tolerant.batches.tasks]]
id = "ok1"
type = "chaos"

[[pipelines.tolerant.batches.tasks]]
id = "flaky"
type = "exec"
config = { command = "exit 3" }

[[pipelines.tolerant.batches.tasks]]
id = "ok2"
type = "chaos"

[[pipelines.strict.batches]]
id = "checks"
type = "parallel"
with = { allow_failures = 1 }

[[pipelines.strict.batches.tasks]]
id = "bad1"
type = "chaos"
config = { mode = "fail" }

[[pipelines.strict.batches.tasks]]
id = "bad2"
type = "exec"
config = { command = "exit 4" }

[[pipelines.strict.batches.tasks]]
id = "fine"
type = "chaos"
"#,
    );
    let (report, events) = project.run("tolerant").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    assert_eq!(status_of(&events, "flaky"), TaskStatus::Failed);
    assert!(
        error_of(&events, "flaky").contains("exited with code 3"),
        "{}",
        error_of(&events, "flaky")
    );

    let (report, events) = project.run("strict").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        status_of(&events, "fine"),
        TaskStatus::Completed,
        "a parallel batch runs every task"
    );
    let (_, error) = final_batch(&events, "checks");
    let error = error.unwrap();
    assert!(
        error.contains("2 of 3") && error.contains("`bad1`") && error.contains("`bad2`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_matrix_batch_runs_every_task_once_per_value_with_the_value_substituted() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "targets"
type = "matrix"
with = { parameter = "target", values = ["linux", "wasi", "macos"] }

[[pipelines.default.batches.tasks]]
id = "build"
type = "exec"
config = { command = "echo building {{matrix.target}}" }

[[pipelines.default.batches.tasks]]
id = "describe"
type = "chaos"
config = { mode = "echo", label = "for {{matrix.target}}" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let mut started = start_order(&events);
    started.sort();
    assert_eq!(
        started,
        [
            "build[linux]",
            "build[macos]",
            "build[wasi]",
            "describe[linux]",
            "describe[macos]",
            "describe[wasi]"
        ]
    );
    for target in ["linux", "wasi", "macos"] {
        assert_eq!(
            output_of(&events, &format!("build[{target}]")),
            format!("building {target}\n")
        );
        let echoed = result_of(&events, &format!("describe[{target}]"));
        assert_eq!(echoed["config"]["label"], format!("for {target}"));
        assert_eq!(echoed["config"]["matrix"]["target"], target);
    }
}

#[tokio::test]
async fn a_later_task_renders_the_outputs_of_earlier_tasks_into_a_granted_file() {
    let project = project(
        r#"
[plugins.template]
builtin = "template"
capabilities.dirs = [{ host = "out", guest = "/out", access = "read-write" }]

[[pipelines.default.batches]]
id = "measure"

[[pipelines.default.batches.tasks]]
id = "count"
type = "exec"
config = { command = "echo counting; echo '{\"files\": 3, \"words\": 120}'" }

[[pipelines.default.batches]]
id = "report"
depends_on = ["measure"]

[[pipelines.default.batches.tasks]]
id = "write"
type = "template"
config = { path = "/out/report.txt", template = "{{outputs.count.json.files}} files, {{outputs.count.json.words}} words (exit {{outputs.count.exit_code}})" }
"#,
    );
    project.file("out/.keep", "");
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let expected = "3 files, 120 words (exit 0)";
    assert_eq!(result_of(&events, "write")["text"], expected);
    let written = std::fs::read_to_string(project.dir.path().join("out/report.txt")).unwrap();
    assert_eq!(written, expected);
}

#[tokio::test]
async fn times_out_a_sleeping_exec_and_leaves_none_of_its_processes_behind() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "slow"
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "sleeper"
type = "exec"
timeout = "1s"
config = { command = "echo $$ >> pids; sh -c 'sleep 300 & echo $! >> pids; sleep 300 & echo $! >> pids; wait' & echo $! >> pids; wait" }

[[pipelines.default.batches]]
id = "after"
depends_on = []

[[pipelines.default.batches.tasks]]
id = "quick"
type = "exec"
config = { command = "echo still here" }

[[pipelines.default.batches.tasks]]
id = "yardstick"
type = "exec"
config = { command = "sleep 5" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(status_of(&events, "sleeper"), TaskStatus::Failed);
    let error = error_of(&events, "sleeper");
    assert!(error.contains("timed out after 1s"), "{error}");
    assert_eq!(status_of(&events, "quick"), TaskStatus::Completed);
    // Its 300 s sleeps did not hold the task up: it was reported while a
    // 5 s sleep that runs beside it was still going.
    assert_eq!(status_of(&events, "yardstick"), TaskStatus::Completed);
    assert!(started_seq(&events, "yardstick").unwrap() < finished_seq(&events, "sleeper"));
    assert!(
        finished_seq(&events, "sleeper") < finished_seq(&events, "yardstick"),
        "the timed-out task was reported only after a 5 s sleep beside it ended"
    );
    let pids = read_pids(&project.dir.path().join("pids"));
    assert_eq!(
        pids.len(),
        4,
        "the command records both shells and both sleeps: {pids:?}"
    );
    assert_eq!(
        survivors(&pids).await,
        Vec::<u32>::new(),
        "processes outlived their timed-out task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_run_interrupts_running_tasks_fails_pending_batches_and_ends_aborted() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "work"
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "sleeper"
type = "exec"
timeout = "2m"
config = { command = "sleep 300 & echo $! > pid; wait" }

[[pipelines.default.batches.tasks]]
id = "spinner"
type = "chaos"
timeout = "2m"
config = { mode = "spin" }

[[pipelines.default.batches]]
id = "later"
depends_on = ["work"]

[[pipelines.default.batches.tasks]]
id = "never"
type = "chaos"
"#,
    );
    let runner = project.runner().await;
    let mut rx = runner.bus().subscribe();
    let cancel = CancellationToken::new();
    let pid_file = project.dir.path().join("pid");
    let watcher = {
        let (cancel, pid_file) = (cancel.clone(), pid_file.clone());
        tokio::spawn(async move {
            let mut started = HashSet::new();
            let mut events = Vec::new();
            // The last event seen before the abort.
            let mut abort_seq = None;
            while let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_secs(120), rx.recv()).await
            {
                if let EventKind::TaskStarted { task_id, .. } = &event.kind {
                    started.insert(task_id.clone());
                    // Abort once both run and the exec has recorded its child.
                    if started.len() == 2 {
                        for _ in 0..100 {
                            if pid_file.is_file() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        abort_seq = Some(event.seq);
                        cancel.cancel();
                    }
                }
                let done = matches!(&event.kind, EventKind::RunStatus { status, .. } if *status != RunStatus::Running);
                events.push(event);
                if done {
                    break;
                }
            }
            (events, abort_seq)
        })
    };
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        runner.run("default", cancel.clone()),
    )
    .await
    .expect("the run ends once aborted");
    let (events, abort_seq) = watcher.await.unwrap();
    let abort_seq = abort_seq.expect("the test never saw both tasks start");
    assert_eq!(report.status, RunStatus::Aborted);
    // Both ran at once (the spinning component did not hold the exec back),
    // and both ended because of the abort, not by running out their 2 m
    // timeouts, which would have failed them instead of interrupting them.
    for task in ["sleeper", "spinner"] {
        assert!(started_seq(&events, task).unwrap() <= abort_seq, "{task}");
        assert!(abort_seq < finished_seq(&events, task), "{task}");
        assert_eq!(status_of(&events, task), TaskStatus::Interrupted, "{task}");
    }
    assert_eq!(started_seq(&events, "never"), None);
    assert_eq!(
        report_batches(&report.batches),
        vec![
            ("work", BatchStatus::Failed),
            ("later", BatchStatus::Failed)
        ]
    );
    let (_, later_error) = final_batch(&events, "later");
    assert!(later_error.unwrap().contains("aborted"));
    let pid = read_pids(&pid_file);
    assert_eq!(
        survivors(&pid).await,
        Vec::<u32>::new(),
        "the exec's child outlived the abort"
    );
}

#[tokio::test]
async fn large_output_arrives_in_numbered_chunks_of_at_most_10_kb() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "noisy"

[[pipelines.default.batches.tasks]]
id = "shout"
type = "exec"
config = { command = "head -c 51200 /dev/zero | tr '\\0' x; echo; echo done >&2" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let chunks: Vec<(u64, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TerminalOutput {
                task_id: Some(t),
                sequence,
                data,
                ..
            } if t == "shout" => Some((*sequence, data.as_str())),
            _ => None,
        })
        .collect();
    assert!(chunks.len() >= 6, "51 KB in {} chunks", chunks.len());
    let sequences: Vec<u64> = chunks.iter().map(|c| c.0).collect();
    assert_eq!(
        sequences,
        (0..chunks.len() as u64).collect::<Vec<_>>(),
        "numbered 0, 1, 2, ... across both streams"
    );
    for (sequence, data) in &chunks {
        assert!(
            data.len() <= MAX_CHUNK_BYTES,
            "chunk {sequence} holds {} bytes",
            data.len()
        );
    }
    let stdout: usize = chunks.iter().map(|c| c.1.matches('x').count()).sum();
    assert_eq!(stdout, 51200);
    assert!(output_of(&events, "shout").contains("done\n"));
}

/// `2026-11-22T10:00:00.123Z`: RFC 3339, UTC, milliseconds.
pub(crate) fn is_rfc3339_millis_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 24
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

#[tokio::test]
async fn every_event_has_the_next_sequence_number_and_an_rfc_3339_time() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "mixed"
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "talk"
type = "chaos"
config = { mode = "log" }

[[pipelines.default.batches.tasks]]
id = "echo"
type = "exec"
config = { command = "echo one; echo two >&2" }

[[pipelines.default.batches.tasks]]
id = "broken"
type = "chaos"
config = { mode = "fail" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(events.len() > 10, "only {} events", events.len());
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "a gap or a repeat after seq {}",
            pair[0].seq
        );
    }
    for event in &events {
        let json = serde_json::to_value(event.as_ref()).unwrap();
        let time = json["time"].as_str().expect("a time field");
        assert!(
            is_rfc3339_millis_utc(time),
            "event {} has time {time:?}",
            event.seq
        );
        let back: Event = serde_json::from_value(json.clone()).expect("the JSON form reads back");
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }
    assert!(matches!(
        &events[0].kind,
        EventKind::RunStatus {
            status: RunStatus::Running,
            ..
        }
    ));
    assert!(matches!(
        &events.last().unwrap().kind,
        EventKind::RunStatus {
            status: RunStatus::Failed,
            ..
        }
    ));
    // The plugin's logs, progress and both output streams became the task's events.
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::Log { task_id: Some(t), message, .. } if t == "talk" && message == "hello from chaos")));
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::TaskProgress { task_id, display_text, percent: Some(50), .. } if task_id == "talk" && display_text == "logging")));
    let talk = output_of(&events, "talk");
    assert!(
        talk.contains("chaos says hi on stdout") && talk.contains("chaos says hi on stderr"),
        "{talk}"
    );
}

/// The `runner` command of this build (`tests/Cargo.toml` builds it from
/// the host's `main.rs` as `runner-under-test`).
pub(crate) fn runner_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runner-under-test"))
}

/// Runs the real binary in `dir` with `args` and extra environment; returns
/// (exit code, stdout, stderr).
pub(crate) async fn run_binary(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(runner_binary());
    command.args(args).current_dir(dir).kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    // A bound, not a measurement: the first compile of an 18 MB Python
    // component takes minutes on a loaded 2-core machine.
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("runner finished within 5 minutes")
        .expect("runner started");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code().expect("runner exited, not killed"),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test]
async fn runner_run_json_prints_one_event_per_line_and_exits_0_1_or_2() {
    let project = project(
        r#"
[[pipelines.good.batches]]
id = "fine"

[[pipelines.good.batches.tasks]]
id = "hello"
type = "exec"
config = { command = "echo hello" }

[[pipelines.bad.batches]]
id = "broken"

[[pipelines.bad.batches.tasks]]
id = "fail"
type = "chaos"
config = { mode = "fail" }
"#,
    );
    let (code, stdout, stderr) =
        run_binary(project.dir.path(), &["run", "--json", "good"], &[]).await;
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not one JSON event: {line:?}: {err}"))
        })
        .collect();
    assert!(events.len() >= 6, "{stdout}");
    // Numbering goes on from the history of earlier runs, with no gap.
    let first = events[0]["seq"].as_u64().expect("a numbered event");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], first + i as u64, "{event}");
        assert!(
            is_rfc3339_millis_utc(event["time"].as_str().unwrap_or("")),
            "{event}"
        );
        assert!(event["type"].is_string(), "{event}");
        serde_json::from_value::<Event>(event.clone())
            .unwrap_or_else(|err| panic!("{event}: {err}"));
    }
    assert_eq!(events[0]["type"], "run_status");
    assert_eq!(events.last().unwrap()["status"], "completed");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "terminal_output" && e["data"] == "hello\n")
    );

    let (code, stdout, _) = run_binary(project.dir.path(), &["run", "--json", "bad"], &[]).await;
    assert_eq!(code, 1, "{stdout}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "failed");

    let broken = tempfile::tempdir().unwrap();
    let toml = format!(
        "version = 1\n[defaults]\nstate_dir = {:?}\ntimeout = \"soon\"\n",
        shared_state_dir()
    );
    std::fs::write(broken.path().join("runner.toml"), toml).unwrap();
    let (code, stdout, stderr) = run_binary(broken.path(), &["run", "--json"], &[]).await;
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stdout.is_empty(), "nothing ran, nothing printed: {stdout}");
    assert!(
        stderr.contains("runner.toml:4:11"),
        "the error names file:line:column: {stderr}"
    );
    assert!(
        stderr.contains("`defaults.timeout`"),
        "the error names the key: {stderr}"
    );
}

#[tokio::test]
async fn a_command_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "stubborn"

[[pipelines.default.batches.tasks]]
id = "ignore-term"
type = "exec"
timeout = "1s"
config = { command = "trap '' TERM; echo $$ > pid; sleep 300 & echo $! >> pid; while true; do sleep 1; done" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        error_of(&events, "ignore-term").contains("timed out after 1s"),
        "{}",
        error_of(&events, "ignore-term")
    );
    let pids = read_pids(&project.dir.path().join("pid"));
    assert_eq!(pids.len(), 2);
    assert_eq!(
        survivors(&pids).await,
        Vec::<u32>::new(),
        "SIGKILL followed the ignored SIGTERM"
    );
}

#[tokio::test]
async fn ctrl_c_aborts_runner_run_which_reports_aborted_and_exits_130() {
    use tokio::io::AsyncBufReadExt;
    let project = project(
        r#"
[[pipelines.default.batches]]
id = "forever"

[[pipelines.default.batches.tasks]]
id = "spinner"
type = "chaos"
timeout = "2m"
config = { mode = "spin" }
"#,
    );
    let mut child = tokio::process::Command::new(runner_binary())
        .args(["run", "--json"])
        .current_dir(project.dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("runner starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read_all = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["type"] == "task_started" {
                let pid = child.id().expect("still running").to_string();
                let status = std::process::Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            seen.push(event);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("runner stopped within a minute of Ctrl-C");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let finished = seen
        .iter()
        .find(|e| e["type"] == "task_finished")
        .expect("the spinner finished");
    assert_eq!(finished["status"], "interrupted");
    let last = seen.last().unwrap();
    assert_eq!(
        (&last["type"], &last["status"]),
        (&Value::from("run_status"), &Value::from("aborted"))
    );
}

#[tokio::test]
async fn a_setup_script_past_the_timeout_fails_its_batch_saying_how_long_it_had() {
    let project = Project::new(
        r#"
version = 1

[defaults]
state_dir = "{state}"
timeout = "1s"

[git]
setup = "sleep 30"

[[pipelines.default.batches]]
id = "build"

[[pipelines.default.batches.tasks]]
id = "never"
type = "exec"
config = { command = "echo never" }
"#,
    );
    let (report, events) = project.run("default").await;
    assert_eq!(report.status, RunStatus::Failed);
    // The same words as a task or an agent command that runs too long.
    let said = "timed out after 1s; its process group was stopped";
    assert_eq!(
        final_batch(&events, "build"),
        (
            BatchStatus::Failed,
            Some(format!("the setup script failed: {said}"))
        )
    );
    let setup = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::ExecutionStatus {
            execution_id,
            status,
            error,
            ..
        } if execution_id == "setup:build" => Some((*status, error.clone())),
        _ => None,
    });
    assert_eq!(
        setup,
        Some((protocol::ExecutionState::Killed, Some(said.to_string())))
    );
    assert!(started_seq(&events, "never").is_none(), "no task ran");
}
