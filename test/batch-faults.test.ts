// Issue 14, faults: an ONNX run that throws fails only the items of that batch. The batch is
// retried row by row once, so one input the model cannot take fails only its own request, with a
// 500 naming the failure, and the server keeps serving.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface ScoreReply {
  results: { reward: number }[];
}

describe('a model that fails on some inputs', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    // Runs fail once a batch is 60 tokens wide or more.
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', failFromLength: 60, seed: 3 });
    service = await createService({ modelsRoot: root, watch: false, cacheSize: 0, maxWaitMs: 200, maxPaddingRatio: 1 });
  });
  after(() => service.close());

  const short = (i: number) => ({ prompt: `Is ${i} even?`, response: i % 2 === 0 ? 'Yes.' : 'No.' });
  const long = { prompt: 'Tell me everything. '.repeat(20), response: 'That is a lot to tell.' };
  const post = (items: object[]) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });

  test('its neighbours in the batch still get their own scores; it gets a 500 naming the failure', async () => {
    const solo = await Promise.all([0, 1, 2].map(async (i) => (await post([short(i)])).json<ScoreReply>().results[0]?.reward));
    // Sent together, they share one batch (max wait 200 ms), which fails as a whole at width ≥ 60.
    const replies = await Promise.all([post([short(0)]), post([long]), post([short(1)]), post([short(2)])]);
    const [a, bad, b, c] = replies;
    assert.equal(bad?.statusCode, 500, bad?.body);
    const error = bad?.json<{ error: { code: string; message: string } }>().error;
    assert.equal(error?.code, 'inference_failed');
    assert.match(error?.message ?? '', /the model failed on this input: .*(out of|bounds|range)/i);
    for (const [i, reply] of [a, b, c].entries()) {
      assert.equal(reply?.statusCode, 200, reply?.body);
      assert.ok(Math.abs((reply?.json<ScoreReply>().results[0]?.reward as number) - (solo[i] as number)) < 1e-5);
    }
    // And it keeps serving.
    const again = await post([short(0)]);
    assert.equal(again.statusCode, 200);
    assert.ok(Math.abs((again.json<ScoreReply>().results[0]?.reward as number) - (solo[0] as number)) < 1e-5);
  });
});

describe('a failure of our own while tokenizing', () => {
  test('is a 500, not a 400 blaming the item (found by the route fuzzer)', async () => {
    const root = tempModelsRoot();
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 3 });
    const service = await createService({ modelsRoot: root, watch: false, cacheSize: 0, tokenizerThreads: 0 });
    const tokenizer = service.registry.get('rm').spec.tokenizer.tokenizer;
    const encode = tokenizer.encode.bind(tokenizer);
    try {
      tokenizer.encode = (() => {
        throw new TypeError("Cannot read properties of undefined (reading 'tokenizer')");
      }) as typeof tokenizer.encode;
      const broken = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'Is the sky blue?', response: 'Yes.' }] } });
      assert.equal(broken.statusCode, 500, broken.body);
      tokenizer.encode = encode;
      // The client's own mistakes stay 400s.
      const bad = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ messages: [{ role: 'user', content: 'no answer' }] }] } });
      assert.equal(bad.statusCode, 400, bad.body);
    } finally {
      tokenizer.encode = encode;
      await service.close();
    }
  });
});
