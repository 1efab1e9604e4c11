// allot web UI. Plain JavaScript modules, no build step, no third-party
// code. This file loads the pool and keeps it current; the js/ modules
// render one part each (summary, map, groups, nodes, events, dialogs).
//
// One request per refresh: the page loads status, groups, usage and the
// last events once, then follows /v1/events and fetches only what an event
// changed (the status, the named groups, the schedule); the use of every
// group comes in one request (GET /v1/usage) every USAGE_MS, and
// everything again every FULL_MS as a safety net.
'use strict';

import { $, toast } from './js/dom.js';
import { ApiError, api, listOf, wireToken } from './js/api.js';
import { hooks, MOVED_MS, state } from './js/state.js';
import { renderSummary } from './js/summary.js';
import { renderMap } from './js/map.js';
import { renderGroups, tickCountdowns, wireGroups } from './js/groups.js';
import { renderNodes, wireNodes } from './js/nodes.js';
import { eventsLoop, loadRecent, renderEventGroups, restartEvents, wireEvents } from './js/events.js';
import { wireDialogs } from './js/dialogs.js';
import { run, wireRowMenu } from './js/actions.js';
import { renderDev, renderSchedule } from './js/panels.js';
import { renderFind, wireFind } from './js/find.js';

const USAGE_MS = 10000;        // the use of every group, one request
const USAGE_SPAN = '3m';       // what that request reads (the rest is kept)
const FULL_MS = 60000;         // the safety net: everything again
const DEBOUNCE_MS = 150;       // events arrive in bursts
const STATUS_GAP_MS = 1000;    // at most one status read a second in a storm
const GROUPS_ONE_BY_ONE = 5;   // more changed groups than this: read them all

// dirty is what events said changed since the last fetch.
const dirty = { all: false, status: false, docs: new Set(), allDocs: false, schedule: false, usage: false, dev: false };

let timer = null;
let busy = false;
let again = false;
let lastStatus = 0;
let filled = false;

function schedule(delayMs) {
  if (timer) return;
  timer = setTimeout(() => { timer = null; flush(); }, delayMs ?? DEBOUNCE_MS);
}

// refresh marks what to fetch: 'all', a group name, or nothing (the
// status and the schedule, after an action of this page).
function refresh(what) {
  if (what === 'all') dirty.all = true;
  else {
    dirty.status = true;
    dirty.schedule = true;
    if (what) dirty.docs.add(what);
    else dirty.allDocs = true;
  }
  schedule();
}

function setStatus(st) {
  noteMoves(st);
  state.status = st;
  state.statusAt = Date.now();
  lastStatus = state.statusAt;
}

function setDocs(list) {
  state.docs = new Map(listOf(list, 'groups').map((g) => [g.name, g]));
}

// setUsage takes an answer of GET /v1/usage: a whole one replaces what the
// page has, a short one (the last few minutes) is merged into it.
function setUsage(u, whole) {
  const now = Math.floor(Date.parse(u.now) / 60000);
  const old = state.usage;
  if (whole || !old || now < old.now) {
    state.usage = { now, minutes: u.minutes, groups: u.groups, pool: u.pool };
    return;
  }
  const n = old.minutes;
  const shift = Math.min(now - old.now, n);
  const groups = {};
  for (const [name, g] of Object.entries(u.groups)) {
    const prev = old.groups[name];
    const columns = {};
    const keys = new Set([...Object.keys((prev && prev.columns) || {}), ...Object.keys(g.columns || {})]);
    for (const k of keys) {
      const col = prev && prev.columns[k] ? prev.columns[k].slice(shift) : [];
      while (col.length < n) col.push(0);
      const part = (g.columns || {})[k];
      for (let i = 0; i < u.minutes && i < n; i++) col[n - u.minutes + i] = part ? part[i] : 0;
      if (col.some((v) => v !== 0)) columns[k] = col;
    }
    groups[name] = { columns, limits: g.limits, used: g.used };
  }
  state.usage = { now, minutes: n, groups, pool: u.pool };
}

// loadDev reads the demo nodes of `serve --dev` (the status said so).
async function loadDev() {
  try {
    state.devNodes = listOf(await api('GET', '/v1/dev/nodes', undefined, { quiet: true }), 'nodes');
    state.dev = true;
  } catch (_) {
    state.dev = false;
  }
}

// flush fetches what is dirty, at once, then renders.
async function flush() {
  if (busy) { again = true; return; }
  const wait = dirty.status && !dirty.all ? lastStatus + STATUS_GAP_MS - Date.now() : 0;
  if (wait > 0) { schedule(wait); return; }
  busy = true;
  const d = { ...dirty, docs: [...dirty.docs] };
  Object.assign(dirty, { all: false, status: false, docs: new Set(), allDocs: false, schedule: false, usage: false, dev: false });
  try {
    const jobs = [];
    if (d.all || d.status) jobs.push(api('GET', '/v1/status').then(setStatus).then(() => (d.all || d.dev) && state.devMode && loadDev()));
    if (d.all || d.allDocs || d.docs.length > GROUPS_ONE_BY_ONE) jobs.push(api('GET', '/v1/groups').then(setDocs));
    else {
      for (const name of d.docs) {
        jobs.push(api('GET', '/v1/groups/' + encodeURIComponent(name))
          .then((g) => state.docs.set(name, g))
          .catch((e) => { if (e instanceof ApiError && e.status === 404) state.docs.delete(name); else throw e; }));
      }
    }
    if (d.all || d.schedule) jobs.push(api('GET', '/v1/schedule').then((s) => { state.schedule = listOf(s, 'schedule'); }).catch(() => {}));
    if (d.all) jobs.push(api('GET', '/v1/usage?since=1h').then((u) => setUsage(u, true)));
    else if (d.usage) jobs.push(api('GET', '/v1/usage?since=' + USAGE_SPAN).then((u) => setUsage(u, false)));
    await Promise.all(jobs);
    render();
    if (!filled && state.status && state.usage) {
      filled = true;
      performance.mark('allot-filled');
      document.documentElement.dataset.filled = 'true';
    }
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) toast('refresh failed: ' + e.message, 'error');
  } finally {
    busy = false;
    if (again) { again = false; schedule(); }
  }
}

function onEvent(type, ev) {
  if (type.startsWith('group.')) {
    if (ev.group) dirty.docs.add(ev.group);
    dirty.status = true;
  } else if (type.startsWith('schedule.')) {
    dirty.schedule = true;
  } else if (type === 'assignment' || type.startsWith('node.')) {
    dirty.status = true;
    dirty.dev = true;
  } else {
    return;
  }
  schedule();
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

// Parts are rebuilt only when what they show changed, so buttons under
// the pointer are not replaced by identical ones on every tick.
const shown = {};

function changed(part, value) {
  const key = JSON.stringify(value);
  if (shown[part] === key) return false;
  shown[part] = key;
  return true;
}

function render() {
  const s = state.status || {};
  const v = state.view;
  const now = Date.now();
  const moved = [...state.movedUntil].filter(([, until]) => until > now).map(([id]) => id).sort();
  const cooling = (s.groups || []).filter((g) => g.health && g.health.cooling_until && Date.parse(g.health.cooling_until) > now).map((g) => g.name);
  const used = state.usage ? Object.entries(state.usage.groups).map(([n, g]) => [n, g.used]) : [];
  renderHeader();
  if (changed('summary', [s.groups, s.standby, (s.nodes || []).map((n) => n.stale), state.usage && state.usage.pool, used, cooling, v.groupFilter, v.nodeFilter])) renderSummary();
  if (changed('map', [s.groups, s.standby, moved, used, cooling, v.openGroup, v.openGroup ? s.nodes : 0])) renderMap();
  if (changed('groups', [s.groups, [...state.docs.values()].map((g) => [g.name, g.version, g.config]), state.usage, cooling,
    v.groupFilter, v.groupText, v.groupSort, v.groupDesc, v.groupPage])) renderGroups();
  if (changed('nodes', [s.nodes, s.standby, moved, state.statusAt, v.nodeFilter, v.nodeText, v.nodePage])) renderNodes();
  if (changed('schedule', state.schedule)) renderSchedule();
  if (changed('dev', [state.dev, state.devNodes])) renderDev();
  renderEventGroups();
  if (!$('find-results').hidden && changed('find', [s.groups, s.nodes])) renderFind();
}

function renderHeader() {
  const s = state.status || {};
  $('namespace').textContent = s.namespace || state.namespace || 'default';
  $('epoch').textContent = s.epoch !== undefined ? String(s.epoch) : '–';
  const b = $('balanced');
  b.textContent = s.balanced ? 'balanced' : 'unbalanced';
  b.className = 'badge ' + (s.balanced ? 'ok' : 'warn');
  // How serve stores secret values: plain text is said plainly.
  const sec = $('secrets-at-rest');
  const enc = s.secrets_at_rest === 'encrypted';
  sec.textContent = enc ? 'encrypted at rest' : s.secrets_at_rest === 'plaintext' ? 'plain text in Redis' : '–';
  sec.className = 'badge ' + (enc ? 'ok' : 'warn');
  sec.title = enc ? 'secret values are stored encrypted (ALLOT_SECRET_KEYS)' : 'secret values are stored unencrypted: set ALLOT_SECRET_KEYS to encrypt them';
}

// ---------- start ----------

function start() {
  hooks.refresh = refresh;
  hooks.render = render;
  hooks.tokenChanged = () => { restartEvents(); refresh('all'); loadRecent().catch(() => {}); };
  wireToken();
  wireDialogs();
  wireRowMenu();
  wireGroups();
  wireNodes();
  wireEvents();
  wireFind();
  $('btn-rebalance').addEventListener('click', () => run(() => api('POST', '/v1/rebalance', {}), 'rebalanced'));
  $('dev-add').addEventListener('click', () => run(() => api('POST', '/v1/dev/nodes', {}), 'demo node added'));

  dirty.all = true;
  flush();
  // The stream starts after the last event the panel shows.
  loadRecent().catch(() => {}).finally(() => eventsLoop(onEvent));
  setInterval(() => { if (!document.hidden) { dirty.usage = true; schedule(0); } }, USAGE_MS);
  setInterval(() => { if (!document.hidden) refresh('all'); }, FULL_MS);
  // Countdowns, move highlights and cooldowns that end without an event.
  setInterval(() => {
    tickCountdowns();
    render();
  }, 1000);
}

start();
