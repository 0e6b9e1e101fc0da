// What each transform is given per objective (src/scoring/transform-params.ts): lsc its r_ref by
// precedence, znorm the manifest's mean/std, clip the request's bounds, the rest nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transformParams, type ObjectiveInputs } from '../src/scoring/transform-params.js';
import { TransformError } from '../src/transforms/index.js';

const stats = { quantiles: { '0.5': 0.1, '0.85': 0.4 }, mean: 1.5, std: 2, n: 10 };
const inputs = (over: Partial<ObjectiveInputs> = {}): ObjectiveInputs => ({ key: 'helpful', objective: 'helpful', model: 'rm', stats, references: undefined, ...over });

test('lsc: request references, then the prompt cache at the requested quantile, then the manifest', () => {
  const request = { rewards: [1, 2, 3], source: 'request' as const };
  assert.deepEqual(transformParams({ transform: 'lsc', referenceQuantile: 0.5 }, inputs({ references: request })), {
    params: { reference: 2 },
    reference: { reference: 2, source: 'request' },
  });
  const cached = { rewards: [0, 10], source: 'prompt_cache' as const };
  assert.deepEqual(transformParams({ transform: 'lsc', referenceQuantile: 0.5 }, inputs({ references: cached })).reference, { reference: 5, source: 'prompt_cache' });
  assert.deepEqual(transformParams({ transform: 'lsc' }, inputs()).reference, { reference: 0.4, source: 'manifest' }, 'default quantile 0.85');
  assert.throws(() => transformParams({ transform: 'lsc' }, inputs({ stats: undefined })), (err: unknown) => err instanceof TransformError && err.code === 'missing_parameter');
});

test('znorm: the manifest mean/std, or a 400 naming where they belong', () => {
  assert.deepEqual(transformParams({ transform: 'znorm' }, inputs()), { params: { mean: 1.5, std: 2 } });
  assert.throws(
    () => transformParams({ transform: 'znorm' }, inputs({ key: 'rm.helpful', stats: undefined })),
    (err: unknown) =>
      err instanceof TransformError &&
      err.code === 'missing_parameter' &&
      err.message === "objective rm.helpful has no reward mean/std: znorm needs reference.helpful in model rm's rmserve.json",
  );
});

test('clip takes the request bounds; none and sigmoid need nothing', () => {
  assert.deepEqual(transformParams({ transform: 'clip', clip: [-1, 1] }, inputs()), { params: { clip: [-1, 1] } });
  assert.deepEqual(transformParams({ transform: 'clip' }, inputs()), { params: {} }, 'applyTransform reports the missing bounds');
  for (const transform of ['none', 'sigmoid'] as const) assert.deepEqual(transformParams({ transform, clip: [0, 1] }, inputs()), { params: {} });
});
