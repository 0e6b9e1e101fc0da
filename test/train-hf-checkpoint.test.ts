// --init-from with Hugging Face folders (src/training/hf-checkpoint.ts): what the loader refuses,
// naming the config field, instead of loading a model that computes something else; what it
// reports as ignored; the score layer's labels; and `rmserve train`'s pipeline starting from a
// Llama and a Qwen3 fixture with the tokenizer and chat template taken from the folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { RewardForward, weightsToTensors } from '../src/training/evaluate.js';
import { loadHfCheckpoint, pretrainedStart } from '../src/training/hf-checkpoint.js';
import { DEFAULT_TRAIN_OPTIONS, runTraining } from '../src/training/pipeline.js';
import { readPreferenceFile } from '../src/training/data.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

const FIXTURES = 'test/fixtures/train';
const tmp = mkdtempSync(join(tmpdir(), 'rmserve-hf-ckpt-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let copies = 0;
/** A copy of a fixture folder with config.json changed by `edit`. */
function variant(name: string, edit: (config: Record<string, unknown>) => void): string {
  const dir = join(tmp, `${name}-${copies++}`);
  cpSync(join(FIXTURES, name), dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(config);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const BT = { maxLength: 64, needsLmHead: false };

test('the loader reads every fixture: architecture, head, LM head and stored dtype', () => {
  const llama = loadHfCheckpoint(join(FIXTURES, 'llama'), { maxLength: 64, needsLmHead: true });
  assert.equal(llama.arch, 'llama');
  assert.equal(llama.task, 'causal-lm');
  assert.deepEqual(
    { ...llama.model.llama, ropeScaling: undefined },
    { nKvHeads: 2, headDim: 8, ropeTheta: 10000, ropeScaling: undefined, lmHead: 'untied', attentionBias: false, mlpBias: false },
  );
  assert.equal(llama.model.llama?.ropeScaling?.type, 'llama3');
  assert.ok(llama.params.has('lm_head'));
  // Under BT the untied head is left out of the model (no [V, C] table crossing every step).
  const llamaBt = loadHfCheckpoint(join(FIXTURES, 'llama'), BT);
  assert.equal(llamaBt.model.llama?.lmHead, 'none');
  assert.ok(!llamaBt.params.has('lm_head'));
  assert.ok(llamaBt.notes.some((n) => /lm_head\.weight: not loaded/.test(n)));

  const qwen2 = loadHfCheckpoint(join(FIXTURES, 'qwen2'), BT);
  assert.equal(qwen2.task, 'sequence-classification');
  assert.deepEqual(qwen2.score?.labels, ['helpful', 'harmless']);
  assert.equal(qwen2.model.llama?.lmHead, 'tied');
  assert.ok(qwen2.notes.some((n) => n === 'weights stored as BF16, widened to float32'), qwen2.notes.join('\n'));
  assert.ok(qwen2.notes.some((n) => /sliding_window 4096: not used/.test(n)));

  const qwen3 = loadHfCheckpoint(join(FIXTURES, 'qwen3'), BT);
  assert.equal(qwen3.model.llama?.headDim, 16);
  assert.ok(qwen3.notes.some((n) => n === 'weights stored as F16, widened to float32'));
  assert.ok(qwen3.notes.some((n) => /no effect on the graph: .*bos_token_id/.test(n)), 'what is ignored is said');

  const gpt2 = loadHfCheckpoint(join(FIXTURES, 'gpt2'), BT);
  assert.equal(gpt2.arch, 'gpt2');
  assert.equal(gpt2.model.activation, 'gelu_new');
});

test('config values the graph does not implement are refused with the field named', () => {
  const refused: Array<[string, (c: Record<string, unknown>) => void, RegExp, number?]> = [
    ['llama', (c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4 }; }, /rope_scaling\.rope_type "yarn" is not supported/],
    ['llama', (c) => { c.rope_scaling = null; c.rope_parameters = { rope_type: 'longrope', rope_theta: 1e4 }; }, /rope_parameters\.rope_type "longrope"/],
    ['llama', (c) => { c.hidden_act = 'gelu'; }, /hidden_act "gelu" is not supported: the MLP is SwiGLU/],
    ['llama', (c) => { c.partial_rotary_factor = 0.5; }, /partial_rotary_factor 0\.5/],
    ['llama', (c) => { c.max_position_embeddings = 32; }, /max_position_embeddings 32 .*--max-length 64/],
    ['llama', (c) => { c.tie_word_embeddings = true; }, /tie_word_embeddings true .*lm_head\.weight differs/],
    ['llama', (c) => { c.num_key_value_heads = 3; }, /num_key_value_heads 3/],
    ['llama', (c) => { c.quantization_config = { quant_method: 'gptq' }; }, /quantization_config/],
    ['llama', (c) => { c.model_type = 'mistral'; }, /model_type "mistral" is not supported/],
    ['qwen3', (c) => { c.tie_word_embeddings = false; }, /tie_word_embeddings false .*no lm_head\.weight/],
    ['qwen3', (c) => { c.use_sliding_window = true; c.sliding_window = 16; c.max_window_layers = 0; }, /sliding_window 16 is not supported/],
    ['qwen2', (c) => { c.layer_types = ['sliding_attention', 'full_attention']; c.sliding_window = 8; }, /sliding_window 8/],
    ['qwen2', (c) => { c.id2label = { 0: 'a', 1: 'b', 2: 'c' }; }, /num_labels 3 .*score\.weight has 2 rows/],
    ['gpt2', (c) => { c.activation_function = 'relu'; }, /activation_function "relu"/],
    ['gpt2', (c) => { c.scale_attn_by_inverse_layer_idx = true; }, /scale_attn_by_inverse_layer_idx/],
    ['gpt2', () => {}, /n_positions 64 .*--max-length 128 is longer/, 128],
  ];
  for (const [name, edit, message, maxLength] of refused) {
    const dir = variant(name, edit);
    assert.throws(() => loadHfCheckpoint(dir, { ...BT, maxLength: maxLength ?? 64 }), message, `${name}: ${message}`);
  }
});

test('values that change nothing are accepted and said so; unknown fields are listed as not read', () => {
  const wide = loadHfCheckpoint(variant('qwen3', (c) => { c.use_sliding_window = true; c.sliding_window = 128; c.max_window_layers = 0; }), BT);
  assert.ok(wide.notes.some((n) => /sliding_window 128 ≥ --max-length 64: it masks nothing/.test(n)));
  const dynamic = loadHfCheckpoint(variant('llama', (c) => { c.rope_scaling = { rope_type: 'dynamic', factor: 2 }; }), BT);
  assert.equal(dynamic.model.llama?.ropeScaling, undefined);
  assert.ok(dynamic.notes.some((n) => /rope_type dynamic is the default RoPE/.test(n)));
  const extra = loadHfCheckpoint(variant('llama', (c) => { c.some_future_field = 1; }), BT);
  assert.ok(extra.notes.some((n) => n === 'config.json, not read: some_future_field'));
});

test('the score layer: columns follow the objectives by id2label name; other names are refused', () => {
  const dir = join(FIXTURES, 'qwen2');
  const both = pretrainedStart(dir, { ...BT, vocabSize: 300, objectives: ['harmless', 'helpful'], head: 'linear', log: () => {} });
  const score = both.checkpoint.score!;
  const head = both.params.get('head.out.w')!;
  assert.deepEqual(head.shape, [32, 2]);
  // column 0 is id2label's 1 (harmless), column 1 its 0 (helpful)
  for (let r = 0; r < 32; r++) {
    assert.equal(head.data[r * 2], score.weight.data[r * 2 + 1]);
    assert.equal(head.data[r * 2 + 1], score.weight.data[r * 2]);
  }
  const one = pretrainedStart(dir, { ...BT, vocabSize: 300, objectives: ['helpful'], head: 'linear', log: () => {} });
  assert.deepEqual(one.params.get('head.out.w')!.shape, [32, 1]);
  assert.throws(() => pretrainedStart(dir, { ...BT, vocabSize: 300, objectives: ['reward'], head: 'linear', log: () => {} }),
    /score\.weight scores \["helpful","harmless"\] \(config\.json id2label\); the data's objectives are \["reward"\]/);
  const lines: string[] = [];
  const mlp = pretrainedStart(dir, { ...BT, vocabSize: 300, objectives: ['reward'], head: 'mlp', log: (l) => lines.push(l) });
  assert.ok(!mlp.params.has('head.out.w'));
  assert.ok(lines.some((l) => /score\.weight: not used, --head mlp/.test(l)));
  // A classifier without an LM head cannot give the log-probs HaF-RM and GRM read.
  assert.throws(() => loadHfCheckpoint(join(FIXTURES, 'llama-bias'), { maxLength: 64, needsLmHead: true }), /does not have .*ForCausalLM/);
});

/** A fixture copy with a tokenizer and a chat template the way transformers ≥ 4.43 saves them. */
function withTokenizer(name: string): { dir: string; template: string } {
  const dir = variant(name, () => {});
  const pairs = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz').slice(0, 60);
  const bpe = trainByteLevelBpe(pairs.flatMap((p) => [p.chosen, p.rejected]), { vocabSize: 300 });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(bpe.tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...bpe.tokenizerConfig }));
  const template = '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}';
  writeFileSync(join(dir, 'chat_template.jinja'), template);
  return { dir, template };
}

for (const [name, method] of [['qwen3', 'bt'], ['llama', 'haf']] as const) {
  test(`runTraining --init-from the ${name} fixture (${method}): the folder's tokenizer and chat template, and an export that scores like the trainer`, async () => {
    const { dir, template } = withTokenizer(name);
    const lines: string[] = [];
    const out = join(tmp, 'models', `${name}-rm`, '1');
    const r = await runTraining({
      ...DEFAULT_TRAIN_OPTIONS, data: ['data/hh-rlhf/harmless-base-test.jsonl.gz'], out, checkpointDir: join(tmp, `ckpt-${name}`),
      initFrom: dir, maxLength: 64, steps: 2, batchSize: 4, maxTrainPairs: 8, evalEvery: 0, report: false, threads: 1,
      loss: { ...DEFAULT_TRAIN_OPTIONS.loss, method }, log: (l) => lines.push(l), progress: false,
    });
    assert.equal(r.config.arch, name);
    assert.equal(r.config.vocabSize, 320, 'the checkpoint\'s vocabulary, larger than the tokenizer\'s 300');
    assert.equal(r.config.llama?.lmHead, method === 'haf' ? 'untied' : 'tied');
    assert.ok(lines.some((l) => l.startsWith(`--init-from ${dir}: `)), lines.join('\n'));
    const manifest = JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as { provenance: { tokenizer: { path: string }; init: { from: string } } };
    assert.equal(manifest.provenance.tokenizer.path, join(dir, 'tokenizer.json'));
    assert.equal(manifest.provenance.init.from, dir);
    const tokenizerConfig = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
    assert.equal(tokenizerConfig.chat_template, template, 'chat_template.jinja is the export\'s chat template');
    const hf = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model_type: string; architectures: string[]; tie_word_embeddings: boolean };
    assert.equal(hf.model_type, name);
    assert.equal(hf.architectures[0], `${name === 'llama' ? 'Llama' : 'Qwen3'}ForSequenceClassification`);

    // The exported graph (weights as initializers) scores as the trainer's evaluation graph does.
    const rows = [[5, 17, 200, 31], [9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11]];
    const forward = await RewardForward.create(r.config);
    const trainer = await forward.score(weightsToTensors(r.config, r.loop.best), rows, 0);
    await forward.release();
    const session = await ort.InferenceSession.create(readFileSync(join(out, 'model.onnx')));
    for (const [i, row] of rows.entries()) {
      const got = await session.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(row, BigInt), [1, row.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(row.length).fill(1n), [1, row.length]),
      });
      assert.ok(Math.abs((got.logits!.data as Float32Array)[0]! - trainer[i]![0]!) < 1e-5);
    }
    await session.release();
  });
}
