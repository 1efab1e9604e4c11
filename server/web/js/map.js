// The compact map: one cell per group, sized by weight, coloured by
// health and limit use, its holders as dots. A click opens the group's
// holders. 100 groups fit one screen at 1400×1000.
import { $, el, replaceChildren } from './dom.js';
import { ago, fmtNum, fmtPct, fmtShare } from './format.js';
import { classify, hooks, isMoved, state, statusGroups, statusNodes, usedOf } from './state.js';
import { groupMenuButton } from './groups.js';

const DOT = 6;          // px per node dot
const CELL_MIN = 92;    // px: the lightest group's cell
const CELL_MAX = 200;   // px: the heaviest group's cell
const MAX_LISTED = 200; // holders listed in the popover

function cellWidth(weight, maxWeight) {
  const w = weight > 0 ? weight : 1;
  return Math.round(CELL_MIN + (CELL_MAX - CELL_MIN) * Math.sqrt(w / maxWeight));
}

// dots draws n holders as one element (a repeating background), so 1,000
// nodes cost 100 elements, not 1,000.
function dots(n, width) {
  const fit = Math.max(1, Math.floor((width - 16) / DOT));
  const shown = Math.min(n, fit);
  const d = el('span', { class: 'dots' });
  d.style.width = shown * DOT + 'px';
  return [d, n > shown ? el('span', { class: 'more' }, '+' + (n - shown)) : null];
}

function useBar(used) {
  const b = el('span', { class: 'usebar' + (used >= 0.9 ? ' over' : used >= 0.7 ? ' near' : '') });
  b.style.width = Math.min(100, Math.round(used * 100)) + '%';
  return b;
}

export function renderMap() {
  const map = $('map');
  const groups = statusGroups().filter((g) => g.state !== 'retired');
  const nodes = statusNodes();
  if (!groups.length && !nodes.length) {
    replaceChildren(map, el('div', { class: 'map-empty' }, 'No groups and no nodes yet. Add a group to start.'));
    renderHolders();
    return;
  }
  const maxWeight = Math.max(1, ...groups.map((g) => g.weight || 1));
  const now = Date.now();
  const cells = groups.slice().sort((a, b) => a.name.localeCompare(b.name)).map((g) => {
    const c = classify(g, now);
    const holders = g.nodes || [];
    const used = usedOf(g);
    const width = cellWidth(g.weight, maxWeight);
    const health = c.state !== 'active' ? c.state : c.cooling ? 'cooling' : '';
    const cell = el('button', {
      type: 'button', class: 'cell ' + health + (c.short ? ' short' : '') + (holders.some(isMoved) ? ' moved' : '')
        + (state.view.openGroup === g.name ? ' open' : ''),
      testid: 'map-cell-' + g.name, 'data-group': g.name, 'data-holders': holders.join(','),
      'data-moved': holders.some(isMoved) ? 'true' : 'false', 'data-state': health || 'active',
      title: g.name + ': ' + holders.length + ' of ' + fmtNum(g.target) + ' nodes' + (health ? ', ' + health : '')
        + (c.short ? ', short of nodes' : '') + (g.quota ? ', limits ' + fmtPct(used) + ' used' : '') + ', weight ' + fmtNum(g.weight),
      onclick: () => { state.view.openGroup = state.view.openGroup === g.name ? '' : g.name; hooks.render(); },
    },
    el('span', { class: 'cname' }, g.name),
    el('span', { class: 'ccount' + (c.short ? ' under' : ''), testid: 'map-count' }, holders.length + '/' + fmtNum(g.target)),
    el('span', { class: 'crow' }, dots(holders.length, width)),
    g.quota ? useBar(used) : null);
    cell.style.width = width + 'px';
    return cell;
  });
  const standby = (state.status && state.status.standby) || [];
  const sb = el('button', {
    type: 'button', class: 'cell standby' + (state.view.openGroup === '\u0000standby' ? ' open' : ''),
    testid: 'map-standby', 'data-holders': standby.join(','), title: 'live nodes with no group',
    onclick: () => { state.view.openGroup = state.view.openGroup === '\u0000standby' ? '' : '\u0000standby'; hooks.render(); },
  }, el('span', { class: 'cname' }, 'standby'), el('span', { class: 'ccount' }, String(standby.length)),
  el('span', { class: 'crow' }, dots(standby.length, CELL_MIN)));
  sb.style.width = CELL_MIN + 'px';
  cells.push(sb);
  replaceChildren(map, cells);
  renderHolders();
}

// renderHolders shows the open cell's holders under the map.
function renderHolders() {
  const box = $('holders');
  const open = state.view.openGroup;
  if (!open) { box.hidden = true; replaceChildren(box); return; }
  const standby = open === '\u0000standby';
  const g = standby ? null : statusGroups().find((x) => x.name === open);
  if (!standby && !g) { state.view.openGroup = ''; box.hidden = true; return; }
  const ids = standby ? ((state.status && state.status.standby) || []) : (g.nodes || []);
  const byID = new Map(statusNodes().map((n) => [n.id, n]));
  const listed = ids.slice(0, MAX_LISTED).map((id) => {
    const n = byID.get(id) || {};
    return el('li', { class: (isMoved(id) ? 'moved' : '') + (n.stale ? ' stale' : ''), testid: 'holder-' + id, 'data-node': id,
      'data-moved': isMoved(id) ? 'true' : 'false', title: 'last seen ' + ago(n.last_seen, state.statusAt) },
    el('span', { class: 'hdot' }), el('span', { class: 'mono' }, id), n.ip ? el('span', { class: 'ip' }, n.ip) : null);
  });
  if (ids.length > MAX_LISTED) listed.push(el('li', { class: 'muted' }, 'and ' + (ids.length - MAX_LISTED) + ' more (search the nodes table)'));
  const head = standby
    ? el('div', { class: 'holders-head' }, el('strong', {}, 'standby'), el('span', { class: 'muted' }, ' ' + ids.length + ' live nodes with no group'))
    : el('div', { class: 'holders-head' }, el('strong', { class: 'mono' }, g.name), ' ',
      el('span', { class: 'badge ' + g.state }, g.state), ' ',
      el('span', { class: 'muted' }, ids.length + ' of ' + fmtNum(g.target) + ' nodes · weight ' + fmtNum(g.weight)
        + (g.max_nodes ? ' · max ' + g.max_nodes : '') + (g.share ? ' · ' + fmtShare(g.share, g.quota) + ' each' : '')),
      el('span', { class: 'spacer' }),
      el('button', { type: 'button', class: 'small', testid: 'holders-nodes', onclick: () => {
        state.view.nodeText = g.name; state.view.nodeFilter = 'all'; state.view.nodePage = 0;
        const input = $('nodes-search'); if (input) input.value = g.name;
        hooks.render(); $('nodes-card').scrollIntoView({ block: 'start' });
      } }, 'In the nodes table'),
      groupMenuButton(g.name));
  replaceChildren(box, head, el('ul', { class: 'holders-list' }, listed.length ? listed : el('li', { class: 'muted' }, 'No node holds it.')),
    el('button', { type: 'button', class: 'ghost small close', testid: 'holders-close', onclick: () => { state.view.openGroup = ''; hooks.render(); } }, 'Close'));
  box.hidden = false;
  box.dataset.testid = 'holders';
  box.dataset.group = standby ? '' : g.name;
}
