//! The one wasmtime [`Engine`] of a runner, its epoch ticker and its
//! on-disk cache of compiled components.
//!
//! ## Interruption
//! Epoch interruption is on. A ticker thread bumps the epoch every
//! [`EPOCH_TICK`]; each store's deadline callback yields to tokio on every
//! tick (so a spinning plugin never hogs a worker thread) and traps with
//! [`TimedOut`] once the task's deadline has passed.
//!
//! ## Cache
//! `<state>/cache/<sha256 of the component>-<engine hash>.cwasm`: a
//! second start deserializes instead of compiling. The engine hash covers
//! the wasmtime version and every setting that changes the machine code.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The runner's engine: shared by every plugin and every task.
pub struct Engine {
    inner: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
    pooling: bool,
    /// A short hash of everything about this engine that changes machine
    /// code: part of every cache file's name.
    hash: String,
    stop_ticker: Arc<AtomicBool>,
}

/// The hex SHA-256 of a component's bytes: its identity in the cache and
/// what `plugins.NAME.sha256` is checked against.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sizing of the engine, from `runner.toml`.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// The largest memory limit of any plugin.
    pub max_memory: u64,
    /// How many plugin instances may live at once.
    pub instances: u32,
}

/// How a component came to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Compiled now (and written to the cache).
    Fresh,
    /// Read from the cache.
    Cached,
}

impl Engine {
    /// Builds the engine with the pooling allocator, or the on-demand one
    /// when the address space cannot hold the pool.
    pub fn new(limits: EngineLimits, cache_dir: Option<PathBuf>) -> Result<Self> {
        let mut config = base_config();
        let mut pool = PoolingAllocationConfig::default();
        let slots = limits.instances.clamp(16, 1000);
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 2)
            .total_stacks(slots)
            .max_memory_size(limits.max_memory as usize)
            // Reusing a slot costs page faults and madvise; keeping the
            // first pages resident (and scanning which pages were touched,
            // where the kernel allows) halves a warm call.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(512 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let (inner, pooling) = match wasmtime::Engine::new(&config) {
            Ok(engine) => (engine, true),
            Err(err) => {
                tracing::info!("pooling allocator unavailable ({err:#}); allocating on demand");
                let mut config = base_config();
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                (wasmtime::Engine::new(&config)?, false)
            }
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = inner.weak();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("runner-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("cannot start the epoch ticker thread")?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        inner.precompile_compatibility_hash().hash(&mut hasher);
        let hash = format!("{:016x}", hasher.finish());
        Ok(Self {
            inner,
            cache_dir,
            pooling,
            hash,
            stop_ticker,
        })
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles `bytes`, or loads the cached compilation of the same bytes
    /// for this same engine. `sha256` is the hex SHA-256 of `bytes`
    /// ([`sha256_hex`]): the caller hashes once, as a big component costs
    /// milliseconds per pass.
    pub fn component(&self, bytes: &[u8], sha256: &str) -> Result<(Component, Compiled)> {
        let Some(file) = self.cache_file(sha256) else {
            return Ok((Component::new(&self.inner, bytes)?, Compiled::Fresh));
        };
        if file.is_file() {
            match self.deserialize(&file) {
                Ok(component) => return Ok((component, Compiled::Cached)),
                Err(err) => {
                    tracing::warn!("ignoring unusable cache entry {}: {err:#}", file.display())
                }
            }
        }
        let component = Component::new(&self.inner, bytes)?;
        if let Err(err) = write_atomically(&file, &component.serialize()?) {
            tracing::warn!("cannot write the compile cache {}: {err:#}", file.display());
        }
        Ok((component, Compiled::Fresh))
    }

    /// Whether the compilation of the component whose hex SHA-256 is
    /// `sha256` is in the cache, so that [`Engine::component`] reads it
    /// instead of compiling.
    pub fn is_cached(&self, sha256: &str) -> bool {
        self.cache_file(sha256).is_some_and(|file| file.is_file())
    }

    fn cache_file(&self, sha256: &str) -> Option<PathBuf> {
        let cache_dir = self.cache_dir.as_ref()?;
        Some(cache_dir.join(format!("{sha256}-{}.cwasm", self.hash)))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, file: &Path) -> Result<Component> {
        // SAFETY: the file sits in the runner's own cache directory, was
        // written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the name), and is replaced only by
        // an atomic rename, so it is never seen half-written.
        Ok(unsafe { Component::deserialize_file(&self.inner, file) }?)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file.parent().context("cache file has no directory")?;
    std::fs::create_dir_all(dir)?;
    // Unique per writer: two engines in one process may compile the same component.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}-{unique}.tmp",
        file.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}
