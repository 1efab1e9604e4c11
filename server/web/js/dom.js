// DOM helpers. Every piece of server data reaches the page through
// textContent or attributes (see el()), never innerHTML, so a group named
// "<img onerror>" is just text.

export const $ = (id) => document.getElementById(id);

// el builds an element. attrs: class, testid, on<event>, plain attributes;
// children: nodes or strings (strings become text nodes).
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'testid') node.dataset.testid = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

export function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

export function toast(message, kind) {
  const t = el('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status' }, message);
  $('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
}

export const delay = (ms) => new Promise((r) => setTimeout(r, ms));
