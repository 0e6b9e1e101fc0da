import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type NamedTensor } from '../src/training/safetensors.js';
import { loadHfGpt2, parseHfGpt2Config } from '../src/training/hf-gpt2.js';

const root = mkdtempSync(join(tmpdir(), 'rmserve-hf-gpt2-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const H = 8;
const L = 2;
const P = 6;
const V = 11;
// The fields of a real HF gpt2 config.json, scaled down.
const configJson = {
  activation_function: 'gelu_new',
  architectures: ['GPT2LMHeadModel'],
  attn_pdrop: 0.1,
  bos_token_id: 50256,
  embd_pdrop: 0.1,
  eos_token_id: 50256,
  initializer_range: 0.02,
  layer_norm_epsilon: 1e-5,
  model_type: 'gpt2',
  n_ctx: P,
  n_embd: H,
  n_head: 2,
  n_layer: L,
  n_positions: P,
  vocab_size: V,
};

/** Distinct values per tensor and element, so any swapped or transposed tensor shows. */
function filled(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => seed + i / 1024);
}

/** HF name → tensor, for a tiny GPT-2, plus the name we expect it under. */
function hfTensors(): { tensors: Record<string, NamedTensor>; expected: Map<string, string> } {
  const shapes: Array<[string, string, number[]]> = [
    ['wte.weight', 'tok_emb', [V, H]],
    ['wpe.weight', 'pos_emb', [P, H]],
    ['ln_f.weight', 'ln_f.g', [H]],
    ['ln_f.bias', 'ln_f.b', [H]],
  ];
  for (let i = 0; i < L; i++) {
    shapes.push(
      [`h.${i}.ln_1.weight`, `blocks.${i}.ln1.g`, [H]],
      [`h.${i}.ln_1.bias`, `blocks.${i}.ln1.b`, [H]],
      [`h.${i}.attn.c_attn.weight`, `blocks.${i}.attn.qkv.w`, [H, 3 * H]],
      [`h.${i}.attn.c_attn.bias`, `blocks.${i}.attn.qkv.b`, [3 * H]],
      [`h.${i}.attn.c_proj.weight`, `blocks.${i}.attn.proj.w`, [H, H]],
      [`h.${i}.attn.c_proj.bias`, `blocks.${i}.attn.proj.b`, [H]],
      [`h.${i}.ln_2.weight`, `blocks.${i}.ln2.g`, [H]],
      [`h.${i}.ln_2.bias`, `blocks.${i}.ln2.b`, [H]],
      [`h.${i}.mlp.c_fc.weight`, `blocks.${i}.mlp.fc.w`, [H, 4 * H]],
      [`h.${i}.mlp.c_fc.bias`, `blocks.${i}.mlp.fc.b`, [4 * H]],
      [`h.${i}.mlp.c_proj.weight`, `blocks.${i}.mlp.proj.w`, [4 * H, H]],
      [`h.${i}.mlp.c_proj.bias`, `blocks.${i}.mlp.proj.b`, [H]],
    );
  }
  const tensors: Record<string, NamedTensor> = {};
  const expected = new Map<string, string>();
  shapes.forEach(([hf, ours, shape], k) => {
    tensors[hf] = { dtype: 'F32', shape, data: filled(shape, 10 * (k + 1)) };
    expected.set(ours, hf);
  });
  return { tensors, expected };
}

function checkpoint(name: string, tensors: Record<string, NamedTensor>, config: object = configJson): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

test('GPT2LMHeadModel-style checkpoint ("transformer." prefix, mask buffers, lm_head) maps to our names', () => {
  const { tensors, expected } = hfTensors();
  const prefixed: Record<string, NamedTensor> = {};
  for (const [name, t] of Object.entries(tensors)) prefixed[`transformer.${name}`] = t;
  for (let i = 0; i < L; i++) {
    prefixed[`transformer.h.${i}.attn.bias`] = { dtype: 'F32', shape: [1, 1, P, P], data: new Float32Array(P * P) };
  }
  prefixed['lm_head.weight'] = tensors['wte.weight'];
  const { config, params, ignored } = loadHfGpt2(checkpoint('lm-head', prefixed));

  assert.deepEqual(config, {
    dModel: H,
    nLayers: L,
    nHeads: 2,
    maxPositions: P,
    vocabSize: V,
    dFF: 4 * H,
    layerNormEpsilon: 1e-5,
    activation: 'gelu_new',
  });
  assert.deepEqual(ignored, ['lm_head.weight']);
  assert.equal(params.size, 4 + 12 * L);
  for (const [ours, hf] of expected) {
    const p = params.get(ours);
    assert.ok(p, `missing ${ours}`);
    assert.deepEqual(p.shape, tensors[hf].shape, ours);
    assert.deepEqual(p.data, tensors[hf].data, `${ours} is not ${hf}`);
  }
});

test('bare names, half-precision tensors and sharded checkpoints load too', () => {
  const { tensors } = hfTensors();
  // 1.5 and -2 as F16 bit patterns
  tensors['ln_f.bias'] = { dtype: 'F16', shape: [H], data: new Uint16Array(H).fill(0x3e00) };
  tensors['ln_f.weight'] = { dtype: 'BF16', shape: [H], data: new Uint16Array(H).fill(0xc000) };
  const bare = loadHfGpt2(checkpoint('bare-half', tensors));
  assert.deepEqual(Array.from(bare.params.get('ln_f.b')?.data ?? []), new Array(H).fill(1.5));
  assert.deepEqual(Array.from(bare.params.get('ln_f.g')?.data ?? []), new Array(H).fill(-2));
  assert.deepEqual(bare.ignored, []);

  const dir = join(root, 'sharded');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(configJson));
  const names = Object.keys(tensors);
  const shards = [names.slice(0, 10), names.slice(10)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, k) => {
    const file = `model-0000${k + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), Object.fromEntries(shard.map((n) => [n, tensors[n]])));
    for (const n of shard) weightMap[n] = file;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const sharded = loadHfGpt2(dir);
  assert.deepEqual([...sharded.params.keys()].sort(), [...bare.params.keys()].sort());
  assert.deepEqual(sharded.params.get('blocks.1.mlp.proj.w'), bare.params.get('blocks.1.mlp.proj.w'));
});

test('missing tensors, wrong shapes and bad configs are reported by name', () => {
  const { tensors } = hfTensors();
  const { ['h.1.mlp.c_fc.bias']: _dropped, ...missingOne } = tensors;
  assert.throws(() => loadHfGpt2(checkpoint('missing', missingOne)), /lacks 1 GPT-2 tensor\(s\): h\.1\.mlp\.c_fc\.bias/);

  const transposed = { ...tensors, 'h.0.attn.c_attn.weight': { dtype: 'F32' as const, shape: [3 * H, H], data: new Float32Array(3 * H * H) } };
  assert.throws(
    () => loadHfGpt2(checkpoint('transposed', transposed)),
    /h\.0\.attn\.c_attn\.weight has shape \[24,8\], config\.json implies \[8,24\]/,
  );

  assert.throws(() => parseHfGpt2Config({ ...configJson, n_head: 3 }), /not divisible by n_head 3/);
  assert.throws(() => parseHfGpt2Config({ ...configJson, vocab_size: undefined }), /vocab_size must be a positive integer/);
  assert.equal(parseHfGpt2Config({ ...configJson, n_positions: undefined }).maxPositions, P, 'n_ctx is the fallback');
  assert.equal(parseHfGpt2Config({ ...configJson, n_inner: 20 }).dFF, 20);

  const emptyDir = join(root, 'empty');
  mkdirSync(emptyDir);
  writeFileSync(join(emptyDir, 'config.json'), JSON.stringify(configJson));
  assert.throws(() => loadHfGpt2(emptyDir), /no model\.safetensors/);
});
