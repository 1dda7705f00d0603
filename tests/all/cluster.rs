//! Two `runner serve --queue` nodes sharing one PostgreSQL outbox (a schema
//! of their own): runs started on both, a WebSocket client on each sees
//! the same events under the same numbers, and a client that moves to the
//! other node resumes there with no gap, even from a number older than that
//! node holds in memory, and after a real restart of the database (a server
//! of the test's own). Skipped without PostgreSQL unless
//! `RUNNER_REQUIRE_TOOLCHAINS=1`.

use crate::handoff::free_port;
use crate::queue::{fresh, url};
use crate::server_support::Client;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

const PIPELINE: &str = r#"
[[pipelines.default.batches]]
id = "one"

[[pipelines.default.batches.tasks]]
id = "a"
type = "exec"
config = { command = "echo from a" }

[[pipelines.default.batches.tasks]]
id = "b"
type = "exec"
config = { command = "echo from b" }

[[pipelines.default.batches]]
id = "two"
depends_on = ["one"]

[[pipelines.default.batches.tasks]]
id = "c"
type = "exec"
config = { command = "echo from c" }
"#;

struct Node {
    _project: tempfile::TempDir,
    _child: tokio::process::Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Node {
    async fn start(schema: &str) -> Self {
        Self::start_on(&url(), schema).await
    }

    /// A node of the queue at `queue_url`.
    async fn start_on(queue_url: &str, schema: &str) -> Self {
        let project = crate::ids::isolated_project(PIPELINE);
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = project.path().join("serve.log");
        let child = tokio::process::Command::new(crate::pipelines::runner_binary())
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--queue", queue_url, "--schema", schema])
            .current_dir(project.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("runner serve starts");
        for _ in 0..600 {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("serving on")
            {
                return Self {
                    _project: project,
                    _child: child,
                    addr,
                    log,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "runner serve --queue did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A dashboard client; its `state` message.
    async fn client(&self, after_seq: Option<u64>) -> (Client, Value) {
        let mut client = Client::connect(self.addr).await;
        let mut identify = json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "dashboard"}});
        if let Some(after) = after_seq {
            identify["after_seq"] = json!(after);
        }
        client.send(identify).await;
        let identified = client.recv().await;
        assert_eq!(identified["type"], "identified", "{identified}");
        let state = if after_seq.is_none() {
            client.recv().await
        } else {
            Value::Null
        };
        (client, state)
    }
}

/// The events (messages with a `seq` and a `time`) until both runs ended:
/// (seq, type, run id).
async fn events_until_two_runs_end(client: &mut Client) -> Vec<(u64, String, String)> {
    let mut ended = 0;
    let mut events = Vec::new();
    for _ in 0..100_000 {
        let message = client.recv().await;
        if message["seq"].is_u64() && message["time"].is_string() {
            events.push((
                message["seq"].as_u64().unwrap(),
                message["type"].as_str().unwrap().to_string(),
                message["run_id"].as_str().unwrap_or("").to_string(),
            ));
            if message["type"] == "run_status"
                && matches!(message["status"].as_str(), Some("completed" | "failed"))
            {
                ended += 1;
                if ended == 2 {
                    return events;
                }
            }
        }
    }
    panic!("the runs did not end");
}

#[tokio::test]
async fn clients_of_two_nodes_see_one_event_sequence_and_resume_on_either() {
    let Some(mut db) = fresh("cluster").await else {
        return;
    };
    // A node's runs hand their exec tasks to the queue's workers.
    db.start("w1", "3s");
    let first = Node::start(&db.schema).await;
    let second = Node::start(&db.schema).await;
    let (mut on_first, _) = first.client(None).await;
    let (mut on_second, _) = second.client(None).await;

    // A run on each node, at the same time.
    on_first.send(json!({"type": "start_run", "id": 1})).await;
    on_second.send(json!({"type": "start_run", "id": 2})).await;
    let seen_first = events_until_two_runs_end(&mut on_first).await;
    let seen_second = events_until_two_runs_end(&mut on_second).await;
    let logs = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&first.log).unwrap_or_default(),
            std::fs::read_to_string(&second.log).unwrap_or_default()
        )
    };
    let runs: std::collections::BTreeSet<&str> = seen_first
        .iter()
        .filter(|e| e.1 == "run_status")
        .map(|e| e.2.as_str())
        .collect();
    assert_eq!(runs.len(), 2, "both nodes' runs: {runs:?}\n{}", logs());
    // One sequence: the same events, numbered the same, without a gap.
    let common = seen_first.len().min(seen_second.len());
    assert!(common > 20, "{seen_first:?}");
    let start = seen_first[0].0.max(seen_second[0].0);
    let from = |seen: &[(u64, String, String)]| -> Vec<(u64, String, String)> {
        seen.iter().filter(|e| e.0 >= start).cloned().collect()
    };
    let (a, b) = (from(&seen_first), from(&seen_second));
    let shared = a.len().min(b.len());
    assert_eq!(a[..shared], b[..shared], "the same sequence on both nodes");
    for pair in a.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "no gap: {pair:?}");
    }

    // A client that read part of the stream on the second node moves to
    // the first and resumes after the last event it saw.
    let cut = a[a.len() / 2].0;
    let (mut moved, _) = first.client(Some(cut)).await;
    let mut resumed = Vec::new();
    let last = a.last().unwrap().0;
    while resumed.last().is_none_or(|&seq| seq < last) {
        let message = moved.recv().await;
        if let Some(seq) = message["seq"].as_u64()
            && message["time"].is_string()
        {
            resumed.push(seq);
        }
    }
    let expected: Vec<u64> = (cut + 1..=last).collect();
    assert_eq!(resumed, expected, "resumed on the other node with no gap");

    // Both runs are in the outbox, once each.
    let stored: i64 = db
        .queue
        .client()
        .query_one("SELECT count(*) FROM outbox WHERE event LIKE '%\"type\":\"run_status\"%\"status\":\"completed\"%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2, "{}", logs());
}

/// An event message's `seq` (node statuses and replies have none).
fn event_seq(message: &Value) -> Option<u64> {
    message["seq"]
        .as_u64()
        .filter(|_| message["time"].is_string())
}

/// `count` log events as another node appends them to the outbox.
async fn append_logs(queue: &runner::queue::Queue, count: usize) -> u64 {
    let mut last = 0;
    let events: Vec<String> = (0..count)
        .map(|i| {
            serde_json::to_string(&protocol::Event {
                seq: 0,
                time: chrono::Utc::now(),
                kind: protocol::EventKind::Log {
                    run_id: None,
                    task_id: None,
                    level: protocol::LogLevel::Info,
                    source: "bulk".into(),
                    stream: None,
                    message: format!("bulk {i}"),
                },
            })
            .unwrap()
        })
        .collect();
    for chunk in events.chunks(1_000) {
        last = queue.append_events("bulk", chunk).await.unwrap() as u64;
    }
    last
}

#[tokio::test]
async fn a_resume_older_than_the_nodes_memory_is_served_from_the_outbox_then_live() {
    let Some(mut db) = fresh("cluster_old").await else {
        return;
    };
    db.start("w1", "3s");
    let first = Node::start(&db.schema).await;
    let second = Node::start(&db.schema).await;
    let (mut watcher, _) = second.client(None).await;

    // A run on the first node, then more events than a node keeps in memory.
    let (mut on_first, _) = first.client(None).await;
    on_first.send(json!({"type": "start_run", "id": 1})).await;
    let mut run = Vec::new();
    while run.last().is_none_or(|m: &Value| {
        !(m["type"] == "run_status" && matches!(m["status"].as_str(), Some("completed" | "failed")))
    }) {
        let message = on_first.recv().await;
        if event_seq(&message).is_some() {
            run.push(message);
        }
    }
    drop(on_first);
    let bulk = runner::events::RECENT_EVENTS + 2_500;
    let last = append_logs(&db.queue, bulk).await;
    // The second node has tailed them all: its memory starts past the run.
    while watcher
        .recv()
        .await
        .get("seq")
        .and_then(Value::as_u64)
        .is_none_or(|seq| seq < last)
    {}
    drop(watcher);
    let cut = event_seq(&run[run.len() / 2]).unwrap();
    assert!(cut + (runner::events::RECENT_EVENTS as u64) < last);

    // A client of the second node resumes from the middle of the run.
    let (mut resumed, _) = second.client(Some(cut)).await;
    let mut seen: Vec<Value> = Vec::new();
    while seen.last().and_then(event_seq).is_none_or(|seq| seq < last) {
        let message = resumed.recv().await;
        assert_ne!(message["type"], "error", "{message}");
        if event_seq(&message).is_some() {
            seen.push(message);
        }
    }
    // Then live: a second run on the first node.
    let (mut starter, _) = first.client(None).await;
    starter.send(json!({"type": "start_run", "id": 2})).await;
    loop {
        let message = resumed.recv().await;
        if event_seq(&message).is_none() {
            continue;
        }
        let ended = message["type"] == "run_status"
            && message["seq"].as_u64() > Some(last)
            && matches!(message["status"].as_str(), Some("completed" | "failed"));
        seen.push(message);
        if ended {
            break;
        }
    }

    let seqs: Vec<u64> = seen.iter().filter_map(event_seq).collect();
    let expected: Vec<u64> = (cut + 1..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, expected, "every event after {cut} once, in order");
    // The rest of the run, as its node's client saw it.
    let rest: Vec<&Value> = run.iter().filter(|m| event_seq(m) > Some(cut)).collect();
    assert_eq!(
        rest,
        seen.iter().take(rest.len()).collect::<Vec<_>>(),
        "the rest of the first run"
    );
    let bulk_seen: Vec<&str> = seen
        .iter()
        .filter(|m| m["source"] == "bulk")
        .filter_map(|m| m["message"].as_str())
        .collect();
    let bulk_sent: Vec<String> = (0..bulk).map(|i| format!("bulk {i}")).collect();
    assert_eq!(bulk_seen, bulk_sent, "the other node's events, in order");
    let runs: std::collections::BTreeSet<&str> = seen
        .iter()
        .filter(|m| m["type"] == "run_status")
        .filter_map(|m| m["run_id"].as_str())
        .collect();
    assert_eq!(
        runs.len(),
        2,
        "the end of the first run and all of the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_to_the_outbox_after_a_real_postgres_restart() {
    let Some(server) = crate::queue_support::OwnPostgres::start("cluster_restart") else {
        return;
    };
    let queue_url = server.url();
    let mut workers = crate::queue_support::Workers::new().on(queue_url.clone());
    workers.start("nodes", "w1", "3s", crate::queue_support::Cache::None);
    let first = Node::start_on(&queue_url, "nodes").await;
    let second = Node::start_on(&queue_url, "nodes").await;
    let (mut watcher, _) = second.client(None).await;

    tokio::task::block_in_place(|| server.restart());

    // A run on the first node after the restart reaches the second's client
    // through the outbox, numbered without a gap.
    let (mut on_first, _) = first.client(None).await;
    on_first.send(json!({"type": "start_run", "id": 1})).await;
    let mut seen = Vec::new();
    loop {
        let message = watcher.recv().await;
        let Some(seq) = event_seq(&message) else {
            continue;
        };
        seen.push(seq);
        if message["type"] == "run_status"
            && matches!(message["status"].as_str(), Some("completed" | "failed"))
        {
            assert_eq!(
                message["status"],
                "completed",
                "{message}\n{}",
                workers.logs()
            );
            break;
        }
    }
    for pair in seen.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "no gap: {seen:?}");
    }
}
