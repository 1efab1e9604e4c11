// The side panels: scheduled changes and (serve --dev) the demo nodes.
import { $, el, replaceChildren } from './dom.js';
import { fmtTime } from './format.js';
import { state } from './state.js';
import { cancelSchedule, devAction } from './actions.js';

export function renderSchedule() {
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

export function renderDev() {
  $('dev-panel').hidden = !state.dev;
  if (!state.dev) return;
  const items = state.devNodes.slice().sort((a, b) => String(a.id).localeCompare(String(b.id), 'en', { numeric: true })).map((n) => {
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
