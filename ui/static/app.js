// grpctap web inspector: a small hand-written single-page app. Views are
// chosen by the URL hash: #/traffic[?method=…&since=…], #/call/ID,
// #/overview[?since=…], #/composer[?method=…&from=ID].
import { h, jsonTree, fmtBytes, fmtMS, fmtTime, statusClass, toast, api, b64ToBytes, hexDump, readOnlyNote, blocked } from './lib.js';
import { renderComposer } from './composer.js';
import { renderOverview } from './overview.js';
import { saveToCollectionButton } from './tests.js';

const view = document.getElementById('view');
const state = {
  info: null,
  filters: { method: '', status: '', protocol: '', state: '', since: '', q: '' },
  cursors: [0],      // stack of cursors: cursors[n] is the cursor of page n
  page: null,        // the last /api/calls answer shown
  sel: -1,           // selected row
  newCalls: 0,       // calls announced while not on the first page
  rows: new Map(),   // call id → <tr> on screen
};

// ---- theme ----
const root = document.documentElement;
function setTheme(t) { root.dataset.theme = t; localStorage.setItem('grpctap-theme', t); }
setTheme(localStorage.getItem('grpctap-theme') || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
document.getElementById('theme').onclick = () => setTheme(root.dataset.theme === 'dark' ? 'light' : 'dark');
const help = document.getElementById('help');
document.getElementById('help-btn').onclick = () => help.showModal();

// ---- routing ----
function route() {
  const hash = location.hash || '#/traffic';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const section = ['/composer', '/overview'].find(p => path.startsWith(p)) || '/traffic';
  for (const p of ['/traffic', '/overview', '/composer']) document.getElementById('nav-' + p.slice(1)).classList.toggle('active', p === section);
  state.rows.clear();
  let m;
  if ((m = path.match(/^\/call\/(\d+)$/))) return renderCall(+m[1]);
  if (path.startsWith('/composer')) return renderComposer(view, params, state.info);
  if (path.startsWith('/overview')) { trafficEl = null; return renderOverview(view, params, state.info); }
  if (query) { for (const k of Object.keys(state.filters)) state.filters[k] = params.get(k) || ''; resetPaging(); }
  history.replaceState(null, '', trafficHash());
  return renderTraffic();
}
addEventListener('hashchange', route);

// ---- traffic ----
function callsURL(cursor) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
  if (cursor) p.set('cursor', cursor);
  p.set('limit', '100');
  return '/api/calls?' + p;
}

function statusBadge(c) {
  if (c.state === 'open') return h('span', { class: 'badge live' }, 'live');
  return h('span', { class: 'badge ' + statusClass(c.status.code), title: c.status.message || '' }, c.status.name);
}

function callRow(c, i) {
  const svc = c.service.split('.').pop();
  const mname = c.method.slice(c.method.lastIndexOf('/') + 1);
  const origin = (c.request_headers['grpctap-origin'] || [])[0];
  const tr = h('tr', { 'data-id': c.id, onclick: () => { location.hash = '#/call/' + c.id; } },
    h('td', { class: 'num mono' }, c.id),
    h('td', { class: 'mono', title: c.start }, fmtTime(c.start)),
    h('td', { title: c.method }, h('span', { class: 'svc' }, svc + ' / '), h('span', { class: 'meth' }, mname),
      origin ? h('span', { class: 'tag origin' }, origin) : null,
      c.protocol !== 'grpc' ? h('span', { class: 'tag' }, c.protocol) : null),
    h('td', { class: 'h-rpc' }, c.rpc.replace('_streaming', ' stream').replace('bidi stream', 'bidi')),
    h('td', { class: 'st' }, statusBadge(c)),
    h('td', { class: 'num dur' }, c.duration_ms == null ? '…' : fmtMS(c.duration_ms)),
    h('td', { class: 'num msgs', title: 'requests ↑ / responses ↓' }, `${c.request_count}↑ ${c.response_count}↓`),
    h('td', { class: 'num h-size' }, fmtBytes(c.request_bytes + c.response_bytes)),
    h('td', { class: 'h-backend mono', title: c.backend }, c.backend));
  if (i === state.sel) tr.classList.add('sel');
  state.rows.set(c.id, tr);
  return tr;
}

let trafficEl = null;
function renderTraffic() {
  const f = state.filters;
  const input = (key, attrs) => h('input', { ...attrs, value: f[key], oninput: debounce(e => { f[key] = e.target.value.trim(); filtersChanged(); }, 250) });
  const select = (key, label, opts) => h('select', { 'aria-label': label, onchange: e => { f[key] = e.target.value; filtersChanged(); } },
    ...opts.map(([v, t]) => h('option', { value: v, selected: f[key] === v }, t)));
  const codes = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
    'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
  trafficEl = h('div', { class: 'traffic' },
    h('div', { class: 'filters' },
      input('q', { type: 'search', id: 'search', placeholder: 'Search messages, headers, methods…  ( / )', 'aria-label': 'Search' }),
      input('method', { class: 'method', placeholder: 'Method glob: *Echo', 'aria-label': 'Method glob' }),
      select('status', 'Status', [['', 'Any status'], ...codes.map(c => [c, c])]),
      select('protocol', 'Protocol', [['', 'Any protocol'], ['grpc', 'gRPC'], ['grpc-web', 'gRPC-Web'], ['grpc-web-text', 'gRPC-Web text']]),
      select('state', 'State', [['', 'Open and closed'], ['open', 'Open (live)'], ['closed', 'Closed']]),
      select('since', 'Since', [['', 'Any time'], ['5m', 'Last 5 min'], ['15m', 'Last 15 min'], ['1h', 'Last hour'], ['24h', 'Last day']])),
    h('div', { class: 'pager', id: 'pager' }),
    h('table', { class: 'calls', id: 'calls' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num c-id' }, '#'), h('th', { class: 'c-time' }, 'Time'), h('th', {}, 'Method'), h('th', { class: 'h-rpc' }, 'Kind'),
        h('th', { class: 'c-status' }, 'Status'), h('th', { class: 'num c-dur' }, 'Duration'), h('th', { class: 'num c-msgs' }, 'Msgs'), h('th', { class: 'num h-size' }, 'Size'),
        h('th', { class: 'h-backend' }, 'Backend'))),
      h('tbody', { id: 'rows' })));
  view.replaceChildren(trafficEl);
  loadPage();
}

function resetPaging() { state.cursors = [0]; state.sel = -1; state.newCalls = 0; }
// The URL keeps the traffic's filters (#/traffic?method=…, as the
// overview links to it).
function trafficHash() {
  const q = String(new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v)));
  return '#/traffic' + (q ? '?' + q : '');
}
function filtersChanged() {
  history.replaceState(null, '', trafficHash());
  resetPaging();
  loadPage();
}

let loading = false, reloadAgain = false;
async function loadPage() {
  if (!trafficEl) return;
  if (loading) { reloadAgain = true; return; }
  loading = true;
  try {
    const cursor = state.cursors[state.cursors.length - 1];
    const page = await api('GET', callsURL(cursor));
    if (!document.body.contains(trafficEl)) return;
    state.page = page;
    if (state.cursors.length === 1) state.newCalls = 0;
    state.sel = Math.min(state.sel, page.calls.length - 1);
    const tbody = document.getElementById('rows');
    state.rows.clear();
    if (page.calls.length === 0) {
      const msg = Object.values(state.filters).some(v => v) ? 'No calls match these filters.' : 'No calls yet. Point a gRPC client at the proxy and they appear here as they happen.';
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, msg)));
    } else {
      tbody.replaceChildren(...page.calls.map(callRow));
    }
    renderPager();
  } catch (e) {
    toast(e.message);
  } finally {
    loading = false;
    if (reloadAgain) { reloadAgain = false; setTimeout(loadPage, 0); }
  }
}

function renderPager() {
  const el = document.getElementById('pager');
  if (!el || !state.page) return;
  const n = state.cursors.length;
  el.replaceChildren(...[
    state.newCalls > 0 ? h('button', { class: 'newcalls small', onclick: () => { resetPaging(); loadPage(); } }, `${state.newCalls} new — show`) : null,
    h('span', {}, n === 1 ? 'Newest calls, live' : `Page ${n}`),
    h('button', { class: 'small', disabled: n === 1, onclick: newer, title: 'Newer ( [ )' }, '← Newer'),
    h('button', { class: 'small', disabled: !state.page.next_cursor, onclick: older, title: 'Older ( ] )' }, 'Older →')].filter(Boolean));
}
function newer() { if (state.cursors.length > 1) { state.cursors.pop(); state.sel = -1; loadPage(); } }
function older() { if (state.page && state.page.next_cursor) { state.cursors.push(state.page.next_cursor); state.sel = -1; loadPage(); } }

// ---- live feed ----
let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadPage(); }, 150);
}
function connectEvents() {
  const live = document.getElementById('live');
  const es = new EventSource('/api/events');
  es.onopen = () => { live.className = 'live'; live.textContent = 'live'; };
  es.onerror = () => { live.className = 'live off'; live.textContent = 'reconnecting'; };
  es.addEventListener('calls', ev => {
    const b = JSON.parse(ev.data);
    document.dispatchEvent(new CustomEvent('grpctap-batch', { detail: b }));
    if (!trafficEl || !document.body.contains(trafficEl)) return;
    let changed = b.lagged || b.refresh || b.overflow > 0;
    for (const u of b.calls) {
      const tr = state.rows.get(u.id);
      if (tr && (u.requests || u.responses)) {
        const c = state.page.calls.find(c => c.id === u.id);
        if (c) { c.request_count += u.requests; c.response_count += u.responses; tr.querySelector('.msgs').textContent = `${c.request_count}↑ ${c.response_count}↓`; }
      }
      if (u.started || u.ended) changed = true;
    }
    if (!changed) return;
    if (state.cursors.length === 1) scheduleRefresh();
    else { state.newCalls += b.calls.filter(u => u.started).length; renderPager(); }
  });
}

// ---- call detail ----
async function renderCall(id) {
  trafficEl = null;
  view.replaceChildren(h('div', { class: 'empty' }, 'Loading call ' + id + '…'));
  let c;
  try { c = await api('GET', '/api/calls/' + id); } catch (e) {
    view.replaceChildren(h('div', { class: 'empty' }, e.message, h('p', {}, h('a', { href: '#/traffic' }, '← Back to traffic'))));
    return;
  }
  const replayOut = h('div', {});
  const st = c.status;
  const head = h('div', { class: 'detail-head' },
    h('a', { href: '#/traffic', title: 'Back (Esc)' }, '←'),
    h('h2', {}, c.method),
    c.state === 'open' ? h('span', { class: 'badge live' }, 'live') : h('span', { class: 'badge ' + statusClass(st.code) }, `${st.name} (${st.code})`),
    h('div', { class: 'actions' },
      h('button', { onclick: async () => { try { copy((await api('GET', `/api/calls/${c.id}/grpcurl`)).command, 'grpcurl command copied'); } catch (e) { toast(e.message); } } }, 'Copy as grpcurl'),
      replayButton(c, replayOut),
      saveToCollectionButton(c, state.info),
      h('button', { onclick: () => { location.hash = `#/composer?from=${c.id}`; } }, 'Open in composer')));
  const item = (k, v, cls) => h('div', {}, h('div', { class: 'k' }, k), h('div', { class: 'v ' + (cls || '') }, v ?? h('span', { class: 'none' }, '—')));
  const summary = h('div', { class: 'card' }, h('div', { class: 'grid' },
    item('Started', new Date(c.start).toLocaleString() + '.' + String(new Date(c.start).getMilliseconds()).padStart(3, '0')),
    item('Duration', c.duration_ms == null ? 'still open' : fmtMS(c.duration_ms)),
    item('Kind', c.rpc), item('Protocol', c.protocol),
    item('Peer', c.peer, 'mono'), item('Backend', c.backend, 'mono'), item('Authority', c.authority, 'mono'),
    item('Content type', c.content_type, 'mono'), item('Compression', c.compression || 'none'),
    item('Requests', `${c.request_count} · ${fmtBytes(c.request_bytes)}`), item('Responses', `${c.response_count} · ${fmtBytes(c.response_bytes)}`),
    c.dropped_events ? item('Dropped events', String(c.dropped_events)) : null),
    st ? h('div', { class: 'card-status' }, h('p', {}, h('b', {}, 'Status: '), `${st.name} (${st.code})`, st.message ? ' — ' + st.message : ''),
      st.details && st.details.length ? h('div', {}, h('b', {}, `Details (${st.details.length})`),
        ...st.details.map((d, i) => {
          const dv = (c.status_details_decoded || [])[i];
          return h('details', { class: 'msg', open: true }, h('summary', {}, h('span', { class: 'mono' }, dv && dv.type ? dv.type : 'detail ' + (i + 1)),
            dv && dv.error ? h('span', { class: 'badge warn' }, dv.error) : null),
            h('div', { class: 'body' }, dv && dv.json ? jsonTree(dv.json) : h('pre', { class: 'raw mono' }, hexDump(b64ToBytes(d)))));
        })) : null) : null);
  const mdTable = (title, md) => h('div', { class: 'card' }, h('h3', {}, title),
    Object.keys(md || {}).length ? h('table', { class: 'kv' }, ...Object.entries(md).sort().map(([k, vs]) => h('tr', {}, h('th', {}, k), h('td', {}, vs.join(', ')))))
      : h('div', { class: 'none' }, 'none'));
  const t0 = Date.parse(c.start);
  const total = Math.max(1, c.duration_ms ?? (Date.now() - t0));
  const timeline = h('div', { class: 'card' }, h('h3', {}, 'Timeline'),
    c.messages.length === 0 ? h('div', { class: 'none' }, 'no messages') :
      h('div', { class: 'timeline' }, ...c.messages.map(m => {
        const off = Date.parse(m.time) - t0;
        const dot = h('span', { class: m.direction });
        dot.style.left = `calc(${Math.min(100, Math.max(0, off / total * 100))}% - 4px)`;
        return h('div', { class: 'tl-row' }, h('span', { class: 'dir ' + m.direction, title: m.direction }, m.direction === 'request' ? '→' : '←'),
          h('span', { class: 'mono' }, '+' + fmtMS(off)), h('span', { class: 'mono' }, fmtBytes(m.size)), h('div', { class: 'tl-bar' }, dot));
      })));
  const msgs = h('div', {}, h('h3', { class: 'section' }, `Messages (${c.messages.length})`),
    ...c.messages.map((m, i) => messageView(c.id, m, t0, i < 6)));
  view.replaceChildren(h('div', { class: 'detail' }, head, replayOut, summary,
    h('div', { class: 'cols' }, mdTable('Request headers', c.request_headers), mdTable('Response headers', c.response_headers), mdTable('Trailers', c.trailers)),
    timeline, msgs));
  view.focus();
}

// rawLimit is how much of a body the Hex and Base64 views show.
const rawLimit = 64 << 10;

function messageView(callID, m, t0, open) {
  const body = h('div', { class: 'body' });
  const rawURL = `/api/calls/${callID}/messages/${m.seq}/raw`;
  // Bodies over 64 KiB are not in the call's JSON: fetched when a raw tab
  // is opened, and shown up to rawLimit.
  let raw = m.raw_omitted ? null : b64ToBytes(m.raw);
  const rawView = render => {
    if (raw) return rawPane(raw, render, rawURL);
    const out = h('div', { class: 'none' }, `loading ${fmtBytes(m.size)}…`);
    fetch(rawURL).then(r => { if (!r.ok) throw new Error(`${r.status} ${r.statusText}`); return r.arrayBuffer(); })
      .then(b => { raw = new Uint8Array(b); out.replaceWith(rawPane(raw, render, rawURL)); })
      .catch(e => { out.textContent = e.message; });
    return out;
  };
  const tabs = [['Decoded', () => m.json != null ? jsonTree(m.json) : h('div', { class: 'none' }, 'not decoded')],
    ['Schemaless', () => m.schemaless != null ? jsonTree(m.schemaless) : h('div', { class: 'none' }, 'no schemaless view')],
    ['Hex', () => rawView(b => h('pre', { class: 'raw' }, hexDump(b)))],
    ['Base64', () => rawView(b => h('pre', { class: 'raw' }, bytesToB64(b)))]];
  let first = m.json != null ? 0 : (m.schemaless != null ? 1 : 2);
  let cur = first;
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  const pane = h('div', {});
  const show = i => {
    cur = i;
    [...bar.children].forEach((b, j) => { b.classList.toggle('on', i === j); b.setAttribute('aria-selected', i === j); });
    pane.replaceChildren(tabs[i][1]());
  };
  tabs.forEach(([name], i) => bar.append(h('button', { role: 'tab', onclick: () => show(i) }, name)));
  const note = h('div', {});
  let scale = 1;
  const renderNote = () => {
    note.replaceChildren(m.decode_error ? h('div', { class: 'decode-error' }, m.decode_error) : '',
      m.elided && m.elided.length ? h('div', { class: 'hint shortened' }, 'This view is shortened. ',
        h('button', { onclick: more }, 'Show 10× more'), ' ', h('a', { href: rawURL, download: '' }, 'Download the raw message')) : '');
  };
  const more = async () => {
    scale *= 10;
    try {
      const full = await api('GET', `/api/calls/${callID}/messages/${m.seq}?scale=${scale}`);
      Object.assign(m, { json: full.json, schemaless: full.schemaless, decode_error: full.decode_error, elided: full.elided });
      renderNote();
      show(cur);
    } catch (e) { toast(e.message); }
  };
  renderNote();
  body.append(note, bar, pane);
  show(first);
  const d = h('details', { class: 'msg', open },
    h('summary', {}, h('span', { class: 'dir ' + m.direction }, (m.direction === 'request' ? '→ request' : '← response')),
      h('span', { class: 'mono' }, '#' + m.seq), h('span', { class: 'mono' }, '+' + fmtMS(Date.parse(m.time) - t0)),
      h('span', { class: 'mono' }, fmtBytes(m.size) + (m.truncated ? ' (truncated)' : '')),
      m.json == null ? h('span', { class: 'badge warn' }, 'schemaless') : null),
    body);
  return d;
}

// rawPane shows the first rawLimit bytes of a body with render, and says
// how much is left out.
function rawPane(bytes, render, url) {
  if (bytes.length <= rawLimit) return render(bytes);
  return h('div', {}, render(bytes.subarray(0, rawLimit)),
    h('div', { class: 'hint' }, `First ${fmtBytes(rawLimit)} of ${fmtBytes(bytes.length)} shown. `, h('a', { href: url, download: '' }, 'Download the raw message')));
}

function bytesToB64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function copy(text, done) {
  try { await navigator.clipboard.writeText(text); toast(done); }
  catch { prompt('Copy:', text); }
}

function replayButton(c, out) {
  const info = state.info || {};
  const btn = h('button', { onclick: () => doReplay(c, out), title: 'Send the recorded requests again and compare' }, 'Replay');
  if (info.read_only) return blocked(btn, readOnlyNote);
  if (!info.replay) return blocked(btn, 'replay is not available here');
  return btn;
}

async function doReplay(c, out) {
  out.replaceChildren(h('div', { class: 'card' }, 'Replaying…'));
  try {
    const res = await api('POST', `/api/calls/${c.id}/replay`);
    const cls = res.verdict === 'match' ? 'ok' : res.verdict === 'mismatch' ? 'warn' : 'err';
    const cell = v => h('td', {}, v == null ? h('span', { class: 'none' }, 'none') : typeof v === 'object' ? jsonTree(v, 1) : String(v));
    out.replaceChildren(h('div', { class: 'card', id: 'replay' },
      h('h3', {}, 'Replay', h('span', { class: 'badge ' + cls }, res.verdict)),
      h('p', {}, `Sent to ${res.target} in ${fmtMS(res.duration_ms)}: recorded ${res.recorded_status || '—'}, got ${res.status || '—'}`,
        res.compared_by ? ` (compared by ${res.compared_by})` : '', res.error ? h('div', { class: 'decode-error' }, res.error) : null),
      ...(res.notes || []).map(n => h('div', { class: 'hint' }, n)),
      res.diffs && res.diffs.length ? h('table', { class: 'kv diff' }, h('tr', {}, h('th', {}, 'where'), h('th', {}, 'path'), h('th', {}, 'recorded'), h('th', {}, 'got')),
        ...res.diffs.map(d => h('tr', {}, h('td', { class: 'mono' }, d.where), h('td', { class: 'mono' }, d.path || ''), cell(d.recorded), cell(d.got))))
        : h('div', { class: 'hint' }, 'No differences.')));
  } catch (e) {
    out.replaceChildren(h('div', { class: 'card' }, h('h3', {}, 'Replay'), h('div', { class: 'decode-error' }, e.message)));
  }
}

// ---- keyboard ----
let gPending = false;
addEventListener('keydown', e => {
  const t = e.target;
  const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  if (e.key === 'Escape') {
    if (typing) { t.blur(); return; }
    if (location.hash.startsWith('#/call/')) location.hash = '#/traffic';
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (gPending) {
    gPending = false;
    if (e.key === 't') location.hash = '#/traffic';
    if (e.key === 'c') location.hash = '#/composer';
    if (e.key === 'o') location.hash = '#/overview';
    return;
  }
  switch (e.key) {
    case 'g': gPending = true; setTimeout(() => { gPending = false; }, 1000); break;
    case '?': help.showModal(); break;
    case 't': setTheme(root.dataset.theme === 'dark' ? 'light' : 'dark'); break;
    case '/': { const s = document.getElementById('search') || document.getElementById('tree-filter'); if (s) { e.preventDefault(); s.focus(); } break; }
    case 'j': case 'k': moveSel(e.key === 'j' ? 1 : -1); break;
    case 'Enter': if (trafficEl && state.page && state.sel >= 0) location.hash = '#/call/' + state.page.calls[state.sel].id; break;
    case '[': if (trafficEl) newer(); break;
    case ']': if (trafficEl) older(); break;
  }
});
function moveSel(d) {
  if (!trafficEl || !state.page || !state.page.calls.length) return;
  state.sel = Math.max(0, Math.min(state.page.calls.length - 1, state.sel + d));
  document.querySelectorAll('#rows tr.sel').forEach(r => r.classList.remove('sel'));
  const tr = state.rows.get(state.page.calls[state.sel].id);
  if (tr) { tr.classList.add('sel'); tr.scrollIntoView({ block: 'nearest' }); }
}

function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }

// ---- start ----
(async () => {
  try { state.info = await api('GET', '/api/info'); } catch (e) { toast(e.message); }
  if (state.info && state.info.read_only) document.getElementById('live').before(h('span', { class: 'badge ro', id: 'read-only', title: readOnlyNote }, 'read-only'));
  connectEvents();
  route();
})();
