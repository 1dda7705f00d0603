//! WebSocket load figures: `cargo bench -p runner --bench ws_load`.
//!
//! Prints, without asserting anything, for 50 clients on loopback, for
//! `runner serve` and, in the same run, for a baseline: a bare
//! tokio-tungstenite server that broadcasts each event's JSON (serialized
//! once) to every client through a `tokio::sync::broadcast` channel, each
//! client's queued frames written together, with no protocol, history or
//! backpressure policy of its own:
//! 1. events per second delivered: a burst of log events published as fast
//!    as possible, until every client has the last one (and the ratio of
//!    runner to baseline);
//! 2. p50/p99 latency from publishing to a client parsing the event, for
//!    events published at 10,000 per second (10 each millisecond);
//! 3. for the runner only, p50/p99 latency from a process writing a line
//!    (an `exec` task printing its clock) to a client parsing the
//!    `terminal_output` event.
//!
//! The clients run in the same process and on the same cores as the
//! server, so these figures include their own parsing.
//! `RUNNER_BENCH_CLIENTS`, `RUNNER_BENCH_BURST`, `RUNNER_BENCH_PACED`
//! (events at 10/ms) and `RUNNER_BENCH_LINES` change the counts. The
//! figures are also merged into `target/bench/summary.json` under `ws`.

mod summary;

use futures_util::{SinkExt, StreamExt};
use protocol::{EventKind, LogLevel};
use runner::config::Config;
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::Runner;
use runner::server::{ServerSettings, serve};
use runner::service::Service;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client measured.
#[derive(Default)]
struct Measured {
    /// When (since the base instant) the last burst event arrived.
    burst_end_ns: u64,
    burst_received: usize,
    /// Publish → receipt, per paced event.
    paced_ns: Vec<u64>,
    /// Process write → receipt, per line.
    line_ns: Vec<u64>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

async fn client(
    addr: std::net::SocketAddr,
    base: Instant,
    ready: mpsc::Sender<()>,
    burst_done: Arc<AtomicUsize>,
) -> Measured {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect");
    let hello =
        json!({"type": "identify", "protocol_version": "1.0.0", "client": {"kind": "dashboard"}});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .expect("identify");
    let mut measured = Measured::default();
    let mut readied = false;
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(text)) = message else {
            continue;
        };
        let received_ns = base.elapsed().as_nanos() as u64;
        let value: Value = serde_json::from_str(&text).expect("JSON");
        match value["type"].as_str() {
            Some("state") if !readied => {
                readied = true;
                ready.send(()).await.expect("main waits");
            }
            Some("lagged") => eprintln!("a client lagged: {value}"),
            Some("log") => {
                let text = value["message"].as_str().unwrap_or_default();
                let (kind, at) = text.split_once(' ').unwrap_or((text, "0"));
                let at: u64 = at.parse().unwrap_or(0);
                match kind {
                    "burst" => measured.burst_received += 1,
                    "burst-end" => {
                        measured.burst_received += 1;
                        measured.burst_end_ns = received_ns;
                        burst_done.fetch_add(1, Ordering::SeqCst);
                    }
                    "paced" => measured.paced_ns.push(received_ns.saturating_sub(at)),
                    "done" => break,
                    _ => {}
                }
            }
            Some("terminal_output") => {
                let now = unix_nanos();
                for line in value["data"].as_str().unwrap_or_default().lines() {
                    if let Ok(written) = line.trim().parse::<u64>() {
                        measured.line_ns.push(now.saturating_sub(written));
                    }
                }
            }
            _ => {}
        }
    }
    measured
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1e6
}

fn log(message: String) -> EventKind {
    EventKind::Log {
        run_id: None,
        task_id: None,
        level: LogLevel::Info,
        source: "bench".into(),
        stream: None,
        message,
    }
}

/// What the burst and the paced phases measured on one server.
#[derive(Default)]
struct Fanout {
    /// When the burst began (since the clients' base instant).
    burst_start_ns: u64,
    events_per_s: f64,
    paced_ns: Vec<u64>,
}

impl Fanout {
    /// The figures, from what the clients measured.
    fn measured(&mut self, measured: &[Measured]) {
        let end = measured.iter().map(|m| m.burst_end_ns).max().unwrap_or(0);
        let delivered: usize = measured.iter().map(|m| m.burst_received).sum();
        self.events_per_s =
            delivered as f64 / (end.saturating_sub(self.burst_start_ns) as f64 / 1e9);
        self.paced_ns = measured
            .iter()
            .flat_map(|m| m.paced_ns.iter().copied())
            .collect();
        self.paced_ns.sort_unstable();
    }
}

/// Connects the clients to `addr`, waits until each has its `state`, then
/// runs the burst and the paced phase through `publish`. Returns the
/// figures and the clients, still connected (they end at a `done` event).
async fn fanout(
    addr: std::net::SocketAddr,
    clients: usize,
    burst: usize,
    paced: usize,
    publish: &(dyn Fn(String) + Sync),
) -> (Fanout, Vec<tokio::task::JoinHandle<Measured>>) {
    let base = Instant::now();
    let (ready_tx, mut ready) = mpsc::channel(clients);
    let burst_done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(addr, base, ready_tx.clone(), burst_done.clone())))
        .collect();
    for _ in 0..clients {
        ready.recv().await.expect("a client is ready");
    }

    // 1. A burst.
    let burst_start = base.elapsed().as_nanos() as u64;
    for i in 0..burst {
        let kind = if i + 1 == burst { "burst-end" } else { "burst" };
        publish(format!("{kind} {}", base.elapsed().as_nanos()));
        if i % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Let every client drain the burst before measuring latency.
    for _ in 0..6000 {
        if burst_done.load(Ordering::SeqCst) == clients {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2. Paced: 10 events each millisecond, 10,000 a second.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..paced {
        if i % 10 == 0 {
            tick.tick().await;
        }
        publish(format!("paced {}", base.elapsed().as_nanos()));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let figures = Fanout {
        burst_start_ns: burst_start,
        ..Fanout::default()
    };
    (figures, tasks)
}

/// Sends `done` through `publish` and collects what every client measured.
async fn finish(
    tasks: Vec<tokio::task::JoinHandle<Measured>>,
    publish: &(dyn Fn(String) + Sync),
) -> Vec<Measured> {
    publish("done".into());
    let mut measured = Vec::new();
    for task in tasks {
        measured.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("clients end")
                .expect("client"),
        );
    }
    measured
}

/// The baseline: a bare tokio-tungstenite server broadcasting each event's
/// JSON to every client. It answers `identify` with a `state` frame so the
/// same clients can measure it.
async fn baseline_server(
    frames: tokio::sync::broadcast::Sender<tokio_tungstenite::tungstenite::Utf8Bytes>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the baseline");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut frames = frames.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _identify = ws.next().await;
                let state = Message::Text(r#"{"type":"state"}"#.into());
                if ws.send(state).await.is_err() {
                    return;
                }
                // Every frame already queued goes out in one write.
                loop {
                    let text = match frames.recv().await {
                        Ok(text) => text,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    };
                    if ws.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                    while let Ok(text) = frames.try_recv() {
                        if ws.feed(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn main() {
    let clients = count("RUNNER_BENCH_CLIENTS", 50);
    let burst = count("RUNNER_BENCH_BURST", 8000);
    let paced = count("RUNNER_BENCH_PACED", 20000);
    let lines = count("RUNNER_BENCH_LINES", 300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ws-load-state");
        let toml = format!(
            "version = 1\n\n[defaults]\nstate_dir = {:?}\n\n[[pipelines.lines.batches]]\nid = \"print\"\n\n\
             [[pipelines.lines.batches.tasks]]\nid = \"clock\"\ntype = \"exec\"\n\
             config = {{ command = \"for i in $(seq 1 {lines}); do date +%s%N; sleep 0.005; done\" }}\n",
            state.display().to_string()
        );
        let path = dir.path().join("runner.toml");
        std::fs::write(&path, toml).expect("write runner.toml");
        let config = Arc::new(Config::load(&path).unwrap_or_else(|err| panic!("{err}")));
        let pipeline = config.pipeline(Some("lines")).expect("pipeline").clone();
        let used = config.plugins_used_by(&pipeline);
        let plugins = Arc::new(Plugins::load(&config, Some(&used)).await.unwrap_or_else(|err| panic!("{err}")));
        let bus = EventBus::new(1);
        let runner = Runner::new(config, plugins, bus.clone()).unwrap_or_else(|err| panic!("{err}"));
        let service = Service::new(Arc::new(runner));
        let settings = ServerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_dashboards: clients.max(50),
            ..ServerSettings::default()
        };
        let server = serve(service.clone(), bus.clone(), settings).await.unwrap_or_else(|err| panic!("{err}"));

        // The baseline first, then the runner, in the same process.
        let (frames, _) = tokio::sync::broadcast::channel(16384);
        let baseline_addr = baseline_server(frames.clone()).await;
        let seq = AtomicUsize::new(0);
        let publish_bare = |message: String| {
            let event = json!({
                "seq": seq.fetch_add(1, Ordering::Relaxed) + 1,
                "time": chrono::Utc::now(),
                "type": "log",
                "level": "info",
                "source": "bench",
                "message": message,
            });
            let _ = frames.send(event.to_string().into());
        };
        let (mut bare, tasks) = fanout(baseline_addr, clients, burst, paced, &publish_bare).await;
        bare.measured(&finish(tasks, &publish_bare).await);

        let publish_runner = |message: String| {
            bus.publish(log(message));
        };
        let (mut ours, tasks) = fanout(server.addr, clients, burst, paced, &publish_runner).await;

        // 3. A process printing its clock, to the runner's clients.
        let mut events = bus.subscribe();
        service.start_run(Some("lines")).expect("start the run");
        while let Some(event) = events.recv().await {
            if matches!(&event.kind, EventKind::RunStatus { status, .. } if status.is_final()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let measured = finish(tasks, &publish_runner).await;
        ours.measured(&measured);
        server.shutdown().await;

        let ratio = ours.events_per_s / bare.events_per_s;
        println!("ws_load: {clients} clients on loopback, the baseline and runner in one run");
        println!("  burst of {burst} events to each client, delivered:");
        println!("    bare tokio-tungstenite broadcast  {:>10.0} events/s", bare.events_per_s);
        println!("    runner serve                      {:>10.0} events/s  ({ratio:.2}x the baseline)", ours.events_per_s);
        println!("  publish -> receipt at 10,000 events/s ({paced} events to each client):");
        let mut summary = json!({"clients": clients, "burst_ratio": ratio});
        for (name, key, figures) in [("bare tokio-tungstenite", "bare", &bare), ("runner serve", "runner", &ours)] {
            let got = figures.paced_ns.len();
            println!(
                "    {name:<32}  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({got} received)",
                percentile(&figures.paced_ns, 0.50),
                percentile(&figures.paced_ns, 0.99),
                percentile(&figures.paced_ns, 1.0)
            );
            summary[key] = json!({
                "burst_events_per_s": figures.events_per_s,
                "paced_p50_ms": percentile(&figures.paced_ns, 0.50),
                "paced_p99_ms": percentile(&figures.paced_ns, 0.99),
                "paced_received": got,
            });
        }
        let mut line_ns: Vec<u64> = measured.iter().flat_map(|m| m.line_ns.iter().copied()).collect();
        line_ns.sort_unstable();
        println!(
            "  runner: process line -> receipt ({} receipts, 1 line/5ms): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            line_ns.len(),
            percentile(&line_ns, 0.50),
            percentile(&line_ns, 0.99),
            percentile(&line_ns, 1.0)
        );
        summary["runner"]["line_p50_ms"] = json!(percentile(&line_ns, 0.50));
        summary["runner"]["line_p99_ms"] = json!(percentile(&line_ns, 0.99));
        summary::merge("ws", summary);
    });
}
