//! The PostgreSQL queue with real `runner worker` processes: priority order,
//! exactly-once completion, a worker killed or stopped past its lease,
//! connections terminated mid-run, and a real restart of a PostgreSQL server
//! of the test's own (`OwnPostgres`). Each test works in its own schema,
//! dropped at the end. Without a PostgreSQL server at `RUNNER_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`) the tests skip, unless
//! `RUNNER_REQUIRE_TOOLCHAINS=1` (as `.ci/run` sets), when they fail.

use crate::queue_support::{Cache, OwnPostgres, Workers, wait_for};
use runner::queue::{NewTask, Queue, TaskRow};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// How long any wait below may last before the test fails (a bound on a
/// hang, not a measurement).
const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) fn url() -> String {
    std::env::var("RUNNER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh schema, dropped when this is.
pub(crate) struct Db {
    pub(crate) queue: Queue,
    pub(crate) schema: String,
    dir: tempfile::TempDir,
    workers: Workers,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.workers.kill_all();
        let schema = self.schema.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                if let Ok(queue) = Queue::connect(&url(), &schema, "runner tests").await {
                    let _ = queue.drop_schema().await;
                }
            });
        })
        .join();
    }
}

/// A queue in a schema of its own; `None` (after saying why) when no
/// server answers and none is required.
pub(crate) async fn fresh(test: &str) -> Option<Db> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!(
        "test_{test}_{:x}",
        (nanos as u64) ^ u64::from(std::process::id())
    );
    match Queue::connect(&url(), &schema, "runner tests").await {
        Ok(queue) => {
            let dir = tempfile::tempdir().unwrap();
            let workers = Workers::in_dir(dir.path());
            Some(Db {
                queue,
                schema,
                dir,
                workers,
            })
        }
        Err(err) if err.is_disconnect() => {
            if std::env::var("RUNNER_REQUIRE_TOOLCHAINS").as_deref() == Ok("1") {
                panic!("RUNNER_REQUIRE_TOOLCHAINS=1 but PostgreSQL is not reachable: {err}");
            }
            eprintln!("skipping {test}: {err}");
            None
        }
        Err(err) => panic!("{err}"),
    }
}

impl Db {
    /// Starts `runner worker` named `<schema>-<name>`, without a cache;
    /// its stderr goes to a file. Its full name.
    pub(crate) fn start(&mut self, name: &str, lease: &str) -> String {
        self.workers.start(&self.schema, name, lease, Cache::None)
    }

    fn signal(&self, name: &str, signal: &str) {
        self.workers.signal(name, signal);
    }

    /// `kill -9` of the worker of full name `name`.
    pub(crate) fn kill(&self, name: &str) {
        self.signal(name, "KILL");
    }

    pub(crate) fn logs(&self) -> String {
        self.workers.logs()
    }

    async fn enqueue(&mut self, tasks: Vec<NewTask>) -> Vec<i64> {
        self.queue.enqueue(&tasks).await.unwrap()
    }

    /// Polls the tasks until `done` holds; fails past [`DEADLINE`].
    pub(crate) async fn until(
        &self,
        what: &str,
        done: impl FnMut(&[TaskRow]) -> bool,
    ) -> Vec<TaskRow> {
        wait_for(self, what, DEADLINE, || self.logs(), done).await
    }

    fn ran(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = std::fs::read_to_string(self.dir.path().join("ran"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.trim().parse().unwrap())
            .collect();
        ids.sort();
        ids
    }
}

/// An exec task that appends its id to `ran` in `dir`.
fn appending(dir: &Path, priority: i32, before: &str) -> NewTask {
    NewTask::new(
        priority,
        json!({
            "kind": "exec",
            "command": format!("{before}echo $RUNNER_TASK_ID >> ran"),
            "cwd": dir.to_str().unwrap(),
        }),
    )
}

fn all_completed(tasks: &[TaskRow]) -> bool {
    tasks.iter().all(|t| t.state == "completed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_on_three_workers_complete_once_each_claim_in_priority_order() {
    let Some(mut db) = fresh("fifty").await else {
        return;
    };
    let dir = db.dir.path().to_path_buf();
    let tasks = (0..50).map(|i| appending(&dir, (i * 7) % 5, "")).collect();
    let ids = db.enqueue(tasks).await;
    for name in ["w1", "w2", "w3"] {
        db.start(name, "10s");
    }
    let tasks = db.until("all fifty completed", all_completed).await;
    for task in &tasks {
        assert_eq!((task.completions, task.attempt), (1, 1), "{task:?}");
        assert_eq!(task.result.as_ref().unwrap()["exit_code"], 0, "{task:?}");
    }
    assert_eq!(db.ran(), ids, "every task ran exactly once");
    // Each claim took the first remaining task by (priority, id), up to
    // the claims made at the same moment by the other two workers.
    let mut order: Vec<&TaskRow> = tasks.iter().collect();
    order.sort_by_key(|t| (t.priority, t.id));
    let rank = |id: i64| order.iter().position(|t| t.id == id).unwrap();
    let claims = db.queue.claims().await.unwrap();
    assert_eq!(claims.len(), 50);
    for (k, claim) in claims.iter().enumerate() {
        let r = rank(claim.task);
        assert!(
            r.abs_diff(k) < 3,
            "claim {k} took task {} of rank {r}; claims: {claims:?}",
            claim.task
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_task_reruns_elsewhere_as_attempt_two_and_completes_once() {
    let Some(mut db) = fresh("killed").await else {
        return;
    };
    let dir = db.dir.path().to_path_buf();
    let w1 = db.start("w1", "1s");
    let ids = db
        .enqueue(vec![appending(
            &dir,
            0,
            r#"[ "$RUNNER_TASK_ATTEMPT" = 1 ] && sleep 30; "#,
        )])
        .await;
    db.until("claimed by w1", |t| {
        t[0].state == "running" && t[0].lease_owner.as_deref() == Some(&w1)
    })
    .await;
    db.signal(&w1, "KILL");
    let w2 = db.start("w2", "1s");
    let tasks = db.until("completed", all_completed).await;
    let task = &tasks[0];
    assert_eq!(task.attempt, 2, "{task:?}");
    assert_eq!(task.completions, 1, "{task:?}");
    assert_eq!(task.lease_owner.as_deref(), Some(w2.as_str()));
    assert_eq!(db.ran(), ids, "only the second attempt got to the end");
    let claims = db.queue.claims().await.unwrap();
    let who: Vec<(i32, &str)> = claims
        .iter()
        .map(|c| (c.attempt, c.worker.as_str()))
        .collect();
    assert_eq!(who, [(1, w1.as_str()), (2, w2.as_str())]);
    assert!(db.queue.rejected().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_workers_late_completion_is_rejected_and_recorded() {
    let Some(mut db) = fresh("stopped").await else {
        return;
    };
    let dir = db.dir.path().to_path_buf();
    let w1 = db.start("w1", "1s");
    db.enqueue(vec![appending(&dir, 0, "sleep 1.5; ")]).await;
    db.until("claimed by w1", |t| {
        t[0].state == "running" && t[0].lease_owner.as_deref() == Some(&w1)
    })
    .await;
    db.signal(&w1, "STOP");
    // Past the lease: another worker's reaper hands the task on, and it
    // completes there while w1's own command finishes unseen.
    let w2 = db.start("w2", "1s");
    db.until("completed on w2", all_completed).await;
    db.signal(&w1, "CONT");
    let deadline = Instant::now() + DEADLINE;
    let rejected = loop {
        let rejected = db.queue.rejected().await.unwrap();
        if !rejected.is_empty() {
            break rejected;
        }
        assert!(
            Instant::now() < deadline,
            "no rejected completion\n{}",
            db.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        (rejected[0].worker.as_str(), rejected[0].attempt),
        (w1.as_str(), 1)
    );
    assert!(
        rejected[0].reason.contains("lease of attempt 1 was lost"),
        "{}",
        rejected[0].reason
    );
    let tasks = db.queue.tasks().await.unwrap();
    let task = &tasks[0];
    assert_eq!(
        (task.state.as_str(), task.attempt, task.completions),
        ("completed", 2, 1)
    );
    assert_eq!(task.lease_owner.as_deref(), Some(w2.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_their_connections_are_terminated_and_nothing_is_lost() {
    let Some(mut db) = fresh("terminated").await else {
        return;
    };
    let dir = db.dir.path().to_path_buf();
    let tasks = (0..30)
        .map(|i| appending(&dir, i % 3, "sleep 0.1; "))
        .collect();
    let ids = db.enqueue(tasks).await;
    for name in ["w1", "w2", "w3"] {
        db.start(name, "2s");
    }
    let pattern = format!("runner worker {}-%", db.schema);
    let mut terminated = 0;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let tasks = db.queue.tasks().await.unwrap();
        if all_completed(&tasks) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never all completed: {tasks:#?}\n{}",
            db.logs()
        );
        if terminated < 6 {
            let rows = db
                .queue
                .client()
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1",
                    &[&pattern],
                )
                .await
                .unwrap();
            terminated += rows.len();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(terminated > 0, "no worker connection was terminated");
    let tasks = db.queue.tasks().await.unwrap();
    for task in &tasks {
        assert_eq!(task.completions, 1, "{task:?}");
    }
    let mut ran = db.ran();
    ran.dedup();
    assert_eq!(
        ran, ids,
        "every task ran (a re-run after a lost claim is allowed)"
    );
    assert!(
        db.logs().contains("reconnecting") || db.logs().contains("connection"),
        "{}",
        db.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_in_two_pools_waits_for_both_and_a_full_second_pool_refuses_more() {
    let Some(mut db) = fresh("two_pools").await else {
        return;
    };
    let queue = &mut db.queue;
    queue.set_pool("run:a", 5).await.unwrap();
    queue.set_pool("run:b", 5).await.unwrap();
    queue.set_pool("agent:x", 1).await.unwrap();
    let task = |run: &str| {
        NewTask::new(0, json!({"kind": "noop"}))
            .in_pool(run)
            .also_in_pool("agent:x")
    };
    let first = queue.enqueue_within(&task("run:a"), 2).await.unwrap();
    let second = queue.enqueue_within(&task("run:b"), 2).await.unwrap();
    assert!(first.is_some() && second.is_some());
    assert_eq!(
        queue.enqueue_within(&task("run:b"), 2).await.unwrap(),
        None,
        "agent:x already holds two queued tasks"
    );

    let lease = queue
        .claim("w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the first task is claimed");
    assert_eq!(Some(lease.task), first);
    assert!(
        queue
            .claim("w", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "run:b has room, but agent:x runs one task already"
    );
    queue
        .complete(&lease, &runner::queue::Outcome::Completed(json!({})))
        .await
        .unwrap();
    let next = queue
        .claim("w", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the second task is claimed once the first ended");
    assert_eq!(Some(next.task), second);
}

/// A connection to `url`, retried until the server answers (it may be
/// starting again).
async fn connect_retrying(url: &str, schema: &str) -> Queue {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Queue::connect(url, schema, "runner tests").await {
            Ok(queue) => return queue,
            Err(err) => assert!(Instant::now() < deadline, "never reconnected: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tasks once `done` holds, polled through a connection that is
/// reconnected when the server went away; fails past [`DEADLINE`].
async fn poll_tasks(
    queue: &mut Queue,
    url: &str,
    what: &str,
    logs: impl Fn() -> String,
    done: impl Fn(&[TaskRow]) -> bool,
) -> Vec<TaskRow> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match queue.tasks().await {
            Ok(tasks) if done(&tasks) => return tasks,
            Ok(tasks) => assert!(
                Instant::now() < deadline,
                "never {what}: {tasks:#?}\n{}",
                logs()
            ),
            Err(err) if err.is_disconnect() => {
                *queue = connect_retrying(url, &queue.schema().to_string()).await;
            }
            Err(err) => panic!("{err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn completed(tasks: &[TaskRow]) -> usize {
    tasks.iter().filter(|t| t.state == "completed").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_a_real_postgres_restart_and_nothing_is_lost() {
    let Some(server) = OwnPostgres::start("postgres_restart") else {
        return;
    };
    let url = server.url();
    let mut queue = Queue::connect(&url, "restart", "runner tests")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<NewTask> = (0..30)
        .map(|i| appending(dir.path(), i % 3, "sleep 0.2; "))
        .collect();
    let mut ids = queue.enqueue(&tasks).await.unwrap();
    ids.sort();
    let mut workers = Workers::in_dir(dir.path()).on(url.clone());
    for name in ["w1", "w2", "w3"] {
        workers.start("restart", name, "2s", Cache::None);
    }
    let logs = || format!("{}\n--- server\n{}", workers.logs(), server.log());

    let before = poll_tasks(&mut queue, &url, "3 completed", logs, |t| completed(t) >= 3).await;
    tokio::task::block_in_place(|| server.restart());
    assert!(completed(&before) < ids.len(), "the restart came mid-run");

    let tasks = poll_tasks(&mut queue, &url, "all completed", logs, all_completed).await;
    assert_eq!(tasks.len(), ids.len());
    for task in &tasks {
        assert_eq!(task.completions, 1, "{task:?}");
    }
    let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap();
    let mut ran: Vec<i64> = ran.lines().map(|l| l.trim().parse().unwrap()).collect();
    ran.sort();
    ran.dedup();
    assert_eq!(
        ran, ids,
        "every task ran (a re-run after a lost claim is allowed)"
    );
    assert!(workers.logs().contains("reconnecting"), "{}", logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_and_its_workers_ride_out_a_real_postgres_restart() {
    let Some(server) = OwnPostgres::start("postgres_restart_run") else {
        return;
    };
    let url = server.url();
    let schema = "restart_run";
    let mut queue = Queue::connect(&url, schema, "runner tests").await.unwrap();
    let ran = tempfile::tempdir().unwrap();
    let log = ran.path().join("ran");
    // Batch b's tasks are queued after the restart, when a has ended.
    let mut pipeline = String::new();
    let names: Vec<String> = (1..=12).map(|i| format!("t{i:02}")).collect();
    for (index, id) in names.iter().enumerate() {
        match index {
            0 => pipeline.push_str("[[pipelines.default.batches]]\nid = \"a\"\ntype = \"parallel\"\n"),
            6 => pipeline.push_str("[[pipelines.default.batches]]\nid = \"b\"\ntype = \"parallel\"\ndepends_on = [\"a\"]\n"),
            _ => {}
        }
        let command = format!("echo {id} >> {}; sleep 0.3", log.display());
        pipeline.push_str(&format!(
            "[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"exec\"\nconfig = {{ command = {command:?} }}\n"
        ));
    }
    let project = crate::coordinator::project(&pipeline, 3);
    let mut workers = Workers::new().on(url.clone());
    workers.start(schema, "w1", "2s", Cache::None);
    workers.start(schema, "w2", "2s", Cache::None);
    let logs = || format!("{}\n--- server\n{}", workers.logs(), server.log());

    let args = ["run", "--queue", url.as_str(), "--schema", schema];
    let run = crate::pipelines::run_binary(project.path(), &args, &[]);
    let restart = async {
        let before = poll_tasks(&mut queue, &url, "2 completed", logs, |t| completed(t) >= 2).await;
        tokio::task::block_in_place(|| server.restart());
        before
    };
    let ((code, stdout, stderr), before) = tokio::join!(run, restart);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}\n{}", logs());
    assert!(completed(&before) < names.len(), "the restart came mid-run");

    let tasks = poll_tasks(&mut queue, &url, "read", logs, |_| true).await;
    assert_eq!(
        tasks.len(),
        names.len(),
        "each task queued once: {tasks:#?}"
    );
    for task in &tasks {
        assert_eq!(
            (task.state.as_str(), task.completions),
            ("completed", 1),
            "{task:?}"
        );
    }
    let mut lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines, names, "every task ran");
}
