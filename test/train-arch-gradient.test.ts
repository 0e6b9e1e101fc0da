// Whole-model gradients of the Llama-family decoders (src/training/arch/) against central
// differences in float64, on a right-padded batch of 3 pairs with different lengths and response
// starts: grouped-query attention (2 query heads per key/value head), RoPE with llama3 scaling,
// RMSNorm, SwiGLU, every optional bias, Qwen3's q/k norms with a head width apart from C/H, and
// the untied LM head, which HaF-RM's DPO term reads (so log-probs flow through lm_head, not tok_emb).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { lossConfig, type LossConfig } from '../src/training/losses.js';
import { defaultModelConfig, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import { buildLossGradGraph } from '../src/training/step.js';
import { checkStepGradients, float64Params, stepGradInputs } from './helpers/step-gradcheck.js';

async function checkArchGradient(config: RewardModelConfig, loss: LossConfig, seed: number): Promise<Set<string>> {
  const session = await ort.InferenceSession.create(buildLossGradGraph(config, loss, 'float64'));
  const { specs, params } = float64Params(config, seed);
  const rand = seededRandom(seed + 1);
  const { fixed } = stepGradInputs(config, loss, rand);
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
