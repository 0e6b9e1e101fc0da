import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibration, evaluateRewards, histogram, histogramEdges, pairAccuracy, sortedQuantile } from '../src/eval/metrics.js';

const close = (actual: number | null, expected: number, tol = 1e-9): void =>
  assert.ok(actual !== null && Math.abs(actual - expected) <= tol, `${actual} vs ${expected}`);
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

test('pairwise metrics of four hand-made pairs', () => {
  // margins r_c − r_r = [1, 0, −1, 3]: one tie, one wrong, two right.
  const e = evaluateRewards([2, 1, 0, 3], [1, 1, 1, 0]);
  assert.equal(e.pairs, 4);
  assert.deepEqual([e.correct, e.ties, e.incorrect], [2, 1, 1]);
  close(e.accuracy, 2.5 / 4);
  close(e.loss, (Math.log1p(Math.exp(-1)) + Math.log(2) + Math.log1p(Math.exp(1)) + Math.log1p(Math.exp(-3))) / 4);
  close(e.rewards.chosen.mean, 1.5);
  close(e.rewards.chosen.std, Math.sqrt(5 / 4));
  close(e.rewards.rejected.mean, 0.75);
  close(e.rewards.rejected.std, Math.sqrt((3 * 0.25 ** 2 + 0.75 ** 2) / 4));
  close(e.rewards.all.mean, 9 / 8);
  assert.equal(e.rewards.all.n, 8);
  close(e.margin.mean, 0.75);
  close(e.margin.abs_median, 1);
  // Sorted margins [−1, 0, 1, 3]; position (n − 1)·q, linear in between.
  const q = e.margin.quantiles;
  close(q['0.05']!, -0.85);
  close(q['0.25']!, -0.25);
  close(q['0.5']!, 0.5);
  close(q['0.75']!, 1.5);
  close(q['0.95']!, 2.7);

  // Confidence σ(|Δ|): the tie at 0.5 (bin 0), the ±1 pair at σ(1) ≈ 0.731 (bin 4), Δ = 3 at ≈ 0.953 (bin 9).
  const bins = e.calibration.bins;
  assert.equal(bins.length, 10);
  assert.deepEqual(bins.map((b) => b.count), [1, 0, 0, 0, 2, 0, 0, 0, 0, 1]);
  assert.deepEqual([bins[4]!.lo, bins[4]!.hi], [0.7, 0.75]);
  close(bins[0]!.accuracy, 0.5);
  close(bins[4]!.accuracy, 0.5);
  close(bins[4]!.confidence, sigmoid(1));
  close(bins[9]!.accuracy, 1);
  assert.equal(bins[1]!.accuracy, null);
  close(e.calibration.ece, (2 / 4) * Math.abs(0.5 - sigmoid(1)) + (1 / 4) * Math.abs(1 - sigmoid(3)));

  const h = e.histograms.rewards;
  assert.equal(h.edges[0], 0);
  assert.equal(h.edges.at(-1), 3);
  assert.equal(h.chosen.reduce((s, c) => s + c, 0), 4);
  assert.equal(h.rejected.reduce((s, c) => s + c, 0), 4);
  assert.equal(h.chosen.at(-1), 1, 'the maximum falls in the last bin');
  assert.equal(e.histograms.margin.counts.reduce((s, c) => s + c, 0), 4);
});

test('edge cases: no pairs, one value, ties only', () => {
  const empty = evaluateRewards([], []);
  assert.equal(empty.accuracy, null);
  assert.equal(empty.loss, null);
  assert.equal(empty.calibration.ece, 0);
  assert.deepEqual(pairAccuracy([1, 1], [1, 1]), { accuracy: 0.5, correct: 0, ties: 2, incorrect: 0 });
  assert.deepEqual(histogramEdges([[2, 2]], 2), [1.5, 2, 2.5]);
  assert.deepEqual(histogram([0, 0.5, 1, 1.5], [0, 0.5, 1]).counts, [1, 2]);
  assert.equal(sortedQuantile([4], 0.95), 4);
  assert.deepEqual(calibration([0, 0]).bins[0]!.count, 2);
  assert.throws(() => evaluateRewards([1], []), RangeError);
});
