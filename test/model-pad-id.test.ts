// Issue 10: one pad-id rule (config.json pad_token_id, then the tokenizer's pad token, then EOS)
// and a load-time self-check that refuses a version whose padded batches score differently from
// single rows. Fixture graphs find padding the way transformers' classifiers do: input_ids == pad id.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createService } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const items = [
  { prompt: 'Hi', response: 'Hello.' },
  { prompt: 'Tell me about the history of the printing press in Europe, briefly.', response: 'Gutenberg built a movable-type press in Mainz around 1450, and printing spread across Europe within decades.' },
  { prompt: 'What is 2 + 2?', response: 'Four.' },
];

interface Models {
  data: { id: string; serving: { pad_id?: number; pad_id_source?: string } | null; last_error: string | null }[];
}

describe('pad id', () => {
  test('config.json pad_token_id wins over a tokenizer without a pad token, so batched rows pool at real tokens', async () => {
    const root = tempModelsRoot();
    // GPT-2's tokenizer has no pad token (EOS is 50256); the graph's pad id, from config.json, is 13.
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', padIdInGraph: 13, config: { pad_token_id: 13 }, seed: 4 });
    const service = await createService({ modelsRoot: root, watch: false, maxPaddingRatio: 1, cacheSize: 0 });
    try {
      assert.equal(service.registry.get('rm').spec.padId, 13);
      assert.equal(service.registry.get('rm').spec.padIdSource, 'config.pad_token_id');
      const alone = await Promise.all(
        items.map(async (item) => (await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } })).json<{ results: { reward: number }[] }>().results[0]?.reward),
      );
      const together = (await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } })).json<{ results: { reward: number }[] }>();
      together.results.forEach((r, i) => assert.ok(Math.abs(r.reward - (alone[i] as number)) < 1e-5, `item ${i}: ${r.reward} vs ${alone[i]}`));
      const status = service.registry.statusOf('rm');
      assert.equal(status.serving?.pad_id, 13);
      assert.equal(status.serving?.pad_id_source, 'config.pad_token_id');
    } finally {
      await service.close();
    }
  });

  test('a graph whose pad id nothing declares is refused at load by the self-check, naming the likely cause', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'bad', '1'), { tokenizer: 'gpt2', padIdInGraph: 13, seed: 4 });
    writeBowModel(join(root, 'good', '1'), { tokenizer: 'gpt2', seed: 5 });
    const service = await createService({ modelsRoot: root, watch: false });
    try {
      assert.deepEqual(service.registry.names(), ['good']);
      const error = service.registry.statusOf('bad').last_error ?? '';
      assert.match(error, /self-check/);
      assert.match(error, /pad id \d+, from /);
      assert.match(error, /pad_token_id/);
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'bad', items } });
      assert.equal(reply.statusCode, 404);
    } finally {
      await service.close();
    }
  });
});
