// The groups table: problems first (suspended, probing, cooling, short,
// hot), sortable, filtered by the summary and by text, a page at a time;
// the actions of a row in its menu.
import { $, el, replaceChildren, svg } from './dom.js';
import { countdownText, fmtCount, fmtDemand, fmtNum, fmtShare, windowWord } from './format.js';
import { classify, hooks, matches, state, statusGroups, usedOf } from './state.js';
import { openRowMenu } from './actions.js';

export const GROUPS_PAGE = 25;

const PER_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
const SPARK_W = 100;
const SPARK_H = 22;

// ---------- cells ----------

function stateBadge(s) {
  return el('span', { class: 'badge ' + (s || ''), testid: 'state' }, s || '–');
}

// countdown is a span that tickCountdowns keeps at "12s" until `until`
// (ms) has passed; then it shows `done`.
function countdown(until, prefix, done) {
  return el('span', { class: 'countdown', 'data-until': String(until), 'data-prefix': prefix, 'data-done': done || '' },
    countdownText(until, prefix, done));
}

export function tickCountdowns() {
  for (const c of document.querySelectorAll('.countdown[data-until]')) {
    c.textContent = countdownText(Number(c.dataset.until), c.dataset.prefix || '', c.dataset.done || '');
  }
}

// healthNote says, on one line, why a group is suspended or probing, or how
// long its shared cooldown still runs (a 429 from the upstream).
function healthNote(g, doc) {
  const h = g.health;
  if (!h) return null;
  const cooling = h.cooling_until ? Date.parse(h.cooling_until) : 0;
  if (cooling > Date.now()) return el('span', { class: 'health cooling', testid: 'group-cooling' }, countdown(cooling, 'cooling ', 'cooled down'));
  if (g.state === 'suspended' || g.state === 'probing') {
    const probe = h.next_probe ? Date.parse(h.next_probe) : 0;
    const when = g.state !== 'suspended' ? null
      : el('span', { testid: 'group-probe' }, probe ? countdown(probe, 'probe in ', 'probe due') : 'until resumed');
    return el('span', { class: 'health reason', testid: 'group-reason', title: h.reason || '' }, when, when && h.reason ? ' · ' : '', h.reason || '');
  }
  if (h.failures > 0) {
    return el('span', { class: 'health', testid: 'group-failures' }, h.failures + ' failure' + (h.failures === 1 ? '' : 's')
      + ' (eject after ' + ((doc && doc.eject_after) || '3/1m') + ')');
  }
  return null;
}

// noLendMark shows a group marked lend: false: its key is never lent to
// nodes that do not hold it (allot group update --no-lend).
function noLendMark(doc) {
  if (!doc || doc.lend !== false) return null;
  return el('span', { class: 'badge muted', testid: 'group-no-lend', title: 'never lent to nodes that do not hold it' }, 'no lend');
}

// demandNote is what the group's holders ask lately, against its quota
// (the status's demand and wanted, when the server reports them).
function demandNote(g) {
  const d = g.demand;
  if (!d || !(d.calls || d.tokens)) return null;
  return el('div', { class: 'demand' + (g.wanted > 1 ? ' over' : ''), testid: 'group-demand', title: 'what its holders ask, against its quota' },
    'asks ' + fmtDemand(d) + (g.wanted ? ' (' + fmtNum(Math.round(g.wanted * 1000) / 10) + '%)' : ''));
}

function limitText(l) {
  return l.rate + (l.kind === 'tokens' ? ' tokens' : '') + '/' + l.per + (l.burst && l.burst !== l.rate ? ' burst ' + l.burst : '');
}

// limitsView lists every limit with its reading: a limit per second or
// minute as the share of its rate the last full minute used, one per hour
// or day as the use of its window ("today 6 / 10000").
function limitsView(g, doc) {
  const u = state.usage && state.usage.groups[g.name];
  const readings = (u && u.limits) || [];
  const limits = (doc && doc.limits) || [];
  if (!readings.length && !limits.length) return g.quota ? g.quota : el('span', { class: 'muted' }, '—');
  const rows = (readings.length ? readings : limits.map((l) => ({ limit: limitText(l) }))).map((r, i) => {
    const ratio = r.ratio || 0;
    const cls = 'limit' + (ratio >= 1 ? ' over' : ratio >= 0.8 ? ' near' : '');
    let reading = '';
    if (r.window === '1m') reading = ' · ' + fmtNum(Math.round(ratio * 1000) / 10) + '%';
    else if (r.window) reading = ' · ' + windowWord(r.window) + ' ' + fmtCount(r.used) + ' / ' + fmtCount(r.of);
    return el('div', { class: cls, testid: 'limit-' + g.name + '-' + i,
      title: r.window === '1m' ? 'used in the last full minute' : r.window ? 'used in the last ' + (r.window === '24h' ? 'day' : 'hour') + ', against the limit' : '' },
    r.limit, el('span', { class: 'muted' }, reading));
  });
  return el('div', { class: 'limits' }, rows);
}

// minuteRatios is the group's last hour, per minute: the highest share of
// a limit per second or minute used, or (without one) the calls against
// the busiest minute.
function minuteRatios(g, doc) {
  const u = state.usage && state.usage.groups[g.name];
  const n = (state.usage && state.usage.minutes) || 0;
  if (!u || !n) return { ratios: [], scaled: false };
  const cols = u.columns || {};
  const zero = new Array(n).fill(0);
  const reqs = cols.requests || zero;
  const toks = cols.tokens || zero;
  const paced = ((doc && doc.limits) || []).filter((l) => l.per === 's' || l.per === 'm');
  if (paced.length) {
    const ratios = reqs.map((_, i) => Math.max(...paced.map((l) => {
      const perMinute = l.rate * 60 / (PER_SECONDS[l.per] || 60);
      return (l.kind === 'tokens' ? Math.max(toks[i], 0) : reqs[i]) / perMinute;
    })));
    return { ratios, scaled: false };
  }
  const top = Math.max(1, ...reqs);
  return { ratios: reqs.map((r) => r / top), scaled: true };
}

// sparkline draws the last hour against a line at 100% of the limit.
function sparkline(g, doc) {
  if (g.state === 'retired' || !(doc && (doc.limits || []).length)) return el('span', { class: 'muted' }, '—');
  const { ratios, scaled } = minuteRatios(g, doc);
  if (ratios.length < 2) return el('span', { class: 'muted' }, '—');
  const top = Math.max(1.25, ...ratios);
  const y = (r) => (SPARK_H - 1 - (r / top) * (SPARK_H - 2)).toFixed(1);
  const x = (i) => (i * (SPARK_W - 1) / (ratios.length - 1)).toFixed(1);
  const box = svg('svg', { class: 'spark', width: SPARK_W, height: SPARK_H, viewBox: '0 0 ' + SPARK_W + ' ' + SPARK_H, role: 'img' });
  if (!scaled) box.append(svg('line', { class: 'spark-limit', x1: 0, x2: SPARK_W, y1: y(1), y2: y(1) }));
  box.append(svg('polyline', { class: 'spark-line', points: ratios.map((r, i) => x(i) + ',' + y(r)).join(' ') }));
  const peak = Math.max(...ratios);
  const wrap = el('span', { class: 'spark-wrap', testid: 'spark-' + g.name, 'data-points': String(ratios.length),
    'data-peak': peak.toFixed(3), 'data-last': ratios[ratios.length - 1].toFixed(3),
    title: scaled ? 'last hour, calls per minute (no limit per second or minute)'
      : 'last hour, highest share of a limit per minute; the line is the limit (peak ' + fmtNum(Math.round(peak * 1000) / 10) + '%)' });
  wrap.append(box);
  return wrap;
}

function configText(doc) {
  const cfg = (doc && doc.config) || {};
  const keys = Object.keys(cfg).sort();
  if (!keys.length) return el('span', { class: 'muted' }, '—');
  const secret = new Set((doc && doc.secret_keys) || []);
  const text = keys.map((k) => k + '=' + cfg[k] + (secret.has(k) ? ' (secret)' : '')).join(' · ');
  return el('span', { class: 'config', title: text }, text);
}

// ---------- the table ----------

// sortKeys order rows; every one ends by name.
const sortKeys = {
  problems: (a, b) => a.c.rank - b.c.rank || b.used - a.used,
  name: () => 0,
  state: (a, b) => a.c.state.localeCompare(b.c.state) || a.c.rank - b.c.rank,
  use: (a, b) => b.used - a.used,
  holders: (a, b) => (a.g.nodes || []).length - (b.g.nodes || []).length,
};

// visibleGroups is the table's rows: filtered, sorted, all pages.
export function visibleGroups() {
  const v = state.view;
  const now = Date.now();
  const text = v.groupText.trim().toLowerCase();
  const rows = statusGroups().map((g) => ({ g, c: classify(g, now), used: usedOf(g) }))
    .filter((r) => matches(r.c, v.groupFilter))
    .filter((r) => !text || r.g.name.toLowerCase().includes(text));
  const by = sortKeys[v.groupSort] || sortKeys.problems;
  rows.sort((a, b) => {
    const d = by(a, b);
    return (v.groupDesc ? -d : d) || a.g.name.localeCompare(b.g.name);
  });
  return rows;
}

export function groupMenuButton(name) {
  return el('button', { type: 'button', class: 'small menu-btn', testid: 'group-menu-' + name, title: 'actions',
    'aria-haspopup': 'menu', onclick: (e) => openRowMenu(name, e.currentTarget) }, '⋯');
}

export function renderGroups() {
  const v = state.view;
  const rows = visibleGroups();
  const pages = Math.max(1, Math.ceil(rows.length / GROUPS_PAGE));
  v.groupPage = Math.min(v.groupPage, pages - 1);
  const page = rows.slice(v.groupPage * GROUPS_PAGE, (v.groupPage + 1) * GROUPS_PAGE);
  const trs = page.map(({ g, c }) => {
    const doc = state.docs.get(g.name);
    const holders = g.nodes || [];
    return el('tr', { class: c.state + (c.cooling ? ' cooling' : '') + (c.short ? ' short' : '') + (c.hot ? ' hot' : ''),
      testid: 'group-row-' + g.name, 'data-group': g.name },
    el('td', { class: 'name' }, g.name),
    el('td', { class: 'state' }, stateBadge(g.state), ' ', healthNote(g, doc), noLendMark(doc)),
    el('td', { class: 'num' + (c.short ? ' under' : ''), testid: 'group-nodes', title: c.short ? 'short of nodes' : '' },
      holders.length + ' / ' + fmtNum(g.target)),
    el('td', { class: 'mono' }, limitsView(g, doc), demandNote(g)),
    el('td', {}, sparkline(g, doc)),
    el('td', { class: 'share', title: fmtShare(g.share, g.quota) }, fmtShare(g.share, g.quota)),
    el('td', { class: 'num' }, fmtNum(g.weight), g.max_nodes ? el('span', { class: 'muted' }, ' max ' + g.max_nodes) : null),
    el('td', { class: 'muted' }, doc ? 'v' + doc.version : ''),
    el('td', {}, configText(doc)),
    el('td', { class: 'actions' }, groupMenuButton(g.name)));
  });
  if (!trs.length) {
    trs.push(el('tr', {}, el('td', { colspan: 10, class: 'empty' },
      statusGroups().length ? 'No group matches.' : 'No groups.')));
  }
  replaceChildren($('groups-body'), trs);
  $('groups-count').textContent = rows.length
    ? (v.groupPage * GROUPS_PAGE + 1) + '–' + (v.groupPage * GROUPS_PAGE + page.length) + ' of ' + rows.length : '0';
  $('groups-prev').disabled = v.groupPage === 0;
  $('groups-next').disabled = v.groupPage >= pages - 1;
  const chip = $('groups-filter-chip');
  chip.hidden = !v.groupFilter;
  chip.textContent = v.groupFilter ? 'only ' + (v.groupFilter === 'short' ? 'short of nodes' : v.groupFilter) + ' ×' : '';
  for (const th of document.querySelectorAll('#groups-card [data-sort]')) {
    th.classList.toggle('sorted', th.dataset.sort === v.groupSort);
    th.classList.toggle('desc', th.dataset.sort === v.groupSort && v.groupDesc);
  }
}

export function wireGroups() {
  const v = state.view;
  $('groups-search').addEventListener('input', (e) => { v.groupText = e.target.value; v.groupPage = 0; hooks.render(); });
  $('groups-prev').addEventListener('click', () => { v.groupPage = Math.max(0, v.groupPage - 1); hooks.render(); });
  $('groups-next').addEventListener('click', () => { v.groupPage++; hooks.render(); });
  $('groups-filter-chip').addEventListener('click', () => { v.groupFilter = ''; v.groupPage = 0; hooks.render(); });
  for (const th of document.querySelectorAll('#groups-card [data-sort]')) {
    th.addEventListener('click', () => {
      if (v.groupSort === th.dataset.sort) v.groupDesc = !v.groupDesc;
      else { v.groupSort = th.dataset.sort; v.groupDesc = false; }
      v.groupPage = 0;
      hooks.render();
    });
  }
}
