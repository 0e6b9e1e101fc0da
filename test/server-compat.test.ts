// TEI's /predict and vLLM's /classify shapes answer with the same scores as /v1/score
// (test/peer-clients.test.ts replays each peer's client in full).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

describe('TEI and vLLM compatible routes', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'duo', '1'), { tokenizer: 'gpt2', labels: ['helpful', 'harmless'], seed: 21 });
    service = await createService({ modelsRoot: root });
  });
  after(() => service.close());

  const raw = async (item: object): Promise<Record<string, number>> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } });
    const objectives = reply.json<{ results: { objectives: Record<string, { raw: number }> }[] }>().results[0]!.objectives;
    return Object.fromEntries(Object.entries(objectives).map(([k, v]) => [k, v.raw]));
  };
  const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-6;

  test('/predict: a text, a (prompt, response) pair, and a batch; raw and softmaxed', async () => {
    const text = '\n\nHuman: hi\n\nAssistant: hello there';
    const expectedText = await raw({ prompt: 'hi', response: 'hello there' });
    const one = await service.app.inject({ method: 'POST', url: '/predict', payload: { inputs: text, raw_scores: true } });
    assert.equal(one.statusCode, 200, one.body);
    const scores = Object.fromEntries(one.json<{ label: string; score: number }[]>().map((p) => [p.label, p.score]));
    assert.ok(close(scores.helpful!, expectedText.helpful!) && close(scores.harmless!, expectedText.harmless!));

    const pair = await service.app.inject({ method: 'POST', url: '/predict', payload: { inputs: ['hi', 'hello there'], raw_scores: true } });
    assert.deepEqual(pair.json(), one.json(), 'a pair is formatted with the chat template like /v1/score');

    // TEI's batch is a list of lists: [text] or [prompt, response] each.
    const batch = await service.app.inject({ method: 'POST', url: '/predict', payload: { inputs: [[text], ['hi', 'bye'], ['plain text']] } });
    const predictions = batch.json<{ label: string; score: number }[][]>();
    assert.equal(predictions.length, 3);
    for (const p of predictions) {
      assert.ok(close(p.reduce((a, x) => a + x.score, 0), 1), 'softmax across labels sums to 1');
      assert.ok(p[0]!.score >= p[1]!.score, 'sorted by score');
    }
  });

  test('/classify: vLLM shape with probabilities', async () => {
    const reply = await service.app.inject({ method: 'POST', url: '/classify', payload: { model: 'duo', input: ['a b c', 'd e f'] } });
    assert.equal(reply.statusCode, 200, reply.body);
    const body = reply.json<{ object: string; model: string; data: { index: number; label: string; probs: number[]; num_classes: number }[] }>();
    assert.equal(body.object, 'list');
    assert.equal(body.model, 'duo');
    assert.equal(reply.headers['x-rmserve-model-versions'], JSON.stringify({ duo: '1' }));
    assert.deepEqual(body.data.map((d) => [d.index, d.num_classes]), [[0, 2], [1, 2]]);
    const rewards = await service.app.inject({ method: 'POST', url: '/get_reward', payload: { query: ['a b c'] } });
    const logs = rewards.json<{ extra_logs: Record<string, number[]> }>().extra_logs;
    const e = [Math.exp(logs.helpful_raw![0]!), Math.exp(logs.harmless_raw![0]!)];
    assert.ok(close(body.data[0]!.probs[0]!, e[0]! / (e[0]! + e[1]!)));
  });

  test("bad inputs: TEI's error body on /predict, the common error shape on /classify", async () => {
    for (const payload of [{}, { inputs: [] }, { inputs: 5 }]) {
      const reply = await service.app.inject({ method: 'POST', url: '/predict', payload });
      assert.equal(reply.statusCode, 422, JSON.stringify(payload));
      assert.equal(reply.json<{ error_type: string }>().error_type, 'Validation');
    }
    const unknown = await service.app.inject({ method: 'POST', url: '/classify', payload: { model: 'nope', input: 'x' } });
    assert.equal(unknown.statusCode, 404);
  });
});
