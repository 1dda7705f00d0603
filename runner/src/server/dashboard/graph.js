// The batches of a run as a graph: columns by depth along `depends_on`,
// one node per batch, coloured by status (classes `status-…` in style.css).

import { s } from './dom.js';

const W = 180;
const H = 44;
const GAP_X = 60;
const GAP_Y = 16;

/**
 * @param {Array<{id: string, name: string, depends_on: string[]}>} structure the pipeline's batches
 * @param {(id: string) => {status: string, label?: string}} statusOf
 * @param {(id: string) => void} onSelect
 * @param {string | null} selected
 */
export function graph(structure, statusOf, onSelect, selected) {
  const byId = new Map(structure.map((b) => [b.id, b]));
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const deps = (byId.get(id)?.depends_on || []).filter((d) => byId.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  const columns = [];
  for (const batch of structure) {
    const d = depthOf(batch.id);
    (columns[d] ||= []).push(batch);
  }
  const pos = new Map();
  columns.forEach((column, x) => column.forEach((batch, y) => pos.set(batch.id, { x: x * (W + GAP_X) + 10, y: y * (H + GAP_Y) + 10 })));
  const width = Math.max(1, columns.length) * (W + GAP_X) - GAP_X + 20;
  const height = Math.max(1, ...columns.map((c) => c.length)) * (H + GAP_Y) - GAP_Y + 20;

  const svg = s('svg', { class: 'graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'batches and their dependencies' });
  const defs = s('defs', null, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' }, s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'edge-head' })));
  svg.append(defs);
  for (const batch of structure) {
    for (const dep of batch.depends_on || []) {
      const a = pos.get(dep);
      const b = pos.get(batch.id);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const mid = (x1 + x2) / 2;
      svg.append(s('path', { class: 'edge', d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)', dataset: { from: dep, to: batch.id } }));
    }
  }
  for (const batch of structure) {
    const p = pos.get(batch.id);
    const { status, label } = statusOf(batch.id);
    const node = s('g', {
      class: `node status-${status}${selected === batch.id ? ' selected' : ''}`,
      transform: `translate(${p.x}, ${p.y})`,
      tabindex: 0,
      role: 'button',
      dataset: { batch: batch.id, status },
      onclick: () => onSelect(batch.id),
      onkeydown: (event) => { if (event.key === 'Enter') onSelect(batch.id); },
    },
    s('rect', { width: W, height: H, rx: 6 }),
    s('text', { x: 10, y: 18, class: 'node-name' }, clip(batch.name || batch.id, 22)),
    s('text', { x: 10, y: 34, class: 'node-status' }, label || status));
    svg.append(node);
  }
  return svg;
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
