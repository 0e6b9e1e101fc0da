// TokenLogProb: the LM head's log-probability of each target token, log softmax(h·Wᵀ)[y], as one
// graph-level op with its backward written directly (HaF-RM's and GRM's log π read it for every
// response token). Not an ONNX op: the builder writes its expansion (ONNX primitives) into the
// model, and autodiff applies the rule below to the node as a whole.
//
// Why one op instead of MatMul → LogSoftmax → GatherElements differentiated node by node: that
// backward builds five [N,V] tensors (GatherElements' zeros and scatter; LogSoftmax's rule's Exp,
// Mul and Sub) before its two GEMMs. Here the backward recomputes the softmax once and folds the
// onehot into it in place (ScatterElements' add on a tensor used nowhere else runs in place):
//   d log softmax(z)[y] / dz = onehot(y) − softmax(z), so with D = softmax(z) − onehot(y) [N,V]
//   h̄ = −ḡ ⊙ (D·W)        [N,C]   (ḡ scales the [N,C] product, not the [N,V] D)
//   W̄ = Dᵀ·(−ḡ ⊙ h)       [V,C]
// What the forward keeps for it is the log-softmax ℓ = z − lse [N,V] rather than the logits z and
// a log-sum-exp [N]: the same one [N,V] tensor (z is dead once ℓ exists), softmax = exp(ℓ) needs
// no Sub, and ORT's LogSoftmax kernel is fast where its ReduceLogSumExp is not (on [2048, 8192]
// float32, one thread: 18 ms against 178 ms, the latter more than the elementwise work saved).
//
// Fused, not chunked over the vocabulary: a static ONNX graph can chunk only by unrolling a Split
// of W into k pieces (the builder has no Loop/Scan subgraphs, and ORT's Loop copies each
// iteration's outputs). Unrolled, the chunks' logits must not stay alive until the backward, so
// the backward recomputes them — a fourth GEMM of the forward's size on top of the three (+33% of
// the LM head's FLOPs, which are most of its time) — to save memory of the [N,V] floats (N
// response tokens of a batch: 64 MB at N = 2048, V = 8192; 256 MB at V = 32k). On the CPU the
// time is the cost that shows; chunking is the next step if a large vocabulary's [N,V] becomes
// the memory limit.
//
// Shapes: N target tokens, C hidden width, V vocabulary.
import type { Dim, OpOptions, Value } from '../builder.js';
import { needGrad } from './common.js';
import type { OpTable } from './types.js';

/** A node's shape option where the shape is known (inference fills in the rest). */
const shaped = (shape: Dim[] | undefined): OpOptions => (shape ? { shape } : {});

export const tokenLogProbOps: OpTable = {
  // h [N,C], W [V,C], y int64 [N] → logp [N], ℓ [N,V]
  //   z = h·Wᵀ, ℓ = log softmax(z) (per row), logp = ℓ[y]
  // ℓ is exposed for the backward only (like LayerNormalization's Mean and InvStdDev): a gradient
  // into it is refused.
  TokenLogProb: {
    outputs: 2,
    infer: ({ x, numOutputs, dtype }) => {
      const N = x[0]?.shape?.[0] ?? x[2]?.shape?.[0];
      const V = x[1]?.shape?.[0];
      return [
        { dtype, shape: N !== undefined ? [N] : undefined },
        { dtype, shape: N !== undefined && V !== undefined ? [N, V] : undefined },
      ].slice(0, numOutputs);
    },
    expand: ({ b, x, types }) => {
      const [h, W, y] = [x[0]!, x[1]!, x[2]!];
      const z = b.op('Gemm', [h, W], { transB: 1 }, shaped(types[1]?.shape)); //                 [N,V]
      const logSoftmax = b.op('LogSoftmax', [z], { axis: 1 }, shaped(types[1]?.shape)); //       [N,V]
      const picked = b.op('GatherElements', [logSoftmax, b.unsqueeze(y, [1])], { axis: 1 }); //  [N,1]
      const logp = b.op('Squeeze', [picked, b.ints([1])], {}, shaped(types[0]?.shape)); //       [N]
      return [logp, logSoftmax];
    },
    vjp: (a) => {
      const { b, x, y: out, g } = a;
      if (g[1]) throw new Error('TokenLogProb: its log-softmax output is for its own backward, not differentiable');
      const gl = g[0];
      if (!gl) return [null, null, null];
      const [h, W, y] = [x[0]!, x[1]!, x[2]!];
      const logSoftmax = out[1]!;
      const y1 = b.unsqueeze(y, [1]); //                                                          [N,1]
      const minusOnes = b.op('ConstantOfShape', [b.shapeOf(y1)], {
        value: { tensor: { dtype: logSoftmax.dtype, dims: [1], data: logSoftmax.dtype === 'float64' ? Float64Array.of(-1) : Float32Array.of(-1) } },
      }, { dtype: logSoftmax.dtype, ...shaped(y1.shape) }); //                                   [N,1]
      const softmax = b.op('Exp', [logSoftmax]); //                                               [N,V]
      const D = b.op('ScatterElements', [softmax, y1, minusOnes], { axis: 1, reduction: 'add' }, shaped(logSoftmax.shape)); // [N,V] softmax − onehot
      const negG: Value = b.unsqueeze(b.neg(gl), [1]); //                                        [N,1] −ḡ
      return [
        needGrad(a, 0, () => b.mul(b.op('MatMul', [D, W], {}, shaped(h.shape)), negG)), //       [N,C]
        needGrad(a, 1, () => b.op('Gemm', [D, b.mul(h, negG)], { transA: 1 }, shaped(W.shape))), // [V,C]
        null,
      ];
    },
  },
};
