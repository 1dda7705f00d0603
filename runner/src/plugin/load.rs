//! Loading: bytes → (sha256 check) → compiled or cached component → world
//! detected from its exports → a typed `InstancePre` → `describe`.

use super::bindings::{latest, v0_1_0};
use super::engine::Stamp;
use super::state::StoreState;
use super::{Engine, EngineLimits, LoadError, Plugin, Pre, World, check};
use crate::config::{Config, PluginDecl, PluginSource};
use crate::events::EventBus;
use crate::hash::sha256_hex;
use indexmap::IndexMap;
use protocol::{CompileStatus, EventKind};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasSelf, Linker, types::ComponentItem};
use wasmtime_wasi::p2::bindings::CommandPre;

/// Every plugin a run needs, loaded.
pub struct Plugins {
    engine: Arc<Engine>,
    plugins: IndexMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// Builds the engine for `config` and loads the named plugins (all when
    /// `names` is `None`).
    pub async fn load(config: &Config, names: Option<&[String]>) -> Result<Self, LoadError> {
        Self::load_reporting(config, names, None).await
    }

    /// [`Plugins::load`], publishing `plugin_compile` events on `bus` before
    /// and after compiling each component that is not in the compile cache.
    pub async fn load_reporting(
        config: &Config,
        names: Option<&[String]>,
        bus: Option<&EventBus>,
    ) -> Result<Self, LoadError> {
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
        // All at once (their compiles and cache reads run on blocking
        // threads side by side); the first failure in declaration order
        // is the one reported.
        let loaded = futures_util::future::join_all(
            wanted
                .iter()
                .map(|decl| load_one(&engine, &linker, decl, bus)),
        )
        .await;
        let mut plugins = IndexMap::new();
        for (decl, plugin) in wanted.iter().zip(loaded) {
            plugins.insert(decl.name.clone(), Arc::new(plugin?));
        }
        Ok(Self { engine, plugins })
    }

    /// Plugins loaded one by one through `engine` ([`Plugin::load`]), by name.
    pub fn from_loaded(engine: Arc<Engine>, loaded: impl IntoIterator<Item = Arc<Plugin>>) -> Self {
        let plugins = loaded
            .into_iter()
            .map(|plugin| (plugin.name().to_string(), plugin))
            .collect();
        Self { engine, plugins }
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
        let plugin = load_one(&self.engine, &linker, decl, None).await?;
        let mut plugins = self.plugins.clone();
        plugins.insert(decl.name.clone(), Arc::new(plugin));
        Ok(Self {
            engine: self.engine.clone(),
            plugins,
        })
    }
}

impl Plugin {
    /// Loads one component as `decl` says through `engine` (and its compile
    /// cache): what a worker does with a plugin it fetched from the queue.
    pub async fn load(engine: &Arc<Engine>, decl: &PluginDecl) -> Result<Self, LoadError> {
        let linker = linker(engine)?;
        load_one(engine, &linker, decl, None).await
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
    // Every version's host interfaces: a component imports those of the
    // version it was built against.
    link(latest::host::add_to_linker::<_, HasSelf<_>>(
        &mut linker,
        |s| s,
    ))?;
    link(latest::types::add_to_linker::<_, HasSelf<_>>(
        &mut linker,
        |s| s,
    ))?;
    link(v0_1_0::host::add_to_linker::<_, HasSelf<_>>(
        &mut linker,
        |s| s,
    ))?;
    link(v0_1_0::types::add_to_linker::<_, HasSelf<_>>(
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
    bus: Option<&EventBus>,
) -> Result<Plugin, LoadError> {
    let fail = |message: String| LoadError {
        plugin: decl.name.clone(),
        origin: origin(decl),
        message,
    };
    let read = || -> Result<Arc<std::borrow::Cow<'static, [u8]>>, LoadError> {
        // Shared with the compile thread without copying a big component.
        Ok(Arc::new(match &decl.source {
            PluginSource::Builtin(name) => crate::builtin::bytes(name)
                .ok_or_else(|| fail("no such built-in plugin".into()))?
                .into(),
            PluginSource::Path(path) => std::fs::read(path)
                .map_err(|err| fail(format!("cannot read the component: {err}")))?
                .into(),
        }))
    };
    // A file hashed before, unchanged since and compiled in the cache is
    // neither read nor hashed again: for an 18 MB Python component that is
    // most of a start (see `engine`).
    let (bytes, sha256, size_bytes) = match &decl.source {
        PluginSource::Path(path) => {
            let before = Stamp::of(path);
            let known = before.and_then(|stamp| engine.known_digest(path, stamp));
            match (before, known) {
                (Some(stamp), Some(sha256)) if engine.is_cached(&sha256) => {
                    (None, sha256, stamp.size())
                }
                _ => {
                    let bytes = read()?;
                    let sha256 = sha256_hex(&bytes);
                    if let Some(stamp) = before
                        && Stamp::of(path) == Some(stamp)
                    {
                        engine.remember_digest(path, stamp, &sha256);
                    }
                    let size = bytes.len() as u64;
                    (Some(bytes), sha256, size)
                }
            }
        }
        PluginSource::Builtin(name) => {
            let bytes = read()?;
            let sha256 =
                crate::builtin::sha256(name).map_or_else(|| sha256_hex(&bytes), str::to_string);
            let size = bytes.len() as u64;
            (Some(bytes), sha256, size)
        }
    };
    // What the compatibility check says of a component that fails (the
    // file is read now if a start did not need it).
    let explain_it = |message: String| -> String {
        match &bytes {
            Some(bytes) => explain(bytes, message),
            None => match read() {
                Ok(bytes) => explain(&bytes, message),
                Err(_) => message,
            },
        }
    };
    if let Some(expected) = &decl.sha256
        && *expected != sha256
    {
        return Err(fail(format!(
            "sha256 mismatch: runner.toml says {expected}, the file is {sha256}; update `plugins.{}.sha256` if the new file is trusted",
            decl.name
        )));
    }
    let compiling = !engine.is_cached(&sha256);
    let report = |status: CompileStatus, duration_ms: Option<u64>, error: Option<String>| {
        if let Some(bus) = bus
            && compiling
        {
            bus.publish(EventKind::PluginCompile {
                plugin: decl.name.clone(),
                size_bytes,
                status,
                duration_ms,
                error,
            });
        }
    };
    report(CompileStatus::Compiling, None, None);
    let started = Instant::now();
    let engine_for_compile = engine.clone();
    let shared = match &bytes {
        Some(bytes) => Some(bytes.clone()),
        // An unusable cache entry after all: compile from the file.
        None if !engine.is_cached(&sha256) => Some(read()?),
        None => None,
    };
    let key = sha256.clone();
    let path = match &decl.source {
        PluginSource::Path(path) => Some(path.clone()),
        PluginSource::Builtin(_) => None,
    };
    let compiled = tokio::task::spawn_blocking(move || match shared {
        Some(bytes) => engine_for_compile.component(&bytes, &key),
        None => engine_for_compile.cached_component(&key).or_else(|_| {
            let bytes = std::fs::read(path.expect("only files skip reading"))?;
            engine_for_compile.component(&bytes, &key)
        }),
    })
    .await
    .map_err(|err| fail(format!("compilation panicked: {err}")))?
    .map_err(|err| format!("{err:#}"));
    let took = Some(started.elapsed().as_millis() as u64);
    let (component, how) = match compiled {
        Ok(compiled) => {
            report(CompileStatus::Compiled, took, None);
            compiled
        }
        Err(err) => {
            report(CompileStatus::Failed, took, Some(err.clone()));
            return Err(fail(explain_it(format!(
                "not a valid WebAssembly component: {err}"
            ))));
        }
    };
    let (world, wit_version) = detect_world(engine, &component).ok_or_else(|| {
        fail(explain_it("exports none of runner:plugin/block, runner:plugin/batch, runner:plugin/agent-adapter or wasi:cli/run".into()))
    })?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|err| fail(explain_it(format!("cannot be linked: {err:#}"))))?;
    let typed = |err: wasmtime::Error| {
        fail(explain_it(format!(
            "does not match the {} world: {err:#}",
            world.name()
        )))
    };
    let old = wit_version == "runner:plugin@0.1.0";
    let pre = match world {
        World::Block if old => Pre::V0_1(v0_1_0::Pre::Block(
            v0_1_0::block::BlockPluginPre::new(instance_pre).map_err(typed)?,
        )),
        World::Batch if old => Pre::V0_1(v0_1_0::Pre::Batch(
            v0_1_0::batch::BatchPluginPre::new(instance_pre).map_err(typed)?,
        )),
        World::AgentAdapter if old => Pre::V0_1(v0_1_0::Pre::Agent(
            v0_1_0::agent::AgentPluginPre::new(instance_pre).map_err(typed)?,
        )),
        World::Block => {
            Pre::Block(latest::block::BlockPluginPre::new(instance_pre).map_err(typed)?)
        }
        World::Batch => Pre::Batch {
            attempts: None,
            pre: latest::batch::BatchPluginPre::new(instance_pre).map_err(typed)?,
        },
        World::AttemptsBatch => Pre::Batch {
            attempts: Some(latest::attempts::GuestIndices::new(&instance_pre).map_err(typed)?),
            pre: latest::batch::BatchPluginPre::new(instance_pre).map_err(typed)?,
        },
        World::AgentAdapter => Pre::Agent {
            approvals: None,
            pre: latest::agent::AgentPluginPre::new(instance_pre).map_err(typed)?,
        },
        World::ApprovingAgent => Pre::Agent {
            approvals: Some(latest::approvals::GuestIndices::new(&instance_pre).map_err(typed)?),
            pre: latest::agent::AgentPluginPre::new(instance_pre).map_err(typed)?,
        },
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

/// The world a component implements and the package version it was built
/// against (`runner:plugin@0.1.0`), read from its exports.
fn detect_world(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Option<(World, String)> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty
        .exports(engine.wasmtime())
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name)
        .collect();
    for name in &exports {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let known = check::VERSIONS.iter().any(|(v, _)| *v == version);
        let world = match path {
            "runner:plugin/block" if known => World::Block,
            "runner:plugin/batch" if known => {
                let attempts = format!("runner:plugin/attempts@{version}");
                if exports.contains(&attempts.as_str()) {
                    World::AttemptsBatch
                } else {
                    World::Batch
                }
            }
            "runner:plugin/agent-adapter" if known => {
                let approvals = format!("runner:plugin/approvals@{version}");
                if exports.contains(&approvals.as_str()) {
                    World::ApprovingAgent
                } else {
                    World::AgentAdapter
                }
            }
            "wasi:cli/run" => World::Command,
            _ => continue,
        };
        let package = path.split('/').next().unwrap_or(path);
        return Some((world, format!("{package}@{version}")));
    }
    None
}

/// `message`, or better, what the compatibility check found wrong.
fn explain(bytes: &[u8], message: String) -> String {
    match check::check(bytes) {
        Ok(report) if !report.problems.is_empty() => report.to_string(),
        Err(err) => err.to_string(),
        Ok(_) => message,
    }
}
