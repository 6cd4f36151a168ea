// Small helpers shared by the views: DOM building, formatting, the API.

// h builds an element: attributes (on* functions become listeners; booleans
// and value set properties), then children (strings, numbers, nodes; null
// and false are skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (v === true) { el.setAttribute(k, ''); if (k in el) el[k] = true; }
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// jsonTree, the compact tree of JSON values, is in tree.js.
export { jsonTree } from './tree.js';

export function fmtBytes(n) {
  if (n == null) return '';
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  return (n / (1 << 20)).toFixed(1) + ' MiB';
}
export function fmtMS(ms) {
  if (ms == null) return '';
  if (ms < 1) return (ms * 1000).toFixed(0) + ' µs';
  if (ms < 1000) return ms.toFixed(ms < 10 ? 2 : 1) + ' ms';
  return (ms / 1000).toFixed(2) + ' s';
}
export function fmtTime(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}
// statusClass colours a status code: OK green; cancelled and deadline
// exceeded amber (usually the client's doing); others red.
export function statusClass(code) {
  if (code === 0) return 'ok';
  if (code === 1 || code === 4) return 'warn';
  return 'err';
}

// readOnlyNote says why a read-only inspector disables what would send a
// call or change something.
export const readOnlyNote = 'This inspector is read-only: it shows the capture but sends no calls and changes nothing';

// blocked disables a control and says why; the reason is on a wrapper too,
// since some browsers show no tooltip over a disabled control.
export function blocked(el, why) {
  el.disabled = true;
  el.title = why;
  return h('span', { class: 'blocked', title: why }, el);
}

let toastTimer;
export function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 2600);
}

// api calls the JSON API and throws an Error with the server's message.
export async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers['Content-Type'] = 'application/json'; }
  const res = await fetch(url, opts);
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

export function b64ToBytes(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// hexDump shows bytes as offset, hex and printable ASCII, 16 per line.
export function hexDump(bytes) {
  if (!bytes.length) return '(empty)';
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const hex = [...row].map(b => b.toString(16).padStart(2, '0')).join(' ');
    const asc = [...row].map(b => (b >= 32 && b < 127 ? String.fromCharCode(b) : '·')).join('');
    lines.push(i.toString(16).padStart(6, '0') + '  ' + hex.padEnd(48) + ' ' + asc);
  }
  return lines.join('\n');
}

// requestJSON returns the decoded request messages of a call whole: those
// the call's view shortened are fetched again without bounds.
export async function requestJSON(c) {
  const out = [];
  for (const m of c.messages.filter(m => m.direction === 'request')) {
    if (m.json != null && m.elided && m.elided.length) {
      const full = await api('GET', `/api/calls/${c.id}/messages/${m.seq}?full=1`);
      out.push(full.json);
    } else out.push(m.json);
  }
  return out;
}
