//! `script` and `block` tasks of a coordinated run (`runner run --queue`):
//! their plugins are uploaded to the queue and declared for the run, and
//! their payloads name a plugin by the SHA-256 of its bytes.
//!
//! ## Which plugins go out
//! A `wasi:cli/command` (script) or a block, built in or from a file, whose
//! `[plugins.x]` table grants nothing: no `dirs`, `env` or `vars`, and the
//! default `memory`. A worker gives a plugin none of these, so a plugin
//! that asks for one runs here, on the coordinator, as in a local run.
//! Batch types always run here. Agent adapters go out, built in or from a
//! file, whatever their table grants (an adapter only builds command
//! lines and reads output lines; see `remote_agents.rs`).
//!
//! ## Declaring
//! Before the run's first task is enqueued, every plugin that goes out and
//! that the pipeline's tasks name is uploaded (`put_plugin`, the bytes the
//! runner loaded: a file is read again and must still hash the same) and
//! the whole set declared for the run (`declare_run`), once per run. A
//! failure fails the tasks that would have been enqueued, with its reason.

use super::RunCtx;
use super::remote::Remote;
use super::tasks::TaskOutcome;
use crate::config::{Batch, DEFAULT_MEMORY, PluginSource, Task, TaskKind};
use crate::hash::sha256_hex;
use crate::plugin::{CallOptions, Plugin, TaskSpec, World};
use protocol::{EventKind, LogLevel};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The payload kind a worker runs `plugin` under, or `None` when its tasks
/// stay on the coordinator (see the module docs).
pub(super) fn remote_kind(plugin: &Plugin) -> Option<&'static str> {
    let kind = match plugin.world {
        World::Command => "script",
        World::Block => "block",
        _ => return None,
    };
    let granted = &plugin.decl.capabilities;
    let grants_nothing =
        granted.dirs.is_empty() && granted.env.is_empty() && granted.vars.is_empty();
    (grants_nothing && plugin.decl.memory == DEFAULT_MEMORY).then_some(kind)
}

/// A run's declaration, made once: its outcome, or why it failed.
type Declared = Arc<OnceCell<Result<(), String>>>;

/// What the coordinator declared, per run.
///
/// ## Bounded in a long-lived coordinator
/// `runs` holds only the runs in progress: an ended run is forgotten by
/// `Remote::end_run`, and, whatever way it ended, when its context is
/// dropped. `uploaded` keeps one hash (never the bytes) per plugin the
/// process loaded, and a process loads its plugins once.
#[derive(Default)]
pub(super) struct Declarations {
    runs: Mutex<HashMap<String, Declared>>,
    /// Hashes this process already uploaded (a big component is sent once).
    uploaded: Mutex<HashSet<String>>,
}

impl Declarations {
    /// Forgets an ended run.
    pub(super) fn forget(&self, run_id: &str) {
        self.runs.lock().expect("runs lock").remove(run_id);
    }
}

impl Remote {
    /// Uploads and declares `ctx`'s plugins, the first time one of its
    /// tasks is about to be enqueued; later calls get the first's answer.
    pub(super) async fn declare_plugins(&self, ctx: &RunCtx) -> Result<(), String> {
        let cell = self
            .plugins
            .runs
            .lock()
            .expect("runs lock")
            .entry(ctx.run_id.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            self.upload_and_declare(ctx)
                .await
                .map_err(|err| format!("cannot hand the run's plugins to the queue: {err}"))
        })
        .await
        .clone()
    }

    async fn upload_and_declare(&self, ctx: &RunCtx) -> Result<(), String> {
        let mut hashes = Vec::new();
        for plugin in pipeline_plugins(ctx) {
            let name = plugin.name();
            let known = self
                .plugins
                .uploaded
                .lock()
                .expect("uploaded lock")
                .contains(&plugin.sha256);
            if !known {
                let bytes = loaded_bytes(&plugin).await?;
                let sha256 = self
                    .queue()
                    .await
                    .map_err(|err| err.to_string())?
                    .put_plugin(name, &bytes)
                    .await
                    .map_err(|err| format!("plugin `{name}`: {err}"))?;
                self.plugins
                    .uploaded
                    .lock()
                    .expect("uploaded lock")
                    .insert(sha256);
            }
            hashes.push(plugin.sha256.clone());
        }
        if hashes.is_empty() {
            return Ok(());
        }
        self.queue()
            .await
            .map_err(|err| err.to_string())?
            .declare_run(&ctx.run_id, &hashes)
            .await
            .map_err(|err| err.to_string())
    }
}

/// The plugins that go out and that the run's pipeline names, once each.
fn pipeline_plugins(ctx: &RunCtx) -> Vec<Arc<Plugin>> {
    let Some(pipeline) = ctx.config.pipelines.get(&ctx.pipeline) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut agents = false;
    for task in pipeline.batches.iter().flat_map(|batch| &batch.tasks) {
        let (TaskKind::Script(name) | TaskKind::Plugin(name)) = &task.kind else {
            agents |= matches!(task.kind, TaskKind::Agent(_));
            continue;
        };
        if let Some(plugin) = ctx.plugins.get(name)
            && remote_kind(plugin).is_some()
            && seen.insert(name.clone())
        {
            found.push(plugin.clone());
        }
    }
    // Any agent's: an attempt of a `best_of` batch may name another agent.
    if agents {
        for decl in ctx.config.agents.values() {
            if let Some(adapter) = ctx.plugins.get(&decl.adapter)
                && seen.insert(decl.adapter.clone())
            {
                found.push(adapter.clone());
            }
        }
    }
    found
}

/// The bytes the runner loaded `plugin` from, checked against the hash it
/// loaded (a file replaced since would run something else on the workers).
async fn loaded_bytes(plugin: &Plugin) -> Result<Vec<u8>, String> {
    let name = plugin.name();
    let bytes = match &plugin.decl.source {
        PluginSource::Builtin(builtin) => crate::builtin::bytes(builtin)
            .ok_or_else(|| format!("plugin `{name}`: no built-in plugin `{builtin}`"))?
            .to_vec(),
        PluginSource::Path(path) => tokio::fs::read(path)
            .await
            .map_err(|err| format!("plugin `{name}`: cannot read {}: {err}", path.display()))?,
    };
    let sha256 = sha256_hex(&bytes);
    if sha256 != plugin.sha256 {
        return Err(format!(
            "plugin `{name}`: its file changed since the runner loaded it (sha256 {} then, {sha256} now); start the run again to use the new file",
            plugin.sha256
        ));
    }
    Ok(bytes)
}

impl RunCtx {
    /// The payload of a script or block task whose plugin goes out.
    pub(super) fn plugin_payload(
        &self,
        name: &str,
        batch: &Batch,
        spec: &TaskSpec,
        task: &Task,
        config: &Value,
    ) -> Option<Result<Value, String>> {
        let plugin = self.plugins.get(name)?;
        let kind = remote_kind(plugin)?;
        let mut payload = json!({
            "kind": kind,
            "plugin": {"name": plugin.name(), "sha256": plugin.sha256},
            "config": config,
            "timeout": crate::units::format_duration(task.timeout),
        });
        if kind == "script" {
            if let Err(message) = CallOptions::for_script(config) {
                return Some(Err(format!("script config: {message}")));
            }
        } else {
            let input = self.input(batch, spec, task);
            payload["input"] = serde_json::from_str(&input).expect("the input is JSON");
        }
        Some(Ok(payload))
    }

    /// A block's outcome from its worker's result (`{"output", "logs"}`):
    /// its logs become the task's log events, as a local block's do.
    pub(super) fn block_outcome(
        &self,
        task_id: &str,
        plugin: &str,
        completed: bool,
        error: Option<String>,
        result: &Value,
    ) -> TaskOutcome {
        // A worker that streamed its log lines sent them as they came.
        let streamed = result.get("streamed") == Some(&Value::Bool(true));
        let logs = result
            .get("logs")
            .and_then(Value::as_array)
            .filter(|_| !streamed);
        for log in logs.into_iter().flatten() {
            let level = log
                .get("level")
                .and_then(|level| serde_json::from_value::<LogLevel>(level.clone()).ok())
                .unwrap_or(LogLevel::Info);
            let message = log.get("message").and_then(Value::as_str).unwrap_or("");
            self.publish(EventKind::log(
                Some(self.run_id.clone()),
                Some(task_id.to_string()),
                level,
                plugin,
                message,
            ));
        }
        if completed {
            let output = result.get("output").cloned().unwrap_or(Value::Null);
            TaskOutcome::completed(output, None)
        } else {
            // A worker names the block an error came from; a local run gives
            // the block's own message, and so does this.
            let error = error.map_or_else(
                || format!("block `{plugin}` failed on its worker"),
                |error| match error.strip_prefix(&format!("block `{plugin}`: ")) {
                    Some(own) => own.to_string(),
                    None => error,
                },
            );
            TaskOutcome::failed(error, None)
        }
    }
}
