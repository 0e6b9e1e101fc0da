// Large requests are tokenized on a worker thread; the result must be exactly the inline one.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { POOL_MIN_ITEMS } from '../src/scoring/tokenizer-pool.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

describe('tokenizer worker pool', () => {
  const root = tempModelsRoot();
  let pooled: Service;
  let inline: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 48 });
    pooled = await createService({ modelsRoot: root, watch: false, cacheSize: 0, tokenizerThreads: 1 });
    inline = await createService({ modelsRoot: root, watch: false, cacheSize: 0, tokenizerThreads: 0 });
  });
  after(async () => {
    await pooled.close();
    await inline.close();
  });

  const items = Array.from({ length: POOL_MIN_ITEMS * 2 }, (_, i) => ({
    prompt: `Question ${i}: ${'why '.repeat(2 * i)}?`,
    response: `Because ${i}.`,
  }));

  test('a large request scores identically on the pool and inline, truncation included', async () => {
    const [a, b] = await Promise.all(
      [pooled, inline].map((s) => s.app.inject({ method: 'POST', url: '/v1/score', payload: { items } })),
    );
    assert.equal(a!.statusCode, 200, a!.body);
    assert.deepEqual(a!.json(), b!.json());
    assert.ok(a!.json<{ results: { truncated: boolean }[] }>().results.some((r) => r.truncated), 'some items were truncated');
  });

  test('a bad item inside a large request is a 400 naming its index', async () => {
    const bad = [...items, { messages: [{ role: 'user', content: 'no answer' }] }];
    const reply = await pooled.app.inject({ method: 'POST', url: '/v1/score', payload: { items: bad } });
    assert.equal(reply.statusCode, 400);
    assert.match(reply.json<{ error: { message: string } }>().error.message, new RegExp(`items\\[${items.length}\\]`));
  });
});
