import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { gradients } from '../src/training/graph/autodiff.js';
import { GraphBuilder } from '../src/training/graph/builder.js';
import { buildLossGradGraph } from '../src/training/step.js';
import { MODEL_OPSET, buildForward, declareParamInputs, defaultModelConfig, initWeights, parameterSpecs, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import type { LossConfig } from '../src/training/losses.js';
import { checkStepGradients, float64Params } from './helpers/step-gradcheck.js';

// Whole-model gradient vs central differences, in float64 (every op of the model has a float64
// CPU kernel in ORT). A tiny decoder on a right-padded batch of 3 pairs with different lengths,
// margins and two objectives, so masking, pooling, the head and every loss term are exercised.
async function checkModelGradient(config: RewardModelConfig, loss: LossConfig, seed: number, everyParamMoves: boolean): Promise<void> {
  const session = await ort.InferenceSession.create(buildLossGradGraph(config, loss, 'float64'));
  const { specs, params } = float64Params(config, seed);

  const rand = seededRandom(seed + 1);
  const lengths = [5, 3, 6, 2, 6, 4]; // chosen rows 0..2, rejected rows 3..5
  const T = 6;
  const ids = new BigInt64Array(6 * T);
  const mask = new BigInt64Array(6 * T);
  lengths.forEach((n, r) => {
    for (let t = 0; t < T; t++) {
      ids[r * T + t] = BigInt(Math.floor(rand() * config.vocabSize));
      mask[r * T + t] = t < n ? 1n : 0n;
    }
  });
  const fixed: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [6, T]),
    attention_mask: new ort.Tensor('int64', mask, [6, T]),
    margin: new ort.Tensor('float64', Float64Array.of(0.5, 0, -0.25), [3]),
    objective: new ort.Tensor('float64', Float64Array.of(1, 0, 0, 1, 1, 0), [3, 2]),
  };
  const { checked } = await checkStepGradients(session, fixed, specs, params, rand, loss.method, (s, g, big) => {
    // Only with centering does every parameter move the loss: a pure difference loss cannot see
    // a shift shared by both responses (the last bias, and ln_f.b under a linear head).
    if (everyParamMoves) assert.ok(Math.abs(g[big]!) > 1e-6, `${s.name} gets a gradient`);
  });
  assert.equal(checked, 3 * specs.length);
  await session.release();
}

const tiny = defaultModelConfig({ vocabSize: 11, dModel: 8, nLayers: 2, nHeads: 2, maxLength: 8, numObjectives: 2, headHidden: 5 });

test('whole-model gradient (linear head, BT with margin and centering) matches central differences', async () => {
  for (const seed of [1, 2]) await checkModelGradient(tiny, { method: 'bt', margin: true, centering: 0.01, labelSmoothing: 0 }, seed, true);
});

// (The erf GELU has no float64 Erf kernel in ORT; its rule is checked in float32 by the graph tests.)
test('whole-model gradient (MLP head, label smoothing) matches central differences', async () => {
  await checkModelGradient({ ...tiny, head: 'mlp' }, { method: 'labelsmooth', margin: false, centering: 0, labelSmoothing: 0.1 }, 3, false);
});

test('gradient through the tied LM head (token log-probs + reward) matches central differences', async () => {
  // The regularisers of GRM/HaF-RM read token log-probs from the LM head, which shares tok_emb
  // with the input embedding: its gradient is the sum of both uses.
  const c = { ...tiny, numObjectives: 1 };
  const b = new GraphBuilder('lm_grad', { opset: MODEL_OPSET });
  const params = declareParamInputs(b, c, 'float64');
  const ids = b.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['rows', 'seq']);
  const next = b.input('next_ids', 'int64', ['rows', 'seq', 1]);
  const { rewards, lmLogits } = buildForward(b, c, params, ids, mask, { lmHead: true });
  const logp = b.op('GatherElements', [b.logSoftmax(lmLogits!, -1), next], { axis: 2 }); // [R,T,1]
  const loss = b.add(b.reduceMean(logp, [0, 1, 2], false), b.reduceSum(rewards, [0, 1], false));
  const specs = parameterSpecs(c);
  const grads = gradients(b, loss, specs.map((s) => params.get(s.name)!));
  b.output(loss, 'loss');
  b.output(grads.get('tok_emb')!, 'grad');
  const session = await ort.InferenceSession.create(b.toModelProto());

  const w = initWeights({ ...c, initStd: 0.2 }, 4);
  const p = new Map(specs.map((s) => [s.name, Float64Array.from(w.get(s.name)!)]));
  const tokens = [1, 5, 2, 9, 4, 3, 7, 7];
  const feeds = (): Record<string, ort.Tensor> => {
    const f: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens.map(BigInt)), [2, 4]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 0].map(BigInt)), [2, 4]),
      next_ids: new ort.Tensor('int64', BigInt64Array.from([5, 2, 9, 0, 3, 7, 7, 0].map(BigInt)), [2, 4, 1]),
    };
    for (const s of specs) f[s.name] = new ort.Tensor('float64', p.get(s.name)!, s.shape);
    return f;
  };
  const g = (await session.run(feeds(), ['grad'])).grad!.data as Float64Array;
  const table = p.get('tok_emb')!;
  const h = 1e-6;
  // rows of tokens that are inputs, rows that are only predicted, and one that is neither (3, 10)
  for (const i of [1 * 8 + 2, 9 * 8 + 5, 7 * 8 + 0, 0 * 8 + 7, 10 * 8 + 3]) {
    const x = table[i]!;
    table[i] = x + h;
    const up = ((await session.run(feeds(), ['loss'])).loss!.data as Float64Array)[0]!;
    table[i] = x - h;
    const down = ((await session.run(feeds(), ['loss'])).loss!.data as Float64Array)[0]!;
    table[i] = x;
    const numeric = (up - down) / (2 * h);
    assert.ok(Math.abs(numeric - g[i]!) <= 1e-6 + 1e-4 * Math.abs(numeric), `tok_emb[${i}]: autodiff ${g[i]} vs ${numeric}`);
    assert.ok(Math.abs(g[i]!) > 1e-8, `tok_emb[${i}] gets a gradient (every row is in the softmax)`);
  }
  await session.release();
});
