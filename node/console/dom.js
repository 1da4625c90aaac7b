// DOM helpers for the console: a tiny element builder and formatters.
//
// Every view builds its markup with `h()`, which turns strings into text
// nodes, so text from the API (product names, addresses, keys) can never be
// parsed as HTML. Nothing in the console assigns innerHTML.

/** Creates an element: `h('a', {href: '#/x', class: 'y'}, 'text', child, [more])`.
 * Attributes: `class`, `dataset` (object), `on` (object of listeners), boolean
 * attributes as true/false, everything else via setAttribute. Children may be
 * strings, numbers, nodes, arrays of those, or null/undefined/false (skipped). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Appends children (see `h`) to a node. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces all children of a node. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** An error box showing an API error: status, code and the server's message. */
export function errorBox(err) {
  const head = err.status ? `${err.status} ${err.code ?? ''}`.trim() : 'Error';
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, head), ' ', err.message ?? String(err));
}

/** A "loading" placeholder. */
export function loading(what = 'Loading…') {
  return h('p', { class: 'muted', 'aria-busy': 'true' }, what);
}

/** Formats a price (a JSON number in major units) with its ISO currency. */
export function money(amount, currency) {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).format(amount);
  } catch {
    return `${amount} ${currency}`;
  }
}

/** Formats an RFC 3339 timestamp in the browser's locale, to the second. */
export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString('en-GB', { hour12: false });
}

/** The first characters of a hex digest or UUID, for display. */
export function short(s, n = 8) {
  return s ? String(s).slice(0, n) : '—';
}

/** Bytes in a human unit. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A status badge (`placed`, `paid`, …, or any word), styled by its value. */
export function badge(text, kind = text) {
  return h('span', { class: 'badge', dataset: { kind } }, text);
}

/** A definition list from [term, description] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A table: `columns` are header strings, `rows` arrays of cells. */
export function table(columns, rows, caption) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell) => h('td', {}, cell)))))));
}
