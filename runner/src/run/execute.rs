//! The four executors a task runs under: `exec` (a command), `agent` (a
//! coding agent's turn), `script` and `block` (a plugin call); with a
//! queue, the kinds workers run go there instead (`remote.rs`).

use super::RunCtx;
use super::tasks::TaskOutcome;
use crate::agents::CommandRequest;
use crate::config::{Batch, DirGrant, Task, TaskKind};
use crate::plugin::{CallOptions, Plugin, Sink, TaskSpec, World};
use crate::process::exec;
use crate::process::output::Chunker;
use protocol::{CommandStatus, LogLevel, Stream};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

impl RunCtx {
    pub(super) async fn execute(
        self: &Arc<Self>,
        batch: &Batch,
        dir: &std::path::Path,
        spec: &TaskSpec,
        task: &Task,
        config: &Value,
    ) -> TaskOutcome {
        let chunker = Arc::new(Mutex::new(Chunker::with_limit(task.output)));
        let dispatched = match (&self.remote, &task.kind) {
            (None, _) => None,
            (Some(remote), TaskKind::Agent(agent)) => self
                .agent_payload(agent, task, config)
                .await
                .map(|payload| (remote, payload)),
            (Some(remote), _) => super::remote::payload(self, batch, spec, task, config, dir)
                .map(|payload| (remote, payload)),
        };
        let dispatched = dispatched.map(|(remote, payload)| {
            let payload = payload.map(|mut payload| {
                self.add_git(dir, &mut payload);
                payload
            });
            (remote, payload)
        });
        let mut outcome = if let Some((remote, payload)) = dispatched {
            self.execute_remote(remote, batch, spec, task, payload, &chunker)
                .await
        } else {
            match &task.kind {
                TaskKind::Exec => self.execute_exec(dir, spec, task, config, &chunker).await,
                TaskKind::Agent(agent) => self.execute_agent(agent, dir, spec, task, config).await,
                TaskKind::Script(name) | TaskKind::Plugin(name) => {
                    let Some(plugin) = self.plugins.get(name).cloned() else {
                        return TaskOutcome::failed(format!("plugin `{name}` is not loaded"), None);
                    };
                    let sink = self.task_sink(batch, &spec.id, name, chunker.clone());
                    let dirs = self.granted_dirs(&batch.id, name);
                    match plugin.world {
                        World::Command => {
                            self.execute_script(&plugin, task, config, sink, &chunker, dirs)
                                .await
                        }
                        _ => {
                            self.execute_block(&plugin, batch, spec, task, sink, dirs)
                                .await
                        }
                    }
                }
            }
        };
        let (rest, cut) = {
            let mut chunker = chunker.lock().expect("chunker lock");
            (chunker.finish(), chunker.cut())
        };
        self.output_chunks(&spec.id, Stream::Stdout, rest);
        if let Some(cut) = cut {
            self.log(Some(&spec.id), LogLevel::Warn, cut.message());
            outcome.output_cut = Some(cut);
        }
        outcome
    }

    async fn execute_exec(
        &self,
        dir: &std::path::Path,
        spec: &TaskSpec,
        task: &Task,
        config: &Value,
        chunker: &Mutex<Chunker>,
    ) -> TaskOutcome {
        let exec_spec = match exec::ExecSpec::from_config(config, dir) {
            Ok(exec_spec) => exec_spec,
            Err(err) => return TaskOutcome::failed(format!("exec config: {err:#}"), None),
        };
        let on_output = |stream: Stream, data: &[u8]| {
            let chunks = chunker.lock().expect("chunker lock").push(stream, data);
            self.output_chunks(&spec.id, stream, chunks);
        };
        match exec::run(&exec_spec, task.timeout, &self.cancel, on_output).await {
            Err(err) => TaskOutcome::failed(format!("{err:#}"), None),
            Ok(exec::Ending::Aborted) => TaskOutcome::interrupted(),
            Ok(ending) => match ending.error(&format!("`{}`", exec_spec.program), task.timeout) {
                Some(error) => TaskOutcome::failed(error, ending.exit_code()),
                None => {
                    let stdout = chunker.lock().expect("chunker lock").stdout_tail();
                    TaskOutcome::completed(process_output(0, stdout), Some(0))
                }
            },
        }
    }

    async fn execute_agent(
        &self,
        agent: &str,
        dir: &std::path::Path,
        spec: &TaskSpec,
        task: &Task,
        config: &Value,
    ) -> TaskOutcome {
        // An attempt of a `best_of` batch may run the task with another agent.
        let agent = config.get("agent").and_then(Value::as_str).unwrap_or(agent);
        let prompt = config
            .get("prompt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // `resume = "<task id>"`: continue the session of an earlier agent task.
        let resume_session = match self.resume_session(config) {
            Ok(session) => session,
            Err(message) => return TaskOutcome::failed(message, None),
        };
        let request = CommandRequest {
            agent: agent.to_string(),
            prompt,
            priority: task.priority,
            resume_session,
            run_id: Some(self.run_id.clone()),
            task_id: Some(spec.id.clone()),
            working_dir: Some(dir.to_path_buf()),
            timeout: Some(task.timeout),
            budget: task.budget,
            run_budget: self.budget.clone(),
        };
        let handle = match self
            .agents
            .submit_for_run(request, self.slots.clone())
            .await
        {
            Ok(handle) => handle,
            Err(refusal) => return TaskOutcome::failed(refusal.to_string(), None),
        };
        let mut done = handle.done;
        let result = tokio::select! {
            result = &mut done => result,
            _ = self.cancel.cancelled() => {
                let _ = self.agents.interrupt(&handle.id);
                done.await
            }
        };
        let Ok(result) = result else {
            return TaskOutcome::failed("the agent command ended without a result", None);
        };
        match result.status {
            CommandStatus::Completed => {
                TaskOutcome::completed(result.to_json(agent), result.exit_code)
            }
            CommandStatus::Interrupted if self.cancel.is_cancelled() => TaskOutcome::interrupted(),
            _ => {
                let mut outcome = TaskOutcome::failed(
                    format!(
                        "agent `{agent}`: {}",
                        result.error.clone().unwrap_or_else(|| "failed".into())
                    ),
                    result.exit_code,
                );
                outcome.output = Some(result.to_json(agent));
                outcome
            }
        }
    }

    async fn execute_script(
        &self,
        plugin: &Plugin,
        task: &Task,
        config: &Value,
        sink: Sink,
        chunker: &Mutex<Chunker>,
        dirs: Option<Vec<DirGrant>>,
    ) -> TaskOutcome {
        let mut options = match CallOptions::for_script(config) {
            Ok(options) => options,
            Err(message) => return TaskOutcome::failed(format!("script config: {message}"), None),
        };
        options.dirs = dirs;
        let result = tokio::select! {
            result = plugin.run_script(&options, task.timeout, sink) => result,
            _ = self.cancel.cancelled() => return TaskOutcome::interrupted(),
        };
        match result {
            Ok(0) => {
                let stdout = chunker.lock().expect("chunker lock").stdout_tail();
                TaskOutcome::completed(process_output(0, stdout), Some(0))
            }
            Ok(code) => TaskOutcome::failed(
                format!("script `{}` exited with code {code}", plugin.name()),
                Some(code),
            ),
            Err(err) => TaskOutcome::failed(format!("plugin `{}` {err}", plugin.name()), None),
        }
    }

    async fn execute_block(
        &self,
        plugin: &Plugin,
        batch: &Batch,
        spec: &TaskSpec,
        task: &Task,
        sink: Sink,
        dirs: Option<Vec<DirGrant>>,
    ) -> TaskOutcome {
        let input = self.input(batch, spec, task);
        let options = CallOptions {
            dirs,
            ..CallOptions::default()
        };
        let result = tokio::select! {
            result = plugin.run_block_with(&spec.config, &input, task.timeout, sink, &options) => result,
            _ = self.cancel.cancelled() => return TaskOutcome::interrupted(),
        };
        match result {
            Ok(Ok(output)) => match serde_json::from_str(&output) {
                Ok(output) => TaskOutcome::completed(output, None),
                Err(err) => TaskOutcome::failed(
                    format!(
                        "plugin `{}` returned output that is not JSON: {err}",
                        plugin.name()
                    ),
                    None,
                ),
            },
            Ok(Err(message)) => TaskOutcome::failed(message, None),
            Err(err) => TaskOutcome::failed(format!("plugin `{}` {err}", plugin.name()), None),
        }
    }
}

/// `{"exit_code": 0, "stdout": "...", "json": <last stdout line, when it is JSON>}`.
pub(super) fn process_output(exit_code: i32, stdout: String) -> Value {
    let last_json = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.is_object() || v.is_array());
    let mut output = json!({ "exit_code": exit_code, "stdout": stdout });
    if let Some(value) = last_json {
        output["json"] = value;
    }
    output
}
