//! History figures: `cargo bench -p runner --bench store`.
//!
//! Prints, without asserting anything:
//! 1. events written per second to the store through a [`Recorder`]: a mix of
//!    log lines, 1 KB output chunks and task events published as fast as the
//!    bus takes them, timed until the store has written the last one; and how
//!    long publishing alone took (the run never waits for the disk);
//! 2. the run-time overhead of recording: the same pipeline (chaos blocks in
//!    `log` mode, so each task publishes progress, logs and output) run with
//!    and without a recorder, the recorder's time including the final flush.
//!
//! `RUNNER_BENCH_EVENTS`, `RUNNER_BENCH_TASKS` and `RUNNER_BENCH_ROUNDS`
//! change the counts. (b) runs 2,000 tasks, 15 times each way: with 500
//! tasks and 5 rounds, runs of 13 ms put the overhead anywhere from +3 % to
//! +25 % on the same code.

mod summary;

use protocol::{EventKind, LogLevel, Priority, RunStatus, Stream, TaskStatus};
use runner::builtin::PLUGIN_DIR;
use runner::config::Config;
use runner::events::EventBus;
use runner::plugin::Plugins;
use runner::run::Runner;
use runner::store::{Recorder, Store};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The `i`-th event of the mix: mostly output and logs, a task every 50.
fn event(i: usize, chunk: &str) -> EventKind {
    let run_id = "bench-run".to_string();
    let task_id = format!("t{}", i / 50);
    match i % 50 {
        0 => EventKind::TaskStarted {
            run_id,
            batch_id: "b".into(),
            task_id,
            task_type: "exec".into(),
            name: "task".into(),
            priority: Priority::Normal,
            display_text: None,
        },
        49 => EventKind::TaskFinished {
            run_id,
            batch_id: "b".into(),
            task_id,
            task_type: "exec".into(),
            name: "task".into(),
            status: TaskStatus::Completed,
            started_at: None,
            finished_at: chrono::Utc::now(),
            duration_ms: 1,
            result: None,
            error: None,
            exit_code: Some(0),
        },
        n if n % 3 == 0 => EventKind::Log {
            run_id: Some(run_id),
            task_id: Some(task_id),
            level: LogLevel::Info,
            source: "bench".into(),
            stream: None,
            message: format!("log line {i}"),
        },
        _ => EventKind::TerminalOutput {
            run_id: Some(run_id),
            task_id: Some(task_id),
            command_id: None,
            stream: Stream::Stdout,
            sequence: i as u64,
            data: chunk.to_string(),
        },
    }
}

fn events_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("history.db")).unwrap_or_else(|err| panic!("{err}"));
    let bus = EventBus::new(store.last_seq() + 1);
    let recorder = Recorder::start(&store, &bus);
    let events = count("RUNNER_BENCH_EVENTS", 100_000);
    let chunk = "x".repeat(1023) + "\n";
    bus.publish(EventKind::RunStatus {
        run_id: "bench-run".into(),
        pipeline: "bench".into(),
        status: RunStatus::Running,
        message: None,
        error: None,
    });
    recorder.flush().unwrap();
    let start = Instant::now();
    for i in 0..events {
        bus.publish(event(i, &chunk));
    }
    let published = start.elapsed();
    recorder.flush().unwrap();
    let written = start.elapsed();
    let size = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(dir.path().join("history.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!("(a) events written to the store: {events} events (2/3 are 1 KB output chunks)");
    println!(
        "    publishing took {} ({:.0} events/s); written in {} → {:.0} events/s; {:.1} MB on disk",
        millis(published),
        events as f64 / published.as_secs_f64(),
        millis(written),
        events as f64 / written.as_secs_f64(),
        size as f64 / 1e6
    );
    summary::merge(
        "store_write",
        serde_json::json!({ "events": events, "events_per_s": events as f64 / written.as_secs_f64() }),
    );
}

/// A `runner.toml` with `tasks` chaos blocks in `log` mode in one parallel batch.
fn project(dir: &Path, state: &Path, tasks: usize) -> Arc<Config> {
    let chaos = Path::new(PLUGIN_DIR)
        .join("chaos.wasm")
        .display()
        .to_string();
    let mut toml = format!(
        "version = 1\n\n[defaults]\nstate_dir = {:?}\nconcurrency = 4\n\n[plugins.chaos]\npath = {chaos:?}\n\n\
         [[pipelines.default.batches]]\nid = \"logs\"\ntype = \"parallel\"\n",
        state.display().to_string(),
    );
    for i in 0..tasks {
        write!(
            toml,
            "\n[[pipelines.default.batches.tasks]]\nid = \"t{i}\"\ntype = \"chaos\"\nconfig = {{ mode = \"log\" }}\n"
        )
        .unwrap();
    }
    let path = dir.join("runner.toml");
    std::fs::write(&path, toml).unwrap();
    Arc::new(Config::load(&path).unwrap_or_else(|err| panic!("{err}")))
}

/// One run of the pipeline: how long the run took and, with a store, how
/// long until everything was written; and how many events it published.
async fn timed_run(
    config: &Arc<Config>,
    plugins: &Arc<Plugins>,
    store: Option<&Store>,
) -> (Duration, Duration, u64) {
    let bus = EventBus::new(store.map_or(1, |s| s.last_seq() + 1));
    let recorder = store.map(|store| Recorder::start(store, &bus));
    let runner = Runner::new(config.clone(), plugins.clone(), bus.clone())
        .unwrap_or_else(|err| panic!("{err}"));
    let first = bus.next_seq();
    let start = Instant::now();
    let report = runner.run("default", CancellationToken::new()).await;
    let ran = start.elapsed();
    if let Some(recorder) = &recorder {
        recorder.flush_async().await.unwrap();
    }
    let written = start.elapsed();
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    (ran, written, bus.next_seq() - first)
}

async fn overhead() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = count("RUNNER_BENCH_TASKS", 2000);
    let rounds = count("RUNNER_BENCH_ROUNDS", 15).max(1);
    let config = project(dir.path(), &dir.path().join("state"), tasks);
    let pipeline = config.pipeline(None).unwrap().clone();
    let used = config.plugins_used_by(&pipeline);
    let plugins = Arc::new(
        Plugins::load(&config, Some(&used))
            .await
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let store = Store::open(dir.path().join("history.db")).unwrap_or_else(|err| panic!("{err}"));
    // Warm up both ways once.
    timed_run(&config, &plugins, None).await;
    timed_run(&config, &plugins, Some(&store)).await;
    let (mut without, mut with, mut written) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = 0;
    for _ in 0..rounds {
        without.push(timed_run(&config, &plugins, None).await.0);
        let (ran, all_written, n) = timed_run(&config, &plugins, Some(&store)).await;
        with.push(ran);
        written.push(all_written);
        events = n;
    }
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (a, b, c) = (median(without), median(with), median(written));
    let percent = |d: Duration| (d.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0;
    println!(
        "(b) run-time overhead of recording: {tasks} chaos `log` tasks, {events} events a run, median of {rounds}"
    );
    println!(
        "    without the store {}   with it: run {} ({:+.1}%), until all written {} ({:+.1}%)",
        millis(a),
        millis(b),
        percent(b),
        millis(c),
        percent(c)
    );
    summary::merge(
        "store",
        serde_json::json!({
            "tasks": tasks,
            "events_per_run": events,
            "without_ms": a.as_secs_f64() * 1e3,
            "with_ms": b.as_secs_f64() * 1e3,
            "until_written_ms": c.as_secs_f64() * 1e3,
            "run_overhead_percent": percent(b),
            "until_written_overhead_percent": percent(c),
        }),
    );
}

fn main() {
    events_per_second();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(overhead());
}
