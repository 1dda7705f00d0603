//! The one wasmtime [`Engine`] of a runner, its epoch ticker and its
//! on-disk cache of compiled components.
//!
//! ## Interruption
//! Epoch interruption is on. A ticker thread bumps the epoch every
//! [`EPOCH_TICK`]; each store's deadline callback yields to tokio on every
//! tick (so a spinning plugin never hogs a worker thread) and traps with
//! [`TimedOut`] once the task's deadline has passed. The ticker ticks only
//! while some store lives ([`Engine::live_store`]: a runner that waits,
//! in watch mode say, does not wake 200 times a second for nothing).
//!
//! ## Cache
//! `<state>/cache/<sha256 of the component>-<engine hash>.cwasm`: a
//! second start deserializes instead of compiling. The engine hash covers
//! the wasmtime version and every setting that changes the machine code.
//!
//! A component file's SHA-256 is remembered too, in
//! `<state>/cache/digests/<hash of its path>`, with the file's device,
//! inode, size, modification and change times: while those are the same,
//! a start neither reads nor hashes the file (18 MB for a Python
//! component, most of a cached start). Any write moves the change time.
//!
//! The cache is bounded: each hit touches its entry, and writing a new one
//! drops entries unused for [`CACHE_UNUSED_DAYS`] days, then the least
//! recently used ones while the cache holds more than [`CACHE_MAX_BYTES`].

use crate::hash::sha256_hex;
use anyhow::{Context, Result};
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
    ticking: Arc<Ticking>,
}

/// How many stores live: the ticker sleeps while none does.
#[derive(Default)]
struct Ticking {
    live: std::sync::Mutex<usize>,
    wake: std::sync::Condvar,
}

/// Held by each store while it lives (see [`Engine::live_store`]).
pub struct LiveStore(Arc<Ticking>);

impl Drop for LiveStore {
    fn drop(&mut self) {
        *self.0.live.lock().expect("ticking lock") -= 1;
    }
}

/// Compiled components not used for this many days are dropped.
pub const CACHE_UNUSED_DAYS: u64 = 30;
/// The most the compiled components in the cache may take together.
pub const CACHE_MAX_BYTES: u64 = 2 << 30;

/// What says a file is unchanged: device, inode, size, modification and
/// change times (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp([i128; 5]);

impl Stamp {
    pub fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Self([
            i128::from(meta.dev()),
            i128::from(meta.ino()),
            i128::from(meta.size()),
            ns(meta.mtime(), meta.mtime_nsec()),
            ns(meta.ctime(), meta.ctime_nsec()),
        ]))
    }

    /// The file's size in bytes.
    pub fn size(self) -> u64 {
        self.0[2] as u64
    }

    fn to_line(self) -> String {
        self.0.map(|v| v.to_string()).join(" ")
    }
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
        let ticking = Arc::new(Ticking::default());
        let ticker_engine = inner.weak();
        let stop = stop_ticker.clone();
        let idle = ticking.clone();
        std::thread::Builder::new()
            .name("runner-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut live = idle.live.lock().expect("ticking lock");
                        while *live == 0 && !stop.load(Ordering::Relaxed) {
                            live = idle
                                .wake
                                .wait_timeout(live, Duration::from_secs(1))
                                .expect("ticking lock")
                                .0;
                        }
                    }
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
            ticking,
        })
    }

    /// Keeps the epoch ticking while the returned guard lives: every store
    /// holds one.
    pub fn live_store(&self) -> LiveStore {
        *self.ticking.live.lock().expect("ticking lock") += 1;
        self.ticking.wake.notify_one();
        LiveStore(self.ticking.clone())
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
    /// ([`crate::hash::sha256_hex`]): the caller hashes once, as a big component costs
    /// milliseconds per pass.
    pub fn component(&self, bytes: &[u8], sha256: &str) -> Result<(Component, Compiled)> {
        let Some(file) = self.cache_file(sha256) else {
            return Ok((Component::new(&self.inner, bytes)?, Compiled::Fresh));
        };
        if file.is_file() {
            match self.deserialize(&file) {
                Ok(component) => {
                    touch(&file);
                    return Ok((component, Compiled::Cached));
                }
                Err(err) => {
                    tracing::warn!("ignoring unusable cache entry {}: {err:#}", file.display())
                }
            }
        }
        let component = Component::new(&self.inner, bytes)?;
        if let Err(err) = write_atomically(&file, &component.serialize()?) {
            tracing::warn!("cannot write the compile cache {}: {err:#}", file.display());
        }
        if let Some(dir) = file.parent() {
            prune(dir, &file, std::time::SystemTime::now());
        }
        Ok((component, Compiled::Fresh))
    }

    /// The cached compilation of the component whose hex SHA-256 is
    /// `sha256` (an error when there is none or it cannot be used).
    pub fn cached_component(&self, sha256: &str) -> Result<(Component, Compiled)> {
        let file = self.cache_file(sha256).context("no compile cache")?;
        let component = self.deserialize(&file)?;
        touch(&file);
        Ok((component, Compiled::Cached))
    }

    /// The SHA-256 remembered for the component file at `path`, if the
    /// file is as it was when it was hashed (`stamp`, taken now).
    pub fn known_digest(&self, path: &Path, stamp: Stamp) -> Option<String> {
        let text = std::fs::read_to_string(self.digest_file(path)?).ok()?;
        let (line, sha256) = text.trim_end().rsplit_once(' ')?;
        (line == stamp.to_line() && sha256.len() == 64).then(|| sha256.to_string())
    }

    /// Remembers `sha256` for the file at `path` as `stamp` found it.
    pub fn remember_digest(&self, path: &Path, stamp: Stamp, sha256: &str) {
        let Some(file) = self.digest_file(path) else {
            return;
        };
        let line = format!("{} {sha256}\n", stamp.to_line());
        if let Err(err) = write_atomically(&file, line.as_bytes()) {
            tracing::warn!("cannot write {}: {err:#}", file.display());
        }
    }

    fn digest_file(&self, path: &Path) -> Option<PathBuf> {
        let path = std::path::absolute(path).ok()?;
        let key = sha256_hex(path.as_os_str().as_encoded_bytes());
        Some(self.cache_dir.as_ref()?.join("digests").join(&key[..32]))
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
        self.ticking.wake.notify_one();
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// Marks a cache entry as just used (its modification time).
fn touch(file: &Path) {
    if let Ok(handle) = std::fs::File::options().write(true).open(file) {
        let _ = handle.set_modified(std::time::SystemTime::now());
    }
}

/// Drops compiled components unused for [`CACHE_UNUSED_DAYS`], then the
/// least recently used while the rest is over [`CACHE_MAX_BYTES`]; `keep`
/// (the one just written) stays.
pub(super) fn prune(dir: &Path, keep: &Path, now: std::time::SystemTime) {
    prune_to(dir, keep, now, CACHE_MAX_BYTES)
}

fn prune_to(dir: &Path, keep: &Path, now: std::time::SystemTime, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm") && e.path() != keep)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    // Newest first: what is dropped comes off the end.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let unused = Duration::from_secs(CACHE_UNUSED_DAYS * 24 * 3600);
    let mut total = std::fs::metadata(keep).map_or(0, |m| m.len());
    for (used, size, path) in entries {
        let stale = now.duration_since(used).is_ok_and(|age| age > unused);
        if stale || total + size > max_bytes {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!("cannot drop {} from the cache: {err}", path.display());
            }
        } else {
            total += size;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn the_cache_drops_entries_unused_for_a_month_then_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let entry = |name: &str, age_days: u32, size: u64| {
            let path = dir.path().join(name);
            let file = std::fs::File::create(&path).unwrap();
            file.set_len(size).unwrap();
            file.set_modified(now - day * age_days).unwrap();
            path
        };
        let kept = entry("new.cwasm", 0, 400);
        let recent = entry("recent.cwasm", 1, 350);
        let older = entry("older.cwasm", 5, 350);
        let stale = entry("stale.cwasm", 31, 10);
        let other = entry("digests-or-notes.txt", 90, 10);
        prune_to(dir.path(), &kept, now, 1000);
        assert!(kept.exists() && recent.exists());
        assert!(
            !older.exists(),
            "over the size cap, the least recently used goes"
        );
        assert!(!stale.exists(), "unused for a month");
        assert!(other.exists(), "only compiled components are pruned");
    }
}
