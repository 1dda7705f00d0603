//! `agent` tasks of a coordinated run (`runner run --queue`): a worker runs
//! the agent's turn (`worker/agent.rs`), with the agent's adapter uploaded
//! and declared for the run as a script's plugin is (`remote_plugins.rs`).
//!
//! ## Which agent tasks go out
//! Every one whose agent is declared and whose adapter is loaded, except an
//! agent whose adapter relays permission prompts for its `options`
//! (`asks_permission`): those prompts are answered by the coordinator's
//! clients (`runner ask`, the dashboard), so such an agent runs here. The
//! CLI runs in the worker's directory, or in a worktree of the batch's
//! branch when the batch is shared through `[git] remote`, as an `exec`
//! task does; the agent's `working_dir` is not used (a local agent task
//! runs in its batch's directory too).
//!
//! ## Limits across the cluster
//! The task is in two pools: its run's (`run:<id>`, `[defaults]
//! concurrency`) and its agent's (`agent:<name>`, the agent's
//! `concurrency`), and is claimed only when both have room. Enqueueing it
//! is refused when the agent's pool already holds `queue_limit` queued
//! tasks, from any run: the task fails with the local refusal.
//!
//! ## Budgets
//! The payload carries the task's cap, the agent's, and the run's cap with
//! what the run had spent when the task was queued; the worker stops the
//! command past any of them with the local message. What the worker
//! reports spent is charged to the run's budget here when the task ends.
//!
//! ## While it runs
//! The worker sends its command's events (statuses, activity, terminal
//! output, log lines) with the task's output (`worker/agent.rs`, under the
//! task's `output` limit), and they are published here as the local
//! command would have published them ([`RemoteTurn`]): with this run's ids
//! and a command id of this coordinator, one per attempt. So the terminal,
//! WebSocket clients, the dashboard and the history (`agent_turns`) follow
//! a remote turn live. A command whose end never came (its worker was
//! lost, its events were cut at the limit, the run was aborted) is ended
//! here: when the next attempt is claimed, or from the task's end.
//!
//! ## What comes back
//! The worker's result is the local task's output (`session_id`, usage,
//! summary, exit code, with the command id said here), so a later
//! `resume = "<task>"` works.

use super::RunCtx;
use super::remote::Remote;
use super::tasks::TaskOutcome;
use crate::agents::Refusal;
use crate::config::{AgentDecl, Budget, Task};
use crate::queue::{NewTask, QueueError, TaskRow};
use protocol::{CommandStatus, EventKind, Priority};
use serde_json::{Value, json};
use std::time::Duration;

/// The pool that holds an agent's `concurrency` across the cluster.
pub(super) fn agent_pool(agent: &str) -> String {
    format!("agent:{agent}")
}

fn budget_json(budget: &Budget) -> Value {
    json!({"max_cost_usd": budget.max_cost_usd, "max_tokens": budget.max_tokens})
}

impl Remote {
    /// Enqueues an agent task in its run's pool and its agent's; the
    /// refusal when the agent's pool holds `queue_limit` queued tasks.
    pub(super) async fn enqueue_agent(
        &self,
        run_pool: &str,
        run_max: usize,
        decl: &AgentDecl,
        task: NewTask,
    ) -> Result<Result<i64, Refusal>, QueueError> {
        let pool = agent_pool(&decl.name);
        let mut queue = self.queue().await?;
        let limit = |max: usize| i32::try_from(max).unwrap_or(i32::MAX).max(1);
        queue.set_pool(run_pool, limit(run_max)).await?;
        queue.set_pool(&pool, limit(decl.concurrency)).await?;
        let task = task.also_in_pool(pool);
        Ok(match queue.enqueue_within(&task, decl.queue_limit).await? {
            Some(id) => Ok(id),
            None => Err(Refusal::QueueFull {
                agent: decl.name.clone(),
                limit: decl.queue_limit,
            }),
        })
    }
}

impl RunCtx {
    /// The session `resume = "<task id>"` names, from the earlier task's output.
    pub(super) fn resume_session(&self, config: &Value) -> Result<Option<String>, String> {
        let Some(earlier) = config.get("resume").and_then(Value::as_str) else {
            return Ok(None);
        };
        let outputs = self.outputs.lock().expect("outputs lock");
        match outputs
            .get(earlier)
            .and_then(|o| o.get("session_id"))
            .and_then(Value::as_str)
        {
            Some(session) => Ok(Some(session.to_string())),
            None => Err(format!(
                "cannot resume: task `{earlier}` has no agent session (did it run and complete before this one?)"
            )),
        }
    }

    /// The payload of an agent task a worker runs; `None` when it runs here
    /// (see the module docs), `Some(Err)` when it cannot run at all.
    pub(super) async fn agent_payload(
        &self,
        agent: &str,
        task: &Task,
        config: &Value,
    ) -> Option<Result<Value, String>> {
        // An attempt of a `best_of` batch may run the task with another agent.
        let agent = config.get("agent").and_then(Value::as_str).unwrap_or(agent);
        let decl = self.config.agents.get(agent)?;
        let adapter = self.plugins.get(&decl.adapter)?;
        let mut session = adapter
            .agent_session(Duration::from_secs(10), crate::plugin::discard())
            .await
            .ok()?;
        if session.asks_permission(&decl.options).await.unwrap_or(true) {
            return None;
        }
        let resume_session = match self.resume_session(config) {
            Ok(session) => session,
            Err(message) => return Some(Err(message)),
        };
        let run_budget = self.budget.as_ref().map(|budget| {
            let spent = budget.spent();
            json!({
                "cap": budget_json(&budget.cap()),
                "spent": {"cost_usd": spent.cost_usd, "tokens": spent.tokens},
            })
        });
        let duration = crate::units::format_duration;
        Some(Ok(json!({
            "kind": "agent",
            "agent": {
                "name": decl.name,
                "adapter": {"name": adapter.name(), "sha256": adapter.sha256},
                "command": decl.command,
                "model": decl.model,
                "args": decl.args,
                "options": decl.options,
                "env": decl.env,
                "output": decl.output,
                "timeout": duration(decl.timeout),
                "budget": budget_json(&decl.budget),
            },
            "prompt": config.get("prompt").and_then(Value::as_str).unwrap_or_default(),
            "resume_session": resume_session,
            "priority": task.priority,
            "timeout": duration(task.timeout),
            "budget": budget_json(&task.budget),
            "run_budget": run_budget,
        })))
    }

    /// The outcome a local agent task would have, from its worker's row
    /// (`command_id`: the command as it was said here); what the worker
    /// reports spent is charged to the run's budget.
    pub(super) fn agent_outcome(&self, row: TaskRow, command_id: Option<String>) -> TaskOutcome {
        let mut output = row.result.unwrap_or(Value::Null);
        if let Some(fields) = output.as_object_mut() {
            // What the worker pushed is the batch's business, not the agent's
            // output; `streamed` is the queue's.
            fields.remove("git");
            fields.remove("streamed");
            if let Some(id) = command_id {
                fields.insert("command_id".into(), json!(id));
            }
        }
        let usage = &output["usage"];
        if let Some(budget) = &self.budget {
            let tokens = usage["input_tokens"].as_u64().unwrap_or(0)
                + usage["output_tokens"].as_u64().unwrap_or(0);
            let cost = usage["cost_usd"].as_f64().unwrap_or(0.0);
            if tokens > 0 || cost > 0.0 {
                budget.add(cost, tokens);
            }
        }
        let exit_code = output["exit_code"]
            .as_i64()
            .and_then(|code| i32::try_from(code).ok());
        if row.state == "completed" {
            return TaskOutcome::completed(output, exit_code);
        }
        let error = row
            .error
            .unwrap_or_else(|| format!("queue task {} failed on its worker", row.id));
        let mut outcome = TaskOutcome::failed(error, exit_code);
        if output.is_object() {
            outcome.output = Some(output);
        }
        outcome
    }
}

/// The command of an agent task on a worker, as this coordinator says it.
pub(super) struct RemoteTurn {
    agent: String,
    priority: Priority,
    /// The command of the attempt whose events came last.
    current: Option<Turn>,
}

struct Turn {
    attempt: i32,
    /// The id the worker gave it, replaced in its log lines.
    theirs: Option<String>,
    /// The id it has here.
    ours: String,
    /// Whether its end was said.
    ended: bool,
}

impl RemoteTurn {
    pub(super) fn new(agent: &str, priority: Priority) -> Self {
        Self {
            agent: agent.to_string(),
            priority,
            current: None,
        }
    }

    /// Publishes `kind`, an event of the command of `attempt` on its
    /// worker, with this run's ids and the command's id here. An event of a
    /// later attempt ends the earlier attempt's command first.
    pub(super) fn event(&mut self, ctx: &RunCtx, task_id: &str, attempt: i32, mut kind: EventKind) {
        if self
            .current
            .as_ref()
            .is_some_and(|turn| turn.attempt != attempt)
        {
            self.lost(
                ctx,
                task_id,
                format!("attempt {attempt} took the task over"),
            );
        }
        let turn = self.current.get_or_insert_with(|| Turn {
            attempt,
            theirs: None,
            ours: crate::ids::command_id(),
            ended: false,
        });
        let ours = turn.ours.clone();
        let run = Some(ctx.run_id.clone());
        let task = Some(task_id.to_string());
        match &mut kind {
            EventKind::CommandStatus {
                command_id,
                run_id,
                task_id,
                status,
                ..
            } => {
                turn.theirs.get_or_insert_with(|| command_id.clone());
                turn.ended |= *status != CommandStatus::Queued && *status != CommandStatus::Running;
                (*command_id, *run_id, *task_id) = (ours, run, task);
            }
            EventKind::AgentActivity {
                command_id,
                run_id,
                task_id,
                ..
            } => {
                turn.theirs.get_or_insert_with(|| command_id.clone());
                (*command_id, *run_id, *task_id) = (ours, run, task);
            }
            EventKind::TerminalOutput {
                command_id,
                run_id,
                task_id,
                ..
            } => (*command_id, *run_id, *task_id) = (Some(ours), run, task),
            EventKind::Log {
                run_id,
                task_id,
                message,
                ..
            } => {
                if let Some(theirs) = &turn.theirs {
                    *message = message.replace(theirs.as_str(), &ours);
                }
                (*run_id, *task_id) = (run, task);
            }
            // A worker sends nothing else.
            _ => return,
        }
        ctx.publish(kind);
    }

    /// Says that `worker` claimed `attempt`: a command of an earlier attempt
    /// that did not end never will.
    pub(super) fn claimed(&mut self, ctx: &RunCtx, task_id: &str, attempt: i32, worker: &str) {
        if self
            .current
            .as_ref()
            .is_some_and(|turn| turn.attempt < attempt)
        {
            let why = format!("attempt {attempt} was claimed by worker {worker}");
            self.lost(ctx, task_id, why);
        }
    }

    /// Ends the current command, whose end never came, as failed: `why`.
    pub(super) fn lost(&mut self, ctx: &RunCtx, task_id: &str, why: String) {
        let message = match &self.current {
            Some(turn) => format!("its worker was lost (attempt {}): {why}", turn.attempt),
            None => return,
        };
        self.end(ctx, task_id, CommandStatus::Failed, None, Some(message));
        self.current = None;
    }

    /// At the task's end: says the end of a command whose end never came;
    /// the id of the last command here, if one started.
    pub(super) fn end(
        &mut self,
        ctx: &RunCtx,
        task_id: &str,
        status: CommandStatus,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Option<String> {
        let turn = self.current.as_mut()?;
        if !turn.ended {
            turn.ended = true;
            ctx.publish(EventKind::CommandStatus {
                command_id: turn.ours.clone(),
                agent: self.agent.clone(),
                status,
                priority: self.priority,
                run_id: Some(ctx.run_id.clone()),
                task_id: Some(task_id.to_string()),
                exit_code,
                error,
                prompt: None,
            });
        }
        Some(turn.ours.clone())
    }
}
