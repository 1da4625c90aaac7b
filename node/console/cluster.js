// The cluster view: every node of cluster.toml as this node sees it over
// HTTP — reachable or not, version vector, digest, replication lag, delta
// log and peer liveness — under a banner that says whether all digests agree.
// It refreshes on the node's events (digest, convergence, peer, delta) and
// polls as a fallback. Below, the diff of two nodes (`#/diff/{a}/{b}`),
// with the lines in which the two values of a key differ highlighted.

import { claims, get, onEvents, qs } from './api.js';
import { badge, bytes, errorBox, facts, h, loading, replace, short, table } from './dom.js';

const POLL_MS = 1500;
const SHOWN_RANGES = 64;
const SHOWN_KEYS = 100;
// Line-diff highlighting is skipped for values whose line counts multiply past this.
const LINE_DIFF_LIMIT = 250_000;

export async function view(root, { params, signal }) {
  const [a, b] = params;
  // Every node's status, buckets and diffs: admins only (a bucket holds
  // orders with their addresses).
  if (claims()?.role !== 'admin') {
    root.append(h('h1', {}, 'Cluster'), h('p', { class: 'notice', id: 'cluster-needs-admin' },
      'The cluster view needs an admin token (concord token --role admin). Sign in (or create an account) under “Sign in” above.'));
    return;
  }
  const banner = h('div', { class: 'banner', id: 'convergence', role: 'status', 'aria-live': 'polite', dataset: { state: 'unknown' } }, 'Asking every node…');
  const grid = h('div', { class: 'nodes' });
  const diffOut = h('div', { class: 'diff-out', 'aria-live': 'polite' });
  const pickA = h('select', { id: 'diff-a', name: 'a' });
  const pickB = h('select', { id: 'diff-b', name: 'b' });
  const diffForm = h('form', { class: 'diff-form', on: { submit: (e) => { e.preventDefault(); openDiff(); } } },
    h('label', { for: 'diff-a' }, 'Node A'), pickA,
    h('label', { for: 'diff-b' }, 'Node B'), pickB,
    h('button', { type: 'submit' }, 'Diff'));
  root.append(
    h('h1', {}, 'Cluster'),
    banner,
    grid,
    h('section', { class: 'diff', 'aria-labelledby': 'diff-h' },
      h('h2', { id: 'diff-h' }, 'Difference between two nodes'),
      h('p', { class: 'hint' }, 'Descends both digest trees to the buckets that differ, then lists the keys and both values.'),
      diffForm, diffOut));

  let ids = [];
  const fillPicks = (nodeIds) => {
    if (nodeIds.join() === ids.join()) return;
    ids = nodeIds;
    const opts = (sel, chosen) => replace(sel, nodeIds.map((id) => h('option', { value: id, selected: id === chosen }, id)));
    opts(pickA, pickA.value || a || nodeIds[0]);
    opts(pickB, pickB.value || b || nodeIds[1] || nodeIds[0]);
  };

  const openDiff = () => {
    const target = `#/diff/${encodeURIComponent(pickA.value)}/${encodeURIComponent(pickB.value)}`;
    if (location.hash === target) runDiff(pickA.value, pickB.value);
    else location.hash = target;
  };

  const runDiff = async (x, y) => {
    replace(diffOut, loading(`Comparing ${x} and ${y}…`));
    try {
      const d = await get(`/cluster/diff${qs({ a: x, b: y })}`);
      if (!signal.aborted) replace(diffOut, renderDiff(d));
    } catch (e) {
      if (!signal.aborted) replace(diffOut, errorBox(e));
    }
  };

  // One fetch at a time; a request made meanwhile runs once it is done.
  let busy = false, again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await get('/cluster/nodes');
      if (signal.aborted) return;
      fillPicks(r.nodes.map((n) => n.id));
      renderBanner(banner, r);
      replace(grid, r.nodes.map((n) => nodeCard(n, r)));
    } catch (e) {
      if (!signal.aborted) replace(grid, errorBox(e));
    } finally {
      busy = false;
      if (again && !signal.aborted) { again = false; refresh(); }
    }
  };

  onEvents(['digest', 'convergence', 'peer', 'delta', 'reset'], refresh, signal, { delay: 250 });
  const timer = setInterval(refresh, POLL_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
  await refresh();
  if (a && b && !signal.aborted) runDiff(a, b);
}

function renderBanner(el, { nodes, converged }) {
  const down = nodes.filter((n) => !n.reachable).map((n) => n.id);
  const digests = new Set(nodes.filter((n) => n.status).map((n) => n.status.digest));
  const lag = Math.max(0, ...nodes.map((n) => n.behind));
  el.dataset.state = converged ? 'converged' : 'diverged';
  replace(el, converged
    ? [h('strong', {}, 'Converged'), ` — all ${nodes.length} nodes hold digest `, h('code', {}, short([...digests][0], 12))]
    : [h('strong', {}, 'Diverged'), ` — ${digests.size} distinct digest${digests.size === 1 ? '' : 's'} across ${nodes.length} nodes`,
      down.length ? `; unreachable: ${down.join(', ')}` : '',
      lag ? `; the furthest behind lacks ${lag} delta${lag === 1 ? '' : 's'}` : '']);
}

// Repairs of a divergence at equal version vectors (a lost write found by
// the digests): how many, and the last one's peer and keys.
function divergence(d) {
  if (!d || !d.repaired) return h('span', { class: 'muted', dataset: { divergence: '0' } }, 'none');
  const last = d.last;
  return h('span', { class: 'lag', dataset: { divergence: String(d.repaired) },
    title: last ? last.keys.join('\n') : '' },
  `${d.repaired}`, last ? ` · last from ${last.peer}, ${last.changed} key${last.changed === 1 ? '' : 's'}` : '');
}

function nodeCard(n, { nodes, converged }) {
  const st = n.status;
  const distinct = [...new Set(nodes.filter((m) => m.status).map((m) => m.status.digest))];
  const group = st && !converged ? ` (${String.fromCharCode(65 + distinct.indexOf(st.digest))})` : '';
  return h('article', { class: 'node', dataset: { node: n.id, reachable: String(n.reachable) }, 'aria-labelledby': `node-${n.id}` },
    h('header', {},
      h('h2', { id: `node-${n.id}` }, n.id),
      n.reachable ? badge('reachable', 'up') : badge('unreachable', 'down')),
    h('p', { class: 'muted' }, n.http, st && st.actor !== n.id ? ` · actor ${st.actor}` : ''),
    st ? [
      facts([
        ['Digest', h('code', { class: 'digest', dataset: { same: String(converged) }, title: st.digest }, short(st.digest, 12), group)],
        ['Behind', h('span', { class: n.behind ? 'lag' : '' }, `${n.behind} delta${n.behind === 1 ? '' : 's'}`)],
        ['Delta log', `${st.deltaLog} (${bytes(st.deltaLogBytes)})`],
        ['Pending', String(st.pending)],
        ['Divergence repairs', divergence(st.divergence)],
        ['Keys', Object.entries(st.keys).map(([k, v]) => `${k} ${v}`).join(' · ')],
      ]),
      table(['Actor', 'Seq'], Object.entries(st.versionVector).map(([actor, seq]) => [actor, String(seq)]), 'Version vector'),
      h('h3', {}, 'Peers'),
      h('ul', { class: 'peers' }, st.peers.map((p) => h('li', { dataset: { peer: p.id, alive: String(p.alive) } },
        p.alive ? badge('UP', 'up') : badge('DOWN', 'down'), ' ', p.id,
        h('span', { class: 'muted' }, p.lastSeenMs === null || p.lastSeenMs === undefined ? ' · never seen' : ` · seen ${(p.lastSeenMs / 1000).toFixed(1)} s ago`)))),
    ] : h('p', {}, 'No status: the node did not answer over HTTP.'));
}

function renderDiff(d) {
  const [da, db] = d.digests;
  const out = [
    h('p', {}, h('strong', {}, `${d.a} vs ${d.b}`), `: compared ${d.compared} key${d.compared === 1 ? '' : 's'}; digests `,
      h('code', {}, short(da, 12)), da === db ? ' = ' : ' ≠ ', h('code', {}, short(db, 12)), '.'),
  ];
  if (!d.ranges.length && !d.keys.length) {
    out.push(h('p', { class: 'ok-text' }, 'No difference: the two nodes hold the same state.'));
    return out;
  }
  out.push(h('h3', {}, `${d.ranges.length} differing bucket${d.ranges.length === 1 ? '' : 's'}`),
    h('ul', { class: 'chips' }, d.ranges.slice(0, SHOWN_RANGES).map((r) => h('li', {}, `${r.keyspace}/${r.bucket}`))),
    d.ranges.length > SHOWN_RANGES ? h('p', { class: 'muted' }, `and ${d.ranges.length - SHOWN_RANGES} more`) : null,
    h('h3', {}, `${d.keys.length} differing key${d.keys.length === 1 ? '' : 's'}`),
    h('div', { class: 'table-wrap' }, h('table', { class: 'diff-keys' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, `On ${d.a}`), h('th', { scope: 'col' }, `On ${d.b}`))),
      h('tbody', {}, d.keys.slice(0, SHOWN_KEYS).map(keyRow)))),
    d.keys.length > SHOWN_KEYS ? h('p', { class: 'muted' }, `and ${d.keys.length - SHOWN_KEYS} more keys`) : null);
  return out;
}

function keyRow(k) {
  const [a, b] = [k.a, k.b].map((v) => (v === null || v === undefined ? null : JSON.stringify(v, null, 2).split('\n')));
  const [ca, cb] = a && b ? changedLines(a, b) : [new Set(), new Set()];
  return h('tr', {},
    h('th', { scope: 'row' }, h('span', { class: 'muted' }, k.keyspace), h('br'), h('code', {}, k.key)),
    h('td', {}, value(a, ca)),
    h('td', {}, value(b, cb)));
}

function value(lines, changed) {
  if (!lines) return h('em', { class: 'muted' }, 'absent');
  return h('pre', { class: 'json' }, lines.map((line, i) => h('span', { class: changed.has(i) ? 'chg' : null }, line)));
}

/** The indexes of the lines of `a` and of `b` outside their longest common
 * subsequence: what one side has that the other lacks. */
function changedLines(a, b) {
  const n = a.length, m = b.length;
  if (n * m > LINE_DIFF_LIMIT) return [new Set(), new Set()];
  // t[i][j]: length of the longest common subsequence of a[i..] and b[j..].
  const t = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) t[i][j] = a[i] === b[j] ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
  }
  const ca = new Set(), cb = new Set();
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { i++; j++; } else if (t[i + 1][j] >= t[i][j + 1]) ca.add(i++); else cb.add(j++);
  }
  while (i < n) ca.add(i++);
  while (j < m) cb.add(j++);
  return [ca, cb];
}
