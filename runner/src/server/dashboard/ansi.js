// ANSI SGR escapes (colours, bold, italic, underline) to styled segments.
// Other escape sequences (cursor moves, OSC titles) are dropped.

const ESC = /\x1b(?:\[([0-9;:?]*)([A-Za-z])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78DEHMNOZc])/g;

/** @typedef {{fg?: string, bg?: string, bold?: boolean, dim?: boolean, italic?: boolean, underline?: boolean}} Style */

const EMPTY = Object.freeze({});

/** Text without any escape sequence. */
export function strip(text) {
  return text.replace(ESC, '');
}

/**
 * Splits `text` into [text, style] segments, starting from `style` (the
 * style the previous line ended with); returns the segments and the style
 * at the end.
 * @param {string} text
 * @param {Style} [style]
 * @returns {{segments: Array<[string, Style]>, end: Style}}
 */
export function parse(text, style = EMPTY) {
  const segments = [];
  let at = 0;
  let current = style;
  ESC.lastIndex = 0;
  for (let m = ESC.exec(text); m; m = ESC.exec(text)) {
    if (m.index > at) segments.push([text.slice(at, m.index), current]);
    at = ESC.lastIndex;
    if (m[2] === 'm') current = apply(current, m[1]);
  }
  if (at < text.length) segments.push([text.slice(at), current]);
  return { segments, end: current };
}

const NAMES = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];

/** @param {Style} style @param {string} params */
function apply(style, params) {
  const codes = (params || '0').split(/[;:]/).map((n) => (n === '' ? 0 : Number(n)));
  let next = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) next = {};
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) { delete next.bold; delete next.dim; }
    else if (c === 23) delete next.italic;
    else if (c === 24) delete next.underline;
    else if (c >= 30 && c <= 37) next.fg = NAMES[c - 30];
    else if (c >= 90 && c <= 97) next.fg = `bright-${NAMES[c - 90]}`;
    else if (c === 39) delete next.fg;
    else if (c >= 40 && c <= 47) next.bg = NAMES[c - 40];
    else if (c >= 100 && c <= 107) next.bg = `bright-${NAMES[c - 100]}`;
    else if (c === 49) delete next.bg;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5) { next[key] = color256(codes[i + 2]); i += 2; }
      else if (codes[i + 1] === 2) { next[key] = `rgb(${codes[i + 2] | 0}, ${codes[i + 3] | 0}, ${codes[i + 4] | 0})`; i += 4; }
    }
  }
  return Object.keys(next).length ? next : EMPTY;
}

/** A 256-colour index as a CSS colour (or a palette name for 0–15). */
function color256(n) {
  n = n | 0;
  if (n < 8) return NAMES[n];
  if (n < 16) return `bright-${NAMES[n - 8]}`;
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return `rgb(${v[Math.floor(i / 36)]}, ${v[Math.floor(i / 6) % 6]}, ${v[i % 6]})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g}, ${g}, ${g})`;
}

/**
 * A span for one segment: palette colours as classes (`ansi-fg-red`),
 * others through the CSSOM (which the Content-Security-Policy allows).
 * @param {string} text @param {Style} style
 */
export function span(text, style) {
  const el = document.createElement('span');
  el.textContent = text;
  const classes = [];
  for (const key of ['fg', 'bg']) {
    const value = style[key];
    if (!value) continue;
    if (value.startsWith('rgb')) el.style[key === 'fg' ? 'color' : 'backgroundColor'] = value;
    else classes.push(`ansi-${key}-${value}`);
  }
  if (style.bold) classes.push('ansi-bold');
  if (style.dim) classes.push('ansi-dim');
  if (style.italic) classes.push('ansi-italic');
  if (style.underline) classes.push('ansi-underline');
  if (classes.length) el.className = classes.join(' ');
  return el;
}
