//! `script` and `block` payloads: a plugin named by the SHA-256 of its
//! bytes, run in the same sandbox a local run gives it, with no directories.
//!
//! ```json
//! {"kind": "script", "run": "RUN", "task": "ID", "timeout": "30s",
//!  "plugin": {"name": "probe", "sha256": "<hex>"},
//!  "config": {"args": ["env"], "env": {"K": "V"}}}
//! {"kind": "block", ...the same..., "input": {...}}
//! ```
//!
//! ## Trust
//! The bytes come from the queue only through [`Queue::plugin_for`], which
//! refuses a hash the task's run did not declare. The worker hashes what it
//! got again and refuses bytes that do not match the payload's hash (the
//! table was changed under it).
//!
//! ## Cache
//! Fetched bytes are kept in `<cache>/plugins/<sha256>.wasm`. A file found
//! there is used after its size and hash are checked once per process;
//! every task still asks the queue whether its run declared the hash (a
//! round trip without the bytes). Compiled components live in
//! `<cache>/compiled`, as a local run's compile cache.

use super::{Context, Prepared, Tee, failed};
use crate::config::{Capabilities, DEFAULT_MEMORY, DEFAULT_TIMEOUT, PluginDecl, PluginSource};
use crate::hash::sha256_hex;
use crate::plugin::{CallOptions, Engine, EngineLimits, Plugin, Signal, Sink};
use crate::queue::{Lease, Outcome, PluginError, Queue, QueueError};
use protocol::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// How much of a script's stdout its result keeps (the end of it).
const OUTPUT_TAIL: usize = 4096;
/// How many log lines a block's result keeps (the last ones).
const LOG_LINES: usize = 100;
/// How long one kept log line may be.
const LOG_LINE: usize = 1000;

/// The payload's `plugin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginRef {
    name: String,
    sha256: String,
    /// Directory grants: a worker gives none, so asking is an error.
    #[serde(default)]
    dirs: Vec<Value>,
}

/// What one worker process keeps of the plugins it ran.
#[derive(Default)]
pub struct PluginCache {
    engine: Mutex<Option<Arc<Engine>>>,
    /// Hashes whose file in the cache was checked by this process.
    verified: Mutex<HashSet<String>>,
    loaded: tokio::sync::Mutex<HashMap<String, Arc<Plugin>>>,
}

impl std::fmt::Debug for PluginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCache").finish_non_exhaustive()
    }
}

/// Why a plugin is not ready: the task fails, or the connection was lost.
enum NotReady {
    Refused(String),
    Queue(QueueError),
}

impl NotReady {
    /// The queue's answer about plugin `name` (the payload's name: a hash
    /// the queue does not hold has no name of its own).
    fn asking(name: &str) -> impl Fn(PluginError) -> Self + '_ {
        move |err| match err {
            PluginError::Queue(err) => Self::Queue(err),
            PluginError::Unknown { .. } => Self::Refused(format!("plugin `{name}`: {err}")),
            undeclared => Self::Refused(undeclared.to_string()),
        }
    }
}

/// Finds the payload's plugin: checked against the queue, fetched if the
/// cache lacks it, loaded. A lost connection is the only `Err`.
pub(super) async fn prepare(
    context: &Context,
    queue: &Queue,
    lease: &Lease,
) -> Result<Prepared, QueueError> {
    let (run, plugin) = match parse(&lease.payload) {
        Ok(parsed) => parsed,
        Err(message) => return Ok(Prepared::Refused(format!("task {}: {message}", lease.task))),
    };
    fetch(context, queue, &run, plugin).await
}

/// Fetches and loads plugin `name` of hash `sha256` that run `run`
/// declared (an agent task's adapter), as [`prepare`] does a script's.
pub(super) async fn prepare_named(
    context: &Context,
    queue: &Queue,
    run: &str,
    name: &str,
    sha256: &str,
) -> Result<Prepared, QueueError> {
    let plugin = PluginRef {
        name: name.to_string(),
        sha256: sha256.to_string(),
        dirs: Vec::new(),
    };
    fetch(context, queue, run, plugin).await
}

async fn fetch(
    context: &Context,
    queue: &Queue,
    run: &str,
    plugin: PluginRef,
) -> Result<Prepared, QueueError> {
    match ready(context, queue, run, &plugin).await {
        Ok(plugin) => Ok(Prepared::Plugin(plugin)),
        Err(NotReady::Refused(message)) => Ok(Prepared::Refused(message)),
        Err(NotReady::Queue(err)) if err.is_disconnect() => Err(err),
        Err(NotReady::Queue(err)) => Ok(Prepared::Refused(format!(
            "plugin `{}`: {err}",
            plugin.name
        ))),
    }
}

fn parse(payload: &Value) -> Result<(String, PluginRef), String> {
    let run = payload
        .get("run")
        .and_then(Value::as_str)
        .filter(|run| !run.is_empty())
        .ok_or("the payload has no `run` (the run whose declared plugins it may use)")?;
    let plugin = payload
        .get("plugin")
        .ok_or("the payload has no `plugin` ({\"name\": ..., \"sha256\": ...})")?;
    let plugin = PluginRef::deserialize(plugin).map_err(|err| format!("`plugin`: {err}"))?;
    if !plugin.dirs.is_empty() {
        return Err(format!(
            "plugin `{}` asks for directory grants, and workers grant none; pass what it needs in its config or input, or run it locally",
            plugin.name
        ));
    }
    Ok((run.to_string(), plugin))
}

async fn ready(
    context: &Context,
    queue: &Queue,
    run: &str,
    plugin: &PluginRef,
) -> Result<Arc<Plugin>, NotReady> {
    let cache = &context.plugins;
    let stored = queue
        .declared_plugin(run, &plugin.sha256)
        .await
        .map_err(NotReady::asking(&plugin.name))?;
    let dir = context.cache.join("plugins");
    let file = dir.join(format!("{}.wasm", plugin.sha256));
    let known = cache
        .verified
        .lock()
        .expect("verified lock")
        .contains(&plugin.sha256);
    if !known {
        let reusable = std::fs::read(&file).is_ok_and(|bytes| {
            bytes.len() as i64 == stored.size && sha256_hex(&bytes) == plugin.sha256
        });
        if !reusable {
            let bytes = queue
                .plugin_for(run, &plugin.sha256)
                .await
                .map_err(NotReady::asking(&plugin.name))?;
            let got = sha256_hex(&bytes);
            if got != plugin.sha256 {
                return Err(NotReady::Refused(format!(
                    "plugin {}: the queue's bytes hash to {got}, not the declared {}",
                    plugin.name, plugin.sha256
                )));
            }
            keep(&dir, &file, &bytes).map_err(|err| {
                NotReady::Refused(format!(
                    "plugin `{}`: cannot keep it in {}: {err}",
                    plugin.name,
                    dir.display()
                ))
            })?;
            eprintln!(
                "worker {}: fetched plugin {} ({}, {} bytes) from the queue",
                context.name,
                plugin.name,
                plugin.sha256,
                bytes.len()
            );
        }
        cache
            .verified
            .lock()
            .expect("verified lock")
            .insert(plugin.sha256.clone());
    }
    let mut loaded = cache.loaded.lock().await;
    if let Some(found) = loaded.get(&plugin.sha256) {
        return Ok(found.clone());
    }
    let engine = engine(context).map_err(NotReady::Refused)?;
    let decl = PluginDecl {
        name: plugin.name.clone(),
        source: PluginSource::Path(file),
        sha256: Some(plugin.sha256.clone()),
        capabilities: Capabilities::default(),
        memory: DEFAULT_MEMORY,
        timeout: None,
        output: None,
        declared_at: None,
    };
    let found = Arc::new(
        Plugin::load(&engine, &decl)
            .await
            .map_err(|err| NotReady::Refused(err.to_string()))?,
    );
    loaded.insert(plugin.sha256.clone(), found.clone());
    Ok(found)
}

/// Writes the file whole or not at all (a worker killed mid-write leaves
/// no half component behind).
fn keep(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial: PathBuf = file.with_extension(format!("wasm.{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, file)
}

/// The process's engine, made on first use.
pub(super) fn engine(context: &Context) -> Result<Arc<Engine>, String> {
    let mut engine = context.plugins.engine.lock().expect("engine lock");
    if let Some(engine) = engine.as_ref() {
        return Ok(engine.clone());
    }
    let limits = EngineLimits {
        max_memory: DEFAULT_MEMORY,
        instances: 16,
    };
    let made = Engine::new(limits, Some(context.cache.join("compiled")))
        .map_err(|err| format!("cannot create the wasm engine: {err:#}"))?;
    let made = Arc::new(made);
    *engine = Some(made.clone());
    Ok(made)
}

/// What a running plugin said, bounded.
#[derive(Default)]
struct Heard {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    logs: VecDeque<Value>,
}

fn tail(buffer: &mut Vec<u8>, data: &[u8]) {
    buffer.extend_from_slice(data);
    if buffer.len() > 2 * OUTPUT_TAIL {
        buffer.drain(..buffer.len() - OUTPUT_TAIL);
    }
}

fn text_tail(buffer: &[u8]) -> String {
    let start = buffer.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&buffer[start..]).into_owned()
}

/// A sink passing what the plugin says to `tee`, and keeping the end of it.
fn listening(tee: &Tee) -> (Sink, Arc<Mutex<Heard>>) {
    let heard = Arc::new(Mutex::new(Heard::default()));
    let into = heard.clone();
    let tee = tee.clone();
    let sink: Sink = Arc::new(move |signal| {
        let mut heard = into.lock().expect("heard lock");
        match signal {
            Signal::Output {
                stream: Stream::Stdout,
                data,
            } => {
                tee.output(Stream::Stdout, &data);
                tail(&mut heard.stdout, &data);
            }
            Signal::Output { data, .. } => {
                tee.output(Stream::Stderr, &data);
                tail(&mut heard.stderr, &data);
            }
            Signal::Log { level, mut message } => {
                tee.log(level, &message);
                if message.len() > LOG_LINE {
                    let mut cut = LOG_LINE;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    message.truncate(cut);
                }
                heard
                    .logs
                    .push_back(json!({"level": level, "message": message}));
                if heard.logs.len() > LOG_LINES {
                    heard.logs.pop_front();
                }
            }
            Signal::Progress { .. } => {}
        }
    });
    (sink, heard)
}

/// The payload's `timeout`, or a local run's default.
fn timeout(payload: &Value) -> Result<std::time::Duration, String> {
    match payload.get("timeout") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(_) => super::exec::timeout(payload),
    }
}

/// Runs a prepared `script` or `block`. `None`: aborted.
pub(super) async fn execute(
    plugin: &Plugin,
    lease: &Lease,
    cancel: &CancellationToken,
    tee: &Tee,
) -> Option<Outcome> {
    let timeout = match timeout(&lease.payload) {
        Ok(timeout) => timeout,
        Err(err) => return failed(format!("task {}: {err}", lease.task)),
    };
    let config = lease.payload.get("config").cloned().unwrap_or(json!({}));
    let (sink, heard) = listening(tee);
    let name = plugin.name();
    let block = lease.payload.get("kind").and_then(Value::as_str) == Some("block");
    if block {
        let input = lease
            .payload
            .get("input")
            .cloned()
            .unwrap_or(Value::Null)
            .to_string();
        let config = config.to_string();
        let options = CallOptions {
            dirs: Some(Vec::new()),
            ..CallOptions::default()
        };
        let call = plugin.run_block_with(&config, &input, timeout, sink, &options);
        let result = tokio::select! {
            result = call => result,
            () = cancel.cancelled() => return None,
        };
        let logs: Vec<Value> = heard.lock().expect("heard lock").logs.drain(..).collect();
        Some(match result {
            Ok(Ok(output)) => match serde_json::from_str::<Value>(&output) {
                Ok(output) => Outcome::Completed(json!({"output": output, "logs": logs})),
                Err(err) => Outcome::Failed {
                    error: format!("plugin `{name}` returned output that is not JSON: {err}"),
                    result: json!({"logs": logs}),
                },
            },
            Ok(Err(message)) => Outcome::Failed {
                error: format!("block `{name}`: {message}"),
                result: json!({"logs": logs}),
            },
            Err(err) => Outcome::Failed {
                error: format!("plugin `{name}` {err}"),
                result: json!({"logs": logs}),
            },
        })
    } else {
        let mut options = match CallOptions::for_script(&config) {
            Ok(options) => options,
            Err(message) => {
                return failed(format!("task {}: script config: {message}", lease.task));
            }
        };
        options.dirs = Some(Vec::new());
        let result = tokio::select! {
            result = plugin.run_script(&options, timeout, sink) => result,
            () = cancel.cancelled() => return None,
        };
        let (stdout, stderr) = {
            let heard = heard.lock().expect("heard lock");
            (text_tail(&heard.stdout), text_tail(&heard.stderr))
        };
        Some(match result {
            Ok(code) => {
                let result = json!({"exit_code": code, "output": stdout});
                if code == 0 {
                    Outcome::Completed(result)
                } else {
                    let said = stderr
                        .lines()
                        .rev()
                        .find(|line| !line.trim().is_empty())
                        .map(|line| format!(": {line}"))
                        .unwrap_or_default();
                    Outcome::Failed {
                        error: format!("script `{name}` exited with code {code}{said}"),
                        result,
                    }
                }
            }
            Err(err) => Outcome::Failed {
                error: format!("plugin `{name}` {err}"),
                result: json!({"exit_code": Value::Null, "output": stdout}),
            },
        })
    }
}
