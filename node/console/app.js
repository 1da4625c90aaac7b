// The console's entry point: the header (navigation, token, live indicator)
// and a hash router that mounts one view at a time into <main>.
//
// A view is `async (root, ctx) => void`, where ctx = {params, query, signal}.
// `signal` aborts when the view is left: views hang their event listeners
// and timers on it, and check it after each await before touching the page.

import { accountEmail, cartId, claims, connectEvents, events, get, getToken, setToken, signIn, signOut, tokenChanged } from './api.js';
import { append, h, replace } from './dom.js';
import * as cluster from './cluster.js';
import * as catalog from './catalog.js';
import * as orders from './orders.js';
import * as chaos from './chaos.js';

const ROUTES = [
  [/^\/cluster$/, 'cluster', cluster.view],
  [/^\/diff\/([^/]+)\/([^/]+)$/, 'cluster', cluster.view],
  [/^\/catalog$/, 'catalog', catalog.list],
  [/^\/product\/([^/]+)$/, 'catalog', catalog.product],
  [/^\/orders$/, 'orders', orders.list],
  [/^\/order\/([^/]+)$/, 'orders', orders.detail],
  [/^\/carts$/, 'carts', orders.carts],
  [/^\/cart\/([^/]+)$/, 'carts', orders.cart],
  [/^\/chaos$/, 'chaos', chaos.view],
];

const NAV = [['cluster', 'Cluster'], ['catalog', 'Catalog'], ['orders', 'Orders'], ['carts', 'Carts'], ['chaos', 'Chaos']];

const main = document.getElementById('app');
let current = null;
let navigated = false;

/** A path segment, decoded; left as it is when it is not valid %-encoding. */
function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Mounts the view the location hash names (default: the cluster view). */
function route() {
  const raw = location.hash.replace(/^#/, '') || '/cluster';
  const [path, search = ''] = raw.split('?');
  const found = ROUTES.map(([re, section, view]) => [path.match(re), section, view]).find(([m]) => m);
  current?.abort();
  current = new AbortController();
  for (const a of document.querySelectorAll('nav.main a')) {
    if (a.dataset.section === found?.[1]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  if (!found) {
    append(main, [h('h1', {}, 'Not found'), h('p', {}, 'No view at ', h('code', {}, raw), '. ', h('a', { href: '#/cluster' }, 'Go to the cluster.'))]);
    return;
  }
  const [m, , view] = found;
  const ctx = {
    params: m.slice(1).map(decode),
    query: new URLSearchParams(search),
    signal: current.signal,
  };
  view(main, ctx).catch((e) => {
    if (!ctx.signal.aborted) append(main, h('div', { class: 'error', role: 'alert' }, `The view failed: ${e.message}`));
  });
  // After a navigation, keyboard and screen-reader users continue in the
  // new view (on first load, focus stays at the top of the page).
  if (navigated) main.focus({ preventScroll: true });
  navigated = true;
  window.scrollTo(0, 0);
}

// ------------------------------------------------------------------ header

/** Sign in or create an account with e-mail and password. */
function accountForm(done) {
  const field = (name, label, attrs) => [h('label', { for: `acct-${name}` }, label), h('input', { id: `acct-${name}`, name, ...attrs })];
  const out = h('p', { class: 'out', role: 'status' });
  const form = h('form', { class: 'account-form' },
    h('div', { class: 'fields' },
      field('email', 'E-mail', { type: 'email', required: true, autocomplete: 'email', maxlength: 254 }),
      field('password', 'Password', { type: 'password', required: true, autocomplete: 'current-password', minlength: 8, maxlength: 256 }),
      field('name', 'Name (to create an account)', { autocomplete: 'name', maxlength: 100 })),
    h('div', { class: 'row' },
      h('button', { type: 'submit', value: 'login' }, 'Sign in'),
      h('button', { type: 'submit', value: 'register', class: 'secondary' }, 'Create account')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const mode = e.submitter?.value === 'register' ? 'register' : 'login';
    const v = Object.fromEntries(new FormData(form));
    const body = { email: v.email, password: v.password };
    if (mode === 'register') body.name = v.name || v.email.split('@')[0];
    try {
      await signIn(mode, body);
      form.reset();
      out.textContent = '';
      done();
    } catch (err) {
      out.textContent = err.message;
      out.className = 'out error';
    }
  });
  return form;
}

function tokenPanel() {
  const summary = h('summary', {});
  const input = h('input', { type: 'password', id: 'token-input', name: 'token', autocomplete: 'off', spellcheck: 'false', placeholder: 'eyJ…' });
  const form = h('form', {
    class: 'token-form',
    on: {
      submit: (e) => {
        e.preventDefault();
        setToken(input.value.trim());
        input.value = '';
        details.open = false;
      },
    },
  },
  h('label', { for: 'token-input' }, 'Bearer token'),
  input,
  h('div', { class: 'row' },
    h('button', { type: 'submit' }, 'Save'),
    h('button', { type: 'button', class: 'secondary', on: { click: () => { signOut(); details.open = false; } } }, 'Sign out')),
  h('p', { class: 'hint' }, 'Kept in this browser only. ', h('code', {}, 'concord up'), ' prints an admin token; ',
    h('code', {}, 'concord token --role customer --sub alice'), ' makes a customer one.'));
  const details = h('details', { class: 'token' }, summary, accountForm(() => { details.open = false; }), form);
  const show = () => {
    const c = claims();
    const email = accountEmail();
    replace(summary, !getToken() ? 'Sign in' : email ? `Signed in: ${email} (${c?.role ?? '?'})` : `Token: ${c?.sub ?? '?'} (${c?.role ?? 'unreadable'})`);
    details.dataset.signedIn = getToken() ? 'yes' : 'no';
  };
  tokenChanged.addEventListener('change', () => { show(); route(); });
  show();
  return details;
}

/** "My cart": this browser's cart, which a sign-in replaces. */
function myCartLink() {
  const a = h('a', { href: `#/cart/${cartId()}`, dataset: { section: 'mycart' } }, 'My cart');
  tokenChanged.addEventListener('change', () => { a.href = `#/cart/${cartId()}`; });
  return a;
}

function header() {
  const name = h('span', { class: 'node-name' }, '');
  const live = h('span', { class: 'live', dataset: { live: 'off' }, title: 'Event stream' }, 'connecting');
  events.addEventListener('status', (e) => {
    live.dataset.live = e.detail ? 'on' : 'off';
    live.textContent = e.detail ? 'live' : 'reconnecting';
  });
  get('/cluster/status').then(
    (st) => { name.textContent = st.id; document.title = `Concord · ${st.id}`; },
    () => { name.textContent = '?'; },
  );
  return h('header', { class: 'top' },
    h('a', { class: 'skip', href: '#app', on: { click: (e) => { e.preventDefault(); main.focus(); } } }, 'Skip to content'),
    h('div', { class: 'brand' }, h('a', { href: '#/cluster' }, 'Concord'), ' ', name, ' ', live),
    h('nav', { class: 'main', 'aria-label': 'Views' },
      NAV.map(([id, label]) => h('a', { href: `#/${id}`, dataset: { section: id } }, label)),
      myCartLink()),
    tokenPanel());
}

document.body.prepend(header());
window.addEventListener('hashchange', route);
connectEvents();
route();
