// Issue 12: batch limits chosen by measured cost per row, so the same code batches wide on a GPU
// (cost per row keeps falling) and small on a CPU (it stops falling after a few rows and rises
// once a batch outgrows the caches), instead of one fixed maximum that is right for one of them.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { RmserveMetrics } from '../src/metrics.js';
import { chooseBatchLimits, type BatchMeasurement } from '../src/scoring/calibrate.js';
import { ModelRegistry } from '../src/scoring/registry.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const limits = { maxBatchSize: 64, maxBatchTokens: 32768, maxLength: 512 };
const sweep = (length: number, msPerRow: (rows: number) => number): BatchMeasurement[] =>
  [1, 2, 4, 8, 16, 32, 64].map((rows) => ({ length, rows, msPerRow: msPerRow(rows) }));

test('CPU-like costs (best at 4 rows, worse from 16 on) give small batches', () => {
  // Shaped like the d_model 256 model on the 2-core machine: 4 length-matched rows beat 64.
  const cpu = (base: number) => (rows: number) => base * (rows <= 4 ? 1 - 0.1 * Math.log2(rows) : 0.8 + 0.15 * Math.log2(rows / 4));
  const chosen = chooseBatchLimits([...sweep(64, cpu(0.5)), ...sweep(256, cpu(2))], limits);
  assert.equal(chosen.maxBatchSize, 4, 'the largest batch within 5% of the best cost per row (8 rows cost 19% more)');
  assert.equal(chosen.maxBatchTokens, 4 * 256);
});

test('the token limit comes from the length where larger batches got dearer, not from short rows that kept getting cheaper', () => {
  // Short rows: cheaper per row all the way to 64; 256-token rows: best at 8, dearer beyond.
  const falling = (rows: number) => 0.5 / rows + 0.1;
  const turning = (rows: number) => 2 * (rows <= 8 ? 1 - 0.08 * Math.log2(rows) : 0.76 + 0.12 * Math.log2(rows / 8));
  const chosen = chooseBatchLimits([...sweep(64, falling), ...sweep(256, turning)], limits);
  assert.equal(chosen.maxBatchSize, 64, 'short rows batch up to the configured rows');
  assert.equal(chosen.maxBatchTokens, 8 * 256, 'but no batch holds more tokens than the 8 long rows that were best (the old rule: 64 × 64 = 4096)');
});

test('GPU-like costs (falling all the way) keep the configured maximum', () => {
  const gpu = (base: number) => (rows: number) => base / rows + 0.001;
  const chosen = chooseBatchLimits([...sweep(64, gpu(1)), ...sweep(256, gpu(3))], limits);
  assert.deepEqual(chosen, { maxBatchSize: 64, maxBatchTokens: 64 * 256 });
});

test('nothing measured keeps the configured limits; one full-length row always fits', () => {
  assert.deepEqual(chooseBatchLimits([], limits), { maxBatchSize: 64, maxBatchTokens: 32768 });
  const flat = chooseBatchLimits([{ length: 64, rows: 1, msPerRow: 1 }, { length: 64, rows: 2, msPerRow: 5 }], limits);
  assert.equal(flat.maxBatchSize, 1);
  assert.equal(flat.maxBatchTokens, 512, 'at least max length');
});

test('a version loaded with calibration reports the limits it measured, within the configured ones', async () => {
  const root = tempModelsRoot();
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 128, seed: 1 });
  const registry = new ModelRegistry(root, {
    metrics: new RmserveMetrics({ defaultMetrics: false }),
    session: { device: 'cpu' },
    batcher: { maxBatchSize: 32, maxBatchTokens: 4096, maxWaitMs: 0, maxQueueItems: 256 },
    calibrateBatching: true,
  });
  try {
    await registry.loadAll();
    const batching = registry.statusOf('rm').serving?.batching;
    assert.equal(batching?.calibrated, true);
    assert.ok(batching!.max_batch_size >= 1 && batching!.max_batch_size <= 32, JSON.stringify(batching));
    assert.ok(batching!.max_batch_tokens >= 128 && batching!.max_batch_tokens <= 4096, JSON.stringify(batching));
    assert.ok((batching!.calibration_seconds ?? 0) > 0);
  } finally {
    await registry.close();
  }
});
