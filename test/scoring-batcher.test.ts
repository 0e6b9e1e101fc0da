// DynamicBatcher on its own, with a recording runner in place of ONNX Runtime.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DynamicBatcher, type BatcherOptions } from '../src/scoring/batcher.js';
import { ScoringError } from '../src/scoring/errors.js';
import { tokenKey } from '../src/scoring/reward-cache.js';

function recordingBatcher(options: Partial<BatcherOptions> = {}) {
  const runs: number[][][] = [];
  let release: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();
  const batcher = new DynamicBatcher(
    async (rows) => {
      runs.push(rows.map((r) => [...r]));
      await gate;
      return { rewards: rows.map((r) => Float32Array.of(r.reduce((a, b) => a + b, 0))) };
    },
    { maxBatchSize: 8, maxBatchTokens: 1000, maxWaitMs: 5, maxQueueItems: 100, ...options },
  );
  return {
    batcher,
    runs,
    hold: () => { gate = new Promise((resolve) => { release = resolve; }); },
    release: () => release(),
  };
}

const seq = (n: number, start = 1): number[] => Array.from({ length: n }, (_, i) => start + i);
const submit = (b: DynamicBatcher, ids: number[], signal?: AbortSignal) => b.submit(ids, tokenKey(ids), signal);

test('items submitted together run as one batch and each gets its own result', async () => {
  const { batcher, runs } = recordingBatcher();
  const results = await Promise.all([seq(3), seq(5), seq(2)].map((ids) => submit(batcher, ids)));
  assert.equal(runs.length, 1);
  assert.deepEqual(results.map((r) => r[0]), [6, 15, 3]);
});

test('identical items share one row', async () => {
  const { batcher, runs } = recordingBatcher();
  const results = await Promise.all([seq(4), seq(4), seq(4), seq(2)].map((ids) => submit(batcher, ids)));
  assert.equal(runs[0]!.length, 2);
  assert.deepEqual(results.map((r) => r[0]), [10, 10, 10, 3]);
});

test('the padded-token budget and max batch size split batches, grouping similar lengths', async () => {
  const { batcher, runs, hold, release } = recordingBatcher({ maxBatchTokens: 40, maxBatchSize: 3, maxWaitMs: 0 });
  hold();
  const busy = submit(batcher, seq(1, 5000)); // occupies the session so the rest queue up together
  await new Promise((resolve) => setImmediate(resolve));
  const lengths = [10, 2, 10, 3, 9, 2, 10];
  const pending = lengths.map((n, i) => submit(batcher, seq(n, i * 100)));
  release();
  await Promise.all([busy, ...pending]);
  runs.shift();
  for (const rows of runs) {
    const width = Math.max(...rows.map((r) => r.length));
    assert.ok(rows.length <= 3 && width * rows.length <= 40, `batch ${rows.map((r) => r.length)} within budget`);
  }
  // Anchored on the oldest item (10 tokens), the first batch takes the other long ones; then the oldest short one anchors the next and takes its like.
  assert.deepEqual(runs.map((rows) => rows.map((r) => r.length)), [[10, 10, 10], [2, 2, 3], [9]]);
  assert.equal(runs.flat().length, lengths.length);
});

test('a cancelled request leaves the queue before its batch starts', async () => {
  const { batcher, runs, hold, release } = recordingBatcher({ maxWaitMs: 0 });
  hold();
  const first = submit(batcher, seq(2)); // starts running, held by the gate
  await new Promise((resolve) => setImmediate(resolve));
  const controller = new AbortController();
  const cancelled = submit(batcher, seq(3), controller.signal);
  const kept = submit(batcher, seq(4));
  assert.equal(batcher.depth, 2);
  controller.abort();
  assert.equal(batcher.depth, 1);
  await assert.rejects(cancelled, (err: ScoringError) => err.code === 'cancelled');
  release();
  await Promise.all([first, kept]);
  assert.deepEqual(runs.map((rows) => rows.map((r) => r.length)), [[2], [4]]);
});

test('a full queue rejects at once with a 429 error; drain waits for queued work', async () => {
  const { batcher, hold, release } = recordingBatcher({ maxQueueItems: 2, maxWaitMs: 0 });
  hold();
  const a = submit(batcher, seq(1));
  await new Promise((resolve) => setImmediate(resolve));
  const b = submit(batcher, seq(2));
  const c = submit(batcher, seq(3));
  await assert.rejects(submit(batcher, seq(4)), (err: ScoringError) => err.statusCode === 429);
  let drained = false;
  const draining = batcher.drain().then(() => { drained = true; });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(drained, false);
  release();
  await Promise.all([a, b, c, draining]);
  assert.equal(drained, true);
});

test('a failing run rejects every item of its batch and the batcher keeps working', async () => {
  let fail = true;
  const batcher = new DynamicBatcher(
    async (rows) => {
      if (fail) throw new Error('boom');
      return { rewards: rows.map(() => Float32Array.of(1)) };
    },
    { maxBatchSize: 8, maxBatchTokens: 1000, maxWaitMs: 1, maxQueueItems: 10 },
  );
  const failed = await Promise.allSettled([submit(batcher, seq(2)), submit(batcher, seq(3))]);
  assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
  fail = false;
  assert.equal((await submit(batcher, seq(2)))[0], 1);
});

test('a closed batcher refuses new items with a retryable 503 and still finishes queued ones', async () => {
  const { batcher } = recordingBatcher({ maxWaitMs: 50 });
  const queued = submit(batcher, seq(3));
  batcher.close();
  await assert.rejects(submit(batcher, seq(2)), (err: ScoringError) => err.statusCode === 503 && err.retryAfterSeconds === 1);
  assert.equal((await queued)[0], 6);
});

test('a padding limit keeps lengths that do not fit for a later batch of their own', async () => {
  const { batcher, runs, hold, release } = recordingBatcher({ maxWaitMs: 0, maxPaddingRatio: 0.2 });
  hold();
  const busy = submit(batcher, seq(1, 9000));
  await new Promise((resolve) => setImmediate(resolve));
  const lengths = [10, 40, 11, 42, 9, 38];
  const pending = lengths.map((n, i) => submit(batcher, seq(n, i * 100)));
  release();
  await Promise.all([busy, ...pending]);
  runs.shift();
  assert.deepEqual(runs.map((rows) => rows.map((r) => r.length)), [[10, 11, 9], [40, 42, 38]]);
  for (const rows of runs) {
    const width = Math.max(...rows.map((r) => r.length));
    const real = rows.reduce((n, r) => n + r.length, 0);
    assert.ok(1 - real / (width * rows.length) <= 0.2);
  }
});

test('with several instances a burst is shared out longest first, no batch above an even share of the queue', async () => {
  const { batcher, runs, hold, release } = recordingBatcher({ maxBatchSize: 4, maxBatchTokens: 1000, maxWaitMs: 0, maxInFlight: 2 });
  hold();
  const lengths = [2, 10, 10, 10, 10, 2];
  const pending = lengths.map((n, i) => submit(batcher, seq(n, i * 100)));
  await new Promise((resolve) => setImmediate(resolve));
  // 44 tokens queued over two instances: at most 22 padded tokens each, the longest anchoring.
  assert.deepEqual(runs.map((rows) => rows.map((r) => r.length)), [[10, 10], [10]]);
  release();
  await Promise.all(pending);
  assert.equal(runs.flat().length, lengths.length);
});

test('with several instances a queue that fits one batch is still taken whole', async () => {
  const { batcher, runs } = recordingBatcher({ maxBatchSize: 8, maxBatchTokens: 1000, maxWaitMs: 0, maxInFlight: 2 });
  await Promise.all([3, 9, 4].map((n, i) => submit(batcher, seq(n, i * 100))));
  assert.deepEqual(runs.map((rows) => rows.length), [3]);
});
