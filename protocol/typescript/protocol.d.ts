// Generated from the Rust types of the `runner-protocol` crate; do not edit.
// Regenerate: UPDATE_PROTOCOL_FILES=1 cargo test -p runner-protocol --test generated

/**
 * One thing an agent did, as its adapter understood it.
 */
export type Activity = {
    kind: "session_started";
    session_id: string;
  }
  | {
    kind: "assistant_message";
    text: string;
  }
  | {
    kind: "thinking";
    text: string;
  }
  | {
    kind: "tool_use";
    id?: string | null;
    input: unknown;
    name: string;
  }
  | {
    kind: "tool_result";
    id?: string | null;
    is_error: boolean;
    output: string;
  }
  | {
    kind: "file_change";
    /**
     * `add`, `update`, `delete` or `unknown`.
     */
    change: string;
    path: string;
  }
  | {
    kind: "command_run";
    command: string;
    exit_code?: number | null;
    output?: string | null;
  }
  | {
    kind: "usage";
    cached_tokens: number;
    cost_usd?: number | null;
    input_tokens: number;
    output_tokens: number;
  }
  | {
    kind: "error";
    message: string;
  }
  | {
    kind: "final_result";
    is_error: boolean;
    summary: string;
  }
  | {
    kind: "raw";
    line: string;
  };

export interface AgentState {
  agent: string;
  current_command?: string | null;
  /**
   * Its queued and running commands, in the order they were queued.
   */
  queue: CommandState[];
  status: AgentStatus;
}

/**
 * An agent: `online` (idle), `busy` (running a command), `offline` (its CLI cannot be found).
 */
export type AgentStatus = "online" | "busy" | "offline";

/**
 * How an attempt's check ended.
 */
export interface AttemptCheck {
  duration_ms: number;
  error?: string | null;
  exit_code?: number | null;
  passed: boolean;
}

/**
 * One attempt of a `best_of_result`.
 */
export interface AttemptResult {
  additions: number;
  /**
   * The agent its agent tasks ran with, when the batch type chose one.
   */
  agent?: string | null;
  /**
   * The attempt's own branch; it stays after the run, for review.
   */
  branch: string;
  /**
   * The check's result; absent without a check, or when the tasks failed.
   */
  check?: AttemptCheck | null;
  /**
   * Every task of the attempt completed.
   */
  completed: boolean;
  /**
   * Absent when no agent of the attempt reported a cost.
   */
  cost_usd?: number | null;
  deletions: number;
  /**
   * From the attempt's start to the end of its check.
   */
  duration_ms: number;
  /**
   * Why it failed: its first failed task's error.
   */
  error?: string | null;
  /**
   * The attempt's diff from where the batch started.
   */
  files_changed: number;
  /**
   * The branch's head after the attempt.
   */
  head?: string | null;
  input_tokens: number;
  /**
   * Where it ranked and why, for people: `won: …`, `bigger diff than attempt 2: …`.
   */
  note: string;
  /**
   * 1, 2, 3… in plan order.
   */
  number: number;
  output_tokens: number;
  /**
   * 1 for the best.
   */
  rank: number;
}

export interface BatchState {
  batch_id: string;
  batch_name: string;
  branch?: string | null;
  error?: string | null;
  finished_at?: string | null;
  started_at?: string | null;
  status: BatchStatus;
  summary?: string | null;
  /**
   * In the order they started.
   */
  tasks: TaskState[];
}

/**
 * A batch: `pending → running → completed | failed`.
 */
export type BatchStatus = "pending" | "running" | "completed" | "failed";

/**
 * Who is connecting.
 */
export interface ClientInfo {
  /**
   * What an agent client can do.
   */
  capabilities?: string[];
  kind?: ClientKind;
  /**
   * For example `ProgramDashboard`, or the agent's id.
   */
  name?: string | null;
  /**
   * The page or view of a dashboard, for example `logs`.
   */
  page?: string | null;
  timezone?: string | null;
  user_agent?: string | null;
  version?: string | null;
}

/**
 * Dashboards and agents count against separate limits (50 and 10 by default).
 */
export type ClientKind = "dashboard" | "agent";

/**
 * One message from a client.
 */
export type ClientMessage = {
  /**
   * Echoed in the answer and in any error about this request.
   */
  id?: RequestId | null;
} & (
  | {
    type: "identify";
    /**
     * Resume: send the events after this number instead of a snapshot.
     */
    after_seq?: number | null;
    client: ClientInfo;
    /**
     * The filter to start with (default: everything).
     */
    filter?: Filter | null;
    /**
     * The protocol version the client speaks, for example `1.0.0`;
     * the major version must match the server's.
     */
    protocol_version: string;
    /**
     * Needed unless the client is on loopback and the server allows
     * loopback clients without one.
     */
    token?: Secret | null;
  }
  | {
    type: "ping";
  }
  | {
    type: "request_state";
  }
  | {
    type: "subscribe";
    filter?: Filter;
  }
  | {
    type: "resume";
    after_seq: number;
  }
  | {
    type: "start_run";
    pipeline?: string | null;
  }
  | {
    type: "abort_run";
    run_id: string;
  }
  | {
    type: "command_request";
    /**
     * The agent's name, for example `claude`.
     */
    agent: string;
    priority?: Priority;
    /**
     * What to ask the agent.
     */
    prompt: string;
    /**
     * Resume this agent session (the agent's own session id, printed
     * by an earlier command) instead of starting a new one.
     */
    resume_session?: string | null;
  }
  | {
    type: "command_interrupt";
    command_id: string;
  }
  | {
    type: "approval_decision";
    allow: boolean;
    approval_id: string;
    /**
     * Told to the agent, for example why it was denied.
     */
    message?: string | null;
  }
);

export interface CommandState {
  agent: string;
  command_id: string;
  error?: string | null;
  exit_code?: number | null;
  priority: Priority;
  run_id?: string | null;
  status: CommandStatus;
  task_id?: string | null;
  /**
   * When it was last updated.
   */
  updated_at: string;
}

/**
 * A command sent to an agent: `queued → running → completed | failed | interrupted`.
 */
export type CommandStatus = "queued" | "running" | "completed" | "failed" | "interrupted";

/**
 * What a `plugin_compile` event says.
 */
export type CompileStatus = "compiling" | "compiled" | "failed";

/**
 * Why a request failed.
 */
export type ErrorCode = "malformed" | "unknown_type" | "invalid" | "not_identified" | "unsupported_version" | "rejected" | "resume_unavailable";

/**
 * One state change, numbered.
 */
export type Event = {
  /**
   * Grows by one with every event a runner publishes; never repeats.
   */
  seq: number;
  /**
   * When the change happened (RFC 3339, UTC, milliseconds).
   */
  time: string;
} & (
  | {
    type: "run_status";
    /**
     * Why the run failed, was aborted or was interrupted.
     */
    error?: string | null;
    message?: string | null;
    pipeline: string;
    run_id: string;
    status: RunStatus;
  }
  | {
    type: "batch_status";
    batch_id: string;
    batch_name: string;
    /**
     * The git branch holding the batch's changes, when it completed in a repository.
     */
    branch?: string | null;
    /**
     * `pending` (published when the run starts): the batches it waits
     * for, so the run's graph can be drawn as it ran, whatever
     * `runner.toml` says later.
     */
    depends_on?: string[];
    error?: string | null;
    pipeline: string;
    run_id: string;
    status: BatchStatus;
    /**
     * One line from the batch type, for example `3 of 4 tasks completed`.
     */
    summary?: string | null;
  }
  | {
    type: "task_started";
    batch_id: string;
    display_text?: string | null;
    name: string;
    priority: Priority;
    run_id: string;
    task_id: string;
    task_type: string;
  }
  | {
    type: "task_progress";
    batch_id: string;
    display_text: string;
    percent?: number | null;
    run_id: string;
    task_id: string;
  }
  | {
    type: "task_finished";
    batch_id: string;
    duration_ms: number;
    error?: string | null;
    /**
     * For processes: how they exited.
     */
    exit_code?: number | null;
    finished_at: string;
    name: string;
    /**
     * The task's output (JSON), when it completed.
     */
    result?: unknown;
    run_id: string;
    started_at?: string | null;
    status: TaskStatus;
    task_id: string;
    task_type: string;
  }
  | {
    type: "log";
    level: LogLevel;
    message: string;
    run_id?: string | null;
    /**
     * Who logged it: `runner`, or the plugin's name.
     */
    source: string;
    stream?: Stream | null;
    task_id?: string | null;
  }
  | {
    type: "terminal_output";
    command_id?: string | null;
    data: string;
    run_id?: string | null;
    /**
     * 0, 1, 2, ... within one task or command, over both streams.
     */
    sequence: number;
    stream: Stream;
    task_id?: string | null;
  }
  | {
    type: "command_status";
    agent: string;
    command_id: string;
    error?: string | null;
    /**
     * Set when the command completed or failed with an exit code.
     */
    exit_code?: number | null;
    priority: Priority;
    /**
     * The prompt, on the `queued` event.
     */
    prompt?: string | null;
    run_id?: string | null;
    status: CommandStatus;
    task_id?: string | null;
  }
  | {
    type: "agent_status";
    agent: string;
    current_command?: string | null;
    /**
     * Commands waiting in its queue.
     */
    queued: number;
    status: AgentStatus;
  }
  | {
    type: "agent_activity";
    activity: Activity;
    agent: string;
    command_id: string;
    run_id?: string | null;
    task_id?: string | null;
  }
  | {
    type: "workspace_prepared";
    /**
     * The commit the branch starts from (the head before the batch ran).
     */
    base_commit?: string | null;
    batch_id: string;
    /**
     * The batch's branch; absent when the project is not in a git repository
     * (or the repository has no commits yet), and `note` then says so.
     */
    branch?: string | null;
    /**
     * Why the batch has no branch, or a warning such as uncommitted changes
     * that the branch does not contain.
     */
    note?: string | null;
    /**
     * The directory the batch's tasks run in.
     */
    path: string;
    run_id: string;
  }
  | {
    type: "execution_status";
    batch_id: string;
    /**
     * What runs, for example the script's text.
     */
    command: string;
    error?: string | null;
    /**
     * Unique in the run, for example `setup:build`.
     */
    execution_id: string;
    /**
     * Set when the process exited.
     */
    exit_code?: number | null;
    reason: RunReason;
    run_id: string;
    status: ExecutionState;
  }
  | {
    type: "repo_state";
    batch_id: string;
    branch: string;
    /**
     * How many files the commit added, changed or deleted (0: no commit).
     */
    files_changed: number;
    /**
     * The branch's commit after it; equal to `head_before` when nothing changed.
     */
    head_after: string;
    /**
     * The branch's commit before the batch ran.
     */
    head_before: string;
    run_id: string;
  }
  | {
    type: "merge_status";
    batch_id: string;
    /**
     * The batch's branch.
     */
    branch: string;
    /**
     * The target's new commit (the merge commit, or the batch's head after
     * a fast-forward); absent when the merge did not happen.
     */
    commit?: string | null;
    /**
     * The files both sides changed, when `status` is `conflict`.
     */
    conflicts?: string[];
    error?: string | null;
    run_id: string;
    status: MergeOutcome;
    /**
     * The branch merged into, for example `main`.
     */
    target: string;
  }
  | {
    type: "watch_status";
    /**
     * `watching`: the pipeline's batches; `triggered`: the batches that re-run.
     */
    batches?: string[];
    /**
     * `watching`: how many files some batch reads.
     */
    files?: number | null;
    /**
     * `triggered`: changes seen while the previous run was going.
     */
    follow_up?: boolean;
    /**
     * `config_error`, `plugin_error`, `warning`: what to tell the user.
     */
    message?: string | null;
    /**
     * The changed files, relative to the project (`triggered`,
     * `restarting`, `seen_while_busy`; `plugin_reloaded` and
     * `plugin_error`: the component file, absolute when outside it).
     */
    paths?: string[];
    pipeline: string;
    /**
     * `plugin_reloaded`, `plugin_error`: the plugin's name in `runner.toml`.
     */
    plugin?: string | null;
    /**
     * `seen_while_busy`: re-run once the run ends (`false`: dropped).
     */
    queued?: boolean | null;
    /**
     * `triggered`: the run these changes start.
     */
    run_id?: string | null;
    status: WatchState;
  }
  | {
    type: "plugin_compile";
    /**
     * `compiled`, `failed`: how long compiling took.
     */
    duration_ms?: number | null;
    /**
     * `failed`: why.
     */
    error?: string | null;
    /**
     * The plugin's name in `runner.toml`.
     */
    plugin: string;
    /**
     * The component's size in bytes.
     */
    size_bytes: number;
    status: CompileStatus;
  }
  | {
    type: "approval_requested";
    agent: string;
    /**
     * The host's id of this prompt, named by the answer.
     */
    approval_id: string;
    command_id: string;
    /**
     * One line for people, when the CLI gives one.
     */
    description?: string | null;
    /**
     * The tool's input, as the agent gave it.
     */
    input: unknown;
    run_id?: string | null;
    task_id?: string | null;
    /**
     * Milliseconds until the prompt is denied for want of an answer.
     */
    timeout_ms: number;
    /**
     * The tool the agent wants to use, for example `Write`.
     */
    tool: string;
  }
  | {
    type: "approval_decided";
    agent: string;
    allow: boolean;
    approval_id: string;
    command_id: string;
    /**
     * Who answered: a client's name (or kind), `terminal`, or
     * `timeout` when nobody answered in time, `ended` when the command
     * ended first.
     */
    decided_by: string;
    /**
     * Told to the agent, for example why it was denied.
     */
    message?: string | null;
    run_id?: string | null;
    task_id?: string | null;
  }
  | {
    type: "best_of_result";
    /**
     * Every attempt, in plan order.
     */
    attempts: AttemptResult[];
    batch_id: string;
    /**
     * The command each attempt was checked with, when there is one.
     */
    check?: string | null;
    /**
     * Why it won, or why none did, for people.
     */
    reason: string;
    run_id: string;
    /**
     * The winning attempt's number (1, 2, …); absent when none could be
     * kept (the batch then fails).
     */
    winner?: number | null;
    /**
     * The winner's branch (`runner/<run>-<batch>-<n>`).
     */
    winner_branch?: string | null;
  }
);

/**
 * A process: `running → completed | failed | killed | interrupted`.
 */
export type ExecutionState = "running" | "completed" | "failed" | "killed" | "interrupted";

/**
 * Which events a client receives. Every list narrows; an empty list does
 * not narrow. Answers (with an `id`), `lagged` and `error` always pass.
 */
export interface Filter {
  /**
   * Only `log` events of these levels; other events pass.
   */
  levels?: LogLevel[];
  /**
   * Only events of runs of these pipelines. Events that belong to no
   * run (agents, commands queued by clients) are not narrowed by this.
   */
  pipelines?: string[];
  /**
   * Only events of these runs; events of no run pass, as above.
   */
  runs?: string[];
  /**
   * Only events carrying one of these tags: a log's `source`, a task's
   * id or type, a batch's id, an agent's name.
   */
  tags?: string[];
  /**
   * Only these `type`s (event types and `node_status`).
   */
  types?: string[];
}

/**
 * Severity of a log line.
 */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

/**
 * How a merge of a batch's branch ended.
 */
export type MergeOutcome = "fast_forward" | "merged" | "up_to_date" | "conflict" | "failed";

export interface NodeState {
  node_id: string;
  node_name: string;
  status: NodeStatus;
}

/**
 * A node of a pipeline's graph as a per-pipeline view shows it.
 */
export type NodeStatus = "pending" | "processing" | "completed" | "error";

/**
 * A permission prompt nobody has answered yet (its `approval_requested`).
 */
export interface PendingApproval {
  agent: string;
  approval_id: string;
  command_id: string;
  description?: string | null;
  input: unknown;
  run_id?: string | null;
  /**
   * The `seq` of its `approval_requested` event.
   */
  seq: number;
  task_id?: string | null;
  /**
   * Milliseconds it waits in all, from its `approval_requested`.
   */
  timeout_ms: number;
  tool: string;
}

/**
 * A pipeline's graph as its latest run left it (seed 002).
 */
export interface PipelineNodes {
  /**
   * In pipeline order.
   */
  nodes: NodeState[];
  pipeline: string;
  run_id: string;
}

/**
 * Queue priority: high before normal before low, first in first out within one.
 */
export type Priority = "low" | "normal" | "high";

/**
 * The id a client gave a request; echoed in the answer.
 */
export type RequestId = number | string;

/**
 * Why a process ran (seed 003's run reason).
 */
export type RunReason = "setup_script" | "cleanup_script" | "task" | "coding_agent" | "check";

export interface RunState {
  /**
   * In pipeline order.
   */
  batches: BatchState[];
  error?: string | null;
  finished_at?: string | null;
  message?: string | null;
  pipeline: string;
  run_id: string;
  started_at: string;
  status: RunStatus;
}

/**
 * A pipeline run: `running → completed | failed | aborted | interrupted`.
 */
export type RunStatus = "running" | "completed" | "failed" | "aborted" | "interrupted";

/**
 * A secret (the token): serialized as-is, never shown by `Debug`.
 */
export type Secret = string;

/**
 * What the server sends: a numbered [`Event`] or a [`ServerReply`].
 */
export type ServerMessage = Event | ServerReply;

/**
 * Everything the server sends that is not an event: answers to requests
 * (with the request's `id`) and notices (`node_status`, `lagged`).
 */
export type ServerReply = {
  /**
   * The `id` of the request this answers.
   */
  id?: RequestId | null;
} & (
  | {
    type: "identified";
    client_id: string;
    /**
     * The server pings this often; a client that does not answer within
     * one interval is dropped.
     */
    heartbeat_ms: number;
    kind: ClientKind;
    /**
     * Larger messages close the connection with 1009.
     */
    max_message_bytes: number;
    /**
     * The `runner.toml` the server runs, as an absolute path: a
     * `runner ask` or `runner run` checks that it is its own project
     * before handing the server its work.
     */
    project?: string | null;
    protocol_version: string;
    /**
     * The runner's version.
     */
    server_version: string;
  }
  | {
    type: "state";
    snapshot: Snapshot;
  }
  | {
    type: "node_status";
    error?: string | null;
    /**
     * The `seq` of the `batch_status` event.
     */
    event_seq: number;
    /**
     * The batch id.
     */
    node_id: string;
    node_name: string;
    pipeline: string;
    run_id: string;
    status: NodeStatus;
    time: string;
  }
  | {
    type: "pong";
  }
  | {
    type: "error";
    code: ErrorCode;
    message: string;
  }
  | {
    type: "lagged";
    /**
     * The last event the client was sent.
     */
    after_seq: number;
    /**
     * How many queued messages were dropped.
     */
    missed: number;
  }
  | {
    type: "subscribed";
    filter: Filter;
  }
  | {
    type: "resumed";
    after_seq: number;
  }
  | {
    type: "run_started";
    pipeline: string;
    run_id: string;
  }
  | {
    type: "abort_requested";
    run_id: string;
  }
  | {
    type: "command_accepted";
    agent: string;
    command_id: string;
  }
  | {
    type: "interrupt_requested";
    command_id: string;
  }
  | {
    type: "approval_accepted";
    approval_id: string;
  }
);

/**
 * The state a client needs to draw everything, current to `seq`.
 */
export interface Snapshot {
  /**
   * Runs still going, oldest first.
   */
  active_runs: RunState[];
  /**
   * Agents and their queues.
   */
  agents: AgentState[];
  /**
   * Permission prompts waiting for an answer, oldest first.
   */
  pending_approvals?: PendingApproval[];
  /**
   * Per pipeline: its nodes (batches) as of its latest run.
   */
  pipelines: PipelineNodes[];
  /**
   * Commands that ended, newest first (a bounded number).
   */
  recent_commands: CommandState[];
  /**
   * Runs that ended, newest first (a bounded number).
   */
  recent_runs: RunState[];
  /**
   * Every event up to and including this one is reflected (0: none yet).
   */
  seq: number;
}

/**
 * Which output stream a chunk or line came from.
 */
export type Stream = "stdout" | "stderr";

export interface TaskState {
  display_text?: string | null;
  duration_ms?: number | null;
  error?: string | null;
  exit_code?: number | null;
  finished_at?: string | null;
  name: string;
  percent?: number | null;
  priority: Priority;
  started_at?: string | null;
  status: TaskStatus;
  task_id: string;
  task_type: string;
}

/**
 * A task: `pending → running → completed | failed | skipped | interrupted`.
 */
export type TaskStatus = "pending" | "running" | "completed" | "failed" | "skipped" | "interrupted";

/**
 * What a `watch_status` event says.
 */
export type WatchState = "watching" | "triggered" | "restarting" | "seen_while_busy" | "config_reloaded" | "config_error" | "plugin_reloaded" | "plugin_error" | "warning";
