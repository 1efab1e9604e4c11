// Number, time and quota formatting.

export function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, '');
}

// fmtCount is a count for people: 1234 → "1,234", 2500000 → "2.5M".
export function fmtCount(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return fmtNum(Math.round(n / 1e8) / 10) + 'G';
  if (a >= 1e6) return fmtNum(Math.round(n / 1e5) / 10) + 'M';
  if (a >= 1e4) return fmtNum(Math.round(n / 100) / 10) + 'k';
  return Math.round(n).toLocaleString('en-US');
}

export function fmtPct(ratio) {
  if (!ratio) return '0%';
  const p = ratio * 100;
  return (p < 1 ? p.toFixed(1).replace(/\.0$/, '') : String(Math.round(p))) + '%';
}

// fmtDemand is a node's or group's demand (GET /v1/status, placement by
// demand): "20/s · 1500 tok/s"; "—" when the node reports none.
export function fmtDemand(d) {
  if (!d) return '—';
  return fmtNum(d.calls) + '/s' + (d.tokens ? ' · ' + fmtNum(d.tokens) + ' tok/s' : '');
}

// fmtShare is each holder's part of every limit of the quota text, e.g.
// "150/m, 22500 tokens/m (25%)", or only the percentage without a quota.
export function fmtShare(share, quota) {
  if (share === undefined || share === null || !share) return '–';
  const pct = fmtNum(share * 100) + '%';
  const parts = [];
  for (const part of String(quota || '').split(',')) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(tokens?\s*)?\/\s*([a-z]+)/i.exec(part);
    if (m) parts.push(fmtNum(parseFloat(m[1]) * share) + (m[2] ? ' tokens' : '') + '/' + m[3]);
  }
  return parts.length ? parts.join(', ') + ' (' + pct + ')' : pct;
}

// ago is how long before `at` (ms, default now) the time ts was.
export function ago(ts, at) {
  if (!ts) return '–';
  const t = Date.parse(ts);
  if (Number.isNaN(t)) return String(ts);
  const s = Math.max(0, Math.round(((at || Date.now()) - t) / 1000));
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  return Math.floor(s / 3600) + 'h ago';
}

export function fmtTime(ts) {
  if (!ts) return '–';
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

// countdownText is "12s", "3m05s" or "1h02m" until `until` (ms), or done.
export function countdownText(until, prefix, done) {
  const left = Math.ceil((until - Date.now()) / 1000);
  if (left <= 0) return done || '';
  const text = left >= 3600 ? Math.floor(left / 3600) + 'h' + String(Math.floor(left % 3600 / 60)).padStart(2, '0') + 'm'
    : left >= 60 ? Math.floor(left / 60) + 'm' + String(left % 60).padStart(2, '0') + 's' : left + 's';
  return prefix + text;
}

// windowWord names a limit's reading window: "today" for a day, "this
// hour", "last min".
export function windowWord(w) {
  if (w === '24h') return 'today';
  if (w === '1h') return 'this hour';
  return 'last min';
}
