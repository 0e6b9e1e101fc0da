// The terminal view of an EvalResult: one summary row per (file, objective), then one calibration
// table each. Plain text with aligned columns, no colours, so it reads the same in a log file.
import type { EvalResult, ObjectiveEvaluation } from './types.js';

export function formatEvalResult(result: EvalResult): string {
  const { model } = result;
  const lines: string[] = [];
  lines.push(
    `model ${model.name}@${model.version} (${model.dir}), objectives ${model.objectives.join(', ')}, max_length ${model.max_length}; ` +
      `split ${result.split}${result.max_pairs === null ? '' : `, first ${result.max_pairs} pairs per file`}; ${result.seconds.toFixed(1)} s`,
  );
  lines.push('');

  const header = ['file', 'objective', 'pairs', 'acc', 'longer', 'loss', 'chosen μ±σ', 'rejected μ±σ', 'all μ±σ', 'margin p5', 'p25', 'p50', 'p75', 'p95', 'ECE'];
  const rows: string[][] = [];
  for (const file of result.files) {
    for (const [name, e] of Object.entries(file.objectives)) {
      const q = e.margin.quantiles;
      rows.push([
        file.source,
        name,
        String(e.pairs),
        pct(e.accuracy),
        pct(file.length_baseline.accuracy),
        num(e.loss, 3),
        `${num(e.rewards.chosen.mean)}±${num(e.rewards.chosen.std)}`,
        `${num(e.rewards.rejected.mean)}±${num(e.rewards.rejected.std)}`,
        `${num(e.rewards.all.mean)}±${num(e.rewards.all.std)}`,
        num(q['0.05']),
        num(q['0.25']),
        num(q['0.5']),
        num(q['0.75']),
        num(q['0.95']),
        num(e.calibration.ece, 3),
      ]);
    }
  }
  lines.push(...alignColumns([header, ...rows], [0, 1]));
  lines.push('acc: pairs with r(chosen) > r(rejected), ties half; longer: the same for "prefer the longer response"; margin = r(chosen) − r(rejected)');

  for (const file of result.files) {
    const notes: string[] = [];
    if (file.truncated > 0) notes.push(`${file.truncated} pairs truncated to ${model.max_length} tokens`);
    if (file.skipped > 0) notes.push(`${file.skipped} pairs skipped (${file.skip_reason ?? 'unknown reason'})`);
    const dropped = Object.entries(file.read.dropped).map(([k, v]) => `${k} ${v}`);
    if (dropped.length > 0) notes.push(`reader dropped ${dropped.join(', ')}`);
    if (notes.length > 0) lines.push(`${file.source}: ${notes.join('; ')}`);
  }

  for (const file of result.files) {
    for (const [name, e] of Object.entries(file.objectives)) {
      lines.push('');
      lines.push(`calibration of σ(|margin|), ${file.source} / ${name}: ECE ${num(e.calibration.ece, 3)}`);
      lines.push(...alignColumns(calibrationRows(e), [0]).map((l) => `  ${l}`));
    }
  }
  return lines.join('\n') + '\n';
}

function calibrationRows(e: ObjectiveEvaluation): string[][] {
  const rows = [['confidence', 'pairs', 'mean conf', 'accuracy']];
  for (const b of e.calibration.bins) {
    rows.push([`${b.lo.toFixed(2)}–${b.hi.toFixed(2)}`, String(b.count), b.confidence === null ? '-' : b.confidence.toFixed(3), pct(b.accuracy)]);
  }
  return rows;
}

/** Pads every column to its widest cell; columns in `left` are left-aligned, the rest right. */
export function alignColumns(rows: readonly string[][], left: readonly number[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, [...cell].length)));
  return rows.map((row) =>
    row
      .map((cell, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - [...cell].length);
        return left.includes(i) ? cell + pad : pad + cell;
      })
      .join('  ')
      .trimEnd(),
  );
}

function pct(x: number | null): string {
  return x === null ? '-' : `${(100 * x).toFixed(1)}%`;
}

function num(x: number | null | undefined, digits = 2): string {
  return x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}
