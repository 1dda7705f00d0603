// The views: runs, a run (graph, batches, tasks), logs, agents (queue,
// conversation, prompt form), a batch's diff. Each returns
// {element, dispose}; `ctx` gives the model, the connection, the JSON
// endpoints and `act` (a WebSocket request whose answer or error is shown).

import { h, replace, duration, span, clock, throttled } from './dom.js';
import { graph } from './graph.js';
import { LogView } from './logview.js';
import { comparison } from './compare.js';
import { runEnded } from './model.js';

const STATUSES = ['running', 'completed', 'failed', 'aborted', 'interrupted'];
const PRIORITY = { high: 0, normal: 1, low: 2 };
const short = (sha) => (sha ? sha.slice(0, 10) : '—');
const badge = (status, id) => h('span', { class: `badge status-${status}`, id, dataset: { status } }, status);

/** Re-renders `render` on model changes (at most once per frame) until disposed. */
function live(ctx, render, relevant = () => true) {
  let arrived = [];
  const again = throttled(() => {
    render();
    ctx.model.rendered(arrived);
    arrived = [];
  });
  const off = ctx.model.subscribe((event) => {
    if (event && !relevant(event)) return;
    if (event) arrived.push(event.seq);
    again();
  });
  render();
  return off;
}

// ---------------------------------------------------------------- runs

export function runsView(ctx, params) {
  const state = { status: params.get('status') || '', pipeline: params.get('pipeline') || '', offset: Number(params.get('offset') || 0), limit: 25, page: null, error: '' };
  const table = h('div', { class: 'runs-table' });
  const pager = h('div', { class: 'pager' });
  const statusSelect = h('select', { id: 'filter-status', onchange: () => { state.status = statusSelect.value; state.offset = 0; load(); } },
    h('option', { value: '' }, 'any status'), STATUSES.map((st) => h('option', { value: st }, st)));
  statusSelect.value = state.status;
  const pipelineSelect = h('select', { id: 'filter-pipeline', onchange: () => { state.pipeline = pipelineSelect.value; state.offset = 0; load(); } }, h('option', { value: '' }, 'any pipeline'));
  const startSelect = h('select', { id: 'start-pipeline' });
  const startButton = h('button', { id: 'start-run', type: 'submit' }, 'Start');
  const start = h('form', { class: 'start-form', onsubmit: (event) => {
    event.preventDefault();
    ctx.act('start_run', { type: 'start_run', pipeline: startSelect.value || undefined }).then(({ answer }) => {
      if (answer.type === 'run_started') ctx.navigate(`#/runs/${encodeURIComponent(answer.run_id)}`);
    }, () => {});
  } }, h('label', null, 'Pipeline ', startSelect), ' ', startButton);

  ctx.pipelines().then((config) => {
    for (const p of config.pipelines) {
      pipelineSelect.append(h('option', { value: p.name }, p.name));
      startSelect.append(h('option', { value: p.name, selected: p.name === config.default }, p.name + (p.name === config.default ? ' (default)' : '')));
    }
    pipelineSelect.value = state.pipeline;
  }, (err) => ctx.notice(`pipelines: ${err.message}`, 'error'));

  let reload = 0;
  async function load() {
    const query = new URLSearchParams({ limit: state.limit, offset: state.offset });
    if (state.status) query.set('status', state.status);
    if (state.pipeline) query.set('pipeline', state.pipeline);
    try {
      state.page = await ctx.api(`/api/runs?${query}`);
      state.error = '';
    } catch (err) {
      state.error = err.message;
    }
    render();
  }

  function render() {
    const page = state.page;
    const fetched = page ? page.runs : [];
    const ids = new Set(fetched.map((r) => r.id));
    const liveOnly = state.offset === 0 ? [...ctx.model.runs.values()].filter((r) => !ids.has(r.run_id)
      && (!state.status || r.status === state.status) && (!state.pipeline || r.pipeline === state.pipeline)) : [];
    const rows = [
      ...liveOnly.sort((a, b) => String(b.started_at).localeCompare(String(a.started_at))).map((r) => ({
        id: r.run_id, pipeline: r.pipeline, status: r.status, started_at: r.started_at, finished_at: r.finished_at, trigger: r.trigger,
        batches: r.batches.size, batches_ok: [...r.batches.values()].filter((b) => b.status === 'completed').length,
      })),
      ...fetched.map((r) => {
        const known = ctx.model.runs.get(r.id);
        return known && !runEnded(r.status) ? { ...r, status: known.status, finished_at: known.finished_at } : r;
      }),
    ];
    replace(table, state.error ? h('p', { class: 'error' }, state.error) : null,
      rows.length === 0 ? h('p', { class: 'muted' }, page ? 'No runs yet. Start one above.' : 'Loading…') :
        h('table', null,
          h('thead', null, h('tr', null, ['run', 'pipeline', 'status', 'trigger', 'started', 'duration', 'batches', 'tasks'].map((t) => h('th', null, t)))),
          h('tbody', null, rows.map((r) => h('tr', { dataset: { run: r.id } },
            h('td', null, h('a', { href: `#/runs/${encodeURIComponent(r.id)}` }, r.id)),
            h('td', null, r.pipeline),
            h('td', null, badge(r.status)),
            h('td', null, r.trigger || 'request'),
            h('td', null, clock(r.started_at)),
            h('td', null, duration(span(r.started_at, r.finished_at))),
            h('td', null, r.batches_ok !== undefined ? `${r.batches_ok}/${r.batches}` : ''),
            h('td', null, r.tasks !== undefined ? `${r.tasks_ok}/${r.tasks}` : ''))))));
    const total = page ? page.total : 0;
    replace(pager,
      h('button', { id: 'page-prev', disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, '‹ newer'),
      h('span', { class: 'muted' }, total ? ` ${state.offset + 1}–${Math.min(total, state.offset + state.limit)} of ${total} ` : ' '),
      h('button', { id: 'page-next', disabled: state.offset + state.limit >= total, onclick: () => { state.offset += state.limit; load(); } }, 'older ›'));
  }

  const off = ctx.model.subscribe((event) => {
    if (!event) return render();
    if (event.type === 'run_status') { clearTimeout(reload); reload = setTimeout(load, 300); }
  });
  load();
  const element = h('section', { class: 'view runs' },
    h('h1', null, 'Runs'), start,
    h('div', { class: 'filters' }, 'Filter: ', statusSelect, ' ', pipelineSelect), table, pager);
  return { element, dispose: () => { off(); clearTimeout(reload); } };
}

// ---------------------------------------------------------------- a run

/** What a node shows: pending batches of an ended run were skipped. */
function nodeStatus(run, batch) {
  if (!batch) return runEnded(run.status) ? 'skipped' : 'pending';
  const tasks = [...batch.tasks.values()];
  if (batch.status === 'pending' && runEnded(run.status)) return 'skipped';
  if (batch.status === 'failed' && tasks.length && tasks.every((t) => t.status === 'interrupted' || t.status === 'skipped')) return 'interrupted';
  if (batch.status === 'running' && runEnded(run.status)) return 'interrupted';
  return batch.status;
}

const TASK_PAGE = 500;

export function runView(ctx, runId) {
  let selected = null;
  /** Which 500 tasks of the selected batch are listed. */
  const taskPage = { batch: null, index: 0 };
  let structure = null;
  let detailError = '';
  const head = h('div', { class: 'run-head' });
  const graphBox = h('div', { class: 'graph-box' });
  const panel = h('div', { class: 'batch-panel' });

  ctx.pipelines().then((config) => { structure = config; render(); }, () => { structure = { pipelines: [] }; render(); });
  ctx.api(`/api/runs/${encodeURIComponent(runId)}`).then((detail) => ctx.model.mergeDetail(detail), (err) => {
    if (!ctx.model.runs.has(runId)) { detailError = err.message; render(); }
  });

  function render() {
    const run = ctx.model.runs.get(runId);
    if (!run) {
      replace(head, h('h1', null, `Run ${runId}`), h('p', { class: detailError ? 'error' : 'muted' }, detailError || 'Loading…'));
      return;
    }
    const ended = runEnded(run.status);
    replace(head,
      h('h1', null, 'Run ', h('code', null, run.run_id), ' ', badge(run.status, 'run-status')),
      h('p', { class: 'muted' }, `pipeline ${run.pipeline} · started ${clock(run.started_at)} · ${duration(span(run.started_at, run.finished_at))}${ended ? '' : ' so far'}`),
      run.error ? h('p', { class: 'error' }, run.error) : null,
      run.message ? h('p', null, run.message) : null,
      h('p', { class: 'actions' },
        h('a', { href: `#/runs/${encodeURIComponent(runId)}/logs` }, 'all logs'), ' ',
        ended ? null : h('button', { id: 'abort-run', class: 'danger', onclick: () => ctx.act('abort_run', { type: 'abort_run', run_id: runId }).catch(() => {}) }, 'Abort run')));
    if (!structure) return;
    // The edges the run had, as recorded; the pipeline as `runner.toml`
    // says it now only for runs recorded before the history kept them.
    const recorded = [...run.batches.values()];
    const pipeline = structure.pipelines.find((p) => p.name === run.pipeline);
    const nodes = recorded.length && recorded.every((b) => Array.isArray(b.depends_on))
      ? recorded.map((b) => ({ id: b.batch_id, name: b.batch_name || b.name || b.batch_id, depends_on: b.depends_on }))
      : pipeline ? pipeline.batches.map((b) => ({ ...b })) : [];
    for (const batch of run.batches.values()) {
      if (!nodes.some((n) => n.id === batch.batch_id)) nodes.push({ id: batch.batch_id, name: batch.batch_name, depends_on: [] });
    }
    if (!selected && nodes.length) {
      const busy = nodes.find((n) => ['running', 'failed'].includes(run.batches.get(n.id)?.status));
      selected = (busy || nodes[0]).id;
    }
    const statusOf = (id) => {
      const batch = run.batches.get(id);
      const status = nodeStatus(run, batch);
      const tasks = batch ? [...batch.tasks.values()] : [];
      const done = tasks.filter((t) => t.status === 'completed').length;
      return { status, label: tasks.length ? `${status} · ${done}/${tasks.length}` : status };
    };
    replace(graphBox, graph(nodes, statusOf, (id) => { selected = id; render(); }, selected));
    renderPanel(run, nodes.find((n) => n.id === selected));
  }

  function renderPanel(run, node) {
    if (!node) { replace(panel); return; }
    const batch = run.batches.get(node.id);
    const tasks = batch ? [...batch.tasks.values()] : [];
    // 500 rows at a time keep a 10,000-task batch responsive; the pager reaches the rest.
    const pages = Math.max(1, Math.ceil(tasks.length / TASK_PAGE));
    if (taskPage.batch !== node.id) { taskPage.batch = node.id; taskPage.index = 0; }
    taskPage.index = Math.min(taskPage.index, pages - 1);
    const first = taskPage.index * TASK_PAGE;
    const shown = tasks.slice(first, first + TASK_PAGE);
    const turn = (by) => { taskPage.index += by; renderPanel(run, node); };
    replace(panel,
      h('h2', null, node.name || node.id, ' ', badge(nodeStatus(run, batch), 'batch-status')),
      batch?.error ? h('p', { class: 'error' }, batch.error) : null,
      batch?.summary ? h('p', null, batch.summary) : null,
      h('dl', { class: 'facts' },
        h('dt', null, 'branch'), h('dd', null, batch?.branch ? h('code', null, batch.branch) : h('span', { class: 'muted' }, batch?.note || 'none')),
        h('dt', null, 'head before'), h('dd', null, h('code', { class: 'head-before' }, short(batch?.head_before || batch?.base_commit))),
        h('dt', null, 'head after'), h('dd', null, h('code', { class: 'head-after' }, short(batch?.head_after))),
        h('dt', null, 'files changed'), h('dd', null, batch?.files_changed ?? '—',
          batch?.branch ? [' · ', h('a', { href: `#/runs/${encodeURIComponent(runId)}/diff/${encodeURIComponent(node.id)}`, class: 'diff-link' }, 'diff')] : null),
        batch?.merge ? [h('dt', null, 'merge'), h('dd', null, `${batch.merge.status} into ${batch.merge.target}`, batch.merge.error ? ` — ${batch.merge.error}` : '')] : null),
      batch?.best_of ? comparison(batch.best_of) : null,
      h('table', { class: 'tasks' },
        h('thead', null, h('tr', null, ['task', 'type', 'status', 'duration', 'exit code', 'error', ''].map((t) => h('th', null, t)))),
        h('tbody', null, shown.map((t) => h('tr', { dataset: { task: t.task_id, status: t.status } },
          h('td', null, t.name || t.task_id, t.display_text && t.status === 'running' ? h('div', { class: 'muted' }, t.display_text, t.percent != null ? ` ${t.percent}%` : '') : null),
          h('td', null, t.task_type || ''),
          h('td', null, badge(t.status)),
          h('td', null, duration(t.duration_ms ?? (t.started_at && t.status === 'running' ? span(t.started_at) : null))),
          h('td', { class: 'exit-code' }, t.exit_code ?? ''),
          h('td', { class: 'error' }, t.error || ''),
          h('td', null, h('a', { href: `#/runs/${encodeURIComponent(runId)}/logs/${encodeURIComponent(t.task_id)}`, class: 'log-link' }, 'log')))))),
      pages > 1 ? h('p', { class: 'task-pager' },
        h('button', { id: 'tasks-prev', type: 'button', disabled: taskPage.index === 0, onclick: () => turn(-1) }, '‹ previous'), ' ',
        h('span', { id: 'tasks-range' }, `tasks ${first + 1}–${first + shown.length} of ${tasks.length}`), ' ',
        h('button', { id: 'tasks-next', type: 'button', disabled: taskPage.index >= pages - 1, onclick: () => turn(1) }, 'next ›')) : null,
      tasks.length === 0 ? h('p', { class: 'muted' }, 'No task has started yet.') : null);
  }

  const off = live(ctx, render, (e) => e.run_id === runId);
  const element = h('section', { class: 'view run', dataset: { run: runId } }, head, graphBox, panel);
  return { element, dispose: off };
}

// ---------------------------------------------------------------- logs

export function logsView(ctx, runId, taskId) {
  const view = new LogView();
  const buffered = [];
  let loaded = false;
  const wanted = (e) => e.run_id === runId && (!taskId || e.task_id === taskId || e.command_id === taskId);
  const entry = (e) => e.type === 'terminal_output'
    ? { seq: e.seq, kind: 'output', stream: e.stream, text: e.data }
    : { seq: e.seq, kind: 'log', level: e.level, source: e.source, stream: e.stream, text: e.message };
  const off = ctx.model.subscribe((e) => {
    if (!e || (e.type !== 'terminal_output' && e.type !== 'log') || !wanted(e)) return;
    if (loaded) view.add([entry(e)]); else buffered.push(entry(e));
  });
  const search = h('input', { id: 'log-search', type: 'search', placeholder: 'search', oninput: () => view.setQuery(search.value) });
  const level = h('select', { id: 'log-level', onchange: () => view.setLevel(level.value) },
    ['all', 'stdout', 'stderr', 'trace', 'debug', 'info', 'warn', 'error'].map((l) => h('option', { value: l }, l === 'all' ? 'all lines' : ['stdout', 'stderr'].includes(l) ? l : `log ≥ ${l}`)));
  const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true, onchange: () => view.setFollow(follow.checked) });
  view.onFollowChange = (on) => { follow.checked = on; };
  const raw = `/api/runs/${encodeURIComponent(runId)}/logs.txt${taskId ? `?task=${encodeURIComponent(taskId)}` : ''}`;
  const rawLink = h('a', { href: raw, target: '_blank', rel: 'noopener', id: 'log-raw', onclick: (event) => {
    if (!ctx.hasToken()) return;
    event.preventDefault();
    ctx.apiText(raw).then((text) => window.open(URL.createObjectURL(new Blob([text], { type: 'text/plain' })), '_blank'), (err) => ctx.notice(err.message, 'error'));
  } }, 'raw text');
  const note = h('span', { class: 'muted' }, 'loading…');

  (async () => {
    let after = 0;
    try {
      for (;;) {
        const query = new URLSearchParams({ after_seq: after, limit: 20000 });
        if (taskId) query.set('task', taskId);
        const page = await ctx.api(`/api/runs/${encodeURIComponent(runId)}/logs?${query}`);
        view.add(page.lines);
        if (page.lines.length < 20000) break;
        after = page.last_seq;
      }
      note.textContent = '';
    } catch (err) {
      note.textContent = `history: ${err.message}`;
    }
    loaded = true;
    view.add(buffered.splice(0));
    view.refilter(true);
  })();

  const element = h('section', { class: 'view logs' },
    h('h1', null, 'Logs ', h('a', { href: `#/runs/${encodeURIComponent(runId)}` }, h('code', null, runId)), taskId ? [' / ', h('code', null, taskId)] : null),
    h('div', { class: 'log-tools' }, search, ' ', level, ' ', h('label', null, follow, ' follow'), ' ', rawLink, ' ', view.status, ' ', note),
    view.element);
  requestAnimationFrame(() => view.refilter(true));
  return { element, dispose: off, logView: view };
}

// ---------------------------------------------------------------- agents

function queueOf(ctx, agent) {
  return [...ctx.model.commands.values()].filter((c) => c.agent === agent && (c.status === 'queued' || c.status === 'running'))
    .sort((a, b) => (a.status === 'running' ? -1 : 0) - (b.status === 'running' ? -1 : 0) || PRIORITY[a.priority] - PRIORITY[b.priority] || String(a.updated_at).localeCompare(String(b.updated_at)));
}

export function agentsView(ctx) {
  const list = h('div', { class: 'agents-list' });
  const recent = h('div', { class: 'recent-commands' });
  const agentSelect = h('select', { id: 'prompt-agent' });
  const prompt = h('textarea', { id: 'prompt-text', rows: 3, placeholder: 'What should the agent do?' });
  const priority = h('select', { id: 'prompt-priority' }, ['high', 'normal', 'low'].map((p) => h('option', { value: p, selected: p === 'normal' }, p)));
  const form = h('form', { class: 'prompt-form', onsubmit: (event) => {
    event.preventDefault();
    ctx.act('command_request', { type: 'command_request', agent: agentSelect.value, prompt: prompt.value, priority: priority.value }).then(({ answer }) => {
      if (answer.type === 'command_accepted') {
        ctx.model.command(answer.command_id, answer.agent, { prompt: prompt.value, priority: priority.value });
        ctx.navigate(`#/agents/${encodeURIComponent(answer.command_id)}`);
      }
    }, () => {});
  } },
  h('h2', null, 'Send a prompt'),
  h('label', null, 'Agent ', agentSelect), ' ', h('label', null, 'Priority ', priority), prompt, h('button', { id: 'prompt-send', type: 'submit' }, 'Send'));
  let configured = [];
  ctx.pipelines().then((config) => { configured = config.agents || []; render(); }, () => {});

  function render() {
    const names = [...new Set([...configured, ...ctx.model.agents.keys()])].sort();
    if (agentSelect.options.length !== names.length) {
      const current = agentSelect.value;
      replace(agentSelect, names.map((n) => h('option', { value: n }, n)));
      if (names.includes(current)) agentSelect.value = current;
    }
    replace(list, names.length === 0 ? h('p', { class: 'muted' }, 'No agents are configured ([agents] in runner.toml).') :
      names.map((name) => {
        const agent = ctx.model.agents.get(name) || { status: 'offline', queued: 0 };
        const queue = queueOf(ctx, name);
        return h('div', { class: 'agent', dataset: { agent: name } },
          h('h3', null, name, ' ', badge(agent.status)),
          h('p', { class: 'muted' }, `${agent.queued} queued`, agent.current_command ? [' · running ', h('a', { href: `#/agents/${encodeURIComponent(agent.current_command)}` }, agent.current_command)] : null),
          queue.length ? h('ol', { class: 'queue' }, queue.map((c) => h('li', null, h('span', { class: `priority priority-${c.priority}` }, c.priority), ' ',
            h('a', { href: `#/agents/${encodeURIComponent(c.command_id)}` }, c.command_id), ' ', badge(c.status), ' ', h('span', { class: 'muted' }, (c.prompt || '').slice(0, 80))))) : null);
      }));
    const commands = [...ctx.model.commands.values()].sort((a, b) => String(b.updated_at || '').localeCompare(String(a.updated_at || ''))).slice(0, 50);
    replace(recent, h('h2', null, 'Recent commands'), commands.length === 0 ? h('p', { class: 'muted' }, 'None yet.') :
      h('table', null, h('tbody', null, commands.map((c) => h('tr', null,
        h('td', null, h('a', { href: `#/agents/${encodeURIComponent(c.command_id)}` }, c.command_id)),
        h('td', null, c.agent), h('td', null, badge(c.status)), h('td', null, c.priority), h('td', { class: 'muted' }, (c.prompt || '').slice(0, 80)))))));
  }
  const off = live(ctx, render, (e) => e.type === 'agent_status' || e.type === 'command_status');
  const element = h('section', { class: 'view agents' }, h('h1', null, 'Agents'), list, form, recent);
  return { element, dispose: off };
}

/** Tokens and cost of a command's `usage` activities. */
function totals(command) {
  const t = { input: 0, output: 0, cached: 0, cost: null };
  for (const a of command.activities) {
    if (a.kind !== 'usage') continue;
    t.input += a.input_tokens || 0;
    t.output += a.output_tokens || 0;
    t.cached += a.cached_tokens || 0;
    if (a.cost_usd != null) t.cost = (t.cost || 0) + a.cost_usd;
  }
  return t;
}

const money = (usd) => (usd == null ? '—' : `$${usd.toFixed(4)}`);

function activityItem(a) {
  const item = (kind, ...body) => h('li', { class: `turn turn-${kind}`, dataset: { kind, seq: a.seq } }, ...body);
  switch (a.kind) {
    case 'session_started': return item(a.kind, h('span', { class: 'muted' }, `session ${a.session_id}`));
    case 'assistant_message': return item(a.kind, h('div', { class: 'bubble' }, a.text));
    case 'thinking': return item(a.kind, h('details', null, h('summary', null, 'thinking'), h('pre', null, a.text)));
    case 'tool_use': return item(a.kind, h('details', null, h('summary', null, 'tool ', h('code', null, a.name)), h('pre', null, JSON.stringify(a.input, null, 2))));
    case 'tool_result': return item(a.kind, h('details', { class: a.is_error ? 'error' : '' }, h('summary', null, a.is_error ? 'tool error' : 'tool result'), h('pre', null, a.output)));
    case 'file_change': return item(a.kind, `${a.change} `, h('code', null, a.path));
    case 'command_run': return item(a.kind, h('code', null, `$ ${a.command}`), a.exit_code != null ? h('span', { class: a.exit_code ? 'error' : 'muted' }, ` exit ${a.exit_code}`) : null, a.output ? h('pre', null, a.output) : null);
    case 'usage': return item(a.kind, h('span', { class: 'usage' }, `tokens in ${a.input_tokens}, out ${a.output_tokens}, cached ${a.cached_tokens} · cost ${money(a.cost_usd)}`));
    case 'error': return item(a.kind, h('span', { class: 'error' }, a.message));
    case 'final_result': return item(a.kind, h('div', { class: `bubble final${a.is_error ? ' error' : ''}` }, a.summary));
    default: return item('raw', h('code', { class: 'muted' }, a.line || ''));
  }
}

export function commandView(ctx, commandId) {
  const head = h('div', { class: 'command-head' });
  const conversation = h('ol', { class: 'conversation' });
  let rendered = 0;
  ctx.api(`/api/commands/${encodeURIComponent(commandId)}`).then(({ events }) => {
    for (const e of events) {
      if (e.type === 'agent_activity') ctx.model.activity(e);
      else if (e.type === 'command_status') {
        const known = ctx.model.commands.get(e.command_id);
        const fields = known && known.updated_at && known.updated_at > e.time ? { prompt: e.prompt } : { status: e.status, priority: e.priority, exit_code: e.exit_code, error: e.error, prompt: e.prompt, run_id: e.run_id, task_id: e.task_id, updated_at: e.time };
        ctx.model.command(e.command_id, e.agent, fields);
      }
    }
    rendered = 0;
    render();
  }, (err) => ctx.notice(`command history: ${err.message}`, 'error'));

  function render() {
    const command = ctx.model.commands.get(commandId);
    if (!command) { replace(head, h('h1', null, 'Command ', h('code', null, commandId)), h('p', { class: 'muted' }, 'Loading…')); return; }
    const t = totals(command);
    const going = command.status === 'queued' || command.status === 'running';
    replace(head,
      h('h1', null, 'Command ', h('code', null, commandId), ' ', badge(command.status, 'command-status')),
      h('p', { class: 'muted' }, `agent ${command.agent} · priority ${command.priority}`, command.exit_code != null ? ` · exit code ${command.exit_code}` : '',
        command.run_id ? [' · run ', h('a', { href: `#/runs/${encodeURIComponent(command.run_id)}` }, command.run_id)] : null),
      command.error ? h('p', { class: 'error' }, command.error) : null,
      h('p', { class: 'totals', id: 'command-totals' }, `total: tokens in ${t.input}, out ${t.output}, cached ${t.cached} · cost `, h('span', { id: 'command-cost' }, money(t.cost))),
      going ? h('button', { id: 'interrupt-command', class: 'danger', onclick: () => ctx.act('command_interrupt', { type: 'command_interrupt', command_id: commandId }).catch(() => {}) }, 'Interrupt') : null);
    if (rendered === 0) replace(conversation, command.prompt ? h('li', { class: 'turn turn-prompt' }, h('div', { class: 'bubble prompt' }, command.prompt)) : null);
    for (const a of command.activities.slice(rendered)) conversation.append(activityItem(a));
    rendered = command.activities.length;
  }
  const off = live(ctx, render, (e) => e.command_id === commandId);
  return { element: h('section', { class: 'view command' }, head, conversation), dispose: off };
}

// ---------------------------------------------------------------- diff

export function diffView(ctx, runId, batchId) {
  const body = h('div', { class: 'diff' }, h('p', { class: 'muted' }, 'Loading…'));
  ctx.api(`/api/runs/${encodeURIComponent(runId)}/batches/${encodeURIComponent(batchId)}/diff`).then((diff) => {
    const adds = diff.files.reduce((n, f) => n + f.additions, 0);
    const dels = diff.files.reduce((n, f) => n + f.deletions, 0);
    replace(body,
      h('p', { class: 'muted' }, `${diff.branch || ''} · ${short(diff.from)} → ${short(diff.to)} · ${diff.files.length} files, +${adds} −${dels}`, diff.truncated ? ' (more files not shown)' : ''),
      diff.files.length === 0 ? h('p', null, 'No changes.') : null,
      diff.files.map((f) => h('details', { class: 'diff-file', open: true, dataset: { path: f.path } },
        h('summary', null, h('span', { class: `change change-${f.status}` }, f.status), ' ', h('code', null, f.old_path ? `${f.old_path} → ${f.path}` : f.path), ' ', h('span', { class: 'adds' }, `+${f.additions}`), ' ', h('span', { class: 'dels' }, `−${f.deletions}`)),
        f.binary ? h('p', { class: 'muted' }, 'binary file') : h('pre', { class: 'patch' }, f.patch.split('\n').map((line) => h('div', { class: line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('-') && !line.startsWith('---') ? 'del' : line.startsWith('@@') ? 'hunk' : '' }, line || ' '))),
        f.truncated ? h('p', { class: 'muted' }, 'patch cut at 256 KiB') : null)));
  }, (err) => replace(body, h('p', { class: 'error' }, err.message)));
  return {
    element: h('section', { class: 'view diff-view' }, h('h1', null, 'Diff of ', h('code', null, batchId), ' in ', h('a', { href: `#/runs/${encodeURIComponent(runId)}` }, h('code', null, runId))), body),
    dispose: () => {},
  };
}
