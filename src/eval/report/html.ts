// The training report as one HTML string: summary, training curves, evaluation plots per data file,
// configuration. No scripts, no external resources (a CSP forbids them), so it opens the same from
// a laptop, a CI artifact or an air-gapped box.
import type { EvalResult, FileEvaluation, ObjectiveEvaluation } from '../types.js';
import { numberField } from './metrics-log.js';
import { COLORS, escapeXml as esc, extraColor, histogramChart, lineChart, reliabilityChart, type LineSeries } from './svg.js';
import type { ConfigTable, MetricsRow, TrainingReportInput } from './types.js';

const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; margin: 24px auto; max-width: 1340px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; } .meta, .note { color: #666; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child, th.text { text-align: left; } th { background: #f6f6f6; font-weight: 600; }
td.text { text-align: left; font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .charts > svg { flex: 0 1 640px; } .charts.eval > svg { flex-basis: 432px; }
svg.chart { max-width: 100%; height: auto; font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #333; background: #fff; border: 1px solid #eee; }
svg.chart .chart-title { font-size: 13px; font-weight: 600; } svg.chart .empty { fill: #999; font-size: 14px; }
`;

export function renderTrainingReport(input: TrainingReportInput, rows: readonly MetricsRow[], notes: readonly string[] = []): string {
  const title = input.title ?? 'Training report';
  const created = input.createdAt ?? new Date().toISOString();
  const ev = input.evalResult;
  const parts: string[] = [];
  parts.push(`<h1>${esc(title)}</h1>`);
  const model = ev === undefined ? '' : ` · model ${esc(ev.model.name)}@${esc(ev.model.version)} (${esc(ev.model.objectives.join(', '))})`;
  parts.push(`<div class="meta">${esc(created)}${model}</div>`);
  for (const note of notes) parts.push(`<p class="note">${esc(note)}</p>`);

  parts.push('<h2>Summary</h2>', summaryTable(input, rows));
  parts.push('<h2>Training</h2>', trainingCharts(rows));
  if (ev !== undefined) parts.push('<h2>Evaluation</h2>', evaluationSection(ev));
  if (input.config !== undefined && Object.keys(input.config).length > 0) {
    parts.push('<h2>Configuration</h2>', table(['setting', 'value'], flatten(input.config).map(([k, v]) => [esc(k), `<span>${esc(v)}</span>`]), [1]));
  }
  parts.push('<p class="note">Written by rmserve. Self-contained: no scripts and no network requests.</p>');

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${parts.join('\n')}
</body>
</html>
`;
}

/** The rows of one split, in step order. */
function splitRows(rows: readonly MetricsRow[], split: string): MetricsRow[] {
  return rows.filter((r) => r.split === split).sort((a, b) => a.step - b.step);
}

function splitsOf(rows: readonly MetricsRow[]): string[] {
  const names = [...new Set(rows.map((r) => r.split))];
  const order = (s: string): number => (s === 'train' ? 0 : s === 'validation' ? 1 : 2);
  return names.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
}

function splitColor(split: string, i: number): string {
  return split === 'train' ? COLORS.train : split === 'validation' ? COLORS.validation : extraColor(i);
}

function seriesOf(rows: readonly MetricsRow[], field: string, label = (split: string) => split): LineSeries[] {
  return splitsOf(rows).map((split, i) => {
    const points = splitRows(rows, split).map((r): [number, number] => [r.step, numberField(r, field)]);
    // Sparse splits (evaluated every N steps) get markers so single points show.
    return { name: label(split), points, color: splitColor(split, i), markers: split !== 'train' || points.length <= 40 };
  });
}

function has(rows: readonly MetricsRow[], field: string): boolean {
  return rows.some((r) => Number.isFinite(numberField(r, field)));
}

function trainingCharts(rows: readonly MetricsRow[]): string {
  if (rows.length === 0) return '<p class="note">No metrics were logged.</p>';
  const charts = [
    lineChart(seriesOf(rows, 'loss'), { title: 'Loss', xLabel: 'step', yLabel: 'loss' }),
    lineChart(seriesOf(rows, 'accuracy'), { title: 'Pairwise accuracy', xLabel: 'step', yLabel: 'accuracy', yInclude: [0.5] }),
  ];
  if (has(rows, 'reward_mean') || has(rows, 'reward_std')) {
    const series = [
      ...seriesOf(rows, 'reward_mean', (s) => `${s} mean`),
      ...seriesOf(rows, 'reward_std', (s) => `${s} std`).map((s, i) => ({ ...s, color: extraColor(i + 2) })),
    ];
    charts.push(lineChart(series, { title: 'Reward scale', xLabel: 'step', yLabel: 'reward', yInclude: [0] }));
  }
  if (has(rows, 'lr')) charts.push(lineChart(seriesOf(rows, 'lr').filter((s) => s.points.some(([, y]) => Number.isFinite(y))), { title: 'Learning rate', xLabel: 'step', yLabel: 'lr', yInclude: [0] }));
  if (has(rows, 'tokens_per_second')) {
    charts.push(lineChart(seriesOf(rows, 'tokens_per_second'), { title: 'Throughput', xLabel: 'step', yLabel: 'tokens / s', yInclude: [0] }));
  }
  return `<div class="charts">${charts.join('\n')}</div>`;
}

function summaryTable(input: TrainingReportInput, rows: readonly MetricsRow[]): string {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(input.finalMetrics ?? {})) out.push([k, typeof v === 'number' ? compact(v) : v]);
  for (const split of splitsOf(rows)) {
    const r = splitRows(rows, split);
    const last = r[r.length - 1];
    if (last === undefined) continue;
    out.push([`${split}: last step`, String(last.step)]);
    for (const field of ['loss', 'accuracy']) {
      const v = numberField(last, field);
      if (Number.isFinite(v)) out.push([`${split}: final ${field}`, num(v, 4)]);
    }
    if (split !== 'train') {
      const best = r.filter((x) => Number.isFinite(numberField(x, 'accuracy'))).sort((a, b) => numberField(b, 'accuracy') - numberField(a, 'accuracy'))[0];
      if (best !== undefined) out.push([`${split}: best accuracy`, `${num(numberField(best, 'accuracy'), 4)} (step ${best.step})`]);
    }
  }
  for (const file of input.evalResult?.files ?? []) {
    for (const [name, e] of Object.entries(file.objectives)) {
      out.push([`eval ${file.source} (${file.split}) / ${name}: accuracy`, `${pct(e.accuracy)} (longer response: ${pct(file.length_baseline.accuracy)}, ${e.pairs} pairs)`]);
    }
  }
  if (out.length === 0) return '<p class="note">Nothing to summarise.</p>';
  return table(['metric', 'value'], out.map(([k, v]) => [esc(k), esc(v)]));
}

function evaluationSection(ev: EvalResult): string {
  const parts: string[] = [];
  parts.push(
    `<p class="meta">split ${esc(ev.split)}${ev.max_pairs === null ? '' : `, first ${ev.max_pairs} pairs per file`}; ` +
      `accuracy counts ties as half; margin = r(chosen) − r(rejected); calibration bins σ(|margin|) against the share of pairs ranked right.</p>`,
  );
  const header = ['file', 'objective', 'pairs', 'accuracy', 'longer', 'loss', 'chosen μ ± σ', 'rejected μ ± σ', 'margin p5', 'p25', 'p50', 'p75', 'p95', 'median |margin|', 'ECE'];
  const rows = ev.files.flatMap((file) => Object.entries(file.objectives).map(([name, e]) => summaryRow(file, name, e)));
  parts.push(table(header, rows));
  for (const file of ev.files) {
    for (const [name, e] of Object.entries(file.objectives)) {
      parts.push(`<h3>${esc(file.source)} · ${esc(name)}</h3>`);
      parts.push(`<div class="charts eval">${evaluationCharts(e)}</div>`);
    }
  }
  return parts.join('\n');
}

function summaryRow(file: FileEvaluation, name: string, e: ObjectiveEvaluation): string[] {
  const q = e.margin.quantiles;
  return [
    esc(file.source),
    esc(name),
    String(e.pairs),
    pct(e.accuracy),
    pct(file.length_baseline.accuracy),
    num(e.loss, 3),
    `${num(e.rewards.chosen.mean)} ± ${num(e.rewards.chosen.std)}`,
    `${num(e.rewards.rejected.mean)} ± ${num(e.rewards.rejected.std)}`,
    num(q['0.05']),
    num(q['0.25']),
    num(q['0.5']),
    num(q['0.75']),
    num(q['0.95']),
    num(e.margin.abs_median),
    num(e.calibration.ece, 3),
  ];
}

// Three to a row at their natural size (the heading above names the file and objective), so the
// 11px text is not scaled down.
const EVAL_CHART = { width: 432, height: 280 };

function evaluationCharts(e: ObjectiveEvaluation): string {
  const h = e.histograms;
  return [
    histogramChart(
      h.rewards.edges,
      [
        { name: 'chosen', counts: h.rewards.chosen, color: COLORS.chosen },
        { name: 'rejected', counts: h.rewards.rejected, color: COLORS.rejected },
      ],
      { ...EVAL_CHART, title: 'Rewards: chosen vs rejected', xLabel: 'reward', yLabel: 'responses' },
    ),
    histogramChart(h.margin.edges, [{ name: 'pairs', counts: h.margin.counts, color: COLORS.neutral }], {
      ...EVAL_CHART,
      title: 'Margin r(chosen) − r(rejected)',
      xLabel: 'margin',
      yLabel: 'pairs',
      marker: 0,
    }),
    reliabilityChart(
      e.calibration.bins.flatMap((b) => (b.count > 0 && b.confidence !== null && b.accuracy !== null ? [{ confidence: b.confidence, accuracy: b.accuracy, count: b.count }] : [])),
      { ...EVAL_CHART, title: `Calibration (ECE ${num(e.calibration.ece, 3)})`, xLabel: 'confidence σ(|margin|)', yLabel: 'share ranked right' },
    ),
  ].join('\n');
}

/** A table from cells that are already HTML-escaped. Columns in `textColumns` are left-aligned text. */
function table(header: readonly string[], rows: readonly (readonly string[])[], textColumns: readonly number[] = []): string {
  const head = `<tr>${header.map((h, i) => (textColumns.includes(i) ? `<th class="text">${esc(h)}</th>` : `<th>${esc(h)}</th>`)).join('')}</tr>`;
  const body = rows.map((r) => `<tr>${r.map((c, i) => (textColumns.includes(i) ? `<td class="text">${c}</td>` : `<td>${c}</td>`)).join('')}</tr>`).join('\n');
  return `<table>\n${head}\n${body}\n</table>`;
}

/** Nested settings as dotted keys; arrays of scalars inline, other values as JSON. */
export function flatten(config: ConfigTable, prefix = ''): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(config)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(...flatten(v as ConfigTable, key));
    else if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) out.push([key, v.map(String).join(', ')]);
    else out.push([key, typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)]);
  }
  return out;
}

/** Four significant digits, no trailing zeros: 3512.4, 0.6147, 1.2e-5. */
function compact(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) < 1e-3 ? x.toExponential(2) : String(Number(x.toPrecision(Math.max(4, Math.ceil(Math.log10(Math.abs(x) + 1)) + 1))));
}

function pct(x: number | null): string {
  return x === null ? '-' : `${(100 * x).toFixed(1)}%`;
}

function num(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return Math.abs(x) !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6) ? x.toExponential(2) : x.toFixed(digits);
}
