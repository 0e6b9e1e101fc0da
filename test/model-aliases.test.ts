// A served model answers to its registry name and to its aliases (config.json _name_or_path, the
// Hugging Face id vLLM/SGLang clients send; rmserve.json name), on /v1/score as on the peer routes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const root = tempModelsRoot();
let service: Service;
before(async () => {
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1, config: { _name_or_path: 'acme/rm-7b' } });
  writeBowModel(join(root, 'other', '1'), { tokenizer: 'gpt2', seed: 2, config: { _name_or_path: 'acme/shared' } });
  writeBowModel(join(root, 'third', '1'), { tokenizer: 'gpt2', seed: 3, config: { _name_or_path: 'acme/shared' } });
  service = await createService({ modelsRoot: root, watch: false, cacheSize: 0 });
});
after(() => service.close());

const items = [{ prompt: 'Hi', response: 'Hello.' }];
const score = (model: string | string[]) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { model, items } });

test('/v1/score by HF id equals by name; a model named twice is scored once; an ambiguous alias is a 400', async () => {
  const byName = await score('rm');
  const byAlias = await score('acme/rm-7b');
  assert.equal(byAlias.statusCode, 200, byAlias.body);
  assert.deepEqual(byAlias.json(), byName.json());
  const both = await score(['rm', 'acme/rm-7b']);
  assert.deepEqual(Object.keys(both.json<{ model_versions: object }>().model_versions), ['rm']);
  const ambiguous = await score('acme/shared');
  assert.equal(ambiguous.statusCode, 400);
  assert.equal(ambiguous.json<{ error: { code: string } }>().error.code, 'ambiguous_model');
  assert.equal((await score('acme/nope')).statusCode, 404);
});
