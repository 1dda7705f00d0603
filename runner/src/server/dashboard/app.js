// The dashboard's entry: the connection, the model, the router and the
// notices that show every request's answer or error.

import { Connection, token, setToken } from './conn.js';
import { h } from './dom.js';
import { Model } from './model.js';
import { approvalsPanel } from './approvals.js';
import { runsView, runView, logsView, agentsView, commandView, diffView } from './views.js';

const model = new Model();
const main = document.getElementById('main');
const indicator = document.getElementById('connection');
const notices = document.getElementById('notices');
const tokenForm = document.getElementById('token-form');
const tokenInput = document.getElementById('token-input');

function notice(text, kind = 'info', requestId) {
  const item = h('div', { class: `notice notice-${kind}`, dataset: requestId ? { request: requestId } : {} }, text);
  notices.prepend(item);
  while (notices.children.length > 6) notices.lastElementChild.remove();
  if (kind !== 'error') setTimeout(() => item.remove(), 15_000);
  return item;
}

const conn = new Connection({
  lastSeq: () => model.lastSeq,
  onState: (state, detail) => {
    indicator.dataset.state = state;
    indicator.textContent = state;
    indicator.title = detail || '';
  },
  onNeedToken: (why) => {
    tokenForm.hidden = false;
    tokenInput.focus();
    if (token()) notice(`the server refused the token: ${why}`, 'error');
  },
  onMessage: (message) => {
    if (typeof message.seq === 'number' && message.time && message.type !== 'node_status') model.applyEvent(message);
    else if (message.type === 'state') model.applySnapshot(message.snapshot);
    else if (message.type === 'error' && (message.id === undefined || message.id === null)) notice(`server: ${message.code}: ${message.message}`, 'error');
    else if (message.type === 'lagged') notice(`fell behind by ${message.missed} events; replaying`, 'info');
  },
});

tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  setToken(tokenInput.value.trim());
  tokenInput.value = '';
  tokenForm.hidden = true;
  pipelinesPromise = null;
  conn.retryNow();
  route();
});

async function fetchApi(path) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { headers, cache: 'no-store' });
  if (response.status === 401) {
    tokenForm.hidden = false;
    throw new Error('this server needs a token');
  }
  return response;
}

let pipelinesPromise = null;
const ctx = {
  model,
  conn,
  notice,
  navigate: (hash) => { location.hash = hash; },
  hasToken: () => Boolean(token()),
  async api(path) {
    const response = await fetchApi(path);
    const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  },
  async apiText(path) {
    const response = await fetchApi(path);
    if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
    return response.text();
  },
  pipelines() {
    if (!pipelinesPromise) pipelinesPromise = ctx.api('/api/pipelines').catch((err) => { pipelinesPromise = null; throw err; });
    return pipelinesPromise;
  },
  /** A WebSocket request; its id, answer or error is shown as a notice. */
  act(label, body) {
    const pending = notice(`${label}…`, 'pending');
    return conn.request(body).then(({ id, answer }) => {
      pending.remove();
      const what = answer.run_id || answer.command_id || '';
      notice(`${label} (${id}): ${answer.type} ${what}`, 'ok', id);
      return { id, answer };
    }, (err) => {
      pending.remove();
      notice(`${label}${err.requestId ? ` (${err.requestId})` : ''} failed: ${err.message}`, 'error', err.requestId);
      throw err;
    });
  },
};

approvalsPanel(ctx, document.getElementById('approvals'));
// Every dashboard hears how each prompt ended, whoever answered it.
model.subscribe((event) => {
  if (event && event.type === 'approval_decided') {
    const verdict = event.allow ? 'allowed' : 'denied';
    notice(`approval ${event.approval_id} of ${event.task_id || event.agent} ${verdict} by ${event.decided_by}${event.message ? `: ${event.message}` : ''}`, event.allow ? 'ok' : 'info');
  }
});

let current = null;
function route() {
  if (current) current.dispose();
  const hash = location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart] = hash.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(queryPart || '');
  let view;
  if (parts[0] === 'runs' && parts[1] && parts[2] === 'logs') view = logsView(ctx, parts[1], parts[3]);
  else if (parts[0] === 'runs' && parts[1] && parts[2] === 'diff' && parts[3]) view = diffView(ctx, parts[1], parts[3]);
  else if (parts[0] === 'runs' && parts[1]) view = runView(ctx, parts[1]);
  else if (parts[0] === 'agents' && parts[1]) view = commandView(ctx, parts[1]);
  else if (parts[0] === 'agents') view = agentsView(ctx);
  else view = runsView(ctx, params);
  current = view;
  main.replaceChildren(view.element);
  for (const link of document.querySelectorAll('[data-nav]')) link.classList.toggle('active', link.dataset.nav === (parts[0] || 'runs'));
}

window.addEventListener('hashchange', route);
// For tests and the benchmark: the model and the current view.
window.runnerDashboard = { model, conn, view: () => current };
route();
conn.connect();
