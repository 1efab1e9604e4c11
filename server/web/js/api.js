// The JSON API and the bearer token (kept for this browser tab only).
import { $ } from './dom.js';
import { hooks, state } from './state.js';

const TOKEN_KEY = 'allot.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// currentToken is the token this tab sends ('' for none).
export const currentToken = () => sessionStorage.getItem(TOKEN_KEY) || '';

export function authHeaders(extra) {
  const h = Object.assign({}, extra);
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) h.Authorization = 'Bearer ' + tok;
  return h;
}

export const enc = encodeURIComponent;

// takeBoot hands over, once, the answer boot.js started for a GET of path
// (with the token of that moment), or null.
function takeBoot(method, path) {
  const boot = window.allotBoot;
  if (method !== 'GET' || !boot || !boot[path]) return null;
  const res = boot[path];
  delete boot[path];
  return res.catch(() => fetch(path, { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' }));
}

// api calls the JSON API. body: undefined, a string (sent as-is with
// contentType) or a value (sent as JSON). raw: return the response text.
export async function api(method, path, body, opts = {}) {
  const headers = authHeaders({ Accept: opts.raw ? '*/*' : 'application/json' });
  let payload;
  if (typeof body === 'string') {
    payload = body;
    headers['Content-Type'] = opts.contentType || 'application/yaml';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = await (takeBoot(method, path) || fetch(path, { method, headers, body: payload, cache: 'no-store' }));
  if (res.headers.get('Allot-Dev') === 'true') state.devMode = true;
  const text = await res.text();
  if (!res.ok) {
    let code = 'http_' + res.status;
    let message = text.trim() || res.statusText;
    try {
      const e = JSON.parse(text).error;
      if (e) { code = e.code || code; message = e.message || message; }
    } catch (_) { /* not JSON */ }
    if ((res.status === 401 || res.status === 403) && !opts.quiet) askToken(res.status, message);
    throw new ApiError(res.status, code, message);
  }
  if (opts.raw) return { text, type: res.headers.get('Content-Type') || '' };
  if (!text) return null;
  return JSON.parse(text);
}

// listOf accepts either a bare array or {key: [...]}.
export function listOf(v, key) {
  if (Array.isArray(v)) return v;
  if (v && Array.isArray(v[key])) return v[key];
  if (v && Array.isArray(v.items)) return v.items;
  return [];
}

let tokenPrompted = false;
let tokenWaiters = [];

export function askToken(status, message) {
  if (tokenPrompted) return;
  tokenPrompted = true;
  const why = status === 403
    ? 'This token may not do that (' + message + '). Enter an admin token.'
    : 'This server needs a token. It is kept for this browser tab only.';
  $('dlg-token-text').textContent = why;
  const d = $('dlg-token');
  if (!d.open) d.showModal();
}

export const waitForToken = () => new Promise((r) => tokenWaiters.push(r));

function tokenChanged() {
  tokenPrompted = false;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((w) => w());
  hooks.tokenChanged();
}

export function wireToken() {
  $('btn-token').addEventListener('click', () => { tokenPrompted = true; $('dlg-token').showModal(); });
  $('form-token').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = e.target.elements.token.value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    e.target.reset();
    $('dlg-token').close();
    tokenChanged();
  });
  $('token-clear').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('dlg-token').close();
    tokenChanged();
  });
  $('dlg-token').addEventListener('cancel', () => { tokenPrompted = false; });
}
