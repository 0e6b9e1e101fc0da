// Issue 12: an inference thread holds the batch it runs and the next one, so the model goes from
// one batch to the next without waiting for the main thread to receive the first's rewards and
// send the second (ModelVersion's BATCHES_PER_THREADED_SESSION). Checked on the session itself
// (two runs sent at once: the second waits on the thread and says how long, and scores as it does
// alone) and through the server, where /metrics polled during concurrent requests shows two
// batches handed to one instance at once, and only one with the session on the main thread (the
// control that shows the check can fail).
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readModelFolder } from '../src/model/model-folder.js';
import { ThreadedRewardSession } from '../src/model/session-thread.js';
import { createService } from '../src/service.js';
import { REPO_ROOT, tempModelsRoot } from './helpers/model-fixtures.js';

const MODEL_DIR = join(REPO_ROOT, 'models/harmless/1');

test('a thread session: a run sent while another runs waits behind it, says so, and scores as alone', async () => {
  const spec = readModelFolder(MODEL_DIR);
  const session = await ThreadedRewardSession.create(join(MODEL_DIR, 'model.onnx'), spec.padId, spec.paddingSide, { device: 'cpu', intraOpThreads: 1 });
  try {
    // A long batch first, so that the second is sure to arrive while it runs.
    const long = Array.from({ length: 32 }, (_, b) => Array.from({ length: 256 }, (_, t) => 5 + ((b * 31 + t * 7) % 4000)));
    const short = [[5, 6, 7, 8, 9], [10, 11, 12]];
    const alone = await session.run(short);
    assert.ok((alone.waitSeconds ?? 0) < 0.02, `a run sent to an idle thread starts at once (waited ${alone.waitSeconds} s)`);
    const sent = performance.now();
    const firstDone = session.run(long).then((out) => ({ out, ms: performance.now() - sent }));
    const [first, second] = await Promise.all([firstDone, session.run(short)]);
    assert.equal(first.out.rewards.length, 32);
    assert.ok((second.waitSeconds ?? 0) * 1000 > 0.5 * first.ms, `the second waited ${second.waitSeconds} s behind a run of ${first.ms} ms`);
    assert.deepEqual(second.rewards.map((r) => [...r]), alone.rewards.map((r) => [...r]));
  } finally {
    await session.release();
  }
});

describe('the server hands an inference thread its next batch while one runs', () => {
  const gauge = (metrics: string, name: string): number =>
    Number(metrics.split('\n').find((l) => l.startsWith(`${name}{`))?.split(' ').pop() ?? 0);

  /** The most batches handed to the model at once while 24 single-item requests are scored. */
  async function mostBatchesHanded(inferenceThread: boolean): Promise<{ most: number; rewards: number[] }> {
    const root = tempModelsRoot();
    cpSync(join(REPO_ROOT, 'models/harmless'), join(root, 'harmless'), { recursive: true });
    // One row per batch and long items, so there are many batches and each takes a while.
    const service = await createService({ modelsRoot: root, cacheSize: 0, watch: false, inferenceThread, calibrateBatching: false, maxBatchSize: 1, intraOpThreads: 1 });
    try {
      const items = Array.from({ length: 24 }, (_, i) => ({ prompt: `Question ${i}: ${'why is the sky blue at noon and red at dusk? '.repeat(12)}`, response: `Answer ${i}.` }));
      let done = false;
      let most = 0;
      const poll = (async () => {
        while (!done) {
          const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
          most = Math.max(most, gauge(metrics, 'rmserve_batches_running'));
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const replies = await Promise.all(items.map((item) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } })));
      done = true;
      await poll;
      for (const reply of replies) assert.equal(reply.statusCode, 200, reply.body);
      return { most, rewards: replies.map((r) => (r.json() as { results: { reward: number }[] }).results[0]!.reward) };
    } finally {
      await service.close();
    }
  }

  test('two batches at once on one thread instance; one with the session on the main thread', async () => {
    const threaded = await mostBatchesHanded(true);
    const inline = await mostBatchesHanded(false);
    assert.equal(threaded.most, 2);
    assert.equal(inline.most, 1);
    for (const [i, reward] of threaded.rewards.entries()) assert.ok(Math.abs(reward - (inline.rewards[i] as number)) < 1e-4, `item ${i}: ${reward} vs ${inline.rewards[i]}`);
  });
});
