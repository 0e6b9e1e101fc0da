// Cross-request batching through the real HTTP app: many concurrent single-item requests run in
// few ONNX batches, and every reply equals the same item scored alone (left and right padding).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { readFileSync } from 'node:fs';
import { createService, type Service } from '../src/service.js';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { HH_CHAT_TEMPLATE } from '../src/model/format.js';
import { Template } from '@huggingface/jinja';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, tokenizerPaths, writeBowModel } from './helpers/model-fixtures.js';

const CONCURRENCY = 64;

function itemsOfVaryingLength(n: number): { prompt: string; response: string }[] {
  const words = 'the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial kings'.split(' ');
  return Array.from({ length: n }, (_, i) => ({
    prompt: `Question ${i}: ${words.slice(0, 1 + (i % 13)).join(' ')}?`,
    response: words.slice(i % 5, 5 + ((i * 7) % 11)).join(' ') + '.',
  }));
}

for (const paddingSide of ['left', 'right'] as const) {
  describe(`dynamic batching, ${paddingSide}-padded model`, () => {
    let service: Service;
    let weights: BowModelWeights;
    const root = tempModelsRoot();
    before(async () => {
      // position_ids as an input: the server must derive them correctly for its padding side.
      weights = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', paddingSide, positionIdsInput: true, seed: paddingSide === 'left' ? 11 : 12 });
      service = await createService({ modelsRoot: root, cacheSize: 0, maxWaitMs: 20, maxBatchSize: 64 });
    });
    after(() => service.close());

    test(`${CONCURRENCY} concurrent single-item requests share few ONNX runs and match solo scores`, async () => {
      const items = itemsOfVaryingLength(CONCURRENCY);
      const runsBefore = metricValue(await metricsText(service), 'rmserve_batch_size_count', { model: 'rm', version: '1' }, 0);
      const replies = await Promise.all(
        items.map((item) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } })),
      );
      const runs = metricValue(await metricsText(service), 'rmserve_batch_size_count', { model: 'rm', version: '1' }) - runsBefore;
      assert.ok(runs <= CONCURRENCY / 8, `${CONCURRENCY} requests took ${runs} ONNX runs`);
      const paddingObserved = metricValue(await metricsText(service), 'rmserve_padding_ratio_sum', { model: 'rm', version: '1' });
      assert.ok(paddingObserved > 0, 'items of different lengths were padded together');

      // Solo scores: the same items one at a time (each its own batch), and the model's maths in JS.
      const tokenizer = new Tokenizer(JSON.parse(readFileSync(tokenizerPaths('gpt2').tokenizer, 'utf8')), {});
      const template = new Template(HH_CHAT_TEMPLATE);
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.statusCode, 200, reply.body);
        const body = reply.json<{ model_versions: Record<string, string>; results: { reward: number; objectives: { rm: { raw: number } } }[] }>();
        assert.deepEqual(body.model_versions, { rm: '1' });
        const solo = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [items[i]] } });
        const soloRaw = solo.json<{ results: { objectives: { rm: { raw: number } } }[] }>().results[0]!.objectives.rm.raw;
        const batchedRaw = body.results[0]!.objectives.rm.raw;
        assert.ok(Math.abs(batchedRaw - soloRaw) < 1e-4, `item ${i}: batched ${batchedRaw} vs solo ${soloRaw}`);
        const text = template.render({
          messages: [
            { role: 'user', content: items[i]!.prompt },
            { role: 'assistant', content: items[i]!.response },
          ],
          add_generation_prompt: false,
        });
        const expected = bowScore(weights, tokenizer.encode(text).ids)[0]!;
        assert.ok(Math.abs(batchedRaw - expected) < 1e-4, `item ${i}: server ${batchedRaw} vs reference ${expected}`);
        assert.equal(body.results[0]!.reward, batchedRaw, 'one objective, no transform: reward is the raw score');
      }
    });
  });
}

async function metricsText(service: Service): Promise<string> {
  return (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
}
