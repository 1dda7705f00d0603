//! `runner run --queue` with script and block tasks: the coordinator
//! uploads the pipeline's plugins, declares them for the run, and a real
//! `runner worker` fetches them by hash and runs the tasks (`probe`: a
//! script; `chaos`: a block). A plugin granted directories stays on the
//! coordinator. Skipped without PostgreSQL unless `RUNNER_REQUIRE_TOOLCHAINS=1`.

use crate::coordinator::{last_run, project, run_on};
use crate::pipelines::run_binary;
use crate::queue::fresh;
use crate::queue_plugins::Workers;
use crate::support::plugin;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// `[plugins.probe]` and `[plugins.chaos]`, and `probe_here`: the same
/// script with a directory, `granted` in the project, as `/granted`.
fn plugins() -> String {
    format!(
        "[plugins.probe]\npath = {probe:?}\n\n[plugins.chaos]\npath = {chaos:?}\n\n\
         [plugins.probe_here]\npath = {probe:?}\ncapabilities.dirs = [{{ host = \"granted\", guest = \"/granted\" }}]\n\n\
         [[pipelines.default.batches]]\nid = \"work\"\ntype = \"parallel\"\n",
        probe = plugin("probe"),
        chaos = plugin("chaos"),
    )
}

fn task(id: &str, kind: &str, config: &str) -> String {
    format!(
        "\n[[pipelines.default.batches.tasks]]\nid = \"{id}\"\ntype = \"{kind}\"\nconfig = {config}\n"
    )
}

/// Which worker claimed each task, by the run's task id.
async fn claimed(db: &crate::queue::Db) -> Vec<(String, String)> {
    let rows = db
        .queue
        .client()
        .query(
            "SELECT t.payload->>'task', c.worker FROM claims c
             JOIN tasks t ON t.id = c.task_id ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

/// The output `runner show last --json` gives task `id`.
fn output_of<'a>(detail: &'a Value, id: &str) -> &'a Value {
    let tasks = detail["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("{detail:#}"));
    let task = tasks
        .iter()
        .find(|task| task["execution_id"] == id)
        .unwrap_or_else(|| panic!("runner show has task {id}: {detail:#}"));
    &task["result"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_and_a_block_run_on_the_worker_and_a_plugin_granted_a_directory_stays_here() {
    let Some(db) = fresh("coord_plugins").await else {
        return;
    };
    let mut pipeline = plugins();
    pipeline.push_str(&task(
        "greet",
        "script",
        r#"{ component = "probe", args = ["env"], env = { GREETING = "hello from a worker" } }"#,
    ));
    pipeline.push_str(&task("echo", "chaos", r#"{ mode = "echo" }"#));
    pipeline.push_str(&task(
        "note",
        "chaos",
        r#"{ mode = "log", message = "logged on a worker" }"#,
    ));
    pipeline.push_str(&task(
        "here",
        "script",
        r#"{ component = "probe_here", args = ["read", "/granted/note.txt"] }"#,
    ));
    let project = project(&pipeline, 4);
    std::fs::create_dir(project.path().join("granted")).unwrap();
    std::fs::write(
        project.path().join("granted/note.txt"),
        "read on the coordinator\n",
    )
    .unwrap();
    let mut workers = Workers::new();
    workers.start(&db);
    let worker = format!("{}-w0", db.schema);

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        workers.logs()
    );

    let claims = claimed(&db).await;
    let expected: Vec<(String, String)> = ["echo", "greet", "note"]
        .iter()
        .map(|id| (id.to_string(), worker.clone()))
        .collect();
    assert_eq!(
        claims, expected,
        "the script and the blocks were claimed by the worker, once each; `here` was not queued"
    );

    let detail = last_run(project.path()).await;
    assert_eq!(detail["run"]["status"], "completed", "{detail:#}");
    let greet = output_of(&detail, "greet");
    assert_eq!(greet["exit_code"], 0, "{greet:#}");
    assert!(
        greet["stdout"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .any(|line| line == "GREETING=hello from a worker"),
        "the script's stdout is its output: {greet:#}"
    );
    // A block gets the input a local block gets: the run, its batch, itself.
    let echo = output_of(&detail, "echo");
    assert_eq!(echo["config"], json!({"mode": "echo"}), "{echo:#}");
    assert_eq!(echo["input"]["task"]["id"], "echo", "{echo:#}");
    assert_eq!(echo["input"]["batch"]["id"], "work", "{echo:#}");
    assert_eq!(echo["input"]["run"]["id"], detail["run"]["id"], "{echo:#}");
    assert_eq!(output_of(&detail, "note"), &json!({"logged": true}));
    let here = output_of(&detail, "here");
    assert!(
        here["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("read on the coordinator"),
        "the granted script read its directory here: {here:#}"
    );
    // The block's log on the worker is a log of its task, from its plugin.
    let (code, logs, stderr) = run_binary(project.path(), &["logs", "last", "note"], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        logs.lines()
            .any(|line| line.ends_with("] note chaos info: logged on a worker")),
        "runner logs shows the block's log: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_fetches_each_plugin_once_and_the_run_declares_exactly_the_pipelines_hashes() {
    let Some(db) = fresh("coord_declare").await else {
        return;
    };
    let mut pipeline = plugins();
    for n in 1..=3 {
        pipeline.push_str(&task(
            &format!("s{n}"),
            "script",
            r#"{ component = "probe", args = ["env"] }"#,
        ));
        pipeline.push_str(&task(&format!("b{n}"), "chaos", r#"{ mode = "echo" }"#));
    }
    let project = project(&pipeline, 2);
    std::fs::create_dir(project.path().join("granted")).unwrap();
    let mut workers = Workers::new();
    workers.start(&db);

    let (code, stdout, stderr) = run_on(&db, project.path()).await;
    assert_eq!(
        code,
        0,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        workers.logs()
    );
    let detail = last_run(project.path()).await;
    let run_id = detail["run"]["id"].as_str().unwrap().to_string();

    let log = workers.log(0);
    for name in ["probe", "chaos"] {
        let fetched = log
            .lines()
            .filter(|line| line.contains(&format!("fetched plugin {name} (")))
            .count();
        assert_eq!(fetched, 1, "the worker fetched {name} once:\n{log}");
    }
    assert_eq!(claimed(&db).await.len(), 6, "every task went out");

    // The hashes of the files, computed by PostgreSQL.
    let mut expected = BTreeSet::new();
    for stem in ["probe", "chaos"] {
        let bytes = std::fs::read(plugin(stem)).unwrap();
        let row = db
            .queue
            .client()
            .query_one("SELECT encode(sha256($1::bytea), 'hex')", &[&bytes])
            .await
            .unwrap();
        expected.insert(row.get::<_, String>(0));
    }
    let declared: BTreeSet<String> = db
        .queue
        .client()
        .query("SELECT sha256 FROM run_plugins WHERE run = $1", &[&run_id])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(declared, expected, "run {run_id} declared its two plugins");
    let others: i64 = db
        .queue
        .client()
        .query_one(
            "SELECT count(*) FROM run_plugins WHERE run <> $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(others, 0, "no other run declared anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_failing_on_the_worker_fails_the_run_with_the_message_a_local_run_gives() {
    let Some(db) = fresh("coord_block_fail").await else {
        return;
    };
    let mut pipeline = plugins();
    pipeline.push_str(&task(
        "broken",
        "chaos",
        r#"{ mode = "fail", message = "broke on purpose" }"#,
    ));
    let here = project(&pipeline, 2);
    let there = project(&pipeline, 2);
    for project in [&here, &there] {
        std::fs::create_dir(project.path().join("granted")).unwrap();
    }
    let mut workers = Workers::new();
    workers.start(&db);

    let (local_code, local_out, local_err) = run_binary(here.path(), &["run"], &[]).await;
    let (code, stdout, stderr) = run_on(&db, there.path()).await;
    assert_eq!(local_code, 1, "{local_out}\n{local_err}");
    assert_eq!(
        code,
        1,
        "stdout: {stdout}\nstderr: {stderr}\n{}",
        workers.logs()
    );
    let error = |detail: &Value| {
        detail["run"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let local = last_run(here.path()).await;
    let remote = last_run(there.path()).await;
    assert!(
        error(&local).contains("broke on purpose"),
        "the local run says why: {local:#}"
    );
    assert_eq!(error(&remote), error(&local), "the same error as locally");
    assert_eq!(claimed(&db).await.len(), 1, "the block ran on the worker");
}
