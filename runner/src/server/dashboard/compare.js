// A best-of-N batch's attempts side by side (its `best_of_result`): the
// check, the diff, time, tokens and cost of each, its rank and why, and
// which one won. Live from the event, or from the history for a past run.

import { h, duration } from './dom.js';

/** @param {any} result a `best_of_result` event or a recorded `best_of` entry */
export function comparison(result) {
  const attempts = [...(result.attempts || [])].sort((a, b) => a.number - b.number);
  const cost = (a) => (a.cost_usd === undefined || a.cost_usd === null ? '—' : `$${a.cost_usd.toFixed(4)}`);
  const check = (a) => {
    if (!a.check) return a.completed ? (result.check ? '—' : 'no check') : 'not run';
    const exit = a.check.exit_code !== undefined && a.check.exit_code !== null ? ` (exit ${a.check.exit_code})` : '';
    return `${a.check.passed ? 'passed' : 'failed'}${exit}`;
  };
  const rows = attempts.map((a) => h('tr', {
    class: a.number === result.winner ? 'attempt attempt-winner' : 'attempt',
    dataset: { attempt: a.number, rank: a.rank, check: a.check ? (a.check.passed ? 'passed' : 'failed') : 'none' },
  },
  h('td', null, a.number === result.winner ? `★ ${a.number}` : String(a.number)),
  h('td', null, a.agent || ''),
  h('td', { class: 'attempt-check' }, check(a), a.error ? h('div', { class: 'error' }, a.error) : null),
  h('td', { class: 'attempt-diff' }, `${a.files_changed} files, +${a.additions} −${a.deletions}`),
  h('td', null, duration(a.duration_ms)),
  h('td', null, `${a.input_tokens + a.output_tokens}`),
  h('td', { class: 'attempt-cost' }, cost(a)),
  h('td', { class: 'attempt-rank' }, String(a.rank)),
  h('td', null, h('code', null, a.branch)),
  h('td', { class: 'attempt-note' }, a.note)));
  return h('div', { class: 'best-of', dataset: { winner: result.winner ?? '' } },
    h('h3', null, `Best of ${attempts.length}`),
    h('p', { class: result.winner ? 'best-of-reason' : 'best-of-reason error' },
      result.winner ? `attempt ${result.winner} won` : 'no attempt won', result.reason ? `: ${result.reason}` : '',
      result.check ? h('span', { class: 'muted' }, ` · check: `, h('code', null, result.check)) : null),
    h('table', { class: 'attempts' },
      h('thead', null, h('tr', null, ['attempt', 'agent', 'check', 'diff', 'duration', 'tokens', 'cost', 'rank', 'branch', 'why'].map((t) => h('th', null, t)))),
      h('tbody', null, rows)),
    h('p', { class: 'muted' }, 'Every attempt keeps its branch for review; the winner\u2019s is the batch\u2019s.'));
}
