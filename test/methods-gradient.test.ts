import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { buildLossGradGraph } from '../src/training/step.js';
import { responseTokens } from '../src/training/batch.js';
import { lossConfig, lossNeeds, type LossConfig } from '../src/training/losses.js';
import { defaultModelConfig, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import { checkStepGradients, float64Params } from './helpers/step-gradcheck.js';

// The new loss paths of issue 4 against central differences in float64 on a tiny decoder:
// PCRM (δ* fed per pair), HaF-RM and GRM (log π through the tied LM head, masked to response
// tokens, with and without the fed reference log-probs). Rows have different lengths and
// response starts, so padding and the prompt part of the mask are exercised.
async function checkMethodGradient(config: RewardModelConfig, loss: LossConfig, seed: number): Promise<void> {
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
  // δ* small enough that the prior term is active on some pairs
  if (needs.deltaStar) fixed.delta_star = new ort.Tensor('float64', Float64Array.of(0.3, 2, 0.05), [3]);
  if (needs.logp) {
    const tokens = responseTokens(rows, starts, T, needs.logpRejected ? 6 : 3);
    fixed.lm_positions = tokens.positions;
    fixed.lm_targets = tokens.targets;
    fixed.lm_segments = new ort.Tensor('float64', Float64Array.from(tokens.segments.data as Float32Array), tokens.segments.dims);
  }
  if (needs.reference) fixed.ref_logp = new ort.Tensor('float64', Float64Array.of(-6, -3, -5, -1, -8, -4), [6]);
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
