import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TRAIN_OPTIONS, runTraining, type TrainRunOptions } from '../src/training/pipeline.js';
import { epochBatches } from '../src/training/loop.js';

const DATA = 'data/hh-rlhf/harmless-base-test.jsonl.gz';

function tinyRun(dir: string, overrides: Partial<TrainRunOptions>): TrainRunOptions {
  return {
    ...DEFAULT_TRAIN_OPTIONS,
    data: [DATA], out: join(dir, 'models', 'tiny', '1'), checkpointDir: join(dir, 'ckpt'),
    vocabSize: 384, dModel: 32, layers: 2, heads: 2, maxLength: 64, batchSize: 16, maxTrainPairs: 64,
    optimizer: { ...DEFAULT_TRAIN_OPTIONS.optimizer, lr: 3e-3, warmup: 4 },
    evalEvery: 0, log: () => {}, progress: false,
    ...overrides,
  };
}

test('a tiny model trained on a real HH-RLHF subset: the loss falls, metrics are logged, the model is exported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-loop-'));
  try {
    const r = await runTraining(tinyRun(dir, { steps: 40, evalEvery: 20 }));
    const losses = r.loop.steps.map((s) => s.loss);
    assert.equal(losses.length, 40);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 5));
    const last = mean(losses.slice(-10));
    assert.ok(first > 0.6 && first < 0.8, `starts near log 2: ${first}`);
    assert.ok(last < first - 0.2, `training loss falls: first 5 steps ${first.toFixed(3)}, last 10 ${last.toFixed(3)}`);

    const log = readFileSync(join(r.outDir, 'train-metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step: number });
    assert.equal(log.filter((e) => e.kind === 'train').length, 40);
    assert.deepEqual(log.filter((e) => e.kind === 'eval').map((e) => e.step), [20, 40]);
    assert.ok(existsSync(join(dir, 'ckpt', 'best.safetensors')) && existsSync(join(dir, 'ckpt', 'last.safetensors')));
    const manifest = JSON.parse(readFileSync(join(r.outDir, 'rmserve.json'), 'utf8')) as { objectives: string[]; metrics: { test: { pairs: number } }; provenance: { data: { sha256: string }[] } };
    assert.deepEqual(manifest.objectives, ['reward']);
    assert.ok(manifest.metrics.test.pairs > 100);
    assert.match(manifest.provenance.data[0]!.sha256, /^[0-9a-f]{64}$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resuming from a checkpoint continues the same trajectory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-resume-'));
  try {
    // 12 steps over 64 pairs in batches of 16: the run crosses an epoch boundary after the resume.
    const straight = await runTraining(tinyRun(join(dir, 'a'), { steps: 12 }));
    await runTraining(tinyRun(join(dir, 'b'), { steps: 12, stopAfter: 6 }));
    const resumed = await runTraining(tinyRun(join(dir, 'b'), { steps: 12, resume: join(dir, 'b', 'ckpt', 'last.safetensors') }));
    assert.deepEqual(resumed.loop.steps.map((s) => s.step), [7, 8, 9, 10, 11, 12]); // 1-based: updates done
    resumed.loop.steps.forEach((s, i) => {
      const ref = straight.loop.steps[6 + i]!;
      assert.ok(Math.abs(s.loss - ref.loss) <= 1e-6 * Math.max(1, Math.abs(ref.loss)), `step ${s.step}: resumed loss ${s.loss} vs uninterrupted ${ref.loss}`);
      assert.equal(s.lr, ref.lr);
    });
    const a = straight.loop.last.get('blocks.0.attn.qkv.w')!;
    const b = resumed.loop.last.get('blocks.0.attn.qkv.w')!;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    assert.ok(diff < 1e-6, `final weights agree (max diff ${diff})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('epoch batches are a seeded permutation, bucketed by length', () => {
  const lengths = Array.from({ length: 100 }, (_, i) => (i * 37) % 91);
  const a = epochBatches(lengths, 8, 3, 0);
  assert.deepEqual(a, epochBatches(lengths, 8, 3, 0));
  assert.notDeepEqual(a, epochBatches(lengths, 8, 3, 1));
  assert.deepEqual(a.flat().sort((x, y) => x - y), lengths.map((_, i) => i));
  // within a batch, lengths are sorted (one window of 32 batches covers all 100 pairs)
  for (const batch of a) for (let i = 1; i < batch.length; i++) assert.ok(lengths[batch[i]!]! >= lengths[batch[i - 1]!]!);
});

test('pairs with an objective train their own reward column: opposite preferences are both learned', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-multi-'));
  try {
    // Objective "up" prefers answers about apples, "down" the same answers the other way round:
    // one reward column cannot fit both, two can.
    const lines = Array.from({ length: 240 }, (_, i) => {
      const up = i % 2 === 0;
      const apples = `I like apples ${i % 11}`;
      const pears = `I like pears ${i % 7}`;
      return JSON.stringify({ prompt: `question ${i}`, chosen: up ? apples : pears, rejected: up ? pears : apples, objective: up ? 'up' : 'down' });
    });
    writeFileSync(join(dir, 'pairs.jsonl'), lines.join('\n'));
    const r = await runTraining(tinyRun(dir, {
      data: [join(dir, 'pairs.jsonl')], vocabSize: 300, maxLength: 16, maxTrainPairs: 0, steps: 40, batchSize: 16,
    }));
    assert.equal(r.config.numObjectives, 2);
    const manifest = JSON.parse(readFileSync(join(r.outDir, 'rmserve.json'), 'utf8')) as {
      objectives: string[]; metrics: { test_by_objective: Record<string, { pairs: number; accuracy: number }> };
    };
    assert.deepEqual(manifest.objectives, ['down', 'up']);
    for (const name of ['down', 'up']) {
      const m = manifest.metrics.test_by_objective[name]!;
      assert.ok(m.pairs > 5 && m.accuracy > 0.9, `${name}: accuracy ${m.accuracy} on ${m.pairs} pairs`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
