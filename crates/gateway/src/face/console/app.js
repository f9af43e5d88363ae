// switchboard console: reads and changes the gateway through the admin API mounted under
// /ui/admin/. Every value from the gateway is rendered with textContent (never as
// markup): names and descriptions come from MCP servers and may be hostile.
'use strict';

const REFRESH_MS = 5000;
// Rows drawn per table at most: a catalog of 10,000 tools is searched, not scrolled.
const MAX_ROWS = 500;
const main = document.getElementById('main');
const statusLine = document.getElementById('status');
let timer = null;
let toolQuery = '';
// Live calls: the newest first, at most LIVE_ROWS kept while the Live page is open.
const LIVE_ROWS = 200;
const live = { stream: null, state: 'closed', calls: [], errors: [], dropped: 0 };
// The chat page's conversation, kept across re-renders.
const chat = { id: null, turns: [], pending: false };

// --- DOM helpers --------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : text(child));
  }
  return node;
}

function text(value) {
  if (value === null || value === undefined) return document.createTextNode('');
  if (typeof value === 'object') return document.createTextNode(JSON.stringify(value));
  return document.createTextNode(String(value));
}

// A table of rows; each column is [heading, row => cell content].
function table(id, columns, rows) {
  if (!rows.length) return el('p', { class: 'empty', id }, 'none');
  const head = el('tr', {}, ...columns.map(([heading]) => el('th', {}, heading)));
  const body = rows.map((row) =>
    el('tr', { 'data-row': rowKey(row) }, ...columns.map(([, cell]) => el('td', {}, cell(row)))));
  return el('table', { id }, el('thead', {}, head), el('tbody', {}, ...body));
}

function rowKey(row) {
  return String(row.name || row.id || row.server || row.seq || '');
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function say(message, bad) {
  statusLine.textContent = message;
  statusLine.className = bad ? 'bad' : 'ok';
}

// --- admin API ----------------------------------------------------------------------

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    options.headers['content-type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  const response = await fetch('admin/' + path, options);
  let answer = null;
  try { answer = await response.json(); } catch (_) { answer = null; }
  return { status: response.status, ok: response.ok, body: answer || {} };
}

// GET that tolerates a feature not being configured (404): returns null then.
async function read(path) {
  const answer = await api('GET', path);
  if (answer.status === 404) return null;
  if (!answer.ok) throw new Error(path + ': ' + (answer.body.error || answer.status));
  return answer.body;
}

async function act(label, method, path, body) {
  const answer = await api(method, path, body);
  if (answer.ok) say(label + ': done', false);
  else say(label + ': ' + (answer.body.error || answer.status), true);
  await render();
  return answer;
}

function button(label, onclick, attrs) {
  return el('button', Object.assign({ type: 'button', onclick }, attrs || {}), label);
}

// --- pages --------------------------------------------------------------------------

const pages = {
  async servers() {
    const [servers, registry] = await Promise.all([read('servers'), read('registry')]);
    const drift = new Map(((registry && registry.servers) || []).map((s) => [s.server, s]));
    const rows = (servers && servers.servers) || [];
    const form = el('form', { id: 'register', onsubmit: register },
      el('label', {}, 'Name ', el('input', { type: 'text', name: 'name', required: 'required' })),
      el('label', {}, 'Definition (.mcp.json entry) ',
        el('textarea', { name: 'server', rows: '3', required: 'required' })),
      el('button', { type: 'submit' }, 'Register server'));
    return [
      el('h2', {}, 'Servers'),
      table('servers', [
        ['Name', (s) => s.name],
        ['State', (s) => el('span', { class: 'state-' + s.state }, s.state)],
        ['Era', (s) => s.era],
        ['Transport', (s) => s.transport],
        ['PIDs', (s) => (s.pids || []).join(' ')],
        ['Breaker', (s) => s.breaker],
        ['In flight', (s) => s.inflight],
        ['Tools', (s) => s.tools],
        ['Restarts', (s) => s.restarts],
        ['Version', (s) => versionOf(drift.get(s.name))],
        ['Last error', (s) => s.last_error],
        ['', (s) => el('span', {},
          button('Reload', () => act('reload ' + s.name, 'POST', 'servers/' + enc(s.name) + '/reload')),
          button('Remove', () => {
            if (confirm('Remove ' + s.name + '?')) act('remove ' + s.name, 'DELETE', 'servers/' + enc(s.name));
          }),
          button('Stop', () => act('stop ' + s.name, 'POST', 'servers/' + enc(s.name) + '/stop'),
            { 'data-action': 'stop' }),
          button('Start', () => act('start ' + s.name, 'POST', 'servers/' + enc(s.name) + '/start'),
            { 'data-action': 'start' }))],
      ], rows),
      el('h2', {}, 'Register a server'),
      form,
    ];
  },

  async tools() {
    const input = el('input', { type: 'text', id: 'tool-search', placeholder: 'search tools', value: toolQuery });
    input.addEventListener('change', () => { toolQuery = input.value; render(); });
    const found = toolQuery.trim()
      ? await read('tools/search?q=' + enc(toolQuery) + '&limit=50')
      : await read('tools');
    const registry = await read('registry');
    const servers = (registry && registry.servers) || [];
    const pins = new Map(servers.map((s) => [s.server, s]));
    const quarantined = servers.flatMap((s) => (s.quarantined || []).map((q) => Object.assign({ name: q.server + '/' + q.tool }, q)));
    const all = (found && found.tools) || [];
    const rows = all.slice(0, MAX_ROWS);
    const detail = el('div', { id: 'tool-detail' });
    return [
      el('h2', {}, 'Tools'),
      input,
      el('p', { id: 'tools-count' }, all.length > rows.length
        ? 'showing ' + rows.length + ' of ' + all.length + ' tools: search to narrow'
        : all.length + ' tools'),
      detail,
      table('tools', [
        ['Exposed name', (t) => el('span', { class: 'mono' }, t.name)],
        ['Server', (t) => t.server],
        ['Tool', (t) => t.tool],
        ['Description', (t) => t.description],
        ['Pin', (t) => pinStatus(pins.get(t.server))],
        ['', (t) => button('Schema', () => showSchema(t.name, detail), { 'data-action': 'schema' })],
      ], rows),
      el('h2', {}, 'Quarantined tools (held back until a version is approved)'),
      table('quarantined', [
        ['Server', (q) => q.server],
        ['Tool', (q) => q.tool],
        ['Changed', (q) => (q.changed || []).join(', ') || 'new'],
        ['Approved', (q) => (q.approvedVersion ? 'v' + q.approvedVersion : 'none')],
        ['Why', (q) => q.reason],
        ['', (q) => el('span', {},
          button('Schema', () => showQuarantinedSchema(q, detail), { 'data-action': 'schema' }),
          button('Approve v' + q.version, () =>
            act('approve ' + q.server + ' v' + q.version, 'POST',
              'registry/' + enc(q.server) + '/approve', { version: q.version }),
          { 'data-action': 'approve' }))],
      ], quarantined),
    ];
  },

  async live() {
    openStream();
    if (!live.errors.length) {
      const recent = await read('events/errors');
      for (const event of (recent && recent.errors) || []) rememberError(event);
    }
    return liveNodes();
  },

  async chat() {
    const status = await read('agent');
    if (!status || !status.configured) {
      return [
        el('h2', {}, 'Chat with the router agent'),
        el('p', { id: 'chat-error', class: 'bad' }, (status && status.error) || 'the agent is not available'),
      ];
    }
    const form = el('form', { id: 'chat-form', onsubmit: ask },
      el('label', {}, 'Ask ', el('textarea', { name: 'query', rows: '2', required: 'required' })),
      el('button', { type: 'submit' }, chat.pending ? 'Asking…' : 'Ask'),
      button('New conversation', forget, { 'data-action': 'forget' }));
    return [
      el('h2', {}, 'Chat with the router agent'),
      el('p', { id: 'chat-conversation', class: 'empty' },
        chat.id ? 'conversation ' + chat.id : 'a new conversation'),
      el('div', { id: 'chat-turns' }, ...chat.turns.map(turnNode)),
      form,
    ];
  },

  async registry() {
    const registry = await read('registry');
    if (!registry) return [el('p', { class: 'empty' }, 'no registry')];
    const details = el('div', { id: 'registry-detail' });
    const rows = registry.servers || [];
    return [
      el('h2', {}, 'Registry: versions, drift and pins'),
      table('registry', [
        ['Server', (r) => r.server],
        ['Pin', (r) => r.pin],
        ['Version', (r) => r.version],
        ['Approved', (r) => r.approvedVersion],
        ['Drift', (r) => (r.drift ? 'yes' : 'no')],
        ['Quarantined', (r) => (r.quarantined || []).length],
        ['', (r) => el('span', {},
          button('History', () => history(r.server, details)),
          r.version !== null && r.version !== r.approvedVersion
            ? button('Approve v' + r.version, () =>
              act('approve ' + r.server + ' v' + r.version, 'POST',
                'registry/' + enc(r.server) + '/approve', { version: r.version }))
            : null)],
      ], rows),
      details,
    ];
  },

  async approvals() {
    const approvals = await read('approvals');
    if (!approvals) return [el('p', { class: 'empty' }, 'approvals are not configured')];
    const rows = approvals.approvals || [];
    const pending = rows.filter((a) => a.state === 'pending');
    const decided = rows.filter((a) => a.state !== 'pending');
    const columns = [
      ['Id', (a) => el('span', { class: 'mono' }, a.id)],
      ['State', (a) => a.state],
      ['Caller', (a) => a.principal || a.caller],
      ['Server', (a) => a.server],
      ['Tool', (a) => a.tool],
      ['Arguments', (a) => el('span', { class: 'mono' }, JSON.stringify(a.arguments))],
      ['Expires', (a) => a.expires || a.expires_at],
    ];
    return [
      el('h2', {}, 'Pending approvals'),
      table('pending', columns.concat([['', (a) => el('span', {},
        button('Approve', () => act('approve ' + a.id, 'POST', 'approvals/' + enc(a.id) + '/approve'),
          { 'data-action': 'approve' }),
        button('Deny', () => act('deny ' + a.id, 'POST', 'approvals/' + enc(a.id) + '/deny',
          { reason: 'denied in the console' }), { 'data-action': 'deny' }))]]), pending),
      el('h2', {}, 'Decided'),
      table('decided', columns.concat([['By', (a) => a.decided_by || a.by]]), decided),
    ];
  },

  async audit() {
    const [audit, verify] = await Promise.all([read('audit?limit=100'), read('audit/verify')]);
    if (!audit) return [el('p', { class: 'empty' }, 'no audit log')];
    const verdict = verify && verify.ok
      ? el('p', { id: 'audit-verify', class: 'ok' }, 'verified: ' + verify.summary)
      : el('p', { id: 'audit-verify', class: 'bad' }, 'NOT verified: ' + ((verify && (verify.summary || verify.error)) || 'unknown'));
    return [
      el('h2', {}, 'Audit log: chain status'),
      verdict,
      el('h2', {}, 'Recent records (newest first)'),
      table('audit', [
        ['Seq', (r) => r.seq],
        ['Time', (r) => r.body && r.body.time],
        ['Principal', (r) => r.body && r.body.principal],
        ['Server', (r) => r.body && r.body.server],
        ['Tool', (r) => r.body && r.body.tool],
        ['Decision', (r) => r.body && r.body.decision],
        ['Outcome', (r) => r.body && r.body.outcome],
      ], (audit.records || []).map(flatten)),
    ];
  },

  async secrets() {
    const secrets = await read('secrets');
    if (!secrets) return [el('p', { class: 'empty' }, 'no secret store')];
    return [
      el('h2', {}, 'Secrets (names only)'),
      table('secrets', [
        ['Name', (s) => s.name],
        ['Created', (s) => s.created],
        ['Updated', (s) => s.updated],
      ], secrets.secrets || []),
    ];
  },

  async config() {
    const config = await read('config');
    return [el('h2', {}, 'Config'), el('pre', { id: 'config' }, JSON.stringify(config, null, 2))];
  },

  async metrics() {
    const response = await fetch('/metrics', { headers: { accept: 'text/plain' } });
    const totals = summarize(await response.text());
    return [
      el('h2', {}, 'Metrics (sums over all labels)'),
      table('metrics', [['Series', (m) => m.name], ['Value', (m) => m.value]], totals),
    ];
  },
};

function pinStatus(entry) {
  if (!entry || entry.pin === 'off') return 'not pinned';
  if (entry.approvedVersion === null || entry.approvedVersion === undefined) return entry.pin + ': nothing approved';
  return entry.pin + ': approved v' + entry.approvedVersion;
}

async function showSchema(name, target) {
  const tool = await read('tools/' + enc(name));
  const definition = (tool && tool.definition) || {};
  schemaPane(target, name, definition);
}

// A quarantined tool is not in the catalog: its definition comes from the version that has it.
async function showQuarantinedSchema(q, target) {
  const version = await read('registry/' + enc(q.server) + '/versions/' + q.version);
  const tools = (version && version.lists && version.lists.tools) || [];
  schemaPane(target, q.server + '/' + q.tool + ' (v' + q.version + ', quarantined)',
    tools.find((t) => t.name === q.tool) || {});
}

function schemaPane(target, title, definition) {
  target.replaceChildren(el('div', { class: 'pane' },
    el('h2', {}, 'Schema of ' + title),
    el('h2', {}, 'Input'),
    el('pre', { id: 'schema-input' }, JSON.stringify(definition.inputSchema || null, null, 2)),
    el('h2', {}, 'Output'),
    el('pre', { id: 'schema-output' }, definition.outputSchema
      ? JSON.stringify(definition.outputSchema, null, 2) : 'none declared')));
}

// --- live calls (Server-Sent Events from admin/events) ----------------------------------

const callColumns = [
  ['#', (c) => c.seq],
  ['Time', (c) => new Date(c.time_ms).toISOString().slice(11, 23)],
  ['Method', (c) => c.method],
  ['Server', (c) => c.server],
  ['Tool', (c) => c.tool],
  ['Principal', (c) => c.principal],
  ['Outcome', (c) => el('span', { class: c.outcome === 'ok' ? 'ok' : 'bad' }, c.outcome)],
  ['ms', (c) => c.duration_ms.toFixed(1)],
];

function openStream() {
  if (live.stream) return;
  live.state = 'connecting';
  const stream = new EventSource('admin/events');
  live.stream = stream;
  stream.addEventListener('ready', () => { live.state = 'connected'; drawLive(); });
  stream.addEventListener('call', (message) => {
    const call = JSON.parse(message.data);
    live.calls.unshift(call);
    if (live.calls.length > LIVE_ROWS) live.calls.pop();
    if (call.outcome !== 'ok') rememberError(call);
    drawLive();
  });
  stream.addEventListener('dropped', (message) => {
    live.dropped = JSON.parse(message.data).dropped;
    drawLive();
  });
  stream.addEventListener('error', () => { live.state = 'reconnecting'; drawLive(); });
}

function closeStream() {
  if (!live.stream) return;
  live.stream.close();
  live.stream = null;
  live.state = 'closed';
}

function rememberError(event) {
  if (live.errors.some((e) => e.seq === event.seq)) return;
  live.errors.unshift(event);
  live.errors.sort((a, b) => b.seq - a.seq);
  if (live.errors.length > LIVE_ROWS) live.errors.pop();
}

function liveNodes() {
  return [
    el('h2', {}, 'Live calls'),
    el('p', { id: 'stream-state' }, 'stream ' + live.state
      + (live.dropped ? ' (' + live.dropped + ' events lost: this page was too slow)' : '')),
    table('live', callColumns, live.calls),
    el('h2', {}, 'Recent errors'),
    table('errors', callColumns.concat([['Error', (c) => c.error]]), live.errors),
  ];
}

function drawLive() {
  if (currentPage() !== 'live') return;
  show(...liveNodes());
}

// --- chat with the router agent (admin/agent) --------------------------------------------

function turnNode(turn) {
  if (turn.error) return el('div', { class: 'pane' }, el('p', {}, 'You: ' + turn.query), el('p', { class: 'bad chat-error' }, turn.error));
  const answer = turn.answer;
  return el('div', { class: 'pane chat-turn' },
    el('p', {}, 'You: ' + turn.query),
    el('p', { class: 'answer chat-answer' }, answer.answer !== null && answer.answer !== undefined
      ? answer.answer : 'no answer (' + (answer.unsynthesized || 'unsynthesized') + ')'),
    (answer.servers_started || []).length
      ? el('p', { class: 'empty' }, 'servers started: ' + answer.servers_started.join(', ')) : null,
    table('chat-trace', [
      ['Server', (c) => c.server],
      ['Tool', (c) => c.tool],
      ['Arguments', (c) => el('span', { class: 'mono' }, JSON.stringify(c.arguments))],
      ['Repaired from', (c) => (c.repaired_from ? JSON.stringify(c.repaired_from) : '')],
      ['Outcome', (c) => c.outcome],
      ['ms', (c) => c.duration_ms],
    ], answer.tool_calls || []));
}

async function ask(event) {
  event.preventDefault();
  const query = event.target.elements.query.value;
  if (!query.trim() || chat.pending) return;
  chat.pending = true;
  say('asking…', false);
  const body = { query };
  if (chat.id) body.conversation_id = chat.id;
  const answer = await api('POST', 'agent/query', body);
  chat.pending = false;
  if (answer.ok) {
    chat.id = answer.body.conversation_id || chat.id;
    chat.turns.push({ query, answer: answer.body });
    say('answered', false);
  } else {
    const error = answer.body.error || {};
    chat.turns.push({ query, error: (error.message || error) + '' });
    say('the agent failed: ' + (error.code || answer.status), true);
  }
  document.activeElement.blur();
  await render();
}

async function forget() {
  if (chat.id) await api('DELETE', 'agent/conversations/' + enc(chat.id));
  chat.id = null;
  chat.turns = [];
  await render();
}

function versionOf(entry) {
  if (!entry || entry.version === null || entry.version === undefined) return '';
  const approved = entry.approvedVersion;
  return 'v' + entry.version + (approved && approved !== entry.version ? ' (approved v' + approved + ')' : '')
    + (entry.drift ? ' drift' : '');
}

// An audit record as stored ({seq, body: {...}} or flat): the fields the table shows.
function flatten(record) {
  const body = record.body || record;
  return { seq: record.seq, body };
}

function summarize(exposition) {
  const sums = new Map();
  for (const line of exposition.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const name = match[1];
    if (name.endsWith('_bucket')) continue;
    const value = Number(match[3]);
    if (Number.isFinite(value)) sums.set(name, (sums.get(name) || 0) + value);
  }
  return [...sums.entries()].sort().map(([name, value]) => ({ name, value }));
}

async function history(server, target) {
  const answer = await read('registry/' + enc(server) + '/history');
  const versions = (answer && answer.versions) || [];
  target.replaceChildren(
    el('h2', {}, 'History of ' + server),
    table('history', [
      ['Version', (v) => v.version],
      ['Recorded', (v) => v.recordedAt],
      ['Approved', (v) => (v.approved ? 'yes' : '')],
      ['Counts', (v) => JSON.stringify(v.counts)],
      ['Diff', (v) => el('span', { class: 'mono' }, v.diff ? JSON.stringify(v.diff) : '')],
    ], versions));
}

async function register(event) {
  event.preventDefault();
  const form = event.target;
  let definition;
  try {
    definition = JSON.parse(form.elements.server.value);
  } catch (error) {
    say('the definition is not JSON: ' + error.message, true);
    return;
  }
  const name = form.elements.name.value;
  await act('register ' + name, 'POST', 'servers', { name, server: definition });
}

function enc(value) {
  return encodeURIComponent(value);
}

// --- navigation and refresh -----------------------------------------------------------

function currentPage() {
  const page = location.hash.replace('#', '');
  return Object.prototype.hasOwnProperty.call(pages, page) ? page : 'servers';
}

let rendering = false;
let again = false;
async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  const page = currentPage();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.page === page);
  }
  try {
    // Keep the user's place in forms: no background refresh while one has focus.
    const focused = document.activeElement;
    if (!(focused && main.contains(focused) && /INPUT|TEXTAREA/.test(focused.tagName))) {
      show(...await pages[page]());
    }
    document.body.dataset.page = page;
    document.body.dataset.loaded = String(Date.now());
  } catch (error) {
    say(error.message, true);
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

window.addEventListener('hashchange', () => {
  statusLine.textContent = '';
  // Nobody watching costs the gateway nothing: the stream is open only on the Live page.
  if (currentPage() !== 'live') closeStream();
  render();
});
render();
timer = setInterval(render, REFRESH_MS);
