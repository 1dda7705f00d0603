//! `runner run --queue`: a run coordinating real `runner worker` processes
//! through PostgreSQL (a schema of its own): exec tasks run on the workers
//! in dependency order, with the run's concurrency held across them, and
//! Ctrl-C of the coordinator cancels what is queued and stops what runs.
//! Skipped without PostgreSQL unless `RUNNER_REQUIRE_TOOLCHAINS=1`.

use crate::pipelines::run_binary;
use crate::queue::{Db, fresh, url};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;

/// A bound on any wait below, not a measurement.
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// An exec task `id` running `command` (a shell line).
fn task(id: &str, command: &str) -> String {
    format!(
        "[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = {command:?} }}\n"
    )
}

/// A project whose pipeline is `batches`, with `[defaults] concurrency`.
pub(crate) fn project(batches: &str, concurrency: usize) -> tempfile::TempDir {
    let project = crate::ids::isolated_project(batches);
    let toml = project.path().join("runner.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "state_dir = \"state\"\n",
        &format!("state_dir = \"state\"\nconcurrency = {concurrency}\n"),
    );
    std::fs::write(&toml, text).unwrap();
    project
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub(crate) async fn run_on(db: &Db, project: &Path) -> (i32, String, String) {
    let args = ["run", "--queue", &url(), "--schema", &db.schema];
    run_binary(project, &args, &[]).await
}

/// `runner show last --json`.
pub(crate) async fn last_run(project: &Path) -> Value {
    let (code, json, stderr) = run_binary(project, &["show", "last", "--json"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&json).unwrap()
}

#[tokio::test]
async fn exec_tasks_of_two_batches_run_on_two_workers_in_dependency_order() {
    let Some(mut db) = fresh("coord_order").await else {
        return;
    };
    let ran = tempfile::tempdir().unwrap();
    let log = ran.path().join("ran");
    let line = |id: &str| {
        format!(
            "echo \"{id} $RUNNER_WORKER\" >> {}; sleep 0.2; echo out-{id}",
            log.display()
        )
    };
    let mut pipeline =
        "[[pipelines.default.batches]]\nid = \"a\"\ntype = \"parallel\"\n".to_string();
    for id in ["a1", "a2", "a3"] {
        pipeline.push_str(&task(id, &line(id)));
    }
    pipeline.push_str(
        "[[pipelines.default.batches]]\nid = \"b\"\ntype = \"parallel\"\ndepends_on = [\"a\"]\n",
    );
    for id in ["b1", "b2"] {
        pipeline.push_str(&task(id, &line(id)));
    }
    let project = project(&pipeline, 4);
    let one = db.start("w1", "3s");
    let two = db.start("w2", "3s");

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());

    let mut ran_by: Vec<(String, String)> = lines(&log)
        .iter()
        .map(|l| {
            let (id, worker) = l.split_once(' ').unwrap();
            (id.to_string(), worker.to_string())
        })
        .collect();
    ran_by.sort();
    let ids: Vec<&str> = ran_by.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3", "b1", "b2"], "each task ran once");
    for (id, worker) in &ran_by {
        assert!(
            *worker == one || *worker == two,
            "task {id} ran on a worker, not on `{worker}`"
        );
    }

    // Batch b's tasks were claimed only after every task of a had ended.
    let row = db
        .queue
        .client()
        .query_one(
            "WITH a AS (SELECT max(t.finished_at) AS done FROM tasks t WHERE t.payload->>'batch' = 'a'),
                  b AS (SELECT min(c.claimed_at) AS claimed FROM claims c
                        JOIN tasks t ON t.id = c.task_id WHERE t.payload->>'batch' = 'b')
             SELECT a.done <= b.claimed, a.done::text, b.claimed::text,
                    (SELECT count(*) FROM tasks) FROM a, b",
            &[],
        )
        .await
        .unwrap();
    let (in_order, a_done, b_claimed, count): (Option<bool>, Option<String>, Option<String>, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(count, 5, "every task went through the queue");
    assert_eq!(
        in_order,
        Some(true),
        "batch b was claimed at {b_claimed:?}, before batch a ended at {a_done:?}"
    );

    // The workers' output is each task's output.
    let detail = last_run(project.path()).await;
    assert_eq!(detail["run"]["status"], "completed", "{detail:#}");
    let shown = detail.to_string();
    for id in ["a1", "a2", "a3", "b1", "b2"] {
        assert!(
            shown.contains(&format!("out-{id}")),
            "runner show has the output of {id}: {detail:#}"
        );
    }
}

#[tokio::test]
async fn a_failing_task_on_a_worker_fails_the_run_as_it_would_here() {
    let Some(mut db) = fresh("coord_fail").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"only\"\ntype = \"parallel\"\n{}",
        task("broken", "echo about to fail; exit 3")
    );
    let here = project(&pipeline, 2);
    let there = project(&pipeline, 2);
    db.start("w1", "3s");

    let (local_code, local_out, local_err) = run_binary(here.path(), &["run"], &[]).await;
    let (code, stdout, stderr) = run_on(&db, there.path()).await;
    assert_eq!(local_code, 1, "{local_out}\n{local_err}");
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());

    let local = last_run(here.path()).await;
    let remote = last_run(there.path()).await;
    let error = |detail: &Value| {
        detail["run"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        error(&local).contains("exited with code 3"),
        "the local run says why: {local:#}"
    );
    assert_eq!(error(&remote), error(&local), "the same error as locally");
    let claims = db.queue.claims().await.unwrap();
    assert_eq!(claims.len(), 1, "the task ran on the worker: {claims:?}");
}

#[tokio::test]
async fn a_runs_concurrency_holds_across_three_workers() {
    let Some(mut db) = fresh("coord_pool").await else {
        return;
    };
    let spans = tempfile::tempdir().unwrap();
    let mut pipeline =
        "[[pipelines.default.batches]]\nid = \"wide\"\ntype = \"parallel\"\n".to_string();
    for n in 1..=4 {
        let file = spans.path().join(format!("t{n}"));
        let command = format!(
            "date +%s%N > {f}; sleep 0.5; date +%s%N >> {f}",
            f = file.display()
        );
        pipeline.push_str(&task(&format!("t{n}"), &command));
    }
    let project = project(&pipeline, 1);
    for name in ["w1", "w2", "w3"] {
        db.start(name, "3s");
    }

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", db.logs());

    let mut spans: Vec<(u128, u128)> = (1..=4)
        .map(|n| {
            let times = lines(&spans.path().join(format!("t{n}")));
            assert_eq!(times.len(), 2, "task t{n} started and ended: {times:?}");
            (times[0].parse().unwrap(), times[1].parse().unwrap())
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two tasks ran at once under concurrency = 1: {spans:?}"
        );
    }
    // All four were queued at once: the queue held them back, not the coordinator.
    let row = db
        .queue
        .client()
        .query_one(
            "SELECT max(created_at) < min(finished_at), count(*) FROM tasks",
            &[],
        )
        .await
        .unwrap();
    let (queued_together, count): (bool, i64) = (row.get(0), row.get(1));
    assert_eq!(count, 4);
    assert!(
        queued_together,
        "every task was queued before the first ended"
    );
}

#[tokio::test]
async fn ctrl_c_of_the_coordinator_cancels_queued_tasks_and_stops_the_running_one() {
    let Some(mut db) = fresh("coord_abort").await else {
        return;
    };
    let marks = tempfile::tempdir().unwrap();
    let log = marks.path().join("log");
    let command = format!(
        "echo started >> {f}; sleep 60; echo finished >> {f}",
        f = log.display()
    );
    let mut pipeline =
        "[[pipelines.default.batches]]\nid = \"slow\"\ntype = \"parallel\"\n".to_string();
    for n in 1..=3 {
        pipeline.push_str(&task(&format!("s{n}"), &command));
    }
    let project = project(&pipeline, 1);
    db.start("w1", "3s");
    db.start("w2", "3s");

    let mut coordinator = tokio::process::Command::new(crate::pipelines::runner_binary())
        .args(["run", "--queue", &url(), "--schema", &db.schema])
        .current_dir(project.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    db.until("the three tasks were queued", |tasks| tasks.len() == 3)
        .await;
    let deadline = Instant::now() + DEADLINE;
    while lines(&log).is_empty() {
        assert!(Instant::now() < deadline, "no task started\n{}", db.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = coordinator.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(DEADLINE, coordinator.wait())
        .await
        .expect("the coordinator exits after Ctrl-C")
        .unwrap();
    assert_eq!(exited.code(), Some(130), "aborted runs exit 130");

    let tasks = db
        .until("every task ended", |tasks| {
            tasks.len() == 3 && tasks.iter().all(|t| t.state == "failed")
        })
        .await;
    for task in &tasks {
        let error = task.error.as_deref().unwrap_or_default();
        assert!(error.starts_with("cancelled"), "{task:?}");
    }
    let claims = db.queue.claims().await.unwrap();
    assert_eq!(claims.len(), 1, "the queued tasks never ran: {claims:?}");
    assert_eq!(lines(&log), ["started"], "one task started and was stopped");

    let detail = last_run(project.path()).await;
    assert_eq!(detail["run"]["status"], "aborted", "{detail:#}");
}

/// A run with no worker to take its tasks says so (instead of waiting in
/// silence), and goes on as soon as one starts.
#[tokio::test]
async fn a_run_with_no_worker_says_so_and_goes_on_when_one_starts() {
    let Some(mut db) = fresh("coord_noworker").await else {
        return;
    };
    let pipeline = format!(
        "[[pipelines.default.batches]]\nid = \"one\"\n{}",
        task("t", "echo done")
    );
    let project = project(&pipeline, 1);
    let out = project.path().join("run.out");
    let mut coordinator = tokio::process::Command::new(crate::pipelines::runner_binary())
        .args(["run", "--queue", &url(), "--schema", &db.schema])
        .current_dir(project.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let said = |text: &str| text.contains("no worker has claimed it in 5s");
    while !said(&std::fs::read_to_string(&out).unwrap_or_default()) {
        assert!(
            Instant::now() < deadline,
            "the run never said that no worker took its task:\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        db.queue.claims().await.unwrap().is_empty(),
        "nothing had claimed it"
    );
    db.start("late", "3s");
    let exited = tokio::time::timeout(DEADLINE, coordinator.wait())
        .await
        .expect("the run ends once a worker takes its task")
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(exited.code(), Some(0), "{text}\n{}", db.logs());
    assert!(text.contains("done"), "the task's output: {text}");
}
