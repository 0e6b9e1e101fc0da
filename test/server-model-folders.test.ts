// Loading real-world model folders: a Hugging Face / optimum-style export (position_ids input,
// [B] logits, no rmserve.json, GPT-2 tokenizer) and a model with a real chat template (Qwen3's
// tokenizer_config.json), scored over HTTP and checked against the model's maths in JS.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { createService, type Service } from '../src/service.js';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { tempModelsRoot, tokenizerPaths, writeBowModel } from './helpers/model-fixtures.js';

interface ScoreReply {
  model_versions: Record<string, string>;
  results: { reward?: number; cached: boolean; truncated: boolean; objectives: Record<string, { raw: number; transformed: number }> }[];
}

describe('model folders', () => {
  const root = tempModelsRoot();
  let service: Service;
  let optimum: BowModelWeights;
  let chat: BowModelWeights;
  let gpt2: Tokenizer;
  let qwen: Tokenizer;
  let qwenConfig: { chat_template: string };

  before(async () => {
    // Flat folder = unversioned HF export, served as version "0".
    optimum = writeBowModel(join(root, 'optimum-gpt2'), {
      tokenizer: 'gpt2', positionIdsInput: true, flatOutput: true, manifest: false, paddingSide: 'left', maxLength: 64, seed: 3,
    });
    chat = writeBowModel(join(root, 'qwen-chat', '2'), { tokenizer: 'qwen3', labels: ['helpful', 'harmless'], seed: 5, maxLength: 128 });
    const paths = tokenizerPaths('qwen3');
    qwen = new Tokenizer(JSON.parse(readFileSync(paths.tokenizer, 'utf8')), {});
    qwenConfig = JSON.parse(readFileSync(paths.config!, 'utf8')) as { chat_template: string };
    gpt2 = new Tokenizer(JSON.parse(readFileSync(tokenizerPaths('gpt2').tokenizer, 'utf8')), {});
    service = await createService({ modelsRoot: root });
  });
  after(() => service.close());

  const score = async (payload: object): Promise<ScoreReply> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<ScoreReply>();
  };

  test('lists both models with their versions and objectives', async () => {
    const reply = await service.app.inject({ method: 'GET', url: '/v1/models' });
    const { models } = reply.json<{ models: { name: string; serving: { version: string; objectives: string[] } | null }[] }>();
    assert.deepEqual(
      models.map((m) => [m.name, m.serving?.version, m.serving?.objectives]),
      [['optimum-gpt2', '0', ['optimum-gpt2']], ['qwen-chat', '2', ['helpful', 'harmless']]],
    );
    assert.equal((await service.app.inject({ method: 'GET', url: '/ready' })).statusCode, 200);
    assert.equal((await service.app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    assert.equal((await service.app.inject({ method: 'GET', url: '/v1/models/qwen-chat' })).statusCode, 200);
    assert.equal((await service.app.inject({ method: 'GET', url: '/v1/models/nope' })).statusCode, 404);
  });

  test('optimum-style export scores a prompt/response pair like its maths says', async () => {
    const item = { prompt: 'How do I bake bread?', response: 'Mix flour, water, salt and yeast, then bake.' };
    const body = await score({ model: 'optimum-gpt2', items: [item] });
    // No template and no manifest: the HH transcript format is the default.
    const ids = gpt2.encode(`\n\nHuman: ${item.prompt}\n\nAssistant: ${item.response}`).ids;
    assert.ok(Math.abs(body.results[0]!.objectives['optimum-gpt2']!.raw - bowScore(optimum, ids)[0]!) < 1e-4);
    assert.deepEqual(body.model_versions, { 'optimum-gpt2': '0' });
    assert.equal(body.results[0]!.truncated, false);
  });

  test('long prompts are cut from the left and the response is kept', async () => {
    const response = 'This is the answer that must survive truncation.';
    const prompt = Array.from({ length: 80 }, (_, i) => `filler${i}`).join(' ');
    const body = await score({ model: 'optimum-gpt2', items: [{ prompt, response }] });
    assert.equal(body.results[0]!.truncated, true);
    const promptIds = gpt2.encode(`\n\nHuman: ${prompt}\n\nAssistant:`).ids;
    const responseIds = gpt2.encode(` ${response}`).ids;
    const kept = [...promptIds.slice(promptIds.length - (64 - responseIds.length)), ...responseIds];
    assert.equal(kept.length, 64);
    assert.ok(Math.abs(body.results[0]!.objectives['optimum-gpt2']!.raw - bowScore(optimum, kept)[0]!) < 1e-4);

    const right = await score({ model: 'optimum-gpt2', items: [{ prompt, response }], truncation: 'right' });
    const full = gpt2.encode(`\n\nHuman: ${prompt}\n\nAssistant: ${response}`).ids.slice(0, 64);
    assert.ok(Math.abs(right.results[0]!.objectives['optimum-gpt2']!.raw - bowScore(optimum, full)[0]!) < 1e-4);
  });

  test('a model with a real chat template renders messages with it; two heads come back named', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Name a prime number.' },
      { role: 'assistant' as const, content: 'Seven.' },
    ];
    const body = await score({ model: 'qwen-chat', items: [{ messages }, { prompt: messages.slice(0, 2), response: 'Seven.' }] });
    const text = new Template(qwenConfig.chat_template).render({ messages, add_generation_prompt: false, eos_token: '<|im_end|>' });
    assert.match(text, /<\|im_start\|>assistant\n/);
    const expected = bowScore(chat, qwen.encode(text).ids);
    for (const result of body.results) {
      assert.ok(Math.abs(result.objectives.helpful!.raw - expected[0]!) < 1e-4);
      assert.ok(Math.abs(result.objectives.harmless!.raw - expected[1]!) < 1e-4);
      assert.ok(Math.abs(result.reward! - (expected[0]! + expected[1]!)) < 1e-4, 'default aggregate sums objectives');
    }
    assert.deepEqual(body.results.map((r) => r.cached), [false, false]);
    const again = await score({ model: 'qwen-chat', items: [{ prompt: messages.slice(0, 2), response: 'Seven.' }] });
    assert.equal(again.results[0]!.cached, true, 'the same conversation asked again is answered from the cache');
    assert.deepEqual(again.results[0]!.objectives, body.results[0]!.objectives);
  });

  test('scores across two models in one request', async () => {
    const body = await score({ model: ['optimum-gpt2', 'qwen-chat'], items: [{ prompt: 'Hi', response: 'Hello!' }], aggregate: 'none' });
    assert.deepEqual(Object.keys(body.results[0]!.objectives).sort(), ['harmless', 'helpful', 'optimum-gpt2']);
    assert.equal(body.results[0]!.reward, undefined);
    assert.deepEqual(body.model_versions, { 'optimum-gpt2': '0', 'qwen-chat': '2' });
  });

  test('/get_reward scores pre-formatted queries (OpenRLHF protocol)', async () => {
    const query = ['\n\nHuman: What is 2+2?\n\nAssistant: 4.', '\n\nHuman: What is 2+2?\n\nAssistant: Five, probably.'];
    const service2 = await createService({ modelsRoot: root, defaultModels: ['optimum-gpt2'] });
    try {
      const reply = await service2.app.inject({ method: 'POST', url: '/get_reward', payload: { query, prompts: ['x', 'y'] } });
      assert.equal(reply.statusCode, 200, reply.body);
      const body = reply.json<{ rewards: number[]; scores: number[]; extra_logs: Record<string, number[]> }>();
      assert.equal(body.rewards.length, 2);
      query.forEach((q, i) => assert.ok(Math.abs(body.rewards[i]! - bowScore(optimum, gpt2.encode(q).ids)[0]!) < 1e-4));
      assert.deepEqual(body.scores, body.rewards);
      assert.deepEqual(body.extra_logs['optimum-gpt2_raw'], body.rewards);
      assert.equal(JSON.parse(reply.headers['x-rmserve-model-versions'] as string)['optimum-gpt2'], '0');
    } finally {
      await service2.close();
    }
  });
});
