// The page's state and the rules that read it: what counts as cooling,
// short or hot, and the order "problems first". The server decides what it
// can (short: Plan's target; stale: the heartbeat interval; used: each
// limit over its window); the page only adds the clock (a cooldown ends
// without an event).

export const state = {
  status: null,        // GET /v1/status
  statusAt: 0,         // when it arrived (ms): "last seen" is as of then
  docs: new Map(),     // group name -> GET /v1/groups document (config, version, limits)
  usage: null,         // GET /v1/usage, merged: {now (minute number), minutes, groups, pool}
  schedule: [],
  dev: false,          // the demo nodes' panel shows
  devMode: false,      // the server said it runs --dev (Allot-Dev header)
  devNodes: [],
  lastAssign: null,    // Map node ID -> "g1,g2" from the previous status
  movedUntil: new Map(), // node ID -> ms until which it shows as moved
  live: false,
  namespace: '',
  events: [],          // the Events panel, oldest first
  lastEventID: '',     // the newest event seen (the stream resumes after it)
  view: {
    groupFilter: '',   // '', unhealthy, active, cooling, suspended, probing, short, hot, draining
    groupText: '',
    groupSort: 'problems', groupDesc: false, groupPage: 0,
    nodeFilter: 'all', // all, standby, stale
    nodeText: '', nodePage: 0,
    eventsGroup: '',
    openGroup: '',     // the map cell whose holders are shown
  },
};

// hooks are set by app.js: modules ask for a refresh or a render without
// importing app.js.
export const hooks = {
  refresh() {},        // fetch what is dirty, then render
  render() {},
  tokenChanged() {},
};

// HOT is the use from which a group counts as hot (90% of a limit).
export const HOT = 0.9;

export const MOVED_MS = 2500;

export function statusGroups() {
  return (state.status && state.status.groups) || [];
}

export function statusNodes() {
  return (state.status && state.status.nodes) || [];
}

// usedOf is a group's highest limit use: from the usage answer (fresher),
// else from the status.
export function usedOf(g) {
  const u = state.usage && state.usage.groups[g.name];
  return u ? u.used || 0 : g.used || 0;
}

export function isCooling(g, now) {
  const until = g.health && g.health.cooling_until ? Date.parse(g.health.cooling_until) : 0;
  return until > (now || Date.now());
}

// classify reads one status group: its state and the problems it has.
export function classify(g, now) {
  const s = g.state || 'active';
  const c = {
    state: s,
    cooling: s === 'active' && isCooling(g, now),
    short: !!g.short,
    hot: s === 'active' && usedOf(g) >= HOT,
  };
  c.unhealthy = s === 'suspended' || s === 'probing' || c.cooling;
  c.rank = s === 'suspended' ? 0 : s === 'probing' ? 1 : c.cooling ? 2 : c.short ? 3 : c.hot ? 4
    : s === 'draining' ? 5 : s === 'retired' ? 7 : 6;
  return c;
}

// matches reports whether a classified group passes a summary filter.
export function matches(c, filter) {
  switch (filter) {
    case '': return true;
    case 'unhealthy': return c.unhealthy;
    case 'cooling': return c.cooling;
    case 'short': return c.short;
    case 'hot': return c.hot;
    default: return c.state === filter;
  }
}

// counts are the summary's numbers.
export function counts(now) {
  const out = { groups: 0, active: 0, unhealthy: 0, cooling: 0, suspended: 0, probing: 0, short: 0, hot: 0, draining: 0, retired: 0 };
  for (const g of statusGroups()) {
    const c = classify(g, now);
    if (c.state === 'retired') { out.retired++; continue; }
    out.groups++;
    if (c.state in out) out[c.state]++;
    for (const k of ['unhealthy', 'cooling', 'short', 'hot']) if (c[k]) out[k]++;
  }
  const nodes = statusNodes();
  out.live = nodes.length;
  out.standby = ((state.status && state.status.standby) || []).length;
  out.stale = nodes.filter((n) => n.stale).length;
  return out;
}

// isMoved reports whether a node changed groups a moment ago.
export function isMoved(id) {
  return (state.movedUntil.get(id) || 0) > Date.now();
}
