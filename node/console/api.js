// The console's only door to the node: JSON calls to /api/v1 (same origin,
// with the pasted bearer token), the token and cart id kept in localStorage,
// and the node's server-sent events fanned out to whichever view listens.

const TOKEN_KEY = 'concord.token';
const CART_KEY = 'concord.cart';
const REFRESH_KEY = 'concord.refresh';
const EMAIL_KEY = 'concord.email';

/** An API failure: HTTP status plus the API's `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; resolves to the parsed JSON body or throws an ApiError. */
export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'network', `the node did not answer (${e.message})`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below by status, with the text as the message.
  }
  if (!res.ok) {
    const e = json?.error;
    throw new ApiError(res.status, e?.code ?? res.statusText, e?.message ?? (text || res.statusText));
  }
  return json;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body ?? {});
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ------------------------------------------------------------------ token

/** The pasted bearer token, or null. */
export function getToken() {
  return localStorage.getItem(TOKEN_KEY);
}

/** Stores (or, given an empty value, forgets) the bearer token. */
export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  tokenChanged.dispatchEvent(new Event('change'));
}

/**
 * Signs in (`mode` "login") or signs up (`mode` "register") with e-mail and
 * password, keeping the session's tokens in this browser; the browser's cart
 * id is then the account's own.
 */
export async function signIn(mode, body) {
  const s = await call('POST', `/auth/${mode}`, body);
  localStorage.setItem(REFRESH_KEY, s.refreshToken);
  localStorage.setItem(EMAIL_KEY, s.account.email);
  // A fresh cart for the account (a cart another token wrote stays theirs).
  localStorage.removeItem(CART_KEY);
  setToken(s.accessToken);
  return s;
}

/** Signs the session out on every node, and forgets its tokens here. */
export async function signOut() {
  if (localStorage.getItem(REFRESH_KEY)) {
    try { await call('POST', '/auth/logout', {}); } catch { /* already ended */ }
  }
  localStorage.removeItem(REFRESH_KEY);
  localStorage.removeItem(EMAIL_KEY);
  setToken('');
}

/** The e-mail of the signed-in account, if the token came from a sign-in. */
export function accountEmail() {
  return getToken() ? localStorage.getItem(EMAIL_KEY) : null;
}

/** Fires `change` when the token is set or cleared. */
export const tokenChanged = new EventTarget();

/** The claims inside the token (`{sub, role, exp}`), read without checking
 * the signature (the node checks it); null when absent or unreadable. */
export function claims() {
  const token = getToken();
  const part = token?.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

/** This browser's cart id: made once, then kept. */
export function cartId() {
  let id = localStorage.getItem(CART_KEY);
  if (!id) {
    id = uuid4();
    localStorage.setItem(CART_KEY, id);
  }
  return id;
}

// A random (version 4) UUID. crypto.randomUUID exists only in secure
// contexts, and a node is often reached over plain HTTP by address.
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// ------------------------------------------------------------------ events

/** Server-sent events of the node, re-dispatched as CustomEvents whose
 * `detail` is the parsed payload: `delta`, `order`, `peer`, `digest`,
 * `convergence`, `divergence`, `reset`; plus `status` (`detail` true when
 * connected). Which events arrive depends on the token: anonymous callers
 * see catalog and stock events, a customer its own carts and orders too, an
 * admin everything. */
export const events = new EventTarget();

// Dispatches one SSE block (`id:`, `event:`, `data:` lines); returns its id.
function dispatchBlock(block) {
  let id = null, kind = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const at = line.indexOf(':');
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') kind = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return id;
  let detail = null;
  try {
    detail = JSON.parse(data.join('\n'));
  } catch {
    // A malformed payload still signals that something changed.
  }
  events.dispatchEvent(new CustomEvent(kind, { detail }));
  return id;
}

/** Opens the event stream with the current token (EventSource cannot send
 * one, so this reads the stream with fetch), resumes with Last-Event-ID
 * after a drop, and reopens from scratch when the token changes. */
export function connectEvents() {
  let lastId = null;
  let current = null;
  const open = async () => {
    current?.abort();
    const mine = new AbortController();
    current = mine;
    const headers = { Accept: 'text/event-stream' };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (lastId) headers['Last-Event-ID'] = lastId;
    try {
      const res = await fetch('/api/v1/events', { headers, signal: mine.signal });
      if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
      events.dispatchEvent(new CustomEvent('status', { detail: true }));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const id = dispatchBlock(buf.slice(0, end));
          if (id) lastId = id;
          buf = buf.slice(end + 2);
        }
      }
    } catch {
      // Dropped, refused or aborted: reconnect below unless replaced.
    }
    if (mine.signal.aborted) return;
    events.dispatchEvent(new CustomEvent('status', { detail: false }));
    setTimeout(() => { if (current === mine) open(); }, 1000);
  };
  tokenChanged.addEventListener('change', () => { lastId = null; open(); });
  open();
}

/** Listens to event kinds until `signal` aborts. Calls are coalesced: a
 * burst of events (those passing `filter`, given the payload) causes one
 * call of `fn`, `delay` milliseconds after the first. */
export function onEvents(kinds, fn, signal, { delay = 200, filter = () => true } = {}) {
  let timer = null;
  const fire = (e) => {
    if (timer === null && filter(e.detail ?? {}, e.type)) timer = setTimeout(() => { timer = null; fn(); }, delay);
  };
  for (const k of kinds) events.addEventListener(k, fire, { signal });
  signal.addEventListener('abort', () => clearTimeout(timer));
}
