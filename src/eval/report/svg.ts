// Inline SVG charts for the training report, written by hand: the report must be one
// self-contained file that opens offline, and the plotting libraries on npm either need a DOM
// (d3, Plotly, Chart.js draw in a browser) or pull a headless browser/canvas to render server
// side; three chart kinds (lines, overlaid histograms, a reliability diagram) are ~200 lines.
// Everything is in user units of a fixed viewBox, so the browser scales it to the page width.

export interface LineSeries {
  name: string;
  /** [x, y] points; non-finite y values leave a gap. */
  points: readonly (readonly [number, number])[];
  color: string;
  /** Draw a dot at each point (sparse series such as validation). */
  markers?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Force the y range to include these values (e.g. 0.5 and 1 for accuracy). */
  yInclude?: readonly number[];
}

// The title sits on the first line above the plot, the legend on the second, so long titles never collide with it.
const MARGIN = { left: 60, right: 16, top: 46, bottom: 44 };
const LEGEND_Y = 32;
const AXIS = '#444';
const GRID = '#e4e4e4';
export const COLORS = { train: '#1f77b4', validation: '#ff7f0e', chosen: '#2ca02c', rejected: '#d62728', neutral: '#6b6ecf' } as const;
const EXTRA_COLORS = ['#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

export function extraColor(i: number): string {
  return EXTRA_COLORS[i % EXTRA_COLORS.length] as string;
}

/** About `count` round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  // d3's tickIncrement: the 1/2/5 multiple nearest (geometrically) to range/count.
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const error = raw / magnitude;
  const step = (error >= Math.sqrt(50) ? 10 : error >= Math.sqrt(10) ? 5 : error >= Math.SQRT2 ? 2 : 1) * magnitude;
  const ticks: number[] = [];
  // k·step, not repeated addition, and rounded to 12 digits, so 0.6 prints as 0.6.
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)) + 0);
  return ticks;
}

/** Widens [lo, hi] to the nearest ticks so lines do not touch the frame. */
function niceDomain(values: readonly number[], include: readonly number[] = []): [number, number] {
  const all = [...values, ...include].filter(Number.isFinite);
  if (all.length === 0) return [0, 1];
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (lo === hi) [lo, hi] = [lo - 0.5, hi + 0.5];
  const ticks = niceTicks(lo, hi);
  const step = ticks.length > 1 ? (ticks[1] as number) - (ticks[0] as number) : hi - lo;
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0).replace('e+', 'e');
  return Number(v.toPrecision(3)).toString();
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

interface Frame {
  width: number;
  height: number;
  x: (v: number) => number;
  y: (v: number) => number;
  body: string[];
}

/** Axes, grid, labels and title around a plot area mapping [x0,x1]×[y0,y1]. */
function frame(opts: ChartOptions, [x0, x1]: [number, number], [y0, y1]: [number, number], xTicks: number[], yTicks: number[]): Frame {
  const width = opts.width ?? 640;
  const height = opts.height ?? 300;
  const pw = width - MARGIN.left - MARGIN.right;
  const ph = height - MARGIN.top - MARGIN.bottom;
  const x = (v: number): number => MARGIN.left + (x1 === x0 ? pw / 2 : ((v - x0) / (x1 - x0)) * pw);
  const y = (v: number): number => MARGIN.top + ph - (y1 === y0 ? ph / 2 : ((v - y0) / (y1 - y0)) * ph);
  const body: string[] = [];
  for (const t of yTicks) {
    body.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + pw}" y1="${f(y(t))}" y2="${f(y(t))}" stroke="${GRID}"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${f(y(t))}" text-anchor="end" dominant-baseline="middle">${formatTick(t)}</text>`);
  }
  for (const t of xTicks) {
    body.push(`<line x1="${f(x(t))}" x2="${f(x(t))}" y1="${MARGIN.top + ph}" y2="${MARGIN.top + ph + 4}" stroke="${AXIS}"/>`);
    body.push(`<text x="${f(x(t))}" y="${MARGIN.top + ph + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  body.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${pw}" height="${ph}" fill="none" stroke="${AXIS}"/>`);
  body.push(`<text x="${MARGIN.left + pw / 2}" y="${height - 8}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  body.push(`<text transform="translate(14 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(opts.yLabel)}</text>`);
  body.push(`<text x="${MARGIN.left}" y="18" class="chart-title">${escapeXml(opts.title)}</text>`);
  return { width, height, x, y, body };
}

function svg(fr: Frame, title: string, content: string[]): string {
  return (
    `<svg class="chart" viewBox="0 0 ${fr.width} ${fr.height}" width="${fr.width}" height="${fr.height}" role="img" aria-label="${escapeXml(title)}">` +
    `<title>${escapeXml(title)}</title>${fr.body.join('')}${content.join('')}</svg>`
  );
}

function legend(fr: Frame, entries: readonly { name: string; color: string; kind: 'line' | 'box'; dashed?: boolean }[]): string[] {
  const out: string[] = [];
  let x = fr.width - MARGIN.right - 8;
  // Right-aligned, laid out right to left; ~7 user units per character at the 11px font.
  for (const e of [...entries].reverse()) {
    const w = 24 + e.name.length * 7;
    x -= w;
    const swatch =
      e.kind === 'line'
        ? `<line x1="${f(x)}" x2="${f(x + 14)}" y1="${LEGEND_Y}" y2="${LEGEND_Y}" stroke="${e.color}" stroke-width="2"${e.dashed ? ' stroke-dasharray="4 3"' : ''}/>`
        : `<rect x="${f(x)}" y="${LEGEND_Y - 5}" width="12" height="10" fill="${e.color}" fill-opacity="0.5" stroke="${e.color}"/>`;
    out.push(`${swatch}<text x="${f(x + 18)}" y="${LEGEND_Y}" dominant-baseline="middle">${escapeXml(e.name)}</text>`);
  }
  return out;
}

/** Lines over a shared x axis (steps); empty series are left out, an all-empty chart says so. */
export function lineChart(series: readonly LineSeries[], opts: ChartOptions): string {
  const drawn = series.filter((s) => s.points.some(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const xs = drawn.flatMap((s) => s.points.map(([x]) => x));
  const ys = drawn.flatMap((s) => s.points.map(([, y]) => y));
  const xDomain = niceDomain(xs);
  const yDomain = niceDomain(ys, opts.yInclude);
  const fr = frame(opts, xDomain, yDomain, niceTicks(...xDomain), niceTicks(...yDomain));
  const content: string[] = [];
  if (drawn.length === 0) content.push(`<text x="${fr.width / 2}" y="${fr.height / 2}" text-anchor="middle" class="empty">no data</text>`);
  for (const s of drawn) {
    // Split at non-finite values so a NaN loss shows as a gap, not a line to zero.
    let run: string[] = [];
    const runs: string[][] = [];
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) run.push(`${f(fr.x(x))},${f(fr.y(y))}`);
      else if (run.length > 0) (runs.push(run), (run = []));
    }
    if (run.length > 0) runs.push(run);
    for (const r of runs) {
      content.push(`<polyline class="series" data-series="${escapeXml(s.name)}" points="${r.join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round"/>`);
    }
    if (s.markers) {
      for (const [x, y] of s.points) {
        if (Number.isFinite(x) && Number.isFinite(y)) content.push(`<circle cx="${f(fr.x(x))}" cy="${f(fr.y(y))}" r="2.8" fill="${s.color}"/>`);
      }
    }
  }
  content.push(...legend(fr, drawn.map((s) => ({ name: s.name, color: s.color, kind: 'line' as const }))));
  return svg(fr, opts.title, content);
}

export interface BarSeries {
  name: string;
  counts: readonly number[];
  color: string;
}

/**
 * Histograms over shared bin edges, drawn as translucent bars on top of each other, so the
 * overlap of chosen and rejected rewards is visible. `marker` draws a dashed vertical line (x = 0).
 */
export function histogramChart(edges: readonly number[], series: readonly BarSeries[], opts: ChartOptions & { marker?: number }): string {
  const lo = edges[0] ?? 0;
  const hi = edges[edges.length - 1] ?? 1;
  const maxCount = Math.max(1, ...series.flatMap((s) => s.counts));
  const xDomain: [number, number] = [lo, hi];
  const yDomain = niceDomain([0, maxCount]);
  const fr = frame(opts, xDomain, yDomain, niceTicks(lo, hi), niceTicks(...yDomain).filter(Number.isInteger));
  const content: string[] = [];
  for (const s of series) {
    s.counts.forEach((c, i) => {
      if (c <= 0) return;
      const x0 = fr.x(edges[i] as number);
      const x1 = fr.x(edges[i + 1] as number);
      content.push(
        `<rect class="bar" data-series="${escapeXml(s.name)}" x="${f(x0)}" y="${f(fr.y(c))}" width="${f(Math.max(0.5, x1 - x0))}" height="${f(fr.y(0) - fr.y(c))}" fill="${s.color}" fill-opacity="0.45" stroke="${s.color}" stroke-width="0.8"/>`,
      );
    });
  }
  if (opts.marker !== undefined && opts.marker >= lo && opts.marker <= hi) {
    content.push(`<line x1="${f(fr.x(opts.marker))}" x2="${f(fr.x(opts.marker))}" y1="${MARGIN.top}" y2="${f(fr.y(yDomain[0]))}" stroke="${AXIS}" stroke-dasharray="4 3"/>`);
  }
  content.push(...legend(fr, series.map((s) => ({ name: s.name, color: s.color, kind: 'box' as const }))));
  return svg(fr, opts.title, content);
}

export interface ReliabilityPoint {
  confidence: number;
  accuracy: number;
  count: number;
}

/** Accuracy against confidence per bin, dot area ∝ pairs, with the diagonal of perfect calibration. */
export function reliabilityChart(points: readonly ReliabilityPoint[], opts: ChartOptions): string {
  const fr = frame(opts, [0.5, 1], [0, 1], niceTicks(0.5, 1), niceTicks(0, 1));
  const total = Math.max(1, ...points.map((p) => p.count));
  const content: string[] = [
    `<line x1="${f(fr.x(0.5))}" y1="${f(fr.y(0.5))}" x2="${f(fr.x(1))}" y2="${f(fr.y(1))}" stroke="${AXIS}" stroke-dasharray="4 3"/>`,
  ];
  const line = points.map((p) => `${f(fr.x(p.confidence))},${f(fr.y(p.accuracy))}`);
  if (line.length > 1) content.push(`<polyline class="series" points="${line.join(' ')}" fill="none" stroke="${COLORS.neutral}" stroke-width="1.2"/>`);
  for (const p of points) {
    const r = 2.5 + 7 * Math.sqrt(p.count / total);
    content.push(`<circle cx="${f(fr.x(p.confidence))}" cy="${f(fr.y(p.accuracy))}" r="${f(r)}" fill="${COLORS.neutral}" fill-opacity="0.6"><title>${p.count} pairs</title></circle>`);
  }
  content.push(...legend(fr, [{ name: 'model', color: COLORS.neutral, kind: 'line' }, { name: 'perfect', color: AXIS, kind: 'line', dashed: true }]));
  return svg(fr, opts.title, content);
}

function f(v: number): string {
  return Number.isFinite(v) ? (Math.round(v * 10) / 10).toString() : '0';
}
