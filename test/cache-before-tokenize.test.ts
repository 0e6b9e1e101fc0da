// Issue 12: the reward cache is keyed by the item itself (with the version and truncation side),
// so a hit skips tokenization; the scorer reports where a request's time went.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Tokenizer } from '@huggingface/tokenizers';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

describe('cache hits skip tokenization', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 32, seed: 2 });
    service = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 0 });
  });
  after(() => service.close());

  test('a repeated item is answered from the cache without reaching the tokenizer; side and shape are part of the key', async () => {
    const tokenizer = service.registry.get('rm').spec.tokenizer.tokenizer;
    let calls = 0;
    const encode = tokenizer.encode.bind(tokenizer);
    tokenizer.encode = ((...args: Parameters<Tokenizer['encode']>) => {
      calls++;
      return encode(...args);
    }) as Tokenizer['encode'];
    try {
      const item = { prompt: 'A long question '.repeat(10), response: 'and its answer.' };
      const first = await service.scorer.score({ items: [item] });
      assert.equal(first.items[0]?.cached, false);
      assert.ok(calls > 0);
      assert.ok(first.items[0]!.tokens > 0 && first.items[0]!.tokens <= 32);
      assert.ok(first.timing.inferenceSeconds > 0 && first.timing.tokenizationSeconds > 0);
      const before = calls;
      const again = await service.scorer.score({ items: [item] });
      assert.equal(calls, before, 'no tokenization for a hit');
      assert.deepEqual(again.items[0], { ...first.items[0], cached: true });
      assert.equal(again.timing.inferenceSeconds, 0);
      // Another truncation side is another entry (the tokens differ), and so is the same pair as messages.
      const right = await service.scorer.score({ items: [item], truncation: 'right' });
      assert.equal(right.items[0]?.cached, false);
      assert.ok(calls > before);
      const asMessages = await service.scorer.score({ items: [{ messages: [{ role: 'user', content: item.prompt }, { role: 'assistant', content: item.response }] }] });
      assert.equal(asMessages.items[0]?.cached, false);
      assert.equal(asMessages.items[0]?.objectives.rm?.raw, first.items[0]?.objectives.rm?.raw);
    } finally {
      tokenizer.encode = encode;
    }
  });
});

describe('timing headers', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 32, seed: 2 });
    service = await createService({ modelsRoot: root, watch: false });
  });
  after(() => service.close());

  test('/v1/score sends x-tokenization-time, x-queue-time, x-inference-time and x-total-time in ms, as TEI does', async () => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'Hi', response: 'Hello there.' }] } });
    assert.equal(reply.statusCode, 200);
    const header = (name: string): number => Number(reply.headers[name]);
    for (const name of ['x-tokenization-time', 'x-queue-time', 'x-inference-time', 'x-total-time']) {
      assert.ok(Number.isFinite(header(name)) && header(name) >= 0, `${name}: ${reply.headers[name]}`);
    }
    assert.ok(header('x-inference-time') > 0);
    assert.ok(header('x-total-time') >= header('x-inference-time') + header('x-queue-time'));
  });
});

describe('truncate: false', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 16, seed: 2 });
    service = await createService({ modelsRoot: root, watch: false });
  });
  after(() => service.close());

  test('an item longer than max length is 413 instead of cut, even when it is cached; short ones score', async () => {
    const long = { prompt: 'word '.repeat(40), response: 'ok' };
    const post = (body: object) => service.app.inject({ method: 'POST', url: '/v1/score', payload: body });
    const cut = await post({ items: [long] });
    assert.equal(cut.statusCode, 200);
    assert.equal(cut.json<{ results: { truncated: boolean }[] }>().results[0]?.truncated, true);
    const refused = await post({ items: [{ prompt: 'hi', response: 'yo' }, long], truncate: false });
    assert.equal(refused.statusCode, 413, refused.body);
    assert.match(refused.json<{ error: { code: string; message: string } }>().error.message, /items\[1\] is longer than model rm's 16 tokens/);
    assert.equal((await post({ items: [{ prompt: 'hi', response: 'yo' }], truncate: false })).statusCode, 200);
  });
});
