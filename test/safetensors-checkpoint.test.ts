import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint, type Param } from '../src/training/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../src/training/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'rmserve-checkpoint-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function param(shape: number[], seed: number): Param {
  const n = shape.reduce((a, b) => a * b, 1);
  // values with full float32 mantissas, so any rounding through float64 text would show
  return { shape, data: Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(seed * 1000 + i) / 3)) };
}

test('params, AdamW moments, step and state round-trip bit-exactly', () => {
  const params = new Map([
    ['tok_emb', param([5, 4], 1)],
    ['blocks.0.attn.qkv.w', param([4, 12], 2)],
    ['ln_f.g', param([4], 3)],
  ]);
  const m = new Map([...params].map(([k, p], i) => [k, param(p.shape, 10 + i)]));
  const v = new Map([...params].map(([k, p], i) => [k, param(p.shape, 20 + i)]));
  const state = { config: { dModel: 4 }, rng: [1, 2, 3, 4], epoch: 2, best: { accuracy: 0.625, step: 40 } };
  const path = join(dir, 'step-57.safetensors');
  saveCheckpoint(path, { params, adam: { m, v }, step: 57, state });

  const loaded = loadCheckpoint(path);
  assert.equal(loaded.step, 57);
  assert.deepEqual(loaded.state, state);
  assert.deepEqual(loaded.params, params);
  assert.deepEqual(loaded.adam?.m, m);
  assert.deepEqual(loaded.adam?.v, v);

  // The weights sit under their own names, readable by any safetensors reader.
  const raw = readSafetensors(path);
  assert.equal(raw.metadata.format, 'rmserve-checkpoint/1');
  assert.deepEqual(raw.tensors['ln_f.g'].data, params.get('ln_f.g')?.data);
  assert.ok('adam_m.tok_emb' in raw.tensors && 'adam_v.tok_emb' in raw.tensors);
});

test('a plain weights file loads as step 0 without moments', () => {
  const path = join(dir, 'weights.safetensors');
  writeSafetensors(path, { w: { dtype: 'F16', shape: [2], data: Uint16Array.of(0x3c00, 0xbc00) } }, { format: 'pt' });
  const loaded = loadCheckpoint(path);
  assert.equal(loaded.step, 0);
  assert.equal(loaded.adam, undefined);
  assert.deepEqual(loaded.state, {});
  assert.deepEqual(Array.from(loaded.params.get('w')?.data ?? []), [1, -1]);
});

test('inconsistent checkpoints are refused', () => {
  const params = new Map([['a', param([2], 1)]]);
  const save = (m: Map<string, Param>, v: Map<string, Param>): void =>
    saveCheckpoint(join(dir, 'x.safetensors'), { params, adam: { m, v }, step: 1, state: {} });
  assert.throws(() => save(new Map([['a', param([3], 1)]]), new Map([['a', param([2], 1)]])), /moment m of a has shape \[3\], parameter \[2\]/);
  assert.throws(() => save(new Map([['zz', param([2], 1)]]), new Map([['a', param([2], 1)]])), /moment m for unknown parameter zz/);
  assert.throws(() => save(new Map(), new Map()), /moments cover 0\/0 of 1 parameters/);

  // Written by hand: moments for one of two parameters.
  const partial = join(dir, 'partial.safetensors');
  const f32 = (p: Param) => ({ dtype: 'F32' as const, shape: p.shape, data: p.data });
  writeSafetensors(partial, { a: f32(param([2], 1)), b: f32(param([3], 2)), 'adam_m.a': f32(param([2], 3)), 'adam_v.a': f32(param([2], 4)) }, { step: '3' });
  assert.throws(() => loadCheckpoint(partial), /moments cover 1\/1 of 2 parameters/);
  const foreign = join(dir, 'foreign.safetensors');
  writeSafetensors(foreign, { a: f32(param([2], 1)) }, { format: 'rmserve-checkpoint/9' });
  assert.throws(() => loadCheckpoint(foreign), /format rmserve-checkpoint\/9 is not rmserve-checkpoint\/1/);
});
