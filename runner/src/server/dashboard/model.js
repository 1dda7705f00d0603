// What the page knows: the snapshot, then every event applied in `seq`
// order. Views read it and subscribe to changes; nothing here touches the DOM.

/** @typedef {import('../../../../protocol/typescript/protocol').Event} Event */
/** @typedef {import('../../../../protocol/typescript/protocol').Snapshot} Snapshot */
/** @typedef {import('../../../../protocol/typescript/protocol').RunState} RunState */

const ENDED = new Set(['completed', 'failed', 'aborted', 'interrupted']);
export const runEnded = (status) => ENDED.has(status);

export class Model {
  constructor() {
    /** The last event applied; 0 before the first snapshot. */
    this.lastSeq = 0;
    /** Events whose number was not the one after the last (a gap): should stay 0. */
    this.gaps = 0;
    this.missing = [];
    this.eventsApplied = 0;
    this.snapshots = 0;
    /** @type {Map<string, any>} */
    this.runs = new Map();
    /** @type {Map<string, any>} */
    this.agents = new Map();
    /** @type {Map<string, any>} */
    this.commands = new Map();
    /** What the history said of runs (`/api/runs/RUN`), applied again after a new snapshot. @type {Map<string, any>} */
    this.details = new Map();
    /** Permission prompts waiting for an answer, by approval id. @type {Map<string, any>} */
    this.approvals = new Map();
    /** @type {Set<(event: Event | null) => void>} */
    this.listeners = new Set();
    /** Arrival times (performance.now()) of the last events, by seq. */
    this.arrivals = new Map();
    /** Milliseconds from an event's arrival to the end of the render that showed it (the benchmark reads them). */
    this.latencies = [];
  }

  /** @param {(event: Event | null) => void} fn  @returns {() => void} unsubscribe */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event) {
    for (const fn of [...this.listeners]) {
      try { fn(event); } catch (err) { console.error(err); }
    }
  }

  /** A view rendered the events `seqs`: records how long each waited. */
  rendered(seqs) {
    const now = performance.now();
    for (const seq of seqs) {
      const at = this.arrivals.get(seq);
      if (at !== undefined) this.latencies.push(now - at);
    }
    if (this.latencies.length > 200_000) this.latencies.splice(0, this.latencies.length - 200_000);
  }

  /** @param {Snapshot} snapshot */
  applySnapshot(snapshot) {
    this.snapshots += 1;
    this.runs.clear();
    for (const run of [...snapshot.recent_runs, ...snapshot.active_runs]) this.runs.set(run.run_id, fromRunState(run));
    this.agents.clear();
    for (const agent of snapshot.agents) {
      this.agents.set(agent.agent, { agent: agent.agent, status: agent.status, current_command: agent.current_command, queued: agent.queue.length });
      for (const command of agent.queue) this.command(command.command_id, command.agent, command);
    }
    for (const command of snapshot.recent_commands) this.command(command.command_id, command.agent, command);
    this.approvals.clear();
    for (const approval of snapshot.pending_approvals || []) this.approvals.set(approval.approval_id, { ...approval });
    // A snapshot that arrives after a run's detail must not drop what only
    // the history knows (heads, the best_of comparison, …).
    for (const detail of this.details.values()) this.merge(detail);
    this.lastSeq = snapshot.seq;
    this.emit(null);
  }

  /** @param {Event} event */
  applyEvent(event) {
    if (event.seq <= this.lastSeq) return; // already applied (a replay overlap)
    if (this.lastSeq > 0 && event.seq !== this.lastSeq + 1) {
      this.gaps += 1;
      this.missing.push([this.lastSeq + 1, event.seq - 1]);
    }
    this.lastSeq = event.seq;
    this.eventsApplied += 1;
    this.arrivals.set(event.seq, performance.now());
    if (this.arrivals.size > 50_000) this.arrivals.delete(this.arrivals.keys().next().value);
    this.reduce(event);
    this.emit(event);
  }

  run(runId, pipeline) {
    let run = this.runs.get(runId);
    if (!run) {
      run = { run_id: runId, pipeline: pipeline || '', status: 'running', started_at: null, finished_at: null, batches: new Map() };
      this.runs.set(runId, run);
    }
    return run;
  }

  batch(run, batchId, name) {
    let batch = run.batches.get(batchId);
    if (!batch) {
      batch = { batch_id: batchId, batch_name: name || batchId, status: 'pending', tasks: new Map() };
      run.batches.set(batchId, batch);
    }
    return batch;
  }

  command(commandId, agent, fields) {
    let command = this.commands.get(commandId);
    if (!command) {
      command = { command_id: commandId, agent, status: 'queued', priority: 'normal', activities: [], seen: new Set() };
      this.commands.set(commandId, command);
    }
    if (fields) {
      for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) command[key] = value;
    }
    return command;
  }

  /** Adds a command's activity once (live and fetched from the history may overlap). */
  activity(event) {
    const command = this.command(event.command_id, event.agent);
    if (command.seen.has(event.seq)) return;
    command.seen.add(event.seq);
    command.activities.push({ seq: event.seq, time: event.time, ...event.activity });
    command.activities.sort((a, b) => a.seq - b.seq);
  }

  /** @param {Event} e */
  reduce(e) {
    switch (e.type) {
      case 'run_status': {
        const run = this.run(e.run_id, e.pipeline);
        run.pipeline = e.pipeline;
        run.status = e.status;
        run.message = e.message;
        run.error = e.error;
        if (e.status === 'running' && !run.started_at) run.started_at = e.time;
        if (runEnded(e.status)) run.finished_at = e.time;
        break;
      }
      case 'batch_status': {
        const run = this.run(e.run_id, e.pipeline);
        const batch = this.batch(run, e.batch_id, e.batch_name);
        batch.status = e.status;
        batch.batch_name = e.batch_name;
        if (e.branch) batch.branch = e.branch;
        batch.error = e.error;
        batch.summary = e.summary;
        if (e.status === 'pending') batch.depends_on = e.depends_on || [];
        if (e.status === 'running' && !batch.started_at) batch.started_at = e.time;
        if (e.status === 'completed' || e.status === 'failed') batch.finished_at = e.time;
        break;
      }
      case 'task_started': {
        const batch = this.batch(this.run(e.run_id), e.batch_id);
        const task = batch.tasks.get(e.task_id) || {};
        batch.tasks.set(e.task_id, { ...task, task_id: e.task_id, task_type: e.task_type, name: e.name, priority: e.priority, display_text: e.display_text, status: 'running', started_at: e.time });
        break;
      }
      case 'task_progress': {
        const task = this.batch(this.run(e.run_id), e.batch_id).tasks.get(e.task_id);
        if (task) { task.display_text = e.display_text; task.percent = e.percent; }
        break;
      }
      case 'task_finished': {
        const batch = this.batch(this.run(e.run_id), e.batch_id);
        const task = batch.tasks.get(e.task_id) || {};
        batch.tasks.set(e.task_id, { ...task, task_id: e.task_id, task_type: e.task_type, name: e.name, status: e.status, started_at: e.started_at || task.started_at, finished_at: e.finished_at, duration_ms: e.duration_ms, error: e.error, exit_code: e.exit_code });
        break;
      }
      case 'workspace_prepared': {
        const batch = this.batch(this.run(e.run_id), e.batch_id);
        if (e.branch) batch.branch = e.branch;
        batch.base_commit = e.base_commit;
        batch.note = e.note;
        break;
      }
      case 'repo_state': {
        const batch = this.batch(this.run(e.run_id), e.batch_id);
        batch.branch = e.branch;
        batch.head_before = e.head_before;
        batch.head_after = e.head_after;
        batch.files_changed = e.files_changed;
        break;
      }
      case 'merge_status': {
        const batch = this.batch(this.run(e.run_id), e.batch_id);
        batch.merge = { target: e.target, status: e.status, commit: e.commit, error: e.error };
        break;
      }
      case 'command_status': {
        const fields = { status: e.status, priority: e.priority, exit_code: e.exit_code, error: e.error, run_id: e.run_id, task_id: e.task_id, updated_at: e.time };
        if (e.prompt) fields.prompt = e.prompt;
        this.command(e.command_id, e.agent, fields);
        break;
      }
      case 'best_of_result':
        this.batch(this.run(e.run_id), e.batch_id).best_of = e;
        break;
      case 'agent_status': {
        this.agents.set(e.agent, { agent: e.agent, status: e.status, current_command: e.current_command, queued: e.queued });
        break;
      }
      case 'agent_activity':
        this.activity(e);
        break;
      case 'approval_requested':
        this.approvals.set(e.approval_id, { approval_id: e.approval_id, command_id: e.command_id, agent: e.agent, run_id: e.run_id, task_id: e.task_id, tool: e.tool, input: e.input, description: e.description, timeout_ms: e.timeout_ms, seq: e.seq, requested_at: e.time });
        break;
      case 'approval_decided':
        this.approvals.delete(e.approval_id);
        break;
      default:
        break;
    }
  }

  /** Fills what the history knows about a run that the live state lacks. */
  mergeDetail(detail) {
    this.details.set(detail.run.id, detail);
    if (this.details.size > 50) this.details.delete(this.details.keys().next().value);
    this.merge(detail);
    this.emit(null);
  }

  merge(detail) {
    const run = this.run(detail.run.id, detail.run.pipeline);
    if (!this.runs.get(detail.run.id).started_at) run.started_at = detail.run.started_at;
    if (!runEnded(run.status) || !run.finished_at) {
      run.status = detail.run.status;
      run.finished_at = detail.run.finished_at;
      run.error = detail.run.error;
      run.message = detail.run.message;
    }
    run.trigger = detail.run.trigger;
    for (const record of detail.batches) {
      const batch = this.batch(run, record.batch_id, record.name);
      for (const key of ['branch', 'base_commit', 'head_before', 'head_after', 'files_changed', 'note', 'started_at', 'finished_at', 'error', 'summary', 'depends_on']) {
        if (batch[key] === undefined || batch[key] === null) batch[key] = record[key];
      }
      if (batch.status === 'pending' && record.status !== 'pending') batch.status = record.status;
    }
    for (const exec of detail.executions) {
      if (exec.reason !== 'task' && exec.reason !== 'coding_agent') continue;
      const batch = this.batch(run, exec.batch_id);
      const task = batch.tasks.get(exec.execution_id) || { status: exec.status };
      batch.tasks.set(exec.execution_id, {
        ...task,
        task_id: exec.execution_id,
        name: task.name || exec.name,
        task_type: task.task_type || exec.kind,
        status: task.status === 'running' || task.status === 'pending' ? exec.status : task.status,
        exit_code: task.exit_code ?? exec.exit_code,
        error: task.error ?? exec.error,
        started_at: task.started_at || exec.started_at,
        finished_at: task.finished_at || exec.finished_at,
        duration_ms: task.duration_ms ?? exec.duration_ms,
      });
    }
    for (const result of detail.best_of || []) {
      const batch = this.batch(run, result.batch_id);
      if (!batch.best_of) batch.best_of = result;
    }
    run.agent_turns = detail.agent_turns;
    run.merges = detail.merges;
  }
}

/** @param {RunState} state */
function fromRunState(state) {
  const batches = new Map();
  for (const b of state.batches) {
    const tasks = new Map();
    for (const t of b.tasks) tasks.set(t.task_id, { ...t });
    batches.set(b.batch_id, { ...b, tasks });
  }
  return { ...state, batches };
}
