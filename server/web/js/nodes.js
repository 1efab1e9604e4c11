// The nodes table: search by ID, IP or group, the standby and stale
// filters, a page at a time.
import { $, el, replaceChildren } from './dom.js';
import { ago, fmtDemand } from './format.js';
import { hooks, isMoved, state, statusNodes } from './state.js';

export const NODES_PAGE = 25;

// visibleNodes is the table's rows: filtered, by ID, all pages.
export function visibleNodes() {
  const v = state.view;
  const standby = new Set((state.status && state.status.standby) || []);
  const text = v.nodeText.trim().toLowerCase();
  return statusNodes().filter((n) => {
    if (v.nodeFilter === 'standby' && !standby.has(n.id)) return false;
    if (v.nodeFilter === 'stale' && !n.stale) return false;
    if (!text) return true;
    return n.id.toLowerCase().includes(text) || (n.ip || '').includes(text)
      || (n.groups || []).some((g) => g.toLowerCase().includes(text));
  }).sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
}

export function renderNodes() {
  const v = state.view;
  const rows = visibleNodes();
  const pages = Math.max(1, Math.ceil(rows.length / NODES_PAGE));
  v.nodePage = Math.min(v.nodePage, pages - 1);
  const page = rows.slice(v.nodePage * NODES_PAGE, (v.nodePage + 1) * NODES_PAGE);
  const standby = new Set((state.status && state.status.standby) || []);
  const at = state.statusAt;
  const trs = page.map((n) => el('tr', { testid: 'node-row-' + n.id, 'data-node': n.id,
    class: (n.stale ? 'stale' : '') + (isMoved(n.id) ? ' moved' : '') },
  el('td', { class: 'mono' }, n.id),
  el('td', { class: 'mono' }, n.ip || '—'),
  el('td', { testid: 'node-groups' }, (n.groups || []).length
    ? n.groups.map((g) => el('span', { class: 'tag' }, g))
    : el('span', { class: 'muted' }, standby.has(n.id) ? 'standby' : '—')),
  el('td', { class: 'mono', testid: 'node-demand' }, fmtDemand(n.demand)),
  el('td', { class: n.stale ? 'stale-note' : 'muted', title: n.last_seen || '' }, ago(n.last_seen, at), n.stale ? ' (stale)' : '')));
  if (!trs.length) trs.push(el('tr', {}, el('td', { colspan: 5, class: 'empty' }, statusNodes().length ? 'No node matches.' : 'No live nodes.')));
  replaceChildren($('nodes-body'), trs);
  $('node-count').textContent = rows.length
    ? (v.nodePage * NODES_PAGE + 1) + '–' + (v.nodePage * NODES_PAGE + page.length) + ' of ' + rows.length
      + (rows.length !== statusNodes().length ? ' (' + statusNodes().length + ' live)' : ' live') : '0 of ' + statusNodes().length;
  $('nodes-asof').textContent = at ? 'as of ' + new Date(at).toLocaleTimeString() : '';
  $('nodes-prev').disabled = v.nodePage === 0;
  $('nodes-next').disabled = v.nodePage >= pages - 1;
  for (const b of document.querySelectorAll('#nodes-card [data-filter]')) {
    b.setAttribute('aria-pressed', b.dataset.filter === v.nodeFilter ? 'true' : 'false');
  }
}

export function wireNodes() {
  const v = state.view;
  $('nodes-search').addEventListener('input', (e) => { v.nodeText = e.target.value; v.nodePage = 0; hooks.render(); });
  $('nodes-prev').addEventListener('click', () => { v.nodePage = Math.max(0, v.nodePage - 1); hooks.render(); });
  $('nodes-next').addEventListener('click', () => { v.nodePage++; hooks.render(); });
  for (const b of document.querySelectorAll('#nodes-card [data-filter]')) {
    b.addEventListener('click', () => { v.nodeFilter = b.dataset.filter; v.nodePage = 0; hooks.render(); });
  }
}
