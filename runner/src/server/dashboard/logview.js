// A log that stays responsive at 100,000 lines and more: only the rows on
// screen (plus a margin) are in the DOM; colours stop past a size cap.
//
// Output lines that open a group fold what follows them, as Buildkite and
// GitHub Actions logs do: `--- title` and `~~~ title` (folded), `+++ title`
// (open), `::group::title` (folded) until `::endgroup::`. A click on the
// group's line opens or folds it; a search shows every match, folded or not.

import { parse, strip, span } from './ansi.js';
import { h, throttled } from './dom.js';

const ROW = 18; // px, matches .log-row in style.css
const OVERSCAN = 20;
/** Bytes of log text coloured; past it lines are shown plain. */
export const COLOUR_CAP = 2 * 1024 * 1024;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const GROUP = /^(---|\+\+\+|~~~) (.*)$|^::group::(.*)$/;
const END_GROUP = /^::endgroup::\s*$/;

/**
 * A line: {seq, kind: 'output'|'log', stream, level, source, text, segments?}.
 */
export class LogView {
  constructor() {
    /** @type {any[]} */
    this.lines = [];
    /** @type {any[]} the lines that pass the filter */
    this.visible = [];
    this.partial = new Map(); // stream → unfinished output line
    this.style = new Map(); // stream → ANSI style at the end of the last line
    this.colouredBytes = 0;
    this.capped = false;
    this.lastSeq = 0;
    this.query = '';
    this.level = 'all';
    this.follow = true;
    /** The group lines go in (the index of its opening line), and the folded ones. */
    this.group = undefined;
    this.folded = new Set();
    this.schedule = throttled(() => this.render());
    this.spacer = h('div', { class: 'log-spacer' });
    this.window = h('div', { class: 'log-window' });
    this.viewport = h('div', { class: 'log-viewport', tabindex: 0, onscroll: () => this.onScroll() }, this.spacer, this.window);
    this.status = h('span', { class: 'log-status muted' });
    this.element = this.viewport;
  }

  onScroll() {
    const atBottom = this.viewport.scrollTop + this.viewport.clientHeight >= this.viewport.scrollHeight - ROW * 2;
    if (!atBottom && this.follow && this.userScrolled) this.setFollow(false);
    this.userScrolled = true;
    this.schedule();
  }

  setFollow(on) {
    this.follow = on;
    if (this.onFollowChange) this.onFollowChange(on);
    if (on) this.scrollToEnd();
  }

  scrollToEnd() {
    this.userScrolled = false;
    this.viewport.scrollTop = this.viewport.scrollHeight;
    this.schedule();
  }

  /** Adds output and log entries in seq order (ones already seen are skipped). */
  add(entries) {
    let added = false;
    for (const entry of entries) {
      if (entry.seq <= this.lastSeq) continue;
      this.lastSeq = entry.seq;
      if (entry.kind === 'output') this.addOutput(entry);
      else this.push({ seq: entry.seq, kind: 'log', level: entry.level || 'info', source: entry.source, stream: entry.stream, text: entry.text });
      added = true;
    }
    if (added) this.refilter(false);
  }

  addOutput(entry) {
    const stream = entry.stream || 'stdout';
    const text = (this.partial.get(stream) || '') + entry.text;
    const parts = text.split('\n');
    const rest = parts.pop();
    // The unfinished last line is shown as it is, then replaced when it ends.
    const last = this.lines[this.lines.length - 1];
    if (last && last.partialOf === stream) this.lines.pop();
    for (const part of parts) this.push({ seq: entry.seq, kind: 'output', stream, level: stream, text: part.replace(/\r$/, '') });
    this.partial.set(stream, rest);
    if (rest) this.push({ seq: entry.seq, kind: 'output', stream, level: stream, text: rest, partialOf: stream });
  }

  /** Marks group openings and which group each output line is in. */
  grouping(line) {
    if (line.kind !== 'output' || line.partialOf) return;
    const plain = strip(line.text);
    const opened = GROUP.exec(plain);
    if (opened) {
      this.hasGroups = true;
      const id = this.lines.length;
      line.opens = { id, title: opened[2] ?? opened[3] ?? '' };
      this.group = id;
      if (opened[1] !== '+++') this.folded.add(id);
      return;
    }
    if (END_GROUP.test(plain)) {
      this.hasGroups = true;
      this.group = undefined;
      line.closes = true;
      return;
    }
    if (this.group !== undefined) line.group = this.group;
  }

  toggle(id) {
    if (this.folded.has(id)) this.folded.delete(id); else this.folded.add(id);
    this.refilter(true);
  }

  push(line) {
    this.grouping(line);
    if (!this.capped && this.colouredBytes + line.text.length > COLOUR_CAP) this.capped = true;
    if (this.capped) {
      line.text = strip(line.text);
    } else {
      this.colouredBytes += line.text.length;
      const key = line.stream || 'log';
      const { segments, end } = parse(line.text, this.style.get(key));
      if (!line.partialOf) this.style.set(key, end);
      if (segments.length !== 1 || Object.keys(segments[0][1]).length) line.segments = segments;
      line.text = segments.map((seg) => seg[0]).join('');
    }
    this.lines.push(line);
  }

  setQuery(query) { this.query = query.toLowerCase(); this.refilter(true); }
  setLevel(level) { this.level = level; this.refilter(true); }

  passes(line) {
    if (this.level !== 'all') {
      if (this.level === 'stdout' || this.level === 'stderr') {
        if (line.kind !== 'output' || line.stream !== this.level) return false;
      } else if (line.kind !== 'log' || LEVELS.indexOf(line.level) < LEVELS.indexOf(this.level)) return false;
    }
    if (this.query) return line.text.toLowerCase().includes(this.query);
    if (line.closes) return false;
    return line.group === undefined || !this.folded.has(line.group);
  }

  refilter(all) {
    if (all || this.level !== 'all' || this.query || this.folded.size || this.hasGroups) this.visible = this.lines.filter((l) => this.passes(l));
    else this.visible = this.lines;
    this.spacer.style.height = `${this.visible.length * ROW}px`;
    if (this.follow) this.scrollToEnd();
    this.schedule();
  }

  render() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    this.window.style.transform = `translateY(${first * ROW}px)`;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.row(this.visible[i], i));
    this.window.replaceChildren(...rows);
    const coloured = this.capped ? ` · colours off past ${Math.round(COLOUR_CAP / 1048576)} MiB` : '';
    const shown = this.visible.length === this.lines.length ? `${this.lines.length} lines` : `${this.visible.length} of ${this.lines.length} lines`;
    this.status.textContent = shown + coloured;
    if (this.onRender) this.onRender(this);
  }

  row(line, index) {
    if (line.opens) {
      const { id, title } = line.opens;
      const folded = this.folded.has(id);
      return h('div', { class: 'log-row log-group', dataset: { index, seq: line.seq, group: id, folded: folded ? 'yes' : 'no' }, onclick: () => this.toggle(id) },
        h('span', { class: 'log-fold' }, folded ? '▸ ' : '▾ '), title);
    }
    const row = h('div', { class: `log-row log-${line.level}`, dataset: { index, seq: line.seq } });
    if (line.kind === 'log') row.append(h('span', { class: 'log-tag' }, `${line.level} ${line.source || ''}`.trim()), ' ');
    if (line.segments) for (const [text, style] of line.segments) row.append(span(text, style));
    else row.append(line.text);
    return row;
  }
}
