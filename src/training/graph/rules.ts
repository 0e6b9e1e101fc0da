// Vector-Jacobian rules, one per op, each beside the math it implements (llm.c style).
// Notation: X, A, B are the op's inputs, Y its output, ḡ = dL/dY (same shape as Y); a rule returns
// dL/d(input) for every input autodiff asked for (needs(k)), null elsewhere. Broadcasting is undone
// at build time from static ranks and the dims known to be 1 (unbroadcast below).
import type { Dim, DType, GraphBuilder, GraphNode, TensorConst, Value } from './builder.js';
import { constInts, normAxis, reduceAxes } from './shapes.js';

export interface VjpArgs {
  b: GraphBuilder;
  node: GraphNode;
  /** The op's inputs (null for omitted optional inputs). */
  x: readonly (Value | null)[];
  /** The op's outputs. */
  y: readonly Value[];
  /** Incoming gradient per output; null where no gradient flows into that output. */
  g: readonly (Value | null)[];
  /** Whether input k needs a gradient (depends on a param and reaches the loss). */
  needs(k: number): boolean;
}

export type VjpRule = (a: VjpArgs) => (Value | null)[];

// ---- small helpers ----

function scalarLike(b: GraphBuilder, like: Value, v: number): Value {
  return b.scalar(like.dtype, v);
}

function fill(dtype: DType, v: number): TensorConst['data'] {
  return dtype === 'float64' ? new Float64Array([v]) : new Float32Array([v]);
}

export function zerosLike(b: GraphBuilder, v: Value): Value {
  return zerosOfShape(b, b.shapeOf(v), v.dtype);
}

function zerosOfShape(b: GraphBuilder, shape: Value, dtype: DType): Value {
  return b.op('ConstantOfShape', [shape], { value: { tensor: { dtype, dims: [1], data: fill(dtype, 0) } } }, { dtype });
}

function rankOf(v: Value, what: string): number {
  if (!v.shape) throw new Error(`gradient of ${what} needs the static rank of '${v.name}'`);
  return v.shape.length;
}

function attrInt(node: GraphNode, name: string, fallback: number): number {
  const v = node.attrs[name];
  return typeof v === 'number' ? v : fallback;
}

/**
 * Sums a gradient of shape `from` down to the shape of `target` (numpy broadcasting in reverse):
 * ReduceSum over leading axes target lacks and over axes where target has a 1 that was expanded.
 * A symbolic dim ('batch') is taken never to be a broadcast 1: declare a dim as 1 where it is one.
 */
export function unbroadcast(b: GraphBuilder, grad: Value, from: Dim[] | undefined, target: Value): Value {
  const to = target.shape;
  if (!from || !to) throw new Error(`unbroadcast to '${target.name}' needs static ranks`);
  const lead = from.length - to.length;
  if (lead < 0) throw new Error(`unbroadcast: gradient rank ${from.length} < target rank ${to.length}`);
  const axes: number[] = [];
  from.forEach((d, i) => {
    if (i < lead || (to[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  if (axes.length === 0) return grad;
  const summed = b.op('ReduceSum', [grad, b.ints(axes)], { keepdims: 1 }, { dtype: target.dtype });
  if (lead === 0) return summed;
  return b.op('Squeeze', [summed, b.ints(Array.from({ length: lead }, (_, i) => i))], {}, { shape: to });
}

/** Swaps the last two axes. */
function transposeLast2(b: GraphBuilder, v: Value): Value {
  const r = rankOf(v, 'MatMul');
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return b.transpose(v, perm);
}

/** The reduced axes of a Reduce* node, normalised, or 'all'. */
function reducedAxes(b: GraphBuilder, node: GraphNode, rank: number): number[] | null {
  const axes = reduceAxes(b, node.opType, node.inputs, node.attrs);
  if (axes === 'unknown') throw new Error(`gradient of ${node.opType} needs constant axes`);
  if (axes === undefined || axes.length === 0) {
    return attrInt(node, 'noop_with_empty_axes', 0) === 1 ? null : Array.from({ length: rank }, (_, i) => i);
  }
  return axes.map((a) => normAxis(a, rank)).sort((p, q) => p - q);
}

/** ḡ of a reduction, broadcast back over the reduced axes: Expand(Unsqueeze(ḡ, axes), Shape(X)). */
function expandReduced(b: GraphBuilder, node: GraphNode, g: Value, x: Value): Value {
  const r = rankOf(x, node.opType);
  const axes = reducedAxes(b, node, r);
  if (axes === null) return g;
  const kept = attrInt(node, 'keepdims', 1) === 1 ? g : b.unsqueeze(g, axes);
  return b.op('Expand', [kept, b.shapeOf(x)], {}, { shape: x.shape });
}

/** Number of elements reduced, as a scalar of x's dtype (static when the dims are). */
function reducedCount(b: GraphBuilder, node: GraphNode, x: Value, y: Value): Value {
  const axes = reducedAxes(b, node, rankOf(x, node.opType)) ?? [];
  const dims = axes.map((a) => x.shape![a]!);
  if (dims.every((d) => typeof d === 'number')) {
    return scalarLike(b, x, (dims as number[]).reduce((p, d) => p * d, 1));
  }
  const n = b.div(b.op('Size', [x]), b.op('Size', [y]));
  return b.cast(n, x.dtype);
}

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

/** int64 [1] holding dim `axis` of v (a constant when static). */
function dimOf(b: GraphBuilder, v: Value, axis: number): Value {
  const d = v.shape?.[axis];
  if (typeof d === 'number') return b.ints([d]);
  return b.op('Shape', [v], { start: axis, end: axis + 1 });
}

function needGrad(a: VjpArgs, k: number, f: () => Value): Value | null {
  return a.needs(k) ? f() : null;
}

// ---- the rules ----

export const vjpRules: Record<string, VjpRule> = {
  // Y = X: X̄ = ḡ
  Identity: ({ g }) => [g[0]!],

  // Y = A + B: Ā = unb(ḡ), B̄ = unb(ḡ)
  Add: (a) => {
    const { b, x, y, g } = a;
    return [needGrad(a, 0, () => unbroadcast(b, g[0]!, y[0]!.shape, x[0]!)),
      needGrad(a, 1, () => unbroadcast(b, g[0]!, y[0]!.shape, x[1]!))];
  },

  // Y = A − B: Ā = unb(ḡ), B̄ = unb(−ḡ)
  Sub: (a) => {
    const { b, x, y, g } = a;
    return [needGrad(a, 0, () => unbroadcast(b, g[0]!, y[0]!.shape, x[0]!)),
      needGrad(a, 1, () => unbroadcast(b, b.neg(g[0]!), y[0]!.shape, x[1]!))];
  },

  // Y = A ⊙ B: Ā = unb(ḡ ⊙ B), B̄ = unb(ḡ ⊙ A)
  Mul: (a) => {
    const { b, x, y, g } = a;
    return [needGrad(a, 0, () => unbroadcast(b, b.mul(g[0]!, x[1]!), y[0]!.shape, x[0]!)),
      needGrad(a, 1, () => unbroadcast(b, b.mul(g[0]!, x[0]!), y[0]!.shape, x[1]!))];
  },

  // Y = A / B: Ā = unb(ḡ / B), B̄ = unb(−ḡ ⊙ Y / B)
  Div: (a) => {
    const { b, x, y, g } = a;
    return [needGrad(a, 0, () => unbroadcast(b, b.div(g[0]!, x[1]!), y[0]!.shape, x[0]!)),
      needGrad(a, 1, () => unbroadcast(b, b.neg(b.div(b.mul(g[0]!, y[0]!), x[1]!)), y[0]!.shape, x[1]!))];
  },

  // Y = Σ_k X_k (variadic, broadcasting): X̄_k = unb(ḡ)
  Sum: (a) => a.x.map((v, k) => needGrad(a, k, () => unbroadcast(a.b, a.g[0]!, a.y[0]!.shape, v!))),

  // Y = −X: X̄ = −ḡ
  Neg: ({ b, g }) => [b.neg(g[0]!)],

  // Y = eˣ: X̄ = ḡ ⊙ Y
  Exp: ({ b, y, g }) => [b.mul(g[0]!, y[0]!)],

  // Y = log X: X̄ = ḡ / X
  Log: ({ b, x, g }) => [b.div(g[0]!, x[0]!)],

  // Y = √X: X̄ = ḡ / (2Y)
  Sqrt: ({ b, y, g }) => [b.div(g[0]!, b.mul(y[0]!, scalarLike(b, y[0]!, 2)))],

  // Y = 1/X: X̄ = −ḡ ⊙ Y²
  Reciprocal: ({ b, y, g }) => [b.neg(b.mul(g[0]!, b.mul(y[0]!, y[0]!)))],

  // Y = Aᴮ: Ā = unb(ḡ ⊙ B ⊙ A^(B−1)), B̄ = unb(ḡ ⊙ Y ⊙ log A)  (B̄ only defined for A > 0)
  Pow: (a) => {
    const { b, x, y, g } = a;
    const [base, exp] = [x[0]!, x[1]!];
    return [
      needGrad(a, 0, () => {
        const e1 = b.sub(exp, scalarLike(b, exp, 1));
        const dy = b.mul(b.cast(exp, base.dtype), b.op('Pow', [base, e1]));
        return unbroadcast(b, b.mul(g[0]!, dy), y[0]!.shape, base);
      }),
      needGrad(a, 1, () => unbroadcast(b, b.mul(g[0]!, b.mul(y[0]!, b.op('Log', [base]))), y[0]!.shape, exp)),
    ];
  },

  // Y = |X|: X̄ = ḡ ⊙ sign(X)
  Abs: ({ b, x, g }) => [b.mul(g[0]!, b.op('Sign', [x[0]!]))],

  // Y = sin X: X̄ = ḡ ⊙ cos X;  Y = cos X: X̄ = −ḡ ⊙ sin X
  Sin: ({ b, x, g }) => [b.mul(g[0]!, b.op('Cos', [x[0]!]))],
  Cos: ({ b, x, g }) => [b.neg(b.mul(g[0]!, b.op('Sin', [x[0]!])))],

  // Y = clip(X, lo, hi): X̄ = ḡ where lo ≤ X ≤ hi, else 0 (bounds get no gradient)
  Clip: ({ b, x, g }) => {
    const X = x[0]!;
    let inside: Value | null = null;
    if (x[1]) inside = b.op('GreaterOrEqual', [X, x[1]]);
    if (x[2]) {
      const le = b.op('LessOrEqual', [X, x[2]]);
      inside = inside ? b.op('And', [inside, le]) : le;
    }
    return [inside ? b.op('Where', [inside, g[0]!, scalarLike(b, X, 0)]) : g[0]!, null, null];
  },

  // Y = triu/tril(X, k): X̄ = the same triangle of ḡ
  Trilu: ({ b, node, x, g }) => [b.op('Trilu', x[1] ? [g[0]!, x[1]] : [g[0]!], { upper: attrInt(node, 'upper', 1) }), null],

  // Y = σ(X): X̄ = ḡ ⊙ Y ⊙ (1 − Y)
  Sigmoid: ({ b, y, g }) => [b.mul(g[0]!, b.mul(y[0]!, b.sub(scalarLike(b, y[0]!, 1), y[0]!)))],

  // Y = log(1 + eˣ): X̄ = ḡ ⊙ σ(X)
  Softplus: ({ b, x, g }) => [b.mul(g[0]!, b.op('Sigmoid', [x[0]!]))],

  // Y = tanh X: X̄ = ḡ ⊙ (1 − Y²)
  Tanh: ({ b, y, g }) => [b.mul(g[0]!, b.sub(scalarLike(b, y[0]!, 1), b.mul(y[0]!, y[0]!)))],

  // Y = max(X, 0): X̄ = ḡ where X > 0, else 0
  Relu: ({ b, x, g }) => [b.op('Where', [b.op('Greater', [x[0]!, scalarLike(b, x[0]!, 0)]), g[0]!, scalarLike(b, x[0]!, 0)])],

  // Y = erf X: X̄ = ḡ ⊙ (2/√π) e^(−X²)
  Erf: ({ b, x, g }) => {
    const X = x[0]!;
    const e = b.op('Exp', [b.neg(b.mul(X, X))]);
    return [b.mul(g[0]!, b.mul(e, scalarLike(b, X, 2 / Math.sqrt(Math.PI))))];
  },

  // erf form:  Y = X Φ(X),  X̄ = ḡ ⊙ (Φ(X) + X φ(X)),  Φ(x) = ½(1 + erf(x/√2)), φ(x) = e^(−x²/2)/√(2π)
  // tanh form: Y = ½X(1 + t), t = tanh(u), u = √(2/π)(X + 0.044715X³),
  //            X̄ = ḡ ⊙ (½(1 + t) + ½X(1 − t²)·√(2/π)(1 + 3·0.044715X²))
  Gelu: ({ b, node, x, g }) => {
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
  },

  // Y = softmax(X) along axis: X̄ = Y ⊙ (ḡ − Σ_axis(ḡ ⊙ Y))
  Softmax: ({ b, node, y, g }) => {
    const Y = y[0]!;
    const axis = normAxis(attrInt(node, 'axis', -1), rankOf(Y, 'Softmax'));
    const dot = b.reduceSum(b.mul(g[0]!, Y), [axis], true);
    return [b.mul(Y, b.sub(g[0]!, dot))];
  },

  // Y = X − logΣexp(X) along axis: X̄ = ḡ − e^Y ⊙ Σ_axis ḡ
  LogSoftmax: ({ b, node, y, g }) => {
    const Y = y[0]!;
    const axis = normAxis(attrInt(node, 'axis', -1), rankOf(Y, 'LogSoftmax'));
    const total = b.reduceSum(g[0]!, [axis], true);
    return [b.sub(g[0]!, b.mul(b.op('Exp', [Y]), total))];
  },

  // x̂ = (X − μ)·σ⁻¹, Y = x̂ ⊙ γ + β, statistics over the axes from `axis` on:
  //   γ̄ = Σ_rows ḡ ⊙ x̂,  β̄ = Σ_rows ḡ,
  //   X̄ = σ⁻¹ ⊙ (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂)),  ĝ = ḡ ⊙ γ
  LayerNormalization: (a) => {
    const { b, node, x, y, g } = a;
    const [X, scale, bias] = [x[0]!, x[1]!, x[2] ?? null];
    const gy = g[0];
    if (!gy) return [null, null, null]; // only Mean/InvStdDev were used: treated as non-differentiable
    const r = rankOf(X, 'LayerNormalization');
    const axis = normAxis(attrInt(node, 'axis', -1), r);
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

  // Y = Σ_axes X²: X̄ = 2X ⊙ ḡ broadcast back
  ReduceSumSquare: ({ b, node, x, g }) => {
    const X = x[0]!;
    return [b.mul(expandReduced(b, node, g[0]!, X), b.mul(X, scalarLike(b, X, 2))), null];
  },

  // Y = Σ_axes X: X̄ = ḡ broadcast back over the reduced axes
  ReduceSum: ({ b, node, x, g }) => [expandReduced(b, node, g[0]!, x[0]!), null],

  // Y = mean_axes X: X̄ = ḡ broadcast back, divided by the number of reduced elements
  ReduceMean: ({ b, node, x, y, g }) => {
    const X = x[0]!;
    return [b.div(expandReduced(b, node, g[0]!, X), reducedCount(b, node, X, y[0]!)), null];
  },

  // Y = X[idx] along axis: X̄ = zeros, then X̄[idx] += ḡ (ScatterND add, duplicates accumulate).
  // For axis a > 0 the scatter runs on X with axis a moved first, then moves it back.
  Gather: ({ b, node, x, g }) => {
    const [X, idx] = [x[0]!, x[1]!];
    const r = rankOf(X, 'Gather');
    const q = rankOf(idx, 'Gather');
    const axis = normAxis(attrInt(node, 'axis', 0), r);
    const where = b.unsqueeze(idx, [-1]); // [...idx, 1]
    if (axis === 0) {
      return [b.op('ScatterND', [zerosLike(b, X), where, g[0]!], { reduction: 'add' }, { shape: X.shape }), null];
    }
    // ḡ: [X[:a], idx..., X[a+1:]] → [idx..., X[:a], X[a+1:]]
    const gPerm = [...Array.from({ length: q }, (_, i) => axis + i),
      ...Array.from({ length: axis }, (_, i) => i),
      ...Array.from({ length: r - axis - 1 }, (_, i) => axis + q + i)];
    const xPerm = [axis, ...Array.from({ length: r }, (_, i) => i).filter((i) => i !== axis)];
    const inv = xPerm.map((_, i) => xPerm.indexOf(i));
    const zerosT = zerosOfShape(b, b.gather(b.shapeOf(X), b.ints(xPerm)), X.dtype);
    const scattered = b.op('ScatterND', [zerosT, where, b.transpose(g[0]!, gPerm)], { reduction: 'add' });
    return [b.op('Transpose', [scattered], { perm: inv }, { shape: X.shape }), null];
  },

  // Y = GatherElements(X, idx, axis): X̄ = zeros, then ScatterElements add ḡ at idx
  GatherElements: ({ b, node, x, g }) => {
    const X = x[0]!;
    const axis = attrInt(node, 'axis', 0);
    return [b.op('ScatterElements', [zerosLike(b, X), x[1]!, g[0]!], { axis, reduction: 'add' }, { shape: X.shape }), null];
  },

  // Shape-only ops: X̄ = ḡ reshaped back to X's shape
  Reshape: ({ b, x, g }) => [b.op('Reshape', [g[0]!, b.shapeOf(x[0]!)]), null],
  Unsqueeze: ({ b, x, g }) => [b.op('Reshape', [g[0]!, b.shapeOf(x[0]!)]), null],
  Squeeze: ({ b, x, g }) => [b.op('Reshape', [g[0]!, b.shapeOf(x[0]!)]), null],
  Flatten: ({ b, x, g }) => [b.op('Reshape', [g[0]!, b.shapeOf(x[0]!)])],

  // Y = Expand(X, shape): X̄ = unb(ḡ)
  Expand: ({ b, x, y, g }) => [unbroadcast(b, g[0]!, y[0]!.shape, x[0]!), null],

  // Y = Transpose(X, perm): X̄ = Transpose(ḡ, perm⁻¹)
  Transpose: ({ b, node, x, g }) => {
    const r = rankOf(x[0]!, 'Transpose');
    const p = node.attrs['perm'];
    const perm = Array.isArray(p) ? (p as number[]) : Array.from({ length: r }, (_, i) => r - 1 - i);
    return [b.transpose(g[0]!, perm.map((_, i) => perm.indexOf(i)))];
  },

  // Y = cond ? A : B: Ā = unb(cond ? ḡ : 0), B̄ = unb(cond ? 0 : ḡ)
  Where: (a) => {
    const { b, x, y, g } = a;
    const [cond, A, B] = [x[0]!, x[1]!, x[2]!];
    const zero = scalarLike(b, A, 0);
    return [null,
      needGrad(a, 1, () => unbroadcast(b, b.op('Where', [cond, g[0]!, zero]), y[0]!.shape, A)),
      needGrad(a, 2, () => unbroadcast(b, b.op('Where', [cond, zero, g[0]!]), y[0]!.shape, B))];
  },

  // Y = Cast(X): X̄ = Cast(ḡ) back to X's dtype
  Cast: ({ b, x, g }) => [b.cast(g[0]!, x[0]!.dtype)],

  // Y = X[starts:ends] (step 1): X̄ = ḡ zero-padded back to X's extent, pads from the clamped bounds
  Slice: ({ b, x, g }) => {
    const X = x[0]!;
    const r = rankOf(X, 'Slice');
    const starts = constInts(b, x[1]);
    const ends = constInts(b, x[2]);
    const axes = x[3] ? constInts(b, x[3]) : starts?.map((_, i) => i);
    const steps = x[4] ? constInts(b, x[4]) : starts?.map(() => 1);
    if (!starts || !ends || !axes || !steps) throw new Error('gradient of Slice needs constant starts/ends/axes/steps');
    if (steps.some((s) => s !== 1)) throw new Error('gradient of Slice supports step 1 only');
    const before: (number | Value)[] = Array.from({ length: r }, () => 0);
    const after: (number | Value)[] = Array.from({ length: r }, () => 0);
    axes.forEach((a0, i) => {
      const ax = normAxis(a0, r);
      const d = X.shape![ax]!;
      const s = starts[i]!;
      const e = ends[i]!;
      if (typeof d === 'number') {
        const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
        before[ax] = clamp(s);
        after[ax] = d - Math.max(clamp(e), clamp(s));
        return;
      }
      // clamp(v) = v ≥ 0 ? min(v, d) : max(v + d, 0), with d only known at run time
      const dim = dimOf(b, X, ax);
      const clamp = (v: number): Value => (v >= 0
        ? b.op('Min', [b.ints([v]), dim])
        : b.op('Max', [b.add(dim, b.ints([v])), b.ints([0])]));
      const s1 = clamp(s);
      before[ax] = s1;
      after[ax] = b.sub(dim, b.op('Max', [clamp(e), s1]));
    });
    const all = [...before, ...after];
    const pads = all.every((p) => typeof p === 'number')
      ? b.ints(all as number[])
      : b.op('Concat', all.map((p) => (typeof p === 'number' ? b.ints([p]) : p)), { axis: 0 });
    return [b.op('Pad', [g[0]!, pads], {}, { shape: X.shape }), null, null, null, null];
  },

  // Y = Concat(X_1..X_n, axis): X̄_k = the k-th block of ḡ along axis (one Split)
  Concat: (a) => {
    const { b, node, x, g } = a;
    const r = rankOf(x[0]!, 'Concat');
    const axis = normAxis(attrInt(node, 'axis', 0), r);
    if (x.length === 1) return [g[0]!];
    const sizes = x.map((v) => v!.shape![axis]!);
    const split = sizes.every((d) => typeof d === 'number')
      ? b.ints(sizes as number[])
      : b.op('Concat', x.map((v) => dimOf(b, v!, axis)), { axis: 0 });
    const parts = b.opMulti('Split', [g[0]!, split], x.length, { axis });
    return parts.map((p, k) => (a.needs(k) ? p : null));
  },

  // Y_1..Y_n = Split(X, axis): X̄ = Concat(Ȳ_1..Ȳ_n), zeros for outputs with no gradient
  Split: ({ b, node, x, y, g }) => {
    const axis = attrInt(node, 'axis', 0);
    const parts = y.map((v, k) => g[k] ?? zerosLike(b, v));
    return [b.op('Concat', parts, { axis }, { shape: x[0]!.shape }), null];
  },

  // Y = mask ⊙ X / (1 − ratio) in training mode, X otherwise: X̄ = mask ⊙ ḡ / (1 − ratio)
  Dropout: ({ b, x, y, g }) => {
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

  // Y = A·B (batched, broadcasting batch axes; 1-D operands promoted as numpy does):
  //   Ā = unb(ḡ · Bᵀ),  B̄ = unb(Aᵀ · ḡ)
  // A [..., M, K] with a 2-D weight B [K, N] (every linear layer) folds the batch axes into rows
  // instead: B̄ = A₂ᵀ · ḡ₂ with A₂ = A as [rows, K], ḡ₂ = ḡ as [rows, N] — one GEMM, no ReduceSum.
  MatMul: (a) => {
    const { b, x, y, g } = a;
    const [A, B] = [x[0]!, x[1]!];
    const ra = rankOf(A, 'MatMul');
    const rb = rankOf(B, 'MatMul');
    const gy = g[0]!;
    const Bs = B.shape!;
    if (ra >= 3 && rb === 2 && typeof Bs[0] === 'number' && typeof Bs[1] === 'number') {
      return [
        needGrad(a, 0, () => b.op('MatMul', [gy, b.transpose(B, [1, 0])], {}, { shape: A.shape })),
        needGrad(a, 1, () => b.op('Gemm', [b.reshape(A, [-1, Bs[0] as number]), b.reshape(gy, [-1, Bs[1] as number])],
          { transA: 1 }, { shape: Bs })),
      ];
    }
    // promote 1-D operands: A [K] → [1, K], B [K] → [K, 1], and ḡ to match
    let g2 = gy;
    let gShape: Dim[] = y[0]!.shape ? y[0]!.shape.slice() : [];
    if (!y[0]!.shape) throw new Error('gradient of MatMul needs the output rank');
    if (rb === 1) { g2 = b.unsqueeze(g2, [-1]); gShape = [...gShape, 1]; }
    if (ra === 1) { g2 = b.unsqueeze(g2, [-2]); gShape = [...gShape.slice(0, -1), 1, gShape[gShape.length - 1]!]; }
    const A2 = ra === 1 ? b.unsqueeze(A, [0]) : A;
    const B2 = rb === 1 ? b.unsqueeze(B, [-1]) : B;
    const batch = gShape.slice(0, -2);
    return [
      needGrad(a, 0, () => {
        const ga = unbroadcast(b, b.matmul(g2, transposeLast2(b, B2)), [...batch, ...A2.shape!.slice(-2)], A2);
        return ra === 1 ? b.squeeze(ga, [0]) : ga;
      }),
      needGrad(a, 1, () => {
        const gb = unbroadcast(b, b.matmul(transposeLast2(b, A2), g2), [...batch, ...B2.shape!.slice(-2)], B2);
        return rb === 1 ? b.squeeze(gb, [-1]) : gb;
      }),
    ];
  },

  // Y = α·op(A)·op(B) + β·C, op = transpose when transA/transB:
  //   Ā = α·ḡ·op(B)ᵀ (transposed back if transA),  B̄ = α·op(A)ᵀ·ḡ (transposed back if transB),  C̄ = β·unb(ḡ)
  Gemm: (a) => {
    const { b, node, x, y, g } = a;
    const [A, B, C] = [x[0]!, x[1]!, x[2] ?? null];
    const ta = attrInt(node, 'transA', 0);
    const tb = attrInt(node, 'transB', 0);
    const alpha = typeof node.attrs['alpha'] === 'number' ? node.attrs['alpha'] : 1;
    const beta = typeof node.attrs['beta'] === 'number' ? node.attrs['beta'] : 1;
    const gy = g[0]!;
    return [
      needGrad(a, 0, () => (ta
        ? b.op('Gemm', [B, gy], { transA: tb, transB: 1, alpha: { float: alpha } }, { shape: A.shape })
        : b.op('Gemm', [gy, B], { transA: 0, transB: tb ? 0 : 1, alpha: { float: alpha } }, { shape: A.shape }))),
      needGrad(a, 1, () => (tb
        ? b.op('Gemm', [gy, A], { transA: 1, transB: ta, alpha: { float: alpha } }, { shape: B.shape })
        : b.op('Gemm', [A, gy], { transA: ta ? 0 : 1, transB: 0, alpha: { float: alpha } }, { shape: B.shape }))),
      C ? needGrad(a, 2, () => {
        const gc = unbroadcast(b, gy, y[0]!.shape, C);
        return beta === 1 ? gc : b.mul(gc, scalarLike(b, C, beta));
      }) : null,
    ];
  },

  // Piecewise-constant ops: zero gradient almost everywhere
  Floor: ({ b, x }) => [zerosLike(b, x[0]!)],
  Ceil: ({ b, x }) => [zerosLike(b, x[0]!)],
  Round: ({ b, x }) => [zerosLike(b, x[0]!)],
  Sign: ({ b, x }) => [zerosLike(b, x[0]!)],
};
