// Issue 10, formatting fidelity: /get_reward's pre-formatted queries and /v1/score's pairs must
// reach the model as the same tokens. A Llama-style chat template begins with {{ bos_token }} and
// the tokenizer's post-processor adds <s> too; a policy leaves </s> at the end of its query.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, tokenizerPaths, writeBowModel } from './helpers/model-fixtures.js';

// Llama 2's chat template as published with its tokenizer_config.json (system prompt branch dropped).
const LLAMA2_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}";

const prompt = 'Name a primary colour.';
const response = 'Blue is a primary colour.';

describe('/get_reward and /v1/score reach the model with the same tokens', () => {
  const root = tempModelsRoot();
  let service: Service;
  let weights: BowModelWeights;
  before(async () => {
    weights = writeBowModel(join(root, 'rm', '1'), {
      tokenizer: 'llama2',
      tokenizerConfig: { chat_template: LLAMA2_TEMPLATE, bos_token: '<s>', eos_token: '</s>' },
      seed: 11,
    });
    service = await createService({ modelsRoot: root, watch: false, cacheSize: 0 });
  });
  after(() => service.close());

  test('one BOS, the trailing EOS the policy left stripped, the same reward on both routes', async () => {
    const tokenizer = new Tokenizer(JSON.parse(readFileSync(tokenizerPaths('llama2').tokenizer, 'utf8')), {});
    const bos = tokenizer.token_to_id('<s>') as number;
    const rendered = new Template(LLAMA2_TEMPLATE).render({
      messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: response }],
      bos_token: '<s>',
      eos_token: '</s>',
    });
    assert.ok(rendered.startsWith('<s>[INST]') && rendered.endsWith('</s>'));
    // What the model must see: the rendered text tokenized without special tokens (as
    // transformers' apply_chat_template does), i.e. exactly one <s>.
    const expectedIds = tokenizer.encode(rendered, { add_special_tokens: false }).ids;
    assert.equal(expectedIds.filter((id: number) => id === bos).length, 1);
    const expected = bowScore(weights, expectedIds)[0] as number;

    const score = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt, response }] } });
    assert.equal(score.statusCode, 200, score.body);
    const scored = score.json<{ results: { reward: number }[] }>().results[0]?.reward as number;
    assert.ok(Math.abs(scored - expected) < 1e-5, `/v1/score ${scored} vs the single-BOS tokens' ${expected}`);

    // OpenRLHF sends the policy's formatted text; a generation that ran on leaves extra </s>.
    // serve_rm strips trailing EOS/pad and appends one EOS; this template ends the assistant's
    // turn with </s>, so the query scores exactly like the pair on /v1/score.
    for (const query of [rendered, `${rendered}</s></s>`, `${rendered}</s>`]) {
      const reward = await service.app.inject({ method: 'POST', url: '/get_reward', payload: { query: [query] } });
      assert.equal(reward.statusCode, 200, reward.body);
      const viaOpenRlhf = reward.json<{ rewards: number[] }>().rewards[0] as number;
      assert.ok(Math.abs(viaOpenRlhf - expected) < 1e-5, `/get_reward ${viaOpenRlhf} vs ${expected} for ${JSON.stringify(query.slice(-12))}`);
    }
  });
});

describe('a chat template that always ends with a generation prompt', () => {
  // Meta's first Llama-3-Instruct template appends the assistant header unconditionally.
  const LLAMA3_TEMPLATE =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}" +
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

  test('the pair is scored as the conversation ending with the response, not with an empty assistant header', async () => {
    const { PromptFormatter } = await import('../src/model/format.js');
    const formatter = new PromptFormatter(LLAMA3_TEMPLATE, undefined, { bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>' });
    const rendered = formatter.render({ prompt: 'Hi?', response: 'Hello!' });
    assert.equal(
      rendered.text,
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>',
    );
    assert.equal(rendered.text.slice(rendered.responseStart), 'Hello!<|eot_id|>');
    // A template whose generation prompt is conditional keeps everything it renders.
    const hh = new PromptFormatter(undefined, undefined).render({ prompt: 'Hi?', response: 'Hello!' });
    assert.equal(hh.text, '\n\nHuman: Hi?\n\nAssistant: Hello!');
  });
});
