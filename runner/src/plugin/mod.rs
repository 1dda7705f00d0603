//! Plugins: WASI components loaded once, instantiated fresh for every call.
//!
//! Loading is `bytes → (sha256 check) → compiled or cached Component →
//! world detected from its exports → InstancePre`; every call then gets a
//! new [`wasmtime::Store`] with the plugin's own capabilities, memory limit
//! and deadline, so one plugin's trap, timeout or memory bomb fails that
//! call alone.

mod bindings;
mod engine;
mod state;
mod trap;

pub use bindings::batch::exports::runner::plugin::batch::{
    BatchOutcome, ExecutionMode, Expansion, TaskResult, TaskSpec, TaskState,
};
pub use engine::{Compiled, EPOCH_TICK, Engine, EngineLimits};
pub use state::{MemoryLimitExceeded, Signal, Sink, discard};

use crate::config::{Capabilities, Config, DirGrant, PluginDecl, PluginSource};
use anyhow::Context as _;
use bindings::agent::AgentPluginPre;
use bindings::batch::BatchPluginPre;
use bindings::block::BlockPluginPre;
use bindings::types::PluginInfo;
use indexmap::IndexMap;
use protocol::Stream;
use sha2::{Digest, Sha256};
use state::{MemoryLimiter, OutputPipe, StoreState};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable, types::ComponentItem};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// How long `describe`, `expand` and `reduce` may take.
pub const HOUSEKEEPING_TIMEOUT: Duration = Duration::from_secs(30);

/// Which world a component implements, read from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Block,
    Batch,
    AgentAdapter,
    /// A `wasi:cli/command`: a script.
    Command,
}

impl World {
    /// The world's name as `runner plugins` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Block => "block-plugin",
            Self::Batch => "batch-plugin",
            Self::AgentAdapter => "agent-plugin",
            Self::Command => "wasi:cli/command",
        }
    }
}

/// A plugin that could not be loaded. Names the plugin and what to fix.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` ({origin}): {message}")]
pub struct LoadError {
    pub plugin: String,
    pub origin: String,
    pub message: String,
}

/// Why a call into a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {}", humanize(*.0))]
    TimedOut(Duration),
    #[error("{0}")]
    OutOfMemory(MemoryLimitExceeded),
    #[error("overflowed its stack")]
    StackOverflow,
    /// The stack Rust and C keep in linear memory ran out ([`trap`]).
    #[error("overflowed its stack (an out-of-bounds access below the stack region)")]
    LinearStackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exited with code {0}")]
    Exit(i32),
    #[error("was stopped: the run was aborted")]
    Aborted,
    #[error("{0}")]
    Other(String),
}

/// The epoch callback's error once a deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline reached")]
struct TimedOut;

/// One loaded plugin.
pub struct Plugin {
    pub decl: PluginDecl,
    pub world: World,
    /// The WIT package (or WASI version) the component was built against.
    pub wit_version: String,
    /// What `describe` returned (scripts have none).
    pub info: Option<Info>,
    pub compiled: Compiled,
    pub sha256: String,
    engine: Arc<Engine>,
    pre: Pre,
}

/// A plugin's own description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: String,
}

impl From<PluginInfo> for Info {
    fn from(info: PluginInfo) -> Self {
        Self {
            name: info.name,
            version: info.version,
            description: info.description,
            config_schema: info.config_schema,
        }
    }
}

enum Pre {
    Block(BlockPluginPre<StoreState>),
    Batch(BatchPluginPre<StoreState>),
    Agent(AgentPluginPre<StoreState>),
    Command(CommandPre<StoreState>),
}

/// Extra settings of one call (scripts take arguments and variables).
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Directories to grant instead of the plugin's own `capabilities.dirs`
    /// (a batch's worktree remaps those inside the repository).
    pub dirs: Option<Vec<DirGrant>>,
}

/// Every plugin a run needs, loaded.
pub struct Plugins {
    engine: Arc<Engine>,
    plugins: IndexMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// Builds the engine for `config` and loads the named plugins (all when
    /// `names` is `None`).
    pub async fn load(config: &Config, names: Option<&[String]>) -> Result<Self, LoadError> {
        let max_memory = config
            .plugins
            .values()
            .map(|p| p.memory)
            .max()
            .unwrap_or(config.defaults.memory);
        let limits = EngineLimits {
            max_memory,
            instances: (config.defaults.concurrency as u32 + 8) * 2,
        };
        let engine =
            Engine::new(limits, Some(config.state_dir().join("cache"))).map_err(|err| {
                LoadError {
                    plugin: "*".into(),
                    origin: "engine".into(),
                    message: format!("cannot create the wasm engine: {err:#}"),
                }
            })?;
        let engine = Arc::new(engine);
        let linker = linker(&engine)?;

        let wanted: Vec<&PluginDecl> = config
            .plugins
            .values()
            .filter(|p| names.is_none_or(|names| names.contains(&p.name)))
            .collect();
        let mut plugins = IndexMap::new();
        for decl in wanted {
            let plugin = load_one(&engine, &linker, decl).await?;
            plugins.insert(decl.name.clone(), Arc::new(plugin));
        }
        Ok(Self { engine, plugins })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// These plugins with `decl`'s component read again and compiled
    /// through the same engine (and its cache); the others are shared.
    /// `runner watch` uses it when a component file changes.
    pub async fn reload(&self, decl: &PluginDecl) -> Result<Self, LoadError> {
        let linker = linker(&self.engine)?;
        let plugin = load_one(&self.engine, &linker, decl).await?;
        let mut plugins = self.plugins.clone();
        plugins.insert(decl.name.clone(), Arc::new(plugin));
        Ok(Self {
            engine: self.engine.clone(),
            plugins,
        })
    }
}

/// The host interfaces every plugin may import.
fn linker(engine: &Engine) -> Result<Linker<StoreState>, LoadError> {
    let mut linker = Linker::<StoreState>::new(engine.wasmtime());
    let link = |result: wasmtime::Result<()>| {
        result.map_err(|err| LoadError {
            plugin: "*".into(),
            origin: "linker".into(),
            message: format!("{err:#}"),
        })
    };
    link(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
    link(bindings::host::add_to_linker::<_, HasSelf<_>>(
        &mut linker,
        |s| s,
    ))?;
    link(bindings::types::add_to_linker::<_, HasSelf<_>>(
        &mut linker,
        |s| s,
    ))?;
    Ok(linker)
}

fn origin(decl: &PluginDecl) -> String {
    match &decl.source {
        PluginSource::Builtin(name) => format!("built-in `{name}`"),
        PluginSource::Path(path) => path.display().to_string(),
    }
}

async fn load_one(
    engine: &Arc<Engine>,
    linker: &Linker<StoreState>,
    decl: &PluginDecl,
) -> Result<Plugin, LoadError> {
    let fail = |message: String| LoadError {
        plugin: decl.name.clone(),
        origin: origin(decl),
        message,
    };
    let bytes: std::borrow::Cow<'static, [u8]> = match &decl.source {
        PluginSource::Builtin(name) => crate::builtin::bytes(name)
            .ok_or_else(|| fail("no such built-in plugin".into()))?
            .into(),
        PluginSource::Path(path) => std::fs::read(path)
            .map_err(|err| fail(format!("cannot read the component: {err}")))?
            .into(),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &decl.sha256
        && *expected != sha256
    {
        return Err(fail(format!(
            "sha256 mismatch: runner.toml says {expected}, the file is {sha256}; update `plugins.{}.sha256` if the new file is trusted",
            decl.name
        )));
    }
    let engine_for_compile = engine.clone();
    let compiled = tokio::task::spawn_blocking(move || engine_for_compile.component(&bytes))
        .await
        .map_err(|err| fail(format!("compilation panicked: {err}")))?
        .map_err(|err| fail(format!("not a valid WebAssembly component: {err:#}")))?;
    let (component, how) = compiled;
    let (world, wit_version) = detect_world(engine, &component).ok_or_else(|| {
        fail("exports none of runner:plugin/block, runner:plugin/batch, runner:plugin/agent-adapter or wasi:cli/run".into())
    })?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|err| fail(format!("cannot be linked: {err:#}")))?;
    let typed = |err: wasmtime::Error| {
        fail(format!(
            "does not match the {} world: {err:#}",
            world.name()
        ))
    };
    let pre = match world {
        World::Block => Pre::Block(BlockPluginPre::new(instance_pre).map_err(typed)?),
        World::Batch => Pre::Batch(BatchPluginPre::new(instance_pre).map_err(typed)?),
        World::AgentAdapter => Pre::Agent(AgentPluginPre::new(instance_pre).map_err(typed)?),
        World::Command => Pre::Command(CommandPre::new(instance_pre).map_err(typed)?),
    };
    let mut plugin = Plugin {
        decl: decl.clone(),
        world,
        wit_version,
        info: None,
        compiled: how,
        sha256,
        engine: engine.clone(),
        pre,
    };
    if world != World::Command {
        let info = plugin
            .describe()
            .await
            .map_err(|err| fail(format!("`describe` failed: {err}")))?;
        plugin.info = Some(info);
    }
    Ok(plugin)
}

fn detect_world(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Option<(World, String)> {
    let ty = component.component_type();
    for (name, item) in ty.exports(engine.wasmtime()) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            continue;
        }
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let world = match path {
            "runner:plugin/block" => World::Block,
            "runner:plugin/batch" => World::Batch,
            "runner:plugin/agent-adapter" => World::AgentAdapter,
            "wasi:cli/run" => World::Command,
            _ => continue,
        };
        let package = path.split('/').next().unwrap_or(path);
        return Some((world, format!("{package}@{version}")));
    }
    None
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.decl.name
    }

    fn store(
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

    /// Runs `call` against a fresh store under `timeout`, turning traps,
    /// timeouts and memory exhaustion into a [`CallError`].
    async fn guarded<T>(
        &self,
        timeout: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<T, CallError> {
        // The epoch deadline stops wasm; this also bounds host waits.
        let grace = EPOCH_TICK * 4 + Duration::from_millis(100);
        match tokio::time::timeout(timeout.saturating_add(grace), call).await {
            Err(_) => Err(CallError::TimedOut(timeout)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(err, timeout)),
        }
    }

    pub async fn describe(&self) -> Result<Info, CallError> {
        let mut store = self.store(discard(), HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        self.guarded(HOUSEKEEPING_TIMEOUT, async {
            Ok::<_, wasmtime::Error>(match &self.pre {
                Pre::Block(pre) => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_block()
                        .call_describe(&mut store)
                        .await?
                }
                Pre::Batch(pre) => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_batch()
                        .call_describe(&mut store)
                        .await?
                }
                Pre::Agent(pre) => {
                    pre.instantiate_async(&mut store)
                        .await?
                        .runner_plugin_agent_adapter()
                        .call_describe(&mut store)
                        .await?
                }
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
        let Pre::Block(pre) = &self.pre else {
            return Err(self.wrong_world(World::Block));
        };
        let mut store = self.store(sink, timeout, options)?;
        self.guarded(timeout, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .runner_plugin_block()
                .call_run(&mut store, config, input)
                .await
        })
        .await
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
        let result = self
            .guarded(timeout, async {
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
        let Pre::Batch(pre) = &self.pre else {
            return Err(self.wrong_world(World::Batch));
        };
        let mut store = self.store(sink, HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        self.guarded(HOUSEKEEPING_TIMEOUT, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .runner_plugin_batch()
                .call_expand(&mut store, spec, tasks)
                .await
        })
        .await
    }

    pub async fn reduce(
        &self,
        spec: &str,
        results: &[TaskResult],
        sink: Sink,
    ) -> Result<BatchOutcome, CallError> {
        let Pre::Batch(pre) = &self.pre else {
            return Err(self.wrong_world(World::Batch));
        };
        let mut store = self.store(sink, HOUSEKEEPING_TIMEOUT, &CallOptions::default())?;
        self.guarded(HOUSEKEEPING_TIMEOUT, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .runner_plugin_batch()
                .call_reduce(&mut store, spec, results)
                .await
        })
        .await
    }

    fn wrong_world(&self, wanted: World) -> CallError {
        CallError::Other(format!(
            "plugin `{}` is a {}, not a {}",
            self.decl.name,
            self.world.name(),
            wanted.name()
        ))
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.decl.name)
            .field("world", &self.world)
            .finish_non_exhaustive()
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

/// `1.5s`, `2m`, `250ms`.
pub fn humanize(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

pub use bindings::agent::exports::runner::plugin::agent_adapter::{
    AgentEvent, AgentRequest, ChangeKind, Invocation, Outcome, OutputStream,
};

/// One agent adapter instance, alive for one execution so it can keep
/// state between output lines.
pub struct AgentSession {
    store: Store<StoreState>,
    instance: bindings::agent::AgentPlugin,
    timeout: Duration,
}

impl Plugin {
    /// A fresh adapter instance whose calls must all end within `timeout`.
    pub async fn agent_session(
        &self,
        timeout: Duration,
        sink: Sink,
    ) -> Result<AgentSession, CallError> {
        let Pre::Agent(pre) = &self.pre else {
            return Err(self.wrong_world(World::AgentAdapter));
        };
        let mut store = self.store(sink, timeout, &CallOptions::default())?;
        let instance = self
            .guarded(timeout, pre.instantiate_async(&mut store))
            .await?;
        Ok(AgentSession {
            store,
            instance,
            timeout,
        })
    }
}

impl AgentSession {
    async fn guarded<T>(
        &mut self,
        call: impl AsyncFnOnce(
            &mut Store<StoreState>,
            &bindings::agent::AgentPlugin,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let timeout = self.timeout;
        let grace = EPOCH_TICK * 4 + Duration::from_millis(100);
        let limit = timeout.saturating_add(grace);
        match tokio::time::timeout(limit, call(&mut self.store, &self.instance)).await {
            Err(_) => Err(CallError::TimedOut(timeout)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(err, timeout)),
        }
    }

    /// Checks the request and builds the command line.
    pub async fn start(
        &mut self,
        request: &AgentRequest,
    ) -> Result<Result<Invocation, String>, CallError> {
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_start(store, request)
                .await
        })
        .await
    }

    /// Parses one line of the CLI's output.
    pub async fn parse_line(
        &mut self,
        stream: Stream,
        line: &str,
    ) -> Result<Vec<AgentEvent>, CallError> {
        let source = match stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_parse_line(store, source, line)
                .await
        })
        .await
    }

    /// The CLI ended with `exit_code`.
    pub async fn finish(&mut self, exit_code: Option<i32>) -> Result<Outcome, CallError> {
        self.guarded(async |store, instance| {
            instance
                .runner_plugin_agent_adapter()
                .call_finish(store, exit_code)
                .await
        })
        .await
    }
}
