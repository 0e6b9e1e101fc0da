// The in-graph AdamW step against a plain-JS AdamW over several steps. The loss is
// L = ½ Σ A ⊙ (P − T)² per param, so the JS reference knows the gradient (A ⊙ (P − T)) exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { GraphBuilder, type DType } from '../src/training/graph/builder.js';
import { gradients } from '../src/training/graph/autodiff.js';
import { addOptimizerStep, decayByConvention, lrAt, type LrSchedule } from '../src/training/graph/optim.js';
import { rng } from './graph-gradcheck.js';

interface RefParam { name: string; shape: number[]; decay: boolean; p: number[]; m: number[]; v: number[]; a: number[]; t: number[] }

function refStep(params: RefParam[], step: number, lr: number, o: { beta1: number; beta2: number; eps: number; wd: number; maxNorm: number }): number {
  const grads = params.map((q) => q.p.map((p, i) => q.a[i]! * (p - q.t[i]!)));
  const norm = Math.sqrt(grads.flat().reduce((s, g) => s + g * g, 0));
  const clip = o.maxNorm > 0 ? Math.min(1, o.maxNorm / (norm + 1e-6)) : 1;
  params.forEach((q, k) => {
    q.p = q.p.map((p, i) => {
      const g = grads[k]![i]! * clip;
      q.m[i] = o.beta1 * q.m[i]! + (1 - o.beta1) * g;
      q.v[i] = o.beta2 * q.v[i]! + (1 - o.beta2) * g * g;
      const mh = q.m[i]! / (1 - o.beta1 ** step);
      const vh = q.v[i]! / (1 - o.beta2 ** step);
      return p - lr * (mh / (Math.sqrt(vh) + o.eps) + (q.decay ? o.wd * p : 0));
    });
  });
  return norm;
}

async function runSteps(dtype: DType, maxNorm: number, schedule: LrSchedule | undefined, seed: number): Promise<void> {
  const rand = rng(seed);
  const o = { beta1: 0.9, beta2: 0.95, eps: 1e-8, wd: 0.1, maxNorm };
  const specs = [{ name: 'w', shape: [3, 4] }, { name: 'bias', shape: [4] }, { name: 'wte', shape: [2, 3] }];
  const ref: RefParam[] = specs.map((s) => {
    const n = s.shape.reduce((x, d) => x * d, 1);
    const draw = (lo: number, hi: number): number[] => Array.from({ length: n }, () => lo + (hi - lo) * rand());
    return { ...s, decay: decayByConvention(s.name, s.shape.length), p: draw(-1, 1), m: draw(0, 0), v: draw(0, 0), a: draw(0.5, 3), t: draw(-1, 1) };
  });
  assert.deepEqual(ref.map((r) => r.decay), [true, false, false]);

  const b = new GraphBuilder('adamw');
  const params = ref.map((r) => b.input(r.name, dtype, r.shape));
  const terms = params.map((p, k) => {
    const d = b.sub(p, b.constant(dtype, ref[k]!.shape, ref[k]!.t));
    const sq = b.mul(b.mul(d, d), b.constant(dtype, ref[k]!.shape, ref[k]!.a));
    return b.op('ReduceSum', [sq], { keepdims: 0 });
  });
  const loss = b.mul(b.op('Sum', terms), b.scalar(dtype, 0.5));
  const grads = gradients(b, loss, params);
  addOptimizerStep(b, params.map((value, k) => ({ value, decay: ref[k]!.decay })), grads,
    { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.wd, maxGradNorm: maxNorm, ...(schedule ? { schedule } : {}) });
  const session = await ort.InferenceSession.create(b.toModelProto());

  const Arr = dtype === 'float64' ? Float64Array : Float32Array;
  let state = new Map<string, ort.Tensor>();
  for (const r of ref) {
    state.set(r.name, new ort.Tensor(dtype, Arr.from(r.p), r.shape));
    state.set(`adam_m.${r.name}`, new ort.Tensor(dtype, new Arr(r.p.length), r.shape));
    state.set(`adam_v.${r.name}`, new ort.Tensor(dtype, new Arr(r.p.length), r.shape));
  }
  const tol = dtype === 'float64' ? 1e-12 : 2e-6;
  let moved = 0;
  for (let step = 1; step <= 6; step++) {
    const lr = schedule ? lrAt(step, schedule) : 0.05;
    const feeds: Record<string, ort.Tensor> = Object.fromEntries(state);
    feeds['step'] = new ort.Tensor('int64', BigInt64Array.from([BigInt(step)]), []);
    if (!schedule) feeds['lr'] = new ort.Tensor(dtype, Arr.from([lr]), []);
    const out = await session.run(feeds);
    const norm = refStep(ref, step, lr, o);
    if (maxNorm > 0 && step === 1) assert.ok(norm > maxNorm, 'the case should exercise clipping');
    const close = (got: number, want: number, what: string): void =>
      assert.ok(Math.abs(got - want) <= tol * (1 + Math.abs(want)), `${dtype} step ${step} ${what}: ${got} vs ${want}`);
    close((out['grad_norm']!.data as Float64Array)[0]!, norm, 'grad_norm');
    close((out['lr_used']!.data as Float64Array)[0]!, lr, 'lr');
    const next = new Map<string, ort.Tensor>();
    for (const r of ref) {
      const p = out[`${r.name}.next`]!;
      (p.data as Float64Array).forEach((x, i) => close(x, r.p[i]!, `${r.name}[${i}]`));
      (out[`adam_m.${r.name}.next`]!.data as Float64Array).forEach((x, i) => close(x, r.m[i]!, `m ${r.name}[${i}]`));
      (out[`adam_v.${r.name}.next`]!.data as Float64Array).forEach((x, i) => close(x, r.v[i]!, `v ${r.name}[${i}]`));
      next.set(r.name, p);
      next.set(`adam_m.${r.name}`, out[`adam_m.${r.name}.next`]!);
      next.set(`adam_v.${r.name}`, out[`adam_v.${r.name}.next`]!);
      moved += Math.abs((p.data as Float64Array)[0]! - (state.get(r.name)!.data as Float64Array)[0]!);
    }
    state = next;
  }
  assert.ok(moved > 1e-3, 'the parameters should move');
}

test('AdamW in the graph matches a JS reference (float64, no clipping, fixed lr)', () => runSteps('float64', 0, undefined, 1));
test('AdamW in the graph matches a JS reference (float64, clipping active, warmup + cosine)', () =>
  runSteps('float64', 0.5, { peakLr: 0.1, warmupSteps: 2, totalSteps: 5, minLr: 0.01 }, 2));
test('AdamW in the graph matches a JS reference (float32, clipping, schedule)', () =>
  runSteps('float32', 1, { peakLr: 0.05, warmupSteps: 3, totalSteps: 8 }, 3));

test('lrAt: warmup, cosine, floor', () => {
  const s = { peakLr: 1, warmupSteps: 4, totalSteps: 12, minLr: 0.1 };
  assert.equal(lrAt(1, s), 0.25);
  assert.equal(lrAt(4, s), 1);
  assert.ok(Math.abs(lrAt(8, s) - 0.55) < 1e-12);
  assert.ok(Math.abs(lrAt(12, s) - 0.1) < 1e-12);
  assert.ok(Math.abs(lrAt(50, s) - 0.1) < 1e-12);
});
