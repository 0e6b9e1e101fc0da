// Aggregates and the reference quantile against hand-computed values (numpy for quantiles).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, checkAggregate, DEFAULT_REFERENCE_QUANTILE, lsc, parseAggregateName, parseTransformName, quantile, TransformError } from '../src/transforms/index.js';

function close(actual: number | undefined, expected: number, tol = 1e-15): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${actual} != ${expected}`);
}

function throwsCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TransformError, `expected TransformError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test('quantile interpolates linearly like numpy.quantile', () => {
  assert.equal(DEFAULT_REFERENCE_QUANTILE, 0.85);
  close(quantile([1, 2, 3, 4], 0.85), 3.55);
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.equal(quantile([5], 0.85), 5);
  assert.equal(quantile([1, 2], 0), 1);
  assert.equal(quantile([1, 2], 1), 2);
  close(quantile([0.1, 0.7], 0.3), 0.28);
  close(quantile([0.2, -1.3, 0.9, 2.4, 0.4], 0.85), 1.5);
  close(quantile([-1e4, 0, 1e4], 0.85), 7000);
  const input = [3, 1, 2];
  quantile(input, 0.5);
  assert.deepEqual(input, [3, 1, 2], 'input is not sorted in place');
  throwsCode(() => quantile([], 0.85), 'missing_parameter', /empty/);
  throwsCode(() => quantile([1, Number.NaN], 0.85), 'non_finite_input', /reference reward \[1\]/);
  throwsCode(() => quantile([1, 2], 1.5), 'invalid_parameter');
  throwsCode(() => quantile([1, 2], Number.NaN), 'non_finite_input');
});

// The worked example of docs/transforms.md: two objectives, harmless with request references,
// helpful with the manifest's reference 0.4, helpful weighted 0.5.
test('conjunction is Σ w_k·u_k with exp offered as a probability (worked example)', () => {
  const refHarmless = quantile([0.2, -1.3, 0.9, 2.4, 0.4], 0.85);
  const u = { harmless: lsc(1.2, refHarmless), helpful: lsc(-0.5, 0.4) };
  close(u.harmless, -0.8543552444685272);
  close(u.helpful, -1.2411538747320878);
  const out = aggregate('conjunction', u, { helpful: 0.5 });
  close(out.reward, -1.474932181834571);
  close(out.probability, 0.2287942429249031);
  // Unit weights are the default.
  close(aggregate('conjunction', u).reward, -0.8543552444685272 - 1.2411538747320878);
  // Extreme: far above the reference in both objectives is certainty, far below is additive.
  const top = aggregate('conjunction', { a: lsc(1e4, 0), b: lsc(1e4, 0) });
  assert.equal(top.reward, 0);
  assert.equal(top.probability, 1);
  const bottom = aggregate('conjunction', { a: lsc(-1e4, 0), b: lsc(0, 0) });
  assert.equal(bottom.reward, -1e4 - Math.LN2);
  assert.equal(bottom.probability, 0);
});

test('conjunction refuses values that are not log-probabilities and negative weights', () => {
  throwsCode(() => aggregate('conjunction', { harmless: 1.2 }), 'invalid_parameter', /log-probabilities.*harmless is 1.2/);
  throwsCode(() => aggregate('conjunction', { a: -1 }, { a: -2 }), 'invalid_parameter', /weights >= 0/);
});

test('sum, min and none', () => {
  close(aggregate('sum', { harmless: 1.2, helpful: -0.5 }, { helpful: 0.5 }).reward, 0.95);
  assert.equal(aggregate('sum', { a: 1e4, b: -1e4 }).reward, 0);
  assert.equal(aggregate('sum', { a: 2 }, { a: -1 }).reward, -2);
  assert.equal(aggregate('min', { a: 2, b: -3, c: 0.5 }).reward, -3);
  assert.equal(aggregate('min', { a: 2, b: -3 }, { b: 0.5 }).reward, -1.5);
  assert.equal(aggregate('min', { a: -1e4, b: 1e4 }).reward, -1e4);
  assert.deepEqual(aggregate('none', { a: 1, b: 2 }), {});
  // With one objective and no weights, sum and min return the value itself.
  assert.equal(aggregate('sum', { only: -0.41 }).reward, -0.41);
  assert.equal(aggregate('min', { only: -0.41 }).reward, -0.41);
});

test('unknown names, non-finite values and empty inputs are typed errors', () => {
  for (const name of ['sum', 'min', 'none', 'conjunction'] as const) {
    throwsCode(() => aggregate(name, { harmless: -1 }, { helpful: 1 }), 'unknown_objective', /unknown objective "helpful"; objectives are harmless/);
    throwsCode(() => aggregate(name, { harmless: Number.NaN }), 'non_finite_input', /objective harmless/);
    throwsCode(() => aggregate(name, { harmless: -1 }, { harmless: Infinity }), 'non_finite_input', /weight of objective harmless/);
    throwsCode(() => aggregate(name, {}), 'missing_parameter');
  }
  throwsCode(() => aggregate('max' as 'sum', { a: 1 }), 'unknown_aggregate', /unknown aggregate "max"/);
  throwsCode(() => parseAggregateName('product'), 'unknown_aggregate');
  throwsCode(() => parseTransformName(7), 'unknown_transform', /unknown transform 7/);
  assert.equal(parseAggregateName('conjunction'), 'conjunction');
  assert.equal(parseTransformName('lsc'), 'lsc');
});

// Issue 14: conjunction used to pass or fail with the sign of the values (transform none with
// negative rewards passed, positive ones failed). The rule is now the transform's, before any value.
test('checkAggregate: conjunction only with lsc, whatever the values, and weights >= 0', () => {
  for (const transform of ['none', 'sigmoid', 'znorm', 'clip'] as const) {
    throwsCode(() => checkAggregate(transform, 'conjunction'), 'invalid_parameter', new RegExp(`only transform lsc.*transform is ${transform}.*use transform lsc, or aggregate sum or min`));
  }
  checkAggregate('lsc', 'conjunction');
  checkAggregate('lsc', 'conjunction', { a: 0, b: 2 });
  throwsCode(() => checkAggregate('lsc', 'conjunction', { a: -1 }), 'invalid_parameter', /weights >= 0; objective a has -1/);
  for (const transform of ['none', 'lsc', 'sigmoid', 'znorm', 'clip'] as const) {
    for (const name of ['none', 'sum', 'min'] as const) checkAggregate(transform, name, { a: -1 });
  }
});
