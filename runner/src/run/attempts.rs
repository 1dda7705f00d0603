//! A batch tried several times by an attempts batch plugin (`best_of`):
//! the plugin plans the attempts; each runs in its own worktree on its own
//! branch (`runner/<run>-<batch>-<n>`, from where the batch starts), its
//! tasks in order, then is committed, checked and measured; the plugin
//! picks the winner, whose head becomes the batch's branch. The others stay.
//!
//! ## At once
//! Every attempt starts at once: agent tasks wait in their agent's queue
//! (two attempts of one agent with `concurrency = 1` take turns), other
//! tasks under the run's `concurrency`.
//!
//! ## Scripts
//! `[git] setup` and `cleanup` run in each attempt's worktree, not in the
//! batch's, which only takes the winner's head.

use super::RunCtx;
use super::tasks::check_expansion;
use crate::config::{Batch, TaskKind};
use crate::git::BatchWorkspace;
use crate::plugin::{
    AttemptPlan, AttemptReport, AttemptSpec, AttemptTask, CheckResult, Plugin, TaskResult,
    TaskSpec, TaskState,
};
use protocol::{
    AttemptCheck, AttemptResult, BatchStatus, EventKind, ExecutionState, LogLevel, RunReason,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tokio::task::JoinSet;

/// One attempt as it ended, with what the report to the plugin leaves out.
struct Attempt {
    report: AttemptReport,
    head: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    /// Each completed task's output, by the id of the declared task.
    outputs: Vec<(String, Value)>,
}

type Ended = (BatchStatus, Option<String>, Option<String>);

impl RunCtx {
    /// Plans, runs and picks the attempts of `batch` (whose type is
    /// `plugin`), leaving the winner's head on the batch's branch.
    pub(super) async fn run_attempts(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
        plugin: &Arc<Plugin>,
        workspace: Option<&BatchWorkspace>,
    ) -> Ended {
        let fail = |error: String| (BatchStatus::Failed, Some(error), None);
        let kind = &batch.batch_type;
        let with = batch.with.to_string();
        let declared: Vec<AttemptTask> = batch
            .tasks
            .iter()
            .map(|t| AttemptTask {
                id: t.id.clone(),
                name: t.name.clone(),
                template: t.id.clone(),
                config: t.config.to_string(),
            })
            .collect();
        let sink = self.batch_sink(kind);
        let plan = match plugin.plan(&with, &declared, sink.clone()).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(message)) => {
                return fail(format!("batch type `{kind}` refused the batch: {message}"));
            }
            Err(err) => return fail(format!("batch type `{kind}` {err}")),
        };
        if let Err(message) = self.check_plan(batch, &plan) {
            return fail(format!(
                "batch type `{kind}` planned the attempts wrongly: {message}"
            ));
        }
        let Some(workspace) = workspace else {
            return fail(format!(
                "batch type `{kind}` runs each attempt on a git branch of its own, so it needs a git repository with a commit (see `workspace_prepared` for why there is none)"
            ));
        };
        let templates: Arc<HashMap<String, usize>> = Arc::new(
            batch
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.clone(), i))
                .collect(),
        );
        let check = plan.check.clone();
        let mut set = JoinSet::new();
        for (index, spec) in plan.attempts.into_iter().enumerate() {
            let (ctx, batch, workspace, templates, check) = (
                self.clone(),
                batch.clone(),
                workspace.clone(),
                templates.clone(),
                check.clone(),
            );
            let number = index as u32 + 1;
            set.spawn(async move {
                let attempt = ctx
                    .run_attempt(&batch, &workspace, number, spec, check, &templates)
                    .await;
                (index, attempt)
            });
        }
        let mut attempts: Vec<(usize, Attempt)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(pair) => attempts.push(pair),
                Err(err) => self.log(None, LogLevel::Error, format!("an attempt panicked: {err}")),
            }
        }
        if self.cancel.is_cancelled() {
            return fail("the run was aborted".into());
        }
        attempts.sort_by_key(|(index, _)| *index);
        let attempts: Vec<Attempt> = attempts.into_iter().map(|(_, a)| a).collect();
        let reports: Vec<AttemptReport> = attempts.iter().map(|a| a.report.clone()).collect();
        let pick = match plugin.pick(&with, &reports, sink).await {
            Ok(pick) => pick,
            Err(err) => return fail(format!("batch type `{kind}` {err}")),
        };
        let winner = match pick.winner {
            Some(number) => match attempts.iter().find(|a| a.report.number == number) {
                Some(winner) => Some(winner),
                None => {
                    return fail(format!(
                        "batch type `{kind}` picked attempt {number}, which does not exist"
                    ));
                }
            },
            None => None,
        };
        if let Some(winner) = winner
            && let Some(head) = &winner.head
        {
            let (ws, head) = (workspace.clone(), head.clone());
            let adopted = tokio::task::spawn_blocking(move || ws.adopt(&head))
                .await
                .map_err(|err| err.to_string())
                .and_then(|r| r.map_err(|err| err.to_string()));
            if let Err(message) = adopted {
                return fail(format!(
                    "cannot move the batch's branch to attempt {}: {message}",
                    winner.report.number
                ));
            }
            // Later tasks read the winner's outputs under the declared ids.
            let mut outputs = self.outputs.lock().expect("outputs lock");
            for (template, output) in &winner.outputs {
                outputs.insert(template.clone(), output.clone());
            }
        }
        let results = attempts
            .iter()
            .enumerate()
            .map(|(i, attempt)| {
                let rank = pick.ranks.get(i).copied().unwrap_or(i as u32 + 1);
                attempt_result(attempt, pick.notes.get(i), rank)
            })
            .collect();
        self.publish(EventKind::BestOfResult {
            run_id: self.run_id.clone(),
            batch_id: batch.id.clone(),
            winner: winner.map(|w| w.report.number),
            winner_branch: winner.map(|w| w.report.branch.clone()),
            reason: pick.reason.clone(),
            check,
            attempts: results,
        });
        match winner {
            Some(_) => (BatchStatus::Completed, None, Some(pick.summary)),
            None => (
                BatchStatus::Failed,
                Some(format!("no attempt can be kept: {}", pick.reason)),
                Some(pick.summary),
            ),
        }
    }

    /// Task ids distinct across attempts, from declared tasks, and agents
    /// that `runner.toml` declares.
    fn check_plan(&self, batch: &Batch, plan: &AttemptPlan) -> Result<(), String> {
        if plan.attempts.is_empty() {
            return Err("it planned no attempt".into());
        }
        let all: Vec<TaskSpec> = plan
            .attempts
            .iter()
            .flat_map(|a| a.tasks.iter().map(task_spec))
            .collect();
        check_expansion(batch, &all)?;
        for (n, attempt) in plan.attempts.iter().enumerate() {
            if attempt.tasks.is_empty() {
                return Err(format!("attempt {} has no task", n + 1));
            }
            if let Some(agent) = &attempt.agent
                && !self.config.agents.contains_key(agent)
            {
                let known: Vec<&str> = self.config.agents.keys().map(String::as_str).collect();
                return Err(format!(
                    "attempt {} names agent `{agent}`, which runner.toml does not declare (declare it as [agents.{agent}]; declared: {})",
                    n + 1,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    /// One attempt: its worktree, setup, tasks in order, commit, check,
    /// cleanup, diff; the worktree is removed unless kept.
    async fn run_attempt(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
        workspace: &BatchWorkspace,
        number: u32,
        spec: AttemptSpec,
        check: Option<String>,
        templates: &HashMap<String, usize>,
    ) -> Attempt {
        let started = Instant::now();
        let mut attempt = Attempt {
            report: AttemptReport {
                number,
                agent: spec.agent.clone(),
                branch: String::new(),
                completed: false,
                error: None,
                check: None,
                files_changed: 0,
                additions: 0,
                deletions: 0,
                duration_ms: 0,
                tokens: 0,
                cost_usd: None,
            },
            head: None,
            input_tokens: 0,
            output_tokens: 0,
            outputs: Vec::new(),
        };
        let (project, ws) = (self.project.clone(), workspace.clone());
        let prepared = tokio::task::spawn_blocking(move || {
            let workspaces = project.workspaces().expect("a repository");
            workspaces.prepare_attempt(&ws, number)
        })
        .await
        .map_err(|err| err.to_string())
        .and_then(|r| r.map_err(|err| err.to_string()));
        let own = match prepared {
            Ok(own) => own,
            Err(message) => {
                attempt.report.error = Some(format!("cannot prepare its worktree: {message}"));
                return attempt;
            }
        };
        attempt.report.branch = own.branch.clone();
        self.log(
            None,
            LogLevel::Info,
            format!(
                "batch `{}`: attempt {number} works on branch {}{}",
                batch.id,
                own.branch,
                spec.agent
                    .as_deref()
                    .map(|a| format!(" with agent `{a}`"))
                    .unwrap_or_default()
            ),
        );
        let suffix = format!("{}#{number}", batch.id);
        // With workers and `[git] remote`, the attempt's branch is where its
        // dispatched tasks work.
        let what = format!("batch `{}` attempt {number}", batch.id);
        let shared = self.share_workspace(&what, &own).await;
        let setup = match &self.config.git.setup {
            _ if shared.is_err() => None,
            Some(script) => {
                self.execution_as(
                    batch,
                    &format!("setup:{suffix}"),
                    &own.dir,
                    RunReason::SetupScript,
                    script,
                )
                .await
                .2
            }
            None => None,
        };
        if let Err(error) = shared {
            attempt.report.error = Some(error);
        } else if let Some(error) = setup {
            attempt.report.error = Some(format!("the setup script failed: {error}"));
        } else {
            let results = self.attempt_tasks(batch, &own.dir, &spec, templates).await;
            // What workers pushed comes back before the attempt is committed.
            let taken = self.take_back(batch, &own).await;
            attempt.report.completed = results.iter().all(|r| r.state == TaskState::Completed);
            attempt.report.error = results
                .iter()
                .find(|r| r.state != TaskState::Completed)
                .map(|r| {
                    format!(
                        "task `{}`: {}",
                        r.id,
                        r.error.as_deref().unwrap_or("failed")
                    )
                });
            if let Err(message) = taken {
                attempt.report.completed = false;
                attempt.report.error.get_or_insert(message);
            }
            for (result, task) in results.iter().zip(&spec.tasks) {
                let Some(output) = result
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str::<Value>(o).ok())
                else {
                    continue;
                };
                let usage = &output["usage"];
                attempt.input_tokens += usage["input_tokens"].as_u64().unwrap_or(0);
                attempt.output_tokens += usage["output_tokens"].as_u64().unwrap_or(0);
                if let Some(cost) = usage["cost_usd"].as_f64() {
                    attempt.report.cost_usd = Some(attempt.report.cost_usd.unwrap_or(0.0) + cost);
                }
                attempt.outputs.push((task.template.clone(), output));
            }
            attempt.report.tokens = attempt.input_tokens + attempt.output_tokens;
        }
        let message = format!(
            "runner: attempt {number} of batch {} of run {}",
            batch.id, self.run_id
        );
        let (ws, text) = (own.clone(), message);
        let committed = tokio::task::spawn_blocking(move || {
            let committed = ws.commit_with(&text)?;
            let diff = if committed.head_after == committed.head_before {
                None
            } else {
                Some(crate::git::diff_between(
                    &ws.path,
                    Some(&committed.head_before),
                    &committed.head_after,
                )?)
            };
            Ok::<_, crate::git::GitError>((committed, diff))
        })
        .await
        .map_err(|err| err.to_string())
        .and_then(|r| r.map_err(|err| err.to_string()));
        match committed {
            Ok((committed, diff)) => {
                attempt.head = Some(committed.head_after);
                if let Some(diff) = diff {
                    attempt.report.files_changed = diff.files.len() as u32;
                    attempt.report.additions = diff.files.iter().map(|f| f.additions as u32).sum();
                    attempt.report.deletions = diff.files.iter().map(|f| f.deletions as u32).sum();
                }
            }
            Err(message) => {
                attempt.report.completed = false;
                attempt.report.error = Some(format!("cannot commit its changes: {message}"));
            }
        }
        if attempt.report.completed
            && let Some(check) = &check
        {
            let begun = Instant::now();
            let (state, exit_code, error) = self
                .execution_as(
                    batch,
                    &format!("check:{suffix}"),
                    &own.dir,
                    RunReason::Check,
                    check,
                )
                .await;
            attempt.report.check = Some(CheckResult {
                passed: state == ExecutionState::Completed,
                exit_code,
                error,
                duration_ms: begun.elapsed().as_millis() as u64,
            });
        }
        if let Some(script) = &self.config.git.cleanup {
            let (_, _, error) = self
                .execution_as(
                    batch,
                    &format!("cleanup:{suffix}"),
                    &own.dir,
                    RunReason::CleanupScript,
                    script,
                )
                .await;
            if let Some(error) = error {
                self.log(
                    None,
                    LogLevel::Warn,
                    format!(
                        "batch `{}` attempt {number}: the cleanup script failed: {error}",
                        batch.id
                    ),
                );
            }
        }
        let project = self.project.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let workspaces = project.workspaces().expect("a repository");
            workspaces.remove(&own)
        })
        .await;
        if let Ok(Err(err)) = removed {
            self.log(
                None,
                LogLevel::Warn,
                format!("batch `{}` attempt {number}: {err}", batch.id),
            );
        }
        attempt.report.duration_ms = started.elapsed().as_millis() as u64;
        attempt
    }

    /// The attempt's tasks, in order, in `dir`; after a failure the rest
    /// are skipped.
    async fn attempt_tasks(
        self: &Arc<Self>,
        batch: &Arc<Batch>,
        dir: &std::path::Path,
        spec: &AttemptSpec,
        templates: &HashMap<String, usize>,
    ) -> Vec<TaskResult> {
        let dir = Arc::new(PathBuf::from(dir));
        let failed = Arc::new(AtomicBool::new(false));
        let mut results = Vec::with_capacity(spec.tasks.len());
        for task in &spec.tasks {
            let index = templates[task.template.as_str()];
            let mut task_spec = task_spec(task);
            if let (Some(agent), TaskKind::Agent(_)) = (&spec.agent, &batch.tasks[index].kind)
                && let Ok(Value::Object(mut config)) = serde_json::from_str(&task_spec.config)
            {
                config.insert("agent".into(), Value::String(agent.clone()));
                task_spec.config = Value::Object(config).to_string();
            }
            let result = self
                .clone()
                .run_task(
                    batch.clone(),
                    dir.clone(),
                    task_spec,
                    index,
                    true,
                    failed.clone(),
                )
                .await;
            results.push(result);
        }
        results
    }
}

fn task_spec(task: &AttemptTask) -> TaskSpec {
    TaskSpec {
        id: task.id.clone(),
        name: task.name.clone(),
        template: task.template.clone(),
        config: task.config.clone(),
    }
}

fn attempt_result(attempt: &Attempt, note: Option<&String>, rank: u32) -> AttemptResult {
    let r = &attempt.report;
    AttemptResult {
        number: r.number,
        agent: r.agent.clone(),
        branch: r.branch.clone(),
        head: attempt.head.clone(),
        completed: r.completed,
        error: r.error.clone(),
        check: r.check.as_ref().map(|c| AttemptCheck {
            passed: c.passed,
            exit_code: c.exit_code,
            error: c.error.clone(),
            duration_ms: c.duration_ms,
        }),
        files_changed: r.files_changed,
        additions: r.additions,
        deletions: r.deletions,
        duration_ms: r.duration_ms,
        input_tokens: attempt.input_tokens,
        output_tokens: attempt.output_tokens,
        cost_usd: r.cost_usd,
        rank,
        note: note.cloned().unwrap_or_default(),
    }
}
