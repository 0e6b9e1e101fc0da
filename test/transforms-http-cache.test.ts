// Transforms run after the reward cache: the same items requested with different transforms (and
// the same reference responses requested again) reach the ONNX sessions once. Read from /metrics,
// the counters an operator would watch.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ReferenceCache } from '../src/scoring/references.js';
import { createService, type Service } from '../src/service.js';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface ScoreReply {
  results: { reward?: number; cached: boolean; objectives: Record<string, { raw: number; transformed: number; reference_source?: string }> }[];
}

const MODELS = { 'duo@1': ['helpful', 'harmless'], 'safety@3': ['safe'] } as const;

describe('transforms reuse cached raw scores', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    for (const [id, labels] of Object.entries(MODELS)) {
      const [name, version] = id.split('@') as [string, string];
      const dir = join(root, name, version);
      const reference = Object.fromEntries(labels.map((l) => [l, { quantiles: { '0.85': 0.3 }, mean: 0, std: 1, n: 10 }]));
      writeBowModel(dir, { tokenizer: 'gpt2', labels: [...labels], seed: name.length, manifestFields: { reference } });
    }
    service = await createService({ modelsRoot: root, maxWaitMs: 5 });
  });
  after(() => service.close());

  const counters = async (): Promise<Record<string, number>> => {
    const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    const out: Record<string, number> = {};
    for (const id of Object.keys(MODELS)) {
      const [name, version] = id.split('@') as [string, string];
      out[`${id} runs`] = metricValue(text, 'rmserve_batch_size_count', { model: name, version }, 0);
      out[`${id} rows`] = metricValue(text, 'rmserve_batch_size_sum', { model: name, version }, 0);
      out[`${name} hits`] = metricValue(text, 'rmserve_cache_hits_total', { model: name }, 0);
      out[`${name} misses`] = metricValue(text, 'rmserve_cache_misses_total', { model: name }, 0);
    }
    return out;
  };
  const score = async (payload: object): Promise<ScoreReply> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<ScoreReply>();
  };

  const items = [
    { prompt: 'How do I boil an egg?', response: 'Put it in boiling water for eight minutes.' },
    { prompt: 'How do I boil an egg?', response: 'Ask someone else.' },
    { prompt: 'Is it safe to eat raw chicken?', response: 'No: cook it through to avoid salmonella.' },
  ];

  test('three transforms over the same items: one inference, then cache hits only', async () => {
    const start = await counters();
    const first = await score({ items, transform: 'none' });
    const afterFirst = await counters();
    for (const id of Object.keys(MODELS)) {
      const name = id.split('@')[0]!;
      assert.ok(afterFirst[`${id} runs`]! > start[`${id} runs`]!, `${id} ran`);
      assert.equal(afterFirst[`${id} rows`]! - start[`${id} rows`]!, items.length, `${id}: every item inferred once`);
      assert.equal(afterFirst[`${name} misses`]! - start[`${name} misses`]!, items.length);
    }
    assert.ok(first.results.every((r) => !r.cached));

    const others = [
      await score({ items, transform: 'sigmoid' }),
      await score({ items, transform: 'lsc', aggregate: 'conjunction' }),
      await score({ items, transform: 'znorm', aggregate: 'min' }),
    ];
    const end = await counters();
    for (const id of Object.keys(MODELS)) {
      const name = id.split('@')[0]!;
      assert.equal(end[`${id} runs`], afterFirst[`${id} runs`], `${id}: no ONNX run after the first request`);
      assert.equal(end[`${id} rows`], afterFirst[`${id} rows`]);
      assert.equal(end[`${name} misses`], afterFirst[`${name} misses`]);
      assert.equal(end[`${name} hits`]! - afterFirst[`${name} hits`]!, 3 * items.length, `${name}: every item of the three requests hit`);
    }
    for (const reply of others) {
      reply.results.forEach((r, i) => {
        assert.ok(r.cached, `item ${i} answered from the cache`);
        for (const [name, o] of Object.entries(r.objectives)) assert.equal(o.raw, first.results[i]!.objectives[name]!.raw, `${name} raw`);
      });
    }
    // The transforms really differ: the cache stores raw rewards, not a transformed value.
    assert.notEqual(others[0]!.results[0]!.objectives.safe!.transformed, others[1]!.results[0]!.objectives.safe!.transformed);
  });

  test('reference responses go through the same cache: repeated references cost no inference', async () => {
    const reference = { responses: ['Eight to ten minutes in boiling water.', 'Boil it.', 'Use a pan.'] };
    const start = await counters();
    const first = await score({ items: items.slice(0, 2), transform: 'lsc', reference });
    const mid = await counters();
    // Two items of one prompt share its three reference pairs: scored once, not per item.
    for (const id of Object.keys(MODELS)) assert.equal(mid[`${id} rows`]! - start[`${id} rows`]!, 3, `${id}: three reference pairs inferred`);
    assert.equal(first.results[0]!.objectives.helpful!.reference_source, 'request');
    await score({ items: items.slice(0, 2), transform: 'lsc', reference, reference_quantile: 0.5 });
    await score({ items: [items[0]!], transform: 'sigmoid', reference });
    const end = await counters();
    for (const id of Object.keys(MODELS)) assert.equal(end[`${id} runs`], mid[`${id} runs`], `${id}: no ONNX run for repeated references`);
  });
});

describe('per-prompt reference cache', () => {
  test('is bounded (LRU) and can be turned off', () => {
    const cache = new ReferenceCache(2);
    const r = [Float32Array.of(1)];
    cache.set('m@1', 'a', r);
    cache.set('m@1', 'b', r);
    assert.equal(cache.get('m@1', 'a'), r); // a is now the most recently used
    cache.set('m@1', 'c', r);
    assert.equal(cache.size, 2);
    assert.equal(cache.get('m@1', 'b'), undefined, 'the least recently used prompt went');
    assert.equal(cache.get('m@2', 'a'), undefined, 'another version never sees it');
    const off = new ReferenceCache(0);
    off.set('m@1', 'a', r);
    assert.equal(off.get('m@1', 'a'), undefined);
  });

  test('a new model version does not inherit the old version\'s per-prompt references', async () => {
    const root = tempModelsRoot();
    const write = (version: string, seed: number): void => {
      const dir = join(root, 'rm', version);
      const reference = { helpful: { quantiles: { '0.85': 0.25 }, mean: 0, std: 1, n: 10 } };
      writeBowModel(dir, { tokenizer: 'gpt2', labels: ['helpful'], seed, manifestFields: { reference } });
    };
    write('1', 31);
    const service = await createService({ modelsRoot: root, watch: false });
    try {
      const item = { prompt: 'Pick a number.', response: 'Seven.' };
      const ask = async (payload: object): Promise<{ model_versions: Record<string, string>; results: { objectives: { helpful: { reference_source: string } } }[] }> => {
        const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload });
        assert.equal(reply.statusCode, 200, reply.body);
        return reply.json();
      };
      await ask({ items: [{ ...item, reference: { responses: ['Three.', 'Forty-two.'] } }], transform: 'lsc' });
      assert.equal((await ask({ items: [item], transform: 'lsc' })).results[0]!.objectives.helpful.reference_source, 'prompt_cache');
      write('2', 32);
      await service.registry.load('rm', '2');
      const after = await ask({ items: [item], transform: 'lsc' });
      assert.deepEqual(after.model_versions, { rm: '2' });
      assert.equal(after.results[0]!.objectives.helpful.reference_source, 'manifest');
    } finally {
      await service.close();
    }
  });
});
