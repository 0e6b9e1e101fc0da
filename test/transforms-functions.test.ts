// Each transform against values computed by hand (Python's math module, stable forms), at
// ordinary and extreme inputs; naive formulas fail the extreme ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyTransform, clip, logSigmoid, lsc, sigmoid, softplus, TransformError, znorm } from '../src/transforms/index.js';

function close(actual: number, expected: number, tol = 1e-15): void {
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${actual} != ${expected}`);
}

function throwsCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TransformError, `expected TransformError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.statusCode, 400);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test('softplus and logSigmoid are stable in both tails', () => {
  assert.equal(softplus(0), Math.LN2);
  assert.equal(softplus(1e4), 1e4);
  assert.equal(softplus(-1e4), 0);
  assert.equal(logSigmoid(0), -Math.LN2);
  close(logSigmoid(1), -0.31326168751822286);
  // log(1 − 4e-18) rounds to 0 in the naive form; the stable one keeps the tail.
  close(logSigmoid(40), -4.248354255291589e-18);
  assert.equal(logSigmoid(-800), -800); // naive: log(σ(−800)) = log(0) = −Infinity
  assert.ok(Object.is(logSigmoid(1e4), 0), 'no signed zero');
});

test('sigmoid is stable in both tails', () => {
  assert.equal(sigmoid(0), 0.5);
  close(sigmoid(2), 0.8807970779778823);
  close(sigmoid(-3), 0.04742587317756679);
  assert.equal(sigmoid(1e4), 1);
  assert.equal(sigmoid(-1e4), 0);
  assert.equal(sigmoid(800), 1); // naive e^x/(1+e^x) = Infinity/Infinity = NaN
});

test('lsc is log σ(r − r_ref), stable for |r| = 1e4', () => {
  assert.equal(lsc(0, 0), -Math.LN2);
  close(lsc(2, 1), -0.31326168751822286);
  close(lsc(1.2, 1.5), -0.8543552444685272);
  assert.equal(lsc(1e4, 0), 0);
  assert.equal(lsc(-1e4, 0), -1e4);
  assert.equal(lsc(0, 1e4), -1e4);
  assert.equal(lsc(1e4, 1e4), -Math.LN2);
  assert.equal(lsc(-1e4, -1e4), -Math.LN2);
  // Monotone and ≤ 0: improving a response never lowers its reward, nothing beats certainty.
  let prev = -Infinity;
  for (let r = -50; r <= 50; r += 0.5) {
    const u = lsc(r, 3);
    assert.ok(u >= prev && u <= 0);
    prev = u;
  }
});

test('znorm and clip', () => {
  assert.equal(znorm(3, 1, 2), 1);
  assert.equal(znorm(-1e4, 0, 1), -1e4);
  close(znorm(1.2, 0.3, 0.6), 1.5);
  throwsCode(() => znorm(1, 0, 0), 'invalid_parameter', /std must be > 0/);
  throwsCode(() => znorm(1, 0, -1), 'invalid_parameter');
  assert.equal(clip(5, -1, 1), 1);
  assert.equal(clip(-5, -1, 1), -1);
  assert.equal(clip(0.25, -1, 1), 0.25);
  assert.equal(clip(1e4, -5, 5), 5);
  throwsCode(() => clip(0, 1, -1), 'invalid_parameter', /lo <= hi/);
});

test('applyTransform dispatches by name and needs its parameters', () => {
  assert.equal(applyTransform('none', 1.25, {}), 1.25);
  assert.equal(applyTransform('none', -1e4), -1e4);
  close(applyTransform('lsc', 2, { reference: 1 }), -0.31326168751822286);
  close(applyTransform('sigmoid', 2, {}), 0.8807970779778823);
  assert.equal(applyTransform('znorm', 3, { mean: 1, std: 2 }), 1);
  assert.equal(applyTransform('clip', 3, { clip: [-2, 2] }), 2);
  throwsCode(() => applyTransform('lsc', 1, {}), 'missing_parameter', /lsc needs a reference/);
  throwsCode(() => applyTransform('znorm', 1, { mean: 0 }), 'missing_parameter', /std/);
  throwsCode(() => applyTransform('clip', 1, {}), 'missing_parameter');
  throwsCode(() => applyTransform('exp' as 'none', 1, {}), 'unknown_transform', /unknown transform "exp"; expected one of none, lsc/);
});

test('non-finite inputs are rejected with a clear error, never passed through', () => {
  for (const bad of [Number.NaN, Infinity, -Infinity]) {
    throwsCode(() => applyTransform('none', bad), 'non_finite_input', /raw reward must be a finite number/);
    throwsCode(() => applyTransform('sigmoid', bad), 'non_finite_input');
    throwsCode(() => applyTransform('lsc', bad, { reference: 0 }), 'non_finite_input');
    throwsCode(() => applyTransform('lsc', 0, { reference: bad }), 'non_finite_input', /reference reward/);
    throwsCode(() => applyTransform('znorm', 0, { mean: bad, std: 1 }), 'non_finite_input', /mean/);
    throwsCode(() => applyTransform('clip', 0, { clip: [bad, 1] }), 'non_finite_input');
  }
  throwsCode(() => applyTransform('none', '1' as unknown as number), 'non_finite_input');
  // Finite inputs whose result overflows are refused too: JSON cannot carry Infinity.
  throwsCode(() => applyTransform('znorm', 1e300, { mean: -1e300, std: 1e-10 }), 'non_finite_result');
});
