// Orders and carts (they need the bearer token pasted into the header):
// the orders list and an order page with its status moves, whose refusals
// (409 illegal_transition, 503 seller_unreachable, …) are shown as the API
// words them; the carts list and a cart page with checkout. Order views
// follow the node's `order` events, so a status change made anywhere in the
// cluster shows up without a reload.

import { cartId, claims, del, events, get, getToken, onEvents, post, put, qs } from './api.js';
import { append, badge, errorBox, facts, h, loading, money, replace, short, table, when } from './dom.js';

const STATUSES = ['placed', 'paid', 'shipped', 'delivered', 'cancelled'];
const MOVES = [['pay', 'Pay'], ['ship', 'Ship'], ['deliver', 'Deliver'], ['cancel', 'Cancel']];
const PAGE = 25;

/** Shows why a view needs a token; true when there is none. */
function needsToken(root, what) {
  if (getToken()) return false;
  root.append(h('h1', {}, what), h('p', { class: 'notice' },
    `${what} need a bearer token (an admin token lists everything). Sign in (or create an account) under “Sign in” above.`));
  return true;
}

/** A list with "load more": `fetchPage(cursor)` → {items, nextCursor}. */
async function pagedRows(tbody, more, fetchPage, row, signal) {
  const load = async (cursor) => {
    const page = await fetchPage(cursor);
    if (signal.aborted) return;
    append(tbody, page.items.map(row));
    replace(more, page.nextCursor
      ? h('button', { type: 'button', class: 'secondary', on: { click: () => load(page.nextCursor).catch((e) => replace(more, errorBox(e))) } }, 'Load more')
      : h('p', { class: 'muted' }, `${tbody.children.length} shown`));
  };
  await load(null);
}

// ------------------------------------------------------------------ orders

/** `#/orders?status=&customerId=`: orders, newest status live. */
export async function list(root, { query, signal }) {
  if (needsToken(root, 'Orders')) return;
  const status = query.get('status') ?? '';
  const customerId = query.get('customerId') ?? '';
  const pick = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)));
  const who = h('input', { id: 'f-customer', name: 'customerId', value: customerId, autocomplete: 'off' });
  const filter = h('form', {
    class: 'filters',
    on: { submit: (e) => { e.preventDefault(); location.hash = `#/orders${qs({ status: pick.value, customerId: who.value.trim() })}`; } },
  }, h('label', { for: 'f-status' }, 'Status'), pick, h('label', { for: 'f-customer' }, 'Customer'), who, h('button', { type: 'submit' }, 'Filter'));
  const tbody = h('tbody');
  const more = h('div', { class: 'more' });
  const body = h('div', {}, loading());
  root.append(h('h1', {}, 'Orders'), filter, body);
  try {
    await pagedRows(tbody, more, (cursor) => get(`/orders${qs({ status, customerId, cursor, limit: PAGE })}`), orderRow, signal);
  } catch (e) {
    if (!signal.aborted) replace(body, errorBox(e));
    return;
  }
  if (signal.aborted) return;
  replace(body, h('div', { class: 'table-wrap' }, h('table', { class: 'orders' },
    h('thead', {}, h('tr', {}, ['Order', 'Customer', 'Status', 'Total', 'Seller', 'Placed'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody)), more);

  // Live: update rows in place; a new matching order is added on top.
  const onOrder = async (e) => {
    const d = e.detail ?? {};
    const row = tbody.querySelector(`tr[data-order="${CSS.escape(d.id ?? '')}"]`);
    if (row) {
      replace(row.querySelector('.status'), badge(d.status));
      row.classList.add('flash');
    } else if ((!status || d.status === status) && (!customerId || d.customerId === customerId)) {
      try {
        const o = await get(`/orders/${encodeURIComponent(d.id)}`);
        if (!signal.aborted && !tbody.querySelector(`tr[data-order="${CSS.escape(o.id)}"]`)) tbody.prepend(orderRow(o));
      } catch {
        // Not readable here (yet): the next event or a reload shows it.
      }
    }
  };
  events.addEventListener('order', onOrder, { signal });
}

function orderRow(o) {
  return h('tr', { dataset: { order: o.id } },
    h('td', {}, h('a', { href: `#/order/${o.id}` }, h('code', {}, short(o.id, 13)))),
    h('td', {}, o.customerId),
    h('td', { class: 'status' }, badge(o.status)),
    h('td', { class: 'num' }, money(o.total, o.currency)),
    h('td', {}, o.node),
    h('td', {}, when(o.createdAt)));
}

/** `#/order/{id}`: the order, its status moves, live status. */
export async function detail(root, { params: [id], signal }) {
  if (needsToken(root, 'Orders')) return;
  const head = h('div', {}, loading());
  const out = h('div', { class: 'out' });
  const live = h('p', { class: 'live-note', role: 'status' });
  const body = h('div', {});
  // Status moves are the merchant's; a shopper may only cancel (and pays
  // with a card below: marking an order paid is for admins).
  const admin = claims()?.role === 'admin';
  const buttons = MOVES.filter(([move]) => admin || move === 'cancel').map(([move, label]) => h('button', {
    type: 'button', dataset: { move }, class: move === 'cancel' ? 'secondary' : null,
    on: { click: () => act(move, label) },
  }, label));
  const payment = h('div', {});
  root.append(h('p', {}, h('a', { href: '#/orders' }, '← Orders')), head,
    h('div', { class: 'moves', role: 'group', 'aria-label': 'Status moves' }, buttons), out, live, payment, body);

  let status = null;
  const names = new Map();
  const show = (o) => {
    status = o.status;
    replace(head, h('h1', {}, 'Order ', h('code', {}, short(o.id, 13)), ' ', h('span', { id: 'order-status' }, badge(o.status))));
    replace(body,
      facts([
        ['Id', h('code', {}, o.id)],
        ['Customer', o.customerId],
        ['Sold by', `${o.node} (only the seller ships; others forward to it)`],
        ['Placed', when(o.createdAt)],
        ['Total', money(o.total, o.currency)],
      ]),
      table(['Product', 'SKU', 'Qty', 'Unit price', 'Subtotal'], o.lineItems.map((l) => [
        h('a', { href: `#/product/${l.productId}` }, names.get(l.productId) ?? short(l.productId, 8)), h('code', {}, l.sku), String(l.quantity),
        money(l.unitPrice, o.currency), money(Math.round(l.unitPrice * l.quantity * 100) / 100, o.currency),
      ]), 'Lines'),
      h('h2', {}, 'Ships to'),
      address(o.shippingAddress));
    replace(payment, ...paymentPart(o, id, show, signal));
  };
  const act = async (move, label) => {
    for (const b of buttons) b.disabled = true;
    replace(out, loading(`${label}…`));
    try {
      const o = await post(`/orders/${encodeURIComponent(id)}/${move}`);
      if (signal.aborted) return;
      show(o);
      replace(out, h('p', { class: 'ok-text', role: 'status' }, `${label}: the order is now ${o.status}.`));
    } catch (e) {
      if (!signal.aborted) replace(out, errorBox(e));
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  };
  const load = async () => {
    const before = status;
    try {
      const o = await get(`/orders/${encodeURIComponent(id)}`);
      await productNames(o, names);
      if (signal.aborted) return;
      show(o);
      if (before && before !== o.status) replace(live, `Status changed to ${o.status} (live).`);
    } catch (e) {
      if (!signal.aborted) replace(head, errorBox(e));
    }
  };
  onEvents(['order', 'reset'], load, signal, { delay: 50, filter: (d, type) => type === 'reset' || d.id === id });
  await load();
}

/** The order's payment (status, method, captured, refunds) and, while it
 * is unpaid, a card form for the configured provider (the `test` provider
 * takes Stripe's test cards; the number goes to the seller's provider and
 * is never stored). */
function paymentPart(o, id, show, signal) {
  const p = o.payment;
  const part = [h('h2', {}, 'Payment')];
  if (p) {
    part.push(facts([
      ['Status', h('span', { id: 'payment-status' }, badge(p.status, p.status === 'succeeded' ? 'paid' : p.status))],
      ['Paid with', `${p.method} (${p.provider}${p.providerRef ? `, ${p.providerRef}` : ''})`],
      ['Captured', money(o.captured, o.currency)],
      ['Refunded', money(o.refunded, o.currency)],
      ...(p.failure ? [['Declined', p.failure]] : []),
    ]));
    if (o.refunds.length) {
      part.push(table(['Refund', 'Amount', 'Status', 'Reason'], o.refunds.map((r) => [h('code', {}, r.id), money(r.amount, o.currency), r.status, r.reason]), 'Refunds'));
    }
  } else {
    const none = { placed: 'Not paid yet.', cancelled: 'No payment was made.' }[o.status]
      ?? 'Paid offline (marked paid by an admin): no card payment.';
    part.push(h('p', { class: 'hint' }, none));
  }
  if (o.status !== 'placed') return part;
  const out = h('div', { class: 'out', role: 'status' });
  const field = (name, label, attrs) => [h('label', { for: `card-${name}` }, label), h('input', { id: `card-${name}`, name, autocomplete: 'off', required: true, ...attrs })];
  const form = h('form', {
    class: 'checkout',
    on: {
      submit: async (e) => {
        e.preventDefault();
        const v = Object.fromEntries(new FormData(form));
        const button = form.querySelector('button');
        button.disabled = true;
        replace(out, loading('Paying…'));
        try {
          const paid = await post(`/orders/${encodeURIComponent(id)}/payments`, {
            card: { number: v.number.replaceAll(' ', ''), expMonth: Number(v.expMonth), expYear: Number(v.expYear), cvc: v.cvc },
          });
          if (!signal.aborted) show(paid);
        } catch (err) {
          if (!signal.aborted) replace(out, errorBox(err));
        } finally {
          button.disabled = false;
        }
      },
    },
  },
  h('div', { class: 'fields' },
    field('number', 'Card number', { value: '4242 4242 4242 4242', inputmode: 'numeric', maxlength: 23 }),
    field('expMonth', 'Expiry month', { type: 'number', min: 1, max: 12, value: 12 }),
    field('expYear', 'Expiry year', { type: 'number', min: 2026, max: 2100, value: 2030 }),
    field('cvc', 'CVC', { inputmode: 'numeric', maxlength: 4, value: '123' })),
  h('button', { type: 'submit' }, 'Pay by card'));
  part.push(h('p', { class: 'hint' }, "Test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined, 4000 0027 6000 3184 asks for authentication (pay again to complete it)."), form, out);
  return part;
}

/** Fills `names` (product id → name) for the order's lines not yet in it;
 * a product since deleted keeps showing by id. */
async function productNames(order, names) {
  const missing = order.lineItems.map((l) => l.productId).filter((p) => !names.has(p));
  const found = await Promise.allSettled(missing.map((p) => get(`/products/${encodeURIComponent(p)}`)));
  found.forEach((r, i) => { if (r.status === 'fulfilled') names.set(missing[i], r.value.name); });
}

function address(a) {
  const place = [[a.city, a.region].filter(Boolean).join(', '), a.postalCode].join(' ');
  return h('address', {}, [a.name, a.line1, a.line2, place, a.country].filter(Boolean).map((line) => [line, h('br')]));
}

// ------------------------------------------------------------------ carts

/** `#/carts`: every cart (admin). */
export async function carts(root, { signal }) {
  if (needsToken(root, 'Carts')) return;
  const mine = cartId();
  const tbody = h('tbody');
  const more = h('div', { class: 'more' });
  const body = h('div', {}, loading());
  root.append(h('h1', {}, 'Carts'), h('p', {}, 'This browser’s cart: ', h('a', { href: `#/cart/${mine}` }, h('code', {}, short(mine, 13)))), body);
  const row = (c) => h('tr', { class: c.id === mine ? 'mine' : null },
    h('td', {}, h('a', { href: `#/cart/${c.id}` }, h('code', {}, short(c.id, 13))), c.id === mine ? ' (this browser)' : ''),
    h('td', {}, c.customerId ?? '—'),
    h('td', { class: 'num' }, String(c.items.length)),
    h('td', { class: 'num' }, String(c.items.reduce((n, i) => n + i.quantity, 0))));
  try {
    await pagedRows(tbody, more, (cursor) => get(`/carts${qs({ cursor, limit: PAGE })}`), row, signal);
  } catch (e) {
    if (!signal.aborted) replace(body, errorBox(e));
    return;
  }
  if (signal.aborted) return;
  replace(body, h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Cart', 'Customer', 'Lines', 'Units'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody)), more);
}

/** `#/cart/{id}`: lines (change, remove) and checkout. */
export async function cart(root, { params: [id], signal }) {
  if (needsToken(root, 'Carts')) return;
  const path = `/carts/${encodeURIComponent(id)}`;
  const lines = h('section', { 'aria-live': 'polite' }, loading());
  const out = h('div', { class: 'out' });
  const checkout = h('section', { 'aria-labelledby': 'checkout-h' });
  root.append(h('h1', {}, 'Cart ', h('code', {}, short(id, 13)), id === cartId() ? ' (this browser)' : ''), lines, out, checkout);

  const change = async (call) => {
    try {
      await call();
      out.replaceChildren();
      await show();
    } catch (e) {
      if (!signal.aborted) replace(out, errorBox(e));
    }
  };
  const show = async () => {
    try {
      const c = await get(path);
      const products = await Promise.allSettled(c.items.map((i) => get(`/products/${i.productId}`)));
      if (signal.aborted) return;
      replace(lines, c.items.length ? cartLines(c, products.map((r) => r.value ?? null), change) : h('p', {}, 'The cart is empty. ', h('a', { href: '#/catalog' }, 'Browse the catalog.')));
      if (c.items.length && !checkout.firstChild) append(checkout, checkoutForm(id, out, signal));
      if (!c.items.length) checkout.replaceChildren();
    } catch (e) {
      if (!signal.aborted) replace(lines, errorBox(e));
    }
  };
  onEvents(['delta', 'reset'], show, signal, { filter: (d, type) => type === 'reset' || (d.keyspace === 'carts' && d.keys?.includes(id)) });
  await show();
}

function cartLines(c, products, change) {
  const path = `/carts/${encodeURIComponent(c.id)}/items`;
  let total = 0, currency = null;
  const rows = c.items.map((item, i) => {
    const p = products[i];
    if (p) { total += p.price * item.quantity; currency ??= p.currency; }
    const qid = `qty-${item.productId}`;
    const qty = h('input', { type: 'number', id: qid, min: 0, max: 1000, value: item.quantity, inputmode: 'numeric' });
    return [
      p ? h('a', { href: `#/product/${p.id}` }, p.name) : h('code', {}, item.productId),
      p ? money(p.price, p.currency) : '—',
      h('form', {
        class: 'inline',
        on: { submit: (e) => { e.preventDefault(); change(() => put(`${path}/${item.productId}`, { quantity: Number(qty.value) })); } },
      }, h('label', { for: qid, class: 'sr-only' }, `Quantity of ${p?.name ?? item.productId}`), qty, h('button', { type: 'submit', class: 'secondary' }, 'Update')),
      h('button', { type: 'button', class: 'secondary', on: { click: () => change(() => del(`${path}/${item.productId}`)) } }, 'Remove'),
    ];
  });
  return [
    table(['Product', 'Price', 'Quantity', ''], rows, `Customer: ${c.customerId ?? 'not bound (written with an admin token)'}`),
    currency ? h('p', { class: 'price' }, `Estimated total ${money(Math.round(total * 100) / 100, currency)}`) : null,
  ];
}

function checkoutForm(id, out, signal) {
  const field = (name, label, attrs = {}) => {
    const input = h('input', { id: `ship-${name}`, name, autocomplete: attrs.autocomplete ?? 'off', ...attrs });
    return [h('label', { for: `ship-${name}` }, label), input];
  };
  const form = h('form', {
    class: 'checkout',
    on: {
      submit: async (e) => {
        e.preventDefault();
        const v = Object.fromEntries(new FormData(form));
        const shippingAddress = { name: v.name, line1: v.line1, city: v.city, postalCode: v.postalCode, country: v.country.toUpperCase() };
        if (v.line2) shippingAddress.line2 = v.line2;
        if (v.region) shippingAddress.region = v.region;
        const button = form.querySelector('button');
        button.disabled = true;
        try {
          const o = await post('/orders', { cartId: id, customerId: claims()?.sub ?? 'anonymous', shippingAddress });
          if (!signal.aborted) location.hash = `#/order/${o.id}`;
        } catch (err) {
          if (!signal.aborted) replace(out, errorBox(err));
        } finally {
          button.disabled = false;
        }
      },
    },
  },
  h('div', { class: 'fields' },
    field('name', 'Name', { required: true, maxlength: 100, autocomplete: 'name' }),
    field('line1', 'Address', { required: true, maxlength: 100, autocomplete: 'address-line1' }),
    field('line2', 'Address line 2 (optional)', { maxlength: 100, autocomplete: 'address-line2' }),
    field('city', 'City', { required: true, maxlength: 100, autocomplete: 'address-level2' }),
    field('region', 'Region (optional)', { maxlength: 100, autocomplete: 'address-level1' }),
    field('postalCode', 'Postal code', { required: true, maxlength: 20, autocomplete: 'postal-code' }),
    field('country', 'Country (2 letters)', { required: true, pattern: '[A-Za-z]{2}', maxlength: 2, value: 'GB', autocomplete: 'country' })),
  h('button', { type: 'submit' }, 'Place order'));
  return [h('h2', { id: 'checkout-h' }, 'Check out'), h('p', { class: 'hint' }, `Ordered as ${claims()?.sub ?? '?'} (the token's subject). Stock is taken at checkout, never in the cart.`), form];
}
