// The event stream (Server-Sent Events read with fetch, so the bearer token
// can be sent) and the Events panel: the last events on load, then live,
// filtered by group.
import { $, delay, el, replaceChildren } from './dom.js';
import { api, askToken, authHeaders, currentToken, enc, waitForToken } from './api.js';
import { hooks, state } from './state.js';

export const MAX_EVENTS = 100;

let eventsCtrl = null;

function setLive(live, text) {
  state.live = live;
  const l = $('live');
  l.dataset.live = live ? 'true' : 'false';
  $('live-text').textContent = text || (live ? 'live' : 'reconnecting');
}

export function restartEvents() {
  if (eventsCtrl) eventsCtrl.abort();
}

// eventsLoop follows /v1/events from the newest event the panel shows (so
// nothing falls between the two), reconnecting with backoff. onEvent gets
// every event.
export async function eventsLoop(onEvent) {
  let backoff = 500;
  let connected = false;
  for (;;) {
    const ctrl = new AbortController();
    eventsCtrl = ctrl;
    try {
      const q = state.lastEventID ? '?after=' + enc(state.lastEventID) : '';
      const sent = currentToken();
      const res = await fetch('/v1/events' + q, {
        headers: authHeaders({ Accept: 'text/event-stream' }), signal: ctrl.signal, cache: 'no-store',
      });
      if ((res.status === 401 || res.status === 403) && currentToken() !== sent) continue; // a new token meanwhile
      if (res.status === 401 || res.status === 403) {
        setLive(false, 'needs token');
        askToken(res.status, 'events');
        await waitForToken();
        continue;
      }
      if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
      setLive(true);
      backoff = 500;
      if (connected) hooks.refresh('all'); // catch up on anything the gap hid
      connected = true;
      await readEvents(res.body, (type, data, id) => {
        if (id) state.lastEventID = id;
        let ev = {};
        try { ev = JSON.parse(data); } catch (_) { /* keep it empty */ }
        const t = ev.type || type;
        if (!t || t === 'message' && !data) return;
        showEvent(ev, t);
        onEvent(t, ev);
      });
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

// readEvents parses a text/event-stream body and calls fn(type, data, id)
// per event.
async function readEvents(body, fn) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let type = '';
  let id = '';
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
        if (data.length || type) fn(type || 'message', data.join('\n'), id);
        type = '';
        id = '';
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
        else if (field === 'id') id = val;
      }
    }
  }
}

// ---------- the panel ----------

function eventItem(ev, type) {
  const at = ev.at ? new Date(ev.at) : new Date();
  const parts = [];
  if (ev.group) parts.push(ev.group);
  if (ev.node) parts.push('node ' + ev.node);
  if (ev.epoch) parts.push('epoch ' + ev.epoch);
  if (ev.version) parts.push('v' + ev.version);
  if (ev.reason) parts.push(ev.reason);
  return el('li', { 'data-type': type, 'data-group': ev.group || '', title: parts.join(' · ') },
    el('span', { class: 't' }, at.toLocaleTimeString()),
    el('span', { class: 'ty' }, type), el('span', { class: 'what' }, parts.join(' · ')));
}

function wanted(ev) {
  return !state.view.eventsGroup || ev.group === state.view.eventsGroup;
}

// showEvent adds one live event to the panel when the filter lets it.
function showEvent(ev, type) {
  if (!wanted(ev)) return;
  const log = $('event-log');
  const empty = log.querySelector('.empty');
  if (empty) empty.remove();
  log.prepend(eventItem(ev, type));
  while (log.children.length > MAX_EVENTS) log.lastElementChild.remove();
}

// loadRecent fills the panel with the newest events (of the group the
// filter names), and remembers the newest of all for the stream.
export async function loadRecent() {
  const g = state.view.eventsGroup;
  const evs = await api('GET', '/v1/events/recent?count=' + MAX_EVENTS + (g ? '&group=' + enc(g) : ''));
  if (!g && evs.length) state.lastEventID = evs[evs.length - 1].id;
  const items = evs.slice().reverse().map((ev) => eventItem(ev, ev.type));
  if (!items.length) items.push(el('li', { class: 'empty muted' }, g ? 'No events of ' + g + ' kept.' : 'No events yet.'));
  replaceChildren($('event-log'), items);
}

// renderEventGroups keeps the filter's list of groups current.
export function renderEventGroups() {
  const sel = $('events-group');
  const names = [...state.docs.keys()].sort();
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (have.join(',') === names.join(',')) return;
  const current = state.view.eventsGroup;
  replaceChildren(sel, el('option', { value: '' }, 'all groups'),
    names.map((n) => el('option', { value: n, selected: n === current }, n)));
}

export function wireEvents() {
  $('events-group').addEventListener('change', (e) => {
    state.view.eventsGroup = e.target.value;
    loadRecent().catch(() => {});
  });
}
