import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/training/graph/builder.js';
import { MODEL_OPSET, buildForward, declareParamInputs, defaultModelConfig, initWeights, parameterSpecs, type ModelWeights, type RewardModelConfig } from '../src/training/model.js';

// An independent, loop-by-loop GPT-2 forward in float64 (nanoGPT's equations), to check the
// graph's architecture: pre-LN blocks, causal attention, tanh GELU, tied LM head, reward at the
// last real token.
function referenceForward(c: RewardModelConfig, w: ModelWeights, ids: number[]): { reward: number[]; logits: number[][] } {
  const C = c.dModel, H = c.nHeads, D = C / H, T = ids.length;
  const W = (name: string): Float32Array => w.get(name)!;
  const layerNorm = (x: number[], g: Float32Array, b: Float32Array): number[] => {
    const mu = x.reduce((s, v) => s + v, 0) / x.length;
    const va = x.reduce((s, v) => s + (v - mu) ** 2, 0) / x.length;
    return x.map((v, i) => ((v - mu) / Math.sqrt(va + c.layerNormEps)) * g[i]! + b[i]!);
  };
  const linear = (x: number[], wt: Float32Array, b: Float32Array | undefined, nOut: number): number[] =>
    Array.from({ length: nOut }, (_, j) => x.reduce((s, v, i) => s + v * wt[i * nOut + j]!, b ? b[j]! : 0));
  const gelu = (u: number): number => 0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u ** 3)));
  let x = ids.map((id, t) => Array.from({ length: C }, (_, i) => W('tok_emb')[id * C + i]! + W('pos_emb')[t * C + i]!));
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blocks.${l}`;
    const qkv = x.map((row) => linear(layerNorm(row, W(`${p}.ln1.g`), W(`${p}.ln1.b`)), W(`${p}.attn.qkv.w`), W(`${p}.attn.qkv.b`), 3 * C));
    const y = Array.from({ length: T }, () => new Array<number>(C).fill(0));
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qkv[t]![h * D + d]! * qkv[s]![C + h * D + d]!;
          return dot / Math.sqrt(D);
        });
        const m = Math.max(...scores);
        const e = scores.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) for (let d = 0; d < D; d++) y[t]![h * D + d]! += (e[s]! / z) * qkv[s]![2 * C + h * D + d]!;
      }
    }
    x = x.map((row, t) => {
      const a = linear(y[t]!, W(`${p}.attn.proj.w`), W(`${p}.attn.proj.b`), C);
      return row.map((v, i) => v + a[i]!);
    });
    x = x.map((row) => {
      const u = linear(layerNorm(row, W(`${p}.ln2.g`), W(`${p}.ln2.b`)), W(`${p}.mlp.fc.w`), W(`${p}.mlp.fc.b`), c.dMlp).map(gelu);
      const m = linear(u, W(`${p}.mlp.proj.w`), W(`${p}.mlp.proj.b`), C);
      return row.map((v, i) => v + m[i]!);
    });
  }
  const hf = x.map((row) => layerNorm(row, W('ln_f.g'), W('ln_f.b')));
  const logits = hf.map((row) => Array.from({ length: c.vocabSize }, (_, v) => row.reduce((s, val, i) => s + val * W('tok_emb')[v * C + i]!, 0)));
  return { reward: linear(hf[T - 1]!, W('head.out.w'), undefined, c.numObjectives), logits };
}

async function forwardSession(c: RewardModelConfig, lmHead: boolean): Promise<ort.InferenceSession> {
  const b = new GraphBuilder('fwd', { opset: MODEL_OPSET });
  const p = declareParamInputs(b, c);
  const out = buildForward(b, c, p, b.input('input_ids', 'int64', ['batch', 'seq']), b.input('attention_mask', 'int64', ['batch', 'seq']), { lmHead });
  b.output(out.rewards, 'logits');
  if (lmHead) b.output(out.lmLogits!, 'lm_logits');
  return ort.InferenceSession.create(b.toModelProto());
}

function feeds(c: RewardModelConfig, w: ModelWeights, rows: number[][], T: number): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {};
  for (const s of parameterSpecs(c)) f[s.name] = new ort.Tensor('float32', w.get(s.name)!, s.shape);
  const ids = new BigInt64Array(rows.length * T).fill(3n);
  const mask = new BigInt64Array(rows.length * T);
  rows.forEach((r, i) => r.forEach((id, t) => { ids[i * T + t] = BigInt(id); mask[i * T + t] = 1n; }));
  f.input_ids = new ort.Tensor('int64', ids, [rows.length, T]);
  f.attention_mask = new ort.Tensor('int64', mask, [rows.length, T]);
  return f;
}

const config = defaultModelConfig({ vocabSize: 13, dModel: 12, nLayers: 2, nHeads: 3, maxLength: 9, numObjectives: 2 });
const weights = initWeights({ ...config, initStd: 0.3 }, 5);
const rows = [[1, 4, 2, 8, 5], [7, 3], [12, 0, 6, 6, 9, 11, 2]];

test('the forward graph matches a loop-by-loop GPT-2 reference, padded rows included', async () => {
  const session = await forwardSession(config, true);
  const out = await session.run(feeds(config, weights, rows, 8));
  const rewards = out.logits!.data as Float32Array;
  const lm = out.lm_logits!.data as Float32Array;
  rows.forEach((row, i) => {
    const ref = referenceForward(config, weights, row);
    ref.reward.forEach((r, k) => assert.ok(Math.abs(rewards[i * 2 + k]! - r) < 1e-4, `row ${i} reward ${k}: ${rewards[i * 2 + k]} vs ${r}`));
    ref.logits.forEach((l, t) => l.forEach((v, j) => {
      const got = lm[(i * 8 + t) * config.vocabSize + j]!;
      assert.ok(Math.abs(got - v) < 1e-4, `row ${i} t ${t} logit ${j}: ${got} vs ${v}`);
    }));
  });
  await session.release();
});

test('attention is causal, and the reward does not depend on the LM head being built', async () => {
  const withLm = await forwardSession(config, true);
  const without = await forwardSession(config, false);
  const a = await withLm.run(feeds(config, weights, [[1, 4, 2, 8, 5]], 5));
  const b = await withLm.run(feeds(config, weights, [[1, 4, 2, 11, 0]], 5));
  const la = a.lm_logits!.data as Float32Array;
  const lb = b.lm_logits!.data as Float32Array;
  const V = config.vocabSize;
  for (let i = 0; i < 3 * V; i++) assert.equal(la[i], lb[i], 'positions 0..2 do not see tokens 3..4');
  assert.ok(Math.abs(la[4 * V]! - lb[4 * V]!) > 1e-4, 'position 4 does see them');
  const r = (await without.run(feeds(config, weights, [[1, 4, 2, 8, 5]], 5))).logits!.data as Float32Array;
  const rl = a.logits!.data as Float32Array;
  for (let k = 0; k < 2; k++) assert.ok(Math.abs(r[k]! - rl[k]!) < 1e-5);
  await withLm.release();
  await without.release();
});
