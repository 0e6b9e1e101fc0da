// Batch limits from measured cost per row, per model and device, at load (as TEI warms up and
// Triton's model analyzer sweeps): on a GPU large batches are cheaper per row; on a CPU the
// cost per row stops falling after a few rows and rises again once a batch outgrows the caches
// (measured: docs/benchmarks.md). A fixed maximum is right for one of them at most.

/** Seconds one ONNX run of `rows` takes (the session's run). */
export type TimedRun = (rows: readonly (readonly number[])[]) => Promise<unknown>;

export interface CalibrationLimits {
  maxBatchSize: number;
  maxBatchTokens: number;
  /** The model's max length: no calibration row is longer. */
  maxLength: number;
}

export interface BatchMeasurement {
  length: number;
  rows: number;
  /** Fastest of the timed runs, per row. */
  msPerRow: number;
}

export interface BatchCalibration {
  maxBatchSize: number;
  maxBatchTokens: number;
  measurements: BatchMeasurement[];
  seconds: number;
}

/** Row lengths timed: a short and a long one (clamped to the model's max length). */
const LENGTHS = [64, 256];
/** Timed runs per shape after one warm-up: the fastest counts, which discards other processes' noise. */
const TIMED_RUNS = 3;
/**
 * Batches whose cost per row is within this factor of the best count as good; the largest of them
 * is taken. Tight, because the risks are lopsided: on a CPU a batch one step too small costs ~2%
 * per row, one step too large 7–15% (the bench RM: 8 rows 339.6 pairs/s, 4 rows 333.7, 16 rows
 * 317.5, 32 rows 287.7); on a GPU the cost falls steeply and the largest batch wins either way.
 */
const GOOD_ENOUGH = 1.05;
/** Stop growing a batch once one run takes this long, or the whole calibration this long. */
const MAX_RUN_MS = 400;
const BUDGET_MS = 3000;

/**
 * Times batches of 1, 2, 4, … rows at each length and picks the limits: the largest batch whose
 * cost per row is within GOOD_ENOUGH of the best, at the short length for the row limit; for the
 * token limit, that batch's padded tokens at the long length where larger batches got dearer
 * again (see chooseBatchLimits).
 */
export async function calibrateBatching(run: TimedRun, sample: readonly number[], limits: CalibrationLimits): Promise<BatchCalibration> {
  const started = performance.now();
  const measurements: BatchMeasurement[] = [];
  const lengths = [...new Set(LENGTHS.map((l) => Math.max(1, Math.min(l, limits.maxLength))))];
  for (const length of lengths) {
    const row = Array.from({ length }, (_, i) => sample[i % sample.length] as number);
    for (let rows = 1; rows <= limits.maxBatchSize && rows * length <= limits.maxBatchTokens; rows *= 2) {
      const batch = Array.from({ length: rows }, () => row);
      await run(batch); // ORT allocates per shape on first use
      let fastest = Infinity;
      for (let k = 0; k < TIMED_RUNS; k++) {
        const t = performance.now();
        await run(batch);
        fastest = Math.min(fastest, performance.now() - t);
      }
      measurements.push({ length, rows, msPerRow: fastest / rows });
      if (fastest > MAX_RUN_MS || performance.now() - started > BUDGET_MS) break;
    }
    if (performance.now() - started > BUDGET_MS) break;
  }
  return { ...chooseBatchLimits(measurements, limits), measurements, seconds: (performance.now() - started) / 1000 };
}

/**
 * The limits the measurements call for; the configured ones where nothing was measured.
 *
 * The token limit is the good batch at the longest length timed, when its cost per row turned up
 * again there (on a CPU, once a batch's activations outgrow the caches): short rows that kept
 * getting cheaper must not license long batches past that turn (on the 2-core VM the short rows'
 * 64 × 64 tokens let ~50 rows of 150 tokens into one batch, 15–20% dearer per row than the best
 * 8). Where the cost kept falling at the longest length (GPUs), the largest good batch's tokens
 * over all lengths, as before.
 */
export function chooseBatchLimits(measurements: readonly BatchMeasurement[], limits: CalibrationLimits): { maxBatchSize: number; maxBatchTokens: number } {
  const lengths = [...new Set(measurements.map((m) => m.length))].sort((a, b) => a - b);
  if (lengths.length === 0) return { maxBatchSize: limits.maxBatchSize, maxBatchTokens: limits.maxBatchTokens };
  const at = (length: number): BatchMeasurement[] => measurements.filter((m) => m.length === length);
  const bestRows = (length: number): number => {
    const best = Math.min(...at(length).map((m) => m.msPerRow));
    return Math.max(...at(length).filter((m) => m.msPerRow <= GOOD_ENOUGH * best).map((m) => m.rows));
  };
  const turned = (length: number): boolean => bestRows(length) < Math.max(...at(length).map((m) => m.rows));
  const shortest = lengths[0] as number;
  const maxBatchSize = grownToLimit(bestRows(shortest), measurements, shortest, limits.maxBatchSize);
  const longest = lengths[lengths.length - 1] as number;
  const tokens = turned(longest) ? bestRows(longest) * longest : Math.max(...lengths.map((l) => bestRows(l) * l));
  return { maxBatchSize, maxBatchTokens: Math.min(limits.maxBatchTokens, Math.max(tokens, limits.maxLength)) };
}

/**
 * When the best batch is the largest one timed and the sweep stopped only at a limit, larger
 * batches may be better still: keep the configured maximum rather than cap at what was timed.
 */
function grownToLimit(rows: number, measurements: readonly BatchMeasurement[], length: number, configured: number): number {
  const timed = Math.max(...measurements.filter((m) => m.length === length).map((m) => m.rows));
  return rows === timed && rows * 2 > configured ? configured : rows;
}
