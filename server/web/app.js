// allot web UI. Plain JavaScript, no build step, no third-party code.
//
// Every piece of server data reaches the page through textContent or
// attributes (see el()), never innerHTML, so a group named "<img onerror>"
// is just text. The page follows /v1/events (read with fetch so the bearer
// token can be sent) and refetches state, debounced, on every event.
'use strict';

(() => {
  const TOKEN_KEY = 'allot.token';
  const MOVED_MS = 2500;        // how long a node that changed groups stays highlighted
  const REFRESH_DEBOUNCE_MS = 120;
  const POLL_MS = 5000;         // safety net and "last seen" clock, even while live
  const MAX_EVENTS = 60;

  const state = {
    status: null,
    groups: [],
    schedule: [],
    dev: false,
    devNodes: [],
    lastAssign: null,           // Map node ID -> "g1,g2" from the previous status
    movedUntil: new Map(),      // node ID -> ms timestamp
    live: false,
    namespace: '',              // from X-Allot-Namespace or status.namespace
    usage: {},                  // group name -> its minutes of the last hour
  };

  // ---------- DOM helpers ----------

  const $ = (id) => document.getElementById(id);

  // el builds an element. attrs: class, testid, on<event>, dataset-free plain
  // attributes; children: nodes or strings (strings become text nodes).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'testid') node.dataset.testid = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function replaceChildren(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  function toast(message, kind) {
    const t = el('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status' }, message);
    $('toasts').append(t);
    setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
  }

  const delay = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) h.Authorization = 'Bearer ' + tok;
    return h;
  }

  // api calls the JSON API. body: undefined, a string (sent as-is with
  // contentType) or a value (sent as JSON). raw: return the response text.
  async function api(method, path, body, opts = {}) {
    const headers = authHeaders({ Accept: opts.raw ? '*/*' : 'application/json' });
    let payload;
    if (typeof body === 'string') {
      payload = body;
      headers['Content-Type'] = opts.contentType || 'application/yaml';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const res = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
    const ns = res.headers.get('X-Allot-Namespace');
    if (ns) state.namespace = ns;
    const text = await res.text();
    if (!res.ok) {
      let code = 'http_' + res.status;
      let message = text.trim() || res.statusText;
      try {
        const e = JSON.parse(text).error;
        if (e) { code = e.code || code; message = e.message || message; }
      } catch (_) { /* not JSON */ }
      if (res.status === 401 || res.status === 403) askToken(res.status, message);
      throw new ApiError(res.status, code, message);
    }
    if (opts.raw) return { text, type: res.headers.get('Content-Type') || '' };
    if (!text) return null;
    return JSON.parse(text);
  }

  const enc = encodeURIComponent;

  // ---------- token ----------

  let tokenPrompted = false;
  let tokenWaiters = [];

  function askToken(status, message) {
    if (tokenPrompted) return;
    tokenPrompted = true;
    const why = status === 403
      ? 'This token may not do that (' + message + '). Enter an admin token.'
      : 'This server needs a token. It is kept for this browser tab only.';
    $('dlg-token-text').textContent = why;
    const d = $('dlg-token');
    if (!d.open) d.showModal();
  }

  function tokenChanged() {
    tokenPrompted = false;
    const waiters = tokenWaiters;
    tokenWaiters = [];
    waiters.forEach((w) => w());
    restartEvents();
    refreshAll();
  }

  const waitForToken = () => new Promise((r) => tokenWaiters.push(r));

  // ---------- formatting ----------

  function fmtNum(n) {
    if (n === undefined || n === null || Number.isNaN(n)) return '–';
    return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, '');
  }

  // fmtShare is each holder's part of every limit of the quota text, e.g.
  // "150/m, 22500 tokens/m (25%)", or only the percentage without a quota.
  function fmtShare(share, quota) {
    if (share === undefined || share === null || !share) return '–';
    const pct = fmtNum(share * 100) + '%';
    const parts = [];
    for (const part of String(quota || '').split(',')) {
      const m = /^\s*(\d+(?:\.\d+)?)\s*(tokens?\s*)?\/\s*([a-z]+)/i.exec(part);
      if (m) parts.push(fmtNum(parseFloat(m[1]) * share) + (m[2] ? ' tokens' : '') + '/' + m[3]);
    }
    return parts.length ? parts.join(', ') + ' (' + pct + ')' : pct;
  }

  function ago(ts) {
    if (!ts) return '–';
    const t = Date.parse(ts);
    if (Number.isNaN(t)) return String(ts);
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    return Math.floor(s / 3600) + 'h ago';
  }

  function fmtTime(ts) {
    if (!ts) return '–';
    const d = new Date(ts);
    return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
  }

  function stateBadge(s) {
    return el('span', { class: 'badge ' + (s || ''), testid: 'state' }, s || '–');
  }

  // ---------- key health ----------

  // countdown is a span that tickCountdowns keeps at "12s" until `until`
  // (ms) has passed; then it shows `done`.
  function countdown(until, prefix, done) {
    return el('span', { class: 'countdown', 'data-until': String(until), 'data-prefix': prefix, 'data-done': done || '' },
      countdownText(until, prefix, done));
  }

  function countdownText(until, prefix, done) {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) return done || '';
    const text = left >= 3600 ? Math.floor(left / 3600) + 'h' + String(Math.floor(left % 3600 / 60)).padStart(2, '0') + 'm'
      : left >= 60 ? Math.floor(left / 60) + 'm' + String(left % 60).padStart(2, '0') + 's' : left + 's';
    return prefix + text;
  }

  function tickCountdowns() {
    for (const c of document.querySelectorAll('.countdown[data-until]')) {
      c.textContent = countdownText(Number(c.dataset.until), c.dataset.prefix || '', c.dataset.done || '');
    }
  }

  // healthNote says why a group is suspended or probing, or how long its
  // shared cooldown still runs (a 429 from the upstream).
  function healthNote(g) {
    const h = g.health;
    if (!h) return null;
    const parts = [];
    const cooling = h.cooling_until ? Date.parse(h.cooling_until) : 0;
    if (cooling > Date.now()) parts.push(el('div', { class: 'health cooling', testid: 'group-cooling' }, countdown(cooling, 'cooling ', 'cooled down')));
    if (h.state === 'suspended' || h.state === 'probing') {
      if (h.reason) parts.push(el('div', { class: 'health reason', testid: 'group-reason', title: h.reason }, h.reason));
      const probe = h.next_probe ? Date.parse(h.next_probe) : 0;
      if (h.state === 'suspended') {
        parts.push(el('div', { class: 'health', testid: 'group-probe' }, probe ? countdown(probe, 'probe in ', 'probe due') : 'until resumed'));
      }
    } else if (h.failures > 0) {
      parts.push(el('div', { class: 'health', testid: 'group-failures' }, h.failures + ' failure' + (h.failures === 1 ? '' : 's') + ' (eject after ' + (g.eject_after || '3/1m') + ')'));
    }
    return parts;
  }

  // healthButton suspends an active group or resumes a suspended/probing one.
  function healthButton(g) {
    if (g.state === 'suspended' || g.state === 'probing') {
      return el('button', { type: 'button', class: 'small', testid: 'group-resume-' + g.name, onclick: () => resumeGroup(g.name) }, 'Resume');
    }
    return el('button', { type: 'button', class: 'small', testid: 'group-suspend-' + g.name, disabled: g.state !== 'active', onclick: () => suspendGroup(g.name) }, 'Suspend');
  }

  async function suspendGroup(name) {
    if (!await confirmBox('Suspend ' + name + '?', 'No node holds "' + name + '" until you resume it; its holders get other groups now.', 'Suspend')) return;
    await run(() => api('POST', '/v1/groups/' + enc(name) + '/suspend', { reason: 'suspended in the web UI' }), 'suspended ' + name);
  }

  async function resumeGroup(name) {
    await run(() => api('POST', '/v1/groups/' + enc(name) + '/resume', {}), 'resumed ' + name);
  }

  // parseLines reads "key=value" lines; blank lines and # comments are skipped.
  function parseLines(text) {
    const out = {};
    const lines = (text || '').split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line || line.startsWith('#')) continue;
      const eq = line.indexOf('=');
      if (eq <= 0) throw new Error('line ' + (i + 1) + ': expected key=value');
      out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
    }
    return out;
  }

  const splitList = (s) => (s || '').split(',').map((x) => x.trim()).filter(Boolean);

  function configLines(config) {
    return Object.keys(config || {}).sort().map((k) => k + '=' + config[k]).join('\n');
  }

  function configView(g) {
    const secret = new Set(g.secret_keys || []);
    const keys = Object.keys(g.config || {}).sort();
    if (!keys.length) return el('span', { class: 'muted' }, '—');
    return el('div', { class: 'config' }, keys.map((k) => el('div', { title: k + '=' + g.config[k] },
      k, '=', secret.has(k) ? [el('span', { class: 'secret' }, g.config[k]), ' ', el('span', { class: 'secret-tag' }, 'secret')] : g.config[k])));
  }

  // localISO converts a datetime-local value to RFC 3339 with the browser's
  // offset, so the server gets an unambiguous instant.
  function localISO(v) {
    if (!v) return '';
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw new Error('bad time: ' + v);
    return d.toISOString();
  }

  // ---------- loading ----------

  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;

  function scheduleRefresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => { refreshTimer = null; refreshAll(); }, REFRESH_DEBOUNCE_MS);
  }

  async function refreshAll() {
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      const [status, groups, schedule] = await Promise.all([
        api('GET', '/v1/status'),
        api('GET', '/v1/groups'),
        api('GET', '/v1/schedule').catch(() => []),
      ]);
      state.groups = listOf(groups, 'groups');
      state.schedule = listOf(schedule, 'schedule');
      await loadUsage();
      noteMoves(status);
      state.status = status;
      await loadDev();
      render();
    } catch (e) {
      if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) {
        toast('refresh failed: ' + e.message, 'error');
      }
    } finally {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
    }
  }

  // listOf accepts either a bare array or {key: [...]}.
  function listOf(v, key) {
    if (Array.isArray(v)) return v;
    if (v && Array.isArray(v[key])) return v[key];
    if (v && Array.isArray(v.items)) return v.items;
    return [];
  }

  // loadUsage reads the last hour of every group that has limits (the
  // regular refresh, every few seconds, keeps the sparklines live).
  async function loadUsage() {
    const limited = state.groups.filter((g) => g.state !== 'retired' && (g.limits || []).length);
    const got = await Promise.all(limited.map((g) =>
      api('GET', '/v1/groups/' + encodeURIComponent(g.name) + '/usage?since=1h').catch(() => null)));
    const usage = {};
    limited.forEach((g, i) => { if (Array.isArray(got[i])) usage[g.name] = got[i]; });
    state.usage = usage;
  }

  async function loadDev() {
    try {
      const res = await fetch('/v1/dev/nodes', { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' });
      if (!res.ok) { state.dev = false; return; }
      state.devNodes = listOf(await res.json(), 'nodes');
      state.dev = true;
    } catch (_) {
      state.dev = false;
    }
  }

  // noteMoves marks every node whose groups changed since the last status.
  function noteMoves(status) {
    const now = Date.now();
    const next = new Map();
    for (const n of status.nodes || []) next.set(n.id, (n.groups || []).slice().sort().join(','));
    if (state.lastAssign) {
      for (const [id, gs] of next) {
        if (state.lastAssign.get(id) !== gs) state.movedUntil.set(id, now + MOVED_MS);
      }
    }
    for (const [id, until] of state.movedUntil) if (until < now || !next.has(id)) state.movedUntil.delete(id);
    state.lastAssign = next;
  }

  // ---------- rendering ----------

  // Sections are rebuilt only when what they show changed, so buttons under
  // the pointer are not replaced by identical ones on every event.
  const shown = {};

  function changed(section, value) {
    const key = JSON.stringify(value);
    if (shown[section] === key) return false;
    shown[section] = key;
    return true;
  }

  function render() {
    const s = state.status || {};
    const now = Date.now();
    renderHeader();
    const moved = [...state.movedUntil].filter(([, until]) => until > now).map(([id]) => id).sort();
    if (changed('map', [s.groups, s.standby, (s.nodes || []).map((n) => [n.id, n.ip]), moved])) renderMap();
    if (changed('groups', [state.groups, s.groups, state.usage])) renderGroups();
    if (changed('nodes', [(s.nodes || []).map((n) => [n.id, n.ip, n.groups, ago(n.last_seen)]), s.standby])) renderNodes();
    if (changed('schedule', state.schedule)) renderSchedule();
    if (changed('dev', [state.dev, state.devNodes])) renderDev();
  }

  function renderHeader() {
    const s = state.status || {};
    $('namespace').textContent = s.namespace || state.namespace || 'default';
    $('epoch').textContent = s.epoch !== undefined ? String(s.epoch) : '–';
    const b = $('balanced');
    b.textContent = s.balanced ? 'balanced' : 'unbalanced';
    b.className = 'badge ' + (s.balanced ? 'ok' : 'warn');
    // How serve stores secret values (issue 25): plain text is said plainly.
    const sec = $('secrets-at-rest');
    const enc = s.secrets_at_rest === 'encrypted';
    sec.textContent = enc ? 'encrypted at rest' : s.secrets_at_rest === 'plaintext' ? 'plain text in Redis' : '–';
    sec.className = 'badge ' + (enc ? 'ok' : 'warn');
    sec.title = enc ? 'secret values are stored encrypted (ALLOT_SECRET_KEYS)' : 'secret values are stored unencrypted: set ALLOT_SECRET_KEYS to encrypt them';
  }

  function nodeChip(id, ipOf, extraClass) {
    const moved = (state.movedUntil.get(id) || 0) > Date.now();
    const ip = ipOf.get(id);
    return el('span', {
      class: 'chip' + (moved ? ' moved' : '') + (extraClass ? ' ' + extraClass : ''),
      testid: 'chip-' + id, 'data-node': id, 'data-moved': moved ? 'true' : 'false',
      title: ip ? id + ' (' + ip + ')' : id,
    }, id, ip ? el('span', { class: 'ip' }, ip) : null);
  }

  function renderMap() {
    const s = state.status || {};
    const map = $('map');
    const ipOf = new Map((s.nodes || []).map((n) => [n.id, n.ip]));
    const groups = (s.groups || []).filter((g) => g.state !== 'retired');
    const cols = groups.map((g) => {
      const nodes = (g.nodes || []).slice().sort();
      const under = g.target !== undefined && nodes.length < g.target;
      return el('div', { class: 'map-col ' + (g.state || ''), testid: 'map-col-' + g.name, 'data-group': g.name },
        el('header', {}, el('strong', { title: g.name }, g.name), stateBadge(g.state)),
        el('div', { class: 'meta' },
          el('span', { class: under ? 'under' : '', testid: 'map-count' }, nodes.length + '/' + fmtNum(g.target)),
          ' nodes · w ', fmtNum(g.weight),
          g.max_nodes ? ' · max ' + g.max_nodes : '',
          g.share ? ' · ' + fmtShare(g.share, g.quota) + ' each' : ''),
        el('div', { class: 'chips' }, nodes.map((id) => nodeChip(id, ipOf))));
    });
    const standby = (s.standby || []).slice().sort();
    cols.push(el('div', { class: 'map-col standby', testid: 'map-standby', 'data-group': '' },
      el('header', {}, el('strong', {}, 'standby'), el('span', { class: 'badge' }, String(standby.length))),
      el('div', { class: 'meta' }, 'live nodes with no group'),
      el('div', { class: 'chips' }, standby.map((id) => nodeChip(id, ipOf)))));
    if (!groups.length && !(s.nodes || []).length) {
      replaceChildren(map, el('div', { class: 'map-empty' }, 'No groups and no nodes yet. Add a group to start.'));
      return;
    }
    replaceChildren(map, cols);
  }

  function renderGroups() {
    const byName = new Map(((state.status || {}).groups || []).map((g) => [g.name, g]));
    const rows = state.groups.slice().sort((a, b) => a.name.localeCompare(b.name)).map((g) => {
      const st = byName.get(g.name) || {};
      const holders = g.nodes || st.nodes || [];
      const target = st.target;
      const quota = g.quota || st.quota || '';
      const live = g.state !== 'retired';
      return el('tr', { class: g.state || '', testid: 'group-row-' + g.name, 'data-group': g.name },
        el('td', { class: 'name' }, g.name),
        el('td', {}, stateBadge(g.state), healthNote(g)),
        el('td', {}, 'v' + g.version),
        el('td', { class: 'num' }, fmtNum(g.weight)),
        el('td', { class: 'num' }, g.max_nodes ? String(g.max_nodes) : '∞'),
        el('td', { class: 'mono' }, limitsView(g)),
        el('td', {}, sparkline(g)),
        el('td', { testid: 'group-nodes' }, holders.length + ' / ' + (target === undefined ? '–' : fmtNum(target))),
        el('td', {}, fmtShare(st.share, quota)),
        el('td', {}, configView(g)),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'small', testid: 'group-edit-' + g.name, disabled: !live, onclick: () => openGroupDialog(g) }, 'Edit'),
          el('button', { type: 'button', class: 'small', testid: 'group-history-' + g.name, onclick: () => openHistory(g.name) }, 'History'),
          healthButton(g),
          el('button', { type: 'button', class: 'small', testid: 'group-retire-' + g.name, disabled: g.state !== 'active', onclick: () => retireGroup(g.name) }, 'Retire'),
          el('button', { type: 'button', class: 'small link-danger', testid: 'group-delete-' + g.name, onclick: () => deleteGroup(g.name) }, 'Delete')));
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 11, class: 'empty' }, 'No groups.')));
    replaceChildren($('groups-body'), rows);
  }

  // ---------- limits and usage ----------

  const PER_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
  const SPARK_W = 120;
  const SPARK_H = 28;

  function limitText(l) {
    return l.rate + (l.kind === 'tokens' ? ' tokens' : '') + '/' + l.per + (l.burst && l.burst !== l.rate ? ' burst ' + l.burst : '');
  }

  // limitUsed is the fraction of limit l that minute m took (its count over
  // the limit's rate per minute), as the server's `used` is computed.
  function limitUsed(l, m) {
    const perMinute = l.rate * 60 / (PER_SECONDS[l.per] || 60);
    const count = l.kind === 'tokens' ? (m.tokens || 0) : (m.requests || 0);
    return perMinute > 0 ? count / perMinute : 0;
  }

  // minutesOf is the group's last hour, one entry per minute (oldest
  // first, the current minute last), zero where nothing was used.
  function minutesOf(name) {
    const byMinute = new Map((state.usage[name] || []).map((m) => [Math.floor(Date.parse(m.minute) / 60000), m]));
    const now = Math.floor(Date.now() / 60000);
    const out = [];
    for (let i = now - 59; i <= now; i++) out.push(byMinute.get(i) || {});
    return out;
  }

  // limitsView lists every limit of g with the share of it used in the last
  // full minute.
  function limitsView(g) {
    const limits = g.limits || [];
    if (!limits.length) return g.quota || '—';
    const last = minutesOf(g.name)[58];
    return el('div', { class: 'limits' }, limits.map((l, i) => {
      const used = limitUsed(l, last);
      return el('div', { class: 'limit' + (used >= 1 ? ' over' : used >= 0.8 ? ' near' : ''), testid: 'limit-' + g.name + '-' + i,
        title: 'used in the last full minute' }, limitText(l), el('span', { class: 'muted' }, ' · ' + fmtNum(used * 100) + '%'));
    }));
  }

  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // sparkline draws the group's last hour: per minute the highest fraction
  // of any limit used, against a line at 100% (the limit).
  function sparkline(g) {
    const limits = g.limits || [];
    if (!limits.length || g.state === 'retired') return el('span', { class: 'muted' }, '—');
    const ratios = minutesOf(g.name).map((m) => Math.max(...limits.map((l) => limitUsed(l, m))));
    const top = Math.max(1.25, ...ratios);
    const y = (r) => (SPARK_H - 1 - (r / top) * (SPARK_H - 2)).toFixed(1);
    const x = (i) => (i * (SPARK_W - 1) / (ratios.length - 1)).toFixed(1);
    const box = svg('svg', { class: 'spark', width: SPARK_W, height: SPARK_H, viewBox: '0 0 ' + SPARK_W + ' ' + SPARK_H, role: 'img' });
    box.append(svg('line', { class: 'spark-limit', x1: 0, x2: SPARK_W, y1: y(1), y2: y(1) }));
    box.append(svg('polyline', { class: 'spark-line', points: ratios.map((r, i) => x(i) + ',' + y(r)).join(' ') }));
    const peak = Math.max(...ratios);
    const wrap = el('span', { class: 'spark-wrap', testid: 'spark-' + g.name, 'data-points': String(ratios.length),
      'data-peak': peak.toFixed(3), 'data-last': ratios[ratios.length - 1].toFixed(3),
      title: 'last hour, highest share of any limit per minute; the line is the limit (peak ' + fmtNum(peak * 100) + '%)' });
    wrap.append(box);
    return wrap;
  }

  function renderNodes() {
    const nodes = ((state.status || {}).nodes || []).slice().sort((a, b) => a.id.localeCompare(b.id));
    const standby = new Set((state.status || {}).standby || []);
    $('node-count').textContent = nodes.length + ' live';
    const rows = nodes.map((n) => el('tr', { testid: 'node-row-' + n.id, 'data-node': n.id },
      el('td', { class: 'mono' }, n.id),
      el('td', { class: 'mono' }, n.ip || '—'),
      el('td', {}, (n.groups || []).length
        ? n.groups.map((g) => el('span', { class: 'tag' }, g))
        : el('span', { class: 'muted' }, standby.has(n.id) ? 'standby' : '—')),
      el('td', { class: 'muted', title: n.last_seen || '' }, ago(n.last_seen))));
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'No live nodes.')));
    replaceChildren($('nodes-body'), rows);
  }

  function renderSchedule() {
    const items = state.schedule.slice().sort((a, b) => String(a.at).localeCompare(String(b.at)));
    const list = items.map((s) => el('li', { testid: 'schedule-' + s.id },
      el('span', {}, el('strong', { class: 'mono' }, s.op), ' ', el('span', { class: 'mono' }, s.group),
        el('span', { class: 'muted' }, ' at ' + fmtTime(s.at))),
      el('button', { type: 'button', class: 'small', testid: 'schedule-cancel-' + s.id, onclick: () => cancelSchedule(s) }, 'Cancel')));
    if (!list.length) list.push(el('li', { class: 'muted' }, 'Nothing scheduled.'));
    replaceChildren($('schedule-list'), list);
  }

  function devNodeRunning(n) {
    if (typeof n.running === 'boolean') return n.running;
    if (typeof n.stopped === 'boolean') return !n.stopped;
    if (typeof n.alive === 'boolean') return n.alive;
    return n.state !== 'stopped';
  }

  function renderDev() {
    $('dev-panel').hidden = !state.dev;
    if (!state.dev) return;
    const items = state.devNodes.slice().sort((a, b) => String(a.id).localeCompare(String(b.id))).map((n) => {
      const running = devNodeRunning(n);
      return el('li', { testid: 'dev-node-' + n.id, 'data-running': running ? 'true' : 'false' },
        el('span', {}, el('span', { class: 'who' }, n.id), ' ',
          el('span', { class: 'badge ' + (running ? 'ok' : 'bad') }, running ? 'running' : 'stopped'),
          running && (n.groups || []).length ? el('span', { class: 'muted' }, ' ' + n.groups.join(', ')) : null),
        running
          ? el('button', { type: 'button', class: 'small', testid: 'dev-stop-' + n.id, onclick: () => devAction(n.id, 'stop') }, 'Stop')
          : el('button', { type: 'button', class: 'small', testid: 'dev-start-' + n.id, onclick: () => devAction(n.id, 'start') }, 'Start'));
    });
    if (!items.length) items.push(el('li', { class: 'muted' }, 'No demo nodes.'));
    replaceChildren($('dev-list'), items);
  }

  // ---------- events (SSE over fetch) ----------

  let eventsCtrl = null;

  function setLive(live, text) {
    state.live = live;
    const l = $('live');
    l.dataset.live = live ? 'true' : 'false';
    $('live-text').textContent = text || (live ? 'live' : 'reconnecting');
  }

  function restartEvents() {
    if (eventsCtrl) eventsCtrl.abort();
  }

  async function eventsLoop() {
    let backoff = 500;
    for (;;) {
      const ctrl = new AbortController();
      eventsCtrl = ctrl;
      try {
        const res = await fetch('/v1/events', {
          headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store',
        });
        if (res.status === 401 || res.status === 403) {
          setLive(false, 'needs token');
          askToken(res.status, 'events');
          await waitForToken();
          continue;
        }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        setLive(true);
        backoff = 500;
        scheduleRefresh(); // catch up on anything missed while disconnected
        await readEvents(res.body, onEvent);
      } catch (_) {
        // fall through to the reconnect below
      }
      setLive(false);
      if (!ctrl.signal.aborted) {
        await delay(backoff);
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  }

  // readEvents parses a text/event-stream body and calls fn(type, data) per event.
  async function readEvents(body, fn) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let type = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length || type) fn(type || 'message', data.join('\n'));
          type = '';
          data = [];
        } else if (line.startsWith(':')) {
          // comment / keep-alive
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') type = val;
          else if (field === 'data') data.push(val);
        }
      }
    }
  }

  function onEvent(type, data) {
    let ev = {};
    try { ev = JSON.parse(data); } catch (_) { /* keep it empty */ }
    const t = ev.type || type;
    if (t === 'ping' || t === 'hello' || t === 'message' && !data) return;
    logEvent(t, ev);
    scheduleRefresh();
  }

  function logEvent(type, ev) {
    const at = ev.at ? new Date(ev.at) : new Date();
    const parts = [];
    if (ev.group) parts.push(ev.group);
    if (ev.node) parts.push('node ' + ev.node);
    if (ev.epoch) parts.push('epoch ' + ev.epoch);
    if (ev.version) parts.push('v' + ev.version);
    const li = el('li', {}, el('span', { class: 't' }, at.toLocaleTimeString()),
      el('span', { class: 'ty' }, type), el('span', {}, parts.join(' · ')));
    const log = $('event-log');
    log.prepend(li);
    while (log.children.length > MAX_EVENTS) log.lastElementChild.remove();
  }

  // ---------- actions ----------

  async function run(fn, okText) {
    try {
      const r = await fn();
      if (okText) toast(okText);
      scheduleRefresh();
      return r;
    } catch (e) {
      toast(e.message, 'error');
      return undefined;
    }
  }

  function confirmBox(title, text, okLabel) {
    return new Promise((resolve) => {
      const d = $('dlg-confirm');
      $('dlg-confirm-title').textContent = title;
      $('dlg-confirm-text').textContent = text;
      $('confirm-ok').textContent = okLabel || 'Confirm';
      d.returnValue = '';
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
    });
  }

  async function retireGroup(name) {
    if (!await confirmBox('Retire ' + name + '?', 'New nodes stop getting "' + name + '" and its holders move off; it becomes retired once no node holds it.', 'Retire')) return;
    await run(() => api('POST', '/v1/groups/' + enc(name) + '/retire', {}), 'retiring ' + name);
  }

  async function deleteGroup(name) {
    if (!await confirmBox('Delete ' + name + '?', 'The group "' + name + '" is removed at once and its nodes are reassigned. Its history is kept only in exports you made.', 'Delete')) return;
    await run(() => api('DELETE', '/v1/groups/' + enc(name)), 'deleted ' + name);
  }

  async function cancelSchedule(s) {
    if (!await confirmBox('Cancel scheduled change?', s.op + ' ' + s.group + ' at ' + fmtTime(s.at), 'Cancel change')) return;
    await run(() => api('DELETE', '/v1/schedule/' + enc(s.id)), 'cancelled');
  }

  async function devAction(id, what) {
    await run(() => api('POST', '/v1/dev/nodes/' + enc(id) + '/' + what, {}), what === 'stop' ? 'stopped ' + id : 'started ' + id);
  }

  // ---------- group dialog (add and update) ----------

  let editing = null; // the group being updated, null when adding

  function openGroupDialog(g) {
    editing = g || null;
    const f = $('form-group');
    f.reset();
    $('dlg-group-error').textContent = '';
    $('dlg-group-title').textContent = g ? 'Update ' + g.name + ' (v' + g.version + ')' : 'Add group';
    $('dlg-group-submit').textContent = g ? 'Update' : 'Add';
    $('dlg-group-secret-hint').hidden = !(g && (g.secret_keys || []).length);
    $('dlg-group-at-row').hidden = !g;
    f.elements.name.readOnly = !!g;
    if (g) {
      f.elements.name.value = g.name;
      f.elements.weight.value = g.weight ?? '';
      f.elements.max_nodes.value = g.max_nodes ?? '';
      f.elements.quota.value = g.quota || '';
      f.elements.config.value = configLines(g.config);
      f.elements.secrets.value = (g.secret_keys || []).join(', ');
    }
    $('dlg-group').showModal();
    (g ? f.elements.weight : f.elements.name).focus();
  }

  function numOrUndef(v, int) {
    if (v === '' || v === undefined) return undefined;
    const n = int ? parseInt(v, 10) : parseFloat(v);
    if (Number.isNaN(n)) throw new Error('not a number: ' + v);
    return n;
  }

  async function submitGroup(ev) {
    ev.preventDefault();
    const f = $('form-group');
    const err = $('dlg-group-error');
    err.textContent = '';
    let body;
    let path;
    let method;
    try {
      const config = parseLines(f.elements.config.value);
      const secrets = splitList(f.elements.secrets.value);
      const weight = numOrUndef(f.elements.weight.value);
      const maxNodes = numOrUndef(f.elements.max_nodes.value, true);
      const quota = f.elements.quota.value.trim();
      if (!editing) {
        method = 'POST';
        path = '/v1/groups';
        body = { name: f.elements.name.value.trim(), config, secret_keys: secrets };
        if (weight !== undefined) body.weight = weight;
        if (maxNodes !== undefined) body.max_nodes = maxNodes;
        if (quota) body.quota = quota;
      } else {
        // Send only what changed: masked secret values come back unchanged
        // and must never be written over the real ones.
        const old = editing.config || {};
        const set = {};
        for (const [k, v] of Object.entries(config)) if (old[k] !== v) set[k] = v;
        const unset = Object.keys(old).filter((k) => !(k in config));
        const oldSecrets = new Set(editing.secret_keys || []);
        const newSecrets = secrets.filter((k) => !oldSecrets.has(k));
        for (const k of newSecrets) if (!(k in set) && k in config) set[k] = config[k];
        body = {};
        if (Object.keys(set).length) body.set = set;
        if (unset.length) body.unset = unset;
        if (newSecrets.length) body.secret = newSecrets;
        if (weight !== undefined && weight !== editing.weight) body.weight = weight;
        if (maxNodes !== undefined && maxNodes !== editing.max_nodes) body.max_nodes = maxNodes;
        if (quota !== (editing.quota || '')) body.quota = quota;
        if (!Object.keys(body).length) throw new Error('nothing changed');
        const at = localISO(f.elements.at.value);
        if (at) body.at = at;
        else body.if_version = editing.version; // never overwrite a change made meanwhile
        method = 'PATCH';
        path = '/v1/groups/' + enc(editing.name);
      }
    } catch (e) {
      err.textContent = e.message;
      return;
    }
    try {
      await api(method, path, body);
      $('dlg-group').close();
      toast(editing ? (body.at ? 'scheduled update of ' : 'updated ') + editing.name : 'added ' + body.name);
      scheduleRefresh();
    } catch (e) {
      err.textContent = e.message;
    }
  }

  // ---------- history ----------

  async function openHistory(name) {
    const d = $('dlg-history');
    $('dlg-history-title').textContent = 'History of ' + name;
    $('dlg-history-error').textContent = '';
    replaceChildren($('history-body'), el('tr', {}, el('td', { colspan: 9, class: 'empty' }, 'loading…')));
    if (!d.open) d.showModal();
    try {
      const versions = listOf(await api('GET', '/v1/groups/' + enc(name) + '/history'), 'history');
      const current = versions.length ? Math.max(...versions.map((v) => v.version)) : 0;
      const rows = versions.map((v) => el('tr', { class: v.version === current ? 'current' : '', testid: 'history-v' + v.version },
        el('td', { class: 'mono' }, 'v' + v.version),
        el('td', {}, stateBadge(v.state)),
        el('td', { class: 'num' }, fmtNum(v.weight)),
        el('td', { class: 'num' }, v.max_nodes ? String(v.max_nodes) : '∞'),
        el('td', { class: 'mono' }, v.quota || '—'),
        el('td', {}, configView(v)),
        el('td', { class: 'muted' }, fmtTime(v.updated)),
        el('td', { class: 'muted' }, v.updated_by || ''),
        el('td', { class: 'actions' }, v.version === current ? el('span', { class: 'muted' }, 'current')
          : el('button', { type: 'button', class: 'small', testid: 'rollback-v' + v.version, onclick: () => rollback(name, v.version) }, 'Roll back'))));
      if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 9, class: 'empty' }, 'No history.')));
      replaceChildren($('history-body'), rows);
    } catch (e) {
      $('dlg-history-error').textContent = e.message;
    }
  }

  async function rollback(name, version) {
    try {
      const g = await api('POST', '/v1/groups/' + enc(name) + '/rollback', { version });
      toast('rolled back ' + name + ' to v' + version + (g && g.version ? ' (now v' + g.version + ')' : ''));
      scheduleRefresh();
      openHistory(name);
    } catch (e) {
      $('dlg-history-error').textContent = e.message;
    }
  }

  // ---------- schedule ----------

  function openSchedule() {
    const f = $('form-schedule');
    f.reset();
    $('dlg-schedule-error').textContent = '';
    const names = state.groups.filter((g) => g.state !== 'retired').map((g) => g.name).sort();
    replaceChildren(f.elements.group, names.map((n) => el('option', { value: n }, n)));
    syncScheduleOp();
    $('dlg-schedule').showModal();
  }

  function syncScheduleOp() {
    const f = $('form-schedule');
    $('schedule-update-fields').hidden = f.elements.op.value !== 'update';
  }

  async function submitSchedule(ev) {
    ev.preventDefault();
    const f = $('form-schedule');
    const err = $('dlg-schedule-error');
    err.textContent = '';
    let body;
    try {
      body = { group: f.elements.group.value, op: f.elements.op.value, at: localISO(f.elements.at.value) };
      if (!body.group) throw new Error('choose a group');
      if (!body.at) throw new Error('choose a time');
      if (body.op === 'update') {
        const change = {};
        const set = parseLines(f.elements.set.value);
        if (Object.keys(set).length) change.set = set;
        const unset = splitList(f.elements.unset.value);
        if (unset.length) change.unset = unset;
        const w = numOrUndef(f.elements.weight.value);
        if (w !== undefined) change.weight = w;
        const m = numOrUndef(f.elements.max_nodes.value, true);
        if (m !== undefined) change.max_nodes = m;
        if (f.elements.quota.value.trim()) change.quota = f.elements.quota.value.trim();
        body.change = change;
      }
    } catch (e) {
      err.textContent = e.message;
      return;
    }
    try {
      await api('POST', '/v1/schedule', body);
      $('dlg-schedule').close();
      toast('scheduled ' + body.op + ' of ' + body.group);
      scheduleRefresh();
    } catch (e) {
      err.textContent = e.message;
    }
  }

  // ---------- import / export ----------

  function openImport() {
    $('import-text').value = '';
    $('import-file').value = '';
    $('import-prune').checked = false;
    replaceChildren($('import-diff'));
    $('dlg-import-error').textContent = '';
    $('import-apply').disabled = true;
    $('dlg-import').showModal();
  }

  function importQuery(dry) {
    const q = new URLSearchParams();
    if (dry) q.set('dry_run', 'true');
    if ($('import-prune').checked) q.set('prune', 'true');
    const s = q.toString();
    return '/v1/import' + (s ? '?' + s : '');
  }

  function importType(text) {
    return /^\s*[[{]/.test(text) ? 'application/json' : 'application/yaml';
  }

  async function previewImport() {
    const text = $('import-text').value;
    $('dlg-import-error').textContent = '';
    $('import-apply').disabled = true;
    try {
      const res = await api('POST', importQuery(true), text, { contentType: importType(text) });
      renderDiff(res);
      $('import-apply').disabled = false;
    } catch (e) {
      replaceChildren($('import-diff'));
      $('dlg-import-error').textContent = e.message;
    }
  }

  async function applyImport() {
    const text = $('import-text').value;
    try {
      const res = await api('POST', importQuery(false), text, { contentType: importType(text) });
      renderDiff(res);
      $('import-apply').disabled = true;
      toast('import applied');
      scheduleRefresh();
    } catch (e) {
      $('dlg-import-error').textContent = e.message;
    }
  }

  // renderDiff shows an import report: {dry_run, added, updated: [{name,
  // changes}], retired, deleted, unchanged}. Anything else is shown as
  // indented JSON (as text).
  function renderDiff(res) {
    const out = $('import-diff');
    if (!res || !['added', 'updated', 'retired', 'deleted', 'unchanged'].some((k) => Array.isArray(res[k]))) {
      replaceChildren(out, el('pre', {}, JSON.stringify(res, null, 2)));
      return;
    }
    const lines = [el('div', { class: 'muted' }, res.dry_run ? 'Dry run: nothing was written.' : 'Applied.')];
    for (const n of res.added || []) lines.push(el('div', { class: 'add', testid: 'diff-' + n }, '+ add ' + n));
    for (const u of res.updated || []) {
      lines.push(el('div', { class: 'mod', testid: 'diff-' + u.name }, '~ update ' + u.name));
      for (const c of u.changes || []) lines.push(el('div', { class: 'mod' }, '    ' + c));
    }
    for (const n of res.retired || []) lines.push(el('div', { class: 'del', testid: 'diff-' + n }, '- retire ' + n));
    for (const n of res.deleted || []) lines.push(el('div', { class: 'del', testid: 'diff-' + n }, '- delete ' + n));
    const same = res.unchanged || [];
    if (same.length) lines.push(el('div', { class: 'muted' }, '= unchanged: ' + same.join(', ')));
    if (lines.length === 1 + (same.length ? 1 : 0)) lines.push(el('div', {}, 'No changes.'));
    replaceChildren(out, lines);
  }

  async function exportPool() {
    try {
      const { text, type } = await api('GET', '/v1/export', undefined, { raw: true });
      const json = /json/.test(type);
      const blob = new Blob([text], { type: json ? 'application/json' : 'application/yaml' });
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: 'allot-' + ($('namespace').textContent || 'pool') + (json ? '.json' : '.yaml') });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) {
      toast('export failed: ' + e.message, 'error');
    }
  }

  // ---------- wiring ----------

  function wire() {
    document.querySelectorAll('dialog [data-close]').forEach((b) => b.addEventListener('click', () => b.closest('dialog').close()));
    $('btn-add-group').addEventListener('click', () => openGroupDialog(null));
    $('form-group').addEventListener('submit', submitGroup);
    $('btn-rebalance').addEventListener('click', () => run(() => api('POST', '/v1/rebalance', {}), 'rebalanced'));
    $('btn-schedule').addEventListener('click', openSchedule);
    $('form-schedule').elements.op.addEventListener('change', syncScheduleOp);
    $('form-schedule').addEventListener('submit', submitSchedule);
    $('btn-import').addEventListener('click', openImport);
    $('btn-export').addEventListener('click', exportPool);
    $('import-preview').addEventListener('click', previewImport);
    $('import-apply').addEventListener('click', applyImport);
    $('import-text').addEventListener('input', () => { $('import-apply').disabled = true; });
    $('import-prune').addEventListener('change', () => { $('import-apply').disabled = true; });
    $('import-file').addEventListener('change', async (e) => {
      const file = e.target.files && e.target.files[0];
      if (file) { $('import-text').value = await file.text(); $('import-apply').disabled = true; }
    });
    $('confirm-ok').addEventListener('click', (e) => { e.preventDefault(); $('dlg-confirm').close('ok'); });
    $('dev-add').addEventListener('click', () => run(() => api('POST', '/v1/dev/nodes', {}), 'demo node added'));
    $('btn-token').addEventListener('click', () => { tokenPrompted = true; $('dlg-token').showModal(); });
    $('form-token').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = e.target.elements.token.value.trim();
      if (v) sessionStorage.setItem(TOKEN_KEY, v);
      e.target.reset();
      $('dlg-token').close();
      tokenChanged();
    });
    $('token-clear').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $('dlg-token').close();
      tokenChanged();
    });
    $('dlg-token').addEventListener('cancel', () => { tokenPrompted = false; });
  }

  function start() {
    wire();
    refreshAll();
    eventsLoop();
    setInterval(() => { if (!document.hidden) scheduleRefresh(); }, POLL_MS);
    // Clear move highlights once they expire even when nothing else changes.
    setInterval(() => {
      const now = Date.now();
      let expired = false;
      for (const [id, until] of state.movedUntil) if (until <= now) { state.movedUntil.delete(id); expired = true; }
      if (expired) render();
      tickCountdowns();
    }, 1000);
  }

  document.addEventListener('DOMContentLoaded', start);
})();
