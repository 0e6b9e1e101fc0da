// LSC reference precedence: request references, then the per-prompt cache, then the manifest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveReference, TransformError } from '../src/transforms/index.js';

const manifestQuantiles = { '0.5': 0.1, '0.85': 0.4 };

test('request references win, at the requested quantile', () => {
  assert.deepEqual(resolveReference('harmless', { requestRewards: [0.2, -1.3, 0.9, 2.4, 0.4], promptCache: 9, manifestQuantiles }), { reference: 1.5, source: 'request' });
  assert.deepEqual(resolveReference('harmless', { requestRewards: [1, 2, 3] }, 0.5), { reference: 2, source: 'request' });
});

test('then the per-prompt cache, then the manifest statistic for that quantile', () => {
  assert.deepEqual(resolveReference('h', { requestRewards: [], promptCache: -0.7, manifestQuantiles }), { reference: -0.7, source: 'prompt_cache' });
  assert.deepEqual(resolveReference('h', { manifestQuantiles }), { reference: 0.4, source: 'manifest' });
  assert.deepEqual(resolveReference('h', { manifestQuantiles }, 0.5), { reference: 0.1, source: 'manifest' });
  assert.deepEqual(resolveReference('h', { manifestQuantiles: { '0.850': 0.3 } }), { reference: 0.3, source: 'manifest' });
});

test('nothing usable is a 400 naming the objective and what to send', () => {
  assert.throws(
    () => resolveReference('helpful', { manifestQuantiles }, 0.9),
    (err: unknown) => err instanceof TransformError && err.code === 'missing_parameter' && /objective helpful has no LSC reference.*quantiles\["0.9"\]/.test(err.message),
  );
  assert.throws(() => resolveReference('helpful', {}), TransformError);
  assert.throws(() => resolveReference('h', { requestRewards: [1, Number.NaN] }), /finite/);
  assert.throws(() => resolveReference('h', { promptCache: Infinity }), /cached reference of objective h/);
});
