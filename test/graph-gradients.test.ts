// Every vector-Jacobian rule against central finite differences run through ORT, at two seeds.
// float64 graphs wherever ORT's CPU kernels take double; Softplus, Erf and erf-form Gelu run in
// float32 only, so their cases cast the float64 params to float32 around the op (tolerances in
// graph-gradcheck.ts: float64 rtol 1e-5 / atol 1e-7 at h = 1e-5; float32 rtol 3e-3 / atol 3e-4 at h = 1e-3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { GraphBuilder, type Value } from '../src/training/graph/builder.js';
import { gradients } from '../src/training/graph/autodiff.js';
import { differentiableOps, OPS, type OpDefinition } from '../src/training/graph/ops/index.js';
import { GRM_REGULARISERS, lossConfig, type LossConfig } from '../src/training/losses.js';
import { defaultModelConfig } from '../src/training/model.js';
import { buildStepGraph } from '../src/training/step.js';
import { checkCase, rng, type GradCase } from './graph-gradcheck.js';

const unary = (op: string, positive = false, precision: 'float64' | 'float32' = 'float64'): GradCase => ({
  name: op, precision, params: [{ name: 'x', shape: [3, 4], positive }],
  build: (b, [x]) => b.op(op, [x!]),
});

const cases: GradCase[] = [
  // elementwise binary ops with broadcasting both ways
  { name: 'Add broadcast [2,3,4]+[3,1]', params: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [3, 1] }],
    build: (b, [x, y]) => b.add(x!, y!) },
  { name: 'Add both broadcast [1,4]+[3,1]', params: [{ name: 'a', shape: [1, 4] }, { name: 'b', shape: [3, 1] }],
    build: (b, [x, y]) => b.add(x!, y!) },
  { name: 'Sub broadcast [2,1,4]-[3,4]', params: [{ name: 'a', shape: [2, 1, 4] }, { name: 'b', shape: [3, 4] }],
    build: (b, [x, y]) => b.sub(x!, y!) },
  { name: 'Mul broadcast [2,3,4]*[1,4]', params: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [1, 4] }],
    build: (b, [x, y]) => b.mul(x!, y!) },
  { name: 'Mul scalar param', params: [{ name: 'a', shape: [3, 4] }, { name: 's', shape: [] }],
    build: (b, [x, s]) => b.mul(x!, s!) },
  { name: 'Div broadcast [3,4]/[4]', params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4], positive: true }],
    build: (b, [x, y]) => b.div(x!, y!) },
  { name: 'Sum variadic broadcast', params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4] }, { name: 'c', shape: [3, 1] }],
    build: (b, [x, y, z]) => b.op('Sum', [x!, y!, z!]) },
  { name: 'Pow constant exponent', params: [{ name: 'x', shape: [3, 4], positive: true }],
    build: (b, [x]) => b.add(b.op('Pow', [x!, b.scalar('float64', 3)]), b.op('Pow', [x!, b.scalar('float64', 0.5)])) },
  { name: 'Pow tensor exponent', params: [{ name: 'x', shape: [3, 4], positive: true }, { name: 'e', shape: [4] }],
    build: (b, [x, e]) => b.op('Pow', [x!, e!]) },
  // unary ops
  unary('Identity'), unary('Neg'), unary('Exp'), unary('Log', true), unary('Sigmoid'), unary('Tanh'),
  unary('Sqrt', true), unary('Reciprocal', true), unary('Relu'), unary('Abs'), unary('Sin'), unary('Cos'),
  { name: 'Clip', params: [{ name: 'x', shape: [3, 4] }],
    build: (b, [x]) => b.op('Clip', [b.mul(x!, b.scalar('float64', 2)), b.scalar('float64', -0.7), b.scalar('float64', 0.9)]) },
  // piecewise-constant ops: zero gradient, so the product's gradient is the op's value alone
  { name: 'Floor/Ceil/Round/Sign (zero gradient)', params: [{ name: 'x', shape: [3, 4] }],
    build: (b, [x]) => {
      const x3 = b.mul(x!, b.scalar('float64', 3));
      const steps = b.op('Sum', [b.op('Floor', [x3]), b.op('Ceil', [x3]), b.op('Round', [x3]), b.op('Sign', [x!])]);
      return b.mul(x!, steps);
    } },
  { name: 'Trilu lower', params: [{ name: 'x', shape: [2, 4, 4] }], build: (b, [x]) => b.op('Trilu', [x!], { upper: 0 }) },
  { name: 'ReduceSumSquare', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.op('ReduceSumSquare', [x!], { axes: [1], keepdims: 0 }) },
  { name: 'Flatten', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.mul(b.op('Flatten', [x!], { axis: 2 }), b.constant('float64', [1, 4], [1, -2, 3, 0.5])) },
  unary('Softplus', false, 'float32'), unary('Erf', false, 'float32'),
  { name: 'Gelu tanh form (opset 20)', opset: 20, params: [{ name: 'x', shape: [3, 4] }],
    build: (b, [x]) => b.op('Gelu', [b.mul(x!, b.scalar('float64', 2))], { approximate: 'tanh' }) },
  { name: 'Gelu erf form (opset 20, float32)', opset: 20, precision: 'float32', params: [{ name: 'x', shape: [3, 4] }],
    build: (b, [x]) => b.op('Gelu', [b.mul(x!, b.scalar('float32', 2))]) },
  // normalisations
  { name: 'Softmax last axis', params: [{ name: 'x', shape: [2, 3, 5] }],
    build: (b, [x]) => b.softmax(b.mul(x!, b.scalar('float64', 3))) },
  { name: 'Softmax axis 1', params: [{ name: 'x', shape: [2, 3, 5] }], build: (b, [x]) => b.softmax(x!, 1) },
  { name: 'LogSoftmax', params: [{ name: 'x', shape: [2, 3, 5] }], build: (b, [x]) => b.logSoftmax(x!) },
  { name: 'LayerNormalization float64 (recomputed stats)',
    params: [{ name: 'x', shape: [2, 3, 6] }, { name: 'g', shape: [6] }, { name: 'b', shape: [6] }],
    build: (b, [x, g, bb]) => b.layerNorm(x!, g!, bb!) },
  { name: 'LayerNormalization float32 (its Mean/InvStdDev outputs)', precision: 'float32',
    params: [{ name: 'x', shape: [2, 3, 6] }, { name: 'g', shape: [6] }, { name: 'b', shape: [6] }],
    build: (b, [x, g, bb]) => b.layerNorm(x!, g!, bb!) },
  { name: 'LayerNormalization over two axes, no bias', params: [{ name: 'x', shape: [2, 3, 4] }, { name: 'g', shape: [3, 4] }],
    build: (b, [x, g]) => b.op('LayerNormalization', [x!, g!, null], { axis: 1, epsilon: 1e-5 }) },
  // RMSNorm (Llama family): float64 recomputes r (ORT's double kernel keeps a float32 InvStdDev),
  // float32 reads the node's InvStdDev output; a γ of the last axis only, as the blocks use it.
  { name: 'SimplifiedLayerNormalization float64 (recomputed r)',
    params: [{ name: 'x', shape: [2, 3, 6] }, { name: 'g', shape: [6] }],
    build: (b, [x, g]) => b.op('SimplifiedLayerNormalization', [x!, g!], { axis: -1, epsilon: 1e-6 }) },
  { name: 'SimplifiedLayerNormalization float32 (its InvStdDev output)', precision: 'float32',
    params: [{ name: 'x', shape: [2, 3, 6] }, { name: 'g', shape: [6] }],
    build: (b, [x, g]) => b.op('SimplifiedLayerNormalization', [x!, g!], { axis: -1, epsilon: 1e-5 }) },
  { name: 'SimplifiedLayerNormalization of 5-D heads, tiny rows', params: [{ name: 'x', shape: [1, 2, 2, 3, 4] }, { name: 'g', shape: [4] }],
    build: (b, [x, g]) => b.op('SimplifiedLayerNormalization', [b.mul(x!, b.scalar('float64', 0.01)), g!], { axis: -1, epsilon: 1e-6 }) },
  // reductions
  { name: 'ReduceSum axis 1 keepdims 0', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.reduceSum(x!, [1], false) },
  { name: 'ReduceSum axes [0,-1] keepdims 1', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.reduceSum(x!, [0, -1], true) },
  { name: 'ReduceSum all (no axes input)', params: [{ name: 'x', shape: [2, 3] }],
    build: (b, [x]) => b.op('ReduceSum', [x!], { keepdims: 0 }) },
  { name: 'ReduceMean static', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.reduceMean(x!, [0, 2], true) },
  { name: 'ReduceMean dynamic dims', params: [{ name: 'x', shape: [2, 3, 4], declared: ['batch', 'seq', 4] }],
    build: (b, [x]) => b.reduceMean(x!, [1], false) },
  { name: 'ReduceMean opset 18 (axes input)', opset: 18, params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => b.reduceMean(x!, [-1], false) },
  // indexing
  { name: 'Gather embedding with repeated ids', params: [{ name: 'wte', shape: [5, 3] }],
    build: (b, [w]) => b.gather(w!, b.constant('int64', [2, 3], [1, 4, 1, 0, 1, 1])) },
  { name: 'Gather axis 1', params: [{ name: 'x', shape: [2, 4, 3] }],
    build: (b, [x]) => b.gather(x!, b.constant('int64', [2], [3, 3]), 1) },
  { name: 'Gather scalar index axis 1', params: [{ name: 'x', shape: [2, 4, 3] }],
    build: (b, [x]) => b.gather(x!, b.scalar('int64', 2), 1) },
  { name: 'GatherElements last-token pooling', params: [{ name: 'h', shape: [3, 4] }],
    build: (b, [h]) => b.op('GatherElements', [h!, b.constant('int64', [3, 1], [3, 0, 2])], { axis: 1 }) },
  { name: 'Where with broadcasting', params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4] }],
    build: (b, [x, y]) => b.op('Where', [b.constant('bool', [3, 1], [1, 0, 1]), x!, y!]) },
  // graph-level: the LM head's log-prob of target tokens, with its own backward rule
  // (repeated targets; logits scaled up so the softmax is far from uniform; opset 17 takes
  // ReduceLogSumExp's axes as an attribute, 18+ as an input)
  ...[17, 20].map((opset): GradCase => ({
    name: `TokenLogProb (opset ${opset})`, opset,
    params: [{ name: 'h', shape: [5, 4] }, { name: 'w', shape: [7, 4] }],
    build: (b, [h, w]) => b.op('TokenLogProb', [b.mul(h!, b.scalar('float64', 3)), w!, b.constant('int64', [5], [3, 0, 3, 6, 1])]),
  })),
  { name: 'TokenLogProb with a dynamic token axis, W also used elsewhere',
    params: [{ name: 'h', shape: [3, 4], declared: ['lm_tokens', 4] }, { name: 'w', shape: [6, 4] }],
    build: (b, [h, w]) => b.add(
      b.op('TokenLogProb', [h!, w!, b.constant('int64', [3], [5, 2, 2])]),
      b.reduceSum(b.mul(w!, w!), [0, 1], false)) },
  // shape ops
  { name: 'Reshape/Transpose/Unsqueeze/Squeeze', params: [{ name: 'x', shape: [2, 3, 4] }],
    build: (b, [x]) => {
      const r = b.reshape(x!, [4, 6]);
      const t = b.transpose(r, [1, 0]);
      const u = b.unsqueeze(t, [0, 2]);
      return b.mul(b.squeeze(u, [0]), b.reshape(b.transpose(x!, [2, 0, 1]), [6, 1, 4]));
    } },
  { name: 'Expand', params: [{ name: 'x', shape: [3, 1] }],
    build: (b, [x]) => b.op('Expand', [x!, b.ints([2, 3, 4])]) },
  { name: 'Cast round trip', precision: 'float32', params: [{ name: 'x', shape: [3, 4] }],
    build: (b, [x]) => b.mul(b.cast(b.cast(x!, 'float64'), 'float32'), x!) },
  { name: 'Slice static', params: [{ name: 'x', shape: [4, 5] }],
    build: (b, [x]) => b.op('Slice', [x!, b.ints([1, -4]), b.ints([-1, 100]), b.ints([0, 1])]) },
  { name: 'Slice dynamic dims', params: [{ name: 'x', shape: [4, 5], declared: ['n', 'm'] }],
    build: (b, [x]) => b.op('Slice', [x!, b.ints([1, -4]), b.ints([-1, 100]), b.ints([0, 1])]) },
  { name: 'Slice next-token style [:, :-1]', params: [{ name: 'x', shape: [2, 5, 3], declared: ['batch', 'seq', 3] }],
    build: (b, [x]) => b.op('Slice', [x!, b.ints([0]), b.ints([-1]), b.ints([1])]) },
  { name: 'Concat', params: [{ name: 'a', shape: [2, 3] }, { name: 'b', shape: [2, 1] }, { name: 'c', shape: [2, 2] }],
    build: (b, [x, y, z]) => b.op('Concat', [x!, y!, z!], { axis: 1 }) },
  { name: 'Split, one output unused', params: [{ name: 'x', shape: [2, 9] }],
    build: (b, [x]) => {
      const [p, , r] = b.opMulti('Split', [x!, b.ints([2, 3, 4])], 3, { axis: 1 });
      return b.op('Concat', [r!, p!], { axis: 1 });
    } },
  { name: 'Concat dynamic dims', params: [{ name: 'a', shape: [2, 3], declared: ['n', 'm'] }, { name: 'b', shape: [1, 3], declared: ['k', 3] }],
    build: (b, [x, y]) => b.op('Concat', [x!, y!], { axis: 0 }) },
  // Gemm in every transpose combination, with alpha/beta and a broadcast C
  ...[[0, 0], [1, 0], [0, 1], [1, 1]].map(([ta, tb]): GradCase => ({
    name: `Gemm transA=${ta} transB=${tb}`,
    params: [{ name: 'a', shape: ta ? [4, 3] : [3, 4] }, { name: 'b', shape: tb ? [5, 4] : [4, 5] }, { name: 'c', shape: [5] }],
    build: (b, [x, y, z]) => b.op('Gemm', [x!, y!, z!], { transA: ta!, transB: tb!, alpha: 0.5, beta: 2 }),
  })),
  // MatMul shapes
  { name: 'MatMul linear [2,3,4]x[4,5]', params: [{ name: 'a', shape: [2, 3, 4] }, { name: 'w', shape: [4, 5] }],
    build: (b, [x, w]) => b.matmul(x!, w!) },
  { name: 'MatMul 2-D', params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [4, 2] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul batched broadcast [2,1,3,4]x[3,4,5]', params: [{ name: 'a', shape: [2, 1, 3, 4] }, { name: 'b', shape: [3, 4, 5] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul grouped-query broadcast [2,2,3,4,5]x[2,2,1,5,4]', params: [{ name: 'q', shape: [2, 2, 3, 4, 5] }, { name: 'k', shape: [2, 2, 1, 5, 4] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul [3,4]x[2,4,5]', params: [{ name: 'a', shape: [3, 4] }, { name: 'b', shape: [2, 4, 5] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul vector x matrix', params: [{ name: 'a', shape: [4] }, { name: 'b', shape: [4, 5] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul batch x vector', params: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [4] }],
    build: (b, [x, y]) => b.matmul(x!, y!) },
  { name: 'MatMul dynamic batch [batch,seq,4]x[4,3]', params: [{ name: 'a', shape: [2, 3, 4], declared: ['batch', 'seq', 4] }, { name: 'w', shape: [4, 3] }],
    build: (b, [x, w]) => b.matmul(x!, w!) },
  // autodiff bookkeeping
  { name: 'fan-out and an unreached param', params: [{ name: 'x', shape: [3, 4] }, { name: 'w', shape: [4, 4] }, { name: 'unused', shape: [2] }],
    unreached: ['unused'],
    build: (b, [x, w, u]) => {
      b.neg(u!); // recorded, but not on the loss's path
      const h = b.matmul(x!, w!);
      return b.add(b.mul(h, x!), b.op('Tanh', [h]));
    } },
  { name: 'same value twice into one node', params: [{ name: 'x', shape: [3] }],
    build: (b, [x]) => b.mul(x!, x!) },
  { name: 'int path is not differentiated (Shape, Range, Cast from int)', params: [{ name: 'x', shape: [2, 3] }],
    build: (b, [x]) => {
      const n = b.cast(b.op('Size', [x!]), 'float64');
      const pos = b.cast(b.op('Range', [b.scalar('int64', 0), b.scalar('int64', 3), b.scalar('int64', 1)]), 'float64');
      return b.mul(b.mul(x!, pos), n);
    } },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences`, () => checkCase(c));
}

// A 1-layer pre-LN transformer block with causal + padding mask, tied LM head, last-token reward
// head, softmax cross-entropy on both: everything the trainer composes, in float64.
test('gradient of a 1-layer attention block with LayerNorm and softmax cross-entropy', () => checkCase({
  name: 'attention block',
  opset: 20,
  params: [
    { name: 'wte', shape: [7, 8] }, { name: 'wpe', shape: [4, 8] },
    { name: 'ln1_g', shape: [8], positive: true }, { name: 'ln1_b', shape: [8] },
    { name: 'w_qkv', shape: [8, 24] }, { name: 'b_qkv', shape: [24] }, { name: 'w_o', shape: [8, 8] },
    { name: 'ln2_g', shape: [8], positive: true }, { name: 'ln2_b', shape: [8] },
    { name: 'w_fc', shape: [8, 16] }, { name: 'w_proj', shape: [16, 8] },
    { name: 'lnf_g', shape: [8], positive: true }, { name: 'lnf_b', shape: [8] }, { name: 'w_head', shape: [8, 3] },
  ],
  build: (b, p) => {
    const [wte, wpe, ln1g, ln1b, wqkv, bqkv, wo, ln2g, ln2b, wfc, wproj, lnfg, lnfb, whead] = p as Value[] as [
      Value, Value, Value, Value, Value, Value, Value, Value, Value, Value, Value, Value, Value, Value];
    const B = 2, T = 4, C = 8, H = 2, D = C / H, V = 7;
    const ids = b.constant('int64', [B, T], [1, 5, 2, 6, 3, 3, 0, 0]);
    const mask = b.constant('int64', [B, T], [1, 1, 1, 1, 1, 1, 0, 0]);
    const f = (v: number): Value => b.scalar('float64', v);
    let x = b.add(b.gather(wte!, ids), b.gather(wpe!, b.ints([0, 1, 2, 3]))); // [B,T,C]
    // attention
    const h1 = b.layerNorm(x, ln1g!, ln1b!);
    const qkv = b.add(b.matmul(h1, wqkv!), bqkv!); // [B,T,3C]
    const heads = (v: Value): Value => b.transpose(b.reshape(v, [B, T, H, D]), [0, 2, 1, 3]); // [B,H,T,D]
    const [q, k, v] = b.opMulti('Split', [qkv, b.ints([C, C, C])], 3, { axis: 2 }).map(heads);
    const scores = b.mul(b.matmul(q!, b.transpose(k!, [0, 1, 3, 2])), f(1 / Math.sqrt(D))); // [B,H,T,T]
    const causal = b.constant('bool', [T, T], Array.from({ length: T * T }, (_, i) => (i % T <= Math.floor(i / T) ? 1 : 0)));
    const pad = b.op('Equal', [b.reshape(mask, [B, 1, 1, T]), b.scalar('int64', 1)]);
    const allowed = b.op('And', [causal, pad]);
    const att = b.softmax(b.op('Where', [allowed, scores, f(-1e4)]));
    const y = b.reshape(b.transpose(b.matmul(att, v!), [0, 2, 1, 3]), [B, T, C]);
    x = b.add(x, b.matmul(y, wo!));
    // MLP
    const h2 = b.layerNorm(x, ln2g!, ln2b!);
    x = b.add(x, b.matmul(b.op('Gelu', [b.matmul(h2, wfc!)], { approximate: 'tanh' }), wproj!));
    const hf = b.layerNorm(x, lnfg!, lnfb!); // [B,T,C]
    // tied LM head: next-token cross-entropy on real tokens
    const logits = b.matmul(hf, b.transpose(wte!, [1, 0])); // [B,T,V]
    const logp = b.logSoftmax(b.op('Slice', [logits, b.ints([0]), b.ints([-1]), b.ints([1])]));
    const next = b.unsqueeze(b.op('Slice', [ids, b.ints([1]), b.ints([T]), b.ints([1])]), [-1]);
    const tokLogp = b.squeeze(b.op('GatherElements', [logp, next], { axis: 2 }), [-1]); // [B,T-1]
    const nextMask = b.cast(b.op('Slice', [mask, b.ints([1]), b.ints([T]), b.ints([1])]), 'float64');
    const lmLoss = b.neg(b.div(b.reduceSum(b.mul(tokLogp, nextMask), [0, 1], false), b.reduceSum(nextMask, [0, 1], false)));
    void V;
    // reward head on the last real token, 3-way softmax cross-entropy
    const last = b.sub(b.reduceSum(mask, [1], true), b.scalar('int64', 1)); // [B,1]
    const lastIdx = b.op('Expand', [b.unsqueeze(last, [-1]), b.ints([B, 1, C])]);
    const pooled = b.squeeze(b.op('GatherElements', [hf, lastIdx], { axis: 1 }), [1]); // [B,C]
    const cls = b.logSoftmax(b.matmul(pooled, whead!)); // [B,3]
    const labels = b.constant('int64', [B, 1], [2, 0]);
    const ce = b.neg(b.reduceMean(b.op('GatherElements', [cls, labels], { axis: 1 }), [0, 1], false));
    return b.add(lmLoss, ce);
  },
}));

// The mask check cannot fail by chance: the node is seeded, so ORT draws the same masks in every
// process; and even unseeded, with 400 elements at ratio 0.25 the kept fraction is 0.75 ± 0.022
// (one σ), and by the Chernoff bound it leaves [0.5, 0.95] with probability < 2·e^(−57) ≈ 2e-25.
// (The old 15-element unseeded case failed ~1.3% of runs: 0.75¹⁵ ≈ 0.013 that all are kept.)
test('Dropout: identity when not training, mask/(1-ratio) when training', async () => {
  const [R, C] = [8, 50];
  const b = new GraphBuilder('dropout');
  const x = b.input('x', 'float64', [R, C]);
  const training = b.input('training', 'bool', []);
  const y = b.op('Dropout', [x, b.scalar('float64', 0.25), training], { seed: 1234 });
  const mask = b.producer(y)!.outputs[1]!;
  const loss = b.reduceSum(b.mul(y, y), [0, 1], false);
  const g = gradients(b, loss, [x]).get('x')!;
  b.output(g, 'gx');
  b.output(b.cast(mask, 'float64'), 'mask');
  b.output(y, 'y');
  const session = await ort.InferenceSession.create(b.toModelProto());
  const xs = Float64Array.from({ length: R * C }, (_, i) => (i % 15) / 7 - 1); // the old case's values, repeated
  for (const train of [false, true]) {
    const out = await session.run({
      x: new ort.Tensor('float64', xs, [R, C]), training: new ort.Tensor('bool', new Uint8Array([train ? 1 : 0]), []),
    });
    const gx = out['gx']!.data as Float64Array;
    const m = out['mask']!.data as Float64Array;
    const yv = out['y']!.data as Float64Array;
    xs.forEach((xv, i) => {
      const scale = train ? m[i]! / 0.75 : 1;
      assert.ok(Math.abs(yv[i]! - xv * scale) < 1e-12);
      assert.ok(Math.abs(gx[i]! - 2 * yv[i]! * scale) < 1e-12, `gx[${i}] train=${train}`);
    });
    if (train) {
      const kept = m.reduce((p, v) => p + v, 0) / m.length;
      assert.ok(kept >= 0.5 && kept <= 0.95, `mask should drop some and keep some: kept ${kept}`);
    }
  }
});

// The ops the trainer's step graphs differentiate through, for every loss method, both heads,
// both GELU forms, GRM's head dropout and the Llama-family blocks: recorded by wrapping each op's vjp in the registry while
// the graphs are built, and putting the definitions back after.
function opsDifferentiatedByTrainer(): Set<string> {
  const used = new Set<string>();
  const saved = new Map<string, OpDefinition>(OPS);
  for (const [op, def] of saved) {
    const vjp = def.vjp;
    if (vjp) OPS.set(op, { ...def, vjp: (a) => { used.add(op); return vjp(a); } });
  }
  try {
    const losses: LossConfig[] = [
      lossConfig({ method: 'bt', centering: 0.01 }), lossConfig({ method: 'pcrm' }), lossConfig({ method: 'haf' }),
      lossConfig({ method: 'labelsmooth' }),
      ...GRM_REGULARISERS.map((reg) => lossConfig({ method: 'grm', grm: { alpha: 0.01, beta: 0.1, reg } })),
    ];
    const base = { vocabSize: 40, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 16, numObjectives: 2, headHidden: 6 };
    const llama = { nKvHeads: 1, headDim: 4, ropeTheta: 10000, lmHead: 'untied' as const, attentionBias: true, mlpBias: true };
    const configs = [
      ...(['linear', 'mlp'] as const).flatMap((head) => (['gelu_new', 'gelu'] as const).map((activation) => defaultModelConfig({ ...base, head, activation }))),
      // the Llama family, with every optional part on (biases, untied head, q/k norms)
      ...(['llama', 'qwen2', 'qwen3'] as const).map((arch) => defaultModelConfig({ ...base, arch, llama })),
    ];
    for (const config of configs) {
      for (const loss of losses) {
        buildStepGraph({ config, loss, headDropout: config.head === 'mlp', optimizer: {}, schedule: { peakLr: 1e-3, warmupSteps: 2, totalSteps: 10 } });
      }
    }
  } finally {
    for (const [op, def] of saved) OPS.set(op, def);
  }
  return used;
}

// The op types a finite-difference case above records when it builds its graph.
function opsCheckedByCases(): Set<string> {
  const ops = new Set<string>();
  for (const c of cases) {
    const b = new GraphBuilder('ops', { opset: c.opset ?? 17 });
    const dtype = c.precision === 'float32' ? 'float32' : 'float64';
    c.build(b, c.params.map((p) => b.input(p.name, dtype, p.declared ?? p.shape)), rng(1));
    for (const node of b.nodes) ops.add(node.opType);
  }
  return ops;
}

test('every op the trainer differentiates through has a rule with its own finite-difference case', () => {
  const used = opsDifferentiatedByTrainer();
  assert.ok(used.has('MatMul') && used.has('LayerNormalization') && used.has('TokenLogProb'), `recorded ${[...used].join(', ')}`);
  const checked = opsCheckedByCases();
  assert.deepEqual([...used].filter((op) => !checked.has(op)).sort(), [], 'ops the step graphs use without a case in this file');
  // and every rule in the table is checked: by a case, or (Dropout) by its own test above
  assert.deepEqual(differentiableOps().filter((op) => !checked.has(op) && op !== 'Dropout'), [], 'rules without a case');
});

test('docs/design.md lists exactly the ops that have a rule', () => {
  const doc = readFileSync(new URL('../docs/design.md', import.meta.url), 'utf8');
  const line = doc.split('\n').find((l) => l.includes('Ops with a vector-Jacobian rule'));
  assert.ok(line, 'docs/design.md has the line "Ops with a vector-Jacobian rule …"');
  const listed = [...line.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!).filter((op) => op !== 'vjp');
  assert.deepEqual(listed.sort(), differentiableOps());
});

test('a missing rule is a build-time error naming the op', () => {
  const b = new GraphBuilder('norule');
  const x = b.input('x', 'float64', [3]);
  const y = b.reduceSum(b.op('Atan', [x]), [0], false);
  assert.throws(() => gradients(b, y, [x]), /no vector-Jacobian rule for Atan/);
});
