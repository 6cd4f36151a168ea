// Tests from captures: save a captured call into a collection (its answer
// the expected one), and run a collection as tests, each answer compared
// with its example as `grpctap test` compares it.
import { h, jsonTree, fmtMS, toast, api, readOnlyNote, blocked } from './lib.js';

// saveToCollectionButton is the call detail's "Save to collection".
export function saveToCollectionButton(c, info) {
  const btn = h('button', { id: 'save-to-collection', class: 'small', onclick: () => saveCallDialog(c), title: 'Keep this request, with its answer as the expected one, in a collection to run as a test' }, 'Save to collection');
  if (info && info.read_only) return blocked(btn, readOnlyNote);
  if (c.state !== 'closed') return blocked(btn, 'the call is still open');
  return btn;
}

async function saveCallDialog(c) {
  let cols = [];
  try { cols = (await api('GET', '/api/collections')).collections; } catch (e) { toast(e.message); return; }
  const dlg = h('dialog', { id: 'save-call-dialog' });
  const colSel = h('select', { id: 'stc-collection', 'aria-label': 'Collection' }, ...cols.map(x => h('option', { value: x.name }, x.name)), h('option', { value: '' }, 'New collection…'));
  const newName = h('input', { id: 'stc-new', placeholder: 'Collection name', value: cols.length ? '' : 'Tests from traffic' });
  const method = c.method.split('/').pop();
  const reqName = h('input', { id: 'stc-name', value: `${method} #${c.id}` });
  const ignore = h('input', { id: 'stc-ignore', placeholder: 'receivedAt, items[*].id', class: 'mono', value: timestampPaths(c).join(', ') });
  const sync = () => { newName.hidden = colSel.value !== ''; };
  colSel.onchange = sync;
  if (!cols.length) colSel.value = '';
  sync();
  const checks = assertionEditor(c);
  const save = async e => {
    e.preventDefault();
    const collection = colSel.value || newName.value.trim();
    if (!collection) { toast('Name the collection'); return; }
    let assertions;
    try { assertions = checks.value(); } catch (err) { toast(err.message); return; }
    try {
      const col = await api('POST', `/api/calls/${c.id}/save`, { collection, name: reqName.value.trim(),
        ignore_fields: list(ignore.value), assertions });
      dlg.close();
      toast(`Saved to "${col.name}" (${col.requests.length} requests): run it from the composer's collections`);
    } catch (err) { toast(err.message); }
  };
  dlg.append(h('form', { onsubmit: save },
    h('h2', {}, 'Save to collection'),
    h('p', { class: 'hint' }, 'The request, its metadata (less redacted values) and this answer as the expected one.'),
    h('label', { for: 'stc-collection' }, 'Collection'), colSel, newName,
    h('label', { for: 'stc-name' }, 'Request name'), reqName,
    h('label', { for: 'stc-ignore' }, 'Fields a test run ignores (they change on every call; times found in the answer are filled in)'), ignore,
    h('label', {}, 'Assertions, checked on every run besides the comparison'), checks.el,
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'), h('button', { class: 'primary', type: 'submit', id: 'stc-ok' }, 'Save'))));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}

const list = s => s.split(',').map(x => x.trim()).filter(Boolean);

// assertionEditor edits the assertions saved with a request: the status
// code, and checks of fields of the first answer (equals a JSON value,
// matches a regular expression, is present, is absent).
function assertionEditor(c) {
  const st = c.status ? c.status.name : 'OK';
  const statusBox = h('input', { type: 'checkbox', id: 'stc-assert-status' });
  const rows = h('div', { class: 'assert-rows' });
  const addRow = () => {
    const value = h('input', { class: 'mono assert-value', placeholder: '"expected" (JSON)' });
    const op = h('select', { class: 'assert-op', onchange: () => {
      value.hidden = op.value === 'exists' || op.value === 'absent';
      value.placeholder = op.value === 'matches' ? '^regular expression$' : '"expected" (JSON)';
    } }, ...['equals', 'matches', 'exists', 'absent'].map(o => h('option', { value: o }, o === 'absent' ? 'is absent' : o === 'exists' ? 'exists' : o)));
    const row = h('div', { class: 'assert-row' }, h('input', { class: 'mono assert-path', placeholder: 'field path: author.name' }), op, value,
      h('button', { type: 'button', class: 'small ghost', title: 'Remove', onclick: () => row.remove() }, '✕'));
    rows.append(row);
  };
  const el = h('div', { class: 'assertions' },
    h('label', {}, statusBox, ` status is ${st}`), rows,
    h('button', { type: 'button', class: 'small', id: 'stc-add-assert', onclick: addRow }, '+ field check'));
  const value = () => {
    const out = statusBox.checked ? [{ status: st }] : [];
    for (const r of rows.querySelectorAll('.assert-row')) {
      const path = r.querySelector('.assert-path').value.trim();
      if (!path) continue;
      const op = r.querySelector('.assert-op').value;
      const v = r.querySelector('.assert-value').value.trim();
      if (op === 'equals') {
        try { out.push({ path, equals: JSON.parse(v) }); } catch { throw new Error(`${path}: the expected value is JSON ("text", 3, true, …)`); }
      } else if (op === 'matches') out.push({ path, matches: v });
      else out.push({ path, exists: op === 'exists' });
    }
    return out;
  };
  return { el, value };
}

// timestampPaths lists the fields of a call's answers that hold a time
// (protobuf's JSON of a Timestamp): they differ on every call, so a test
// should ignore them. Lists count as [*].
function timestampPaths(c) {
  const out = new Set();
  const isTime = v => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v);
  const walk = (v, path) => {
    if (isTime(v)) { if (path) out.add(path); return; }
    if (Array.isArray(v)) { v.forEach(x => walk(x, path + '[*]')); return; }
    if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
  };
  for (const m of c.messages || []) if (m.direction === 'response' && m.json != null) walk(m.json, '');
  return [...out];
}

// renderRun shows a collection's test run in el: what to run against, then
// each request's verdict with its differences.
export function renderRun(el, col) {
  const target = h('input', { id: 'run-target', placeholder: 'each request\'s own target', class: 'mono' });
  const ignoreF = h('input', { id: 'run-ignore-fields', placeholder: 'receivedAt, items[*].id', class: 'mono' });
  const ignoreH = h('input', { id: 'run-ignore-headers', placeholder: 'x-request-time', class: 'mono' });
  const out = h('div', { id: 'run-results' });
  const go = h('button', { class: 'primary', id: 'run-go', onclick: () => run() }, 'Run');
  el.replaceChildren(
    h('div', { class: 'row' }, h('h2', { id: 'run-title' }, `Run “${col.name}”`), h('span', { class: 'kind' }, `${col.requests.length} requests`)),
    h('div', { class: 'card run-form' },
      h('p', { class: 'hint' }, 'Sends every request in order and compares each answer with its saved example field by field (as grpctap replay does), then checks its assertions. The same as: ', h('code', {}, `grpctap test "${col.name}"`)),
      h('label', { for: 'run-target' }, 'Target'), target,
      h('label', { for: 'run-ignore-fields' }, 'Ignore fields'), ignoreF,
      h('label', { for: 'run-ignore-headers' }, 'Ignore headers'), ignoreH,
      h('div', { class: 'row' }, go)),
    out);
  async function run() {
    go.disabled = true;
    out.replaceChildren(h('div', { class: 'card' }, h('span', { class: 'badge live' }, 'running')));
    try {
      const ans = await api('POST', `/api/collections/${col.id}/run`, { target: target.value.trim(), ignore_fields: list(ignoreF.value), ignore_headers: list(ignoreH.value) });
      const s = ans.summary;
      out.replaceChildren(
        h('div', { class: 'card', id: 'run-summary' }, h('span', { class: 'badge ' + (s.errors ? 'err' : s.mismatch ? 'warn' : 'ok') }, s.errors || s.mismatch ? 'failed' : 'passed'),
          ` ${s.match} passed, ${s.mismatch} failed, ${s.errors} errors of ${s.calls} requests`),
        ...ans.results.map(resultCard));
    } catch (e) {
      out.replaceChildren(h('div', { class: 'card decode-error' }, e.message));
    } finally { go.disabled = false; }
  }
}

const verdicts = { match: ['ok', 'pass'], mismatch: ['warn', 'fail'], error: ['err', 'error'] };

function resultCard(r) {
  const [cls, word] = verdicts[r.verdict] || ['err', r.verdict];
  // A value as JSON on one line when short (the diff's own "(absent)" as
  // a note), else as a tree.
  const val = v => {
    if (v === '(absent)') return h('span', { class: 'none' }, 'absent');
    const line = JSON.stringify(v);
    return line.length <= 80 ? h('span', { class: 'mono' }, line) : jsonTree(v, 1);
  };
  const what = [r.status, fmtMS(r.duration_ms), r.compared ? `compared by ${r.compared_by || 'status'}` : 'no example', r.assertions ? `${r.assertions} assertions` : null].filter(Boolean).join(' · ');
  return h('details', { class: 'card run-result', open: r.verdict !== 'match', 'data-verdict': r.verdict },
    h('summary', {}, h('span', { class: 'badge ' + cls }, word), ' ', h('b', {}, r.request), ' ', h('span', { class: 'hint mono' }, r.method), ' ', h('span', { class: 'hint' }, what)),
    r.error ? h('div', { class: 'decode-error' }, r.error) : null,
    ...(r.notes || []).map(n => h('div', { class: 'hint' }, n)),
    r.diffs && r.diffs.length ? h('table', { class: 'kv diff run-diff' },
      h('tr', {}, h('th', {}, 'where'), h('th', {}, 'field'), h('th', {}, 'expected'), h('th', {}, 'got')),
      ...r.diffs.map(d => h('tr', {}, h('td', { class: 'mono' }, d.where), h('td', { class: 'mono' }, d.path || ''), h('td', { class: 'expected' }, val(d.recorded)), h('td', { class: 'got' }, val(d.got)))))
      : (r.verdict === 'match' ? h('div', { class: 'hint' }, 'Same as the example.') : null));
}
