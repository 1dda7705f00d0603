// Permission prompts waiting for an answer, shown above every view of
// every open dashboard: the agent, the tool and its input, and Allow /
// Deny (with an optional message told to the agent), sent as
// `approval_decision`. The first answer from any client wins; a card goes
// away on `approval_decided`, whoever answered.

import { h, duration } from './dom.js';

const INPUT_SHOWN = 4000;

/** @param {any} ctx @param {HTMLElement} element */
export function approvalsPanel(ctx, element) {
  /** Cards by approval id, kept while their prompt waits (a half-typed message survives). */
  const cards = new Map();
  const render = () => {
    const waiting = ctx.model.approvals;
    for (const [id, card] of cards) {
      if (!waiting.has(id)) { card.remove(); cards.delete(id); }
    }
    for (const [id, approval] of waiting) {
      if (cards.has(id)) continue;
      const card = approvalCard(ctx, approval);
      cards.set(id, card);
      element.append(card);
    }
    element.hidden = cards.size === 0;
  };
  ctx.model.subscribe((event) => {
    if (!event || event.type === 'approval_requested' || event.type === 'approval_decided') render();
  });
  render();
}

function approvalCard(ctx, approval) {
  const message = h('input', { class: 'approval-message', type: 'text', placeholder: 'message to the agent (optional)', 'aria-label': 'message to the agent' });
  const buttons = [];
  const decide = (allow) => {
    for (const button of buttons) button.disabled = true;
    const text = message.value.trim();
    const body = { type: 'approval_decision', approval_id: approval.approval_id, allow };
    if (text) body.message = text;
    ctx.act(`${allow ? 'allow' : 'deny'} ${approval.tool}`, body).catch(() => {
      for (const button of buttons) button.disabled = false;
    });
  };
  buttons.push(
    h('button', { class: 'approval-allow', type: 'button', onclick: () => decide(true) }, 'Allow'),
    h('button', { class: 'approval-deny', type: 'button', onclick: () => decide(false) }, 'Deny'),
  );
  let input = typeof approval.input === 'string' ? approval.input : JSON.stringify(approval.input, null, 2);
  if (input.length > INPUT_SHOWN) input = `${input.slice(0, INPUT_SHOWN)}…`;
  const where = approval.task_id ? `${approval.agent} · task ${approval.task_id}` : approval.agent;
  return h('div', { class: 'approval', dataset: { approval: approval.approval_id, tool: approval.tool, command: approval.command_id } },
    h('div', { class: 'approval-head' },
      h('strong', null, where), ' wants to use ', h('code', { class: 'approval-tool' }, approval.tool),
      approval.description ? h('span', { class: 'approval-description' }, `: ${approval.description}`) : null),
    h('pre', { class: 'approval-input' }, input),
    h('div', { class: 'approval-actions' }, message, ...buttons,
      h('a', { href: `#/agents/${encodeURIComponent(approval.command_id)}` }, 'the command'),
      h('span', { class: 'muted' }, `denied after ${duration(approval.timeout_ms)} without an answer`)),
  );
}
