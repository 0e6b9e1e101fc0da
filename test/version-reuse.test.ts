// Issue 14, items 2, 3 and 5: a version name written again with other weights must never be
// answered from the old model's cache or tokenizer; deleting the serving version's folder must
// not downgrade it nor break large requests; overload is refused before tokenization.
import assert from 'node:assert/strict';
import { rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { POOL_MIN_ITEMS } from '../src/scoring/tokenizer-pool.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface ScoreReply {
  model_versions: Record<string, string>;
  results: { cached: boolean; objectives: Record<string, { raw: number }> }[];
}

const known = { prompt: 'How do I bake bread at home?', response: 'Mix flour, water, salt and yeast, let it rise, then bake it hot.' };
/** A request large enough for the tokenizer worker pool, with the known item first. */
const large = [known, ...Array.from({ length: POOL_MIN_ITEMS }, (_, i) => ({ prompt: `Question ${i}?`, response: `Answer number ${i}.` }))];

async function score(service: Service, items: object[]): Promise<ScoreReply> {
  const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });
  assert.equal(reply.statusCode, 200, reply.body);
  return reply.json<ScoreReply>();
}

const rawOf = (reply: ScoreReply, i = 0): number => (reply.results[i]?.objectives.rm?.raw as number);

/** The known item's score from a fresh server on `root` (the truth for what is on disk now). */
async function freshScore(root: string): Promise<number> {
  const fresh = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 0 });
  try {
    return rawOf(await score(fresh, [known]));
  } finally {
    await fresh.close();
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('a version name written again with other weights', () => {
  const services: Service[] = [];
  after(async () => {
    for (const s of services) await s.close();
  });

  test('without the watch: inline and pooled requests agree on the loaded model, and a reload never answers from the old cache', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    const service = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 1 });
    services.push(service);
    const before = rawOf(await score(service, [known]));

    // The folder is replaced by another model (another tokenizer too) before any pooled request.
    rmSync(join(root, 'rm', '1'), { recursive: true });
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'llama2', seed: 2 });
    const now = await freshScore(root);
    assert.notEqual(now, before, 'the two fixtures score the item differently');

    // Still the model loaded at start, consistently, inline and on the worker pool.
    const pooled = await score(service, large);
    assert.equal(rawOf(pooled), before);

    // An explicit load of "1" reads the new folder: no reply may come from the old model's cache.
    await service.registry.load('rm', '1');
    const alone = await score(service, [known]);
    assert.equal(alone.results[0]?.cached, false, 'a reloaded version starts with an empty cache');
    assert.equal(rawOf(alone), now);
    assert.equal(rawOf(await score(service, large)), now, 'the worker pool tokenizes with the new model');
  });

  test('with the watch: the rewritten folder is loaded, and every reply is the new model’s', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    const service = await createService({ modelsRoot: root, watch: true, watchSettleMs: 100, watchPollMs: 100, tokenizerThreads: 1 });
    services.push(service);
    const before = rawOf(await score(service, [known]));
    assert.equal(rawOf(await score(service, large)), before);
    const firstKey = service.registry.get('rm').key;

    rmSync(join(root, 'rm', '1'), { recursive: true });
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'llama2', seed: 2 });
    const now = await freshScore(root);
    await until(() => service.registry.get('rm').key !== firstKey, 'the watch to reload rm@1');

    const alone = await score(service, [known]);
    assert.equal(alone.results[0]?.cached, false);
    assert.equal(rawOf(alone), now);
    assert.equal(rawOf(await score(service, large)), now);
  });
});

describe('deleting the serving version', () => {
  test('it keeps serving from memory, large requests included; no downgrade to an older version', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(join(root, 'rm', '2'), { tokenizer: 'gpt2', seed: 2 });
    const logs: string[] = [];
    const service = await createService(
      { modelsRoot: root, watch: true, watchSettleMs: 50, watchPollMs: 50, tokenizerThreads: 1 },
      { log: (m) => logs.push(m) },
    );
    try {
      assert.equal(service.registry.get('rm').version, '2');
      const before = await score(service, [known]);
      rmSync(join(root, 'rm', '2'), { recursive: true });
      await until(() => logs.some((m) => m.includes('folder of rm@2 is gone')), 'the watch to notice');
      await new Promise((resolve) => setTimeout(resolve, 300)); // several more scans
      assert.equal(service.registry.get('rm').version, '2');
      const pooled = await score(service, large);
      assert.equal(pooled.model_versions.rm, '2');
      assert.equal(rawOf(pooled), rawOf(before));
    } finally {
      await service.close();
    }
  });
});

describe('overload is refused before tokenization', () => {
  test('with a 64-item queue, 48 concurrent 17-item requests: at most 3 fit, the rest get 429 with Retry-After', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    const service = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 1, maxQueueItems: 64, cacheSize: 0 });
    try {
      const replies = await Promise.all(
        Array.from({ length: 48 }, (_, r) =>
          service.app.inject({
            method: 'POST',
            url: '/v1/score',
            payload: { items: large.map((item) => ({ ...item, response: `${item.response} (${r})` })) },
          }),
        ),
      );
      const statuses = replies.map((r) => r.statusCode);
      const ok = statuses.filter((s) => s === 200).length;
      const refused = replies.filter((r) => r.statusCode === 429);
      assert.equal(ok + refused.length, 48, `statuses: ${statuses.join(',')}`);
      assert.ok(ok >= 1 && ok <= 3, `${ok} requests were admitted`);
      for (const r of refused) assert.ok(Number(r.headers['retry-after']) >= 1);
    } finally {
      await service.close();
    }
  });

  test('a request larger than the whole queue is 413, not a 429 to retry forever', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    const service = await createService({ modelsRoot: root, watch: false, maxQueueItems: 8 });
    try {
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: large.slice(0, 9) } });
      assert.equal(reply.statusCode, 413, reply.body);
      assert.match(reply.json<{ error: { message: string } }>().error.message, /--max-queue/);
    } finally {
      await service.close();
    }
  });
});

describe('model folders linked from outside the models root', () => {
  test('a symlinked flat export outside the root is not served at startup (the admin API refuses it too)', async () => {
    const root = tempModelsRoot();
    const outside = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(join(outside, 'flat'), { tokenizer: 'gpt2', seed: 2, manifest: false });
    symlinkSync(join(outside, 'flat'), join(root, 'linked'));
    const service = await createService({ modelsRoot: root, watch: false });
    try {
      assert.deepEqual(service.registry.names(), ['rm']);
      assert.deepEqual(service.registry.versions('linked'), []);
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'linked', items: [known] } });
      assert.equal(reply.statusCode, 404, reply.body);
    } finally {
      await service.close();
    }
  });
});
