// The catalog: browse by category (derived from the products themselves),
// ranked search with scores, and the product page — price history (LWW
// winners, table and step chart), stock with the rights each node holds,
// and "add to cart" into this browser's cart. Product pages follow the
// node's `delta` events for their product and SKU.

import { cartId, getToken, get, onEvents, post, qs } from './api.js';
import { append, badge, errorBox, facts, h, loading, money, replace, table, when } from './dom.js';
import { stepChart } from './svg.js';

const PAGE = 24;
// Categories are derived from at most this many pages of 100 products.
const CATEGORY_SCAN_PAGES = 20;

let categoriesOnce = null;

/** The distinct categories of the catalog, sorted (fetched once per visit). */
function categories() {
  categoriesOnce ??= (async () => {
    const seen = new Set();
    let cursor = null;
    for (let i = 0; i < CATEGORY_SCAN_PAGES; i++) {
      const page = await get(`/products${qs({ limit: 100, cursor })}`);
      for (const p of page.items) if (p.category) seen.add(p.category);
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    return [...seen].sort();
  })();
  categoriesOnce.catch(() => { categoriesOnce = null; });
  return categoriesOnce;
}

/** `#/catalog?category=&q=`: categories, search box, then products or hits. */
export async function list(root, { query, signal }) {
  const category = query.get('category') ?? '';
  const q = query.get('q') ?? '';
  const input = h('input', { type: 'search', id: 'search-q', name: 'q', value: q, placeholder: 'e.g. espresso machine', autocomplete: 'off' });
  const form = h('form', {
    class: 'search', role: 'search',
    on: {
      submit: (e) => {
        e.preventDefault();
        location.hash = `#/catalog${qs({ category, q: input.value.trim() })}`;
      },
    },
  }, h('label', { for: 'search-q' }, category ? `Search in ${category}` : 'Search products'), input, h('button', { type: 'submit' }, 'Search'));
  const cats = h('nav', { class: 'categories', 'aria-label': 'Categories' }, loading('Loading categories…'));
  const results = h('section', { class: 'results', 'aria-live': 'polite' }, loading());
  root.append(h('h1', {}, category ? `Catalog · ${category}` : 'Catalog'), form, cats, results);

  categories().then((all) => {
    if (signal.aborted) return;
    const link = (c, label) => h('a', { href: `#/catalog${qs({ category: c, q })}`, class: 'chip', 'aria-current': c === category ? 'page' : null }, label);
    replace(cats, link('', 'All'), all.map((c) => link(c, c)));
  }, (e) => { if (!signal.aborted) replace(cats, errorBox(e)); });

  try {
    if (q) await showHits(results, q, category, signal);
    else await showProducts(results, category, signal);
  } catch (e) {
    if (!signal.aborted) replace(results, errorBox(e));
  }
}

async function showHits(el, q, category, signal) {
  const r = await get(`/search/products${qs({ q, k: 20, category })}`);
  if (signal.aborted) return;
  if (!r.hits.length) {
    replace(el, h('p', {}, 'No product matches ', h('q', {}, q), '.'));
    return;
  }
  replace(el,
    h('h2', {}, `${r.hits.length} result${r.hits.length === 1 ? '' : 's'} for `, h('q', {}, q)),
    h('ol', { class: 'hits' }, r.hits.map((hit, i) => h('li', { class: 'hit' },
      h('span', { class: 'rank', 'aria-label': `rank ${i + 1}` }, `${i + 1}`),
      h('div', {},
        h('a', { href: `#/product/${hit.id}`, class: 'name' }, hit.product.name),
        h('div', { class: 'muted' }, `${hit.product.category} · ${money(hit.product.price, hit.product.currency)} · ${hit.product.stock} in stock`)),
      h('span', { class: 'score', title: 'Fused relevance score (higher is better)' }, `score ${hit.score.toFixed(3)}`)))));
}

async function showProducts(el, category, signal) {
  const grid = h('ul', { class: 'products' });
  const more = h('div', { class: 'more' });
  const load = async (cursor) => {
    const page = await get(`/products${qs({ category, limit: PAGE, cursor })}`);
    if (signal.aborted) return;
    append(grid, page.items.map(productCard));
    replace(more, page.nextCursor
      ? h('button', { type: 'button', class: 'secondary', on: { click: () => load(page.nextCursor).catch((e) => replace(more, errorBox(e))) } }, 'Load more')
      : h('p', { class: 'muted' }, `${grid.children.length} product${grid.children.length === 1 ? '' : 's'}`));
  };
  await load(null);
  if (!signal.aborted) replace(el, grid, more);
}

function productCard(p) {
  return h('li', { class: 'card' },
    h('a', { href: `#/product/${p.id}`, class: 'name' }, p.name),
    h('div', { class: 'muted' }, p.category, ' · ', h('code', {}, p.sku)),
    h('div', { class: 'price' }, money(p.price, p.currency)),
    p.stock ? h('div', { class: 'muted' }, `${p.stock} in stock`) : badge('out of stock', 'down'));
}

/** `#/product/{id}`: the product, its stock and rights, its price history. */
export async function product(root, { params: [id], signal }) {
  const info = h('section', { class: 'product' }, loading());
  const stock = h('section', { 'aria-labelledby': 'stock-h' });
  const history = h('section', { 'aria-labelledby': 'history-h' });
  const buy = h('section', { class: 'buy', 'aria-labelledby': 'buy-h' });
  root.append(h('p', {}, h('a', { href: '#/catalog' }, '← Catalog')), info, buy, stock, history);

  let sku = null;
  const show = async () => {
    try {
      const [p, hist] = await Promise.all([get(`/products/${encodeURIComponent(id)}`), get(`/products/${encodeURIComponent(id)}/history`)]);
      const inv = await get(`/inventory/${encodeURIComponent(p.sku)}`);
      if (signal.aborted) return;
      sku = p.sku;
      replace(info, productInfo(p));
      replace(stock, stockSection(inv));
      replace(history, historySection(hist.prices, p.currency));
      if (!buy.firstChild) append(buy, cartForm(p));
    } catch (e) {
      if (!signal.aborted) replace(info, errorBox(e));
    }
  };
  onEvents(['delta', 'reset'], show, signal, {
    filter: (d, type) => type === 'reset' || d.keyspace === 'repair'
      || (d.keyspace === 'products' && d.keys?.includes(id)) || (d.keyspace === 'stock' && d.keys?.includes(sku)),
  });
  await show();
}

function productInfo(p) {
  return [
    h('h1', {}, p.name),
    h('p', { class: 'price big' }, money(p.price, p.currency)),
    h('p', {}, p.description),
    facts([
      ['SKU', h('code', {}, p.sku)],
      ['Category', h('a', { href: `#/catalog${qs({ category: p.category })}` }, p.category)],
      ['Tags', p.tags.length ? p.tags.join(', ') : '—'],
      ['Stock', `${p.stock} unit${p.stock === 1 ? '' : 's'}`],
      ['Updated', when(p.updatedAt)],
      ...Object.entries(p.attributes ?? {}),
    ]),
  ];
}

function stockSection(inv) {
  const rights = Object.entries(inv.rights);
  const total = rights.reduce((n, [, u]) => n + u, 0) || 1;
  return [
    h('h2', { id: 'stock-h' }, 'Stock and rights'),
    h('p', {}, `${inv.stock} unit${inv.stock === 1 ? '' : 's'} on hand; each node may sell only the units it holds rights to, so a partition cannot oversell.`),
    table(['Node', 'Rights', 'Share'], rights.map(([node, units]) => [
      node, String(units),
      h('meter', { min: 0, max: total, value: units, 'aria-label': `${node}'s share` }),
    ])),
  ];
}

function historySection(prices, currency) {
  const points = prices.map((p) => ({ at: new Date(p.at), price: Number(p.price) }));
  return [
    h('h2', { id: 'history-h' }, 'Price history'),
    points.length ? h('figure', { class: 'chart-box price-chart' }, stepChart(points, currency), h('figcaption', { class: 'muted' }, 'Last-writer-wins winners, oldest first; each price holds until the next.')) : null,
    table(['When', 'Price', 'Reason', 'Written by'], prices.map((p) => [when(p.at), money(p.price, p.currency), p.reason ?? '—', p.node])),
  ];
}

function cartForm(p) {
  const qty = h('input', { type: 'number', id: 'add-qty', name: 'quantity', min: 1, max: 1000, value: 1, inputmode: 'numeric' });
  const out = h('div', { class: 'out', role: 'status' });
  const signedIn = Boolean(getToken());
  const form = h('form', {
    class: 'add-to-cart',
    on: {
      submit: async (e) => {
        e.preventDefault();
        const button = form.querySelector('button');
        button.disabled = true;
        try {
          const cart = await post(`/carts/${cartId()}/items`, { productId: p.id, quantity: Number(qty.value) });
          const units = cart.items.reduce((n, i) => n + i.quantity, 0);
          replace(out, h('span', { class: 'ok-text' }, `Added. Your cart holds ${units} unit${units === 1 ? '' : 's'} of ${cart.items.length} product${cart.items.length === 1 ? '' : 's'}. `),
            h('a', { href: `#/cart/${cart.id}` }, 'View cart'));
        } catch (err) {
          replace(out, errorBox(err));
        } finally {
          button.disabled = false;
        }
      },
    },
  },
  h('label', { for: 'add-qty' }, 'Quantity'), qty,
  h('button', { type: 'submit', disabled: !signedIn }, 'Add to cart'));
  return [
    h('h2', { id: 'buy-h' }, 'Buy'),
    form,
    signedIn ? null : h('p', { class: 'hint' }, 'Carts need an account: sign in or create one under “Sign in” above.'),
    out,
  ];
}
