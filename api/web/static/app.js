// Croft dashboard. Plain JavaScript, no framework and nothing fetched from
// elsewhere: every datum comes from the coordinator's REST API with the
// token the user pasted, kept in this tab's sessionStorage.
'use strict';

const TOKEN_KEY = 'croft.token';
const POLL_MS = 1500;
const ROW_H = 30; // px, as --row in app.css
const PAGE = 200; // rows fetched at once by a list
const LOG_DOM_LINES = 20000; // older log lines leave the DOM
const STATES = ['waiting', 'blocked', 'running', 'finished', 'failed', 'canceled', 'paused'];

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let view = null; // the current view: {refresh(), stop()}
let whoami = null;

// ---- small helpers ----

// h builds an element: attributes (on* are listeners), then children
// (strings become text: data is never parsed as HTML).
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  add(e, kids);
  return e;
}

function add(e, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(e, k);
    else e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(method, path, body, opts) {
  const init = { method, headers: { Authorization: 'Bearer ' + token }, signal: opts && opts.signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    signOut('The coordinator refused the token (401): sign in again.');
    throw new ApiError(401, 'unauthorized');
  }
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch (_) { /* a plain-text error */ }
    throw new ApiError(r.status, r.status + ': ' + msg);
  }
  return text ? JSON.parse(text) : null;
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// fmtTime shows a time as the browser's local date and time: t is an RFC
// 3339 string or Unix seconds (the Coalition rows).
function fmtTime(t) {
  if (t == null || t === '' || t === 0) return '';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? '' : d.toLocaleString();
}

function fmtDur(ms) {
  if (!(ms >= 0) || !isFinite(ms)) return '';
  let s = Math.round(ms / 1000);
  if (s < 60) return s + 's';
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return d + 'd ' + hh + 'h';
  if (hh) return hh + 'h ' + m + 'm';
  return m + 'm ' + s + 's';
}

function mib(n) { return n >= 1024 ? (n / 1024).toFixed(1) + ' GiB' : n + ' MiB'; }

function say(msg, isError) {
  const s = document.getElementById('status');
  s.textContent = msg || '';
  s.className = isError ? 'error' : '';
}

function fail(e) { if (!(e instanceof ApiError && e.status === 401)) say(e.message || String(e), true); }

function badge(state) { return h('span', { class: 'state s-' + state }, state); }

function bar(p, cls) {
  const i = h('i', { class: cls || '' });
  i.style.width = Math.max(0, Math.min(1, p || 0)) * 100 + '%';
  return h('div', { class: 'bar' }, i, h('b', {}, Math.round((p || 0) * 100) + '%'));
}

function link(href, text) { return h('a', { href }, text); }

// eta estimates the time left of a running job (or a group with running
// jobs) from its progress so far.
function eta(j) {
  const p = j.progress;
  if (!(p > 0 && p < 1)) return '';
  const running = j.is_group ? j.counters && j.counters.running > 0 : j.state === 'running';
  if (!running) return '';
  const since = Date.parse(j.is_group ? j.created : j.started);
  if (!since) return '';
  return '~' + fmtDur((Date.now() - since) * (1 - p) / p);
}

// ---- sign in ----

function signOut(msg) {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  whoami = null;
  if (view) { view.stop(); view = null; }
  show();
  if (msg) document.getElementById('login-error').textContent = msg;
}

async function signIn(t) {
  token = t.trim();
  try {
    whoami = await api('GET', '/cluster/whoami');
  } catch (e) {
    token = '';
    document.getElementById('login-error').textContent = e.status === 401 ? 'This token is not valid.' : e.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById('login-error').textContent = '';
  show();
}

// ---- lists: only the visible rows are in the DOM ----

// VList is a virtualised list over a paged source: fetch(offset, limit)
// answers rows; pages are fetched as they scroll into view, and the
// visible ones again on refresh. Its length grows as pages are read
// (the native lists are streamed and carry no count) unless total() says.
class VList {
  constructor(cls, columns, fetch, row, total) {
    this.fetch = fetch;
    this.row = row;
    this.total = total || (() => null);
    this.pages = new Map();
    this.loading = new Set();
    this.end = null;
    this.gen = 0;
    this.space = h('div', { class: 'vspace' });
    this.port = h('div', { class: 'vport' }, this.space);
    this.info = h('div', { class: 'muted' });
    this.el = h('div', { class: 'vlist ' + cls },
      h('div', { class: 'vhead' }, columns.map((c) => h('span', {}, c))), this.port, this.info);
    this.port.addEventListener('scroll', () => this.draw());
  }

  length() {
    const t = this.total();
    if (t != null) return t;
    if (this.end != null) return this.end;
    let known = 0;
    for (const [p, rows] of this.pages) known = Math.max(known, p * PAGE + rows.length);
    return known + (this.pages.size ? PAGE : 0); // room to scroll into the next page
  }

  range() {
    const first = Math.floor(this.port.scrollTop / ROW_H);
    const n = Math.ceil((this.port.clientHeight || 600) / ROW_H) + 4;
    return [first, Math.min(first + n, this.length())];
  }

  draw() {
    if (!this.pages.size && !this.loading.size) this.load(0);
    const len = this.length();
    this.space.style.height = len * ROW_H + 'px';
    const [first, last] = this.range();
    clear(this.space);
    for (let i = first; i < last; i++) {
      const p = Math.floor(i / PAGE);
      const rows = this.pages.get(p);
      if (!rows) { this.load(p); continue; }
      const item = rows[i - p * PAGE];
      if (!item) continue;
      const el = this.row(item);
      el.style.top = i * ROW_H + 'px';
      this.space.append(el);
    }
    const shown = Math.min(last, len);
    const count = this.end != null || this.total() != null ? String(len) : 'at least ' + Math.max(0, len - PAGE);
    this.info.textContent = len === 0 && this.end === 0 ? 'nothing to show' :
      'rows ' + (len ? first + 1 : 0) + '–' + shown + ' of ' + count;
  }

  async load(p) {
    if (this.loading.has(p)) return;
    this.loading.add(p);
    const gen = this.gen;
    try {
      const rows = (await this.fetch(p * PAGE, PAGE)) || [];
      if (gen !== this.gen) return;
      this.pages.set(p, rows);
      if (rows.length < PAGE) this.end = p * PAGE + rows.length;
      else if (this.end != null && this.end <= p * PAGE + rows.length) this.end = null;
      say('');
    } catch (e) {
      fail(e);
    } finally {
      this.loading.delete(p);
    }
    if (gen === this.gen) this.draw();
  }

  // refresh reads the visible pages again and forgets the others.
  async refresh() {
    const [first, last] = this.range();
    const want = new Set();
    for (let p = Math.floor(first / PAGE); p <= Math.floor(Math.max(first, last - 1) / PAGE); p++) want.add(p);
    const gen = ++this.gen;
    const got = new Map();
    try {
      await Promise.all([...want].map(async (p) => got.set(p, (await this.fetch(p * PAGE, PAGE)) || [])));
    } catch (e) { fail(e); return; }
    if (gen !== this.gen) return;
    this.pages = got;
    this.end = null;
    for (const [p, rows] of got) if (rows.length < PAGE) this.end = p * PAGE + rows.length;
    this.draw();
  }
}

// table renders rows as a plain table (short lists: workers, members).
function table(columns, rows, cells) {
  return h('table', {}, h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cells(r).map((c) => h('td', {}, c))))));
}

// ---- routing ----

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean), q: new URLSearchParams(query || '') };
}

function show() {
  const login = document.getElementById('login');
  const v = document.getElementById('view');
  document.getElementById('logout').hidden = !token;
  document.getElementById('who').textContent = whoami ? 'signed in as ' + whoami.name : '';
  if (view) { view.stop(); view = null; }
  clear(v);
  say('');
  if (!token) {
    login.hidden = false;
    document.getElementById('token').focus();
    return;
  }
  login.hidden = true;
  const { parts, q } = parseHash();
  const name = parts[0] || 'jobs';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === name || (name === 'job' && a.dataset.view === 'jobs'));
  const views = { jobs: jobsView, job: jobView, workers: workersView, sessions: sessionsView, session: sessionView,
    templates: templatesView, executions: executionsView, cluster: clusterView };
  view = (views[name] || jobsView)(v, parts, q);
  view.refresh();
}

setInterval(() => {
  if (view && token && !document.hidden) view.refresh();
}, POLL_MS);

// ---- job actions ----

async function act(id, action) {
  try {
    if (action === 'delete') {
      if (!window.confirm('Delete job ' + id + ' and everything below it?')) return;
      await api('DELETE', '/croft/v1/jobs/' + id);
    } else {
      await api('POST', '/croft/v1/jobs/' + id + '/' + action);
    }
    say(action + ': job ' + id);
    if (view) view.refresh();
  } catch (e) { fail(e); }
}

function actions(j) {
  const b = (a, label, cls) => h('button', { type: 'button', 'data-act': a, 'data-id': j.id, class: cls,
    onclick: (ev) => { ev.stopPropagation(); act(j.id, a); } }, label);
  return h('span', { class: 'acts' },
    j.paused ? b('start', 'start') : b('pause', 'pause'),
    b('reset', 'reset'), b('retry', 'retry errors'), b('cancel', 'cancel'), b('delete', 'delete', 'danger'));
}

function counters(j) {
  if (!j.is_group) return j.tries ? 'try ' + j.tries : '';
  const c = j.counters || {};
  return [c.finished + '/' + c.total, c.failed ? h('span', { class: 'bad' }, ' ✗' + c.failed) : null,
    c.running ? h('span', {}, ' ▶' + c.running) : null];
}

// ---- jobs ----

function jobsView(root, parts, q) {
  const f = { parent: q.get('parent') || '0', state: q.get('state') || '', project: q.get('project') || '',
    user: q.get('user') || '', affinity: q.get('affinity') || '' };
  const go = (over) => { location.hash = '#/jobs' + qs(Object.assign({}, f, over, { parent: (over && over.parent) || f.parent })); };
  const crumbs = h('div', { class: 'crumbs' });
  const groupCard = h('div');

  const stateSel = h('select', { name: 'state' }, h('option', { value: '' }, 'any state'),
    STATES.map((s) => h('option', { value: s, selected: s === f.state }, s)));
  const input = (name, ph) => h('input', { name, placeholder: ph, value: f[name], size: 12 });
  const filters = h('form', { class: 'toolbar', id: 'filters' },
    h('label', {}, 'state', stateSel), input('project', 'project'), input('user', 'user'), input('affinity', 'affinity'),
    h('button', { type: 'submit' }, 'filter'),
    h('button', { type: 'button', onclick: () => go({ state: '', project: '', user: '', affinity: '' }) }, 'clear'));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(filters);
    go({ state: d.get('state'), project: d.get('project').trim(), user: d.get('user').trim(), affinity: d.get('affinity').trim() });
  });
  stateSel.addEventListener('change', () => filters.requestSubmit());

  const form = h('form', { class: 'submit', id: 'submit-form' },
    h('input', { name: 'title', placeholder: 'title', size: 16 }),
    h('input', { name: 'command', placeholder: 'command (empty: a group)' }),
    h('input', { name: 'affinity', placeholder: 'affinity', size: 10 }),
    h('input', { name: 'priority', type: 'number', placeholder: 'priority', size: 6 }),
    h('label', {}, h('input', { name: 'paused', type: 'checkbox' }), 'paused'),
    h('button', { type: 'submit', class: 'primary' }, 'Submit'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    const job = { title: d.get('title'), command: d.get('command'), affinity: d.get('affinity').trim(),
      paused: d.get('paused') === 'on', parent: Number(f.parent) || 0 };
    if (d.get('priority')) job.priority = Number(d.get('priority'));
    if (f.project) job.project = f.project;
    try {
      const r = await api('POST', '/croft/v1/jobs', job);
      say('submitted job ' + r.ids.join(', '));
      form.reset();
      list.refresh();
    } catch (e) { fail(e); }
  });

  const cols = ['id', 'title', 'state', 'progress', 'counters', 'ETA', 'worker', 'user', 'project', 'created', 'actions'];
  let group = null;
  const list = new VList('jobs', cols,
    (offset, limit) => api('GET', '/croft/v1/jobs' + qs({ parent: f.parent, state: f.state, project: f.project,
      user: f.user, affinity: f.affinity, offset, limit })),
    (j) => h('div', { class: 'vrow', 'data-id': j.id, onclick: () => { location.hash = j.is_group ? '#/jobs?parent=' + j.id : '#/job/' + j.id; } },
      h('span', {}, j.id), h('span', { title: j.command || 'group' }, (j.is_group ? '▸ ' : '') + (j.title || j.command || '')),
      h('span', {}, badge(j.state)),
      h('span', {}, bar(j.progress, j.state === 'finished' ? 'done' : j.state === 'failed' ? 'bad' : '')),
      h('span', {}, counters(j)), h('span', {}, eta(j)), h('span', {}, j.worker), h('span', {}, j.user),
      h('span', {}, j.project), h('span', {}, fmtTime(j.created)), actions(j)),
    // A group's children are counted: the list knows its length when unfiltered.
    () => (group && !f.state && !f.project && !f.user && !f.affinity ? group.counters.children : null));

  root.append(h('div', { class: 'card' }, h('h2', {}, 'Submit a job' + (f.parent !== '0' ? ' in group ' + f.parent : '')), form),
    h('div', { class: 'card' }, crumbs, groupCard, filters, list.el));

  async function drawGroup() {
    if (f.parent === '0') {
      clear(crumbs);
      crumbs.append(h('b', {}, 'All root jobs'));
      return;
    }
    const chain = [];
    let id = Number(f.parent);
    while (id && chain.length < 32) {
      const j = await api('GET', '/croft/v1/jobs/' + id);
      chain.unshift(j);
      id = j.parent;
    }
    group = chain[chain.length - 1];
    clear(crumbs);
    add(crumbs, [link('#/jobs', 'root'), chain.map((j) => [' / ', link('#/jobs?parent=' + j.id, j.title || String(j.id))])]);
    clear(groupCard);
    groupCard.append(h('div', { class: 'toolbar' }, badge(group.state), bar(group.progress), counters(group), eta(group),
      link('#/job/' + group.id, 'details'), actions(group)));
  }
  let first = true;
  return {
    refresh() {
      drawGroup().then(() => {
        if (first) { first = false; list.draw(); } else list.refresh();
      }).catch(fail);
    },
    stop() {},
  };
}

// ---- one job ----

function jobView(root, parts) {
  const id = Number(parts[1]);
  const ctl = new AbortController();
  const head = h('div', { class: 'card' });
  const why = h('div', { class: 'card why' });
  const deps = h('div', { class: 'card' });
  const runs = h('div', { class: 'card' });
  const log = h('pre', { class: 'log', id: 'log' });
  const follow = h('input', { type: 'checkbox', checked: true });
  root.append(head, h('div', { class: 'grid2' }, why, deps), runs,
    h('div', { class: 'card' }, h('h2', {}, 'Log ', h('label', { class: 'muted' }, follow, ' follow')), log));

  let lines = 0;
  (async () => {
    let next = 1;
    while (!ctl.signal.aborted) {
      try {
        const r = await api('GET', '/croft/v1/jobs/' + id + '/log' + qs({ from_line: next, limit: 1000, follow: 'true', wait: '20s' }),
          undefined, { signal: ctl.signal });
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
        for (const l of r.lines) {
          log.append(h('span', { class: l.stream }, l.text));
          if (++lines > LOG_DOM_LINES) { log.removeChild(log.firstChild); lines--; }
        }
        if (follow.checked && atEnd) log.scrollTop = log.scrollHeight;
        next = r.next_line;
        if (r.done && !r.lines.length) await sleep(2000, ctl.signal); // a retry may add lines later
      } catch (e) {
        if (ctl.signal.aborted) return;
        fail(e);
        await sleep(2000, ctl.signal);
      }
    }
  })();

  async function refresh() {
    const j = await api('GET', '/croft/v1/jobs/' + id, undefined, { signal: ctl.signal });
    clear(head);
    head.append(h('h1', {}, 'Job ' + j.id + ' ', badge(j.state), ' ', j.title || ''),
      h('div', { class: 'toolbar' }, bar(j.progress, j.state === 'finished' ? 'done' : ''), eta(j), actions(j),
        j.is_group ? link('#/jobs?parent=' + j.id, 'children (' + j.counters.children + ')') : null,
        j.parent ? link('#/jobs?parent=' + j.parent, 'its group ' + j.parent) : link('#/jobs', 'root jobs')),
      h('dl', { class: 'kv' }, [
        ['command', j.command], ['dir', j.dir], ['project', j.project], ['user', j.user], ['affinity', j.affinity],
        ['priority', j.priority], ['retry', j.retry], ['timeout', j.timeout_s ? j.timeout_s + ' s' : 'none'],
        ['tries', j.tries], ['exit code', j.exit_code], ['signal', j.signal], ['reason', j.reason], ['worker', j.worker],
        ['created', fmtTime(j.created)], ['started', fmtTime(j.started)], ['ended', fmtTime(j.ended)],
        ['counters', j.is_group ? JSON.stringify(j.counters) : ''],
        ['env', Object.entries(j.env || {}).map(([k, v]) => k + '=' + v).join('  ')],
      ].filter(([, v]) => v !== '' && v != null).map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])));

    const depJobs = await Promise.all((j.dependencies || []).slice(0, 100).map((d) =>
      api('GET', '/croft/v1/jobs/' + d).catch((e) => ({ id: d, state: '?', title: e.message }))));
    clear(deps);
    deps.append(h('h2', {}, 'Dependencies'), depJobs.length ?
      table(['job', 'state', 'title'], depJobs, (d) => [link('#/job/' + d.id, String(d.id)), badge(d.state), d.title]) :
      h('p', { class: 'muted' }, 'none'));

    const offset = Math.max(0, (j.tries || 0) - 100);
    const rs = await api('GET', '/croft/v1/jobs/' + id + '/runs' + qs({ offset, limit: 100 }));
    clear(runs);
    runs.append(h('h2', {}, 'Runs'), rs.length ? table(['try', 'state', 'worker', 'start', 'end', 'duration', 'exit code', 'signal', 'reason', 'progress'],
      rs.slice().reverse(), (r) => [r.try, badge(r.state), r.worker, fmtTime(r.start), fmtTime(r.end), fmtDur(r.duration_ms),
        r.exit_code == null ? '' : h('span', { class: r.exit_code === 0 ? 'ok' : 'bad' }, r.exit_code), r.signal || '', r.reason,
        Math.round(r.progress * 100) + '%']) : h('p', { class: 'muted' }, 'no run yet'));

    const reasons = whyWaiting(j);
    clear(why);
    why.append(h('h2', {}, 'Why is it waiting?'), reasons.length ?
      h('ul', { id: 'why' }, reasons.map((r) => h('li', {}, r))) : h('p', { class: 'muted', id: 'why' }, 'It is not waiting (' + j.state + ').'));
  }
  return { refresh: () => refresh().catch((e) => { if (!ctl.signal.aborted) fail(e); }), stop: () => ctl.abort() };
}


// whyWaiting lists what keeps a job that is not running from starting:
// the server's waiting_reason (computed from the state: paused, groups,
// dependencies, the workers that could run it), one reason per item.
function whyWaiting(j) {
  if (j.is_group && ['waiting', 'blocked', 'paused'].includes(j.state)) {
    return ['It is a group: its state is its jobs\u2019. Open its children to see why they wait.'];
  }
  return (j.waiting_reason || '').split('; ').filter(Boolean);
}

// ---- workers and hosts ----

function cpuOf(w) {
  try { return JSON.parse(w.cpu || '[]').map(Number); } catch (_) { return []; }
}

function cpuBars(loads) {
  const el = h('span', { class: 'cpu', title: 'CPU ' + loads.map((l) => Math.round(l) + '%').join(' ') });
  for (const l of loads) {
    const i = h('i', { class: l > 90 ? 'hot' : '' });
    i.style.height = Math.max(2, Math.min(100, l)) * 0.22 + 'px';
    el.append(i);
  }
  return el;
}

function workersView(root) {
  const body = h('div');
  root.append(body);
  const admin = async (path, name) => {
    try { await api('POST', path, [name]); say(path.replace('/api/', '') + ' ' + name); refresh(); } catch (e) { fail(e); }
  };
  const drain = async (name) => {
    try { await api('POST', '/croft/v1/workers/drain', { names: [name] }); say('draining ' + name); refresh(); } catch (e) { fail(e); }
  };
  async function refresh() {
    const [workers, hosts] = await Promise.all([api('GET', '/api/workers' + qs({ limit: 5000 })), api('GET', '/croft/v1/hosts' + qs({ limit: 5000 }))]);
    const slot = new Map();
    for (const ho of hosts) for (const s of ho.slots || []) slot.set(s.name, s);
    const wstate = { WORKING: 'running', WAITING: 'waiting', TIMEOUT: 'failed' };
    clear(body);
    body.append(h('div', { class: 'card', id: 'workers' }, h('h2', {}, 'Workers (' + workers.length + ')'),
      table(['name', 'state', 'enabled', 'current job', 'CPU', 'CPU %', 'memory used', 'affinity', 'done / failed', 'last ping', 'actions'], workers, (w) => {
        const s = slot.get(w.name) || {};
        const loads = cpuOf(w);
        const avg = loads.length ? loads.reduce((a, b) => a + b, 0) / loads.length : null;
        return [w.name, h('span', { class: 'state s-' + (wstate[w.state] || 'waiting') }, w.state), w.active ? 'yes' : h('span', { class: 'bad' }, 'disabled'),
          s.job ? link('#/job/' + s.job, String(s.job)) : '', cpuBars(loads),
          h('span', { class: 'cpu-text' }, avg == null ? '' : Math.round(avg) + '% of ' + loads.length),
          w.total_memory ? mib(w.total_memory - w.free_memory) + ' / ' + mib(w.total_memory) : '',
          w.affinity, w.finished + ' / ' + w.error, fmtTime(w.ping_time),
          h('span', { class: 'acts' },
            w.active ? h('button', { type: 'button', 'data-act': 'disable', onclick: () => admin('/api/stopworkers', w.name) }, 'disable') :
              h('button', { type: 'button', 'data-act': 'enable', onclick: () => admin('/api/startworkers', w.name) }, 'enable'),
            h('button', { type: 'button', 'data-act': 'drain', title: 'Finish the running job, take no new one (disable requeues it)', onclick: () => drain(w.name) }, 'drain'))];
      })),
    h('div', { class: 'card', id: 'hosts' }, h('h2', {}, 'Hosts (' + hosts.length + ')'),
      table(['host', 'slots', 'CPUs', 'CPU now', 'memory', 'projects', 'interpreters', 'registered', 'seen'], hosts, (ho) => [
        ho.name, (ho.slots || []).map((s) => h('span', { class: 'pill' }, s.name + ': ' + s.state + (s.job ? ' #' + s.job : ''))),
        ho.cpus, ho.live ? cpuBars(ho.live.cpu || []) : '', ho.live ? mib(ho.total_memory - ho.live.free_memory) + ' / ' + mib(ho.total_memory) : mib(ho.total_memory),
        (ho.projects || []).join(', '), (ho.interpreters || []).map((i) => i.name).join(', '),
        fmtTime(ho.last_registered), ho.live ? fmtTime(ho.live.seen) : ''])));
  }
  return { refresh: () => refresh().catch(fail), stop() {} };
}

// ---- sessions, templates, executions ----

function simpleList(root, title, cls, columns, path, row, params) {
  const list = new VList(cls, columns, (offset, limit) => api('GET', path + qs(Object.assign({}, params, { offset, limit }))), row);
  root.append(h('div', { class: 'card' }, h('h2', {}, title), list.el));
  let first = true;
  return {
    refresh() { if (first) { first = false; list.draw(); } else list.refresh(); },
    stop() {},
  };
}

async function post(path, body, msg) {
  try { await api('POST', path, body); say(msg); if (view) view.refresh(); } catch (e) { fail(e); }
}
async function del(path, msg) {
  if (!window.confirm(msg + '?')) return;
  try { await api('DELETE', path); say(msg); if (view) view.refresh(); } catch (e) { fail(e); }
}
function btn(label, fn, cls) { return h('button', { type: 'button', class: cls, onclick: (ev) => { ev.stopPropagation(); fn(); } }, label); }

function gridRow(tmpl, cells, onclick) {
  const r = h('div', { class: 'vrow', onclick }, cells.map((c) => h('span', {}, c)));
  r.style.gridTemplateColumns = tmpl;
  return r;
}

function sessionsView(root) {
  const cols = '240px 140px 80px 100px 140px 70px 60px 60px 160px 160px 1fr';
  const v = simpleList(root, 'Sessions', 'sessions', ['id', 'name', 'kind', 'project', 'host', 'state', 'busy', 'jobs', 'created', 'last activity', 'actions'],
    '/croft/v1/sessions', (s) => gridRow(cols, [s.id, s.name, s.kind, s.project, s.host ? s.host + ' (' + s.interpreter + ')' : '',
      s.state === 'open' ? h('span', { class: 'state s-running' }, 'open') : h('span', { class: 'state s-canceled' }, s.reason || 'closed'),
      s.busy ? 'busy' : 'idle', s.jobs, fmtTime(s.created), fmtTime(s.last_activity),
      h('span', { class: 'acts' }, s.kind === 'group' && s.state === 'open' ? btn('start', () => post('/croft/v1/sessions/' + s.id + '/start', undefined, 'started ' + s.id)) : null,
        s.state === 'open' ? btn('close', () => post('/croft/v1/sessions/' + s.id + '/close', undefined, 'closed ' + s.id)) :
          btn('delete', () => del('/croft/v1/sessions/' + s.id, 'delete session ' + s.id), 'danger'))],
    () => { location.hash = '#/session/' + s.id; }));
  root.querySelector('.vhead').style.gridTemplateColumns = cols;
  return v;
}

function sessionView(root, parts) {
  const id = parts[1];
  const head = h('div', { class: 'card' });
  root.append(head);
  const cols = '80px 2fr 100px 60px 80px 80px 160px';
  const v = simpleList(root, 'Its jobs', 'sjobs', ['job', 'title', 'state', 'tries', 'exit code', 'progress', 'created'],
    '/croft/v1/sessions/' + id + '/jobs', (j) => gridRow(cols, [j.id, j.title, badge(j.state), j.tries, j.exit_code == null ? '' : j.exit_code,
      Math.round(j.progress * 100) + '%', fmtTime(j.created)], () => { location.hash = '#/job/' + j.id; }));
  root.querySelector('.vhead').style.gridTemplateColumns = cols;
  return {
    refresh() {
      api('GET', '/croft/v1/sessions/' + id).then((s) => {
        clear(head);
        head.append(h('h1', {}, 'Session ' + (s.name || s.id)), h('dl', { class: 'kv' },
          [['id', s.id], ['kind', s.kind], ['project', s.project], ['state', s.state + (s.reason ? ' (' + s.reason + ')' : '')],
            ['host', s.host], ['interpreter', s.interpreter], ['busy', s.busy ? 'yes' : 'no'], ['created', fmtTime(s.created)],
            ['last activity', fmtTime(s.last_activity)], ['closed', fmtTime(s.closed)], ['inactive timeout', s.inactive_timeout + ' s']]
            .filter(([, x]) => x !== '' && x != null).map(([k, x]) => [h('dt', {}, k), h('dd', {}, String(x))])));
      }).catch(fail);
      v.refresh();
    },
    stop() {},
  };
}

function templatesView(root) {
  const cols = '240px 140px 100px 80px 2fr 80px 90px 160px 1fr';
  const v = simpleList(root, 'Templates', 'templates', ['id', 'name', 'project', 'type', 'command', 'runs', 'flags', 'updated', 'actions'],
    '/croft/v1/templates', (t) => gridRow(cols, [t.id, t.name, t.project, t.type, t.command, t.executions,
      [t.public ? 'public ' : '', t.protected ? 'protected' : ''].join(''), fmtTime(t.updated),
      h('span', { class: 'acts' }, btn('execute', () => post('/croft/v1/templates/' + t.id + '/execute', {}, 'executed ' + t.name)),
        btn('delete', () => del('/croft/v1/templates/' + t.id, 'delete template ' + t.name), 'danger'))],
    () => { location.hash = '#/executions?template=' + t.id; }));
  root.querySelector('.vhead').style.gridTemplateColumns = cols;
  return v;
}

function executionsView(root, parts, q) {
  const tmpl = q.get('template') || '';
  const cols = '240px 240px 100px 70px 100px 80px 140px 160px 160px 1fr';
  const v = simpleList(root, 'Executions' + (tmpl ? ' of template ' + tmpl : ''), 'executions',
    ['id', 'template', 'project', 'job', 'state', 'return', 'worker', 'created', 'ended', 'actions'],
    '/croft/v1/executions',
    (x) => gridRow(cols, [x.id, x.template, x.project, link('#/job/' + x.job_id, String(x.job_id)), badge(x.state),
      x.return_code == null ? '' : x.return_code, x.worker + (x.host ? ' @' + x.host : ''), fmtTime(x.created), fmtTime(x.end_time),
      h('span', { class: 'acts' }, x.ended ? btn('delete', () => del('/croft/v1/executions/' + x.id, 'delete execution ' + x.id), 'danger') :
        btn('cancel', () => post('/croft/v1/executions/' + x.id + '/cancel', undefined, 'canceled ' + x.id)))],
    () => { location.hash = '#/job/' + x.job_id; }), { template: tmpl });
  root.querySelector('.vhead').style.gridTemplateColumns = cols;
  return v;
}

// ---- cluster ----

function clusterView(root) {
  const body = h('div');
  root.append(body);
  async function refresh() {
    const s = await api('GET', '/cluster/status');
    clear(body);
    const healthy = s.leader_id && !s.storage_error;
    body.append(h('div', { class: 'card', id: 'cluster' }, h('h2', {}, 'Cluster ', h('span', { class: healthy ? 'ok' : 'bad' }, healthy ? 'healthy' : 'unhealthy')),
      h('dl', { class: 'kv' }, [['this node', s.node_id + ' (' + s.state + ')'], ['leader', s.leader_id ? s.leader_id + ' at ' + s.leader_http : 'none (election)'],
        ['term', s.term], ['indexes', 'applied ' + s.applied_index + ', commit ' + s.commit_index + ', last ' + s.last_index],
        ['storage', s.storage_error ? s.storage_error + ' at ' + fmtTime(s.storage_error_at) : 'ok'],
        ['disk', s.disk_total_bytes ? mib(Math.round(s.disk_free_bytes / 1048576)) + ' free of ' + mib(Math.round(s.disk_total_bytes / 1048576)) : ''],
        ['raft db', s.raft_db_bytes ? mib(Math.round(s.raft_db_bytes / 1048576)) : ''], ['access control', s.insecure ? 'OFF (--insecure)' : 'on']]
        .map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]))),
    h('div', { class: 'card' }, h('h2', {}, 'Members (' + (s.members || []).length + ')'),
      table(['id', 'role', 'suffrage', 'HTTP', 'Raft', 'caught up', 'last contact', 'lag (entries)'], s.members || [], (m) => [
        m.id, m.leader ? h('b', {}, 'leader') : 'follower', m.suffrage, m.http_addr, m.raft_addr,
        m.leader ? '' : m.caught_up == null ? '?' : m.caught_up ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'bad' }, 'no'),
        m.last_contact_ms == null ? '' : m.last_contact_ms + ' ms', m.last_log == null || m.leader ? '' : Math.max(0, s.last_index - m.last_log)])));
  }
  return { refresh: () => refresh().catch(fail), stop() {} };
}

// ---- start ----

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn(document.getElementById('token').value);
  });
  document.getElementById('logout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', show);
  if (token) api('GET', '/cluster/whoami').then((w) => { whoami = w; show(); }).catch(() => {});
  show();
});
