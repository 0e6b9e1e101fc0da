// The fused LM-head log-prob (TokenLogProb, src/training/graph/ops/token-logprob.ts) against the
// composition it replaced in responseLogProbs — MatMul with Wᵀ, LogSoftmax, GatherElements,
// differentiated node by node: the same token log-probs (large logits included), and the same
// HaF-RM and GRM step losses and gradients for every parameter, in float64 and in the step's
// float32. (Its gradient against finite differences: test/graph-gradients.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { gradients } from '../src/training/graph/autodiff.js';
import { GraphBuilder, type DType, type Value } from '../src/training/graph/builder.js';
import { lossConfig, type LossConfig } from '../src/training/losses.js';
import { MODEL_OPSET, declareParamInputs, defaultModelConfig, parameterSpecs, seededRandom, type RewardModelConfig } from '../src/training/model.js';
import { buildLossGradGraph } from '../src/training/step.js';
import { compositionPairLoss } from './helpers/logprob-composition.js';
import { float64Params, stepGradInputs } from './helpers/step-gradcheck.js';

test('TokenLogProb gives LogSoftmax + GatherElements values, finite at logits in the hundreds', async () => {
  const [N, C, V] = [6, 5, 11];
  for (const dtype of ['float64', 'float32'] as const) {
    const b = new GraphBuilder('token_logprob_values', { opset: MODEL_OPSET });
    const h = b.input('h', dtype, [N, C]);
    const w = b.input('w', dtype, [V, C]);
    const y = b.input('y', 'int64', [N]);
    b.output(b.op('TokenLogProb', [h, w, y]), 'fused');
    const composed = b.op('GatherElements', [b.logSoftmax(b.matmul(h, b.transpose(w, [1, 0]))), b.unsqueeze(y, [1])], { axis: 1 });
    b.output(b.squeeze(composed, [1]), 'composed');
    const session = await ort.InferenceSession.create(b.toModelProto());
    const rand = seededRandom(7);
    for (const scale of [1, 60]) { // at 60 the logits reach a few hundred: exp would overflow without the max shift
      const make = (n: number): Float32Array | Float64Array => {
        const v = Float64Array.from({ length: n }, () => scale * (2 * rand() - 1));
        return dtype === 'float64' ? v : Float32Array.from(v);
      };
      const out = await session.run({
        h: new ort.Tensor(dtype, make(N * C), [N, C]), w: new ort.Tensor(dtype, make(V * C), [V, C]),
        y: new ort.Tensor('int64', BigInt64Array.of(0n, 10n, 3n, 3n, 7n, 1n), [N]),
      });
      const fused = out.fused!.data as Float32Array | Float64Array;
      const ref = out.composed!.data as Float32Array | Float64Array;
      const tol = dtype === 'float64' ? 1e-12 : 1e-5;
      fused.forEach((v, i) => {
        assert.ok(Number.isFinite(v) && v <= 0, `${dtype} scale ${scale}: log-prob ${v}`);
        assert.ok(Math.abs(v - ref[i]!) <= tol * Math.max(1, Math.abs(ref[i]!)), `${dtype} scale ${scale} token ${i}: fused ${v} vs composed ${ref[i]}`);
      });
    }
    await session.release();
  }
});

/** buildLossGradGraph with the old composition's log-probs (compositionPairLoss). */
function compositionLossGradGraph(c: RewardModelConfig, loss: LossConfig, dtype: DType): Uint8Array {
  const b = new GraphBuilder('composition_loss_grad', { opset: MODEL_OPSET });
  const params = declareParamInputs(b, c, dtype);
  const total = compositionPairLoss(b, c, params, loss, dtype);
  const specs = parameterSpecs(c);
  const grads = gradients(b, total, specs.map((s) => params.get(s.name) as Value));
  b.output(total, 'loss');
  for (const s of specs) b.output(grads.get(s.name) as Value, `grad.${s.name}`);
  return b.toModelProto();
}

const tiny = defaultModelConfig({ vocabSize: 13, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 8, numObjectives: 2, headHidden: 5 });
const untiedLlama = defaultModelConfig({
  vocabSize: 13, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 8, numObjectives: 2, arch: 'llama',
  llama: { nKvHeads: 1, headDim: 4, ropeTheta: 10000, lmHead: 'untied', attentionBias: false, mlpBias: false },
});
const cases: { name: string; config: RewardModelConfig; loss: LossConfig }[] = [
  { name: 'HaF-RM, tied head', config: tiny, loss: lossConfig({ method: 'haf', haf: { rmRatio: 1, dpoRatio: 1, beta: 0.5 } }) },
  { name: 'HaF-RM, Llama with an untied head', config: untiedLlama, loss: lossConfig({ method: 'haf', haf: { rmRatio: 1, dpoRatio: 1, beta: 0.5 } }) },
  { name: 'GRM sft (chosen rows only)', config: { ...tiny, head: 'mlp' }, loss: lossConfig({ method: 'grm', grm: { alpha: 0.5, beta: 0.5, reg: 'sft' } }) },
  { name: 'GRM dpo', config: { ...tiny, head: 'mlp' }, loss: lossConfig({ method: 'grm', grm: { alpha: 0.5, beta: 0.5, reg: 'dpo' } }) },
];

for (const { name, config, loss } of cases) {
  test(`${name}: step loss and gradients equal the LogSoftmax composition's (float64 and float32)`, async () => {
    const { specs, params } = float64Params(config, 3);
    const { fixed } = stepGradInputs(config, loss, seededRandom(4));
    for (const dtype of ['float64', 'float32'] as const) {
      const cast = (t: ort.Tensor): ort.Tensor => (dtype === 'float32' && t.type === 'float64'
        ? new ort.Tensor('float32', Float32Array.from(t.data as Float64Array), t.dims) : t);
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(fixed)) feeds[k] = cast(t);
      for (const s of specs) feeds[s.name] = cast(new ort.Tensor('float64', params.get(s.name)!, s.shape));
      const run = async (model: Uint8Array): Promise<ort.InferenceSession.OnnxValueMapType> => {
        const session = await ort.InferenceSession.create(model);
        const out = await session.run(Object.fromEntries(session.inputNames.map((n) => [n, feeds[n]!])));
        await session.release();
        return out;
      };
      const fused = await run(buildLossGradGraph(config, loss, dtype));
      const composed = await run(compositionLossGradGraph(config, loss, dtype));
      // float64: both are exact to rounding; float32: the orders of summation differ (Gemm with
      // transB against MatMul of a transpose, one softmax pass against two), a few ulps of the
      // largest entry of each tensor.
      const rtol = dtype === 'float64' ? 1e-11 : 2e-5;
      for (const key of ['loss', ...specs.map((s) => `grad.${s.name}`)]) {
        const a = fused[key]!.data as Float32Array | Float64Array;
        const e = composed[key]!.data as Float32Array | Float64Array;
        assert.equal(a.length, e.length, key);
        // (head.out.b's gradient is 0 in both: a bias cancels in r_c − r_r)
        const scale = Math.max(...Array.from(e, Math.abs));
        a.forEach((v, i) => assert.ok(Math.abs(v - e[i]!) <= rtol * scale, `${name} ${dtype} ${key}[${i}]: fused ${v} vs composition ${e[i]}`));
      }
      const head = config.llama?.lmHead === 'untied' ? 'grad.lm_head' : 'grad.tok_emb';
      assert.ok((fused[head]!.data as Float32Array | Float64Array).some((v) => Math.abs(v) > 1e-3), `${name}: the LM head's weight gets a gradient`);
    }
  });
}
