//! [`Event`]: one numbered, timestamped state change.

use crate::status::*;
use crate::time::{rfc3339, rfc3339_opt};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One state change, numbered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// Grows by one with every event a runner publishes; never repeats.
    pub seq: u64,
    /// When the change happened (RFC 3339, UTC, milliseconds).
    #[serde(with = "rfc3339")]
    #[schemars(with = "String")]
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The run this event belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        use EventKind::*;
        match &self.kind {
            RunStatus { run_id, .. }
            | BatchStatus { run_id, .. }
            | TaskStarted { run_id, .. }
            | TaskProgress { run_id, .. }
            | TaskFinished { run_id, .. } => Some(run_id),
            Log { run_id, .. } | TerminalOutput { run_id, .. } | CommandStatus { run_id, .. } => {
                run_id.as_deref()
            }
            AgentActivity { run_id, .. } => run_id.as_deref(),
            AgentStatus { .. } => None,
            WatchStatus { run_id, .. } => run_id.as_deref(),
            PluginCompile { .. } => None,
            ApprovalRequested { run_id, .. } | ApprovalDecided { run_id, .. } => run_id.as_deref(),
            WorkspacePrepared { run_id, .. }
            | ExecutionStatus { run_id, .. }
            | RepoState { run_id, .. }
            | MergeStatus { run_id, .. } => Some(run_id),
            BestOfResult { run_id, .. } => Some(run_id),
        }
    }

    /// The `type` field of the event's JSON form.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// What changed. Serialized with a `type` tag in snake case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run changed state.
    RunStatus {
        run_id: String,
        pipeline: String,
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Why the run failed, was aborted or was interrupted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A batch changed state. `error` is set when it failed.
    BatchStatus {
        run_id: String,
        pipeline: String,
        batch_id: String,
        batch_name: String,
        status: BatchStatus,
        /// The git branch holding the batch's changes, when it completed in a repository.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// One line from the batch type, for example `3 of 4 tasks completed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// `pending` (published when the run starts): the batches it waits
        /// for, so the run's graph can be drawn as it ran, whatever
        /// `runner.toml` says later.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends_on: Vec<String>,
    },
    /// A task (a block) started.
    TaskStarted {
        run_id: String,
        batch_id: String,
        task_id: String,
        task_type: String,
        name: String,
        priority: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_text: Option<String>,
    },
    /// A running task said what it is doing.
    TaskProgress {
        run_id: String,
        batch_id: String,
        task_id: String,
        display_text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percent: Option<u8>,
    },
    /// A task finished, one way or another.
    TaskFinished {
        run_id: String,
        batch_id: String,
        task_id: String,
        task_type: String,
        name: String,
        status: TaskStatus,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
        #[schemars(with = "Option<String>")]
        started_at: Option<DateTime<Utc>>,
        #[serde(with = "rfc3339")]
        #[schemars(with = "String")]
        finished_at: DateTime<Utc>,
        duration_ms: u64,
        /// The task's output (JSON), when it completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// For processes: how they exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A log line from the runner or a plugin.
    Log {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        level: LogLevel,
        /// Who logged it: `runner`, or the plugin's name.
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<Stream>,
        message: String,
    },
    /// A chunk (at most 10 KB) of a process's or plugin's output.
    TerminalOutput {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command_id: Option<String>,
        stream: Stream,
        /// 0, 1, 2, ... within one task or command, over both streams.
        sequence: u64,
        data: String,
    },
    /// A command sent to an agent changed state.
    CommandStatus {
        command_id: String,
        agent: String,
        status: CommandStatus,
        priority: Priority,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        /// Set when the command completed or failed with an exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The prompt, on the `queued` event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
    },
    /// An agent changed state.
    AgentStatus {
        agent: String,
        status: AgentStatus,
        /// Commands waiting in its queue.
        queued: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_command: Option<String>,
    },
    /// Something an agent did, parsed from its output by its adapter.
    AgentActivity {
        command_id: String,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        activity: Activity,
    },
    /// A batch's workspace is ready: its own git worktree on its own branch,
    /// or the project directory itself when there is no repository to branch.
    WorkspacePrepared {
        run_id: String,
        batch_id: String,
        /// The directory the batch's tasks run in.
        path: String,
        /// The batch's branch; absent when the project is not in a git repository
        /// (or the repository has no commits yet), and `note` then says so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<String>,
        /// The commit the branch starts from (the head before the batch ran).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_commit: Option<String>,
        /// Why the batch has no branch, or a warning such as uncommitted changes
        /// that the branch does not contain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A process of a batch that is not one of its tasks (a setup or cleanup
    /// script) changed state.
    ExecutionStatus {
        run_id: String,
        batch_id: String,
        /// Unique in the run, for example `setup:build`.
        execution_id: String,
        reason: RunReason,
        /// What runs, for example the script's text.
        command: String,
        status: ExecutionState,
        /// Set when the process exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A batch's changes were committed to its branch (or nothing had changed).
    RepoState {
        run_id: String,
        batch_id: String,
        branch: String,
        /// The branch's commit before the batch ran.
        head_before: String,
        /// The branch's commit after it; equal to `head_before` when nothing changed.
        head_after: String,
        /// How many files the commit added, changed or deleted (0: no commit).
        files_changed: usize,
    },
    /// A batch's branch was merged into the target branch, or could not be.
    MergeStatus {
        run_id: String,
        batch_id: String,
        /// The batch's branch.
        branch: String,
        /// The branch merged into, for example `main`.
        target: String,
        status: MergeOutcome,
        /// The target's new commit (the merge commit, or the batch's head after
        /// a fast-forward); absent when the merge did not happen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// The files both sides changed, when `status` is `conflict`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        conflicts: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// `runner watch` says what it watches, what a change triggered, or what
    /// became of a changed configuration. The runs it starts have their own
    /// events.
    WatchStatus {
        pipeline: String,
        status: WatchState,
        /// `watching`: how many files some batch reads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files: Option<usize>,
        /// The changed files, relative to the project (`triggered`,
        /// `restarting`, `seen_while_busy`; `plugin_reloaded` and
        /// `plugin_error`: the component file, absolute when outside it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
        /// `watching`: the pipeline's batches; `triggered`: the batches that re-run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        batches: Vec<String>,
        /// `triggered`: the run these changes start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// `triggered`: changes seen while the previous run was going.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        follow_up: bool,
        /// `seen_while_busy`: re-run once the run ends (`false`: dropped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<bool>,
        /// `config_error`, `plugin_error`, `warning`: what to tell the user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `plugin_reloaded`, `plugin_error`: the plugin's name in `runner.toml`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
    },
    /// A plugin's component was not in the compile cache: it is being
    /// compiled to machine code (`compiling`), then `compiled` or `failed`.
    /// Published while plugins load, before any task runs; a component with
    /// an interpreter inside (Python, JavaScript) takes seconds the first
    /// time and milliseconds once cached.
    PluginCompile {
        /// The plugin's name in `runner.toml`.
        plugin: String,
        /// The component's size in bytes.
        size_bytes: u64,
        status: CompileStatus,
        /// `compiled`, `failed`: how long compiling took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// `failed`: why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An agent asks for permission to use a tool and waits: any identified
    /// client may answer with `approval_decision` (the first answer wins),
    /// and `approval_decided` follows. Nobody answering within the agent's
    /// `approval_timeout` denies it.
    ApprovalRequested {
        /// The host's id of this prompt, named by the answer.
        approval_id: String,
        command_id: String,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        /// The tool the agent wants to use, for example `Write`.
        tool: String,
        /// The tool's input, as the agent gave it.
        input: Value,
        /// One line for people, when the CLI gives one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Milliseconds until the prompt is denied for want of an answer.
        timeout_ms: u64,
    },
    /// A permission prompt was answered (or timed out), and the answer was
    /// written to the agent.
    ApprovalDecided {
        approval_id: String,
        command_id: String,
        agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        allow: bool,
        /// Told to the agent, for example why it was denied.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Who answered: a client's name (or kind), `terminal`, or
        /// `timeout` when nobody answered in time, `ended` when the command
        /// ended first.
        decided_by: String,
    },
    /// A batch whose type tries it several times (`best_of`, an attempts
    /// batch plugin) ranked its attempts: every attempt's check, diff, time,
    /// tokens and cost, which one won and why. Published before the batch's
    /// final `batch_status`; the winner's branch is then the batch's branch.
    BestOfResult {
        run_id: String,
        batch_id: String,
        /// The winning attempt's number (1, 2, …); absent when none could be
        /// kept (the batch then fails).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<u32>,
        /// The winner's branch (`runner/<run>-<batch>-<n>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner_branch: Option<String>,
        /// Why it won, or why none did, for people.
        reason: String,
        /// The command each attempt was checked with, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
        /// Every attempt, in plan order.
        attempts: Vec<AttemptResult>,
    },
}

impl EventKind {
    /// A `log` line from `source` (`runner`, or a plugin's name), of a run
    /// and a task when it belongs to them; not a stream's output.
    pub fn log(
        run_id: Option<String>,
        task_id: Option<String>,
        level: LogLevel,
        source: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Log {
            run_id,
            task_id,
            level,
            source: source.into(),
            stream: None,
            message: message.into(),
        }
    }

    /// The `type` field of the JSON form.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::RunStatus { .. } => "run_status",
            Self::BatchStatus { .. } => "batch_status",
            Self::TaskStarted { .. } => "task_started",
            Self::TaskProgress { .. } => "task_progress",
            Self::TaskFinished { .. } => "task_finished",
            Self::Log { .. } => "log",
            Self::TerminalOutput { .. } => "terminal_output",
            Self::CommandStatus { .. } => "command_status",
            Self::AgentStatus { .. } => "agent_status",
            Self::AgentActivity { .. } => "agent_activity",
            Self::WorkspacePrepared { .. } => "workspace_prepared",
            Self::ExecutionStatus { .. } => "execution_status",
            Self::RepoState { .. } => "repo_state",
            Self::MergeStatus { .. } => "merge_status",
            Self::WatchStatus { .. } => "watch_status",
            Self::PluginCompile { .. } => "plugin_compile",
            Self::ApprovalRequested { .. } => "approval_requested",
            Self::ApprovalDecided { .. } => "approval_decided",
            Self::BestOfResult { .. } => "best_of_result",
        }
    }
}

/// One thing an agent did, as its adapter understood it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activity {
    SessionStarted {
        session_id: String,
    },
    AssistantMessage {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolUse {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        input: Value,
    },
    ToolResult {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        output: String,
        is_error: bool,
    },
    FileChange {
        path: String,
        /// `add`, `update`, `delete` or `unknown`.
        change: String,
    },
    CommandRun {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        cached_tokens: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    Error {
        message: String,
    },
    FinalResult {
        summary: String,
        is_error: bool,
    },
    /// A line the adapter did not understand.
    Raw {
        line: String,
    },
}

/// One attempt of a `best_of_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptResult {
    /// 1, 2, 3… in plan order.
    pub number: u32,
    /// The agent its agent tasks ran with, when the batch type chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The attempt's own branch; it stays after the run, for review.
    pub branch: String,
    /// The branch's head after the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Every task of the attempt completed.
    pub completed: bool,
    /// Why it failed: its first failed task's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The check's result; absent without a check, or when the tasks failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<AttemptCheck>,
    /// The attempt's diff from where the batch started.
    pub files_changed: u32,
    pub additions: u32,
    pub deletions: u32,
    /// From the attempt's start to the end of its check.
    pub duration_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Absent when no agent of the attempt reported a cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// 1 for the best.
    pub rank: u32,
    /// Where it ranked and why, for people: `won: …`, `bigger diff than attempt 2: …`.
    pub note: String,
}

/// How an attempt's check ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptCheck {
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Why a process ran (seed 003's run reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    /// The repository's setup script, before a batch's tasks.
    SetupScript,
    /// The repository's cleanup script, after a batch's tasks.
    CleanupScript,
    /// A task of a batch.
    Task,
    /// A coding agent's command.
    CodingAgent,
    /// The check of one attempt of a `best_of` batch.
    Check,
}

impl RunReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetupScript => "setup_script",
            Self::CleanupScript => "cleanup_script",
            Self::Task => "task",
            Self::CodingAgent => "coding_agent",
            Self::Check => "check",
        }
    }
}

/// A process: `running → completed | failed | killed | interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    Running,
    Completed,
    Failed,
    /// Stopped by a timeout or an abort.
    Killed,
    /// Left running by a runner that died; marked at the next start.
    Interrupted,
}

impl ExecutionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Killed => "killed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// How a merge of a batch's branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The target now points at the batch's head (fast-forward).
    FastForward,
    /// A merge commit joins the target and the batch's branch.
    Merged,
    /// The target already contained the batch's changes.
    UpToDate,
    /// Both sides changed the same lines; the target is untouched.
    Conflict,
    /// Something else stopped the merge; the target is untouched.
    Failed,
}

impl MergeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FastForward => "fast_forward",
            Self::Merged => "merged",
            Self::UpToDate => "up_to_date",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
        }
    }

    /// The target holds the batch's changes.
    pub fn is_success(self) -> bool {
        matches!(self, Self::FastForward | Self::Merged | Self::UpToDate)
    }
}

macro_rules! display_as_str {
    ($($ty:ty),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(RunReason, ExecutionState, MergeOutcome);

/// Formats a timestamp the way every event does: RFC 3339, UTC,
/// milliseconds (`2026-12-04T18:55:51.040Z`). Written digit by digit: every
/// event has a few, and chrono's general formatter took a tenth of the
/// history writer's time; a year past 9999 or a leap second goes to it.
pub fn format_time(time: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // The UTC fields directly: each accessor of a `DateTime` converts anew.
    let naive = time.naive_utc();
    let (year, millis) = (naive.year(), naive.nanosecond() / 1_000_000);
    if !(0..=9999).contains(&year) || millis >= 1000 {
        return time.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, naive.month());
    put(8, 2, naive.day());
    put(11, 2, naive.hour());
    put(14, 2, naive.minute());
    put(17, 2, naive.second());
    put(20, 3, millis);
    String::from_utf8(text.to_vec()).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_time_writes_what_chronos_rfc3339_writes() {
        let chrono = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut seconds: i64 = -62_167_219_200; // 0000-01-01
        let end: i64 = 253_402_300_799 + 86_400 * 400; // past 9999-12-31
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        while seconds < end {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let nanos = (state % 1_000_000_000) as u32;
            let time = DateTime::from_timestamp(seconds, nanos).unwrap();
            assert_eq!(format_time(&time), chrono(&time), "{seconds} {nanos}");
            seconds += 86_400 * 7 + (state % 86_400) as i64;
        }
        // A leap second, and the ends of a day, a year and the range.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_milli_opt(23, 59, 59, 1_500)
            .unwrap()
            .and_utc();
        for time in [
            leap,
            DateTime::from_timestamp(1_483_228_799, 999_999_999).unwrap(),
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ] {
            assert_eq!(format_time(&time), chrono(&time));
        }
        assert_eq!(
            format_time(&DateTime::from_timestamp(1_796_409_951, 40_000_000).unwrap()),
            "2026-12-04T18:45:51.040Z"
        );
    }

    #[test]
    fn a_batch_status_event_round_trips_through_json_with_its_type_tag() {
        let event = Event {
            seq: 7,
            time: DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            kind: EventKind::BatchStatus {
                run_id: "r1".into(),
                pipeline: "default".into(),
                batch_id: "build".into(),
                batch_name: "Build".into(),
                status: BatchStatus::Failed,
                branch: None,
                error: Some("task `x` failed".into()),
                summary: None,
                depends_on: Vec::new(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "batch_status");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["time"], "2026-11-22T10:00:00.123Z");
        assert_eq!(json["error"], "task `x` failed");
        assert!(json.get("branch").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
