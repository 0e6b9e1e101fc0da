// Whole-model gradients of the Llama-family decoders (src/training/arch/) against central
// differences in float64, on a right-padded batch of 3 pairs with different lengths and response
// starts: grouped-query attention (2 query heads per key/value head), RoPE with llama3 scaling,
// RMSNorm, SwiGLU, every optional bias, Qwen3's q/k norms with a head width apart from C/H, and
// the untied LM head, which HaF-RM's DPO term reads (so log-probs flow through lm_head, not tok_emb).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { responseTokens } from '../src/training/batch.js';
import { lossConfig, lossNeeds, type LossConfig } from '../src/training/losses.js';
import { defaultModelConfig, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import { buildLossGradGraph } from '../src/training/step.js';
import { checkStepGradients, float64Params } from './helpers/step-gradcheck.js';

async function checkArchGradient(config: RewardModelConfig, loss: LossConfig, seed: number): Promise<Set<string>> {
  const session = await ort.InferenceSession.create(buildLossGradGraph(config, loss, 'float64'));
  const needs = lossNeeds(loss);
  const { specs, params } = float64Params(config, seed);
  const rand = seededRandom(seed + 1);
  const lengths = [5, 3, 6, 2, 6, 4]; // chosen rows 0..2, rejected rows 3..5
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
  if (needs.logp) {
    const tokens = responseTokens(rows, starts, T, needs.logpRejected ? 6 : 3);
    fixed.lm_positions = tokens.positions;
    fixed.lm_targets = tokens.targets;
    fixed.lm_segments = new ort.Tensor('float64', Float64Array.from(tokens.segments.data as Float32Array), tokens.segments.dims);
  }
  if (needs.reference) fixed.ref_logp = new ort.Tensor('float64', Float64Array.of(-6, -3, -5, -1, -8, -4), [6]);
  const moved = new Set<string>();
  const { checked } = await checkStepGradients(session, fixed, specs, params, rand, `${config.arch} ${loss.method}`, (s, g, big) => {
    if (Math.abs(g[big]!) > 1e-8) moved.add(s.name);
  });
  assert.equal(checked, 3 * specs.length);
  await session.release();
  return moved;
}

const base = { vocabSize: 13, dModel: 8, nLayers: 2, nHeads: 4, dMlp: 12, maxLength: 8, numObjectives: 2 };
const family = {
  nKvHeads: 2, headDim: 2, ropeTheta: 10000, lmHead: 'untied' as const, attentionBias: true, mlpBias: true,
  // original 8 positions: with D = 4 and θ = 10 the two frequencies fall on either side of the blend
  ropeScaling: { type: 'llama3' as const, factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8 },
};
const llama = defaultModelConfig({ ...base, arch: 'llama', llama: { ...family, headDim: 4, ropeTheta: 10 } });
const qwen2 = defaultModelConfig({ ...base, arch: 'qwen2', llama: { ...family, headDim: 2, lmHead: 'tied', ropeScaling: undefined } });
// H·D = 4·6 = 24 ≠ C = 8, as Qwen3 allows
const qwen3 = defaultModelConfig({ ...base, arch: 'qwen3', llama: { ...family, headDim: 6, attentionBias: false, ropeScaling: { type: 'linear', factor: 2 } } });

const bt: LossConfig = lossConfig({ method: 'bt', margin: true, centering: 0.01 });
const haf: LossConfig = lossConfig({ method: 'haf', haf: { rmRatio: 1, dpoRatio: 1, beta: 0.5 } });

for (const config of [llama, qwen2, qwen3]) {
  test(`${config.arch}: whole-model gradient (BT with margin and centering) matches central differences`, async () => {
    const moved = await checkArchGradient(config, bt, 1);
    // With centering every parameter moves the loss but the untied LM head, which BT never reads.
    assert.ok(!moved.has('lm_head'), 'BT does not read the LM head');
    assert.ok(moved.has('blocks.1.mlp.down.w') && moved.has('norm_f.g') && moved.has('blocks.0.attn.k.w'), [...moved].join(', '));
  });
  test(`${config.arch}: whole-model gradient (HaF-RM: BT + DPO through the LM head) matches central differences`, async () => {
    const moved = await checkArchGradient(config, haf, 2);
    if (config.llama?.lmHead === 'untied') assert.ok(moved.has('lm_head'), 'the DPO term reaches the untied LM head');
  });
}
