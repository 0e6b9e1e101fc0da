// What happens to the replaced version: items queued on it when the switch happens still run on
// it, a lease (ModelVersion.acquire) keeps its session open past the drain for as long as it is
// held, and once released it takes no more work.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RmserveMetrics } from '../src/metrics.js';
import { ModelRegistry } from '../src/scoring/registry.js';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const root = tempModelsRoot();
const weights = new Map<string, BowModelWeights>();
let registry: ModelRegistry;

before(async () => {
  for (const v of ['1', '2', '3']) weights.set(v, writeBowModel(join(root, 'rm', v), { tokenizer: 'gpt2', seed: Number(v) }));
  registry = new ModelRegistry(root, {
    metrics: new RmserveMetrics({ defaultMetrics: false }),
    session: { device: 'cpu' },
    // Items wait up to 300 ms for company, so they are still queued when the switch happens.
    batcher: { maxBatchSize: 64, maxBatchTokens: 32768, maxWaitMs: 300, maxQueueItems: 1000 },
  });
  await registry.load('rm', '1');
});
after(async () => {
  await registry.close();
  rmSync(root, { recursive: true, force: true });
});

const ids = [464, 2068, 7586, 21831]; // any GPT-2 token ids

test('items queued on the old version when the switch happens are scored by the old version', async () => {
  const old = registry.get('rm');
  const queued = old.batcher.submit(ids, 'k1');
  assert.equal(old.batcher.depth, 1);
  await registry.load('rm', '2');
  assert.equal(registry.get('rm').version, '2');
  const reward = await queued;
  assert.ok(Math.abs(reward[0]! - bowScore(weights.get(old.version)!, ids)[0]!) < 1e-5);
  await old.release();
  await assert.rejects(old.batcher.submit(ids, 'k2'), /unloading/, 'a released version takes no more work');
});

test('a lease keeps the replaced version open until it is returned', async () => {
  const old = registry.get('rm');
  const lease = old.acquire();
  await registry.load('rm', '3');
  let released = false;
  const releasing = old.release().then(() => (released = true));
  await new Promise((resolve) => setTimeout(resolve, 500)); // past the drain and the grace window
  assert.equal(released, false, 'still open while leased');
  const reward = await old.batcher.submit(ids, 'k3');
  assert.ok(Math.abs(reward[0]! - bowScore(weights.get(old.version)!, ids)[0]!) < 1e-5, 'the leased session still scores');
  lease();
  await releasing;
  assert.equal(released, true);
});
