// The compact JSON tree of the inspector's message views: one line per
// scalar, an object or list on one line when it is short, long lists and
// long strings folded. A message's top level takes no line of its own, and
// no closing brace takes a line.
import { h } from './lib.js';

// inlineMax is the longest line, key included, on which an object or list
// is shown whole.
const inlineMax = 60;
// Lists of more than foldItems entries start folded.
const foldItems = 20;
// Strings longer than foldString show their first foldString characters.
const foldString = 160;
// An open level shows treeChunk entries at a time.
const treeChunk = 200;

// jsonTree renders v. opts is a number (openDepth: levels at or below it
// start folded; default 4) or { openDepth, marks }: marks lists the field
// paths to highlight, as the replay diff writes them (author.name,
// tags[1], labels["k"]; "" for the whole value); their ancestors are
// shown open and on lines of their own.
export function jsonTree(v, opts) {
  const o = typeof opts === 'number' ? { openDepth: opts } : { ...opts };
  if (o.openDepth == null) o.openDepth = 4;
  o.marked = new Set();
  o.within = new Set();
  for (const p of o.marks || []) {
    const segs = parsePath(p);
    o.marked.add(key(segs));
    for (let i = 0; i < segs.length; i++) o.within.add(key(segs.slice(0, i)));
  }
  const root = h('div', { class: 'jt' });
  if (o.marked.has('')) root.classList.add('chg');
  if (isBranch(v) && size(v) > 0) fillLevel(root, v, [], 0, o);
  else root.append(line(undefined, v, [], 0, o));
  return root;
}

// parsePath splits a diff path into its steps: fields, indexes and keys.
export function parsePath(p) {
  const segs = [];
  const re = /\[("(?:[^"\\]|\\.)*")\]|\[([^\]]*)\]|\.?([^.[]+)/g;
  let m;
  while ((m = re.exec(p || '')) !== null) {
    if (m[1] !== undefined) segs.push(JSON.parse(m[1]));
    else if (m[2] !== undefined) segs.push(m[2]);
    else segs.push(m[3]);
  }
  return segs;
}
const key = segs => segs.map(String).join('\u001f');

const isBranch = v => v !== null && typeof v === 'object';
const size = v => (Array.isArray(v) ? v.length : Object.keys(v).length);

// fillLevel appends the entries of object or list v to el, a chunk at a
// time.
function fillLevel(el, v, path, depth, o) {
  const isArr = Array.isArray(v);
  const keys = isArr ? null : Object.keys(v);
  const count = isArr ? v.length : keys.length;
  let shown = 0;
  const more = h('button', { class: 'more', onclick: () => next() });
  const next = () => {
    const end = Math.min(count, shown + treeChunk);
    const lines = [];
    for (let i = shown; i < end; i++) {
      const k = isArr ? i : keys[i];
      lines.push(line(isArr ? undefined : k, v[k], [...path, k], depth, o));
    }
    shown = end;
    more.remove();
    el.append(...lines);
    if (shown < count) {
      more.textContent = `show ${Math.min(treeChunk, count - shown)} more of ${count - shown}`;
      el.append(more);
    }
  };
  next();
}

// line renders one entry: a line for a scalar or a short branch, or a
// foldable line with the branch's entries below it.
function line(k, v, path, depth, o) {
  const label = k === undefined ? [] : [h('span', { class: 'k' }, JSON.stringify(k)), ': '];
  const p = key(path);
  const chg = o.marked.has(p) ? 'chg' : null;
  if (!isBranch(v) || size(v) === 0) return h('div', { class: 'ln ' + (chg || '') }, ...label, scalar(v));
  if (!o.within.has(p)) {
    const toks = inline(v, inlineMax - (k === undefined ? 0 : JSON.stringify(k).length + 2));
    if (toks) return h('div', { class: 'ln ' + (chg || '') }, ...label, ...toks);
  }
  const isArr = Array.isArray(v);
  const n = size(v);
  const kids = h('div', { class: 'kids' });
  const open = o.within.has(p) || (depth < o.openDepth && !(isArr && n > foldItems));
  const d = h('details', { class: 'br', open },
    h('summary', { class: 'ln ' + (chg || '') }, ...label,
      h('span', { class: 'c' }, isArr ? `[${n} ${n === 1 ? 'item' : 'items'}]` : `{${n} ${n === 1 ? 'field' : 'fields'}}`)),
    kids);
  let filled = false;
  const fill = () => { if (!filled) { filled = true; fillLevel(kids, v, path, depth + 1, o); } };
  if (open) fill();
  else d.addEventListener('toggle', () => { if (d.open) fill(); });
  return d;
}

function scalar(v) {
  if (v === null) return h('span', { class: 'z' }, 'null');
  if (typeof v === 'number') return h('span', { class: 'n' }, String(v));
  if (typeof v === 'boolean') return h('span', { class: 'b' }, String(v));
  if (typeof v !== 'string') return h('span', { class: 'c' }, Array.isArray(v) ? '[]' : '{}');
  if (v.length <= foldString) return h('span', { class: 's' }, JSON.stringify(v));
  // A long string shows its start; a click shows it whole.
  const s = h('span', { class: 's' }, JSON.stringify(v.slice(0, foldString)).slice(0, -1) + '…');
  const btn = h('button', { class: 'more', title: 'Show the whole string' }, `+${v.length - foldString} chars`);
  const wrap = h('span', { class: 'folded' }, s, ' ', btn);
  btn.onclick = () => wrap.replaceWith(h('span', { class: 's whole' }, JSON.stringify(v)));
  return wrap;
}

// inline returns the tokens of v written on one line, or null when that
// line would be longer than budget characters.
function inline(v, budget) {
  const toks = [];
  let len = 0;
  const put = (cls, text) => {
    len += text.length;
    if (len > budget) return false;
    toks.push(cls ? h('span', { class: cls }, text) : text);
    return true;
  };
  const walk = x => {
    if (!isBranch(x)) {
      if (x === null) return put('z', 'null');
      if (typeof x === 'string') return put('s', JSON.stringify(x));
      return put(typeof x === 'number' ? 'n' : 'b', String(x));
    }
    const isArr = Array.isArray(x);
    const keys = isArr ? null : Object.keys(x);
    const n = isArr ? x.length : keys.length;
    if (!put('c', isArr ? '[' : '{')) return false;
    for (let i = 0; i < n; i++) {
      if (i > 0 && !put(null, ', ')) return false;
      if (!isArr && !(put('k', JSON.stringify(keys[i])) && put(null, ': '))) return false;
      if (!walk(isArr ? x[i] : x[keys[i]])) return false;
    }
    return put('c', isArr ? ']' : '}');
  };
  return walk(v) ? toks : null;
}
