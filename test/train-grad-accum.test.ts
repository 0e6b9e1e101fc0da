// Gradient accumulation (--grad-accum, src/training/step.ts AccumulatingStep): one optimizer step
// over micro-batches a and b equals one step of the fused step graph on a and b concatenated —
// loss, gradient norm, clipping, AdamW moments and parameters — also with unequal micro-batch
// sizes, over two steps of the LR schedule, for a full model and with LoRA; and a run with
// accumulation resumes on the same trajectory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { weightsToTensors, type ParamTensors } from '../src/training/evaluate.js';
import { lossConfig } from '../src/training/losses.js';
import { initialTrainable, resolveLora, trainableSpecs, type LoraSettings } from '../src/training/lora.js';
import { DEFAULT_OPTIMIZER, makeStepBatch, trainLoop, type TrainExample } from '../src/training/loop.js';
import { defaultModelConfig, initWeights, seededRandom, type ModelWeights, type RewardModelConfig } from '../src/training/model.js';
import { AccumulatingStep, TrainStep, zeroMoments, type StepGraphOptions, type TrainState } from '../src/training/step.js';

const sizes = { vocabSize: 31, dModel: 16, nLayers: 2, nHeads: 4, dMlp: 24, maxLength: 16, numObjectives: 1 };
const gpt2 = defaultModelConfig({ ...sizes });
const llama = defaultModelConfig({
  ...sizes, arch: 'llama', llama: { nKvHeads: 2, headDim: 4, ropeTheta: 10000, lmHead: 'tied', attentionBias: false, mlpBias: false },
});

function examples(n: number, rand: () => number): TrainExample[] {
  const row = (): number[] => Array.from({ length: 2 + Math.floor(rand() * 10) }, () => 1 + Math.floor(rand() * (sizes.vocabSize - 1)));
  return Array.from({ length: n }, () => ({ chosen: row(), rejected: row(), truncated: false, margin: rand() < 0.5 ? 0.5 : 0, objective: 0 }));
}

function state(params: ParamTensors): TrainState {
  return { params: new Map(params), m: zeroMoments(params), v: zeroMoments(params), step: 0 };
}

/**
 * The largest |x − y| over every tensor of two states; for the moments relative to the largest
 * |y| over all tensors. A per-tensor scale would not do: a gradient that nearly cancels (ln_f.b
 * under BT, where ∂L/∂r_c = −∂L/∂r_r) is the difference of large sums, whose last float32 bits
 * depend on the order they are added in.
 */
function compare(a: TrainState, b: TrainState): { params: number; m: number; v: number } {
  const worst = (x: ParamTensors, y: ParamTensors, relative: boolean): number => {
    let scale = 0;
    for (const t of y.values()) for (const q of t.data as Float32Array) scale = Math.max(scale, Math.abs(q));
    let w = 0;
    for (const [name, t] of y) {
      const p = x.get(name)!.data as Float32Array;
      (t.data as Float32Array).forEach((q, i) => (w = Math.max(w, Math.abs(p[i]! - q))));
    }
    return relative ? w / scale : w;
  };
  return { params: worst(a.params, b.params, false), m: worst(a.m, b.m, true), v: worst(a.v, b.v, true) };
}

async function accumulatedEqualsConcatenated(
  t: { diagnostic(message: string): void }, config: RewardModelConfig, params: ParamTensors, lora: { settings: LoraSettings; base: ModelWeights } | undefined,
): Promise<void> {
  const options: StepGraphOptions = {
    config, loss: lossConfig({ method: 'bt', margin: true, centering: 0.01 }),
    // A clip small enough to act, so that it must act on the whole gradient, once.
    optimizer: { maxGradNorm: 0.05, weightDecay: 0.1 }, schedule: { peakLr: 1e-3, warmupSteps: 2, totalSteps: 4, minLr: 1e-4 },
    ...(lora ? { lora } : {}),
  };
  const fused = await TrainStep.create(options);
  const accumulating = await AccumulatingStep.create(options);
  const one = state(params);
  const two = state(params);
  const rand = seededRandom(21);
  for (let step = 1; step <= 2; step++) {
    // Unequal micro-batches: the weights P_i/P, not 1/n, make the mean over all pairs.
    const a = examples(3, rand);
    const b = examples(2, rand);
    const r1 = await fused.run(one, makeStepBatch([...a, ...b], 1, 0));
    const r2 = await accumulating.run(two, [makeStepBatch(a, 1, 0), makeStepBatch(b, 1, 0)]);
    assert.equal(two.step, step);
    assert.ok(Math.abs(r1.loss - r2.loss) < 1e-6, `step ${step} loss ${r1.loss} vs ${r2.loss}`);
    assert.ok(Math.abs(r1.gradNorm - r2.gradNorm) < 1e-5 * r1.gradNorm, `step ${step} grad norm ${r1.gradNorm} vs ${r2.gradNorm}`);
    assert.ok(r1.gradNorm > 0.05, 'the clip acts');
    assert.equal(r2.lr, r1.lr, 'the schedule counts optimizer steps');
    assert.deepEqual(Object.keys(r2.terms).sort(), Object.keys(r1.terms).sort());
    for (const k of Object.keys(r1.terms)) assert.ok(Math.abs(r1.terms[k]! - r2.terms[k]!) < 1e-6, `term ${k}`);
    assert.deepEqual([...r2.chosen].map((x) => x.toFixed(4)), [...r1.chosen].map((x) => x.toFixed(4)));
    const d = compare(two, one);
    t.diagnostic(`step ${step} (lr ${r1.lr.toExponential(2)}): loss ${r1.loss.toFixed(6)} vs ${r2.loss.toFixed(6)}, grad norm ${r1.gradNorm.toFixed(5)} vs ${r2.gradNorm.toFixed(5)}; ` +
      `max |Δparam| ${d.params.toExponential(2)}, moments relative ${d.m.toExponential(2)} / ${d.v.toExponential(2)}`);
    assert.ok(d.params < 1e-6, `step ${step}: parameters differ by ${d.params}`);
    assert.ok(d.m < 1e-5 && d.v < 1e-5, `step ${step}: moments differ by ${d.m}, ${d.v}`);
  }
  // And the step moved the parameters by far more than the tolerance.
  let moved = 0;
  for (const [name, t0] of params) {
    const p = one.params.get(name)!.data as Float32Array;
    (t0.data as Float32Array).forEach((x, i) => (moved = Math.max(moved, Math.abs(x - p[i]!))));
  }
  assert.ok(moved > 1e-4, `the steps moved the parameters (${moved})`);
  await fused.release();
  await accumulating.release();
}

test('GPT-2, every weight: accumulating micro-batches of 3 and 2 pairs equals one step on the 5 pairs', async (t) => {
  await accumulatedEqualsConcatenated(t, gpt2, weightsToTensors(gpt2, initWeights(gpt2, 4)), undefined);
});

test('Llama with LoRA: accumulation composes with the adapters (frozen base in both graphs)', async (t) => {
  const lora = resolveLora(llama, { rank: 4, targets: ['q', 'v', 'up'] })!;
  const base = initWeights(llama, 5);
  const trained = initialTrainable(llama, lora, base, 6);
  // Non-zero B, so that A gets a gradient from the first step.
  const rand = seededRandom(7);
  for (const [name, data] of trained) if (name.endsWith('.lora_B')) data.forEach((_, i) => (data[i] = 0.2 * (2 * rand() - 1)));
  const params = new Map(trainableSpecs(llama, lora).map((s) => [s.name, new ort.Tensor('float32', trained.get(s.name)!, s.shape)]));
  await accumulatedEqualsConcatenated(t, llama, params, { settings: lora, base });
});

test('a run with --grad-accum 2 logs every pair of the step and resumes on the same trajectory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-accum-'));
  try {
    const data = { train: examples(20, seededRandom(9)), validation: examples(6, seededRandom(10)) };
    const init = initWeights(gpt2, 11);
    const base = {
      model: gpt2, loss: lossConfig({ method: 'bt' }), optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3, warmup: 1 }, steps: 4, batchSize: 3, gradAccum: 2,
      evalEvery: 2, seed: 3, progress: false as const, log: () => {},
    };
    const whole = await trainLoop({ ...base, checkpointDir: join(dir, 'a') }, data, init, 0);
    // 20 pairs make 7 micro-batches of 3 or 2 (one short one, in shuffled position): a step's record counts both of its micro-batches.
    assert.deepEqual(whole.steps.map((s) => s.pairs).sort(), [5, 6, 6, 6]);
    await trainLoop({ ...base, checkpointDir: join(dir, 'b'), stopAfter: 2 }, data, init, 0);
    const resumed = await trainLoop({ ...base, checkpointDir: join(dir, 'b'), resume: join(dir, 'b', 'last.safetensors') }, data, init, 0);
    assert.deepEqual(resumed.steps.map((s) => s.loss), whole.steps.slice(2).map((s) => s.loss));
    await assert.rejects(trainLoop({ ...base, gradAccum: 1, checkpointDir: join(dir, 'c'), resume: join(dir, 'b', 'last.safetensors') }, data, init, 0),
      /--grad-accum 2 \(this run: 1\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
