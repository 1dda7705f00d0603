// Drives the dashboard in headless Chromium for tests/all/dashboard.rs.
//
//   node dashboard.mjs SCENARIO BASE_URL ARTIFACT_DIR
//
// Scenarios: pipeline, agent, approval, best_of, pager, interrupt, abort, reconnect, token, foreign. Settings come in
// environment variables (DASH_*). Each step is printed as one JSON line on
// stdout; `{"wait": "..."}` lines ask the test to do something and answer
// with a line on stdin. Exit code 0: every check held; 1: the first that
// did not, printed on stderr.

import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

const [scenario, base, artifacts] = process.argv.slice(2);
const env = (key, fallback) => process.env[key] ?? fallback;
const WAIT = Number(env('DASH_WAIT_MS', '60000'));
const say = (value) => console.log(JSON.stringify(value));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(what) {
  say({ wait: what });
  const answer = await lines.next();
  if (answer.done) throw new Error(`the test closed stdin while we waited for ${what}`);
  return answer.value;
}
function check(condition, message) {
  if (!condition) throw new Error(message);
}

const profile = mkdtempSync(join(tmpdir(), 'runner-dashboard-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env('DASH_CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(WAIT);
const problems = [];
page.on('console', (message) => {
  if (!page.url().startsWith(base)) return; // the foreign page's own complaints
  if (message.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(message.text())) problems.push(message.text());
  if (/Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
});
page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
const connected = () => page.waitForSelector('#connection[data-state="connected"]');
const model = (expr) => page.evaluate(expr);

async function startFromPage(pipeline) {
  await page.goto(`${base}/#/runs`);
  await connected();
  await page.waitForSelector(`#start-pipeline option[value="${pipeline}"]`, { state: 'attached' });
  await page.selectOption('#start-pipeline', pipeline);
  await page.click('#start-run');
  await page.waitForFunction(() => /^#\/runs\/.+/.test(location.hash));
  const runId = decodeURIComponent(await page.evaluate(() => location.hash.split('/')[2]));
  await page.waitForSelector('.notice-ok');
  say({ started: runId, notice: await page.textContent('.notice-ok') });
  return runId;
}

async function allBatchesCompleted(expected) {
  await page.waitForFunction((n) => {
    const nodes = [...document.querySelectorAll('.graph .node')];
    return nodes.length === n && nodes.every((node) => node.dataset.status === 'completed');
  }, expected);
  await page.waitForSelector('#run-status[data-status="completed"]');
}

const scenarios = {
  async pipeline() {
    const batches = Number(env('DASH_BATCHES'));
    const runId = await startFromPage(env('DASH_PIPELINE', 'default'));
    await allBatchesCompleted(batches);
    say({ completed: runId, nodes: await page.$$eval('.graph .node', (n) => n.map((x) => `${x.dataset.batch}:${x.dataset.status}`)) });
    await shot('run');

    // A task's log has its output.
    await page.click(`.graph .node[data-batch="${env('DASH_LOG_BATCH')}"]`);
    await page.click(`tr[data-task="${env('DASH_LOG_TASK')}"] a.log-link`);
    const text = env('DASH_LOG_TEXT');
    await page.waitForFunction((t) => [...document.querySelectorAll('.log-row')].some((r) => r.textContent.includes(t)), text);
    const colored = await page.$$eval('.log-row span[class*="ansi-fg-"]', (s) => s.map((x) => `${x.className}:${x.textContent}`));
    say({ log: text, colored });
    check(colored.some((c) => c.startsWith('ansi-fg-green')), `no green ANSI span in the log: ${JSON.stringify(colored)}`);
    await shot('logs');
    // Groups: `--- details` is folded, `+++ summary` open; a click unfolds.
    const rowWith = (t) => page.evaluate((x) => [...document.querySelectorAll('.log-row')].some((r) => r.textContent.includes(x)), t);
    await page.waitForSelector('.log-group[data-folded="yes"]');
    check(!(await rowWith('folded-detail-line')) && await rowWith('open-summary-line'), 'the --- group is not folded or the +++ group not open');
    await page.click('.log-group[data-folded="yes"]');
    await page.waitForFunction(() => [...document.querySelectorAll('.log-row')].some((r) => r.textContent.includes('folded-detail-line')));
    say({ groups: await page.$$eval('.log-group', (g) => g.map((x) => `${x.textContent}:${x.dataset.folded}`)) });
    await page.fill('#log-search', 'no line has this');
    await page.waitForFunction(() => document.querySelectorAll('.log-row').length === 0);
    await page.fill('#log-search', '');
    const raw = await page.getAttribute('#log-raw', 'href');
    const rawText = await page.evaluate((href) => fetch(href).then((r) => r.text()), raw);
    check(rawText.includes(text), `the raw log at ${raw} lacks ${text}: ${rawText.slice(0, 300)}`);

    // The diff of the batch that wrote a file.
    await page.goto(`${base}/#/runs/${encodeURIComponent(runId)}`);
    await page.click(`.graph .node[data-batch="${env('DASH_DIFF_BATCH')}"]`);
    await page.click('a.diff-link');
    const file = env('DASH_DIFF_PATH');
    await page.waitForSelector(`.diff-file[data-path="${file}"]`);
    const patch = await page.textContent(`.diff-file[data-path="${file}"] .patch`);
    check(patch.includes(env('DASH_DIFF_TEXT')), `the diff of ${file} lacks the added line: ${patch}`);
    await shot('diff');

    // The runs list shows it, and filters.
    await page.goto(`${base}/#/runs`);
    await page.waitForSelector(`tr[data-run="${runId}"]`);
    await page.selectOption('#filter-status', 'failed');
    await page.waitForSelector(`tr[data-run="${runId}"]`, { state: 'detached' });
    await page.selectOption('#filter-status', 'completed');
    await page.waitForSelector(`tr[data-run="${runId}"]`);
    await shot('runs');
  },

  async agent() {
    await page.goto(`${base}/#/agents`);
    await connected();
    const agent = env('DASH_AGENT');
    await page.waitForSelector(`#prompt-agent option[value="${agent}"]`, { state: 'attached' });
    await page.selectOption('#prompt-agent', agent);
    await page.fill('#prompt-text', 'Say hello from the dashboard.');
    await page.selectOption('#prompt-priority', 'high');
    await page.click('#prompt-send');
    await page.waitForFunction(() => /^#\/agents\/cmd-/.test(location.hash));
    await page.waitForSelector('#command-status[data-status="completed"]');
    await page.waitForSelector('.turn-assistant_message');
    const cost = await page.textContent('#command-cost');
    const totals = await page.textContent('#command-totals');
    const kinds = await page.$$eval('.conversation .turn', (t) => t.map((x) => x.dataset.kind || 'prompt'));
    say({ cost, totals, kinds });
    check(/^\$\d/.test(cost), `no cost shown: ${cost}`);
    check(kinds.includes('tool_use') && kinds.includes('final_result'), `the conversation lacks tool uses or the result: ${kinds}`);
    check(await page.textContent('.turn-prompt') === 'Say hello from the dashboard.', 'the prompt is not shown');
    await shot('agent');
  },

  async approval() {
    // Two tabs: the prompt shows on both; the second answers it, and the
    // first sees the card go and hears who answered.
    const agent = env('DASH_AGENT');
    const second = await context.newPage();
    second.setDefaultTimeout(WAIT);
    await page.goto(`${base}/#/agents`);
    await connected();
    await second.goto(`${base}/#/runs`);
    await second.waitForSelector('#connection[data-state="connected"]');
    await page.waitForSelector(`#prompt-agent option[value="${agent}"]`, { state: 'attached' });
    await page.selectOption('#prompt-agent', agent);
    await page.fill('#prompt-text', 'Write hello.txt.');
    await page.click('#prompt-send');
    const card = '.approval[data-tool="Write"]';
    await page.waitForSelector(card);
    await second.waitForSelector(card);
    const input = await second.textContent(`${card} .approval-input`);
    const head = await second.textContent(`${card} .approval-head`);
    say({ prompt: head, input });
    check(input.includes('hello.txt') && input.includes('"content": "hi"'), `the tool input is not shown: ${input}`);
    check(head.includes(agent) && head.includes('Write'), `the card does not say who wants what: ${head}`);
    await shot('approval');
    await second.fill(`${card} .approval-message`, 'fine, from the second tab');
    await second.click(`${card} .approval-allow`);
    await second.waitForFunction(() => [...document.querySelectorAll('.notice')].some((n) => /approval_accepted/.test(n.textContent)));
    await page.waitForSelector(card, { state: 'detached' });
    await second.waitForSelector(card, { state: 'detached' });
    await page.waitForFunction(() => [...document.querySelectorAll('.notice')].some((n) => /allowed by runner dashboard: fine, from the second tab/.test(n.textContent)));
    await page.waitForSelector('#command-status[data-status="completed"]');
    say({ approved: true, command: decodeURIComponent(await page.evaluate(() => location.hash.replace('#/agents/', ''))) });
    await second.close();
  },

  async best_of() {
    // Live: start the run from the page, then the batch's attempts side by
    // side; then the same from the history after a reload.
    const runId = await startFromPage('default');
    const table = '.best-of table.attempts';
    const read = () => page.$$eval('.best-of tr.attempt', (rows) => rows.map((r) => ({
      attempt: Number(r.dataset.attempt), rank: Number(r.dataset.rank), check: r.dataset.check,
      winner: r.classList.contains('attempt-winner'),
      diff: r.querySelector('.attempt-diff').textContent, cost: r.querySelector('.attempt-cost').textContent,
      note: r.querySelector('.attempt-note').textContent,
    })));
    await page.waitForSelector(`.graph .node[data-batch="try"][data-status="completed"]`);
    await page.click('.graph .node[data-batch="try"]');
    await page.waitForSelector(table);
    const live = await read();
    const reason = await page.textContent('.best-of .best-of-reason');
    await shot('best-of');
    await page.reload();
    await connected();
    await page.click('.graph .node[data-batch="try"]');
    await page.waitForSelector(table);
    const recorded = await read();
    say({ run: runId, live, recorded, reason });
    check(JSON.stringify(live) === JSON.stringify(recorded), `live and recorded differ: ${JSON.stringify(live)} vs ${JSON.stringify(recorded)}`);
  },

  async pager() {
    // A batch of more tasks than one page lists: every one is reachable.
    const total = Number(env('DASH_TASKS'));
    const runId = await startFromPage('many');
    await page.waitForSelector('.graph .node[data-batch="wide"][data-status="completed"]');
    await page.click('.graph .node[data-batch="wide"]');
    const rows = () => page.$$eval('table.tasks tbody tr[data-task]', (r) => r.length);
    const range = () => page.textContent('#tasks-range');
    const seen = [[await rows(), await range()]];
    while (!(await page.isDisabled('#tasks-next'))) {
      const before = await range();
      await page.click('#tasks-next');
      await page.waitForFunction((b) => document.querySelector('#tasks-range').textContent !== b, before);
      seen.push([await rows(), await range()]);
    }
    await page.click('#tasks-prev');
    say({ run: runId, pages: seen, back: await range() });
    check(seen.reduce((sum, [n]) => sum + n, 0) === total, `the pages list ${JSON.stringify(seen)}, not ${total} tasks`);
  },

  async interrupt() {
    const agent = env('DASH_AGENT');
    const send = async (prompt, priority) => {
      await page.goto(`${base}/#/agents`);
      await connected();
      await page.waitForSelector(`#prompt-agent option[value="${agent}"]`, { state: 'attached' });
      await page.selectOption('#prompt-agent', agent);
      await page.fill('#prompt-text', prompt);
      await page.selectOption('#prompt-priority', priority);
      const before = await page.evaluate(() => location.hash);
      await page.click('#prompt-send');
      await page.waitForFunction((old) => location.hash !== old && /^#\/agents\/cmd-/.test(location.hash), before);
      return decodeURIComponent(await page.evaluate(() => location.hash.split('/')[2]));
    };
    const first = await send('A long job.', 'low');
    await page.waitForSelector('#command-status[data-status="running"]');
    const second = await send('An urgent one.', 'high');
    await page.waitForSelector('#command-status[data-status="queued"]');
    // The agent's queue: the running command first, then the queued one with its priority.
    await page.goto(`${base}/#/agents`);
    await page.waitForFunction(([a, b]) => {
      const items = [...document.querySelectorAll('.agent .queue li')].map((li) => li.textContent);
      return items.length === 2 && items[0].includes(a) && items[0].includes('running') && items[1].includes(b) && items[1].includes('high') && items[1].includes('queued');
    }, [first, second]);
    const queue = await page.$$eval('.agent .queue li', (li) => li.map((x) => x.textContent));
    await shot('queue');
    for (const id of [first, second]) {
      await page.goto(`${base}/#/agents/${encodeURIComponent(id)}`);
      await page.waitForSelector('#command-status[data-status="running"]');
      await page.click('#interrupt-command');
      await page.waitForSelector('#command-status[data-status="interrupted"]');
      await page.waitForFunction(() => [...document.querySelectorAll('.notice-ok')].some((n) => n.textContent.includes('interrupt_requested')));
    }
    say({ interrupted: [first, second], queue });
    await shot('interrupted');
  },

  async abort() {
    const runId = await startFromPage(env('DASH_PIPELINE', 'slow'));
    await page.waitForSelector('.graph .node[data-status="running"]');
    await page.click('#abort-run');
    await page.waitForSelector('#run-status[data-status="aborted"]');
    await page.waitForFunction(() => [...document.querySelectorAll('.notice-ok')].some((n) => n.textContent.includes('abort_requested')));
    say({ aborted: runId, nodes: await page.$$eval('.graph .node', (n) => n.map((x) => `${x.dataset.batch}:${x.dataset.status}`)) });
    await shot('aborted');
  },

  async reconnect() {
    const first = await startFromPage(env('DASH_PIPELINE', 'default'));
    await allBatchesCompleted(Number(env('DASH_BATCHES')));
    await page.goto(`${base}/#/runs`);
    await connected();
    const before = await model(() => window.runnerDashboard.model.lastSeq);
    await ask('kill');
    await page.waitForSelector('#connection:not([data-state="connected"])');
    const seen = await page.textContent('#connection');
    // Wait out a few failed tries, so the next is seconds away and the
    // server's next events happen while the page is away.
    await page.waitForFunction(() => window.runnerDashboard.conn.failures >= 4);
    await shot('reconnecting');
    const second = await ask('restart and run while the page is away');
    await connected();
    await page.waitForFunction((id) => window.runnerDashboard.model.runs.get(id)?.status === 'completed', second);
    await page.waitForSelector(`tr[data-run="${second}"]`);
    const state = await page.evaluate(() => fetch('/api/state').then((r) => r.json()));
    await page.waitForFunction((seq) => window.runnerDashboard.model.lastSeq >= seq, state.seq);
    const after = await model(() => {
      const m = window.runnerDashboard.model;
      return { lastSeq: m.lastSeq, gaps: m.gaps, missing: m.missing, snapshots: m.snapshots, connects: window.runnerDashboard.conn.connects };
    });
    say({ first, second, before, seen, after, server_seq: state.seq });
    check(after.gaps === 0, `the page missed events: ${JSON.stringify(after.missing)}`);
    check(after.snapshots === 1, `the page took a new snapshot (${after.snapshots}) instead of resuming`);
    check(after.lastSeq >= state.seq, `the page is at ${after.lastSeq}, the server at ${state.seq}`);
    check(after.lastSeq > before, 'no event arrived after the restart');
    await shot('reconnected');
  },

  async token() {
    await page.goto(`${base}/`);
    await page.waitForSelector('#token-form:not([hidden])');
    check(await page.textContent('#connection') === 'offline', 'not offline before the token');
    await page.fill('#token-input', 'wrong');
    await page.click('#token-form button');
    await page.waitForFunction(() => [...document.querySelectorAll('.notice-error')].some((n) => n.textContent.includes('refused the token')));
    await page.waitForSelector('#token-form:not([hidden])');
    await page.fill('#token-input', env('DASH_TOKEN'));
    await page.click('#token-form button');
    await connected();
    // The JSON endpoints get it too.
    await page.waitForSelector('#start-pipeline option[value="default"]', { state: 'attached' });
    await page.reload();
    await connected();
    const seen = await page.evaluate(() => ({ stored: sessionStorage.getItem('runner-token'), local: localStorage.getItem('runner-token'), url: location.href, cookie: document.cookie }));
    say(seen);
    check(await page.isHidden('#token-form'), 'asked again after a reload');
    await shot('token');
  },

  async foreign() {
    // A page on another origin (another port) tries the runner.
    const target = new URL(base);
    const server = createServer((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><title>elsewhere</title><p>another site</p>');
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${server.address().port}`;
    await page.goto(`${origin}/`);
    const result = await page.evaluate(async (host) => {
      const ws = await new Promise((resolve) => {
        const socket = new WebSocket(`ws://${host}/ws`);
        socket.onopen = () => resolve('open');
        socket.onclose = (event) => resolve(`closed ${event.code}`);
      });
      const api = await fetch(`http://${host}/api/state`).then((r) => `status ${r.status}`, (err) => `failed ${err.name}`);
      const simple = await fetch(`http://${host}/api/runs`, { mode: 'no-cors' }).then((r) => `opaque ${r.type}`, (err) => `failed ${err.name}`);
      return { ws, api, simple };
    }, target.host);
    say({ origin, ...result });
    check(result.ws !== 'open', 'a page from another origin opened the WebSocket');
    check(result.api.startsWith('failed'), `a page from another origin read /api/state: ${result.api}`);
    server.close();
    // The dashboard itself, on its own origin, connects.
    await page.goto(`${base}/`);
    await connected();
  },
};

const stats = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null;
  const round = (x) => (x === null ? null : Math.round(x * 10) / 10);
  return { count: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1] ?? null) };
};

// Figures, no checks of time: a live run of DASH_BATCHES batches (2,000
// tasks and a task printing 100,000 lines), then the run view and the log
// loaded from the history in a fresh page.
scenarios.bench = async function bench() {
  const batches = Number(env('DASH_BATCHES'));
  const runId = await startFromPage(env('DASH_PIPELINE', 'big'));
  await page.waitForFunction((n) => {
    const nodes = [...document.querySelectorAll('.graph .node')];
    return nodes.length === n && nodes.every((node) => node.dataset.status === 'completed');
  }, batches, { timeout: 300_000 });
  const live = await model(() => ({ latencies: window.runnerDashboard.model.latencies, events: window.runnerDashboard.model.eventsApplied }));
  say({ figure: 'live run view: event arrival → rendered (ms)', events: live.events, ...stats(live.latencies) });

  const firstRender = [];
  for (let i = 0; i < 3; i++) {
    await page.goto('about:blank');
    await page.goto(`${base}/#/runs/${encodeURIComponent(runId)}`);
    const ms = await page.waitForFunction((n) => {
      const done = document.querySelectorAll('.graph .node[data-status="completed"]').length === n;
      return done && document.querySelectorAll('tr[data-task]').length > 0 ? performance.now() : false;
    }, batches, { polling: 'raf', timeout: 120_000 }).then((h) => h.jsonValue());
    firstRender.push(ms);
  }
  const tasks = await page.$$eval('tr[data-task]', (rows) => rows.length);
  say({ figure: 'run view, fresh page: navigation → graph and tasks on screen (ms)', runs: firstRender.map(Math.round), rows: tasks });
  await shot('bench-run');

  const logTask = env('DASH_LOG_TASK');
  await page.goto('about:blank');
  await page.goto(`${base}/#/runs/${encodeURIComponent(runId)}/logs/${encodeURIComponent(logTask)}`);
  const lines = Number(env('DASH_LOG_LINES'));
  const logMs = await page.waitForFunction((n) => {
    const view = window.runnerDashboard.view();
    return view.logView && view.logView.lines.length >= n && document.querySelector('.log-row') ? performance.now() : false;
  }, lines, { polling: 'raf', timeout: 120_000 }).then((h) => h.jsonValue());
  const scroll = await page.evaluate(async () => {
    const viewport = document.querySelector('.log-viewport');
    const times = [];
    for (let i = 1; i <= 20; i++) {
      const start = performance.now();
      viewport.scrollTop = (viewport.scrollHeight * i) / 21;
      await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      times.push(performance.now() - start);
    }
    return { times, rows: document.querySelectorAll('.log-row').length };
  });
  say({ figure: `log of ${lines} lines, fresh page: navigation → on screen (ms)`, ms: Math.round(logMs), rows_in_dom: scroll.rows });
  say({ figure: 'log: scroll to a new place → two frames later (ms)', ...stats(scroll.times) });
  await shot('bench-log');
};

let failed = null;
try {
  const run = scenarios[scenario];
  check(run, `no scenario ${scenario}; try ${Object.keys(scenarios).join(', ')}`);
  await run();
  check(problems.length === 0, `the page reported errors: ${problems.join(' | ')}`);
  say({ ok: scenario });
} catch (err) {
  failed = err;
  await shot(`failed-${scenario}`).catch(() => {});
  const body = await page.evaluate(() => document.body.innerText.slice(0, 2000)).catch(() => '');
  console.error(`${scenario}: ${err.message}\n--- page text ---\n${body}\n--- console ---\n${problems.join('\n')}`);
}
await context.close().catch(() => {});
rmSync(profile, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
