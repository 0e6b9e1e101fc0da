// Neural-network ops: activations, Softmax/LogSoftmax, LayerNormalization, RMSNorm
// (SimplifiedLayerNormalization) and Dropout. All keep X's shape; the normalisations add their
// statistics outputs and Dropout its mask.
import type { GraphBuilder, GraphNode, Value } from '../builder.js';
import {
  dtypeFromOnnx, intAttr, needGrad, normAxis, rankOf, scalarLike, shapePreserving as activation, unbroadcast,
} from './common.js';
import type { OpTable } from './types.js';

/** LayerNormalization's Mean and InvStdDev in x's dtype: the node's own outputs when they match, else recomputed. */
function layerNormStats(b: GraphBuilder, node: GraphNode, x: Value, axes: number[]): [Value, Value] {
  const [, mean, invStd] = node.outputs;
  if (mean && invStd && mean.dtype === x.dtype && invStd.dtype === x.dtype) return [mean, invStd];
  const eps = node.attrs['epsilon'];
  const epsilon = typeof eps === 'number' ? eps : 1e-5;
  const mu = b.reduceMean(x, axes, true);
  const d = b.sub(x, mu);
  const variance = b.reduceMean(b.mul(d, d), axes, true);
  const inv = b.op('Reciprocal', [b.op('Sqrt', [b.add(variance, scalarLike(b, x, epsilon))])]);
  return [mu, inv];
}

/** SimplifiedLayerNormalization's InvStdDev in x's dtype: the node's own output when it matches, else recomputed. */
function rmsInvStd(b: GraphBuilder, node: GraphNode, x: Value, axes: number[]): Value {
  const invStd = node.outputs[1];
  if (invStd && invStd.dtype === x.dtype) return invStd;
  const eps = node.attrs['epsilon'];
  const epsilon = typeof eps === 'number' ? eps : 1e-5;
  const meanSquare = b.reduceMean(b.mul(x, x), axes, true);
  return b.op('Reciprocal', [b.op('Sqrt', [b.add(meanSquare, scalarLike(b, x, epsilon))])]);
}

export const nnOps: OpTable = {
  // X [...] → Y [...] for the activations
  // Y = σ(X): X̄ = ḡ ⊙ Y ⊙ (1 − Y)
  Sigmoid: activation(({ b, y, g }) => [b.mul(g[0]!, b.mul(y[0]!, b.sub(scalarLike(b, y[0]!, 1), y[0]!)))]),

  // Y = log(1 + eˣ): X̄ = ḡ ⊙ σ(X)
  Softplus: activation(({ b, x, g }) => [b.mul(g[0]!, b.op('Sigmoid', [x[0]!]))]),

  // Y = max(X, 0): X̄ = ḡ where X > 0, else 0
  Relu: activation(({ b, x, g }) => [b.op('Where', [b.op('Greater', [x[0]!, scalarLike(b, x[0]!, 0)]), g[0]!, scalarLike(b, x[0]!, 0)])]),

  // erf form:  Y = X Φ(X),  X̄ = ḡ ⊙ (Φ(X) + X φ(X)),  Φ(x) = ½(1 + erf(x/√2)), φ(x) = e^(−x²/2)/√(2π)
  // tanh form: Y = ½X(1 + t), t = tanh(u), u = √(2/π)(X + 0.044715X³),
  //            X̄ = ḡ ⊙ (½(1 + t) + ½X(1 − t²)·√(2/π)(1 + 3·0.044715X²))
  Gelu: activation(({ b, node, x, g }) => {
    const X = x[0]!;
    const c = (v: number): Value => scalarLike(b, X, v);
    const x2 = b.mul(X, X);
    if (node.attrs['approximate'] === 'tanh') {
      const k = Math.sqrt(2 / Math.PI);
      const u = b.mul(c(k), b.add(X, b.mul(c(0.044715), b.mul(x2, X))));
      const t = b.op('Tanh', [u]);
      const du = b.mul(c(k), b.add(c(1), b.mul(c(3 * 0.044715), x2)));
      const left = b.mul(c(0.5), b.add(c(1), t));
      const right = b.mul(b.mul(c(0.5), X), b.mul(b.sub(c(1), b.mul(t, t)), du));
      return [b.mul(g[0]!, b.add(left, right))];
    }
    const cdf = b.mul(c(0.5), b.add(c(1), b.op('Erf', [b.mul(X, c(Math.SQRT1_2))])));
    const pdf = b.mul(c(1 / Math.sqrt(2 * Math.PI)), b.op('Exp', [b.mul(c(-0.5), x2)]));
    return [b.mul(g[0]!, b.add(cdf, b.mul(X, pdf)))];
  }),

  LeakyRelu: activation(), Elu: activation(), Selu: activation(), Softsign: activation(), HardSigmoid: activation(),

  // X [..., n, ...] → Y [..., n, ...], normalised along `axis`
  // Y = softmax(X) along axis: X̄ = Y ⊙ (ḡ − Σ_axis(ḡ ⊙ Y))
  Softmax: activation(({ b, node, y, g }) => {
    const Y = y[0]!;
    const axis = normAxis(intAttr(node.attrs, 'axis', -1), rankOf(Y, 'Softmax'));
    const dot = b.reduceSum(b.mul(g[0]!, Y), [axis], true);
    return [b.mul(Y, b.sub(g[0]!, dot))];
  }),

  // Y = X − logΣexp(X) along axis: X̄ = ḡ − e^Y ⊙ Σ_axis ḡ
  LogSoftmax: activation(({ b, node, y, g }) => {
    const Y = y[0]!;
    const axis = normAxis(intAttr(node.attrs, 'axis', -1), rankOf(Y, 'LogSoftmax'));
    const total = b.reduceSum(g[0]!, [axis], true);
    return [b.sub(g[0]!, b.mul(b.op('Exp', [Y]), total))];
  }),

  // X [d0, ..., d(a−1), da, ...], γ and β [da, ...] (broadcastable) →
  //   Y [d0, ..., da, ...], Mean and InvStdDev [d0, ..., d(a−1), 1, ..., 1] in stash_type
  // x̂ = (X − μ)·σ⁻¹, Y = x̂ ⊙ γ + β, statistics over the axes from `axis` (a) on:
  //   γ̄ = Σ_rows ḡ ⊙ x̂,  β̄ = Σ_rows ḡ,
  //   X̄ = σ⁻¹ ⊙ (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)),  ĝ = ḡ ⊙ γ
  LayerNormalization: {
    outputs: 3,
    infer: ({ x, attrs, numOutputs, dtype }) => {
      const xs = x[0]?.shape;
      const axis = xs ? normAxis(intAttr(attrs, 'axis', -1), xs.length) : 0;
      const stash = dtypeFromOnnx(intAttr(attrs, 'stash_type', 1));
      const stats = xs ? xs.map((d, i) => (i < axis ? d : 1)) : undefined;
      return [{ dtype, shape: xs }, { dtype: stash, shape: stats }, { dtype: stash, shape: stats }]
        .slice(0, numOutputs);
    },
    vjp: (a) => {
      const { b, node, x, y, g } = a;
      const [X, scale, bias] = [x[0]!, x[1]!, x[2] ?? null];
      const gy = g[0];
      if (!gy) return [null, null, null]; // only Mean/InvStdDev were used: treated as non-differentiable
      const r = rankOf(X, 'LayerNormalization');
      const axis = normAxis(intAttr(node.attrs, 'axis', -1), r);
      const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
      const [mean, invStd] = layerNormStats(b, node, X, axes);
      const xhat = b.mul(b.sub(X, mean), invStd);
      const shape = y[0]!.shape;
      return [
        needGrad(a, 0, () => {
          const gh = b.mul(gy, scale);
          const m1 = b.reduceMean(gh, axes, true);
          const m2 = b.reduceMean(b.mul(gh, xhat), axes, true);
          return b.mul(invStd, b.sub(b.sub(gh, m1), b.mul(xhat, m2)));
        }),
        needGrad(a, 1, () => unbroadcast(b, b.mul(gy, xhat), shape, scale)),
        bias ? needGrad(a, 2, () => unbroadcast(b, gy, shape, bias)) : null,
      ];
    },
  },

  // RMSNorm (Llama, Qwen): onnxruntime's SimplifiedLayerNormalization, registered in the ai.onnx
  // domain from opset 1 by ORT (CPU and CUDA kernels; not an ONNX standard op; opset 23's
  // RMSNormalization is the standard one, past the trainer's MODEL_OPSET). One fused kernel instead
  // of the seven nodes x·(mean(x²)+ε)^(−½)·γ takes, and its InvStdDev output saves recomputing r.
  // X [d0, ..., d(a−1), da, ...], γ [da, ...] → Y [d0, ..., da, ...], InvStdDev [d0, ..., d(a−1), 1, ..., 1] in stash_type
  // r = (mean(X²) + ε)^(−½) over the axes from `axis` (a) on, x̂ = X·r, Y = x̂ ⊙ γ:
  //   γ̄ = Σ_rows ḡ ⊙ x̂,  X̄ = r ⊙ (ĝ − x̂ ⊙ mean(ĝ ⊙ x̂)),  ĝ = ḡ ⊙ γ
  //   (from ∂r/∂X_j = −r³·X_j/n: X̄_j = ĝ_j·r − Σ_i ĝ_i·X_i·r³·X_j/n)
  // ORT has no double kernel with a double InvStdDev: a float64 node keeps stash_type float, and
  // the rule recomputes r in float64 rather than read the float32 one.
  SimplifiedLayerNormalization: {
    outputs: 2,
    infer: ({ x, attrs, numOutputs, dtype }) => {
      const xs = x[0]?.shape;
      const axis = xs ? normAxis(intAttr(attrs, 'axis', -1), xs.length) : 0;
      const stash = dtypeFromOnnx(intAttr(attrs, 'stash_type', 1));
      const stats = xs ? xs.map((d, i) => (i < axis ? d : 1)) : undefined;
      return [{ dtype, shape: xs }, { dtype: stash, shape: stats }].slice(0, numOutputs);
    },
    vjp: (a) => {
      const { b, node, x, y, g } = a;
      const [X, scale] = [x[0]!, x[1]!];
      const gy = g[0];
      if (!gy) return [null, null]; // only InvStdDev was used: treated as non-differentiable
      const r = rankOf(X, 'SimplifiedLayerNormalization');
      const axis = normAxis(intAttr(node.attrs, 'axis', -1), r);
      const axes = Array.from({ length: r - axis }, (_, i) => axis + i);
      const invStd = rmsInvStd(b, node, X, axes);
      const xhat = b.mul(X, invStd);
      return [
        needGrad(a, 0, () => {
          const gh = b.mul(gy, scale);
          const m = b.reduceMean(b.mul(gh, xhat), axes, true);
          return b.mul(invStd, b.sub(gh, b.mul(xhat, m)));
        }),
        needGrad(a, 1, () => unbroadcast(b, b.mul(gy, xhat), y[0]!.shape, scale)),
      ];
    },
  },

  // X [...], ratio [], training bool [] → Y [...], mask bool [...]
  // Y = mask ⊙ X / (1 − ratio) in training mode, X otherwise: X̄ = mask ⊙ ḡ / (1 − ratio)
  Dropout: {
    outputs: 2,
    infer: ({ x, numOutputs, dtype }) => {
      const xs = x[0]?.shape;
      return [{ dtype, shape: xs }, { dtype: 'bool' as const, shape: xs }].slice(0, numOutputs);
    },
    vjp: ({ b, x, y, g }) => {
      const X = x[0]!;
      const mask = y[1];
      const training = x[2] ?? null;
      const trainingConst = training ? b.constantValue(training) : undefined;
      if (!training || (trainingConst && trainingConst.data[0] === 0)) return [g[0]!, null, null];
      if (!mask) throw new Error('gradient of Dropout in training mode needs its mask output');
      const ratio = x[1] ? b.cast(x[1], X.dtype) : scalarLike(b, X, 0.5);
      const scale = b.op('Where', [training, b.div(scalarLike(b, X, 1), b.sub(scalarLike(b, X, 1), ratio)), scalarLike(b, X, 1)]);
      return [b.mul(b.op('Where', [mask, g[0]!, scalarLike(b, X, 0)]), scale), null, null];
    },
  },
};
