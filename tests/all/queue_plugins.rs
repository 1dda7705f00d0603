//! Plugins on workers: components uploaded to the queue by hash, declared
//! for a run, fetched and run by real `runner worker` processes; a hash the
//! run did not declare and bytes changed in the table are refused, and a
//! worker's cache spares fetching a plugin twice. Real PostgreSQL (skipped
//! without it, as in `queue.rs`), real components (`probe`: a script;
//! `chaos`: a block).

use super::queue::{Db, fresh, url};
use super::queue_support::{Cache, all_finished, wait_for};
use super::support::plugin;
use runner::queue::{NewTask, TaskRow};
use serde_json::{Value, json};
use std::time::Duration;

/// How long any wait below may last before the test fails (a bound on a
/// hang, not a measurement).
const DEADLINE: Duration = Duration::from_secs(180);

/// Workers with one cache directory, their stderr in files.
pub(crate) struct Workers(super::queue_support::Workers);

impl Workers {
    pub(crate) fn new() -> Self {
        Self(super::queue_support::Workers::new())
    }

    pub(crate) fn cache(&self) -> std::path::PathBuf {
        self.0.shared_cache()
    }

    /// Starts one `runner worker` on `db`'s schema, named `<schema>-w<index>`,
    /// with the shared cache; its index.
    pub(crate) fn start(&mut self, db: &Db) -> usize {
        let index = self.0.count();
        self.0
            .start(&db.schema, &format!("w{index}"), "30s", Cache::Shared);
        index
    }

    pub(crate) fn log(&self, index: usize) -> String {
        self.0.log(index)
    }

    pub(crate) fn logs(&self) -> String {
        self.0.logs()
    }

    /// SIGTERM, then waits for the process to end.
    pub(crate) async fn stop(&mut self, index: usize) {
        self.0.stop(index, DEADLINE).await;
    }
}

/// Uploads the built component `stem` under that name; its hash.
async fn upload(db: &Db, stem: &str) -> String {
    let bytes = std::fs::read(plugin(stem)).unwrap();
    db.queue.put_plugin(stem, &bytes).await.unwrap()
}

fn task(kind: &str, run: &str, name: &str, sha256: &str, config: Value) -> Value {
    json!({
        "kind": kind,
        "run": run,
        "task": format!("{name}-task"),
        "plugin": {"name": name, "sha256": sha256},
        "config": config,
        "timeout": "60s",
    })
}

async fn enqueue(db: &mut Db, payloads: Vec<Value>) -> Vec<i64> {
    let tasks: Vec<NewTask> = payloads.into_iter().map(|p| NewTask::new(0, p)).collect();
    db.queue.enqueue(&tasks).await.unwrap()
}

/// Polls until every task has finished (completed or failed).
async fn finished(db: &Db, workers: &Workers) -> Vec<TaskRow> {
    let logs = || workers.logs();
    wait_for(db, "finished", DEADLINE, logs, all_finished).await
}

/// One worker started on `db`, and the tasks once all have finished.
async fn on_one_worker(db: &Db) -> (Workers, Vec<TaskRow>) {
    let mut workers = Workers::new();
    workers.start(db);
    let tasks = finished(db, &workers).await;
    (workers, tasks)
}

/// A fresh schema (`None` without PostgreSQL) with `probe` uploaded and
/// declared for `run`; its hash.
async fn declared_probe(test: &str, run: &str) -> Option<(Db, String)> {
    let db = fresh(test).await?;
    let probe = upload(&db, "probe").await;
    db.queue
        .declare_run(run, std::slice::from_ref(&probe))
        .await
        .unwrap();
    Some((db, probe))
}

fn row(tasks: &[TaskRow], id: i64) -> &TaskRow {
    tasks.iter().find(|t| t.id == id).unwrap()
}

fn cached(workers: &Workers, sha256: &str) -> bool {
    workers
        .cache()
        .join("plugins")
        .join(format!("{sha256}.wasm"))
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_script_and_block_run_on_a_worker_and_their_outputs_come_back() {
    let Some(mut db) = fresh("plugins_run").await else {
        return;
    };
    let probe = upload(&db, "probe").await;
    let chaos = upload(&db, "chaos").await;
    // Uploading the same bytes again is the same plugin.
    assert_eq!(upload(&db, "probe").await, probe);
    db.queue
        .declare_run("run-a", &[probe.clone(), chaos.clone()])
        .await
        .unwrap();
    let ids = enqueue(
        &mut db,
        vec![
            task(
                "script",
                "run-a",
                "probe",
                &probe,
                json!({"args": ["env"], "env": {"GREETING": "hello from the queue"}}),
            ),
            {
                let mut echo = task("block", "run-a", "chaos", &chaos, json!({"mode": "echo"}));
                echo["input"] = json!({"files": 3});
                echo
            },
            task(
                "block",
                "run-a",
                "chaos",
                &chaos,
                json!({"mode": "log", "message": "logged on a worker"}),
            ),
            task(
                "script",
                "run-a",
                "probe",
                &probe,
                json!({"args": ["exit", "4"]}),
            ),
        ],
    )
    .await;
    let (workers, tasks) = on_one_worker(&db).await;

    let script = row(&tasks, ids[0]);
    assert_eq!(script.state, "completed", "{}", workers.logs());
    let result = script.result.as_ref().unwrap();
    assert_eq!(result["exit_code"], 0);
    let output = result["output"].as_str().unwrap();
    assert!(
        output.lines().any(|l| l == "GREETING=hello from the queue"),
        "the script's stdout: {output}"
    );

    let echo = row(&tasks, ids[1]);
    assert_eq!(echo.state, "completed", "{:?}", echo.error);
    assert_eq!(
        echo.result.as_ref().unwrap()["output"],
        json!({"config": {"mode": "echo"}, "input": {"files": 3}})
    );

    let logged = row(&tasks, ids[2]);
    assert_eq!(logged.state, "completed", "{:?}", logged.error);
    let result = logged.result.as_ref().unwrap();
    assert_eq!(result["output"], json!({"logged": true}));
    assert!(
        result["logs"]
            .as_array()
            .unwrap()
            .contains(&json!({"level": "info", "message": "logged on a worker"})),
        "the block's logs: {}",
        result["logs"]
    );

    let exited = row(&tasks, ids[3]);
    assert_eq!(exited.state, "failed");
    assert_eq!(exited.attempt, 1, "a script's exit code is not retried");
    // WASI 0.2 carries only success or failure: the probe's exit 4 arrives as 1.
    assert_eq!(exited.result.as_ref().unwrap()["exit_code"], 1);
    assert_eq!(
        exited.error.as_deref(),
        Some("script `probe` exited with code 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_the_run_did_not_declare_fails_and_the_plugin_never_runs() {
    let Some(mut db) = fresh("plugins_undeclared").await else {
        return;
    };
    let probe = upload(&db, "probe").await;
    let chaos = upload(&db, "chaos").await;
    // probe is declared, but for another run.
    db.queue
        .declare_run("run-b", std::slice::from_ref(&chaos))
        .await
        .unwrap();
    db.queue
        .declare_run("run-other", std::slice::from_ref(&probe))
        .await
        .unwrap();
    let missing = "0".repeat(64);
    let ids = enqueue(
        &mut db,
        vec![
            task("script", "run-b", "probe", &probe, json!({"args": ["env"]})),
            task("script", "run-b", "ghost", &missing, json!({})),
            {
                let mut asks = task("block", "run-b", "chaos", &chaos, json!({"mode": "echo"}));
                asks["plugin"]["dirs"] = json!([{"host": "/", "guest": "/"}]);
                asks
            },
        ],
    )
    .await;
    let (workers, tasks) = on_one_worker(&db).await;

    let undeclared = row(&tasks, ids[0]);
    assert_eq!(undeclared.state, "failed");
    assert_eq!(undeclared.attempt, 1, "a refusal is not retried");
    assert_eq!(
        undeclared.error.as_deref(),
        Some(
            format!(
                "run `run-b` did not declare plugin `probe` (sha256 {probe}): a run's tasks may only use the plugins declared for it when they were enqueued"
            )
            .as_str()
        )
    );
    // It never ran: no exit code, no output, its bytes never reached the worker.
    assert!(undeclared.result.as_ref().is_none_or(Value::is_null));
    assert!(!cached(&workers, &probe));

    let unknown = row(&tasks, ids[1]);
    assert_eq!(unknown.state, "failed");
    let error = unknown.error.as_deref().unwrap();
    assert!(
        error.starts_with("plugin `ghost`: ")
            && error.contains(&format!("holds no plugin with sha256 {missing}"))
            && error.contains("run-b"),
        "{error}"
    );

    let dirs = row(&tasks, ids[2]);
    assert_eq!(dirs.state, "failed");
    let error = dirs.error.as_deref().unwrap();
    assert!(
        error.contains("plugin `chaos` asks for directory grants, and workers grant none"),
        "{error}"
    );
    assert!(!cached(&workers, &chaos));
    assert!(
        !workers.log(0).contains("fetched plugin"),
        "{}",
        workers.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_changed_in_the_table_are_refused_by_the_workers_own_hash_check() {
    let Some((mut db, probe)) = declared_probe("plugins_altered", "run-c").await else {
        return;
    };
    // Someone with write access to the table swaps the bytes under the hash.
    db.queue
        .client()
        .execute(
            "UPDATE plugins SET bytes = bytes || '\\x00'::bytea WHERE sha256 = $1",
            &[&probe],
        )
        .await
        .unwrap();
    let altered: String = db
        .queue
        .client()
        .query_one(
            "SELECT encode(sha256(bytes), 'hex') FROM plugins WHERE sha256 = $1",
            &[&probe],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(altered, probe);
    let ids = enqueue(
        &mut db,
        vec![task(
            "script",
            "run-c",
            "probe",
            &probe,
            json!({"args": ["env"]}),
        )],
    )
    .await;
    let (workers, tasks) = on_one_worker(&db).await;
    let refused = row(&tasks, ids[0]);
    assert_eq!(refused.state, "failed");
    assert_eq!(refused.attempt, 1);
    assert_eq!(
        refused.error.as_deref(),
        Some(
            format!("plugin probe: the queue's bytes hash to {altered}, not the declared {probe}")
                .as_str()
        )
    );
    assert!(
        refused.result.as_ref().is_none_or(Value::is_null),
        "it never ran"
    );
    assert!(!cached(&workers, &probe), "refused bytes are not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_fetches_a_plugin_once_and_a_restarted_worker_reuses_its_cache() {
    let Some((mut db, probe)) = declared_probe("plugins_cache", "run-d").await else {
        return;
    };
    let env = |n: u32| {
        task(
            "script",
            "run-d",
            "probe",
            &probe,
            json!({"args": ["env"], "env": {"N": n.to_string()}}),
        )
    };
    enqueue(&mut db, vec![env(1), env(2)]).await;
    let mut workers = Workers::new();
    let first = workers.start(&db);
    let tasks = finished(&db, &workers).await;
    assert!(tasks.iter().all(|t| t.state == "completed"), "{tasks:#?}");
    let fetched = format!("fetched plugin probe ({probe}");
    assert_eq!(
        workers.log(first).matches(&fetched).count(),
        1,
        "{}",
        workers.logs()
    );
    assert!(cached(&workers, &probe));
    workers.stop(first).await;

    // A new process checks the file it finds once, and fetches nothing.
    let second = workers.start(&db);
    let id = enqueue(&mut db, vec![env(3)]).await[0];
    let tasks = finished(&db, &workers).await;
    let third = row(&tasks, id);
    assert_eq!(third.state, "completed", "{:?}", third.error);
    assert!(
        third.result.as_ref().unwrap()["output"]
            .as_str()
            .unwrap()
            .lines()
            .any(|l| l == "N=3")
    );
    assert!(
        !workers.log(second).contains("fetched plugin"),
        "{}",
        workers.logs()
    );

    // A run that did not declare it is still refused, cache or not.
    let id = enqueue(
        &mut db,
        vec![task("script", "run-x", "probe", &probe, json!({}))],
    )
    .await[0];
    let tasks = finished(&db, &workers).await;
    assert_eq!(row(&tasks, id).state, "failed");
    assert!(
        row(&tasks, id)
            .error
            .as_deref()
            .unwrap()
            .starts_with("run `run-x` did not declare plugin `probe`")
    );
}

/// `runner queue enqueue --queue … --schema … --plugin PLUGIN_AND_ARGS…` in `dir`.
async fn enqueue_command(
    dir: &std::path::Path,
    db: &Db,
    plugin_and_args: &[&str],
) -> (i32, String, String) {
    let url = url();
    let mut args = vec![
        "queue", "enqueue", "--queue", &url, "--schema", &db.schema, "--plugin",
    ];
    args.extend_from_slice(plugin_and_args);
    super::pipelines::run_binary(dir, &args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_queue_enqueue_uploads_a_script_that_a_worker_runs_without_files() {
    let Some(db) = fresh("plugins_cli").await else {
        return;
    };
    let probe = plugin("probe");
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) =
        enqueue_command(dir.path(), &db, &[&probe, "--", "read", "/etc/hostname"]).await;
    assert_eq!(code, 0, "{stderr}");
    let id: i64 = stdout.trim().parse().unwrap();
    assert!(stderr.contains("plugin probe ("), "{stderr}");
    let (_workers, tasks) = on_one_worker(&db).await;
    let task = row(&tasks, id);
    // The script ran (its exit code came back) but saw no host files.
    assert_eq!(task.state, "failed");
    // Its exit 3 arrives as 1 (WASI 0.2 carries only failure).
    assert_eq!(task.result.as_ref().unwrap()["exit_code"], 1);
    let error = task.error.as_deref().unwrap();
    assert!(
        error.starts_with("script `probe` exited with code 1: cannot read /etc/hostname"),
        "{error}"
    );

    let (code, _, stderr) = enqueue_command(dir.path(), &db, &["missing.wasm"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the plugin missing.wasm"),
        "{stderr}"
    );
}
