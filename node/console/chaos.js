// The chaos view: opens a `concord-chaos` report (version 1) from a local
// file and draws its timeline — faults as coloured bands, every operation's
// latency over time coloured by outcome, and how long the cluster took to
// converge after each heal — with the checkers' verdicts. Nothing is sent
// anywhere; the last report stays open while the page is.

import { badge, errorBox, h, replace, table } from './dom.js';
import { chart, linear, log10, s, ticks, xAxis, yAxis } from './svg.js';

const KINDS = ['partition', 'loss', 'duplicate', 'delay', 'kill', 'pause', 'skew', 'wipe'];
const OUTCOMES = ['ok', 'fail', 'info'];
// Beyond this many operations the scatter shows every failure and a regular
// sample of the rest, so a long run stays responsive.
const MAX_POINTS = 5000;

let report = null;
let fileName = '';

export async function view(root) {
  const out = h('div', { class: 'chaos-out' });
  const input = h('input', { type: 'file', id: 'chaos-file', accept: 'application/json,.json' });
  input.addEventListener('change', async () => {
    const file = input.files?.[0];
    if (!file) return;
    try {
      const parsed = JSON.parse(await file.text());
      check(parsed);
      report = parsed;
      fileName = file.name;
      replace(out, render(report, fileName));
    } catch (e) {
      replace(out, errorBox({ message: `${file.name} is not a concord-chaos report: ${e.message}` }));
    }
  });
  root.append(
    h('h1', {}, 'Chaos'),
    h('p', {}, 'Open a report written by ', h('code', {}, 'concord-chaos'), ' to see what was done to the cluster and how it behaved. The file is read in this browser only.'),
    h('div', { class: 'file' }, h('label', { for: 'chaos-file' }, 'Report (JSON)'), input),
    out);
  if (report) replace(out, render(report, fileName));
}

/** Throws unless `r` has the shape of a version-1 report. */
function check(r) {
  if (r?.version !== 1) throw new Error(`expected "version": 1, found ${JSON.stringify(r?.version)}`);
  for (const k of ['nodes', 'faults', 'ops', 'convergence']) if (!Array.isArray(r[k])) throw new Error(`"${k}" must be an array`);
  if (!(r.durationMs > 0)) throw new Error('"durationMs" must be a positive number');
  if (typeof r.verdicts !== 'object' || r.verdicts === null) throw new Error('"verdicts" must be an object');
}

const known = (v) => v !== null && v !== undefined;
const validity = (v) => (v === true ? badge('valid', 'ok') : v === false ? badge('invalid', 'fail') : badge('unknown', 'unknown'));
const secs = (ms) => `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;

function render(r, name) {
  const counts = Object.fromEntries(OUTCOMES.map((t) => [t, r.ops.filter((o) => o.type === t).length]));
  const verdicts = Object.entries(r.verdicts);
  return [
    h('section', { class: 'chaos-summary', 'aria-labelledby': 'chaos-h' },
      h('h2', { id: 'chaos-h' }, name, ' ', validity(r.valid)),
      h('p', {}, `Seed ${r.seed} · ${r.nodes.join(', ')} · started ${r.startedAt ?? '?'} · ${secs(r.durationMs)} · `,
        `${r.ops.length} operations (${counts.ok} ok, ${counts.fail} failed, ${counts.info} indeterminate) · ${r.faults.length} faults`)),
    h('ul', { class: 'verdicts' }, verdicts.map(([k, v]) => h('li', { dataset: { valid: String(v.valid) } },
      h('div', {}, h('strong', {}, k), ' ', validity(v.valid)), h('p', {}, v.summary ?? '')))),
    h('figure', { class: 'chart-box timeline' }, h('div', { class: 'scroll-x' }, timeline(r)), legend(r)),
    h('h2', {}, 'Faults'),
    table(['From', 'To', 'Kind', 'Detail'], r.faults.map((f) => [secs(f.startMs), secs(f.endMs), h('span', { class: `kind k-${KINDS.includes(f.kind) ? f.kind : 'other'}` }, f.kind), f.detail ?? ''])),
    h('h2', {}, 'Convergence after each heal'),
    table(['Healed', 'At', 'Converged at', 'Took'], r.convergence.map((c) => [
      c.fault ?? '—',
      secs(c.healMs),
      known(c.convergedMs) ? secs(c.convergedMs) : h('strong', { class: 'fail-text' }, 'never'),
      known(c.tookMs) ? `${Math.round(c.tookMs)} ms` : '—',
    ])),
  ];
}

/** Packs intervals into rows so that overlapping faults do not cover each other. */
function lanes(faults) {
  const ends = [];
  return faults.map((f) => {
    let lane = ends.findIndex((e) => e <= f.startMs);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = f.endMs;
    return lane;
  });
}

function sample(ops) {
  if (ops.length <= MAX_POINTS) return ops;
  const fails = ops.filter((o) => o.type !== 'ok');
  const oks = ops.filter((o) => o.type === 'ok');
  const stride = Math.ceil(oks.length / Math.max(1, MAX_POINTS - fails.length));
  return fails.concat(oks.filter((_, i) => i % stride === 0));
}

/** An operation's latency in ms; null when it never completed (such
 * operations are drawn on the top edge). */
function latency(o) {
  return o.latencyMs ?? (known(o.endMs) ? o.endMs - o.startMs : null);
}

function timeline(r) {
  const W = 960, L = 60, R = 16, LANE = 20;
  const faultLanes = lanes(r.faults);
  const nLanes = Math.max(1, ...faultLanes.map((l) => l + 1));
  const top = 8, plotTop = top + nLanes * LANE + 22, plotH = 240, H = plotTop + plotH + 34;
  const x = linear(0, r.durationMs, L, W - R);
  const lats = r.ops.map(latency).filter((v) => v > 0);
  const least = lats.reduce((m, v) => Math.min(m, v), 1);
  const most = lats.reduce((m, v) => Math.max(m, v), 0);
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, least)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(lo * 10, most)));
  const y = log10(lo, hi, plotTop + plotH, plotTop);
  const decades = [];
  for (let v = lo; v <= hi * 1.0001; v *= 10) decades.push(v);
  const shown = sample(r.ops);
  const heals = r.convergence;
  const label = `Timeline of ${secs(r.durationMs)}: ${r.faults.length} faults, ${r.ops.length} operations, `
    + `${heals.length} heals${heals.length ? `, slowest convergence ${Math.round(Math.max(...heals.map((c) => c.tookMs ?? 0)))} ms` : ''}`;
  return chart(W, H, label,
    // Faults: a band in its lane, and a faint wash over the plot.
    r.faults.map((f, i) => {
      const x0 = x(f.startMs), w = Math.max(2, x(f.endMs) - x0), ly = top + faultLanes[i] * LANE;
      const kind = KINDS.includes(f.kind) ? f.kind : 'other';
      return s('g', { class: `fault k-${kind}` },
        s('title', {}, `${f.kind} ${secs(f.startMs)}–${secs(f.endMs)}${f.detail ? `: ${f.detail}` : ''}`),
        s('rect', { x: x0, y: plotTop, width: w, height: plotH, class: 'wash' }),
        s('rect', { x: x0, y: ly, width: w, height: LANE - 4, rx: 3, class: 'band' }),
        w > f.kind.length * 7 + 8 ? s('text', { x: x0 + 4, y: ly + LANE - 8, class: 'band-label' }, f.kind) : null);
    }),
    yAxis(y, decades, L, W - R, (v) => (v >= 1000 ? `${v / 1000} s` : `${v} ms`)),
    xAxis(x, ticks(0, r.durationMs, 8), plotTop + plotH, (v) => `${v / 1000} s`),
    s('text', { x: 12, y: plotTop + plotH / 2, class: 'axis-title', transform: `rotate(-90 12 ${plotTop + plotH / 2})`, 'text-anchor': 'middle' }, 'latency'),
    s('g', { class: 'ops' }, shown.map((o) => s('circle', {
      cx: x(o.startMs), cy: y(known(latency(o)) ? Math.max(lo, latency(o)) : hi), r: o.type === 'ok' ? 2.2 : 3.2, class: `op ${OUTCOMES.includes(o.type) ? o.type : 'info'}`,
    }))),
    // Convergence: the heal, a bracket to the moment of agreement, the time it took.
    heals.map((c) => {
      const hx = x(c.healMs);
      const done = known(c.convergedMs);
      const cx = done ? x(c.convergedMs) : W - R;
      const by = plotTop - 10;
      return s('g', { class: `heal${done ? '' : ' never'}` },
        s('title', {}, `${c.fault ?? 'heal'} at ${secs(c.healMs)}: ${done ? `converged ${Math.round(c.tookMs)} ms later` : 'never converged'}`),
        s('line', { x1: hx, x2: hx, y1: by, y2: plotTop + plotH, class: 'heal-line' }),
        s('line', { x1: hx, x2: cx, y1: by, y2: by, class: 'bracket' }),
        s('path', { d: `M${cx},${by - 5}l5,5l-5,5l-5,-5z`, class: 'converged' }),
        // Near the right edge the label goes to the left of its marker.
        s('text', { x: cx > W - 70 ? cx - 8 : cx + 7, y: by + 4, class: 'took', 'text-anchor': cx > W - 70 ? 'end' : 'start' },
          done ? `${Math.round(c.tookMs)} ms` : 'never'));
    }));
}

function legend(r) {
  const kinds = [...new Set(r.faults.map((f) => (KINDS.includes(f.kind) ? f.kind : 'other')))];
  const shown = sample(r.ops).length;
  return h('figcaption', { class: 'legend' },
    kinds.map((k) => h('span', { class: `key fault-key k-${k}` }, k)),
    OUTCOMES.map((t) => h('span', { class: `key op-key ${t}` }, `${t} op`)),
    h('span', { class: 'key heal-key' }, 'heal → converged'),
    r.ops.some((o) => !known(latency(o))) ? h('span', { class: 'muted' }, 'on the top edge: never completed') : null,
    shown < r.ops.length ? h('span', { class: 'muted' }, `showing ${shown} of ${r.ops.length} operations (all failures kept)`) : null);
}
