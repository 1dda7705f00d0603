//! Calling into a plugin: a fresh store per call with the plugin's
//! capabilities, memory limit and deadline; traps, timeouts and memory
//! exhaustion become a [`CallError`].

use super::bindings::v0_1_0::{self, Convert};
use super::state::{MemoryLimiter, OutputPipe, StoreState, discard};
use super::{
    BatchOutcome, CallError, CallOptions, EPOCH_TICK, Expansion, HOUSEKEEPING_TIMEOUT, Info,
    MemoryLimitExceeded, Plugin, Pre, Sink, TaskResult, TaskSpec, TimedOut, World, trap,
};
use crate::config::{Capabilities, DirGrant};
use anyhow::Context as _;
use protocol::Stream;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

impl Plugin {
    pub fn name(&self) -> &str {
        &self.decl.name
    }

    pub(super) fn store(
        &self,
        sink: Sink,
        timeout: Duration,
        options: &CallOptions,
    ) -> Result<Store<StoreState>, CallError> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(OutputPipe {
            stream: Stream::Stdout,
            sink: sink.clone(),
        });
        wasi.stderr(OutputPipe {
            stream: Stream::Stderr,
            sink: sink.clone(),
        });
        let dirs = options
            .dirs
            .as_deref()
            .unwrap_or(&self.decl.capabilities.dirs);
        grant(&mut wasi, dirs, &self.decl.capabilities)
            .map_err(|err| CallError::Other(format!("{err:#}")))?;
        for (key, value) in &options.env {
            wasi.env(key, value);
        }
        let mut args = vec![self.decl.name.clone()];
        args.extend(options.args.iter().cloned());
        wasi.args(&args);
        let state = StoreState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: self.decl.memory,
            },
            sink,
            _live: self.engine.live_store(),
        };
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|state| &mut state.limiter);
        // A deadline past the clock's end is no deadline at all.
        let deadline = Instant::now().checked_add(timeout);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                Err(TimedOut.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    pub async fn describe(&self) -> Result<Info, CallError> {
        let mut store = self.store(discard(), HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        guarded(HOUSEKEEPING_TIMEOUT, async {
            Ok::<_, wasmtime::Error>(match &self.pre {
                Pre::Block(pre) => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_block()
                        .call_describe(&mut store)
                        .await?
                }
                Pre::Batch { pre, .. } => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_batch()
                        .call_describe(&mut store)
                        .await?
                }
                Pre::Agent { pre, .. } => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_agent_adapter()
                        .call_describe(&mut store)
                        .await?
                }
                Pre::V0_1(v0_1_0::Pre::Block(pre)) => pre
                    .instantiate_async(&mut store)
                    .await?
                    .runner_plugin_block()
                    .call_describe(&mut store)
                    .await?
                    .convert(),
                Pre::V0_1(v0_1_0::Pre::Batch(pre)) => pre
                    .instantiate_async(&mut store)
                    .await?
                    .runner_plugin_batch()
                    .call_describe(&mut store)
                    .await?
                    .convert(),
                Pre::V0_1(v0_1_0::Pre::Agent(pre)) => pre
                    .instantiate_async(&mut store)
                    .await?
                    .runner_plugin_agent_adapter()
                    .call_describe(&mut store)
                    .await?
                    .convert(),
                Pre::Command(_) => return Err(wasmtime::Error::msg("a command has no `describe`")),
            })
        })
        .await
        .map(Info::from)
    }

    /// Runs a block: `Ok(Ok(output))`, `Ok(Err(message))` when the block
    /// failed the task, `Err` when the call itself failed.
    pub async fn run_block(
        &self,
        config: &str,
        input: &str,
        timeout: Duration,
        sink: Sink,
    ) -> Result<Result<String, String>, CallError> {
        self.run_block_with(config, input, timeout, sink, &CallOptions::default())
            .await
    }

    /// [`Plugin::run_block`] with call options (the directories it is granted).
    pub async fn run_block_with(
        &self,
        config: &str,
        input: &str,
        timeout: Duration,
        sink: Sink,
        options: &CallOptions,
    ) -> Result<Result<String, String>, CallError> {
        let mut store = self.store(sink, timeout, options)?;
        match &self.pre {
            Pre::Block(pre) => {
                guarded(timeout, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_block()
                        .call_run(&mut store, config, input)
                        .await
                })
                .await
            }
            Pre::V0_1(v0_1_0::Pre::Block(pre)) => {
                guarded(timeout, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_block()
                        .call_run(&mut store, config, input)
                        .await
                })
                .await
            }
            _ => Err(self.wrong_world(World::Block)),
        }
    }

    /// Runs a script to its end; `Ok(code)` is its exit code.
    pub async fn run_script(
        &self,
        options: &CallOptions,
        timeout: Duration,
        sink: Sink,
    ) -> Result<i32, CallError> {
        let Pre::Command(pre) = &self.pre else {
            return Err(self.wrong_world(World::Command));
        };
        let mut store = self.store(sink, timeout, options)?;
        let result = guarded(timeout, async {
            let command = pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(CallError::Exit(code)) => Ok(code),
            Err(err) => Err(err),
        }
    }

    pub async fn expand(
        &self,
        spec: &str,
        tasks: &[TaskSpec],
        sink: Sink,
    ) -> Result<Result<Expansion, String>, CallError> {
        let mut store = self.store(sink, HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        match &self.pre {
            Pre::Batch { pre, .. } => {
                guarded(HOUSEKEEPING_TIMEOUT, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_batch()
                        .call_expand(&mut store, spec, tasks)
                        .await
                })
                .await
            }
            Pre::V0_1(v0_1_0::Pre::Batch(pre)) => {
                let tasks: Vec<_> = tasks.to_vec().convert();
                guarded(HOUSEKEEPING_TIMEOUT, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_batch()
                        .call_expand(&mut store, spec, &tasks)
                        .await
                })
                .await
                .map(Convert::convert)
            }
            _ => Err(self.wrong_world(World::Batch)),
        }
    }

    pub async fn reduce(
        &self,
        spec: &str,
        results: &[TaskResult],
        sink: Sink,
    ) -> Result<BatchOutcome, CallError> {
        let mut store = self.store(sink, HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        match &self.pre {
            Pre::Batch { pre, .. } => {
                guarded(HOUSEKEEPING_TIMEOUT, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_batch()
                        .call_reduce(&mut store, spec, results)
                        .await
                })
                .await
            }
            Pre::V0_1(v0_1_0::Pre::Batch(pre)) => {
                let results: Vec<_> = results.to_vec().convert();
                guarded(HOUSEKEEPING_TIMEOUT, async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .runner_plugin_batch()
                        .call_reduce(&mut store, spec, &results)
                        .await
                })
                .await
                .map(Convert::convert)
            }
            _ => Err(self.wrong_world(World::Batch)),
        }
    }

    pub(super) fn wrong_world(&self, wanted: World) -> CallError {
        CallError::Other(format!(
            "plugin `{}` is a {}, not a {}",
            self.decl.name,
            self.world.name(),
            wanted.name()
        ))
    }
}

fn grant(
    wasi: &mut wasmtime_wasi::WasiCtxBuilder,
    dirs: &[DirGrant],
    caps: &Capabilities,
) -> anyhow::Result<()> {
    for dir in dirs {
        let perms = if dir.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot open `{}` for the plugin", dir.host.display()))?;
    }
    for name in &caps.env {
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
    for (key, value) in &caps.vars {
        wasi.env(key, value);
    }
    Ok(())
}

/// Awaits `call` (wasm running in a store whose epoch deadline is
/// `timeout`), turning traps, timeouts and memory exhaustion into a
/// [`CallError`]. The epoch deadline stops wasm; the outer timeout, a little
/// longer, also bounds host waits.
pub(super) async fn guarded<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<T, CallError> {
    let grace = EPOCH_TICK * 4 + Duration::from_millis(100);
    match tokio::time::timeout(timeout.saturating_add(grace), call).await {
        Err(_) => Err(CallError::TimedOut(timeout)),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(classify(err, timeout)),
    }
}

fn classify(err: wasmtime::Error, timeout: Duration) -> CallError {
    if err.downcast_ref::<TimedOut>().is_some() {
        return CallError::TimedOut(timeout);
    }
    if let Some(oom) = err.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::OutOfMemory(MemoryLimitExceeded {
            desired: oom.desired,
            limit: oom.limit,
        });
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Exit(exit.0);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::StackOverflow => CallError::StackOverflow,
            Trap::MemoryOutOfBounds => match trap::out_of_bounds(&err) {
                Some(trap::OutOfBounds::StackOverflow) => CallError::LinearStackOverflow,
                Some(trap::OutOfBounds::PossiblyStackOverflow) => {
                    CallError::Trap(format!("{trap} (possibly a stack overflow)"))
                }
                _ => CallError::Trap(trap.to_string()),
            },
            trap => CallError::Trap(trap.to_string()),
        };
    }
    CallError::Other(format!("{err:#}"))
}
