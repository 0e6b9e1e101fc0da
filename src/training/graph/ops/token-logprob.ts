// TokenLogProb: the LM head's log-probability of each target token, log softmax(h·Wᵀ)[y], as one
// graph-level op with its backward written directly (HaF-RM's and GRM's log π read it for every
// response token). Not an ONNX op: the builder writes its expansion (ONNX primitives) into the
// model, and autodiff applies the rule below to the node as a whole.
//
// Why one op instead of MatMul → LogSoftmax → GatherElements: differentiated node by node, that
// composition keeps the [N,V] log-softmax from the forward and its backward builds four more
// [N,V] tensors (GatherElements' zeros and scatter, LogSoftmax's Exp and Mul, the Sub) before the
// two GEMMs. Here the forward keeps the logits z [N,V] (needed anyway for the target's logit) and
// a log-sum-exp [N,1]; the backward recomputes the softmax once from them and folds the onehot
// into it in place of a second [N,V] pass:
//   d log softmax(z)[y] / dz = onehot(y) − softmax(z), so with D = softmax(z) − onehot(y) [N,V]
//   h̄ = −ḡ ⊙ (D·W)        [N,C]   (ḡ scales the [N,C] product, not the [N,V] D)
//   W̄ = Dᵀ·(−ḡ ⊙ h)       [V,C]
//
// Fused, not chunked over the vocabulary: a static ONNX graph can chunk only by unrolling a Split
// of W into k pieces (the builder has no Loop/Scan subgraphs, and ORT's Loop copies each
// iteration's outputs). Unrolled, the chunks' logits must not stay alive until the backward, so
// the backward recomputes them — a third forward-size GEMM on top of the three (+33% of the LM
// head's FLOPs) — to save memory of [N,V] floats (N response tokens of a batch: a few MB to a few
// hundred MB for a 32k vocabulary). On the CPU the time is the cost that shows; chunking is the
// next step if a large vocabulary's [N,V] becomes the memory limit.
//
// Shapes: N target tokens, C hidden width, V vocabulary.
import type { Dim, OpOptions, Value } from '../builder.js';
import { needGrad } from './common.js';
import type { OpTable } from './types.js';

/** A node's shape option where the shape is known (inference fills in the rest). */
const shaped = (shape: Dim[] | undefined): OpOptions => (shape ? { shape } : {});

export const tokenLogProbOps: OpTable = {
  // h [N,C], W [V,C], y int64 [N] → logp [N], z [N,V], lse [N,1]
  //   z = h·Wᵀ, lse = log Σ_v exp(z_v) (per row), logp = z[y] − lse
  // z and lse are exposed for the backward only (like LayerNormalization's Mean and InvStdDev):
  // a gradient into them is refused.
  TokenLogProb: {
    outputs: 3,
    infer: ({ x, numOutputs, dtype }) => {
      const N = x[0]?.shape?.[0] ?? x[2]?.shape?.[0];
      const V = x[1]?.shape?.[0];
      const known = N !== undefined && V !== undefined;
      return [
        { dtype, shape: N !== undefined ? [N] : undefined },
        { dtype, shape: known ? [N, V] : undefined },
        { dtype, shape: N !== undefined ? [N, 1] : undefined },
      ].slice(0, numOutputs);
    },
    expand: ({ b, x, types }) => {
      const [h, W, y] = [x[0]!, x[1]!, x[2]!];
      const z = b.op('Gemm', [h, W], { transB: 1 }, shaped(types[1]?.shape)); //          [N,V]
      // ORT's ReduceLogSumExp subtracts the row maximum first: finite for any finite logits.
      const lse = b.opset >= 18 //                                                               [N,1]
        ? b.op('ReduceLogSumExp', [z, b.ints([1])], { keepdims: 1 })
        : b.op('ReduceLogSumExp', [z], { axes: [1], keepdims: 1 });
      const zy = b.op('GatherElements', [z, b.unsqueeze(y, [1])], { axis: 1 }); //              [N,1]
      const logp = b.op('Squeeze', [b.sub(zy, lse), b.ints([1])], {}, shaped(types[0]?.shape)); // [N]
      return [logp, z, lse];
    },
    vjp: (a) => {
      const { b, x, y: out, g } = a;
      if (g[1] || g[2]) throw new Error('TokenLogProb: its logits and log-sum-exp outputs are for its own backward, not differentiable');
      const gl = g[0];
      if (!gl) return [null, null, null];
      const [h, W, y] = [x[0]!, x[1]!, x[2]!];
      const [z, lse] = [out[1]!, out[2]!];
      const y1 = b.unsqueeze(y, [1]); //                                                          [N,1]
      const minusOnes = b.op('ConstantOfShape', [b.shapeOf(y1)], {
        value: { tensor: { dtype: z.dtype, dims: [1], data: z.dtype === 'float64' ? Float64Array.of(-1) : Float32Array.of(-1) } },
      }, { dtype: z.dtype, ...shaped(y1.shape) }); //                                               [N,1]
      const softmax = b.op('Exp', [b.sub(z, lse)]); //                                            [N,V]
      const D = b.op('ScatterElements', [softmax, y1, minusOnes], { axis: 1, reduction: 'add' }, shaped(z.shape)); // [N,V] softmax − onehot
      const negG: Value = b.unsqueeze(b.neg(gl), [1]); //                                        [N,1] −ḡ
      return [
        needGrad(a, 0, () => b.mul(b.op('MatMul', [D, W], {}, shaped(h.shape)), negG)), //  [N,C]
        needGrad(a, 1, () => b.op('Gemm', [D, b.mul(h, negG)], { transA: 1 }, shaped(W.shape))), // [V,C]
        null,
      ];
    },
  },
};
