import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hfGpt2ParamTable, loadHfGpt2, parseHfGpt2Config } from '../src/training/hf-gpt2.js';
import { defaultModelConfig, initFromPretrained, seededRandom } from '../src/training/model.js';
import { DEFAULT_TRAIN_OPTIONS, runTraining } from '../src/training/pipeline.js';
import { writeSafetensors, type NamedTensor } from '../src/training/safetensors.js';
import { readPreferenceFile } from '../src/training/data.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

// A made-up Hugging Face GPT-2 folder (HF tensor names, "transformer." prefix as
// GPT2LMHeadModel saves them), small enough to write in a test.
function writeFakeGpt2(dir: string, vocab: number): void {
  const json = { n_embd: 16, n_layer: 1, n_head: 2, n_positions: 32, vocab_size: vocab, activation_function: 'gelu_new' };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  const rand = seededRandom(9);
  const tensors: Record<string, NamedTensor> = {};
  for (const { hfName, shape } of hfGpt2ParamTable(parseHfGpt2Config(json))) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors[`transformer.${hfName}`] = { dtype: 'F32', shape, data: Float32Array.from({ length: n }, () => rand() - 0.5) };
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
}

test('--init-from copies GPT-2 weights, cuts positions, extends the token table, and trains', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-init-'));
  try {
    writeFakeGpt2(dir, 300);
    const loaded = loadHfGpt2(dir);
    const config = defaultModelConfig({ vocabSize: 384, dModel: 16, nLayers: 1, nHeads: 2, dMlp: 64, maxLength: 24 });
    const w = initFromPretrained(config, loaded.params, 1);
    assert.deepEqual(Array.from(w.get('blocks.0.attn.qkv.w')!), Array.from(loaded.params.get('blocks.0.attn.qkv.w')!.data));
    assert.deepEqual(Array.from(w.get('pos_emb')!), Array.from(loaded.params.get('pos_emb')!.data.subarray(0, 24 * 16)));
    assert.deepEqual(Array.from(w.get('tok_emb')!.subarray(0, 300 * 16)), Array.from(loaded.params.get('tok_emb')!.data));
    assert.ok(w.get('tok_emb')!.subarray(300 * 16).some((v) => v !== 0), 'rows past the checkpoint vocabulary are initialised');
    assert.throws(() => initFromPretrained({ ...config, maxLength: 40 }, loaded.params, 1), /positions/);

    // End to end: a user tokenizer + the pretrained folder through the pipeline.
    const pairs = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz').slice(0, 60);
    const bpe = trainByteLevelBpe(pairs.flatMap((p) => [p.chosen, p.rejected]), { vocabSize: 384 });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(bpe.tokenizerJson));
    const r = await runTraining({
      ...DEFAULT_TRAIN_OPTIONS, data: ['data/hh-rlhf/harmless-base-test.jsonl.gz'], out: join(dir, 'models', 'gpt2ish', '1'),
      checkpointDir: join(dir, 'ckpt'), tokenizer: join(dir, 'tokenizer.json'), initFrom: dir, maxLength: 24,
      steps: 2, batchSize: 4, maxTrainPairs: 8, evalEvery: 0, log: () => {}, progress: false,
    });
    assert.equal(r.config.dModel, 16);
    assert.equal(r.config.vocabSize, 384);
    const manifest = JSON.parse(readFileSync(join(r.outDir, 'rmserve.json'), 'utf8')) as { provenance: { init: { from: string } } };
    assert.equal(manifest.provenance.init.from, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
