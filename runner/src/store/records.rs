//! The plain records `runner history`, `runner show` and `runner logs` read:
//! runs and their pages, batches, executions, agent turns, merges, `best_of`
//! attempts, log lines and the connection audit.

use super::lock::Holder;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// One run, as `runner history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub pipeline: String,
    /// `running`, `completed`, `failed`, `aborted` (stopped on request), or
    /// `interrupted` (the runner stopped without finishing it: a crash or a
    /// kill).
    pub status: String,
    /// The runner that recorded the run is gone (its lock names a process
    /// that has ended) and no runner has recorded the end yet: `status`
    /// reads `interrupted`, what it left running reads as interrupted, and
    /// the next `runner run` or `runner serve` records that.
    pub owner_gone: bool,
    pub message: Option<String>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub batches: usize,
    /// Batches that completed.
    pub batches_ok: usize,
    pub batches_failed: usize,
    pub tasks: usize,
    /// Tasks that completed; a running, pending or skipped task is not ok.
    pub tasks_ok: usize,
    /// Tasks that failed, were killed or were interrupted.
    pub tasks_failed: usize,
    /// Tasks still running or waiting to start.
    pub tasks_running: usize,
    /// What started it besides a request: `watch` (a `runner watch` re-run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The changed files that triggered it, relative to the project.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// Which runs a page of the history holds ([`Store::run_page`](super::Store::run_page)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// `running`, `completed`, `failed`, `aborted` or `interrupted`.
    pub status: Option<String>,
    pub pipeline: Option<String>,
    /// Runs per page (1 to 500).
    pub limit: usize,
    pub offset: usize,
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// Runs that match the filter, on every page.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// The error of a run whose runner is gone, until a runner records why.
pub const OWNER_GONE: &str = "the runner stopped without finishing it (crash or kill); the next `runner run` or `runner serve` records it as interrupted";

impl RunSummary {
    /// How long it took; `None` while it is still going.
    pub fn duration(&self) -> Option<Duration> {
        self.finished_at
            .map(|end| (end - self.started_at).to_std().unwrap_or_default())
    }

    /// The status as a person reads it: `interrupted (runner gone)` for a
    /// run whose runner is gone.
    pub fn status_text(&self) -> String {
        if self.owner_gone {
            format!("{} (runner gone)", self.status)
        } else {
            self.status.clone()
        }
    }

    /// A run recorded `running` whose runner is gone reads as its recovery
    /// will record it.
    pub(super) fn settle(&mut self, holder: Holder, owner_pid: Option<i64>) {
        if self.status != "running" || holder.owns(owner_pid) {
            return;
        }
        self.status = "interrupted".into();
        self.owner_gone = true;
        self.error.get_or_insert_with(|| OWNER_GONE.into());
        self.tasks_failed += self.tasks_running;
        self.tasks_running = 0;
        self.batches_failed = self.batches - self.batches_ok;
    }
}

/// A batch of a run: its workspace (seed 003) and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRecord {
    pub batch_id: String,
    pub name: String,
    pub status: String,
    pub error: Option<String>,
    pub summary: Option<String>,
    /// `None` when the project is not in a git repository.
    pub branch: Option<String>,
    pub worktree: Option<String>,
    pub base_commit: Option<String>,
    pub head_before: Option<String>,
    pub head_after: Option<String>,
    pub files_changed: Option<u64>,
    /// Why there is no branch, or a warning about the workspace.
    pub note: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The batches it waited for in this run; `None` for runs recorded
    /// before the history kept them.
    pub depends_on: Option<Vec<String>>,
}

/// A process of a run (seed 003's execution process): a task, a coding
/// agent's task, or a setup or cleanup script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRecord {
    /// The task id, or for scripts an id such as `setup:build`.
    pub execution_id: String,
    pub batch_id: String,
    /// `task`, `coding_agent`, `setup_script` or `cleanup_script`.
    pub reason: String,
    pub name: String,
    /// The task type (`exec`, `agent`, a plugin), or `script`.
    pub kind: String,
    /// A script's text.
    pub command: Option<String>,
    /// `running`, `completed`, `failed`, `skipped`, `killed` or `interrupted`.
    pub status: String,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The last progress text.
    pub progress: Option<String>,
    pub result: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
}

/// One command to a coding agent (seed 003's coding agent turn).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentTurnRecord {
    pub command_id: String,
    pub task_id: Option<String>,
    pub agent: String,
    pub status: String,
    pub prompt: Option<String>,
    /// The agent's final message.
    pub summary: Option<String>,
    pub is_error: Option<bool>,
    /// The agent's own session id, to resume it.
    pub agent_session_id: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A merge of a batch's branch into its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeRecord {
    pub batch_id: String,
    pub branch: String,
    pub target: String,
    /// `fast_forward`, `merged`, `up_to_date`, `conflict` or `failed`.
    pub status: String,
    pub commit: Option<String>,
    pub conflicts: Vec<String>,
    pub error: Option<String>,
    pub time: DateTime<Utc>,
}

/// How a batch that tried its work several times (`best_of`) ranked its
/// attempts: its `best_of_result` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BestOfRecord {
    pub batch_id: String,
    pub winner: Option<u32>,
    pub winner_branch: Option<String>,
    pub reason: String,
    pub check: Option<String>,
    pub attempts: Vec<protocol::AttemptResult>,
}

/// Everything `runner show RUN` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    pub run: RunSummary,
    /// In the order they first appeared.
    pub batches: Vec<BatchRecord>,
    /// In the order they started.
    pub executions: Vec<ExecutionRecord>,
    pub agent_turns: Vec<AgentTurnRecord>,
    pub merges: Vec<MergeRecord>,
    /// The attempts of `best_of` batches, side by side.
    pub best_of: Vec<BestOfRecord>,
}

impl RunDetail {
    /// What a run whose runner is gone left going reads as its recovery
    /// will record it.
    pub(super) fn settle(&mut self) {
        if !self.run.owner_gone {
            return;
        }
        let reason = || Some(OWNER_GONE.to_string());
        for batch in &mut self.batches {
            if matches!(batch.status.as_str(), "pending" | "running") {
                batch.status = "failed".into();
                batch.error = batch.error.take().or_else(reason);
            }
        }
        for execution in &mut self.executions {
            if matches!(execution.status.as_str(), "pending" | "running") {
                execution.status = "interrupted".into();
                execution.error = execution.error.take().or_else(reason);
            }
        }
        for turn in &mut self.agent_turns {
            if matches!(turn.status.as_str(), "queued" | "running") {
                turn.status = "interrupted".into();
                turn.error = turn.error.take().or_else(reason);
            }
        }
    }

    /// Tokens (input, output, cached) and cost of every agent turn of the run.
    pub fn agent_totals(&self) -> (u64, u64, u64, Option<f64>) {
        let mut totals = (0, 0, 0, None);
        for turn in &self.agent_turns {
            totals.0 += turn.input_tokens;
            totals.1 += turn.output_tokens;
            totals.2 += turn.cached_tokens;
            if let Some(cost) = turn.cost_usd {
                totals.3 = Some(totals.3.unwrap_or(0.0) + cost);
            }
        }
        totals
    }
}

/// What a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// A log line of the runner or a plugin.
    Log,
    /// A chunk of a process's or plugin's output.
    Output,
}

/// One log line or output chunk, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub task_id: Option<String>,
    pub command_id: Option<String>,
    pub kind: LogKind,
    /// For logs: `trace` … `error`.
    pub level: Option<String>,
    /// For logs: `runner` or the plugin.
    pub source: Option<String>,
    /// `stdout` or `stderr`.
    pub stream: Option<String>,
    /// A log message, or output exactly as written (it may end mid-line).
    pub text: String,
}

/// One entry of the connection audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionRecord {
    pub time: DateTime<Utc>,
    pub client: String,
    pub peer: String,
    pub action: String,
    pub detail: Option<String>,
}
