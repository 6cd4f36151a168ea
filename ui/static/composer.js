// The composer: pick a method, edit a request prefilled from its schema,
// send it through the proxy (recorded like any call), see the response as
// it streams in, and keep requests in named collections.
import { h, jsonTree, fmtMS, statusClass, toast, api, requestJSON, readOnlyNote, blocked } from './lib.js';
import { renderRun } from './tests.js';

const cs = {
  services: null,     // /api/services answer
  collections: [],
  method: '',         // full method
  target: '',         // '' = routed
  metadata: [['', '']],
  messages: [],       // JSON texts
  lastCall: null,     // the last finished call (for examples)
  live: null,         // the websocket of the live call shown, if any
  loadedFrom: '',     // what filled the editor, to keep edits on re-render
};

function findMethod(full) {
  if (!cs.services) return null;
  for (const b of cs.services.backends) for (const s of b.services) for (const m of s.methods) if (m.full_method === full) return { m, backend: b.backend };
  return null;
}
const kindOf = m => m.client_streaming && m.server_streaming ? 'bidi' : m.client_streaming ? 'client stream' : m.server_streaming ? 'server stream' : 'unary';
const pretty = v => JSON.stringify(v, null, 2);

export async function renderComposer(view, params, info) {
  endLive();
  view.replaceChildren(h('div', { class: 'empty' }, 'Loading services…'));
  try {
    [cs.services, cs.collections] = await Promise.all([api('GET', '/api/services'), api('GET', '/api/collections').then(r => r.collections)]);
  } catch (e) { view.replaceChildren(h('div', { class: 'empty' }, e.message)); return; }
  const key = params.toString();
  if (key !== cs.loadedFrom) {
    cs.loadedFrom = key;
    cs.lastCall = null;
    if (params.get('from')) {
      try {
        const c = await api('GET', '/api/calls/' + params.get('from'));
        cs.method = c.method;
        cs.target = '';
        // The headers a replay would send (the server's one header policy).
        cs.metadata = (c.composer_metadata || []).map(([k, v]) => [k, v]);
        if (!cs.metadata.length) cs.metadata = [['', '']];
        cs.messages = (await requestJSON(c)).map(j => pretty(j ?? {}));
      } catch (e) { toast(e.message); }
    } else if (params.get('method')) {
      setMethod(params.get('method'));
    }
  }
  if (!cs.method) {
    const first = cs.services.backends.flatMap(b => b.services.flatMap(s => s.methods))[0];
    if (first) setMethod(first.full_method);
  }
  view.replaceChildren(h('div', { class: 'composer' }, sidebar(view, params, info), editor(view, params, info)));
}

function setMethod(full) {
  cs.method = full;
  const f = findMethod(full);
  cs.messages = [pretty(f ? f.m.request_template : {})];
  cs.lastCall = null;
}

// hintsBox lists the fields the template leaves out (setting them means
// something: a message, a oneof member, an optional value) or empty (lists,
// maps), each with an example a click adds to the last message.
function hintsBox(m, redraw) {
  const hints = (m && m.request_hints) || [];
  if (!hints.length) return null;
  const add = x => {
    const i = cs.messages.length - 1;
    let obj;
    try { obj = JSON.parse(cs.messages[i]); } catch (e) { toast(`message ${i + 1}: ${e.message}`); return; }
    if (x.oneof) for (const o of hints) if (o.oneof === x.oneof) delete obj[o.field];
    obj[x.field] = x.example;
    cs.messages[i] = pretty(obj);
    redraw();
  };
  return h('div', { class: 'template-hints', id: 'template-hints' },
    h('div', { class: 'hint' }, 'Not set in the template (a server may act on a field just because it is set). Click one to add it:'),
    ...hints.map(x => h('button', { class: 'small ghost mono', 'data-field': x.field, onclick: () => add(x),
      title: x.oneof ? `one of the oneof ${x.oneof}: adding it removes the others` : 'add to the request' },
    `${x.field}${x.oneof ? ` (${x.oneof})` : ''}: ${JSON.stringify(x.example)}`)));
}

function sidebar(view, params, info) {
  const tree = h('ul', { class: 'tree', id: 'tree' });
  const fill = filter => {
    const items = [];
    const many = cs.services.backends.length > 1;
    for (const b of cs.services.backends) {
      if (many) items.push(h('li', { class: 'backend mono' }, b.backend || 'any backend'));
      if (b.error && !b.services.length) items.push(h('li', { class: 'hint' }, b.error));
      for (const s of b.services) {
        const ms = s.methods.filter(m => !filter || m.full_method.toLowerCase().includes(filter));
        if (!ms.length) continue;
        items.push(h('li', { class: 'svcname' }, s.name));
        for (const m of ms) items.push(h('li', {}, h('a', { href: '#/composer?method=' + encodeURIComponent(m.full_method), class: m.full_method === cs.method ? 'on' : '' },
          m.name, h('span', { class: 'kind' }, kindOf(m)))));
      }
    }
    if (!items.length) items.push(h('li', { class: 'hint' }, 'No services known. Start the proxy with reflection, or give --proto / --protoset.'));
    tree.replaceChildren(...items);
  };
  fill('');
  const fileIn = h('input', { type: 'file', accept: '.json,application/json', hidden: true, onchange: e => importFile(e.target.files[0], view, params, info) });
  const ro = info && info.read_only;
  const cols = h('ul', { class: 'tree', id: 'collections' });
  for (const c of cs.collections) {
    cols.append(h('li', { class: 'svcname', 'data-collection': c.name }, h('span', {}, c.name),
      h('span', { class: 'col-actions' },
        ro ? null : h('a', { href: '#', class: 'run-collection', title: 'Run as tests: send every request and compare each answer with its example', onclick: e => { e.preventDefault(); renderRun(view.querySelector('.editor'), c); } }, '▶'),
        h('a', { href: `/api/collections/${c.id}?download=1`, download: c.name + '.grpctap.json', title: 'Export as a JSON file' }, '⇩'),
        ro ? null : h('a', { href: '#', title: 'Delete collection', onclick: async e => { e.preventDefault(); if (!confirm(`Delete collection "${c.name}"?`)) return; await api('DELETE', '/api/collections/' + c.id); renderComposer(view, params, info); } }, '✕'))));
    c.requests.forEach(r => cols.append(h('li', {}, h('a', { href: '#', title: r.method, onclick: e => { e.preventDefault(); loadSaved(r, view, params, info); } },
      r.name, h('span', { class: 'kind' }, r.examples && r.examples.length ? `${r.examples.length} ex.` : 'req')))));
  }
  if (!cs.collections.length) cols.append(h('li', { class: 'hint' }, ro ? 'No collections.' : 'Save a request to start a collection.'));
  const importBtn = h('button', { class: 'small', onclick: () => fileIn.click(), title: 'Import a collection file' }, 'Import');
  return h('aside', { class: 'sidebar' },
    h('h4', {}, 'Services'),
    h('input', { type: 'search', id: 'tree-filter', placeholder: 'Filter methods ( / )', 'aria-label': 'Filter methods', oninput: e => fill(e.target.value.toLowerCase()) }),
    tree,
    h('h4', {}, 'Collections', h('span', { class: 'col-actions' }, ro ? blocked(importBtn, readOnlyNote) : importBtn)),
    fileIn, cols);
}

function loadSaved(r, view, params, info) {
  cs.method = r.method.startsWith('/') ? r.method : '/' + r.method;
  cs.target = r.target || '';
  cs.metadata = Object.entries(r.metadata || {}).flatMap(([k, vs]) => vs.map(v => [k, v]));
  if (!cs.metadata.length) cs.metadata = [['', '']];
  cs.messages = (r.messages || []).map(m => pretty(m));
  cs.lastCall = null;
  view.replaceChildren(h('div', { class: 'composer' }, sidebar(view, params, info), editor(view, params, info)));
  const ex = r.examples && r.examples[r.examples.length - 1];
  if (ex) showResult(ex, document.getElementById('response'), true);
}

async function importFile(file, view, params, info) {
  if (!file) return;
  try {
    const col = JSON.parse(await file.text());
    delete col.id;
    try { await api('POST', '/api/collections', col); }
    catch (e) {
      if (!/already exists/.test(e.message)) throw e;
      col.name += ' (imported ' + new Date().toLocaleString() + ')';
      await api('POST', '/api/collections', col);
    }
    toast(`Imported "${col.name}"`);
    renderComposer(view, params, info);
  } catch (e) { toast('Import failed: ' + e.message); }
}

function editor(view, params, info) {
  const found = findMethod(cs.method);
  const m = found && found.m;
  const routed = found ? found.backend : '';
  const backends = [...new Set([...(info ? info.backends : []), ...cs.services.backends.map(b => b.backend).filter(Boolean)])];
  const routes = info && info.backends.length > 0;
  if (!routes && !cs.target && backends.length) cs.target = backends[0]; // grpctap ui: no proxy routes
  const targetSel = h('select', { id: 'target', 'aria-label': 'Target', onchange: e => { cs.target = e.target.value === '__other' ? (prompt('Target address (host:port)') || '') : e.target.value; view.querySelector('#target').value = cs.target; } },
    h('option', { value: '' }, routes ? `Routed by the proxy (${info.backends[0]})` : 'Choose a target…'),
    ...backends.map(b => h('option', { value: b, selected: cs.target === b }, b)),
    cs.target && !backends.includes(cs.target) ? h('option', { value: cs.target, selected: true }, cs.target) : null,
    h('option', { value: '__other' }, 'Other address…'));

  const mdBox = h('div', {});
  const drawMD = () => mdBox.replaceChildren(...cs.metadata.map((row, i) => h('div', { class: 'md-row' },
    h('input', { placeholder: 'key', value: row[0], 'aria-label': 'Metadata key', oninput: e => { row[0] = e.target.value; } }),
    h('input', { placeholder: 'value', value: row[1], 'aria-label': 'Metadata value', oninput: e => { row[1] = e.target.value; } }),
    h('button', { class: 'small ghost', title: 'Remove', onclick: () => { cs.metadata.splice(i, 1); if (!cs.metadata.length) cs.metadata.push(['', '']); drawMD(); } }, '✕'))),
    h('button', { class: 'small', onclick: () => { cs.metadata.push(['', '']); drawMD(); } }, '+ header'));
  drawMD();

  const streamingIn = m ? m.client_streaming : cs.messages.length > 1;
  const msgBox = h('div', { id: 'messages' });
  const drawMsgs = () => msgBox.replaceChildren(...[...cs.messages.map((text, i) => h('div', { class: 'msg-edit' },
    h('div', { class: 'bar' }, streamingIn ? `message ${i + 1}` : 'request',
      streamingIn && cs.messages.length > 1 ? h('button', { class: 'small ghost', onclick: () => { cs.messages.splice(i, 1); drawMsgs(); } }, 'remove') : null),
    h('textarea', { rows: Math.min(18, Math.max(4, text.split('\n').length + 1)), spellcheck: 'false', 'aria-label': `Request message ${i + 1}`, class: 'req-json',
      oninput: e => { cs.messages[i] = e.target.value; }, onkeydown: e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); send(); } }, value: text }))),
    streamingIn ? h('button', { class: 'small', onclick: () => { cs.messages.push(pretty(m ? m.request_template : {})); drawMsgs(); } }, '+ message') : null,
    hintsBox(m, () => drawMsgs())].filter(Boolean));
  drawMsgs();

  const ro = info && info.read_only;
  const response = h('div', { class: 'card', id: 'response' }, h('h3', {}, 'Response'),
    h('div', { class: 'hint' }, ro ? readOnlyNote + '. The composer shows methods and their schemas.' : 'Send the request (Ctrl+Enter) to see the answer here.'));
  const sendBtn = h('button', { class: 'primary', id: 'send', onclick: () => send(), title: 'Send (Ctrl+Enter)' }, 'Send');
  const streaming = !!m && (m.client_streaming || m.server_streaming);
  const liveBtn = streaming ? h('button', { id: 'live-open', onclick: () => openLive(), title: 'Open the call and talk to it: send messages one at a time, half-close, cancel' }, 'Open stream') : null;
  function metadataObj() {
    const md = {};
    for (const [k, v] of cs.metadata) if (k.trim()) (md[k.trim()] ||= []).push(v);
    return md;
  }
  function openLive() {
    if (ro) { toast(readOnlyNote); return; }
    liveCall(response, { method: cs.method, target: cs.target, metadata: metadataObj() }, m, cs.messages[0] || '{}', c => { cs.lastCall = c; });
  }
  const saveBtn = h('button', { id: 'save-btn', onclick: () => saveDialog(view, params, info), title: 'Save into a collection' }, 'Save…');
  async function send() {
    if (ro) { toast(readOnlyNote); return; }
    let messages;
    try { messages = cs.messages.map((t, i) => { try { return JSON.parse(t); } catch (e) { throw new Error(`message ${i + 1}: ${e.message}`); } }); }
    catch (e) { toast(e.message); return; }
    const metadata = metadataObj();
    sendBtn.disabled = true;
    const out = h('div', {});
    const head = h('div', { class: 'row' }, h('span', { class: 'badge live' }, 'running'));
    response.replaceChildren(h('h3', {}, 'Response'), head, out);
    const t0 = performance.now();
    try {
      const res = await fetch('/api/invoke?stream=1', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ method: cs.method, target: cs.target, metadata, messages }) });
      if (!res.ok) { const e = await res.json().catch(() => ({})); throw new Error(e.error || res.statusText); }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const ev = JSON.parse(line);
          if (ev.event === 'message') out.append(h('div', { class: 'resp-msg' }, h('div', { class: 'meta mono' }, `← #${ev.seq}  +${fmtMS(ev.offset_ms)}  ${ev.size} B`),
            ev.json != null ? jsonTree(ev.json) : h('div', { class: 'decode-error' }, ev.decode_error || 'not decoded')));
          if (ev.event === 'error') throw new Error(ev.error);
          if (ev.event === 'end') { cs.lastCall = ev.call; showResult(ev.call, response, false, performance.now() - t0); }
        }
      }
    } catch (e) {
      response.replaceChildren(h('h3', {}, 'Response'), h('div', { class: 'decode-error' }, e.message));
    } finally { sendBtn.disabled = false; }
  }

  const reqType = m && cs.services.types[m.input];
  const schema = h('details', { class: 'card schema', open: true }, h('summary', {}, h('b', {}, 'Request schema'), m ? ` ${m.input}` : ''),
    reqType ? schemaTable(reqType) : h('div', { class: 'hint' }, 'no schema'));

  return h('section', { class: 'editor' },
    h('div', { class: 'row' }, h('h2', { id: 'method-title' }, cs.method || 'Choose a method'), m ? h('span', { class: 'kind' }, kindOf(m)) : null),
    h('div', { class: 'row' }, h('label', { for: 'target', class: 'hint' }, 'Target'), targetSel,
      h('span', { class: 'spacer' }), ro ? blocked(sendBtn, readOnlyNote) : sendBtn,
      liveBtn && (ro ? blocked(liveBtn, readOnlyNote) : liveBtn),
      ro ? blocked(saveBtn, readOnlyNote) : saveBtn,
      h('button', { class: 'ghost', onclick: () => { setMethod(cs.method); drawMsgs(); }, title: 'Reset the request to the schema template' }, 'Reset')),
    h('div', { class: 'editor-body' },
      h('div', {},
        h('div', { class: 'card' }, h('h3', {}, 'Metadata'), mdBox),
        h('div', { class: 'card' }, h('h3', {}, streamingIn ? 'Request messages (sent in order, then end of stream)' : 'Request'), msgBox),
        schema),
      h('div', {}, response)));
}

function schemaTable(t) {
  const types = cs.services.types;
  const rows = [];
  const walk = (t, prefix, depth, seen) => {
    for (const f of t.fields) {
      const label = prefix + f.json_name + (f.repeated ? '[]' : '');
      rows.push(h('tr', {}, h('td', { class: 'mono' }, label), h('td', { class: 'mono' }, f.type || f.kind + (f.map_key ? `<${f.map_key}, ${f.map_value}>` : '')),
        h('td', { class: 'enum' }, f.enum_values ? f.enum_values.join(' | ') : f.oneof ? 'oneof ' + f.oneof : '')));
      const sub = f.kind === 'message' && types[f.type];
      if (sub && depth < 3 && !seen.has(f.type) && !f.type.startsWith('google.protobuf.')) walk(sub, label + '.', depth + 1, new Set([...seen, f.type]));
    }
  };
  walk(t, '', 0, new Set([t.name]));
  return h('table', { class: 'schema' }, h('tr', {}, h('th', {}, 'field'), h('th', {}, 'type'), h('th', {}, 'values')), ...rows);
}

function showResult(c, response, asExample, clientMS) {
  const st = c.status || { code: -1, name: 'UNKNOWN' };
  const kv = md => Object.keys(md || {}).length ? h('table', { class: 'kv' }, ...Object.entries(md).map(([k, vs]) => h('tr', {}, h('th', {}, k), h('td', {}, vs.join(', ')))))
    : h('div', { class: 'none' }, 'none');
  const resp = (c.messages || []).filter(m => m.direction === 'response');
  response.replaceChildren(h('h3', {}, asExample ? 'Saved example' : 'Response'),
    h('div', { class: 'row' },
      h('span', { class: 'badge ' + statusClass(st.code), id: 'resp-status' }, `${st.name} (${st.code})`),
      st.message ? h('span', {}, st.message) : null,
      h('span', { class: 'hint' }, c.duration_ms != null ? fmtMS(c.duration_ms) : (clientMS ? fmtMS(clientMS) : '')),
      c.id ? h('a', { href: '#/call/' + c.id }, `recorded as call #${c.id}`) : null),
    h('div', { class: 'cols' }, h('div', {}, h('b', {}, 'Headers'), kv(c.response_headers)), h('div', {}, h('b', {}, 'Trailers'), kv(c.trailers))),
    h('div', { id: 'resp-messages' }, ...resp.map(m => h('div', { class: 'resp-msg' }, h('div', { class: 'meta mono' }, `← #${m.seq}  ${m.size} B`),
      m.json != null ? jsonTree(m.json) : h('div', { class: 'decode-error' }, m.decode_error || 'not decoded')))));
}

function saveDialog(view, params, info) {
  const dlg = h('dialog', {});
  const colSel = h('select', { id: 'save-collection' }, ...cs.collections.map(c => h('option', { value: c.id }, c.name)), h('option', { value: '' }, 'New collection…'));
  const newName = h('input', { id: 'save-new', placeholder: 'Collection name', value: cs.collections.length ? '' : 'My requests' });
  const reqName = h('input', { id: 'save-name', value: cs.method.split('/').pop() });
  const withEx = h('input', { type: 'checkbox', id: 'save-example', checked: !!cs.lastCall, disabled: !cs.lastCall });
  const sync = () => { newName.hidden = colSel.value !== ''; };
  colSel.onchange = sync;
  if (!cs.collections.length) colSel.value = '';
  sync();
  const save = async e => {
    e.preventDefault();
    const metadata = {};
    for (const [k, v] of cs.metadata) if (k.trim()) (metadata[k.trim()] ||= []).push(v);
    let messages;
    try { messages = cs.messages.map(t => JSON.parse(t)); } catch (err) { toast('Fix the JSON first: ' + err.message); return; }
    const req = { name: reqName.value.trim() || cs.method, method: cs.method, target: cs.target || undefined, metadata, messages,
      examples: withEx.checked && cs.lastCall ? [cs.lastCall] : [] };
    try {
      if (colSel.value) {
        const col = cs.collections.find(c => String(c.id) === colSel.value);
        const i = col.requests.findIndex(r => r.name === req.name);
        if (i >= 0) { req.examples = [...(col.requests[i].examples || []), ...req.examples]; col.requests[i] = req; } else col.requests.push(req);
        await api('PUT', '/api/collections/' + col.id, { name: col.name, requests: col.requests });
      } else {
        await api('POST', '/api/collections', { name: newName.value.trim() || 'My requests', requests: [req] });
      }
      dlg.close();
      toast('Saved');
      const keep = cs.lastCall;
      await renderComposer(view, params, info);
      if (keep) { cs.lastCall = keep; showResult(keep, document.getElementById('response')); }
    } catch (err) { toast(err.message); }
  };
  dlg.append(h('form', { onsubmit: save },
    h('h2', {}, 'Save request'),
    h('label', { for: 'save-collection' }, 'Collection'), colSel, newName,
    h('label', { for: 'save-name' }, 'Request name'), reqName,
    h('label', {}, withEx, ' keep the last response as an example'),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'), h('button', { class: 'primary', type: 'submit', id: 'save-ok' }, 'Save'))));
  dlg.addEventListener('close', () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}

// liveCall holds one call open over a websocket (GET /api/invoke/live):
// the user sends messages one at a time, half-closes or cancels; headers,
// answers and trailers show as they come, in one conversation, and the
// recorded call at the end.
function liveCall(response, start, m, firstText, onEnd) {
  endLive();
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${proto}//${location.host}/api/invoke/live`);
  cs.live = ws;
  const state = h('span', { class: 'badge live', id: 'live-state' }, 'opening');
  const log = h('div', { class: 'live-log', id: 'live-log' });
  const headers = h('div', { id: 'live-headers' });
  const text = h('textarea', { id: 'live-msg', class: 'req-json', rows: Math.min(12, Math.max(4, firstText.split('\n').length + 1)), spellcheck: 'false', 'aria-label': 'Next message', value: firstText,
    onkeydown: e => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); sendOne(); } } });
  const oneShot = m && !m.client_streaming; // server streaming: one message, then the half-close
  const sendBtn = h('button', { class: 'primary', id: 'live-send', disabled: true, onclick: () => sendOne(), title: 'Send this message (Ctrl+Enter)' }, oneShot ? 'Send and half-close' : 'Send message');
  const closeBtn = h('button', { id: 'live-close', disabled: true, onclick: () => { cmd({ type: 'close_send' }); closeBtn.disabled = sendBtn.disabled = true; entry('→', 'half-closed', null, 'note'); }, title: 'End the requests: the server sees end of stream' }, 'Half-close');
  const cancelBtn = h('button', { id: 'live-cancel', disabled: true, onclick: () => cmd({ type: 'cancel' }), title: 'Cancel the call' }, 'Cancel');
  response.replaceChildren(h('h3', {}, 'Live call', state),
    h('div', { class: 'live-compose' }, text, h('div', { class: 'row' }, sendBtn, oneShot ? null : closeBtn, cancelBtn)),
    headers, log);
  response.scrollIntoView({ block: 'nearest' });
  const cmd = c => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(c));
  // A short message shows on one line; a long one as a tree.
  const body = json => { const line = JSON.stringify(json); return line.length <= 160 ? h('div', { class: 'mono line' }, line) : jsonTree(json, 2); };
  const entry = (dir, label, json, cls) => {
    log.append(h('div', { class: 'live-entry ' + (cls || '') }, h('div', { class: 'meta mono' }, `${dir} ${label}`), json != null ? body(json) : null));
    log.scrollTop = log.scrollHeight;
  };
  const kv = md => Object.keys(md || {}).length ? h('table', { class: 'kv' }, ...Object.entries(md).map(([k, vs]) => h('tr', {}, h('th', {}, k), h('td', {}, vs.join(', ')))))
    : h('span', { class: 'none' }, 'none');
  function sendOne() {
    let msg;
    try { msg = JSON.parse(text.value); } catch (e) { toast('Fix the JSON first: ' + e.message); return; }
    cmd({ type: 'send', message: msg });
    if (oneShot) { cmd({ type: 'close_send' }); sendBtn.disabled = true; }
  }
  ws.onopen = () => cmd({ type: 'start', ...start });
  ws.onmessage = e => {
    const ev = JSON.parse(e.data);
    switch (ev.event) {
      case 'open':
        state.textContent = 'open';
        sendBtn.disabled = closeBtn.disabled = cancelBtn.disabled = false;
        text.focus();
        break;
      case 'sent': entry('→', `#${ev.seq}  +${fmtMS(ev.offset_ms)}  ${ev.size} B`, ev.json, 'request'); break;
      case 'rejected': toast('Not sent: ' + ev.error); entry('✕', 'not sent: ' + ev.error, null, 'note'); break;
      case 'header': headers.replaceChildren(h('b', {}, 'Headers'), kv(ev.metadata)); break;
      case 'message':
        entry('←', `#${ev.seq}  +${fmtMS(ev.offset_ms)}  ${ev.size} B`, ev.json, 'response');
        if (ev.json == null) log.append(h('div', { class: 'decode-error' }, ev.decode_error || 'not decoded'));
        break;
      case 'trailers': {
        const st = ev.status;
        state.className = 'badge ' + statusClass(st.code);
        state.textContent = `${st.name} (${st.code})`;
        sendBtn.disabled = closeBtn.disabled = cancelBtn.disabled = true;
        text.disabled = true;
        headers.append(h('b', {}, 'Trailers'), kv(ev.metadata));
        if (st.message) entry('■', st.message, null, 'note');
        break;
      }
      case 'end':
        onEnd(ev.call);
        if (ev.call && ev.call.id) response.append(h('div', { class: 'row', id: 'live-recorded' }, h('a', { href: '#/call/' + ev.call.id }, `recorded as call #${ev.call.id}`)));
        break;
      case 'error':
        state.className = 'badge err'; state.textContent = 'error';
        response.append(h('div', { class: 'decode-error' }, ev.error));
        break;
    }
  };
  ws.onclose = () => { sendBtn.disabled = closeBtn.disabled = cancelBtn.disabled = true; if (state.textContent === 'open' || state.textContent === 'opening') { state.className = 'badge err'; state.textContent = 'closed'; } };
}

// endLive closes the live call's socket (the server cancels a call still
// going): a call lives only while its panel is shown.
function endLive() {
  if (cs.live) { cs.live.close(); cs.live = null; }
}
addEventListener('hashchange', () => { if (!location.hash.startsWith('#/composer')) endLive(); });
