// Issue 13: each peer's client, replayed. The request bodies are the ones the clients send (the
// source each is copied from is named above it) and every field the client reads is checked,
// against the same bag-of-words model computed in JS on the tokens the peer would have fed it
// (or against /v1/score for the same pair). docs/integrations.md has one recipe per client; each
// recipe's request is one of these.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { createService, type Service } from '../src/service.js';
import { teiError } from '../src/server/routes/tei.js';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { tempModelsRoot, tokenizerPaths, writeBowModel } from './helpers/model-fixtures.js';

const close = (a: number, b: number, tol = 1e-5): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

interface ErrorBody {
  error: { code: string; message: string };
}

/** Raw rewards of (prompt, response) pairs through rmserve's own API. */
async function rawScores(service: Service, model: string, items: object[]): Promise<Record<string, number>[]> {
  const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model, items } });
  assert.equal(reply.statusCode, 200, reply.body);
  return reply.json<{ results: { objectives: Record<string, { raw: number }> }[] }>().results.map((r) =>
    Object.fromEntries(Object.entries(r.objectives).map(([k, v]) => [k, v.raw])),
  );
}

async function post<T>(service: Service, url: string, payload: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: T; headers: Record<string, unknown> }> {
  const reply = await service.app.inject({ method: 'POST', url, payload: payload as object, headers });
  return { status: reply.statusCode, body: reply.json<T>(), headers: reply.headers };
}

/** ONNX batches the server has run, from /metrics: a refused request must add none. */
async function batchesRun(service: Service): Promise<number> {
  const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  return [...text.matchAll(/^rmserve_batch_size_count\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

// ---------------------------------------------------------------------------------------------
// OpenRLHF: openrlhf/utils/remote_rm_utils.py posts to serve_rm.py's /get_reward.

describe('OpenRLHF remote reward model', () => {
  const root = tempModelsRoot();
  let service: Service;
  let weights: BowModelWeights;
  // A rollout larger than the queue: unchunked, the batcher would refuse it as never fitting (413).
  const MAX_ITEMS = 64;
  const MAX_QUEUE = 256;
  before(async () => {
    weights = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'qwen3', labels: ['reward'], seed: 13, maxLength: 128 });
    service = await createService({ modelsRoot: root, maxItems: MAX_ITEMS, maxQueueItems: MAX_QUEUE });
  });
  after(() => service.close());

  /** A query as the trainer builds it: the chat template applied to prompt and response, padded with EOS as generated. */
  const query = (i: number): string =>
    `<|im_start|>user\nQuestion number ${i}: what is ${i} plus ${i}?<|im_end|>\n<|im_start|>assistant\nIt is ${2 * i}.<|im_end|>\n<|endoftext|><|endoftext|>`;
  const prompt = (i: number): string => `<|im_start|>user\nQuestion number ${i}: what is ${i} plus ${i}?<|im_end|>\n<|im_start|>assistant\n`;

  /** The model in JS, on the tokens the server feeds it for a query. */
  const expected = (text: string): number => {
    const spec = service.registry.get('rm').spec;
    return bowScore(weights, spec.tokenizer.encode(spec.formatter.render({ text }), spec.truncationSide).ids)[0] as number;
  };

  test('≤ 0.4: {query} only; reads `rewards`', async () => {
    // remote_rm_fn(api_url, queries): request_api_wrapper(api_url, {"query": queries}, "rewards")
    const queries = [query(1), query(2)];
    const { status, body } = await post<{ rewards: number[] }>(service, '/get_reward', { query: queries });
    assert.equal(status, 200);
    assert.deepEqual(body.rewards.map((r, i) => close(r, expected(queries[i] as string))), [true, true]);
  });

  test('0.5 – 0.9: {query, prompts, labels} with labels null, a list of nulls, or ground truths; reads `rewards`', async () => {
    // remote_rm_fn(api_url, queries, prompts, labels): {"query": queries, "prompts": prompts, "labels": labels}
    const queries = [query(3), query(4)];
    const prompts = [prompt(3), prompt(4)];
    for (const labels of [null, [null, null], ['6', '8']]) {
      const { status, body } = await post<{ rewards: number[] }>(service, '/get_reward', { query: queries, prompts, labels });
      assert.equal(status, 200, JSON.stringify(body));
      assert.ok(body.rewards.every((r, i) => close(r, expected(queries[i] as string))), JSON.stringify(labels));
    }
    const nullPrompts = await post<{ rewards: number[] }>(service, '/get_reward', { query: queries, prompts: null, labels: null });
    assert.equal(nullPrompts.status, 200);
  });

  test('current: reads `rewards`, `scores` and per-sample `extra_logs`, as serve_rm returns them', async () => {
    const queries = [query(5), query(6), query(7)];
    const { status, body } = await post<{ rewards: number[]; scores: number[]; extra_logs: Record<string, number[]> }>(service, '/get_reward', {
      query: queries,
      prompts: queries.map((_, i) => prompt(i + 5)),
      labels: [null, null, null],
    });
    assert.equal(status, 200);
    assert.deepEqual(body.scores, body.rewards);
    assert.ok(Object.keys(body.extra_logs).length > 0);
    // OpenRLHF splits every extra_logs list per sample: each has one entry per query.
    for (const values of Object.values(body.extra_logs)) assert.equal(values.length, queries.length);
    assert.deepEqual(body.extra_logs.reward_raw, body.rewards);
  });

  test('a 1,024-query rollout (OpenRLHF ≤ 0.9 sends a whole step at once) is scored in chunks: no 413, every reward in order', async () => {
    const queries = Array.from({ length: 1024 }, (_, i) => query(i));
    const { status, body } = await post<{ rewards: number[]; scores: number[]; extra_logs: Record<string, number[]> }>(service, '/get_reward', {
      query: queries,
      prompts: queries.map((_, i) => prompt(i)),
      labels: null,
    });
    assert.equal(status, 200, JSON.stringify(body).slice(0, 300));
    assert.equal(body.rewards.length, 1024);
    assert.equal(body.scores.length, 1024);
    for (const values of Object.values(body.extra_logs)) assert.equal(values.length, 1024);
    for (const i of [0, 1, 63, 64, 65, 255, 256, 511, 700, 1023]) assert.ok(close(body.rewards[i] as number, expected(queries[i] as string)), `reward ${i}`);
    // Distinct queries, distinct rewards: nothing was shifted or repeated between chunks.
    assert.equal(new Set(body.rewards).size > 1000, true);
  });

  test('a queue smaller than --max-items: chunks shrink until they fit, still no 413', async () => {
    const smallRoot = tempModelsRoot();
    writeBowModel(join(smallRoot, 'rm', '1'), { tokenizer: 'qwen3', labels: ['reward'], seed: 13, maxLength: 128 });
    const small = await createService({ modelsRoot: smallRoot, maxItems: 64, maxQueueItems: 20 });
    try {
      const queries = Array.from({ length: 100 }, (_, i) => query(i));
      const { status, body } = await post<{ rewards: number[] }>(small, '/get_reward', { query: queries, prompts: null, labels: null });
      assert.equal(status, 200, JSON.stringify(body).slice(0, 300));
      assert.ok(close(body.rewards[99] as number, expected(queries[99] as string)));
    } finally {
      await small.close();
    }
  });

  test('the item limit is /v1/score\'s', async () => {
    const items = Array.from({ length: MAX_ITEMS + 1 }, (_, i) => ({ prompt: `q${i}`, response: 'a' }));
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });
    assert.equal(reply.statusCode, 413);
    assert.equal(reply.json<ErrorBody>().error.code, 'too_many_items');
  });
});

// ---------------------------------------------------------------------------------------------
// vLLM, SGLang and verl: the served model is named by its Hugging Face id, as verl sends it.

describe('vLLM, SGLang and verl clients', () => {
  const root = tempModelsRoot();
  const HF_ID = 'Skywork/Skywork-Reward-Llama-3.1-8B-v0.2';
  const BOS = '<|begin_of_text|>';
  let service: Service;
  let skywork: BowModelWeights;
  let duo: BowModelWeights;
  let llama3: Tokenizer;
  let chatTemplate: string;
  before(async () => {
    skywork = writeBowModel(join(root, 'skywork', '1'), { tokenizer: 'llama3', labels: ['reward'], seed: 31, maxLength: 96, config: { _name_or_path: HF_ID } });
    // The packaged Llama 3 tokenizer.json is Meta's first, which adds no BOS; the one Skywork's
    // Llama 3.1 models ship adds it in its post-processor, as here (and its chat template renders it too).
    const tokenizerFile = join(root, 'skywork', '1', 'tokenizer.json');
    const tokenizerJson = JSON.parse(readFileSync(tokenizerFile, 'utf8')) as Record<string, unknown>;
    tokenizerJson.post_processor = {
      type: 'Sequence',
      processors: [
        tokenizerJson.post_processor,
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: BOS, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [BOS]: { id: BOS, ids: [128000], tokens: [BOS] } },
        },
      ],
    };
    writeFileSync(tokenizerFile, JSON.stringify(tokenizerJson));
    duo = writeBowModel(join(root, 'duo', '1'), { tokenizer: 'gpt2', labels: ['helpful', 'harmless'], seed: 21 });
    service = await createService({ modelsRoot: root });
    llama3 = new Tokenizer(tokenizerJson, {});
    chatTemplate = (JSON.parse(readFileSync(tokenizerPaths('llama3').config as string, 'utf8')) as { chat_template: string }).chat_template;
  });
  after(() => service.close());

  const conversation = [
    { role: 'user', content: 'What is the range of the output of a sigmoid node?' },
    { role: 'assistant', content: 'It is bounded between 0 and 1.' },
  ];
  /** tokenizer.apply_chat_template(chat, add_generation_prompt=False, tokenize=False), as the client renders it. */
  const applyChatTemplate = (messages: object[]): string =>
    new Template(chatTemplate).render({ messages, bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', add_generation_prompt: false });
  /** What vLLM/SGLang feed the model for a text: the tokenizer with its special tokens. */
  const vllmReward = (text: string, addSpecialTokens = true): number => bowScore(skywork, llama3.encode(text, { add_special_tokens: addSpecialTokens }).ids)[0] as number;

  test("verl's reward loop, vLLM engine (vLLM < 0.11.2): /classify {model, input, activation: false}, reads data[-1].probs[-1]", async () => {
    // verl/experimental/reward_loop/reward_loop.py compute_score_disrm: the BOS is stripped, since vLLM adds it.
    let rmPrompt = applyChatTemplate(conversation);
    assert.ok(rmPrompt.startsWith(BOS));
    rmPrompt = rmPrompt.slice(BOS.length);
    const { status, body } = await post<{ data: { probs: number[] }[] }>(service, '/classify', { model: HF_ID, input: rmPrompt, activation: false });
    assert.equal(status, 200, JSON.stringify(body));
    const rmScore = body.data.at(-1)?.probs.at(-1) as number;
    assert.ok(close(rmScore, vllmReward(rmPrompt)), `${rmScore} vs ${vllmReward(rmPrompt)}`);
  });

  test("verl's reward loop on vLLM ≥ 0.11.2: the BOS kept, {use_activation: false, add_special_tokens: false}: the same score", async () => {
    const rmPrompt = applyChatTemplate(conversation);
    const { status, body } = await post<{ data: { probs: number[] }[] }>(service, '/classify', { model: HF_ID, input: rmPrompt, use_activation: false, add_special_tokens: false });
    assert.equal(status, 200, JSON.stringify(body));
    assert.ok(close(body.data.at(-1)?.probs.at(-1) as number, vllmReward(rmPrompt, false)));
    assert.ok(close(vllmReward(rmPrompt, false), vllmReward(rmPrompt.slice(BOS.length))), 'both verl variants give the model the same tokens');
  });

  test("verl's reward loop, SGLang engine: /v1/embeddings {model, input}, reads data[-1].embedding[-1]", async () => {
    const rmPrompt = applyChatTemplate(conversation).slice(BOS.length);
    const { status, body } = await post<{ data: { embedding: number[] }[]; usage: { prompt_tokens: number } }>(service, '/v1/embeddings', { model: HF_ID, input: rmPrompt });
    assert.equal(status, 200, JSON.stringify(body));
    assert.ok(close(body.data.at(-1)?.embedding.at(-1) as number, vllmReward(rmPrompt)));
    assert.equal(body.usage.prompt_tokens, llama3.encode(rmPrompt).ids.length);
  });

  test("vLLM /classify: probabilities by default, label, num_classes, vLLM's usage and id; softmax over one model's heads", async () => {
    const inputs = ['\n\nHuman: hi\n\nAssistant: hello there', '\n\nHuman: hi\n\nAssistant: go away'];
    const { status, body } = await post<{
      id: string;
      object: string;
      created: number;
      model: string;
      data: { index: number; label: string; probs: number[]; num_classes: number }[];
      usage: { prompt_tokens: number; total_tokens: number; completion_tokens: number };
    }>(service, '/classify', { model: 'duo', input: inputs });
    assert.equal(status, 200, JSON.stringify(body));
    assert.match(body.id, /^classify-/);
    assert.equal(body.object, 'list');
    assert.equal(body.model, 'duo');
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 60);
    const raw = await rawScores(service, 'duo', [{ prompt: 'hi', response: 'hello there' }, { prompt: 'hi', response: 'go away' }]);
    body.data.forEach((d, i) => {
      assert.equal(d.index, i);
      assert.equal(d.num_classes, 2);
      const e = [Math.exp(raw[i]?.helpful as number), Math.exp(raw[i]?.harmless as number)];
      assert.ok(close(d.probs[0] as number, (e[0] as number) / ((e[0] as number) + (e[1] as number))));
      assert.equal(d.label, (d.probs[0] as number) >= (d.probs[1] as number) ? 'helpful' : 'harmless');
    });
    const gpt2 = service.registry.get('duo').spec;
    const tokens = inputs.reduce((n, text) => n + gpt2.tokenizer.encode(gpt2.formatter.render({ text }), 'left').ids.length, 0);
    assert.deepEqual(body.usage, { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0 });
    void duo;

    // request_id is the reply's id, as in vLLM.
    const named = await post<{ id: string }>(service, '/classify', { model: 'duo', input: 'x y', request_id: 'abc' });
    assert.equal(named.body.id, 'classify-abc');
  });

  test('vLLM /classify with messages: the chat is formatted with the model\'s template, as /v1/score formats it', async () => {
    const { status, body } = await post<{ data: { probs: number[] }[] }>(service, '/classify', { model: 'skywork', messages: conversation, use_activation: false });
    assert.equal(status, 200, JSON.stringify(body));
    const [raw] = await rawScores(service, 'skywork', [{ messages: conversation }]);
    assert.ok(close(body.data[0]?.probs[0] as number, raw?.reward as number));
    const activated = await post<{ data: { probs: number[] }[] }>(service, '/classify', { model: 'skywork', messages: conversation });
    assert.ok(close(activated.body.data[0]?.probs[0] as number, sigmoid(raw?.reward as number)), 'one label: sigmoid');
  });

  test('vLLM /pooling: the reward vector (task reward), as numbers or base64 float32', async () => {
    const text = '\n\nHuman: hi\n\nAssistant: hello there';
    const [raw] = await rawScores(service, 'duo', [{ prompt: 'hi', response: 'hello there' }]);
    const floats = await post<{ object: string; data: { index: number; object: string; data: number[] }[]; usage: { prompt_tokens: number } }>(service, '/pooling', { model: 'duo', input: text });
    assert.equal(floats.status, 200, JSON.stringify(floats.body));
    assert.equal(floats.body.data[0]?.object, 'pooling');
    assert.ok(close(floats.body.data[0]?.data[0] as number, raw?.helpful as number) && close(floats.body.data[0]?.data[1] as number, raw?.harmless as number));
    assert.ok(floats.body.usage.prompt_tokens > 0);
    const encoded = await post<{ data: { data: string }[] }>(service, '/pooling', { model: 'duo', input: text, encoding_format: 'base64' });
    const bytes = Buffer.from(encoded.body.data[0]?.data as string, 'base64');
    assert.deepEqual([bytes.readFloatLE(0), bytes.readFloatLE(4)], [...new Float32Array(floats.body.data[0]?.data as number[])]);
    const classify = await post<{ data: { data: number[] }[] }>(service, '/pooling', { model: 'duo', input: text, task: 'classify' });
    assert.ok(close((classify.body.data[0]?.data as number[]).reduce((a, b) => a + b, 0), 1), 'task classify: softmax');
    const embed = await post<ErrorBody>(service, '/pooling', { model: 'duo', input: text, task: 'embed' });
    assert.equal(embed.status, 400);
    assert.match(embed.body.error.message, /`task`/);
  });

  test('vLLM /score: (text_1, text_2) pairs, 1:N and N:N, scored as (prompt, response)', async () => {
    const raw = await rawScores(service, 'skywork', [{ prompt: 'Is water wet?', response: 'Yes.' }, { prompt: 'Is water wet?', response: 'No.' }]);
    const oneToN = await post<{ object: string; data: { index: number; object: string; score: number }[]; usage: { prompt_tokens: number } }>(service, '/score', {
      model: HF_ID,
      text_1: 'Is water wet?',
      text_2: ['Yes.', 'No.'],
    });
    assert.equal(oneToN.status, 200, JSON.stringify(oneToN.body));
    assert.deepEqual(oneToN.body.data.map((d) => [d.index, d.object]), [[0, 'score'], [1, 'score']]);
    oneToN.body.data.forEach((d, i) => assert.ok(close(d.score, sigmoid(raw[i]?.reward as number))));
    const nToN = await post<{ data: { score: number }[] }>(service, '/score', { model: HF_ID, text_1: ['Is water wet?', 'Is water wet?'], text_2: ['Yes.', 'No.'], use_activation: false });
    nToN.body.data.forEach((d, i) => assert.ok(close(d.score, raw[i]?.reward as number)));
    const mismatch = await post<ErrorBody>(service, '/score', { model: HF_ID, text_1: ['a', 'b'], text_2: ['c', 'd', 'e'] });
    assert.equal(mismatch.status, 400);
    const twoHeads = await post<ErrorBody>(service, '/score', { model: 'duo', text_1: 'a', text_2: 'b' });
    assert.equal(twoHeads.status, 400);
    assert.equal(twoHeads.body.error.code, 'unsupported_model');
  });

  test('vLLM /rerank (and /v1/rerank): documents ranked as responses to the query, top_n', async () => {
    const documents = ['Yes.', 'No.', 'Water is wet when it touches things.'];
    const raw = await rawScores(service, 'skywork', documents.map((response) => ({ prompt: 'Is water wet?', response })));
    for (const url of ['/rerank', '/v1/rerank', '/v2/rerank']) {
      const { status, body } = await post<{ id: string; model: string; usage: { total_tokens: number }; results: { index: number; document: { text: string }; relevance_score: number }[] }>(
        service,
        url,
        { model: HF_ID, query: 'Is water wet?', documents, top_n: 2 },
      );
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.results.length, 2);
      const order = raw.map((r, i) => [i, r.reward as number] as const).sort((a, b) => b[1] - a[1]);
      assert.deepEqual(body.results.map((r) => r.index), order.slice(0, 2).map(([i]) => i));
      assert.equal(body.results[0]?.document.text, documents[order[0]?.[0] as number]);
      assert.ok(close(body.results[0]?.relevance_score as number, sigmoid(order[0]?.[1] as number)));
      assert.ok(body.usage.total_tokens > 0);
    }
  });

  test("SGLang's native /classify {model, text}: a list of {embedding: raw rewards, meta_info}, a bare object for one text", async () => {
    // docs/basic_usage/native_api (Classify, reward model): prompts = tokenizer.apply_chat_template(CONVS, tokenize=False)
    const prompts = [applyChatTemplate(conversation), applyChatTemplate([conversation[0] as object, { role: 'assistant', content: 'Between -1 and 1.' }])];
    const { status, body } = await post<{ embedding: number[]; meta_info: { id: string; prompt_tokens: number } }[]>(service, '/classify', { model: HF_ID, text: prompts });
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.length, 2);
    // SGLang tokenizes with special tokens: a text already starting with BOS keeps one (rmserve never doubles it).
    body.forEach((response, i) => assert.ok(close(response.embedding[0] as number, vllmReward(prompts[i] as string, false))));
    assert.ok(body[0]?.meta_info.prompt_tokens === llama3.encode(prompts[0] as string, { add_special_tokens: false }).ids.length);
    const one = await post<{ embedding: number[]; meta_info: { id: string } }>(service, '/classify', { model: HF_ID, text: prompts[0], rid: 'r1' });
    assert.equal(one.status, 200);
    assert.ok(!Array.isArray(one.body));
    assert.equal(one.body.meta_info.id, 'r1');
    // SGLang's /v1/classify is vLLM's shape.
    const v1 = await post<{ data: { probs: number[] }[] }>(service, '/v1/classify', { model: HF_ID, input: prompts[0], use_activation: false });
    assert.ok(close(v1.body.data[0]?.probs[0] as number, body[0]?.embedding[0] as number));
  });

  test("OpenAI's SDK on /v1/embeddings: it asks for base64 unless told otherwise, and decodes little-endian float32", async () => {
    // openai-python resources/embeddings.py create(): encoding_format defaults to "base64" on the wire.
    const rmPrompt = applyChatTemplate(conversation).slice(BOS.length);
    const { status, body } = await post<{ object: string; model: string; data: { object: string; index: number; embedding: string }[] }>(service, '/v1/embeddings', {
      input: [rmPrompt],
      model: HF_ID,
      encoding_format: 'base64',
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual([body.object, body.model, body.data[0]?.object, body.data[0]?.index], ['list', HF_ID, 'embedding', 0]);
    const decoded = new Float32Array(new Uint8Array(Buffer.from(body.data[0]?.embedding as string, 'base64')).buffer);
    assert.ok(close(decoded[0] as number, vllmReward(rmPrompt), 1e-6));
  });

  test("TRL's GRPOTrainer reward function (docs/integrations.md): /v1/score with the prompts and completions TRL passes", async () => {
    // reward_func(prompts, completions, **kwargs) -> list[float]; conversational datasets pass lists of messages.
    const prompts = [[{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Is water wet?' }], [{ role: 'user', content: 'Name a colour.' }]];
    const completions = [[{ role: 'assistant', content: 'Yes.' }], [{ role: 'assistant', content: 'Blue.' }]];
    const items = prompts.map((prompt, i) => ({ prompt, response: (completions[i] as { content: string }[]).at(-1)?.content as string }));
    const { status, body } = await post<{ results: { reward: number }[] }>(service, '/v1/score', { model: 'skywork', items });
    assert.equal(status, 200, JSON.stringify(body));
    const raw = await rawScores(service, 'skywork', prompts.map((prompt, i) => ({ messages: [...prompt, ...(completions[i] as object[])] })));
    body.results.forEach((r, i) => assert.ok(close(r.reward, raw[i]?.reward as number)));
    // Standard (text) datasets pass strings.
    const plain = await post<{ results: { reward: number }[] }>(service, '/v1/score', { model: 'skywork', items: [{ prompt: 'Is water wet?', response: 'Yes.' }] });
    assert.equal(plain.status, 200);
    assert.ok(Number.isFinite(plain.body.results[0]?.reward));
  });

  test('a model named by its Hugging Face id, and the OpenAI model list', async () => {
    const list = await service.app.inject({ method: 'GET', url: '/v1/models' });
    const body = list.json<{ object: string; data: { id: string; object: string; created: number; owned_by: string; aliases: string[]; root: string }[]; models: { name: string }[] }>();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data.map((m) => [m.id, m.object, m.owned_by]), [['duo', 'model', 'rmserve'], ['skywork', 'model', 'rmserve']]);
    assert.ok(body.data.every((m) => Number.isInteger(m.created) && m.created > 0));
    assert.deepEqual(body.data.find((m) => m.id === 'skywork')?.aliases, [HF_ID]);
    assert.equal(body.data.find((m) => m.id === 'skywork')?.root, HF_ID);
    assert.deepEqual(body.models.map((m) => m.name), ['duo', 'skywork'], "rmserve's own list is still there");
    const one = await service.app.inject({ method: 'GET', url: `/v1/models/${encodeURIComponent(HF_ID)}` });
    assert.equal(one.statusCode, 200);
    assert.deepEqual([one.json<{ id: string; name: string; object: string }>().id, one.json<{ name: string }>().name], ['skywork', 'skywork']);
    const reward = await post<{ rewards: number[] }>(service, `/get_reward?model=${encodeURIComponent(HF_ID)}`, { query: ['hello'] });
    assert.equal(reward.status, 200);
  });

  test('one model per reply: without `model`, a server of two models asks for one instead of mixing their heads', async () => {
    for (const [url, payload] of [['/classify', { input: 'x' }], ['/pooling', { input: 'x' }], ['/v1/embeddings', { input: 'x' }], ['/classify', { text: 'x' }]] as const) {
      const { status, body } = await post<ErrorBody>(service, url, payload);
      assert.equal(status, 400, url);
      assert.equal(body.error.code, 'model_required');
      assert.match(body.error.message, /duo, skywork/);
    }
    const unknown = await post<ErrorBody>(service, '/classify', { model: 'nope', input: 'x' });
    assert.equal(unknown.status, 404);
  });

  test('every field vLLM defines is honoured or refused by name, never ignored', async () => {
    const refusals: [string, object, RegExp][] = [
      ['/classify', { activation: true, use_activation: false }, /`activation: true` and `use_activation: false` disagree/],
      ['/classify', { cache_salt: 'salt' }, /`cache_salt`/],
      ['/classify', { priority: 1 }, /`priority`/],
      ['/classify', { chat_template: '{{ messages }}' }, /`chat_template`/],
      ['/classify', { dimensions: 2 }, /`dimensions`/],
      ['/classify', { normalize: true }, /`normalize` is not a field/],
      ['/classify', { frobnicate: 1 }, /`frobnicate` is not a field/],
      ['/classify', { input: [1, 2, 3] }, /token ids/],
      ['/classify', { add_special_tokens: true, input: `${BOS}hello` }, /`add_special_tokens: true`/],
      ['/classify', { add_special_tokens: false, input: 'hello' }, /`add_special_tokens: false`/],
      ['/classify', { truncate_prompt_tokens: 1000 }, /greater than the model's max length \(96\)/],
      ['/pooling', { dimensions: 1 }, /`dimensions`/],
      ['/pooling', { encoding_format: 'bytes' }, /`encoding_format`/],
      ['/v1/embeddings', { use_activation: true }, /`use_activation`/],
      ['/score', { text_1: 'a', text_2: 'b', mm_processor_kwargs: { x: 1 } }, /`mm_processor_kwargs`/],
      ['/classify', { text: [['a', 'b']] }, /cross-encoder/],
      ['/classify', { text: 'a', input_ids: [1, 2] }, /`input_ids`/],
    ];
    for (const [url, fields, message] of refusals) {
      const payload = { model: HF_ID, ...(url === '/score' || 'text' in fields ? {} : { input: 'hello' }), ...fields };
      const { status, body } = await post<ErrorBody>(service, url, payload);
      assert.equal(status, 400, `${url} ${JSON.stringify(fields)}: ${JSON.stringify(body)}`);
      assert.match(body.error.message, message, `${url} ${JSON.stringify(fields)}`);
    }
    // Accepted as vLLM means them: padding cannot change a reward, user does not, priority 0 is the default.
    const accepted = await post<{ data: unknown[] }>(service, '/classify', { model: HF_ID, input: 'hello', padding: 'max_length', user: 'u1', priority: 0, truncation_side: 'left', classification_type: 'multiclass', add_generation_prompt: false, chat_template_kwargs: null });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
  });

  test("an input over the model's context is a 400 as in vLLM, unless truncate_prompt_tokens: -1; usage counts what the model read", async () => {
    const long = 'word '.repeat(200);
    const batches = await batchesRun(service);
    const refused = await post<ErrorBody>(service, '/classify', { model: HF_ID, input: long });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error.code, 'input_too_long');
    assert.match(refused.body.error.message, /truncate_prompt_tokens: -1/);
    assert.equal(await batchesRun(service), batches, 'refused once tokenized: nothing ran');
    const cut = await post<{ usage: { prompt_tokens: number } }>(service, '/classify', { model: HF_ID, input: long, truncate_prompt_tokens: -1 });
    assert.equal(cut.status, 200);
    assert.equal(cut.body.usage.prompt_tokens, 96);
    // A budget below the max length is honoured for inputs within it, refused for the others.
    const within = await post<{ usage: { prompt_tokens: number } }>(service, '/classify', { model: HF_ID, input: 'hello', truncate_prompt_tokens: 10 });
    assert.equal(within.status, 200);
    const beforeOver = await batchesRun(service);
    const over = await post<ErrorBody>(service, '/classify', { model: HF_ID, input: 'word '.repeat(20), truncate_prompt_tokens: 10 });
    assert.equal(over.status, 400);
    assert.match(over.body.error.message, /over `truncate_prompt_tokens` 10/);
    assert.equal(await batchesRun(service), beforeOver, 'over the budget: nothing ran');
    const sglang = await post<ErrorBody>(service, '/classify', { model: HF_ID, text: long });
    assert.equal(sglang.status, 400);
  });
});

// ---------------------------------------------------------------------------------------------
// TEI: router/src/http/types.rs PredictInput, PredictRequest, RerankRequest; ErrorResponse.

describe('text-embeddings-inference clients', () => {
  const root = tempModelsRoot();
  const rankerRoot = tempModelsRoot();
  let service: Service;
  let ranker: Service;
  before(async () => {
    // TEI serves one model, and its clients send no `model`: one model per server here too.
    writeBowModel(join(root, 'duo', '1'), { tokenizer: 'gpt2', labels: ['helpful', 'harmless'], seed: 21, maxLength: 48 });
    writeBowModel(join(rankerRoot, 'ranker', '1'), { tokenizer: 'gpt2', labels: ['relevance'], seed: 5 });
    service = await createService({ modelsRoot: root, maxItems: 8, apiKey: 'k' });
    ranker = await createService({ modelsRoot: rankerRoot });
  });
  after(async () => {
    await service.close();
    await ranker.close();
  });
  const auth = { authorization: 'Bearer k' };
  type Prediction = { score: number; label: string };
  const predict = (payload: unknown) => post<Prediction[] | Prediction[][]>(service, '/predict', payload, auth);
  const text = '\n\nHuman: hi\n\nAssistant: hello there';

  test('every documented input form: "a", ["a"] and ["a", "b"] are one input (one list back); [["a"], ["b", "c"]] is a batch', async () => {
    const [raw] = await rawScoresWithKey(service, [{ prompt: 'hi', response: 'hello there' }]);
    const single = await predict({ inputs: text, raw_scores: true });
    assert.equal(single.status, 200, JSON.stringify(single.body));
    const byLabel = (p: Prediction[]): Record<string, number> => Object.fromEntries(p.map((x) => [x.label, x.score]));
    assert.ok(close(byLabel(single.body as Prediction[]).helpful as number, raw?.helpful as number));
    const wrapped = await predict({ inputs: [text], raw_scores: true });
    assert.deepEqual(wrapped.body, single.body, '["text"] is one input, not a batch');
    const pair = await predict({ inputs: ['hi', 'hello there'], raw_scores: true });
    assert.deepEqual(pair.body, single.body, 'a pair is (prompt, response), formatted with the chat template');
    const batch = await predict({ inputs: [[text], ['hi', 'bye'], ['plain text']] });
    assert.equal(batch.status, 200);
    const lists = batch.body as Prediction[][];
    assert.equal(lists.length, 3);
    for (const p of lists) {
      assert.ok(close(p.reduce((a, x) => a + x.score, 0), 1), 'softmax across labels');
      assert.ok((p[0] as Prediction).score >= (p[1] as Prediction).score, 'best first');
    }
    const one = await predict({ inputs: [[text]] });
    assert.equal((one.body as Prediction[][]).length, 1, '[["a"]] is a batch of one');
  });

  test("truncate: false refuses an over-long input with TEI's 413 Validation; absent or true truncates; truncation_direction", async () => {
    const long = ['question', `${'long answer '.repeat(40)}THE END`];
    const batches = await batchesRun(service);
    const refused = await post<{ error: string; error_type: string }>(service, '/predict', { inputs: long, truncate: false }, auth);
    assert.equal(refused.status, 413);
    assert.equal(refused.body.error_type, 'Validation');
    assert.match(refused.body.error, /must have less than 48 tokens/);
    assert.equal(await batchesRun(service), batches, 'refused once tokenized: nothing ran');
    const rankerBatches = await batchesRun(ranker);
    const rerank = await post<{ error: string }>(ranker, '/rerank', { query: 'question', texts: ['short', 'long answer '.repeat(400)], truncate: false });
    assert.equal(rerank.status, 413, JSON.stringify(rerank.body));
    assert.match(rerank.body.error, /`inputs` 1 must have less than \d+ tokens/);
    assert.equal(await batchesRun(ranker), rankerBatches, '/rerank too: nothing ran');
    for (const truncate of [undefined, true]) assert.equal((await predict({ inputs: long, ...(truncate === undefined ? {} : { truncate }) })).status, 200);
    const right = await predict({ inputs: long, raw_scores: true, truncation_direction: 'Right' });
    const left = await predict({ inputs: long, raw_scores: true, truncation_direction: 'left' });
    const defaulted = await predict({ inputs: long, raw_scores: true });
    assert.notDeepEqual(left.body, right.body, 'Left keeps the end (the response), Right its start');
    assert.deepEqual(defaulted.body, right.body, "TEI's default direction is Right");
    const [kept] = await rawScoresWithKey(service, [{ prompt: 'question', response: long[1] as string }], 'left');
    const leftScores = Object.fromEntries((left.body as Prediction[]).map((p) => [p.label, p.score]));
    assert.ok(close(leftScores.helpful as number, kept?.helpful as number));
  });

  test("errors are TEI's {error, error_type} with TEI's statuses", async () => {
    const cases: [unknown, number, string, RegExp?][] = [
      [{ inputs: ['a', 'b', 'c'] }, 422, 'Validation'],
      [{ inputs: [] }, 422, 'Validation'],
      [{}, 422, 'Validation'],
      [{ inputs: '' }, 400, 'Empty', /cannot be empty/],
      [{ inputs: Array.from({ length: 9 }, () => ['x']) }, 413, 'Validation', /batch size 9 > maximum allowed batch size 8/],
      [{ inputs: 'x', parameters: { top_k: 1 } }, 422, 'Validation', /`parameters`/],
      [{ inputs: 'x', model: 'nope' }, 404, 'Validation'],
    ];
    for (const [payload, status, type, message] of cases) {
      const reply = await post<{ error: string; error_type: string }>(service, '/predict', payload, auth);
      assert.equal(reply.status, status, JSON.stringify(payload));
      assert.deepEqual(Object.keys(reply.body).sort(), ['error', 'error_type']);
      assert.equal(reply.body.error_type, type, JSON.stringify(payload));
      if (message) assert.match(reply.body.error, message);
    }
    const noKey = await post<{ error: string; error_type: string }>(service, '/predict', { inputs: 'x' });
    assert.equal(noKey.status, 401);
    assert.equal(typeof noKey.body.error, 'string');
    const bytes = await service.app.inject({ method: 'POST', url: '/predict', payload: '{"inputs": ', headers: { ...auth, 'content-type': 'application/json' } });
    assert.equal(bytes.statusCode, 400);
    assert.equal(bytes.json<{ error_type: string }>().error_type, 'Validation');
    // What the scorer's other failures become (TEI's ErrorType → StatusCode).
    assert.deepEqual(teiError(429, 'overloaded'), { status: 429, type: 'Overloaded' });
    assert.deepEqual(teiError(500, 'inference_failed'), { status: 424, type: 'Backend' });
    assert.deepEqual(teiError(503, 'shutting_down'), { status: 503, type: 'Unhealthy' });
    assert.deepEqual(teiError(400, 'invalid_item'), { status: 422, type: 'Tokenizer' });
  });

  test("TEI /rerank {query, texts}: ranks best first, raw_scores, return_text; a multi-head model is TEI's 424", async () => {
    const texts = ['Yes.', 'No.', 'Water is wet.'];
    const reply = await post<{ index: number; score: number; text?: string }[]>(ranker, '/rerank', { query: 'Is water wet?', texts, return_text: true });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const raw = await rawScoresWithKey(ranker, texts.map((response) => ({ prompt: 'Is water wet?', response })));
    const order = raw.map((r, i) => [i, r.relevance as number] as const).sort((a, b) => b[1] - a[1]);
    assert.deepEqual(reply.body.map((r) => r.index), order.map(([i]) => i));
    assert.equal(reply.body[0]?.text, texts[order[0]?.[0] as number]);
    assert.ok(close(reply.body[0]?.score as number, sigmoid(order[0]?.[1] as number)));
    const rawScoresReply = await post<{ index: number; score: number; text?: string }[]>(ranker, '/rerank', { query: 'Is water wet?', texts, raw_scores: true });
    assert.ok(close(rawScoresReply.body[0]?.score as number, order[0]?.[1] as number));
    assert.equal(rawScoresReply.body[0]?.text, undefined);
    const multi = await post<{ error: string; error_type: string }>(service, '/rerank', { query: 'q', texts: ['a'] }, auth);
    assert.equal(multi.status, 424);
    assert.equal(multi.body.error_type, 'Backend');
    const empty = await post<{ error_type: string }>(ranker, '/rerank', { query: 'q', texts: [] });
    assert.deepEqual([empty.status, empty.body.error_type], [413, 'Validation']);
  });
});

/** /v1/score raw rewards of one-model services, by objective (optionally with a truncation side). */
async function rawScoresWithKey(service: Service, items: object[], truncation?: 'left' | 'right'): Promise<Record<string, number>[]> {
  const reply = await service.app.inject({
    method: 'POST',
    url: '/v1/score',
    payload: { items, ...(truncation ? { truncation } : {}) },
    headers: { authorization: 'Bearer k' },
  });
  assert.equal(reply.statusCode, 200, reply.body);
  return reply.json<{ results: { objectives: Record<string, { raw: number }> }[] }>().results.map((r) =>
    Object.fromEntries(Object.entries(r.objectives).map(([k, v]) => [k, v.raw])),
  );
}
