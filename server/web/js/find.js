// The find box of the top bar: any node's groups, or a group's holders,
// without scrolling to the tables.
import { $, el, replaceChildren } from './dom.js';
import { fmtNum } from './format.js';
import { classify, hooks, state, statusGroups, statusNodes } from './state.js';

const SHOWN = 8;

export function renderFind() {
  const box = $('find-results');
  const text = $('find').value.trim().toLowerCase();
  if (!text) { box.hidden = true; replaceChildren(box); return; }
  const nodes = statusNodes().filter((n) => n.id.toLowerCase().includes(text) || (n.ip || '') === text)
    .sort((a, b) => (a.id.toLowerCase() === text ? -1 : 0) - (b.id.toLowerCase() === text ? -1 : 0) || a.id.localeCompare(b.id, 'en', { numeric: true }));
  const groups = statusGroups().filter((g) => g.name.toLowerCase().includes(text));
  const standby = new Set((state.status && state.status.standby) || []);
  const rows = [];
  for (const n of nodes.slice(0, SHOWN)) {
    rows.push(el('li', { class: 'hit', testid: 'find-node-' + n.id },
      el('button', { type: 'button', class: 'linkish mono', onclick: () => showNode(n.id) }, n.id),
      el('span', { class: 'ip' }, n.ip || ''), el('span', { class: 'arrow' }, '→'),
      el('span', { testid: 'find-groups' }, (n.groups || []).length
        ? n.groups.map((g) => el('button', { type: 'button', class: 'tag', onclick: () => showGroup(g) }, g))
        : el('span', { class: 'muted' }, standby.has(n.id) ? 'standby' : '—'))));
  }
  if (nodes.length > SHOWN) rows.push(el('li', { class: 'muted' }, (nodes.length - SHOWN) + ' more nodes: press Enter for the nodes table'));
  for (const g of groups.slice(0, SHOWN)) {
    const c = classify(g);
    rows.push(el('li', { class: 'hit', testid: 'find-group-' + g.name },
      el('button', { type: 'button', class: 'linkish mono', onclick: () => showGroup(g.name) }, g.name),
      el('span', { class: 'badge ' + c.state }, c.cooling ? 'cooling' : c.state),
      el('span', { class: c.short ? 'under' : 'muted' }, (g.nodes || []).length + ' / ' + fmtNum(g.target) + ' nodes')));
  }
  if (groups.length > SHOWN) rows.push(el('li', { class: 'muted' }, (groups.length - SHOWN) + ' more groups'));
  if (!rows.length) rows.push(el('li', { class: 'muted' }, 'No node or group matches.'));
  replaceChildren(box, el('ul', {}, rows));
  box.hidden = false;
}

function close() {
  $('find-results').hidden = true;
}

function showGroup(name) {
  state.view.openGroup = name;
  close();
  hooks.render();
  $('map-section').scrollIntoView({ block: 'start' });
}

function showNode(id) {
  state.view.nodeText = id;
  state.view.nodeFilter = 'all';
  state.view.nodePage = 0;
  $('nodes-search').value = id;
  close();
  hooks.render();
  $('nodes-card').scrollIntoView({ block: 'start' });
}

export function wireFind() {
  const input = $('find');
  input.addEventListener('input', renderFind);
  input.addEventListener('focus', renderFind);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { input.value = ''; close(); }
    if (e.key === 'Enter') showNode(input.value.trim());
  });
  document.addEventListener('click', (e) => {
    if (!e.target.closest || !e.target.closest('.find')) close();
  });
}
