// Issue 14, item 6: any client could set another client's per-prompt LSC reference. References
// are remembered per reference_scope: a training run that uses its own scope reads only what it
// wrote, whatever others send for the same prompt.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface Objective {
  reference?: number;
  reference_source?: string;
}

describe('per-prompt references are scoped', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    const reference = { rm: { quantiles: { '0.85': 0.123 }, mean: 0, std: 1, n: 10 } };
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', labels: ['rm'], seed: 9, manifestFields: { reference } });
    service = await createService({ modelsRoot: root, watch: false });
  });
  after(() => service.close());

  const prompt = 'What is the boiling point of water at sea level?';
  const score = async (body: object): Promise<Objective> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { transform: 'lsc', ...body } });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<{ results: { objectives: Record<string, Objective> }[] }>().results[0]?.objectives.rm as Objective;
  };
  const getReward = async (query: string): Promise<{ rewards: number[] }> => {
    const reply = await service.app.inject({ method: 'POST', url: `/get_reward?transform=lsc&${query}`, payload: { query: ['\n\nHuman: x\n\nAssistant: y'], prompts: [`\n\nHuman: ${prompt}\n\nAssistant:`] } });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<{ rewards: number[] }>();
  };

  test("another client's references for the same prompt do not reach a run that uses its own scope", async () => {
    const mine = await score({ reference_scope: 'run-7f3a', items: [{ prompt, response: '100 °C.', reference: { responses: ['It boils at 100 degrees Celsius.', '212 °F.'] } }] });
    assert.equal(mine.reference_source, 'request');
    // Another client "poisons" the prompt with references of its own, in the shared scope and in a guessed one.
    const poison = { responses: ['I do not know.', 'No idea, sorry, that is a hard one for me to answer today.'] };
    const theirs = await score({ items: [{ prompt, response: 'Cold.', reference: poison }] });
    await score({ reference_scope: 'run-0000', items: [{ prompt, response: 'Cold.', reference: poison }] });
    assert.notEqual(theirs.reference, mine.reference, 'the two reference sets differ');

    const later = await score({ reference_scope: 'run-7f3a', items: [{ prompt, response: 'About 100 °C.' }] });
    assert.equal(later.reference_source, 'prompt_cache');
    assert.equal(later.reference, mine.reference, 'the run still reads its own r_ref');
    const shared = await score({ items: [{ prompt, response: 'About 100 °C.' }] });
    assert.equal(shared.reference, theirs.reference, 'the shared scope holds what was written there');
    const fresh = await score({ reference_scope: 'run-never-used', items: [{ prompt, response: 'About 100 °C.' }] });
    assert.equal(fresh.reference_source, 'manifest', 'an unused scope falls back to the manifest');

    // /get_reward reads the same scopes through its query string.
    const [scoped, unscoped] = [await getReward('reference_scope=run-7f3a'), await getReward('')];
    assert.notEqual(scoped.rewards[0], unscoped.rewards[0]);
  });
});
