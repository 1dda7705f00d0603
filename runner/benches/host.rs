//! Host figures: `cargo bench -p runner --bench host`.
//!
//! Prints, without asserting anything:
//! 1. warm instantiate-and-call of a no-op block (the `chaos` test plugin
//!    in `noop` mode): a fresh store and instance per call, as every task gets;
//! 2. the first start of a run (empty cache: compile) against the second
//!    (cached): `Plugins::load` plus a one-task run;
//! 3. tasks per second through the scheduler: no-op block tasks in one
//!    parallel batch, concurrency 8;
//! 4. for comparison, the same warm call on a bare wasmtime engine set up as
//!    the runner's, then with pooling-allocator settings that keep memory
//!    resident between instances (what dominates (1) is the kernel: page
//!    faults on fresh pages and `madvise` when a slot is given back).
//!
//! `RUNNER_BENCH_CALLS` and `RUNNER_BENCH_TASKS` change the counts.

mod summary;

use runner::builtin::PLUGIN_DIR;
use runner::config::Config;
use runner::events::EventBus;
use runner::plugin::{Plugins, discard};
use runner::run::Runner;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn chaos() -> String {
    Path::new(PLUGIN_DIR)
        .join("chaos.wasm")
        .display()
        .to_string()
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `runner.toml` in `dir` with the chaos block and `tasks` no-op tasks
/// in one parallel batch.
fn project(dir: &Path, state: &Path, tasks: usize, concurrency: usize) -> Arc<Config> {
    let mut toml = format!(
        "version = 1\n\n[defaults]\nstate_dir = {:?}\nconcurrency = {concurrency}\n\n\
         [plugins.chaos]\npath = {:?}\n\n[[pipelines.default.batches]]\nid = \"noops\"\ntype = \"parallel\"\n",
        state.display().to_string(),
        chaos()
    );
    for i in 0..tasks {
        write!(
            toml,
            "\n[[pipelines.default.batches.tasks]]\nid = \"t{i}\"\ntype = \"chaos\"\n"
        )
        .unwrap();
    }
    let path = dir.join("runner.toml");
    std::fs::write(&path, toml).unwrap();
    Arc::new(Config::load(&path).unwrap_or_else(|err| panic!("{err}")))
}

/// What `runner run` does before and while running: load the pipeline's plugins, run it.
async fn start_and_run(config: &Arc<Config>) -> (Duration, Duration) {
    let started = Instant::now();
    let pipeline = config.pipeline(None).unwrap().clone();
    let used = config.plugins_used_by(&pipeline);
    let plugins = Arc::new(
        Plugins::load(config, Some(&used))
            .await
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let loaded = started.elapsed();
    let runner = Runner::new(config.clone(), plugins, EventBus::new(1))
        .unwrap_or_else(|err| panic!("{err}"));
    let report = runner.run(&pipeline.name, CancellationToken::new()).await;
    assert_eq!(
        report.status,
        protocol::RunStatus::Completed,
        "{:?}",
        report.error
    );
    (loaded, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn warm_calls() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path(), &dir.path().join("state"), 1, 8);
    let plugins = Plugins::load(&config, Some(&["chaos".to_string()]))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let chaos = plugins.get("chaos").unwrap().clone();
    let (config_json, input) = (r#"{"mode":"noop"}"#, r#"{"outputs":{}}"#);
    let timeout = Duration::from_secs(30);
    let calls = count("RUNNER_BENCH_CALLS", 5000).max(2000);
    for _ in 0..500 {
        chaos
            .run_block(config_json, input, timeout, discard())
            .await
            .unwrap()
            .unwrap();
    }
    let mut samples = Vec::with_capacity(calls);
    let all = Instant::now();
    for _ in 0..calls {
        let start = Instant::now();
        let output = chaos
            .run_block(config_json, input, timeout, discard())
            .await;
        samples.push(start.elapsed());
        assert_eq!(output.unwrap().unwrap(), "null");
    }
    let total = all.elapsed();
    samples.sort();
    println!("(a) warm instantiate-and-call of a no-op block (chaos noop), {calls} calls");
    println!(
        "    median {}   p90 {}   p99 {}   min {}   max {}   ({:.0} calls/s on one task)",
        micros(percentile(&samples, 0.5)),
        micros(percentile(&samples, 0.9)),
        micros(percentile(&samples, 0.99)),
        micros(samples[0]),
        micros(samples[samples.len() - 1]),
        calls as f64 / total.as_secs_f64()
    );
    summary::merge(
        "host_warm_call",
        serde_json::json!({
            "median_us": percentile(&samples, 0.5).as_secs_f64() * 1e6,
            "p99_us": percentile(&samples, 0.99).as_secs_f64() * 1e6,
        }),
    );
    println!(
        "    target: median under 25 µs → {}",
        if percentile(&samples, 0.5) < Duration::from_micros(25) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "    pooling allocator: {}",
        if plugins.engine().pooling() {
            "on"
        } else {
            "off (on-demand)"
        }
    );
}

async fn cold_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = project(dir.path(), &state, 1, 8);
    let (cold_load, cold_total) = start_and_run(&config).await;
    let (warm_load, warm_total) = start_and_run(&config).await;
    let cached_files = std::fs::read_dir(state.join("cache"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!("(b) start of a run: Plugins::load (chaos + parallel) + a one-task run");
    println!(
        "    first  (empty cache, compiles): load {}   total {}",
        millis(cold_load),
        millis(cold_total)
    );
    println!(
        "    second (cached, deserializes):  load {}   total {}",
        millis(warm_load),
        millis(warm_total)
    );
    println!(
        "    {:.1}x faster; {cached_files} files in the cache",
        cold_total.as_secs_f64() / warm_total.as_secs_f64()
    );
}

async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = count("RUNNER_BENCH_TASKS", 2000);
    let concurrency = 8;
    let config = project(dir.path(), &dir.path().join("state"), tasks, concurrency);
    let pipeline = config.pipeline(None).unwrap().clone();
    let used = config.plugins_used_by(&pipeline);
    let plugins = Arc::new(
        Plugins::load(&config, Some(&used))
            .await
            .unwrap_or_else(|err| panic!("{err}")),
    );
    let bus = EventBus::new(1);
    let mut events = bus.subscribe();
    let runner = Runner::new(config.clone(), plugins, bus).unwrap_or_else(|err| panic!("{err}"));
    let start = Instant::now();
    let report = runner.run(&pipeline.name, CancellationToken::new()).await;
    let took = start.elapsed();
    assert_eq!(
        report.status,
        protocol::RunStatus::Completed,
        "{:?}",
        report.error
    );
    let mut published = 0;
    while events.try_recv().is_ok() {
        published += 1;
    }
    println!(
        "(c) scheduler throughput: {tasks} no-op block tasks, one parallel batch, concurrency {concurrency}"
    );
    println!(
        "    {} for the run → {:.0} tasks/s ({} per task, {published} events)",
        millis(took),
        tasks as f64 / took.as_secs_f64(),
        micros(took / tasks as u32)
    );
    summary::merge(
        "host_scheduler",
        serde_json::json!({ "tasks": tasks, "tasks_per_s": tasks as f64 / took.as_secs_f64() }),
    );
}

/// Per-call state of the bare engine: WASI and a memory cap, as in the runner.
struct Bare {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    limits: wasmtime::StoreLimits,
}

impl wasmtime_wasi::WasiView for Bare {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Median of `calls` warm calls of chaos `noop` on an engine with `pool`.
async fn bare_median(
    pool: wasmtime::PoolingAllocationConfig,
    calls: usize,
) -> anyhow::Result<Duration> {
    use wasmtime::component::{Component, Linker};
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = wasmtime::Engine::new(&config)?;
    let component = Component::from_file(&engine, chaos())?;
    let mut linker = Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // `runner:plugin/host` (log, progress): a no-op block never calls it.
    linker.define_unknown_imports_as_traps(&component)?;
    let pre = linker.instantiate_pre(&component)?;
    // The test plugins follow the newest WIT; an older build has 0.1.0.
    let block = ["runner:plugin/block@0.2.0", "runner:plugin/block@0.1.0"]
        .into_iter()
        .find_map(|name| component.get_export_index(None, name))
        .expect("a block");
    let run = component
        .get_export_index(Some(&block), "run")
        .expect("block.run");
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 500 {
        let start = Instant::now();
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        wasi.args(&["chaos"]);
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(256 << 20)
            .build();
        let state = Bare {
            wasi: wasi.build(),
            table: Default::default(),
            limits,
        };
        let mut store = wasmtime::Store::new(&engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        let instance = pre.instantiate_async(&mut store).await?;
        let func =
            instance.get_typed_func::<(&str, &str), (Result<String, String>,)>(&mut store, &run)?;
        let (output,) = func
            .call_async(&mut store, (r#"{"mode":"noop"}"#, r#"{"outputs":{}}"#))
            .await?;
        assert_eq!(output.as_deref(), Ok("null"));
        drop(store);
        if i >= 500 {
            samples.push(start.elapsed());
        }
    }
    samples.sort();
    Ok(percentile(&samples, 0.5))
}

async fn bare_engine_variants() {
    let calls = count("RUNNER_BENCH_CALLS", 5000).max(2000);
    let runner_like = || {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(32)
            .total_core_instances(128)
            .total_memories(64)
            .total_tables(64)
            .total_stacks(32)
            .max_memory_size(256 << 20);
        pool
    };
    let mut resident = runner_like();
    resident
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(512 << 10);
    let mut scan = runner_like();
    scan.pagemap_scan(wasmtime::Enabled::Yes);
    let mut both = runner_like();
    both.pagemap_scan(wasmtime::Enabled::Yes)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(512 << 10);
    println!(
        "(d) the same warm call on a bare wasmtime engine (no runner code around it), median of {calls}"
    );
    for (name, pool) in [
        ("pooling as the runner sets it", runner_like()),
        (
            "+ keep 4 MiB memory / 64 KiB table / 512 KiB stack resident",
            resident,
        ),
        ("+ pagemap_scan", scan),
        ("+ both", both),
    ] {
        match bare_median(pool, calls).await {
            Ok(median) => println!("    {name:<62} median {}", micros(median)),
            Err(err) => println!("    {name:<62} unavailable: {err:#}"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "runner host benchmark · {threads} cores · {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        warm_calls().await;
        cold_and_cached().await;
        throughput().await;
        bare_engine_variants().await;
    });
}
