import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { buildLossGradGraph } from '../src/training/step.js';
import { lossConfig, lossNeeds, type LossConfig } from '../src/training/losses.js';
import { defaultModelConfig, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import { checkStepGradients, float64Params, stepGradInputs } from './helpers/step-gradcheck.js';

// The new loss paths of issue 4 against central differences in float64 on a tiny decoder:
// PCRM (δ* fed per pair), HaF-RM and GRM (log π through the tied LM head, masked to response
// tokens, with and without the fed reference log-probs). Rows have different lengths and
// response starts, so padding and the prompt part of the mask are exercised.
async function checkMethodGradient(config: RewardModelConfig, loss: LossConfig, seed: number): Promise<void> {
  const session = await ort.InferenceSession.create(buildLossGradGraph(config, loss, 'float64'));
  const needs = lossNeeds(loss);
  const { specs, params } = float64Params(config, seed);

  const rand = seededRandom(seed + 1);
  const { fixed, ids } = stepGradInputs(config, loss, rand);
  assert.deepEqual([...session.inputNames].filter((n) => n in fixed).sort(), Object.keys(fixed).sort(), 'the graph takes exactly the inputs the loss needs');

  const { analytic } = await checkStepGradients(session, fixed, specs, params, rand, loss.method);
  // The LM-head losses reach the token table through the head as well as the input embedding:
  // rows of tokens that never occur in the batch still get a gradient (every row is in the softmax).
  if (needs.logp) {
    const g = analytic['grad.tok_emb']!.data as Float64Array;
    const seen = new Set([...ids].map(Number));
    const unseen = [...Array(config.vocabSize).keys()].find((v) => !seen.has(v));
    if (unseen !== undefined) assert.ok(g.subarray(unseen * config.dModel, (unseen + 1) * config.dModel).some((v) => Math.abs(v) > 1e-10), 'an unseen token row gets an LM-head gradient');
  }
  await session.release();
}

const tiny = defaultModelConfig({ vocabSize: 13, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 8, numObjectives: 2, headHidden: 5 });

test('PCRM gradient (δ* input) matches central differences', async () => {
  for (const seed of [1, 2]) await checkMethodGradient(tiny, lossConfig({ method: 'pcrm' }), seed);
});

test('HaF-RM gradient (BT + DPO through the LM head, reference fed) matches central differences', async () => {
  // large ratios so the DPO term is not drowned by BT in the check
  for (const seed of [3, 4]) await checkMethodGradient(tiny, lossConfig({ method: 'haf', haf: { rmRatio: 1, dpoRatio: 1, beta: 0.5 } }), seed);
});

test('GRM gradients (MLP head; sft, plain-sft, dpo, dpo-noref regularisers) match central differences', async () => {
  const mlp = { ...tiny, head: 'mlp' as const };
  for (const reg of ['sft', 'plain-sft', 'dpo', 'dpo-noref'] as const) {
    await checkMethodGradient(mlp, lossConfig({ method: 'grm', grm: { alpha: 0.5, beta: 0.5, reg } }), 5);
  }
});
