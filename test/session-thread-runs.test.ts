// A session on an inference thread times its runs where they run (ThreadedRewardSession's
// runSeconds), so x-inference-time and rmserve_inference_duration_seconds hold the ONNX run and
// not the hand-offs to the thread and back; and runs sent at once answer in order, each with the
// rewards it gets alone.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { readModelFolder } from '../src/model/model-folder.js';
import { ThreadedRewardSession } from '../src/model/session-thread.js';
import { createService } from '../src/service.js';
import { REPO_ROOT, tempModelsRoot, writeTransformerModel } from './helpers/model-fixtures.js';

const MODEL_DIR = join(REPO_ROOT, 'models/harmless/1');

test('a thread session reports each run in seconds, without the hand-offs, and answers runs sent at once in order', async () => {
  const spec = readModelFolder(MODEL_DIR);
  const session = await ThreadedRewardSession.create(join(MODEL_DIR, 'model.onnx'), spec.padId, spec.paddingSide, { device: 'cpu', intraOpThreads: 1 });
  try {
    const long = Array.from({ length: 32 }, (_, b) => Array.from({ length: 256 }, (_, t) => 5 + ((b * 31 + t * 7) % 4000)));
    const short = [[5, 6, 7, 8, 9], [10, 11, 12]];
    const sent = performance.now();
    const alone = await session.run(long);
    const wallSeconds = (performance.now() - sent) / 1000;
    assert.ok(alone.runSeconds !== undefined && alone.runSeconds > 0.3 * wallSeconds && alone.runSeconds <= wallSeconds, `a run of ${alone.runSeconds} s in ${wallSeconds} s`);
    const shortAlone = await session.run(short);
    const [first, second] = await Promise.all([session.run(long), session.run(short)]);
    assert.deepEqual(first.rewards.map((r) => [...r]), alone.rewards.map((r) => [...r]));
    assert.deepEqual(second.rewards.map((r) => [...r]), shortAlone.rewards.map((r) => [...r]));
  } finally {
    await session.release();
  }
});

test('x-inference-time is the run on the inference thread: at most x-total-time less the queue', async () => {
  const root = tempModelsRoot();
  writeTransformerModel(join(root, 'rm', '1'), 256);
  const service = await createService({ modelsRoot: root, cacheSize: 0, watch: false, calibrateBatching: false });
  try {
    const items = Array.from({ length: 8 }, (_, i) => ({ prompt: `Question ${i}: ${'why is the sea salty? '.repeat(30)}`, response: `Answer ${i}.` }));
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });
    assert.equal(reply.statusCode, 200, reply.body);
    const [queue, inference, total] = ['x-queue-time', 'x-inference-time', 'x-total-time'].map((h) => Number(reply.headers[h]));
    assert.ok(inference > 0 && (queue as number) + (inference as number) <= (total as number), `queue ${queue} + inference ${inference} ms within total ${total} ms`);
    const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    const sum = Number(metrics.split('\n').find((l) => l.startsWith('rmserve_inference_duration_seconds_sum{'))?.split(' ').pop());
    // The request's one batch (the load's self-check runs are not observed).
    assert.ok(Math.abs(sum * 1000 - (inference as number)) < 0.01, `metric ${sum * 1000} ms, header ${inference} ms`);
  } finally {
    await service.close();
  }
});
