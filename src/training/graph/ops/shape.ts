// Shape and indexing ops: constants and shape vectors, Reshape and friends, Transpose, Slice,
// Concat/Split, Pad, Trilu, Gather/Scatter. Forward rules read constant inputs (shape vectors,
// axes, starts/ends) at build time where they can; backward rules move ḡ back to X's layout.
import type { Dim, Value } from '../builder.js';
import {
  broadcastShapes, constInts, dimOf, dimProduct, intAttr, intsAttr, normAxis, rankOf, sameAsInput, sliceArgs,
  unbroadcast, zerosLike, zerosOfShape,
} from './common.js';
import type { OpDefinition, OpTable, VjpRule } from './types.js';

/** Elements of a slice of a dim of size d, ONNX Slice semantics (negative indices, clamping, negative steps). */
export function sliceLength(d: number, s: number, e: number, step: number): number {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  if (step > 0) {
    const s1 = clamp(s < 0 ? s + d : s, 0, d);
    const e1 = clamp(e < 0 ? e + d : e, 0, d);
    return Math.max(0, Math.ceil((e1 - s1) / step));
  }
  const s1 = clamp(s < 0 ? s + d : s, -1, d - 1);
  const e1 = clamp(e < 0 ? e + d : e, -1, d - 1);
  return Math.max(0, Math.ceil((e1 - s1) / step));
}

/** Shape-only ops: X̄ = ḡ reshaped back to X's shape (the shape input, if any, gets none). */
const reshapeBack = (withShapeInput: boolean): VjpRule => ({ b, x, g }) => {
  const back = b.op('Reshape', [g[0]!, b.shapeOf(x[0]!)]);
  return withShapeInput ? [back, null] : [back];
};

/** Y [...] = the tensor of the `value` attribute (a Constant, or ConstantOfShape's fill). */
const constantOp: OpDefinition = {
  infer: ({ attrs, same }) => {
    const v = attrs['value'];
    if (v && typeof v === 'object' && 'tensor' in v) return same(v.tensor.dims.slice(), v.tensor.dtype);
    return same(undefined);
  },
};

export const shapeOps: OpTable = {
  Constant: constantOp,

  // shape int64 [r] → Y [shape...] filled with `value` (float32 0 by default)
  ConstantOfShape: {
    infer: ({ ctx, x, attrs, same }) => {
      const v = attrs['value'];
      const dtype = v && typeof v === 'object' && 'tensor' in v ? v.tensor.dtype : 'float32';
      return same(ctx.shapeValue(x[0]!), dtype);
    },
  },

  // X [d0, ..., d(r−1)] → Y int64 [end − start] (dims start..end of X's shape)
  Shape: {
    infer: ({ x, attrs, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined, 'int64');
      const r = xs.length;
      const clamp = (a: number): number => Math.min(Math.max(a < 0 ? a + r : a, 0), r);
      const start = clamp(intAttr(attrs, 'start', 0));
      const end = clamp(intAttr(attrs, 'end', r));
      return same([Math.max(0, end - start)], 'int64');
    },
  },

  // X [...] → Y int64 [] (element count)
  Size: { infer: ({ same }) => same([], 'int64') },

  // start [], limit [], delta [] → Y [ceil((limit − start)/delta)] (static only when all three are constants)
  Range: {
    infer: ({ ctx, x, same }) => {
      const c = [0, 1, 2].map((i) => ctx.constantValue(x[i]!));
      if (c.every((t) => t)) {
        const [s, l, d] = c.map((t) => Number(t!.data[0]));
        return same([Math.max(Math.ceil((l! - s!) / d!), 0)]);
      }
      return same([ctx.freshDim()]);
    },
  },

  // X [...], shape int64 [r] → Y [shape...] (0 copies X's dim unless allowzero, −1 is inferred)
  // Y = reshape(X): X̄ = reshape(ḡ, shape(X))
  Reshape: {
    infer: ({ ctx, x, attrs, same }) => {
      const xs = x[0]?.shape;
      const target = ctx.shapeValue(x[1]!);
      if (!target) {
        const s = x[1]?.shape;
        return same(s && typeof s[0] === 'number' ? Array.from({ length: s[0] }, () => ctx.freshDim()) : undefined);
      }
      const allowZero = intAttr(attrs, 'allowzero', 0) === 1;
      const out: Dim[] = target.map((d, i) => (d === 0 && !allowZero && xs ? xs[i]! : d));
      const minus = out.indexOf(-1);
      if (minus >= 0) {
        const rest = out.filter((_, i) => i !== minus);
        if (xs && xs.every((d) => typeof d === 'number') && rest.every((d) => typeof d === 'number')) {
          const total = (xs as number[]).reduce((p, d) => p * d, 1);
          out[minus] = total / (rest as number[]).reduce((p, d) => p * d, 1);
        } else {
          out[minus] = ctx.freshDim();
        }
      }
      return same(out);
    },
    vjp: reshapeBack(true),
  },

  // X [d0, ..., d(r−1)] → Y [d0·…·d(a−1), da·…·d(r−1)]
  Flatten: {
    infer: ({ ctx, x, attrs, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined);
      const axis = intAttr(attrs, 'axis', 1);
      const a = axis < 0 ? axis + xs.length : axis;
      return same([dimProduct(ctx, xs.slice(0, a)), dimProduct(ctx, xs.slice(a))]);
    },
    vjp: reshapeBack(false),
  },

  // X [...], axes int64 [k] → Y with a 1 inserted at each axis (of the output's rank)
  Unsqueeze: {
    infer: ({ ctx, x, same }) => {
      const xs = x[0]?.shape;
      const axes = constInts(ctx, x[1]);
      if (!xs || !axes) return same(undefined);
      const rank = xs.length + axes.length;
      const set = new Set(axes.map((a) => normAxis(a, rank)));
      const out: Dim[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : xs[k++]!);
      return same(out);
    },
    vjp: reshapeBack(true),
  },

  // X [...], axes int64 [k] (default: every dim known to be 1) → Y without those axes
  Squeeze: {
    infer: ({ ctx, x, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined);
      const axes = x[1] ? constInts(ctx, x[1]) : xs.flatMap((d, i) => (d === 1 ? [i] : []));
      if (!axes) return same(undefined);
      const set = new Set(axes.map((a) => normAxis(a, xs.length)));
      return same(xs.filter((_, i) => !set.has(i)));
    },
    vjp: reshapeBack(true),
  },

  // X [x...], shape int64 [r] → Y [broadcast(x, shape)]
  // Y = Expand(X, shape): X̄ = unb(ḡ)
  Expand: {
    infer: ({ ctx, x, same }) => {
      const xs = x[0]?.shape;
      const target = ctx.shapeValue(x[1]!);
      if (!target || !xs) return same(undefined);
      return same(broadcastShapes([xs, target]));
    },
    vjp: ({ b, x, y, g }) => [unbroadcast(b, g[0]!, y[0]!.shape, x[0]!), null],
  },

  // X [d0, ..., d(r−1)] → Y [d(perm[0]), ..., d(perm[r−1])] (default perm reverses)
  // Y = Transpose(X, perm): X̄ = Transpose(ḡ, perm⁻¹)
  Transpose: {
    infer: ({ x, attrs, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined);
      const perm = intsAttr(attrs, 'perm') ?? xs.map((_, i) => xs.length - 1 - i);
      return same(perm.map((p) => xs[p]!));
    },
    vjp: ({ b, node, x, g }) => {
      const r = rankOf(x[0]!, 'Transpose');
      const p = node.attrs['perm'];
      const perm = Array.isArray(p) ? (p as number[]) : Array.from({ length: r }, (_, i) => r - 1 - i);
      return [b.transpose(g[0]!, perm.map((_, i) => perm.indexOf(i)))];
    },
  },

  // X [...], starts, ends (, axes, steps) int64 [k] → Y [...] with each sliced axis' length
  //   (static where the dim and bounds are; a symbolic dim kept for a full [0:∞) step-1 slice)
  // Y = X[starts:ends] (step 1): X̄ = ḡ zero-padded back to X's extent, pads from the clamped bounds
  Slice: {
    infer: ({ ctx, x, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined);
      const args = sliceArgs(ctx, x);
      if (!args) return same(xs.map(() => ctx.freshDim()));
      const { starts, ends, axes, steps } = args;
      const out = xs.slice();
      axes.forEach((a0, i) => {
        const a = normAxis(a0, xs.length);
        const d = xs[a]!;
        const s = starts[i]!;
        const e = ends[i]!;
        const st = steps[i]!;
        if (typeof d === 'number') {
          out[a] = sliceLength(d, s, e, st);
        } else if (st === 1 && s === 0 && e >= 2 ** 31 - 1) {
          out[a] = d;
        } else {
          out[a] = ctx.freshDim();
        }
      });
      return same(out);
    },
    vjp: ({ b, x, g }) => {
      const X = x[0]!;
      const r = rankOf(X, 'Slice');
      const args = sliceArgs(b, x);
      if (!args) throw new Error('gradient of Slice needs constant starts/ends/axes/steps');
      const { starts, ends, axes, steps } = args;
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
  },

  // X_1 [..., n1, ...], ..., X_k [..., nk, ...] → Y [..., n1 + … + nk, ...] along axis
  // Y = Concat(X_1..X_n, axis): X̄_k = the k-th block of ḡ along axis (one Split)
  Concat: {
    infer: ({ ctx, x, attrs, same }) => {
      const shapes = x.map((v) => v?.shape);
      if (shapes.some((s) => !s)) return same(undefined);
      const first = shapes[0]!;
      const axis = normAxis(intAttr(attrs, 'axis', 0), first.length);
      const ds = shapes.map((s) => s![axis]!);
      const out = first.slice();
      out[axis] = ds.every((d) => typeof d === 'number')
        ? (ds as number[]).reduce((p, d) => p + d, 0) : ctx.freshDim();
      return same(out);
    },
    vjp: (a) => {
      const { b, node, x, g } = a;
      const r = rankOf(x[0]!, 'Concat');
      const axis = normAxis(intAttr(node.attrs, 'axis', 0), r);
      if (x.length === 1) return [g[0]!];
      const sizes = x.map((v) => v!.shape![axis]!);
      const split = sizes.every((d) => typeof d === 'number')
        ? b.ints(sizes as number[])
        : b.op('Concat', x.map((v) => dimOf(b, v!, axis)), { axis: 0 });
      const parts = b.opMulti('Split', [g[0]!, split], x.length, { axis });
      return parts.map((p, k) => (a.needs(k) ? p : null));
    },
  },

  // X [..., n, ...], split int64 [k] → Y_1 [..., split[0], ...], ..., Y_k along axis
  // Y_1..Y_n = Split(X, axis): X̄ = Concat(Ȳ_1..Ȳ_n), zeros for outputs with no gradient
  Split: {
    infer: ({ ctx, x, attrs, numOutputs, dtype, same }) => {
      const xs = x[0]?.shape;
      if (!xs) return same(undefined);
      const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
      const sizes = constInts(ctx, x[1]);
      return Array.from({ length: numOutputs }, (_, i) => {
        const out = xs.slice();
        out[axis] = sizes ? sizes[i]! : ctx.freshDim();
        return { dtype, shape: out };
      });
    },
    vjp: ({ b, node, x, y, g }) => {
      const axis = intAttr(node.attrs, 'axis', 0);
      const parts = y.map((v, k) => g[k] ?? zerosLike(b, v));
      return [b.op('Concat', parts, { axis }, { shape: x[0]!.shape }), null];
    },
  },

  // X [d0, ...], pads int64 [2r] → Y [d0 + pads[0] + pads[r], ...] (fresh dims with an axes input)
  Pad: {
    infer: ({ ctx, x, same }) => {
      const xs = x[0]?.shape;
      const pads = constInts(ctx, x[1]);
      if (!xs) return same(undefined);
      if (!pads || x[3]) return same(xs.map(() => ctx.freshDim()));
      const r = xs.length;
      return same(xs.map((d, i) => (pads[i] === 0 && pads[i + r] === 0 ? d
        : typeof d === 'number' ? d + pads[i]! + pads[i + r]! : ctx.freshDim())));
    },
  },

  // X [..., n, m], k [] → Y [..., n, m]
  // Y = triu/tril(X, k): X̄ = the same triangle of ḡ
  Trilu: {
    infer: sameAsInput,
    vjp: ({ b, node, x, g }) => [b.op('Trilu', x[1] ? [g[0]!, x[1]] : [g[0]!], { upper: intAttr(node.attrs, 'upper', 1) }), null],
  },

  // X [x0, ..., x(a−1), xa, ...], idx int64 [i...] → Y [x0, ..., x(a−1), i..., x(a+1), ...]
  // Y = X[idx] along axis: X̄ = zeros, then X̄[idx] += ḡ (ScatterND add, duplicates accumulate).
  // For axis a > 0 the scatter runs on X with axis a moved first, then moves it back.
  Gather: {
    infer: ({ x, attrs, same }) => {
      const xs = x[0]?.shape;
      const ids = x[1]?.shape;
      if (!xs || !ids) return same(undefined);
      const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
      return same([...xs.slice(0, axis), ...ids, ...xs.slice(axis + 1)]);
    },
    vjp: ({ b, node, x, g }) => {
      const [X, idx] = [x[0]!, x[1]!];
      const r = rankOf(X, 'Gather');
      const q = rankOf(idx, 'Gather');
      const axis = normAxis(intAttr(node.attrs, 'axis', 0), r);
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
  },

  // X [...], idx int64 [i...] (same rank) → Y [i...]
  // Y = GatherElements(X, idx, axis): X̄ = zeros, then ScatterElements add ḡ at idx
  GatherElements: {
    infer: ({ x, same }) => same(x[1]?.shape),
    vjp: ({ b, node, x, g }) => {
      const X = x[0]!;
      const axis = intAttr(node.attrs, 'axis', 0);
      return [b.op('ScatterElements', [zerosLike(b, X), x[1]!, g[0]!], { axis, reduction: 'add' }, { shape: X.shape }), null];
    },
  },

  // X [...], indices, updates → Y [...] (X's shape)
  ScatterND: { infer: sameAsInput },
  ScatterElements: { infer: sameAsInput },
};

