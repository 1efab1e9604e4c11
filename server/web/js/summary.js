// The summary strip: the pool's counts, each one a filter of the groups or
// nodes table, and the pool's use in the last full minute.
import { $, el, replaceChildren } from './dom.js';
import { fmtCount, fmtPct } from './format.js';
import { counts, hooks, state } from './state.js';

// filterButton is one count; pressing it filters (again: clears).
function filterButton(kind, key, label, n, cls) {
  const v = state.view;
  const on = kind === 'groups' ? v.groupFilter === key : v.nodeFilter === key;
  return el('button', {
    type: 'button', class: 'count' + (cls && n ? ' ' + cls : '') + (on ? ' on' : ''),
    testid: 'sum-' + kind + '-' + key, 'data-count': String(n), 'aria-pressed': on ? 'true' : 'false',
    title: on ? 'showing only these: press again for all' : 'show only these',
    onclick: () => setFilter(kind, key, on),
  }, el('strong', {}, fmtCount(n)), ' ', label);
}

function setFilter(kind, key, on) {
  const v = state.view;
  if (kind === 'groups') {
    v.groupFilter = on ? '' : key;
    v.groupPage = 0;
  } else {
    v.nodeFilter = on || key === 'live' ? 'all' : key;
    v.nodePage = 0;
  }
  hooks.render();
  const target = kind === 'groups' ? $('groups-card') : $('nodes-card');
  if (!on && target.scrollIntoView) target.scrollIntoView({ block: 'start' });
}

function capacity(name, c, testid) {
  if (!c || !c.of) return null;
  const r = c.used / c.of;
  return el('span', { class: 'use' + (r >= 0.9 ? ' over' : r >= 0.7 ? ' near' : ''), testid, title: 'last full minute, against the tightest limit of every active group' },
    name + ' ', el('strong', {}, fmtCount(c.used)), ' / ' + fmtCount(c.of) + ' (' + fmtPct(r) + ')');
}

export function renderSummary() {
  const n = counts();
  const pool = state.usage && state.usage.pool;
  const parts = [
    el('div', { class: 'sum-part' }, el('span', { class: 'sum-label' }, 'Groups'),
      el('span', { class: 'count plain', testid: 'sum-groups-total', 'data-count': String(n.groups) }, el('strong', {}, fmtCount(n.groups)), ' total'),
      filterButton('groups', 'active', 'active', n.active),
      filterButton('groups', 'unhealthy', 'unhealthy', n.unhealthy, 'bad'),
      filterButton('groups', 'cooling', 'cooling', n.cooling, 'warn'),
      filterButton('groups', 'suspended', 'suspended', n.suspended, 'bad'),
      filterButton('groups', 'probing', 'probing', n.probing, 'warn'),
      filterButton('groups', 'short', 'short of nodes', n.short, 'bad'),
      filterButton('groups', 'hot', 'hot', n.hot, 'warn'),
      n.draining ? filterButton('groups', 'draining', 'draining', n.draining) : null),
    el('div', { class: 'sum-part' }, el('span', { class: 'sum-label' }, 'Nodes'),
      filterButton('nodes', 'live', 'live', n.live),
      filterButton('nodes', 'standby', 'standby', n.standby),
      filterButton('nodes', 'stale', 'stale', n.stale, 'warn')),
  ];
  if (pool) {
    const borrowed = pool.counts && pool.counts.borrowed !== undefined && pool.counts.requests
      ? el('span', { class: 'use', testid: 'sum-pool-borrowed', title: 'calls served by a borrowed group, last full minute' },
        'borrowed ', el('strong', {}, fmtPct(pool.counts.borrowed / pool.counts.requests)))
      : null;
    parts.push(el('div', { class: 'sum-part' }, el('span', { class: 'sum-label' }, 'Use, last min'),
      capacity('requests', pool.requests, 'sum-pool-requests') || el('span', { class: 'muted' }, 'no limits'),
      capacity('tokens', pool.tokens, 'sum-pool-tokens'), borrowed));
  }
  replaceChildren($('summary'), parts);
}
