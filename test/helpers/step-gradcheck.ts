// Central-difference check of a float64 loss-and-gradient step graph (buildLossGradGraph), shared
// by the whole-model and the issue-4 method gradient tests.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { responseTokens } from '../../src/training/batch.js';
import { lossNeeds, type LossConfig } from '../../src/training/losses.js';
import { initWeights, parameterSpecs, type ParamSpec, type RewardModelConfig } from '../../src/training/model.js';

/** Float64 parameters at an init scale large enough that the loss is far from flat in every one. */
export function float64Params(config: RewardModelConfig, seed: number): { specs: ParamSpec[]; params: Map<string, Float64Array> } {
  const weights = initWeights({ ...config, initStd: 0.2 }, seed);
  const specs = parameterSpecs(config);
  const params = new Map(
    specs.map((s) => [s.name, Float64Array.from(weights.get(s.name)!, (v, i) => (s.init === 'ones' || s.init === 'zeros' ? v + 0.1 * Math.sin(i + 1) : v))]),
  );
  return { specs, params };
}

/**
 * The step graph's data inputs for a right-padded batch of 3 pairs (chosen rows 0..2, rejected
 * 3..5) of different lengths and response starts, so padding and the prompt part of the mask are
 * exercised; token ids drawn from `rand`. Adds δ*, the LM-head tokens and the reference
 * log-probs when the loss takes them.
 */
export function stepGradInputs(config: RewardModelConfig, loss: LossConfig, rand: () => number): { fixed: Record<string, ort.Tensor>; ids: BigInt64Array } {
  const needs = lossNeeds(loss);
  const lengths = [5, 3, 6, 2, 6, 4];
  const starts = [2, 1, 4, 1, 3, 2];
  const T = 6;
  const ids = new BigInt64Array(6 * T);
  const mask = new BigInt64Array(6 * T);
  const rows: number[][] = lengths.map(() => []);
  lengths.forEach((n, r) => {
    for (let t = 0; t < T; t++) {
      const id = Math.floor(rand() * config.vocabSize);
      ids[r * T + t] = BigInt(id);
      mask[r * T + t] = t < n ? 1n : 0n;
      if (t < n) rows[r]!.push(id);
    }
  });
  const fixed: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [6, T]),
    attention_mask: new ort.Tensor('int64', mask, [6, T]),
    margin: new ort.Tensor('float64', Float64Array.of(0.5, 0, -0.25), [3]),
    objective: new ort.Tensor('float64', Float64Array.of(1, 0, 0, 1, 1, 0), [3, 2]),
  };
  // δ* small enough that the prior term is active on some pairs
  if (needs.deltaStar) fixed.delta_star = new ort.Tensor('float64', Float64Array.of(0.3, 2, 0.05), [3]);
  if (needs.logp) {
    const tokens = responseTokens(rows, starts, T, needs.logpRejected ? 6 : 3);
    fixed.lm_positions = tokens.positions;
    fixed.lm_targets = tokens.targets;
    fixed.lm_segments = new ort.Tensor('float64', Float64Array.from(tokens.segments.data as Float32Array), tokens.segments.dims);
  }
  if (needs.reference) fixed.ref_logp = new ort.Tensor('float64', Float64Array.of(-6, -3, -5, -1, -8, -4), [6]);
  return { fixed, ids };
}

/**
 * Compares each parameter's `grad.<name>` output with (L(p+h) − L(p−h))/2h at its largest-gradient
 * coordinate and two random ones. `onParam` gets each gradient and its largest coordinate for
 * extra checks. Returns the analytic outputs and how many coordinates were checked.
 */
export async function checkStepGradients(
  session: ort.InferenceSession,
  fixed: Record<string, ort.Tensor>,
  specs: ParamSpec[],
  params: Map<string, Float64Array>,
  rand: () => number,
  label: string,
  onParam: (spec: ParamSpec, grad: Float64Array, big: number) => void = () => {},
): Promise<{ analytic: ort.InferenceSession.OnnxValueMapType; checked: number }> {
  const run = async (fetch: string[]) => {
    const feeds = { ...fixed };
    for (const s of specs) feeds[s.name] = new ort.Tensor('float64', params.get(s.name)!, s.shape);
    return session.run(feeds, fetch);
  };
  const analytic = await run(specs.map((s) => `grad.${s.name}`));
  const h = 1e-6;
  let checked = 0;
  for (const s of specs) {
    const p = params.get(s.name)!;
    const g = analytic[`grad.${s.name}`]!.data as Float64Array;
    let big = 0;
    for (let i = 1; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[big]!)) big = i;
    for (const i of [big, Math.floor(rand() * p.length), Math.floor(rand() * p.length)]) {
      const x = p[i]!;
      p[i] = x + h;
      const up = ((await run(['loss'])).loss!.data as Float64Array)[0]!;
      p[i] = x - h;
      const down = ((await run(['loss'])).loss!.data as Float64Array)[0]!;
      p[i] = x;
      const numeric = (up - down) / (2 * h);
      assert.ok(Math.abs(numeric - g[i]!) <= 1e-6 + 1e-4 * Math.abs(numeric), `${label} ${s.name}[${i}]: autodiff ${g[i]} vs central difference ${numeric}`);
      checked++;
    }
    onParam(s, g, big);
  }
  return { analytic, checked };
}
