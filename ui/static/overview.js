// The overview: the traffic of a window (the last 5 min … all calls), per
// method and over time, from /api/stats, redrawn every few seconds while it
// is shown and soon after the live feed reports calls. Its state is in the
// URL: #/overview?since=15m&method=GLOB&protocol=P&sort=p99&order=desc.
import { h, fmtBytes, fmtMS, toast, api } from './lib.js';

// windows: the URL value, the button's label, the words of the summary,
// and how many buckets the charts have (a round bucket width).
const windows = [
  ['5m', '5 min', 'Last 5 min', 60],
  ['15m', '15 min', 'Last 15 min', 60],
  ['1h', '1 hour', 'Last hour', 60],
  ['24h', '24 hours', 'Last 24 hours', 96],
  ['all', 'All', 'All calls', 60],
];
const protocols = [['', 'Any protocol'], ['grpc', 'gRPC'], ['grpc-web', 'gRPC-Web'], ['grpc-web-text', 'gRPC-Web text']];

const count = n => n.toLocaleString('en-US');
const rate = r => r === 0 ? '0 %' : r < 0.001 ? '< 0.1 %' : (r * 100).toFixed(1) + ' %';
// latency shows a percentile; 0 means the method had no finished call.
const latency = ms => ms > 0 ? fmtMS(ms) : '—';

// columns of the per-method table: the sort key (in the URL), the header,
// the value sorted by, and how a cell shows it.
const columns = [
  ['method', 'Method', m => m.method],
  ['calls', 'Calls', m => m.calls, count],
  ['errors', 'Errors', m => m.errors, count],
  ['error_rate', 'Error rate', m => m.error_rate, rate],
  ['p50', 'p50', m => m.p50_ms, latency],
  ['p95', 'p95', m => m.p95_ms, latency],
  ['p99', 'p99', m => m.p99_ms, latency],
  ['request_bytes', 'Request bytes', m => m.request_bytes, fmtBytes],
  ['response_bytes', 'Response bytes', m => m.response_bytes, fmtBytes],
  ['open', 'Open', m => m.open, count],
];

const ov = {
  since: '', method: '', protocol: '', sort: 'calls', order: 'desc',
  stats: null,  // the last /api/stats answer drawn
  shownFor: '', // the query it answered
};
let root = null;   // the view's element while it is on screen
let timer = null;  // the refresh every few seconds
const refreshEvery = 3000;

const mounted = () => root !== null && document.body.contains(root);
const windowOf = since => windows.find(w => w[0] === since) || windows[1];

// hash is the URL of the overview as it is set now.
function hash() {
  const p = new URLSearchParams({ since: ov.since });
  if (ov.method) p.set('method', ov.method);
  if (ov.protocol) p.set('protocol', ov.protocol);
  if (ov.sort !== 'calls' || ov.order !== 'desc') { p.set('sort', ov.sort); p.set('order', ov.order); }
  return '#/overview?' + p;
}

// statsURL is the API request for the current window and filters.
function statsURL() {
  const p = new URLSearchParams();
  if (ov.since !== 'all') p.set('since', ov.since);
  if (ov.method) p.set('method', ov.method);
  if (ov.protocol) p.set('protocol', ov.protocol);
  p.set('buckets', windowOf(ov.since)[3]);
  return '/api/stats?' + p;
}

// change applies a change of window, filter or sort: the URL follows
// (replaced, so Back leaves the overview) and the page redraws.
function change(fields) {
  Object.assign(ov, fields);
  history.replaceState(null, '', hash());
  syncControls();
  if (ov.stats && ov.shownFor === statsURL()) draw(); else load();
}

export function renderOverview(view, params, info) {
  // #/overview alone (the navigation's link) comes back to the last window
  // and filters, or to the defaults: 15 min on a live proxy, else all.
  if ([...params].length > 0 || !ov.since) {
    const col = columns.find(c => c[0] === params.get('sort'));
    Object.assign(ov, {
      since: windowOf(params.get('since') || (info && !info.live ? 'all' : '15m'))[0],
      method: params.get('method') || '',
      protocol: protocols.some(p => p[0] === params.get('protocol')) ? params.get('protocol') || '' : '',
      sort: col ? col[0] : 'calls',
      order: params.get('order') === 'asc' || params.get('order') === 'desc' ? params.get('order') : (col && col[0] === 'method' ? 'asc' : 'desc'),
    });
  }
  history.replaceState(null, '', hash());

  let typing;
  root = h('div', { class: 'overview' },
    h('div', { class: 'filters' },
      h('div', { class: 'windows', role: 'group', 'aria-label': 'Window' },
        ...windows.map(([v, label]) => h('button', { class: 'small', 'data-since': v, 'aria-pressed': 'false', onclick: () => change({ since: v }) }, label))),
      h('input', { class: 'method', id: 'ov-method', placeholder: 'Method glob: *Echo', 'aria-label': 'Method glob', value: ov.method,
        oninput: e => { clearTimeout(typing); typing = setTimeout(() => change({ method: e.target.value.trim() }), 250); } }),
      h('select', { id: 'ov-protocol', 'aria-label': 'Protocol', onchange: e => change({ protocol: e.target.value }) },
        ...protocols.map(([v, t]) => h('option', { value: v, selected: ov.protocol === v }, t))),
      h('span', { class: 'spacer' }),
      h('span', { class: 'ov-window', id: 'ov-window' })),
    h('div', { class: 'ov-totals', id: 'ov-totals' }),
    h('div', { class: 'ov-charts', id: 'ov-charts' },
      h('div', { class: 'card chart' }, h('h3', {}, 'Calls / s'), h('div', { class: 'plot', id: 'ov-plot-calls' })),
      h('div', { class: 'card chart' }, h('h3', {}, 'Errors / s'), h('div', { class: 'plot', id: 'ov-plot-errors' })),
      h('div', { class: 'card chart' }, h('h3', {}, 'Latency', h('span', { class: 'legend' }, ...['p50', 'p95', 'p99'].map(p => h('span', { class: p }, p)))),
        h('div', { class: 'plot', id: 'ov-plot-latency' }))),
    h('table', { class: 'calls ov-methods', id: 'ov-methods' },
      h('thead', {}, h('tr', {}, ...columns.map(([key, label]) =>
        h('th', { class: key === 'method' ? 'c-method' : 'num' },
          h('button', { class: 'sort', 'data-sort': key, title: 'Sort by ' + (key.startsWith('p') ? label : label.toLowerCase()), onclick: () => sortBy(key) },
            label, h('span', { class: 'arrow', 'aria-hidden': 'true' })))))),
      h('tbody', { id: 'ov-rows' })));
  view.replaceChildren(root);
  syncControls();
  ov.stats = null;
  load();
  clearInterval(timer);
  timer = setInterval(() => {
    if (!mounted()) { clearInterval(timer); timer = null; return; }
    if (document.visibilityState === 'visible') load();
  }, refreshEvery);
}

function sortBy(key) {
  if (ov.sort === key) change({ order: ov.order === 'asc' ? 'desc' : 'asc' });
  else change({ sort: key, order: key === 'method' ? 'asc' : 'desc' });
}

// syncControls shows the window, filters and sort of ov in the controls.
function syncControls() {
  if (!mounted()) return;
  for (const b of root.querySelectorAll('[data-since]')) b.setAttribute('aria-pressed', String(b.dataset.since === ov.since));
  const m = document.getElementById('ov-method');
  if (document.activeElement !== m) m.value = ov.method;
  document.getElementById('ov-protocol').value = ov.protocol;
  for (const b of root.querySelectorAll('button[data-sort]')) {
    const on = b.dataset.sort === ov.sort;
    b.parentElement.setAttribute('aria-sort', on ? (ov.order === 'asc' ? 'ascending' : 'descending') : 'none');
    b.querySelector('.arrow').textContent = on ? (ov.order === 'asc' ? ' ▲' : ' ▼') : '';
  }
}

// load fetches the stats and draws them; a load asked for while one is
// under way runs after it, and an answer to a query no longer shown is
// dropped.
let loading = false, again = false;
async function load() {
  if (loading) { again = true; return; }
  loading = true;
  const url = statsURL();
  try {
    const st = await api('GET', url);
    if (mounted() && url === statsURL()) {
      ov.stats = st;
      ov.shownFor = url;
      draw();
    } else again = mounted();
  } catch (e) {
    if (mounted()) toast(e.message);
  } finally {
    loading = false;
    if (again) { again = false; load(); }
  }
}

// The live feed: calls started or ended bring a redraw within a second.
let soon = null;
document.addEventListener('grpctap-batch', ev => {
  const b = ev.detail;
  if (!mounted() || soon || document.visibilityState !== 'visible') return;
  if (!(b.lagged || b.refresh || b.overflow > 0 || b.calls.some(u => u.started || u.ended))) return;
  soon = setTimeout(() => { soon = null; if (mounted()) load(); }, 1000);
});
document.addEventListener('visibilitychange', () => { if (mounted() && document.visibilityState === 'visible') load(); });
// The charts are drawn to their width, so that their text keeps its size.
let resized = 0;
addEventListener('resize', () => {
  cancelAnimationFrame(resized);
  resized = requestAnimationFrame(() => { if (mounted() && ov.stats) drawCharts(ov.stats, windowOf(ov.since)); });
});

function draw() {
  const st = ov.stats;
  const w = windowOf(ov.since);
  const from = new Date(st.from), to = new Date(st.to);
  const span = to - from;
  document.getElementById('ov-window').textContent =
    `${w[2]}: ${clock(from, span)} – ${clock(to, span)} · ${st.series.length} buckets of ${duration(st.bucket_ms)}`;
  const closed = st.calls - st.open;
  const tile = (label, value, cls) => h('div', { class: 'tile' + (cls ? ' ' + cls : '') }, h('div', { class: 'k' }, label), h('div', { class: 'v' }, value));
  document.getElementById('ov-totals').replaceChildren(
    tile('Calls', count(st.calls)),
    tile('Errors', count(st.errors), st.errors ? 'err' : ''),
    tile('Error rate', closed > 0 ? rate(st.errors / closed) : '—', st.errors ? 'err' : ''),
    tile('Open', count(st.open)),
    tile('Methods', count(st.methods.length)));
  drawCharts(st, w);
  drawRows(st);
}

function drawRows(st) {
  const tbody = document.getElementById('ov-rows');
  if (st.methods.length === 0) {
    const filtered = ov.method || ov.protocol;
    tbody.replaceChildren(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' },
      filtered ? 'No calls match these filters in this window.' : `No calls in this window (${windowOf(ov.since)[2].toLowerCase()}).`,
      ov.since !== 'all' ? h('span', {}, ' ', h('button', { class: 'small', onclick: () => change({ since: 'all' }) }, 'Show all calls')) : null)));
    return;
  }
  const col = columns.find(c => c[0] === ov.sort);
  const dir = ov.order === 'asc' ? 1 : -1;
  const rows = [...st.methods].sort((a, b) => {
    const x = col[2](a), y = col[2](b);
    if (x !== y) return (typeof x === 'string' ? x.localeCompare(y) : x - y) * dir;
    return a.method.localeCompare(b.method);
  });
  tbody.replaceChildren(...rows.map(m => {
    const p = new URLSearchParams({ method: m.method });
    if (ov.protocol) p.set('protocol', ov.protocol);
    if (ov.since !== 'all') p.set('since', ov.since);
    const traffic = '#/traffic?' + p;
    const slash = m.method.lastIndexOf('/');
    return h('tr', { 'data-method': m.method, onclick: e => { if (!e.target.closest('a')) location.hash = traffic; } },
      ...columns.map(([key, , value, fmt]) => {
        if (key === 'method') {
          return h('td', { title: m.method }, h('a', { href: traffic, title: 'Show these calls in Traffic' },
            h('span', { class: 'svc' }, m.method.slice(1, slash).split('.').pop() + ' / '), h('span', { class: 'meth' }, m.method.slice(slash + 1))));
        }
        const v = value(m);
        const bad = (key === 'errors' || key === 'error_rate') && v > 0;
        return h('td', { class: 'num' + (bad ? ' bad' : ''), 'data-col': key }, fmt(v));
      }));
  }));
}

// ---- charts: inline SVG ----

const svgNS = 'http://www.w3.org/2000/svg';
// s builds an SVG element; children are nodes or text.
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// The drawing's size in pixels: W is the plot's width when drawn.
let W = 420, pw = 0;
const H = 150, left = 52, right = 8, top = 10, bottom = 22, ph = H - top - bottom;

const perSec = (n, bucketMS) => n / (bucketMS / 1000);
const fmtRate = v => v === 0 ? '0' : String(+v.toPrecision(3)) + '/s';

function drawCharts(st, w) {
  const sec = st.bucket_ms;
  const span = new Date(st.to) - new Date(st.from);
  const when = b => { const t = new Date(b.start); return `${clock(t, span)} – ${clock(new Date(+t + sec), span)}`; };
  const ctx = `${w[2].toLowerCase()}, ${st.series.length} buckets of ${duration(sec)}`;
  W = Math.max(200, document.getElementById('ov-plot-calls').clientWidth);
  pw = W - left - right;
  const calls = barChart('calls', `Calls per second, ${ctx}`, st, b => perSec(b.calls, sec),
    b => `${when(b)}: ${count(b.calls)} ${b.calls === 1 ? 'call' : 'calls'} (${fmtRate(perSec(b.calls, sec))})`);
  const errors = barChart('errors', `Errors per second, ${ctx}`, st, b => perSec(b.errors, sec),
    b => `${when(b)}: ${count(b.errors)} ${b.errors === 1 ? 'error' : 'errors'} (${fmtRate(perSec(b.errors, sec))})`);
  const lat = latencyChart(`Latency p50, p95 and p99 of finished calls, ${ctx}`, st,
    b => b.p99_ms > 0 ? `${when(b)}: p50 ${fmtMS(b.p50_ms)} · p95 ${fmtMS(b.p95_ms)} · p99 ${fmtMS(b.p99_ms)}` : `${when(b)}: no finished calls`);
  document.getElementById('ov-plot-calls').replaceChildren(calls);
  document.getElementById('ov-plot-errors').replaceChildren(errors);
  document.getElementById('ov-plot-latency').replaceChildren(lat);
}

// frame is an empty chart: its title, the y axis up to max with labels by
// fmt, and the times of its ends below. It returns the svg and the y of a
// value.
let chartIDs = 0;
function frame(title, st, max, fmt) {
  const id = 'chart-title-' + (++chartIDs);
  const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': id }, s('title', { id }, title));
  const y = v => top + ph - (v / max) * ph;
  for (const v of [0, max / 2, max]) {
    svg.append(s('line', { class: 'grid', x1: left, x2: W - right, y1: y(v), y2: y(v) }),
      s('text', { class: 'axis', x: left - 5, y: y(v) + 3.5, 'text-anchor': 'end' }, fmt(v)));
  }
  const span = new Date(st.to) - new Date(st.from);
  svg.append(s('text', { class: 'axis', x: left, y: H - 6, 'text-anchor': 'start' }, clock(new Date(st.from), span)),
    s('text', { class: 'axis', x: W - right, y: H - 6, 'text-anchor': 'end' }, clock(new Date(st.to), span)));
  return { svg, y };
}

// bucketGroup is one bucket's column: a hover area with the bucket's
// numbers as its tooltip, holding what the chart draws for it.
function bucketGroup(i, n, tip) {
  const bw = pw / n;
  return s('g', { class: 'bucket', 'data-i': i }, s('title', {}, tip),
    s('rect', { class: 'hit', x: left + i * bw, y: top, width: bw, height: ph }));
}

function barChart(kind, title, st, value, tip) {
  const vals = st.series.map(value);
  const { svg, y } = frame(title, st, niceMax(Math.max(0, ...vals)), fmtRate);
  const n = st.series.length, bw = pw / n, gap = bw > 4 ? bw * 0.15 : 0;
  st.series.forEach((b, i) => {
    const g = bucketGroup(i, n, tip(b));
    g.append(s('rect', { class: 'bar ' + kind, x: left + i * bw + gap / 2, y: y(vals[i]), width: bw - gap, height: top + ph - y(vals[i]) }));
    svg.append(g);
  });
  svg.classList.add('bars', kind);
  return svg;
}

function latencyChart(title, st, tip) {
  const has = b => b.p99_ms > 0;
  const { svg, y } = frame(title, st, niceMax(Math.max(0, ...st.series.filter(has).map(b => b.p99_ms))), axisMS);
  const n = st.series.length, bw = pw / n;
  const x = i => left + (i + 0.5) * bw;
  st.series.forEach((b, i) => svg.append(bucketGroup(i, n, tip(b))));
  // p99 first, so that the lower percentiles are on top where they meet.
  for (const [p, key] of [['p99', 'p99_ms'], ['p95', 'p95_ms'], ['p50', 'p50_ms']]) {
    // A line through the buckets that have finished calls, broken where
    // one has none, and a dot on each.
    let d = '', joined = false;
    const dots = [];
    st.series.forEach((b, i) => {
      if (!has(b)) { joined = false; return; }
      d += `${joined ? 'L' : 'M'}${x(i).toFixed(1)},${y(b[key]).toFixed(1)}`;
      joined = true;
      dots.push(s('circle', { class: 'pt ' + p, cx: x(i), cy: y(b[key]), r: 2 }));
    });
    svg.append(s('path', { class: 'line ' + p, d: d || 'M0,0' }), ...dots);
  }
  svg.classList.add('lines');
  return svg;
}

// axisMS labels the latency axis: 0, 500 µs, 2.5 ms, 20 ms, 1.5 s.
function axisMS(v) {
  if (v === 0) return '0';
  if (v < 1) return +(v * 1000).toPrecision(3) + ' µs';
  if (v < 1000) return +v.toPrecision(3) + ' ms';
  return +(v / 1000).toPrecision(3) + ' s';
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map(m => m * p).find(m => m >= v * (1 - 1e-9));
}

// duration says a bucket's width for people: 5 s, 15 min, 2.5 h.
function duration(ms) {
  const r = v => String(+v.toFixed(1));
  if (ms < 1000) return r(ms) + ' ms';
  if (ms < 60e3) return r(ms / 1000) + ' s';
  if (ms < 3600e3) return r(ms / 60e3) + ' min';
  if (ms < 86400e3) return r(ms / 3600e3) + ' h';
  return r(ms / 86400e3) + ' d';
}

// clock shows a time, with seconds for spans up to an hour and the date
// for spans of a day or more.
function clock(d, span) {
  const time = d.toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit', second: span <= 3600e3 ? '2-digit' : undefined });
  return span >= 86400e3 ? d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time : time;
}
