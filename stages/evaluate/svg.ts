// Inline SVG line charts for the HTML report: no scripts, no external resources; every text is escaped.

export interface Series {
  name: string;
  points: Array<{ x: number; y: number; lo?: number; hi?: number }>;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Categorical or custom ticks; default: 5 evenly spaced numeric ticks. */
  xTicks?: Array<{ value: number; label: string }>;
  yRange?: [number, number];
  /** Hard limits of the y axis, e.g. [0, 1] for AUC: the padded, rounded range never goes past them. */
  yBounds?: [number, number];
  /** Width of the plot area and the legend beside it (the legend's width follows the longest series name). */
  width?: number;
  height?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** Escapes text for HTML/SVG content and attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3).replace(/\.?0+$/, '') || '0');

/** Tick spacing of about `count` intervals over `span`: 1, 2, 2.5 or 5 times a power of ten. */
export function niceStep(span: number, count = 4): number {
  if (!(span > 0)) return 1;
  const raw = span / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw * 0.999) ?? 10 * mag;
  return Number(step.toPrecision(6));
}

/** Ticks at multiples of a nice step covering [lo, hi], and the range widened to the outer ticks (within bounds). */
export function niceAxis(lo: number, hi: number, bounds?: [number, number]): { range: [number, number]; ticks: number[] } {
  const step = niceStep(hi - lo);
  const round = (v: number) => Number(v.toPrecision(12));
  let a = round(Math.floor(lo / step + 1e-9) * step), b = round(Math.ceil(hi / step - 1e-9) * step);
  if (bounds) { a = Math.max(a, bounds[0]); b = Math.min(b, bounds[1]); }
  const ticks: number[] = [];
  for (let k = Math.ceil(a / step - 1e-9); k * step <= b + step * 1e-9; k++) ticks.push(round(k * step));
  return { range: [a, b], ticks };
}

/** One line chart with optional error bars (lo/hi) and a legend, as an <svg> element with a <title>. */
export function lineChart(o: ChartOptions): string {
  // The legend sits right of the plot and is as wide as its longest name (about 7 px per character at 12 px).
  const legend = Math.max(120, 36 + 7 * Math.max(0, ...o.series.map((s) => s.name.length)));
  const m = { left: 60, right: legend, top: 36, bottom: 48 };
  const W = (o.width ?? 460) + legend;
  const H = Math.max(o.height ?? 360, m.top + m.bottom + 16 + 18 * o.series.length);
  const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
  const all = o.series.flatMap((s) => s.points);
  const xs = o.xTicks ? o.xTicks.map((t) => t.value) : all.map((p) => p.x);
  const ys = all.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]).filter(Number.isFinite);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let [y0, y1] = o.yRange ?? (ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1]);
  if (o.yBounds) { y0 = Math.max(y0, o.yBounds[0]); y1 = Math.min(y1, o.yBounds[1]); }
  if (y0 === y1) { y0 -= 0.05; y1 += 0.05; }
  const yAxis = niceAxis(y0, y1, o.yBounds);
  [y0, y1] = yAxis.range;
  if (!o.xTicks) {
    const xAxis = niceAxis(x0, x1);
    [x0, x1] = xAxis.range;
  }
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.top + ph - ((y - y0) / (y1 - y0)) * ph;
  const xt = o.xTicks ?? niceAxis(x0, x1).ticks.map((v) => ({ value: v, label: fmt(v) }));
  const yt = yAxis.ticks;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">`);
  parts.push(`<title>${escapeHtml(o.title)}</title>`);
  parts.push(`<text x="${m.left}" y="20" class="chart-title">${escapeHtml(o.title)}</text>`);
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  for (const t of xt) {
    const x = sx(t.value).toFixed(1);
    parts.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 4}" stroke="#999"/><text x="${x}" y="${m.top + ph + 16}" text-anchor="middle" class="tick">${escapeHtml(t.label)}</text>`);
  }
  for (const v of yt) {
    const y = sy(v).toFixed(1);
    parts.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eee"/><text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" class="tick">${escapeHtml(fmt(v))}</text>`);
  }
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 8}" text-anchor="middle" class="axis">${escapeHtml(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" class="axis">${escapeHtml(o.yLabel)}</text>`);
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(p.y));
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      if (p.lo !== undefined && p.hi !== undefined) parts.push(`<line x1="${sx(p.x).toFixed(1)}" y1="${sy(p.lo).toFixed(1)}" x2="${sx(p.x).toFixed(1)}" y2="${sy(p.hi).toFixed(1)}" stroke="${color}" stroke-width="1"/>`);
      parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
    }
    const ly = m.top + 8 + i * 18;
    parts.push(`<rect x="${m.left + pw + 12}" y="${ly - 6}" width="12" height="12" fill="${color}"/><text x="${m.left + pw + 30}" y="${ly}" dominant-baseline="middle" class="legend">${escapeHtml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}
