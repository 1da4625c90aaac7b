// SVG drawing for the console, without a chart library: an element builder,
// scales with "nice" ticks, axes, and the price-history step chart. The
// charts scale with their container (viewBox) and carry a text alternative.

const NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element; string children become text nodes. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An <svg> that scales to its container, with an accessible name. */
export function chart(width, height, label, ...children) {
  return s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet',
  }, s('title', {}, label), children);
}

/** A linear scale from [d0, d1] onto [r0, r1]. */
export function linear(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/** A base-10 logarithmic scale from [d0, d1] (both > 0) onto [r0, r1]. */
export function log10(d0, d1, r0, r1) {
  const f = linear(Math.log10(d0), Math.log10(d1), r0, r1);
  return (v) => f(Math.log10(Math.max(v, d0)));
}

/** About `count` round tick values covering [min, max]. */
export function ticks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

/** A horizontal axis at `y` with labelled ticks. */
export function xAxis(scale, values, y, format) {
  return s('g', { class: 'axis' },
    values.map((v) => s('g', { transform: `translate(${scale(v)},${y})` },
      s('line', { y2: 4 }),
      s('text', { y: 16, 'text-anchor': 'middle' }, format(v)))));
}

/** A vertical axis at `x` with labelled ticks and faint grid lines to `x2`. */
export function yAxis(scale, values, x, x2, format) {
  return s('g', { class: 'axis' },
    values.map((v) => s('g', { transform: `translate(0,${scale(v)})` },
      s('line', { x1: x, x2, class: 'grid' }),
      s('text', { x: x - 6, dy: '0.32em', 'text-anchor': 'end' }, format(v)))));
}

/** The price history as a step chart: each LWW winner holds until the next,
 * the last until now. `points` are `{at: Date, price: number}`, oldest first. */
export function stepChart(points, currency) {
  const W = 640, H = 220, L = 64, R = 16, T = 12, B = 28;
  const now = new Date();
  const t0 = points[0].at.getTime();
  const t1 = Math.max(now.getTime(), t0 + 1000);
  const prices = points.map((p) => p.price);
  let lo = Math.min(...prices), hi = Math.max(...prices);
  const pad = (hi - lo) * 0.15 || Math.max(hi * 0.1, 1);
  lo = Math.max(0, lo - pad);
  hi += pad;
  const x = linear(t0, t1, L, W - R);
  const y = linear(lo, hi, H - B, T);
  let d = '';
  points.forEach((p, i) => {
    const px = x(p.at.getTime()), py = y(p.price);
    d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
  });
  d += `H${x(t1)}`;
  const timeFmt = (v) => new Date(v).toLocaleTimeString('en-GB', { hour12: false });
  const priceFmt = (v) => v.toLocaleString('en', { maximumFractionDigits: 2 });
  const label = `Price over time in ${currency}: ${points.length} price${points.length === 1 ? '' : 's'}, `
    + `now ${priceFmt(points[points.length - 1].price)}`;
  return chart(W, H, label,
    yAxis(y, ticks(lo, hi, 5), L, W - R, priceFmt),
    xAxis(x, ticks(t0, t1, 4), H - B, timeFmt),
    s('path', { d, class: 'step' }),
    points.map((p) => s('circle', { cx: x(p.at.getTime()), cy: y(p.price), r: 4, class: 'step-point' },
      s('title', {}, `${priceFmt(p.price)} ${currency} at ${p.at.toLocaleString('en-GB', { hour12: false })}`))));
}
