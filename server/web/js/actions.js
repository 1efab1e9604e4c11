// What the buttons do: a group's row menu and its actions, schedule and
// demo node actions. Each asks for a refresh when done.
import { $, el, replaceChildren, toast } from './dom.js';
import { api, enc } from './api.js';
import { fmtTime } from './format.js';
import { hooks, isCooling, state, statusGroups } from './state.js';
import { openGroupDialog, openHistory } from './dialogs.js';

// run calls fn, toasts okText or the error, and refreshes.
export async function run(fn, okText) {
  try {
    const r = await fn();
    if (okText) toast(okText);
    hooks.refresh();
    return r;
  } catch (e) {
    toast(e.message, 'error');
    return undefined;
  }
}

export function confirmBox(title, text, okLabel) {
  return new Promise((resolve) => {
    const d = $('dlg-confirm');
    $('dlg-confirm-title').textContent = title;
    $('dlg-confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel || 'Confirm';
    d.returnValue = '';
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
  });
}

async function suspendGroup(name) {
  if (!await confirmBox('Suspend ' + name + '?', 'No node holds "' + name + '" until you resume it; its holders get other groups now.', 'Suspend')) return;
  await run(() => api('POST', '/v1/groups/' + enc(name) + '/suspend', { reason: 'suspended in the web UI' }), 'suspended ' + name);
}

async function resumeGroup(name) {
  await run(() => api('POST', '/v1/groups/' + enc(name) + '/resume', {}), 'resumed ' + name);
}

async function clearCooldown(name) {
  await run(() => api('POST', '/v1/groups/' + enc(name) + '/cool', { clear: true }), 'cooldown of ' + name + ' cleared');
}

async function retireGroup(name) {
  if (!await confirmBox('Retire ' + name + '?', 'New nodes stop getting "' + name + '" and its holders move off; it becomes retired once no node holds it.', 'Retire')) return;
  await run(() => api('POST', '/v1/groups/' + enc(name) + '/retire', {}), 'retiring ' + name);
}

async function deleteGroup(name) {
  if (!await confirmBox('Delete ' + name + '?', 'The group "' + name + '" is removed at once and its nodes are reassigned. Its history is kept only in exports you made.', 'Delete')) return;
  await run(() => api('DELETE', '/v1/groups/' + enc(name)), 'deleted ' + name);
}

export async function cancelSchedule(s) {
  if (!await confirmBox('Cancel scheduled change?', s.op + ' ' + s.group + ' at ' + fmtTime(s.at), 'Cancel change')) return;
  await run(() => api('DELETE', '/v1/schedule/' + enc(s.id)), 'cancelled');
}

export async function devAction(id, what) {
  await run(() => api('POST', '/v1/dev/nodes/' + enc(id) + '/' + what, {}), what === 'stop' ? 'stopped ' + id : 'started ' + id);
}

// ---------- the row menu ----------

let menuFor = '';

function item(testid, label, fn, opts = {}) {
  return el('button', { type: 'button', role: 'menuitem', class: opts.danger ? 'link-danger' : '', testid, disabled: !!opts.disabled,
    onclick: () => { closeRowMenu(); fn(); } }, label);
}

// openRowMenu shows the actions of group name next to anchor (again:
// closes it).
export function openRowMenu(name, anchor) {
  const menu = $('row-menu');
  if (!menu.hidden && menuFor === name) { closeRowMenu(); return; }
  const g = statusGroups().find((x) => x.name === name) || { name, state: 'active' };
  const doc = state.docs.get(name);
  const live = g.state !== 'retired';
  const unhealthy = g.state === 'suspended' || g.state === 'probing';
  replaceChildren(menu,
    el('div', { class: 'menu-title mono' }, name),
    item('group-edit-' + name, 'Edit…', () => openGroupDialog(doc), { disabled: !live || !doc }),
    item('group-history-' + name, 'History…', () => openHistory(name)),
    unhealthy ? item('group-resume-' + name, 'Resume', () => resumeGroup(name))
      : item('group-suspend-' + name, 'Suspend…', () => suspendGroup(name), { disabled: g.state !== 'active' }),
    isCooling(g) ? item('group-cool-clear-' + name, 'End cooldown', () => clearCooldown(name)) : null,
    item('group-retire-' + name, 'Retire…', () => retireGroup(name), { disabled: g.state !== 'active' }),
    item('group-delete-' + name, 'Delete…', () => deleteGroup(name), { danger: true }));
  const r = anchor.getBoundingClientRect();
  menu.hidden = false;
  menu.style.top = (window.scrollY + r.bottom + 4) + 'px';
  menu.style.left = Math.max(8, window.scrollX + r.right - menu.offsetWidth) + 'px';
  menuFor = name;
}

export function closeRowMenu() {
  $('row-menu').hidden = true;
  menuFor = '';
}

export function wireRowMenu() {
  document.addEventListener('click', (e) => {
    const menu = $('row-menu');
    if (menu.hidden || menu.contains(e.target) || (e.target.closest && e.target.closest('.menu-btn'))) return;
    closeRowMenu();
  });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeRowMenu(); });
}
