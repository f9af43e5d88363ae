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
          }))],
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
    const [registry] = await Promise.all([read('registry')]);
    const pins = new Map(((registry && registry.servers) || []).map((s) => [s.server, s]));
    const all = (found && found.tools) || [];
    const rows = all.slice(0, MAX_ROWS);
    return [
      el('h2', {}, 'Tools'),
      input,
      el('p', { id: 'tools-count' }, all.length > rows.length
        ? 'showing ' + rows.length + ' of ' + all.length + ' tools: search to narrow'
        : all.length + ' tools'),
      table('tools', [
        ['Exposed name', (t) => el('span', { class: 'mono' }, t.name)],
        ['Server', (t) => t.server],
        ['Tool', (t) => t.tool],
        ['Description', (t) => t.description],
        ['Pin', (t) => { const p = pins.get(t.server); return p ? p.pin : ''; }],
      ], rows),
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
    const audit = await read('audit?limit=100');
    if (!audit) return [el('p', { class: 'empty' }, 'no audit log')];
    return [
      el('h2', {}, 'Audit log (newest first)'),
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

window.addEventListener('hashchange', () => { statusLine.textContent = ''; render(); });
render();
timer = setInterval(render, REFRESH_MS);
