// The dialogs: add and update a group, its history, schedule a change,
// import and export.
import { $, el, replaceChildren, toast } from './dom.js';
import { api, enc, listOf } from './api.js';
import { fmtNum, fmtTime } from './format.js';
import { hooks, state } from './state.js';

// parseLines reads "key=value" lines; blank lines and # comments are skipped.
function parseLines(text) {
  const out = {};
  const lines = (text || '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error('line ' + (i + 1) + ': expected key=value');
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

const splitList = (s) => (s || '').split(',').map((x) => x.trim()).filter(Boolean);

function configLines(config) {
  return Object.keys(config || {}).sort().map((k) => k + '=' + config[k]).join('\n');
}

function configView(g) {
  const secret = new Set(g.secret_keys || []);
  const keys = Object.keys(g.config || {}).sort();
  if (!keys.length) return el('span', { class: 'muted' }, '—');
  return el('div', { class: 'config-lines' }, keys.map((k) => el('div', { title: k + '=' + g.config[k] },
    k, '=', secret.has(k) ? [el('span', { class: 'secret' }, g.config[k]), ' ', el('span', { class: 'secret-tag' }, 'secret')] : g.config[k])));
}

function stateBadge(s) {
  return el('span', { class: 'badge ' + (s || ''), testid: 'state' }, s || '–');
}

// localISO converts a datetime-local value to RFC 3339 with the browser's
// offset, so the server gets an unambiguous instant.
function localISO(v) {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error('bad time: ' + v);
  return d.toISOString();
}

function numOrUndef(v, int) {
  if (v === '' || v === undefined) return undefined;
  const n = int ? parseInt(v, 10) : parseFloat(v);
  if (Number.isNaN(n)) throw new Error('not a number: ' + v);
  return n;
}

// ---------- group dialog (add and update) ----------

let editing = null; // the group being updated, null when adding

export function openGroupDialog(g) {
  editing = g || null;
  const f = $('form-group');
  f.reset();
  $('dlg-group-error').textContent = '';
  $('dlg-group-title').textContent = g ? 'Update ' + g.name + ' (v' + g.version + ')' : 'Add group';
  $('dlg-group-submit').textContent = g ? 'Update' : 'Add';
  $('dlg-group-secret-hint').hidden = !(g && (g.secret_keys || []).length);
  $('dlg-group-at-row').hidden = !g;
  f.elements.name.readOnly = !!g;
  if (g) {
    f.elements.name.value = g.name;
    f.elements.weight.value = g.weight ?? '';
    f.elements.max_nodes.value = g.max_nodes ?? '';
    f.elements.quota.value = g.quota || '';
    f.elements.config.value = configLines(g.config);
    f.elements.secrets.value = (g.secret_keys || []).join(', ');
  }
  $('dlg-group').showModal();
  (g ? f.elements.weight : f.elements.name).focus();
}

async function submitGroup(ev) {
  ev.preventDefault();
  const f = $('form-group');
  const err = $('dlg-group-error');
  err.textContent = '';
  let body;
  let path;
  let method;
  try {
    const config = parseLines(f.elements.config.value);
    const secrets = splitList(f.elements.secrets.value);
    const weight = numOrUndef(f.elements.weight.value);
    const maxNodes = numOrUndef(f.elements.max_nodes.value, true);
    const quota = f.elements.quota.value.trim();
    if (!editing) {
      method = 'POST';
      path = '/v1/groups';
      body = { name: f.elements.name.value.trim(), config, secret_keys: secrets };
      if (weight !== undefined) body.weight = weight;
      if (maxNodes !== undefined) body.max_nodes = maxNodes;
      if (quota) body.quota = quota;
    } else {
      // Send only what changed: masked secret values come back unchanged
      // and must never be written over the real ones.
      const old = editing.config || {};
      const set = {};
      for (const [k, v] of Object.entries(config)) if (old[k] !== v) set[k] = v;
      const unset = Object.keys(old).filter((k) => !(k in config));
      const oldSecrets = new Set(editing.secret_keys || []);
      const newSecrets = secrets.filter((k) => !oldSecrets.has(k));
      for (const k of newSecrets) if (!(k in set) && k in config) set[k] = config[k];
      body = {};
      if (Object.keys(set).length) body.set = set;
      if (unset.length) body.unset = unset;
      if (newSecrets.length) body.secret = newSecrets;
      if (weight !== undefined && weight !== editing.weight) body.weight = weight;
      if (maxNodes !== undefined && maxNodes !== editing.max_nodes) body.max_nodes = maxNodes;
      if (quota !== (editing.quota || '')) body.quota = quota;
      if (!Object.keys(body).length) throw new Error('nothing changed');
      const at = localISO(f.elements.at.value);
      if (at) body.at = at;
      else body.if_version = editing.version; // never overwrite a change made meanwhile
      method = 'PATCH';
      path = '/v1/groups/' + enc(editing.name);
    }
  } catch (e) {
    err.textContent = e.message;
    return;
  }
  try {
    await api(method, path, body);
    $('dlg-group').close();
    toast(editing ? (body.at ? 'scheduled update of ' : 'updated ') + editing.name : 'added ' + body.name);
    hooks.refresh(editing ? editing.name : body.name);
  } catch (e) {
    err.textContent = e.message;
  }
}

// ---------- history ----------

export async function openHistory(name) {
  const d = $('dlg-history');
  $('dlg-history-title').textContent = 'History of ' + name;
  $('dlg-history-error').textContent = '';
  replaceChildren($('history-body'), el('tr', {}, el('td', { colspan: 9, class: 'empty' }, 'loading…')));
  if (!d.open) d.showModal();
  try {
    const versions = listOf(await api('GET', '/v1/groups/' + enc(name) + '/history'), 'history');
    const current = versions.length ? Math.max(...versions.map((v) => v.version)) : 0;
    const rows = versions.map((v) => el('tr', { class: v.version === current ? 'current' : '', testid: 'history-v' + v.version },
      el('td', { class: 'mono' }, 'v' + v.version),
      el('td', {}, stateBadge(v.state)),
      el('td', { class: 'num' }, fmtNum(v.weight)),
      el('td', { class: 'num' }, v.max_nodes ? String(v.max_nodes) : '∞'),
      el('td', { class: 'mono' }, v.quota || '—'),
      el('td', {}, configView(v)),
      el('td', { class: 'muted' }, fmtTime(v.updated)),
      el('td', { class: 'muted' }, v.updated_by || ''),
      el('td', { class: 'actions' }, v.version === current ? el('span', { class: 'muted' }, 'current')
        : el('button', { type: 'button', class: 'small', testid: 'rollback-v' + v.version, onclick: () => rollback(name, v.version) }, 'Roll back'))));
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 9, class: 'empty' }, 'No history.')));
    replaceChildren($('history-body'), rows);
  } catch (e) {
    $('dlg-history-error').textContent = e.message;
  }
}

async function rollback(name, version) {
  try {
    const g = await api('POST', '/v1/groups/' + enc(name) + '/rollback', { version });
    toast('rolled back ' + name + ' to v' + version + (g && g.version ? ' (now v' + g.version + ')' : ''));
    hooks.refresh(name);
    openHistory(name);
  } catch (e) {
    $('dlg-history-error').textContent = e.message;
  }
}

// ---------- schedule ----------

function openSchedule() {
  const f = $('form-schedule');
  f.reset();
  $('dlg-schedule-error').textContent = '';
  const names = [...state.docs.values()].filter((g) => g.state !== 'retired').map((g) => g.name).sort();
  replaceChildren(f.elements.group, names.map((n) => el('option', { value: n }, n)));
  syncScheduleOp();
  $('dlg-schedule').showModal();
}

function syncScheduleOp() {
  const f = $('form-schedule');
  $('schedule-update-fields').hidden = f.elements.op.value !== 'update';
}

async function submitSchedule(ev) {
  ev.preventDefault();
  const f = $('form-schedule');
  const err = $('dlg-schedule-error');
  err.textContent = '';
  let body;
  try {
    body = { group: f.elements.group.value, op: f.elements.op.value, at: localISO(f.elements.at.value) };
    if (!body.group) throw new Error('choose a group');
    if (!body.at) throw new Error('choose a time');
    if (body.op === 'update') {
      const change = {};
      const set = parseLines(f.elements.set.value);
      if (Object.keys(set).length) change.set = set;
      const unset = splitList(f.elements.unset.value);
      if (unset.length) change.unset = unset;
      const w = numOrUndef(f.elements.weight.value);
      if (w !== undefined) change.weight = w;
      const m = numOrUndef(f.elements.max_nodes.value, true);
      if (m !== undefined) change.max_nodes = m;
      if (f.elements.quota.value.trim()) change.quota = f.elements.quota.value.trim();
      body.change = change;
    }
  } catch (e) {
    err.textContent = e.message;
    return;
  }
  try {
    await api('POST', '/v1/schedule', body);
    $('dlg-schedule').close();
    toast('scheduled ' + body.op + ' of ' + body.group);
    hooks.refresh();
  } catch (e) {
    err.textContent = e.message;
  }
}

// ---------- import / export ----------

function openImport() {
  $('import-text').value = '';
  $('import-file').value = '';
  $('import-prune').checked = false;
  replaceChildren($('import-diff'));
  $('dlg-import-error').textContent = '';
  $('import-apply').disabled = true;
  $('dlg-import').showModal();
}

function importQuery(dry) {
  const q = new URLSearchParams();
  if (dry) q.set('dry_run', 'true');
  if ($('import-prune').checked) q.set('prune', 'true');
  const s = q.toString();
  return '/v1/import' + (s ? '?' + s : '');
}

function importType(text) {
  return /^\s*[[{]/.test(text) ? 'application/json' : 'application/yaml';
}

async function previewImport() {
  const text = $('import-text').value;
  $('dlg-import-error').textContent = '';
  $('import-apply').disabled = true;
  try {
    const res = await api('POST', importQuery(true), text, { contentType: importType(text) });
    renderDiff(res);
    $('import-apply').disabled = false;
  } catch (e) {
    replaceChildren($('import-diff'));
    $('dlg-import-error').textContent = e.message;
  }
}

async function applyImport() {
  const text = $('import-text').value;
  try {
    const res = await api('POST', importQuery(false), text, { contentType: importType(text) });
    renderDiff(res);
    $('import-apply').disabled = true;
    toast('import applied');
    hooks.refresh();
  } catch (e) {
    $('dlg-import-error').textContent = e.message;
  }
}

// renderDiff shows an import report: {dry_run, added, changed: [{name,
// fields}], removed, unchanged (a count), kept}. Anything else is shown as
// indented JSON (as text).
function renderDiff(res) {
  const out = $('import-diff');
  if (!res || !['added', 'changed', 'removed'].some((k) => Array.isArray(res[k]))) {
    replaceChildren(out, el('pre', {}, JSON.stringify(res, null, 2)));
    return;
  }
  const lines = [el('div', { class: 'muted' }, res.dry_run ? 'Dry run: nothing was written.' : 'Applied.')];
  for (const n of res.added || []) lines.push(el('div', { class: 'add', testid: 'diff-' + n }, '+ add ' + n));
  for (const c of res.changed || []) {
    lines.push(el('div', { class: 'mod', testid: 'diff-' + c.name }, '~ update ' + c.name));
    for (const f of c.fields || []) lines.push(el('div', { class: 'mod' }, '    ' + f.field + ': ' + JSON.stringify(f.old) + ' → ' + JSON.stringify(f.new)));
  }
  for (const n of res.removed || []) lines.push(el('div', { class: 'del', testid: 'diff-' + n }, '- remove ' + n));
  const kept = res.kept || [];
  if (kept.length) lines.push(el('div', { class: 'muted' }, '= kept (not in the file; prune removes them): ' + kept.join(', ')));
  if (res.unchanged) lines.push(el('div', { class: 'muted' }, '= ' + res.unchanged + ' unchanged'));
  if (lines.length === 1) lines.push(el('div', {}, 'No changes.'));
  replaceChildren(out, lines);
}

async function exportPool() {
  try {
    const { text, type } = await api('GET', '/v1/export', undefined, { raw: true });
    const json = /json/.test(type);
    const blob = new Blob([text], { type: json ? 'application/json' : 'application/yaml' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: 'allot-' + ($('namespace').textContent || 'pool') + (json ? '.json' : '.yaml') });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) {
    toast('export failed: ' + e.message, 'error');
  }
}

export function wireDialogs() {
  document.querySelectorAll('dialog [data-close]').forEach((b) => b.addEventListener('click', () => b.closest('dialog').close()));
  $('btn-add-group').addEventListener('click', () => openGroupDialog(null));
  $('form-group').addEventListener('submit', submitGroup);
  $('btn-schedule').addEventListener('click', openSchedule);
  $('form-schedule').elements.op.addEventListener('change', syncScheduleOp);
  $('form-schedule').addEventListener('submit', submitSchedule);
  $('btn-import').addEventListener('click', openImport);
  $('btn-export').addEventListener('click', exportPool);
  $('import-preview').addEventListener('click', previewImport);
  $('import-apply').addEventListener('click', applyImport);
  $('import-text').addEventListener('input', () => { $('import-apply').disabled = true; });
  $('import-prune').addEventListener('change', () => { $('import-apply').disabled = true; });
  $('import-file').addEventListener('change', async (e) => {
    const file = e.target.files && e.target.files[0];
    if (file) { $('import-text').value = await file.text(); $('import-apply').disabled = true; }
  });
  $('confirm-ok').addEventListener('click', (e) => { e.preventDefault(); $('dlg-confirm').close('ok'); });
}
