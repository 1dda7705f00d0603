//! The WebSocket server end to end: a real runner, a real client, on
//! `127.0.0.1:0`. No timing assertions; every await gives up after 10 s.

use crate::server_support::*;
use futures_util::StreamExt;
use protocol::{EventKind, LogLevel};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Two batches of quick exec tasks, and a pipeline that sleeps (to abort).
const PIPELINES: &str = r#"
[[pipelines.default.batches]]
id = "first"
type = "parallel"

[[pipelines.default.batches.tasks]]
id = "hello"
type = "exec"
config = { command = "echo hello; echo again" }

[[pipelines.default.batches.tasks]]
id = "world"
type = "exec"
config = { command = "echo world" }

[[pipelines.default.batches]]
id = "second"
depends_on = ["first"]

[[pipelines.default.batches.tasks]]
id = "last"
type = "exec"
config = { command = "echo done" }

[[pipelines.slow.batches]]
id = "wait"

[[pipelines.slow.batches.tasks]]
id = "sleep"
type = "exec"
config = { command = "sleep 30" }

[[pipelines.other.batches]]
id = "lone"

[[pipelines.other.batches.tasks]]
id = "echo"
type = "exec"
config = { command = "echo other" }
"#;

fn identify() -> Value {
    json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "dashboard", "name": "test"}})
}

/// Starts `pipeline` from `client` and returns the run id.
async fn start_run(client: &mut Client, pipeline: &str) -> String {
    client
        .send(json!({"type": "start_run", "id": "start", "pipeline": pipeline}))
        .await;
    let answer = client
        .recv_until(|m| m["id"] == "start")
        .await
        .pop()
        .unwrap();
    assert_eq!(answer["type"], "run_started", "{answer}");
    assert_eq!(answer["pipeline"], pipeline);
    answer["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_client_gets_the_state_then_every_event_in_order_without_a_gap() {
    let served = Served::start(PIPELINES, settings()).await;
    // One run before anyone connects: the snapshot must show it.
    let mut bus = served.bus.subscribe();
    served.service.start_run(Some("default")).unwrap();
    for _ in 0..10_000 {
        let event = tokio::time::timeout(WAIT, bus.recv())
            .await
            .expect("the first run ends")
            .unwrap();
        if matches!(&event.kind, EventKind::RunStatus { status, .. } if status.is_final()) {
            break;
        }
    }

    let (mut client, state) = served.dashboard().await;
    let snapshot = &state["snapshot"];
    let seq = snapshot["seq"].as_u64().unwrap();
    assert!(seq > 0, "{snapshot}");
    assert_eq!(
        snapshot["recent_runs"][0]["status"], "completed",
        "{snapshot}"
    );
    assert_eq!(
        snapshot["recent_runs"][0]["batches"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{snapshot}"
    );
    assert_eq!(
        snapshot["pipelines"][0]["nodes"][1]["status"], "completed",
        "{snapshot}"
    );

    let run_id = start_run(&mut client, "default").await;
    let messages = client.recv_until(run_ended).await;
    let events: Vec<&Value> = messages.iter().filter(|m| m["seq"].is_u64()).collect();
    assert_consecutive(&seqs(&messages), seq + 1);
    assert!(
        events
            .iter()
            .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    assert!(events.iter().all(|e| e["run_id"] == run_id), "one run only");
    assert_eq!(events.last().unwrap()["status"], "completed");
    // Each batch_status is followed by its node_status.
    for (i, message) in messages.iter().enumerate() {
        if message["type"] == "batch_status" {
            let node = &messages[i + 1];
            assert_eq!(node["type"], "node_status", "{node}");
            assert_eq!(node["event_seq"], message["seq"]);
            assert_eq!(node["node_id"], message["batch_id"]);
            assert_eq!(node["pipeline"], "default");
        }
    }
    let node_states: Vec<&str> = messages
        .iter()
        .filter(|m| m["type"] == "node_status" && m["node_id"] == "second")
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(node_states, vec!["pending", "processing", "completed"]);

    // The same state over HTTP.
    let (status, body) = http_get(served.addr(), "/api/state", "").await;
    assert_eq!(status, 200);
    let over_http: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(over_http["recent_runs"][0]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn replays_missed_events_after_reconnect() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    start_run(&mut client, "default").await;
    // Read a little of the run, then drop the connection.
    let seen = client.recv_until(|m| m["type"] == "task_started").await;
    let last_seen = *seqs(&seen).last().unwrap();
    drop(client);

    // A second client watches the run to its end.
    let (mut watcher, state) = served.dashboard().await;
    if !state["snapshot"]["active_runs"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        watcher.recv_until(run_ended).await;
    }
    let end = served.bus.next_seq() - 1;
    assert!(end > last_seen);

    // Reconnect with `identify { after_seq }`: exactly the missed events, no snapshot.
    let mut client = Client::connect(served.addr()).await;
    let mut hello = identify();
    hello["after_seq"] = json!(last_seen);
    client.send(hello).await;
    assert_eq!(client.recv().await["type"], "identified");
    let replayed = client.recv_until(|m| m["seq"].as_u64() == Some(end)).await;
    assert!(replayed.iter().all(|m| m["type"] != "state"));
    assert_consecutive(&seqs(&replayed), last_seen + 1);

    // Then live: a new event arrives with the next number.
    served.bus.publish(EventKind::Log {
        run_id: None,
        task_id: None,
        level: LogLevel::Info,
        source: "test".into(),
        stream: None,
        message: "live".into(),
    });
    let live = client.recv().await;
    assert_eq!(
        (live["seq"].as_u64(), &live["message"]),
        (Some(end + 1), &json!("live"))
    );

    // `resume` on an identified connection does the same, after `resumed`.
    let (mut other, _) = served.dashboard().await;
    other
        .send(json!({"type": "resume", "id": 9, "after_seq": last_seen}))
        .await;
    let answer = other.recv().await;
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_u64()),
        (Some("resumed"), Some(9))
    );
    let replayed = other
        .recv_until(|m| m["seq"].as_u64() == Some(end + 1))
        .await;
    assert_consecutive(&seqs(&replayed), last_seen + 1);

    // Resuming from a number never published is refused, and says so.
    other
        .send(json!({"type": "resume", "id": 10, "after_seq": end + 1000}))
        .await;
    let refused = other.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("resume_unavailable"))
    );
    assert_eq!(refused["id"], 10);
}

#[tokio::test]
async fn filters_narrow_the_stream_by_type_and_pipeline() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    let filter = json!({"types": ["run_status", "node_status"], "pipelines": ["other"]});
    client
        .send(json!({"type": "subscribe", "id": "f", "filter": filter}))
        .await;
    let answer = client.recv().await;
    assert_eq!(
        (answer["type"].as_str(), &answer["filter"]),
        (Some("subscribed"), &filter)
    );

    // A run of `default` first: none of it may arrive.
    start_run(&mut client, "default").await;
    let mut bus = served.bus.subscribe();
    for _ in 0..10_000 {
        let event = tokio::time::timeout(WAIT, bus.recv())
            .await
            .expect("the run ends")
            .unwrap();
        if matches!(&event.kind, EventKind::RunStatus { status, .. } if status.is_final()) {
            break;
        }
    }
    let run_id = start_run(&mut client, "other").await;
    let messages = client.recv_until(run_ended).await;
    for message in &messages {
        let kind = message["type"].as_str().unwrap();
        assert!(kind == "run_status" || kind == "node_status", "{message}");
        assert_eq!(message["run_id"], run_id.as_str(), "{message}");
    }
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "node_status" && m["status"] == "completed")
    );

    // A log filter: only error logs from the source `probe`.
    client
        .send(json!({"type": "subscribe", "filter": {"types": ["log"], "levels": ["error"], "tags": ["probe"]}}))
        .await;
    assert_eq!(client.recv().await["type"], "subscribed");
    for (level, source) in [
        (LogLevel::Info, "probe"),
        (LogLevel::Error, "other"),
        (LogLevel::Error, "probe"),
    ] {
        served.bus.publish(EventKind::Log {
            run_id: None,
            task_id: None,
            level,
            source: source.into(),
            stream: None,
            message: format!("{level} from {source}"),
        });
    }
    let log = client.recv().await;
    assert_eq!(log["message"], "error from probe", "{log}");
}

#[tokio::test]
async fn starts_and_aborts_a_run_from_a_client() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    let run_id = start_run(&mut client, "slow").await;
    client
        .recv_until(|m| m["type"] == "task_started" && m["task_id"] == "sleep")
        .await;

    client
        .send(json!({"type": "abort_run", "id": 2, "run_id": run_id}))
        .await;
    let answer = client.recv_until(|m| m["id"] == 2).await.pop().unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["run_id"].as_str()),
        (Some("abort_requested"), Some(run_id.as_str()))
    );
    let messages = client.recv_until(run_ended).await;
    let end = messages.last().unwrap();
    assert_eq!(end["status"], "aborted", "{end}");
    let sleep = messages
        .iter()
        .find(|m| m["type"] == "task_finished")
        .expect("the task finished");
    assert_eq!(sleep["status"], "interrupted");

    // Unknown runs and pipelines are refused with the request's id.
    client
        .send(json!({"type": "abort_run", "id": 3, "run_id": run_id}))
        .await;
    let refused = client.recv_until(|m| m["id"] == 3).await.pop().unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("rejected"))
    );
    client
        .send(json!({"type": "start_run", "id": 4, "pipeline": "nope"}))
        .await;
    let refused = client.recv_until(|m| m["id"] == 4).await.pop().unwrap();
    assert_eq!(refused["code"], "rejected");
    assert!(
        refused["message"].as_str().unwrap().contains("nope"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_command_for_an_unknown_agent_is_refused_naming_it() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    client
        .send(json!({"type": "command_request", "id": "c", "agent": "nobody", "prompt": "hello", "priority": "high"}))
        .await;
    let refused = client.recv_until(|m| m["id"] == "c").await.pop().unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("rejected"))
    );
    assert!(
        refused["message"].as_str().unwrap().contains("nobody"),
        "{refused}"
    );

    client
        .send(json!({"type": "command_interrupt", "id": "i", "command_id": "cmd-404"}))
        .await;
    let refused = client.recv_until(|m| m["id"] == "i").await.pop().unwrap();
    assert_eq!(refused["code"], "rejected");
    assert!(
        refused["message"].as_str().unwrap().contains("cmd-404"),
        "{refused}"
    );

    client.send(json!({"type": "command_request", "id": "p", "agent": "claude", "prompt": "hi", "priority": "urgent"})).await;
    let invalid = client.recv_until(|m| m["id"] == "p").await.pop().unwrap();
    assert_eq!(invalid["code"], "invalid", "{invalid}");
}

#[tokio::test]
async fn plain_http_gets_426_on_ws_and_answers_health() {
    let served = Served::start(PIPELINES, settings()).await;
    let (status, body) = http_get(served.addr(), "/ws", "").await;
    assert_eq!(status, 426, "{body}");
    assert_eq!(
        http_get(served.addr(), "/healthz", "").await,
        (200, "ok\n".to_string())
    );
    assert_eq!(http_get(served.addr(), "/nowhere", "").await.0, 404);
    let (status, body) = http_get(served.addr(), "/api/state", "").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["seq"], 0);
}

#[tokio::test]
async fn a_page_from_another_origin_or_a_rebound_host_is_refused_with_403_everywhere() {
    let settings = runner::server::ServerSettings {
        allowed_origins: vec!["https://dashboard.example".into()],
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let addr = served.addr();
    let port = addr.port();
    let own_host = addr.to_string();
    let evil = "Origin: http://evil.example\r\n";

    // A script on another site opening the WebSocket, or fetching the endpoints.
    let mut requests = vec![upgrade_request(&own_host, evil)];
    for path in ["/api/state", "/healthz", "/ws"] {
        requests.push(get_request(path, &own_host, evil));
    }
    for request in &requests {
        let refused = raw_request(addr, request).await;
        assert_eq!(refused.status, 403, "{request}\n{refused:?}");
        assert!(
            refused.body.contains("`http://evil.example`")
                && refused.body.contains("`allowed_origins` under [server]"),
            "{}",
            refused.body
        );
    }

    // DNS rebinding: the page's own name, resolved to 127.0.0.1, is the Host.
    for request in [
        upgrade_request(&format!("evil.example:{port}"), ""),
        get_request("/api/state", "evil.example", ""),
        get_request("/healthz", &format!("evil.example:{port}"), ""),
    ] {
        let refused = raw_request(addr, &request).await;
        assert_eq!(refused.status, 403, "{request}\n{refused:?}");
        assert!(
            refused.body.contains("the Host `evil.example")
                && refused.body.contains("allowed_origins"),
            "{}",
            refused.body
        );
    }

    // The server's own origins, a listed one, and none at all (a CLI) are let in.
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
        "https://dashboard.example".to_string(),
    ] {
        let header = format!("Origin: {origin}\r\n");
        let upgraded = raw_request(addr, &upgrade_request(&own_host, &header)).await;
        assert_eq!(upgraded.status, 101, "{origin}: {upgraded:?}");
        let state = raw_request(
            addr,
            &get_request("/api/state", &format!("localhost:{port}"), &header),
        )
        .await;
        assert_eq!(state.status, 200, "{origin}: {state:?}");
    }
    for host in [
        own_host.clone(),
        format!("[::1]:{port}"),
        "localhost".into(),
    ] {
        let upgraded = raw_request(addr, &upgrade_request(&host, "")).await;
        assert_eq!(upgraded.status, 101, "{host}: {upgraded:?}");
    }
    assert_eq!(
        http_get(addr, "/healthz", "").await,
        (200, "ok\n".to_string())
    );
    served.dashboard().await;
}

#[tokio::test]
async fn a_bad_or_missing_token_closes_with_1008() {
    let project_token = "correct horse battery staple";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{project_token}\n")).unwrap();
    let settings = runner::server::ServerSettings {
        token_file: Some(token_file),
        allow_loopback_without_token: false,
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;

    let mut client = Client::connect(served.addr()).await;
    let mut hello = identify();
    hello["token"] = json!("guess");
    client.send(hello).await;
    assert_eq!(client.close_code().await, 1008);

    let mut client = Client::connect(served.addr()).await;
    client.send(identify()).await;
    assert_eq!(client.close_code().await, 1008);

    let mut client = Client::connect(served.addr()).await;
    let mut hello = identify();
    hello["token"] = json!(project_token);
    client.send(hello).await;
    assert_eq!(client.recv().await["type"], "identified");

    assert_eq!(http_get(served.addr(), "/api/state", "").await.0, 401);
    let bearer = format!("Authorization: Bearer {project_token}\r\n");
    assert_eq!(http_get(served.addr(), "/api/state", &bearer).await.0, 200);
}

#[tokio::test]
async fn a_non_loopback_address_without_a_token_is_refused() {
    let project = crate::support::Project::new(&format!("{HEADER}\n{PIPELINES}"));
    let config = project.config();
    let plugins = std::sync::Arc::new(runner::plugin::Plugins::load(&config, None).await.unwrap());
    let bus = runner::events::EventBus::new(1);
    let runner = runner::run::Runner::new(config, plugins, bus.clone()).unwrap();
    let service = runner::service::Service::new(std::sync::Arc::new(runner));
    let settings = runner::server::ServerSettings {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..settings()
    };
    let err = runner::server::serve(service, bus, settings)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("needs a token"), "{err}");
}

#[tokio::test]
async fn the_dashboard_past_the_limit_is_closed_with_1013() {
    let settings = runner::server::ServerSettings {
        max_dashboards: 2,
        max_agents: 1,
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let (_first, _) = served.dashboard().await;
    let (_second, _) = served.dashboard().await;
    let mut third = Client::connect(served.addr()).await;
    third.send(identify()).await;
    assert_eq!(third.close_code().await, 1013);

    // Agents count apart.
    let mut agent = Client::connect(served.addr()).await;
    agent.send(json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "agent", "name": "a1"}})).await;
    assert_eq!(agent.recv().await["kind"], "agent");
    let mut second_agent = Client::connect(served.addr()).await;
    second_agent
        .send(json!({"type": "identify", "protocol_version": "1.0", "client": {"kind": "agent"}}))
        .await;
    assert_eq!(second_agent.close_code().await, 1013);
}

#[tokio::test]
async fn a_message_over_one_mebibyte_closes_with_1009() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    let padding = "x".repeat(1 << 20);
    client
        .send_text(format!(r#"{{"type":"ping","padding":"{padding}"}}"#))
        .await;
    assert_eq!(client.close_code().await, 1009);
}

#[tokio::test]
async fn malformed_input_gets_an_error_and_the_connection_stays_usable() {
    let served = Served::start(PIPELINES, settings()).await;
    let mut client = Client::connect(served.addr()).await;
    client.send(json!({"type": "request_state", "id": 1})).await;
    let early = client.recv().await;
    assert_eq!(
        (early["code"].as_str(), early["id"].as_u64()),
        (Some("not_identified"), Some(1))
    );
    client.send(identify()).await;
    client.recv_until(|m| m["type"] == "state").await;

    client.send_text("{not json".into()).await;
    assert_eq!(client.recv().await["code"], "malformed");
    client.send_text("[1, 2]".into()).await;
    assert_eq!(client.recv().await["code"], "malformed");
    client.send(json!({"type": "launch", "id": "u"})).await;
    let unknown = client.recv().await;
    assert_eq!(
        (unknown["code"].as_str(), unknown["id"].as_str()),
        (Some("unknown_type"), Some("u"))
    );
    client.send(json!({"type": "abort_run", "id": "a"})).await;
    let invalid = client.recv().await;
    assert_eq!(
        (invalid["code"].as_str(), invalid["id"].as_str()),
        (Some("invalid"), Some("a"))
    );
    client
        .send(json!({"type": "identify", "protocol_version": "2.0.0", "client": {}}))
        .await;
    assert_eq!(client.recv().await["code"], "unsupported_version");

    client
        .send(json!({"type": "ping", "id": "still here"}))
        .await;
    let pong = client.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("still here"))
    );
}

#[tokio::test]
async fn an_unsupported_protocol_version_gets_an_error_then_a_1002_close_at_once() {
    // A heartbeat longer than every wait here: only an immediate close passes.
    let settings = runner::server::ServerSettings {
        heartbeat: Duration::from_secs(300),
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let mut client = Client::connect(served.addr()).await;
    client
        .send(json!({"type": "identify", "id": "v", "protocol_version": "2.0.0", "client": {"kind": "dashboard"}}))
        .await;
    let refused = client.recv().await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["code"].as_str(),
            refused["id"].as_str()
        ),
        (Some("error"), Some("unsupported_version"), Some("v")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("2.0.0"),
        "{refused}"
    );
    assert_eq!(client.close_code().await, 1002);
}

#[tokio::test]
async fn a_client_that_never_reads_holds_back_neither_the_others_nor_the_run() {
    // Much output (a few MB), so the stuck client's socket fills up.
    let pipelines = r#"
[[pipelines.default.batches]]
id = "loud"

[[pipelines.default.batches.tasks]]
id = "spew"
type = "exec"
config = { command = "head -c 3000000 /dev/zero | tr '\\0' x; echo" }
"#;
    let settings = runner::server::ServerSettings {
        client_queue: 64,
        heartbeat: Duration::from_secs(60),
        max_dashboards: 52,
        ..settings()
    };
    let served = Served::start(pipelines, settings).await;

    let mut stuck = Client::connect(served.addr()).await;
    stuck.send(identify()).await;

    let mut readers = Vec::new();
    for _ in 0..50 {
        readers.push(served.dashboard().await);
    }
    let (mut starter, _) = served.dashboard().await;
    start_run(&mut starter, "default").await;

    let watchers = readers.into_iter().map(|(mut client, state)| {
        tokio::spawn(async move {
            let first = state["snapshot"]["seq"].as_u64().unwrap() + 1;
            let messages = client.recv_until(run_ended).await;
            assert_consecutive(&seqs(&messages), first);
            messages.last().unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
    });
    for watcher in watchers {
        let status = tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(status, "completed");
    }
    // The service forgets the run just after its last event: wait for it.
    let mut idle = false;
    for _ in 0..3000 {
        if served.service.active_runs().is_empty() {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        idle,
        "the run should have ended: {:?}",
        served.service.active_runs()
    );
    drop(stuck);
}

#[tokio::test]
async fn a_lagging_client_is_told_and_replayed_without_a_gap() {
    let settings = runner::server::ServerSettings {
        client_queue: 16,
        heartbeat: Duration::from_secs(60),
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let (mut client, state) = served.dashboard().await;
    let first = state["snapshot"]["seq"].as_u64().unwrap() + 1;
    // More than the socket buffers hold while the client does not read,
    // and less than the bus's ring of 10,000.
    let line = "y".repeat(2048);
    let mut last = 0;
    for _ in 0..5000 {
        last = served.bus.publish(EventKind::Log {
            run_id: None,
            task_id: None,
            level: LogLevel::Info,
            source: "test".into(),
            stream: None,
            message: line.clone(),
        });
    }
    // Let the hub broadcast everything before the client reads.
    for _ in 0..1000 {
        if served.server.snapshot().seq == last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let messages = client.recv_until(|m| m["seq"].as_u64() == Some(last)).await;
    let lagged: Vec<&Value> = messages.iter().filter(|m| m["type"] == "lagged").collect();
    assert!(!lagged.is_empty(), "the client should have lagged");
    assert_consecutive(&seqs(&messages), first);
}

#[tokio::test]
async fn shutting_down_closes_clients_with_1001() {
    let served = Served::start(PIPELINES, settings()).await;
    let (mut client, _) = served.dashboard().await;
    let Served { server, .. } = served;
    let closing = tokio::spawn(server.shutdown());
    assert_eq!(client.close_code().await, 1001);
    tokio::time::timeout(WAIT, closing)
        .await
        .expect("shut down in time")
        .unwrap();
}

/// Reads `client` to its close frame; the messages before it and the code.
async fn read_to_close(client: &mut Client) -> (Vec<Value>, u16) {
    let mut seen = Vec::new();
    for _ in 0..100_000 {
        match tokio::time::timeout(WAIT, client.ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                seen.push(serde_json::from_str(&text).unwrap())
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                return (seen, frame.map_or(0, |f| f.code.into()));
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("failed before a close frame: {err}; read {seen:?}"),
            None => panic!("ended without a close frame; read {seen:?}"),
        }
    }
    panic!("no close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_right_after_a_run_sends_its_last_events_before_closing() {
    // A failing batch: its `batch_status` and the final `run_status` are the
    // last events, published just before the server is told to shut down,
    // as `runner run --serve` does.
    let pipelines = r#"
[[pipelines.default.batches]]
id = "doomed"

[[pipelines.default.batches.tasks]]
id = "fail"
type = "exec"
config = { command = "echo bye; exit 3" }
"#;
    for round in 0..5 {
        let served = Served::start(pipelines, settings()).await;
        let mut from_zero = Client::connect(served.addr()).await;
        let mut hello = identify();
        hello["after_seq"] = json!(0);
        from_zero.send(hello).await;
        assert_eq!(from_zero.recv().await["type"], "identified");
        let (mut from_snapshot, _) = served.dashboard().await;

        let mut bus = served.bus.subscribe();
        served.service.start_run(Some("default")).unwrap();
        let last = loop {
            let event = tokio::time::timeout(WAIT, bus.recv())
                .await
                .expect("the run ends")
                .unwrap();
            if matches!(&event.kind, EventKind::RunStatus { status, .. } if status.is_final()) {
                break event.seq;
            }
        };
        // Shut down at once, in this task, before the connections run again.
        let Served { server, .. } = served;
        let read_both = async {
            let zero = read_to_close(&mut from_zero).await;
            let snapshot = read_to_close(&mut from_snapshot).await;
            [("after_seq 0", zero), ("snapshot", snapshot)]
        };
        let ((), read) =
            tokio::time::timeout(WAIT, async { tokio::join!(server.shutdown(), read_both) })
                .await
                .expect("shut down in time");
        for (name, (seen, code)) in read {
            assert_eq!(code, 1001, "round {round}, {name}");
            let end = seen
                .iter()
                .find(|m| m["seq"].as_u64() == Some(last))
                .unwrap_or_else(|| panic!("round {round}, {name}: no final event in {seen:?}"));
            assert_eq!(
                (end["type"].as_str(), end["status"].as_str()),
                (Some("run_status"), Some("failed")),
                "round {round}, {name}"
            );
            assert!(
                seen.iter()
                    .any(|m| m["type"] == "batch_status" && m["status"] == "failed"),
                "round {round}, {name}: {seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_peer_that_misses_a_heartbeat_is_dropped_and_one_that_answers_stays() {
    // Long enough that a loaded machine schedules `lively` within one interval.
    let heartbeat = Duration::from_millis(500);
    let settings = runner::server::ServerSettings {
        heartbeat,
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let (mut silent, _) = served.dashboard().await;
    let (mut lively, _) = served.dashboard().await;
    // `lively` reads (and so answers pings) for several intervals; `silent` does not.
    let reading = async {
        let until = tokio::time::Instant::now() + heartbeat * 5;
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(until, lively.ws.next()).await {}
    };
    reading.await;
    lively.send(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(
        lively
            .recv_until(|m| m["id"] == "alive")
            .await
            .pop()
            .unwrap()["type"],
        "pong"
    );

    let mut ended = false;
    for _ in 0..10_000 {
        match tokio::time::timeout(WAIT, silent.ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(_)) => continue,
            _ => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the silent client should have been dropped");
}

#[tokio::test]
async fn a_client_queues_a_command_for_an_agent_watches_it_run_and_interrupts_it() {
    let fake = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/fake-agents/claude");
    let agents = format!(
        "[agents.fake]\nadapter = \"claude\"\ncommand = \"{}\"\nenv = {{ FAKE_AGENT_DELAY = \"0.5\" }}\n",
        fake.display()
    );
    let served = Served::start(&agents, settings()).await;
    let (mut client, _) = served.dashboard().await;
    client
        .send(json!({"type": "command_request", "id": "q", "agent": "fake", "prompt": "review", "priority": "high"}))
        .await;
    let accepted = client.recv_until(|m| m["id"] == "q").await.pop().unwrap();
    assert_eq!(accepted["type"], "command_accepted", "{accepted}");
    let command_id = accepted["command_id"].as_str().unwrap().to_string();
    let seen = client
        .recv_until(|m| m["type"] == "agent_activity" && m["command_id"] == command_id.as_str())
        .await;
    assert!(
        seen.iter().any(|m| m["type"] == "command_status"
            && m["status"] == "running"
            && m["priority"] == "high"),
        "the command ran at high priority"
    );
    client
        .send(json!({"type": "command_interrupt", "id": "x", "command_id": command_id}))
        .await;
    let answer = client.recv_until(|m| m["id"] == "x").await.pop().unwrap();
    assert_eq!(answer["type"], "interrupt_requested", "{answer}");
    let ended = client
        .recv_until(|m| {
            m["type"] == "command_status"
                && m["command_id"] == command_id.as_str()
                && m["status"] != "running"
        })
        .await
        .pop()
        .unwrap();
    assert_eq!(ended["status"], "interrupted", "{ended}");
}

#[tokio::test]
async fn a_client_resumes_after_a_restart_from_the_history_database() {
    use runner::store::{Recorder, Store};
    let project = crate::support::Project::new("version = 1\n");
    let db = project.dir.path().join("history.db");
    let log = |message: &str| EventKind::Log {
        run_id: None,
        task_id: None,
        level: LogLevel::Info,
        source: "test".into(),
        stream: None,
        message: message.into(),
    };
    // A first runner life: ten events, recorded, then gone.
    {
        let store = Store::open(&db).unwrap();
        let bus = runner::events::EventBus::new(store.last_seq() + 1);
        let recorder = Recorder::start(&store, &bus);
        for i in 1..=10 {
            bus.publish(log(&format!("before {i}")));
        }
        recorder.flush_async().await.unwrap();
    }
    // The next life numbers on from the history and serves it.
    let store = Store::open(&db).unwrap();
    store.recover("test restart").unwrap();
    let bus = runner::events::EventBus::new(store.last_seq() + 1);
    let _recorder = Recorder::start(&store, &bus);
    let config = project.config();
    let plugins = Arc::new(
        runner::plugin::Plugins::load(&config, Some(&[]))
            .await
            .unwrap(),
    );
    let runner = runner::run::Runner::new(config, plugins, bus.clone()).unwrap();
    let service = runner::service::Service::new(Arc::new(runner));
    let server =
        runner::server::serve_with_history(service, bus.clone(), settings(), Some(store.clone()))
            .await
            .unwrap();
    bus.publish(log("after 1"));

    let mut client = Client::connect(server.addr).await;
    client
        .send(json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "dashboard"}, "after_seq": 4}))
        .await;
    let seen = client.recv_until(|m| m["message"] == "after 1").await;
    let events: Vec<&Value> = seen.iter().filter(|m| m["type"] == "log").collect();
    let seqs: Vec<u64> = events.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (5..=11).collect::<Vec<u64>>(),
        "events 5..10 from the history, then 11 live"
    );
    assert_eq!(events[0]["message"], "before 5");
    // The connection is in the audit, without any token.
    store.flush().unwrap();
    let audit = store.connections(10).unwrap();
    assert!(
        audit
            .iter()
            .any(|c| c.client == "dashboard" && c.action == "connected"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn after_a_restart_the_snapshot_lists_the_runs_recorded_before_it() {
    use runner::store::{Recorder, Store};
    let project = crate::support::Project::new(&format!("{HEADER}\n{PIPELINES}"));
    let db = project.dir.path().join("history.db");
    let config = project.config();
    let plugins = Arc::new(runner::plugin::Plugins::load(&config, None).await.unwrap());
    // A first runner life: one run of `default`, recorded, then gone.
    let run_id = {
        let store = Store::open(&db).unwrap();
        let bus = runner::events::EventBus::new(store.last_seq() + 1);
        let recorder = Recorder::start(&store, &bus);
        let runner = runner::run::Runner::new(config.clone(), plugins.clone(), bus).unwrap();
        let report = runner
            .run("default", tokio_util::sync::CancellationToken::new())
            .await;
        assert_eq!(report.status, protocol::RunStatus::Completed);
        recorder.flush_async().await.unwrap();
        report.run_id
    };
    // The next life serves the same history; no event of that run is on its bus.
    let store = Store::open(&db).unwrap();
    store.recover("test restart").unwrap();
    let bus = runner::events::EventBus::new(store.last_seq() + 1);
    let _recorder = Recorder::start(&store, &bus);
    let runner = runner::run::Runner::new(config, plugins, bus.clone()).unwrap();
    let service = runner::service::Service::new(Arc::new(runner));
    let server = runner::server::serve_with_history(service, bus, settings(), Some(store))
        .await
        .unwrap();

    let mut client = Client::connect(server.addr).await;
    client.send(identify()).await;
    let state = client
        .recv_until(|m| m["type"] == "state")
        .await
        .pop()
        .unwrap();
    let snapshot = &state["snapshot"];
    let recent = &snapshot["recent_runs"][0];
    assert_eq!(
        (recent["run_id"].as_str(), recent["status"].as_str()),
        (Some(run_id.as_str()), Some("completed")),
        "{snapshot}"
    );
    assert_eq!(recent["pipeline"], "default");
    let batches: Vec<(&str, &str)> = recent["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["batch_id"].as_str().unwrap(),
                b["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(batches, [("first", "completed"), ("second", "completed")]);
    let mut tasks: Vec<&str> = recent["batches"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["hello", "world"]);
    assert!(recent["finished_at"].is_string(), "{recent}");
    assert_eq!(snapshot["pipelines"][0]["run_id"], run_id.as_str());
    assert_eq!(snapshot["pipelines"][0]["nodes"][1]["status"], "completed");
    // `/api/state` says the same.
    let (status, body) = http_get(server.addr, "/api/state", "").await;
    assert_eq!(status, 200);
    let over_http: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(over_http["recent_runs"][0]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn a_resume_from_an_unreadable_history_says_why_and_sends_the_state() {
    use runner::store::{Recorder, Store};
    let project = crate::support::Project::new("version = 1\n");
    let db = project.dir.path().join("history.db");
    {
        let store = Store::open(&db).unwrap();
        let bus = runner::events::EventBus::new(store.last_seq() + 1);
        let recorder = Recorder::start(&store, &bus);
        for i in 1..=10 {
            bus.publish(EventKind::Log {
                run_id: None,
                task_id: None,
                level: LogLevel::Info,
                source: "test".into(),
                stream: None,
                message: format!("before {i}"),
            });
        }
        recorder.flush_async().await.unwrap();
    }
    let store = Store::open(&db).unwrap();
    let bus = runner::events::EventBus::new(store.last_seq() + 1);
    let config = project.config();
    let plugins = Arc::new(
        runner::plugin::Plugins::load(&config, Some(&[]))
            .await
            .unwrap(),
    );
    let runner = runner::run::Runner::new(config, plugins, bus.clone()).unwrap();
    let service = runner::service::Service::new(Arc::new(runner));
    let server = runner::server::serve_with_history(service, bus, settings(), Some(store))
        .await
        .unwrap();
    // Another program breaks the history while the server holds it open.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE events;")
        .unwrap();

    let mut client = Client::connect(server.addr).await;
    client
        .send(json!({"type": "identify", "id": 1, "protocol_version": "1.0.0", "client": {"kind": "dashboard"}, "after_seq": 4}))
        .await;
    assert_eq!(client.recv().await["type"], "identified");
    let refused = client.recv().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("resume_unavailable")),
        "{refused}"
    );
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("could not be read from the history") && message.contains("events"),
        "{message}"
    );
    assert_eq!(client.recv().await["type"], "state");
}

/// This process's resident set, in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// Issue 9.3: each lagging client's replay was serialized whole before it
/// was written (5,000 events of 2 KiB for each of 25 clients: +340 MiB that
/// stayed after they left). Replays now hold one frame at a time. The bound
/// is wide: tests running beside this one share the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_of_lagging_clients_leaves_the_server_near_its_idle_memory() {
    let settings = runner::server::ServerSettings {
        client_queue: 16,
        heartbeat: Duration::from_secs(120),
        max_dashboards: 60,
        ..settings()
    };
    let served = Served::start(PIPELINES, settings).await;
    let before = rss_mib();
    let mut clients = Vec::new();
    for _ in 0..25 {
        clients.push(served.dashboard().await.0);
    }
    let line = "y".repeat(2048);
    let mut last = 0;
    for _ in 0..5000 {
        last = served.bus.publish(EventKind::Log {
            run_id: None,
            task_id: None,
            level: LogLevel::Info,
            source: "test".into(),
            stream: None,
            message: line.clone(),
        });
    }
    let readers = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            client.recv_until(|m| m["seq"].as_u64() == Some(last)).await;
        })
    });
    for reader in readers {
        reader.await.unwrap();
    }
    let after = rss_mib();
    assert!(
        after < before + 200,
        "RSS went from {before} MiB to {after} MiB"
    );
}
