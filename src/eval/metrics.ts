// Pairwise metrics from rewards alone: no model, no I/O. `rmserve eval` feeds them the rewards of an
// exported model; the trainer can feed them its own rewards and get the same numbers and report.
import type {
  Calibration,
  CalibrationBin,
  Histogram,
  ObjectiveEvaluation,
  PairAccuracy,
  RewardStats,
} from './types.js';

export const MARGIN_QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95] as const;
export const CALIBRATION_BINS = 10;
export const HISTOGRAM_BINS = 30;

/** Pairs won by the higher score; equal scores are a coin flip (half a pair). */
export function pairAccuracy(chosen: ArrayLike<number>, rejected: ArrayLike<number>): PairAccuracy {
  checkSameLength(chosen, rejected);
  let correct = 0;
  let ties = 0;
  for (let i = 0; i < chosen.length; i++) {
    const c = chosen[i] as number;
    const r = rejected[i] as number;
    if (c > r) correct++;
    else if (c === r) ties++;
  }
  const n = chosen.length;
  return { accuracy: n > 0 ? (correct + 0.5 * ties) / n : null, correct, ties, incorrect: n - correct - ties };
}

export function rewardStats(values: ArrayLike<number>): RewardStats {
  const n = values.length;
  if (n === 0) return { n, mean: 0, std: 0 };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i] as number;
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += ((values[i] as number) - mean) ** 2;
  return { n, mean, std: Math.sqrt(ss / n) };
}

/** numpy's default quantile (linear interpolation between order statistics) of sorted values. */
export function sortedQuantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const a = sorted[lo] as number;
  return a + (h - lo) * ((sorted[hi] as number) - a);
}

/**
 * Reliability table of the Bradley–Terry probability σ(r_c − r_r). Every pair's label is
 * "chosen wins", so binning σ(Δ) itself would show 100 % in every bin; instead each pair is scored
 * in the orientation the model prefers: confidence σ(|Δ|) ∈ [0.5, 1] against whether that pick
 * was right. This equals the usual table over both orderings (c, r) and (r, c) of every pair.
 */
export function calibration(margins: ArrayLike<number>, bins = CALIBRATION_BINS): Calibration {
  const width = 0.5 / bins;
  const count = new Array<number>(bins).fill(0);
  const confSum = new Array<number>(bins).fill(0);
  const rightSum = new Array<number>(bins).fill(0);
  for (let i = 0; i < margins.length; i++) {
    const d = margins[i] as number;
    const conf = sigmoid(Math.abs(d));
    const b = Math.min(bins - 1, Math.floor((conf - 0.5) / width));
    count[b] += 1;
    confSum[b] += conf;
    rightSum[b] += d > 0 ? 1 : d === 0 ? 0.5 : 0;
  }
  const n = margins.length;
  let ece = 0;
  const table: CalibrationBin[] = count.map((c, b) => {
    const confidence = c > 0 ? confSum[b] / c : null;
    const accuracy = c > 0 ? rightSum[b] / c : null;
    if (confidence !== null && accuracy !== null) ece += (c / n) * Math.abs(accuracy - confidence);
    return { lo: round(0.5 + b * width), hi: round(0.5 + (b + 1) * width), count: c, confidence, accuracy };
  });
  return { bins: table, ece };
}

/** Equal-width bins over [min, max] of all the series, so they can be drawn on one axis. */
export function histogramEdges(series: readonly ArrayLike<number>[], bins = HISTOGRAM_BINS): number[] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of series) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo)) return [0, 1];
  // One value only: a unit-wide bin around it, so the bar has somewhere to stand.
  if (hi === lo) [lo, hi] = [lo - 0.5, hi + 0.5];
  const w = (hi - lo) / bins;
  return Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + i * w));
}

export function histogram(values: ArrayLike<number>, edges: readonly number[]): Histogram {
  const bins = edges.length - 1;
  const counts = new Array<number>(bins).fill(0);
  const lo = edges[0] as number;
  const hi = edges[bins] as number;
  const w = (hi - lo) / bins;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!(v >= lo && v <= hi)) continue;
    counts[Math.min(bins - 1, Math.floor((v - lo) / w))] += 1;
  }
  return { edges: [...edges], counts };
}

/** All of ObjectiveEvaluation for one reward column: r_c and r_r of each pair, in pair order. */
export function evaluateRewards(chosen: ArrayLike<number>, rejected: ArrayLike<number>): ObjectiveEvaluation {
  checkSameLength(chosen, rejected);
  const n = chosen.length;
  const margins = Float64Array.from({ length: n }, (_, i) => (chosen[i] as number) - (rejected[i] as number));
  const sorted = Float64Array.from(margins).sort();
  const absSorted = Float64Array.from(margins, Math.abs).sort();
  const all = new Float64Array(2 * n);
  all.set(Float64Array.from(chosen), 0);
  all.set(Float64Array.from(rejected), n);
  let loss = 0;
  for (const d of margins) loss += softplus(-d);
  const marginStats = rewardStats(margins);
  const rewardEdges = histogramEdges([chosen, rejected]);
  return {
    pairs: n,
    ...pairAccuracy(chosen, rejected),
    loss: n > 0 ? loss / n : null,
    rewards: { chosen: rewardStats(chosen), rejected: rewardStats(rejected), all: rewardStats(all) },
    margin: {
      mean: marginStats.mean,
      std: marginStats.std,
      abs_median: n > 0 ? sortedQuantile(absSorted, 0.5) : 0,
      quantiles: Object.fromEntries(MARGIN_QUANTILES.map((q) => [String(q), n > 0 ? sortedQuantile(sorted, q) : 0])),
    },
    calibration: calibration(margins),
    histograms: {
      rewards: {
        edges: rewardEdges,
        chosen: histogram(chosen, rewardEdges).counts,
        rejected: histogram(rejected, rewardEdges).counts,
      },
      margin: histogram(margins, histogramEdges([margins])),
    },
  };
}

function checkSameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new RangeError(`${a.length} chosen values but ${b.length} rejected`);
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

function softplus(x: number): number {
  return x > 30 ? x : Math.log1p(Math.exp(x));
}

// Bin edges like 0.55 print as 0.55, not 0.5500000000000001.
function round(x: number): number {
  return Math.round(x * 1e9) / 1e9;
}
