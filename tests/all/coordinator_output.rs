//! `runner run --queue`: a dispatched task's output reaches the
//! coordinator while the task runs, under its own stream, as a local
//! task's does; the claim is said when a worker takes the task; output past
//! the limit is cut with the local marker; the queue keeps none of it after
//! the run. Skipped without PostgreSQL unless `RUNNER_REQUIRE_TOOLCHAINS=1`.

use crate::coordinator::{DEADLINE, project};
use crate::ids::history_db;
use crate::queue::{Db, fresh, url};
use runner::store::{LogKind, LogLine, Store};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::Instant;

/// A shell line that waits for `file` to exist, for two minutes at most.
pub(crate) fn wait_for_file(file: &Path) -> String {
    format!(
        "i=0; while [ ! -f {f} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done",
        f = file.display()
    )
}

/// A pipeline of one exec task `id` running `command`.
fn one_task(id: &str, command: &str) -> String {
    format!(
        "[[pipelines.default.batches]]\nid = \"only\"\n[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = {command:?} }}\n"
    )
}

/// `runner run --queue` in `project`, its stdout to `out`.
pub(crate) fn coordinate(db: &Db, project: &Path, out: &Path) -> Child {
    tokio::process::Command::new(crate::pipelines::runner_binary())
        .args(["run", "--queue", &url(), "--schema", &db.schema])
        .current_dir(project)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `out` holds `text` (fails past [`DEADLINE`], with `why`).
pub(crate) async fn until_printed(out: &Path, text: &str, why: impl Fn() -> String) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        if printed.contains(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator never printed {text:?}:\n{printed}\n{}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn exits(mut child: Child) -> Option<i32> {
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the coordinator ends")
        .unwrap()
        .code()
}

/// Every log line and output chunk of the last run's task `task`.
fn history(project: &Path, task: &str) -> Vec<LogLine> {
    let store = Store::open(history_db(project)).unwrap();
    let run = store.resolve_run("last").unwrap();
    store.logs(&run, Some(task), 0, usize::MAX).unwrap()
}

/// The output of `lines` on `stream`, joined.
fn output(lines: &[LogLine], stream: &str) -> String {
    lines
        .iter()
        .filter(|l| l.kind == LogKind::Output && l.stream.as_deref() == Some(stream))
        .map(|l| l.text.as_str())
        .collect()
}

/// The log messages of `lines`, in order.
fn messages(lines: &[LogLine]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.kind == LogKind::Log)
        .map(|l| l.text.clone())
        .collect()
}

/// The queue's id of the only task of `db`.
async fn only_task(db: &Db) -> i64 {
    let tasks = db.queue.tasks().await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    tasks[0].id
}

#[tokio::test]
async fn a_dispatched_tasks_output_arrives_while_it_runs_each_stream_on_its_own() {
    let Some(mut db) = fresh("coord_stream").await else {
        return;
    };
    let marks = tempfile::tempdir().unwrap();
    let go = marks.path().join("go");
    let command = format!(
        "echo first-line; echo on-stderr >&2; {}; echo after-go",
        wait_for_file(&go)
    );
    let project = project(&one_task("live", &command), 1);
    let worker = db.start("w1", "3s");
    let out: PathBuf = marks.path().join("run.out");
    let coordinator = coordinate(&db, project.path(), &out);

    // The task goes on only once its first line reached the coordinator.
    until_printed(&out, "first-line", || db.logs()).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    assert!(
        printed.contains(&format!("claimed by worker {worker} (attempt 1)")),
        "the claim is said when it happens: {printed}"
    );
    assert!(!printed.contains("after-go"), "{printed}");
    std::fs::write(&go, "").unwrap();
    let code = exits(coordinator).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(code, Some(0), "{printed}\n{}", db.logs());
    assert!(printed.contains("after-go"), "{printed}");

    let lines = history(project.path(), "live");
    assert_eq!(output(&lines, "stdout"), "first-line\nafter-go\n");
    assert_eq!(output(&lines, "stderr"), "on-stderr\n");
    let claimed: Vec<String> = messages(&lines)
        .into_iter()
        .filter(|m| m.starts_with("claimed by"))
        .collect();
    assert_eq!(
        claimed,
        [format!("claimed by worker {worker} (attempt 1)")],
        "one claim, said once"
    );
    // The claim came before the output, in the history as it happened.
    let claim_at = lines.iter().position(|l| l.text.starts_with("claimed by"));
    let first_out = lines.iter().position(|l| l.kind == LogKind::Output);
    assert!(claim_at < first_out, "{lines:#?}");
    let id = only_task(&db).await;
    assert_eq!(
        db.queue.output_rows(id).await.unwrap(),
        0,
        "nothing is left"
    );
}

#[tokio::test]
async fn output_past_the_limit_is_cut_as_a_local_run_cuts_it_and_the_queue_keeps_none() {
    let Some(mut db) = fresh("coord_cut").await else {
        return;
    };
    // 200,000 bytes of stdout under a 64 KiB limit.
    let command = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo done >&2";
    let pipeline = one_task("flood", command);
    let with_limit = |dir: &Path| {
        let toml = dir.join("runner.toml");
        let text = std::fs::read_to_string(&toml).unwrap().replace(
            "state_dir = \"state\"\n",
            "state_dir = \"state\"\noutput = \"64KiB\"\n",
        );
        std::fs::write(&toml, text).unwrap();
    };
    let here = project(&pipeline, 1);
    let there = project(&pipeline, 1);
    with_limit(here.path());
    with_limit(there.path());
    db.start("w1", "3s");

    let (code, stdout, stderr) = crate::pipelines::run_binary(here.path(), &["run"], &[]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = crate::coordinator::run_on(&db, there.path()).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", db.logs());

    let local = history(here.path(), "flood");
    let remote = history(there.path(), "flood");
    let passed = |lines: &[LogLine]| output(lines, "stdout").len() + output(lines, "stderr").len();
    assert_eq!(passed(&remote), 64 * 1024, "what passed is the limit");
    assert_eq!(passed(&remote), passed(&local));
    let cut = |lines: &[LogLine]| {
        messages(lines)
            .into_iter()
            .filter(|m| m.starts_with("output cut at"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cut(&remote),
        [format!(
            "output cut at 64 KiB: {} bytes dropped (the `output` limit)",
            200_000 + 1 + 5 - 64 * 1024
        )],
        "one marker, with what was dropped"
    );
    assert_eq!(cut(&remote), cut(&local), "the marker a local run gives");
    let id = only_task(&db).await;
    assert_eq!(
        db.queue.output_rows(id).await.unwrap(),
        0,
        "the queue keeps no output of the task after the run"
    );
}

#[tokio::test]
async fn a_retried_task_says_where_the_output_above_came_from_and_streams_its_second_attempt() {
    let Some(mut db) = fresh("coord_retry").await else {
        return;
    };
    let marks = tempfile::tempdir().unwrap();
    let never = marks.path().join("never");
    // The first attempt never ends by itself; the second does at once.
    let command = format!(
        "echo from-attempt-$RUNNER_TASK_ATTEMPT; if [ $RUNNER_TASK_ATTEMPT = 1 ]; then {}; fi; echo end-$RUNNER_TASK_ATTEMPT",
        wait_for_file(&never)
    );
    let project = project(&one_task("retried", &command), 1);
    let first = db.start("w1", "1s");
    let out = marks.path().join("run.out");
    let coordinator = coordinate(&db, project.path(), &out);
    until_printed(&out, "from-attempt-1", || db.logs()).await;

    // The first worker dies; the second takes the task once its lease expired.
    db.kill(&first);
    let second = db.start("w2", "1s");
    let code = exits(coordinator).await;
    // Should the first attempt's command have outlived its worker.
    std::fs::write(&never, "").unwrap();
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(code, Some(0), "{printed}\n{}", db.logs());

    let lines = history(project.path(), "retried");
    assert_eq!(
        output(&lines, "stdout"),
        "from-attempt-1\nfrom-attempt-2\nend-2\n"
    );
    let said = format!(
        "claimed by worker {second} (attempt 2): the output above came from attempt 1 on worker {first}"
    );
    let at = lines
        .iter()
        .position(|l| l.text == said)
        .unwrap_or_else(|| panic!("no {said:?} in {lines:#?}"));
    let before = output(&lines[..at], "stdout");
    assert_eq!(before, "from-attempt-1\n", "attempt 1's output came first");
}

/// The fence, on the queue itself: a worker whose lease was reaped and
/// given to another writes no output; the new holder's comes under its attempt.
#[tokio::test]
async fn a_worker_that_lost_its_lease_writes_no_output() {
    let Some(mut db) = fresh("output_fence").await else {
        return;
    };
    let queue = &mut db.queue;
    queue
        .enqueue(&[runner::queue::NewTask::new(
            0,
            serde_json::json!({"kind": "noop"}),
        )])
        .await
        .unwrap();
    let lost = queue
        .claim("lost", Duration::from_millis(1))
        .await
        .unwrap()
        .expect("claimed");
    let deadline = Instant::now() + DEADLINE;
    while queue.reap().await.unwrap().requeued == 0 {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let holder = queue
        .claim("holder", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("claimed again");
    let stdout = |text: &str| vec![(runner::queue::Part::Stdout, text.as_bytes().to_vec())];
    assert!(!queue.put_output(&lost, &stdout("stale")).await.unwrap());
    assert!(queue.put_output(&holder, &stdout("fresh")).await.unwrap());
    let taken = queue.take_output(holder.task).await.unwrap();
    let got: Vec<(i32, &[u8])> = taken.iter().map(|r| (r.attempt, &r.chunk[..])).collect();
    assert_eq!(got, [(2, &b"fresh"[..])]);
    assert_eq!(
        queue.output_rows(holder.task).await.unwrap(),
        0,
        "taken is gone"
    );
}
