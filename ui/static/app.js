// grpctap web inspector: a small hand-written single-page app. Views are
// chosen by the URL hash: #/traffic[?method=…&since=…], #/call/ID[?method=…]
// (the traffic with a call's detail beside or below it),
// #/overview[?since=…], #/composer[?method=…&from=ID].
import { h, jsonTree, fmtBytes, fmtMS, fmtTime, statusClass, toast, api, b64ToBytes, hexDump, readOnlyNote, blocked } from './lib.js';
import { renderComposer } from './composer.js';
import { renderOverview } from './overview.js';
import { saveToCollectionButton } from './tests.js';

const view = document.getElementById('view');
const state = {
  info: null,
  filters: { method: '', status: '', protocol: '', state: '', since: '', proxy: '', q: '' },
  cursors: [0],      // stack of cursors: cursors[n] is the cursor of page n
  page: null,        // the last /api/calls answer shown
  selId: null,       // the selected call's id
  open: null,        // the id of the call shown in the detail pane
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
// The traffic list and a call's detail are one view, the workbench: the
// list alone (#/traffic?filters), or the list and a call
// (#/call/ID?filters), side by side on a wide screen and one above the
// other on a narrow one.
function route() {
  const hash = location.hash || '#/traffic';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const section = ['/composer', '/overview'].find(p => path.startsWith(p)) || '/traffic';
  for (const p of ['/traffic', '/overview', '/composer']) document.getElementById('nav-' + p.slice(1)).classList.toggle('active', p === section);
  view.classList.toggle('fill', section === '/traffic');
  if (section !== '/traffic') {
    trafficEl = null;
    state.rows.clear();
    if (section === '/composer') return renderComposer(view, params, state.info);
    return renderOverview(view, params, state.info);
  }
  const m = path.match(/^\/call\/(\d+)$/);
  let refilter = false;
  if (query) {
    for (const k of Object.keys(state.filters)) {
      const v = params.get(k) || '';
      if (state.filters[k] !== v) { state.filters[k] = v; refilter = true; }
    }
  }
  if (refilter) resetPaging();
  state.open = m ? +m[1] : null;
  if (m) state.selId = state.open;
  history.replaceState(null, '', state.open ? callHash(state.open) : trafficHash());
  if (refilter || !trafficEl || !document.body.contains(trafficEl)) renderTraffic();
  else { markSel(); }
  showDetail();
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

// A fleet's capture (calls recorded by several proxies, /api/info's
// proxies) gets a Proxy column and filter.
function fleet() { return (state.info?.proxies?.length || 0) > 1 || state.filters.proxy !== ''; }

function callRow(c) {
  const svc = c.service.split('.').pop();
  const mname = c.method.slice(c.method.lastIndexOf('/') + 1);
  const origin = (c.request_headers['grpctap-origin'] || [])[0];
  const tr = h('tr', { 'data-id': c.id, tabindex: '-1', onclick: () => { location.hash = callHash(c.id); } },
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
    h('td', { class: 'h-backend mono', title: c.backend }, c.backend),
    fleet() ? h('td', { class: 'h-proxy', title: 'recorded by ' + c.proxy }, c.proxy) : null);
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
  state.rows.clear();
  trafficEl = h('div', { class: 'workbench', id: 'workbench' },
    h('section', { class: 'list-pane', 'aria-label': 'Calls' },
      h('div', { class: 'filters' },
        input('q', { type: 'search', id: 'search', placeholder: 'Search messages, headers, methods…  ( / )', 'aria-label': 'Search' }),
        input('method', { class: 'method', placeholder: 'Method glob: *Echo', 'aria-label': 'Method glob' }),
        select('status', 'Status', [['', 'Any status'], ...codes.map(c => [c, c])]),
        select('protocol', 'Protocol', [['', 'Any protocol'], ['grpc', 'gRPC'], ['grpc-web', 'gRPC-Web'], ['grpc-web-text', 'gRPC-Web text']]),
        select('state', 'State', [['', 'Open and closed'], ['open', 'Open (live)'], ['closed', 'Closed']]),
        fleet() ? select('proxy', 'Proxy', [['', 'Any proxy'], ...[...new Set([...(state.info?.proxies || []), f.proxy].filter(Boolean))].map(p => [p, p])]) : null,
        select('since', 'Since', [['', 'Any time'], ['5m', 'Last 5 min'], ['15m', 'Last 15 min'], ['1h', 'Last hour'], ['24h', 'Last day']]),
        h('div', { class: 'pager', id: 'pager' })),
      h('div', { class: 'list-scroll', id: 'list-scroll' },
        h('table', { class: 'calls', id: 'calls' },
          h('thead', {}, h('tr', {}, h('th', { class: 'num c-id' }, '#'), h('th', { class: 'c-time' }, 'Time'), h('th', {}, 'Method'), h('th', { class: 'h-rpc' }, 'Kind'),
            h('th', { class: 'c-status' }, 'Status'), h('th', { class: 'num c-dur' }, 'Duration'), h('th', { class: 'num c-msgs' }, 'Msgs'), h('th', { class: 'num h-size' }, 'Size'),
            h('th', { class: 'h-backend' }, 'Backend'), fleet() ? h('th', { class: 'h-proxy' }, 'Proxy') : null)),
          h('tbody', { id: 'rows' })))),
    h('section', { class: 'detail-pane', id: 'detail-pane', 'aria-label': 'Call detail' }));
  view.replaceChildren(trafficEl);
  loadPage();
}

function resetPaging() { state.cursors = [0]; state.selId = null; state.newCalls = 0; }
function filterQuery() { return String(new URLSearchParams(Object.entries(state.filters).filter(([, v]) => v))); }
// The URL keeps the traffic's filters (#/traffic?method=…, as the
// overview links to it) and the open call (#/call/ID?method=…).
function trafficHash() { const q = filterQuery(); return '#/traffic' + (q ? '?' + q : ''); }
function callHash(id) { const q = filterQuery(); return '#/call/' + id + (q ? '?' + q : ''); }
function filtersChanged() {
  history.replaceState(null, '', state.open ? callHash(state.open) : trafficHash());
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
    const tbody = document.getElementById('rows');
    state.rows.clear();
    if (page.calls.length === 0) {
      const msg = Object.values(state.filters).some(v => v) ? 'No calls match these filters.' : 'No calls yet. Point a gRPC client at the proxy and they appear here as they happen.';
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9, class: 'empty' }, msg)));
    } else {
      const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#rows');
      tbody.replaceChildren(...page.calls.map(callRow));
      markSel(!!focused);
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
    n > 1 ? h('span', {}, `Page ${n}`) : null,
    h('button', { class: 'small', disabled: n === 1, onclick: newer, title: n === 1 ? 'Newest calls, live' : 'Newer ( [ )', 'aria-label': 'Newer' }, '←'),
    h('button', { class: 'small', disabled: !state.page.next_cursor, onclick: older, title: 'Older ( ] )', 'aria-label': 'Older' }, '→')].filter(Boolean));
}
function newer() { if (state.cursors.length > 1) { state.cursors.pop(); loadPage(); } }
function older() { if (state.page && state.page.next_cursor) { state.cursors.push(state.page.next_cursor); loadPage(); } }

// markSel shows the selected call's row as selected (and focuses it when
// focus is asked, so that the keyboard and a screen reader follow it).
function markSel(focus) {
  for (const [id, tr] of state.rows) {
    const on = id === state.selId;
    tr.classList.toggle('sel', on);
    tr.setAttribute('aria-selected', on);
    if (on && focus) { tr.focus({ preventScroll: true }); tr.scrollIntoView({ block: 'nearest' }); }
  }
}

// moveSel selects the call d rows below the selected one (the first row
// when none is). With a call open, the detail follows the selection.
function moveSel(d) {
  if (!trafficEl || !state.page || !state.page.calls.length) return;
  const calls = state.page.calls;
  const i = calls.findIndex(c => c.id === state.selId);
  const j = i < 0 ? (d > 0 ? 0 : calls.length - 1) : Math.max(0, Math.min(calls.length - 1, i + d));
  state.selId = calls[j].id;
  markSel(true);
  if (state.open != null && state.open !== state.selId) {
    state.open = state.selId;
    history.replaceState(null, '', callHash(state.open));
    clearTimeout(followTimer);
    followTimer = setTimeout(showDetail, 120);
  }
}
let followTimer = null;

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
// showDetail shows the open call in the detail pane, or closes the pane.
function showDetail() {
  const pane = document.getElementById('detail-pane');
  if (!trafficEl || !pane) return;
  trafficEl.classList.toggle('split', state.open != null);
  if (state.open == null) { detailSeq++; pane.replaceChildren(); return; }
  renderCall(state.open, pane);
}

// Which of the detail's folded sections the user keeps open, by name.
const openSections = new Set(JSON.parse(localStorage.getItem('grpctap-open-sections') || '[]'));
function section(name, title, body) {
  const d = h('details', { class: 'section', 'data-section': name, open: openSections.has(name) }, h('summary', {}, title), body);
  d.addEventListener('toggle', () => {
    if (d.open) openSections.add(name); else openSections.delete(name);
    localStorage.setItem('grpctap-open-sections', JSON.stringify([...openSections]));
  });
  return d;
}

let detailSeq = 0;
async function renderCall(id, pane) {
  const seq = ++detailSeq;
  pane.replaceChildren(h('div', { class: 'empty' }, 'Loading call ' + id + '…'));
  let c;
  try { c = await api('GET', '/api/calls/' + id); } catch (e) {
    if (seq === detailSeq) pane.replaceChildren(h('div', { class: 'empty' }, e.message, h('p', {}, h('a', { href: trafficHash() }, 'Close'))));
    return;
  }
  if (seq !== detailSeq || !document.body.contains(pane)) return;
  const replayOut = h('div', {});
  const st = c.status;
  const head = h('div', { class: 'detail-head' },
    h('a', { href: '#/traffic', class: 'close', title: 'Close (Esc)', 'aria-label': 'Close', onclick: e => { e.preventDefault(); location.hash = trafficHash(); } }, '✕'),
    h('h2', { title: c.method }, h('span', { class: 'svc' }, c.service + ' / '), c.method.slice(c.method.lastIndexOf('/') + 1)),
    c.state === 'open' ? h('span', { class: 'badge live' }, 'live') : h('span', { class: 'badge ' + statusClass(st.code) }, `${st.name} (${st.code})`),
    h('div', { class: 'actions' },
      h('button', { class: 'small', onclick: async () => { try { copy((await api('GET', `/api/calls/${c.id}/grpcurl`)).command, 'grpcurl command copied'); } catch (e) { toast(e.message); } } }, 'Copy as grpcurl'),
      replayButton(c, replayOut),
      saveToCollectionButton(c, state.info),
      h('button', { class: 'small', onclick: () => { location.hash = `#/composer?from=${c.id}`; } }, 'Open in composer')));
  const t0 = Date.parse(c.start);
  // One line of what a glance needs; the rest is in the "Call" section.
  const meta = h('div', { class: 'meta-line' },
    h('span', { title: new Date(c.start).toLocaleString() }, '#' + c.id + ' · ' + fmtTime(c.start)),
    h('span', {}, c.duration_ms == null ? 'still open' : fmtMS(c.duration_ms)),
    h('span', {}, c.rpc.replace(/_/g, ' ')), c.protocol !== 'grpc' ? h('span', {}, c.protocol) : null,
    h('span', { title: 'requests' }, `${c.request_count}↑ ${fmtBytes(c.request_bytes)}`),
    h('span', { title: 'responses' }, `${c.response_count}↓ ${fmtBytes(c.response_bytes)}`),
    h('span', { class: 'mono', title: 'backend' }, c.backend));
  const item = (k, v, cls) => h('div', {}, h('div', { class: 'k' }, k), h('div', { class: 'v ' + (cls || '') }, v ?? h('span', { class: 'none' }, '—')));
  const callInfo = h('div', { class: 'grid' },
    item('Started', new Date(c.start).toLocaleString() + '.' + String(new Date(c.start).getMilliseconds()).padStart(3, '0')),
    item('Duration', c.duration_ms == null ? 'still open' : fmtMS(c.duration_ms)),
    item('Kind', c.rpc), item('Protocol', c.protocol),
    item('Peer', c.peer, 'mono'), item('Backend', c.backend, 'mono'), item('Authority', c.authority, 'mono'),
    item('Recorded by', c.proxy, 'mono'),
    item('Content type', c.content_type, 'mono'), item('Compression', c.compression || 'none'),
    item('Requests', `${c.request_count} · ${fmtBytes(c.request_bytes)}`), item('Responses', `${c.response_count} · ${fmtBytes(c.response_bytes)}`),
    c.dropped_events ? item('Dropped events', String(c.dropped_events)) : null);
  const status = st && st.code !== 0 ? h('div', { class: 'card card-status' }, h('p', {}, h('b', {}, 'Status: '), `${st.name} (${st.code})`, st.message ? ' — ' + st.message : ''),
    st.details && st.details.length ? h('div', {}, h('b', {}, `Details (${st.details.length})`),
      ...st.details.map((d, i) => {
        const dv = (c.status_details_decoded || [])[i];
        return h('details', { class: 'msg', open: true }, h('summary', {}, h('span', { class: 'mono' }, dv && dv.type ? dv.type : 'detail ' + (i + 1)),
          dv && dv.error ? h('span', { class: 'badge warn' }, dv.error) : null),
          h('div', { class: 'body' }, dv && dv.json ? jsonTree(dv.json) : h('pre', { class: 'raw mono' }, hexDump(b64ToBytes(d)))));
      })) : null) : null;
  const mdTable = md => Object.keys(md || {}).length ? h('table', { class: 'kv' }, ...Object.entries(md).sort().map(([k, vs]) => h('tr', {}, h('th', {}, k), h('td', {}, vs.join(', ')))))
    : h('div', { class: 'none' }, 'none');
  const count = md => Object.keys(md || {}).length;
  const total = Math.max(1, c.duration_ms ?? (Date.now() - t0));
  const timeline = c.messages.length === 0 ? h('div', { class: 'none' }, 'no messages') :
    h('div', { class: 'timeline' }, ...c.messages.map(m => {
      const off = Date.parse(m.time) - t0;
      const dot = h('span', { class: m.direction });
      dot.style.left = `calc(${Math.min(100, Math.max(0, off / total * 100))}% - 4px)`;
      return h('div', { class: 'tl-row' }, h('span', { class: 'dir ' + m.direction, title: m.direction }, m.direction === 'request' ? '→' : '←'),
        h('span', { class: 'mono' }, '+' + fmtMS(off)), h('span', { class: 'mono' }, fmtBytes(m.size)), h('div', { class: 'tl-bar' }, dot));
    }));
  const views = c.messages.map((m, i) => messageView(c.id, m, t0, i < 6));
  // A unary call's request and response sit next to each other.
  const reqs = c.messages.filter(m => m.direction === 'request');
  const pair = c.rpc === 'unary' && c.messages.length > 0 && reqs.length <= 1 && c.messages.length - reqs.length <= 1;
  const side = dir => views.find((v, i) => c.messages[i].direction === dir) || h('div', { class: 'none msg-none' }, 'no ' + dir);
  const msgs = h('div', { class: 'messages' }, h('h3', { class: 'section-title' }, `Messages (${c.messages.length})`),
    c.messages.length === 0 ? h('div', { class: 'none' }, 'no messages') :
      pair ? h('div', { class: 'pair' }, side('request'), side('response')) : views);
  pane.replaceChildren(h('div', { class: 'detail', 'data-id': c.id }, head, meta, replayOut, status, msgs,
    section('call', 'Call', callInfo),
    section('request-headers', `Request headers (${count(c.request_headers)})`, mdTable(c.request_headers)),
    section('response-headers', `Response headers (${count(c.response_headers)})`, mdTable(c.response_headers)),
    section('trailers', `Trailers (${count(c.trailers)})`, mdTable(c.trailers)),
    section('timeline', `Timeline (${c.messages.length})`, timeline)));
  pane.scrollTop = 0;
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
  const btn = h('button', { class: 'small', onclick: () => doReplay(c, out), title: 'Send the recorded requests again and compare' }, 'Replay');
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
    const diffs = res.diffs || [];
    out.replaceChildren(h('div', { class: 'card', id: 'replay' },
      h('h3', {}, 'Replay', h('span', { class: 'badge ' + cls }, res.verdict)),
      h('p', {}, `Sent to ${res.target} in ${fmtMS(res.duration_ms)}: recorded ${res.recorded_status || '—'}, got ${res.status || '—'}`,
        res.compared_by ? ` (compared by ${res.compared_by})` : '', res.error ? h('div', { class: 'decode-error' }, res.error) : null),
      ...(res.notes || []).map(n => h('div', { class: 'hint' }, n)),
      res.answers && !res.error ? replaySides(res.answers, diffs) : null,
      diffs.length ? h('details', { class: 'section', open: !res.answers },
        h('summary', {}, `Differences (${diffs.length})`),
        h('table', { class: 'kv diff' }, h('tr', {}, h('th', {}, 'where'), h('th', {}, 'path'), h('th', {}, 'recorded'), h('th', {}, 'got')),
          ...diffs.map(d => h('tr', {}, h('td', { class: 'mono' }, d.where), h('td', { class: 'mono' }, d.path || ''), cell(d.recorded), cell(d.got)))))
        : h('div', { class: 'hint' }, 'No differences.')));
  } catch (e) {
    out.replaceChildren(h('div', { class: 'card' }, h('h3', {}, 'Replay'), h('div', { class: 'decode-error' }, e.message)));
  }
}

// replaySides shows the recorded answer and the replayed one side by side,
// a row per part (status, each response, headers, trailers) so that the
// parts line up, with what the diff found changed highlighted on both.
function replaySides(answers, diffs) {
  const sides = [answers.recorded, answers.replayed];
  const changed = where => diffs.filter(d => d.where === where);
  const mark = (el, on) => { if (on) el.classList.add('chg'); return el; };
  const cells = [h('div', { class: 'rs-head' }, 'Recorded'), h('div', { class: 'rs-head' }, 'Replayed')];
  const statusDiff = changed('status.code').length + changed('status.message').length > 0;
  for (const a of sides) {
    const s = a.status;
    cells.push(mark(h('div', { class: 'rs-status' }, s ? h('span', { class: 'badge ' + statusClass(s.code) }, `${s.name} (${s.code})`) : h('span', { class: 'none' }, 'never ended'),
      s && s.message ? ' ' + s.message : ''), statusDiff));
  }
  const n = Math.max(...sides.map(a => a.responses.length));
  const countDiff = changed('responses').length > 0;
  for (let i = 0; i < n; i++) {
    const paths = changed(`response[${i}]`).map(d => d.path || '');
    sides.forEach((a, j) => {
      const has = i < a.responses.length;
      cells.push(mark(h('div', { class: 'rs-msg', 'data-response': i, 'data-side': j ? 'replayed' : 'recorded' },
        h('div', { class: 'rs-label' }, `← response #${i}`),
        has ? jsonTree(a.responses[i], { marks: paths }) : h('div', { class: 'none' }, 'no such response')), !has && countDiff));
    });
  }
  for (const [where, key, title] of [['header', 'headers', 'Response headers'], ['trailer', 'trailers', 'Trailers']]) {
    const names = new Set(changed(where).map(d => d.path));
    if (!sides.some(a => Object.keys(a[key] || {}).length)) continue;
    for (const a of sides) {
      const md = a[key] || {};
      cells.push(h('details', { class: 'rs-md', open: names.size > 0 }, h('summary', {}, `${title} (${Object.keys(md).length})`),
        h('table', { class: 'kv' }, ...Object.entries(md).sort().map(([k, vs]) => mark(h('tr', {}, h('th', {}, k), h('td', {}, vs.join(', '))), names.has(k))))));
    }
  }
  return h('div', { class: 'replay-sides', id: 'replay-sides' }, ...cells);
}

// ---- keyboard ----
let gPending = false;
addEventListener('keydown', e => {
  const t = e.target;
  const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
  if (e.key === 'Escape') {
    if (typing) { t.blur(); return; }
    if (help.open) return;
    if (trafficEl && state.open != null) { location.hash = trafficHash(); markSel(true); }
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
    case 'j': case 'k': case 'ArrowDown': case 'ArrowUp':
      if (!trafficEl) break;
      // The arrows move the selection unless focus is in the detail,
      // where they scroll it.
      if (e.key.startsWith('Arrow') && t.closest && t.closest('#detail-pane')) break;
      e.preventDefault();
      moveSel(e.key === 'j' || e.key === 'ArrowDown' ? 1 : -1);
      break;
    case 'Enter':
      if (trafficEl && state.selId != null && !(t.closest && t.closest('button, a, summary, #detail-pane'))) {
        e.preventDefault();
        location.hash = callHash(state.selId);
      }
      break;
    case '[': if (trafficEl) newer(); break;
    case ']': if (trafficEl) older(); break;
  }
});

function debounce(fn, ms) { let t; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; }

// ---- start ----
(async () => {
  try { state.info = await api('GET', '/api/info'); } catch (e) { toast(e.message); }
  if (state.info && state.info.read_only) document.getElementById('live').before(h('span', { class: 'badge ro', id: 'read-only', title: readOnlyNote }, 'read-only'));
  connectEvents();
  route();
})();
