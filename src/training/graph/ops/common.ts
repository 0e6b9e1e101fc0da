// Helpers the op families share: attribute and axis reading, numpy broadcasting of build-time
// shapes (forward), and its reverse, unbroadcast (backward). Inference only needs to be good enough
// for autodiff to decide broadcasting at build time (static ranks, which dims are 1); anything it
// cannot work out cheaply becomes a fresh unknown dim ('?N') or an unknown shape.
import type { AttrValue, Dim, DType, GraphBuilder, TensorConst, Value } from '../builder.js';
import type { InferContext, InferRule, OpDefinition, VjpArgs, VjpRule } from './types.js';

type Attrs = Readonly<Record<string, AttrValue>>;

const ONNX_TO_DTYPE: Record<number, DType> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' };

export function dtypeFromOnnx(code: number): DType {
  const dtype = ONNX_TO_DTYPE[code];
  if (dtype === undefined) throw new Error(`unsupported ONNX data type ${code}`);
  return dtype;
}

/** Unknown dims are named '?N' so they never collide with user-given symbolic axes. */
export function isUnknownDim(d: Dim): boolean {
  return typeof d === 'string' && d.startsWith('?');
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function intAttr(attrs: Attrs, name: string, fallback: number): number {
  const v = attrs[name];
  return typeof v === 'number' ? v : fallback;
}

export function intsAttr(attrs: Attrs, name: string): number[] | undefined {
  const v = attrs[name];
  return Array.isArray(v) ? (v as number[]) : undefined;
}

/** The numbers in a constant int (or float) value, when it is one. */
export function constInts(ctx: Pick<InferContext, 'constantValue'>, v: Value | null | undefined): number[] | undefined {
  if (!v) return undefined;
  const c = ctx.constantValue(v);
  if (!c) return undefined;
  return Array.from(c.data as ArrayLike<number | bigint>, (x) => Number(x));
}

/** Reduction axes, from the axes input (ReduceSum since opset 13, every Reduce* since 18) or attribute. */
export function reduceAxes(
  ctx: Pick<InferContext, 'opset' | 'constantValue'>, opType: string, inputs: readonly (Value | null)[], attrs: Attrs,
): number[] | undefined | 'unknown' {
  const axesFromInput = opType === 'ReduceSum' ? ctx.opset >= 13 : ctx.opset >= 18;
  if (axesFromInput) {
    const ax = inputs[1];
    if (!ax) return undefined;
    return constInts(ctx, ax) ?? 'unknown';
  }
  return intsAttr(attrs, 'axes');
}

/** Numpy broadcasting over build-time dims: a 1 yields to the other side; two symbols are assumed equal. */
export function broadcastShapes(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const known = shapes as Dim[][];
  const rank = Math.max(0, ...known.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of known) {
      const k = i - (rank - s.length);
      if (k < 0) continue;
      const e = s[k]!;
      if (e === 1) continue;
      if (d === 1) d = e;
      else if (typeof d === 'number' && typeof e === 'number' && d !== e) {
        throw new Error(`cannot broadcast shapes ${known.map((x) => `[${x.join(',')}]`).join(' and ')}`);
      } else if (typeof d === 'string' && typeof e === 'number') d = e; // a number says more than a symbol
    }
    out.push(d);
  }
  return out;
}

/** Product of dims: a number when all are static, else a fresh unknown dim. */
export function dimProduct(ctx: InferContext, ds: Dim[]): Dim {
  return ds.every((d) => typeof d === 'number') ? (ds as number[]).reduce((p, d) => p * d, 1) : ctx.freshDim();
}

// ---- forward rules several families share ----

/** X [...] → Y [...]: same shape and dtype as the first input. */
export const sameAsInput: InferRule = ({ x, same }) => same(x[0]?.shape);

/** X [...] → Y bool [...] (IsNaN, Not). */
export const boolOfInput: InferRule = ({ x, same }) => same(x[0]?.shape, 'bool');

/** A [a...], B [b...] (, ...) → Y [broadcast(a, b, ...)], dtype of A. */
export const broadcastInputs: InferRule = ({ x, same }) => same(broadcastShapes(x.map((v) => v?.shape)));

/** A [a...], B [b...] → Y bool [broadcast(a, b)] (comparisons, logic). */
export const broadcastBool: InferRule = ({ x, same }) => same(broadcastShapes(x.map((v) => v?.shape)), 'bool');

/** An op whose Y has X's shape and dtype (unary math, activations); `vjp` gives X̄ where it has one. */
export function shapePreserving(vjp?: VjpRule): OpDefinition {
  return vjp ? { infer: sameAsInput, vjp } : { infer: sameAsInput };
}

/** Slice's starts, ends, axes and steps when all are constants (axes default 0.., steps 1). */
export function sliceArgs(
  ctx: Pick<InferContext, 'constantValue'>, x: readonly (Value | null)[],
): { starts: number[]; ends: number[]; axes: number[]; steps: number[] } | undefined {
  const starts = constInts(ctx, x[1]);
  const ends = constInts(ctx, x[2]);
  const axes = x[3] ? constInts(ctx, x[3]) : starts?.map((_, i) => i);
  const steps = x[4] ? constInts(ctx, x[4]) : starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps) return undefined;
  return { starts, ends, axes, steps };
}

// ---- backward helpers ----

export function scalarLike(b: GraphBuilder, like: Value, v: number): Value {
  return b.scalar(like.dtype, v);
}

function fill(dtype: DType, v: number): TensorConst['data'] {
  return dtype === 'float64' ? new Float64Array([v]) : new Float32Array([v]);
}

export function zerosLike(b: GraphBuilder, v: Value): Value {
  return zerosOfShape(b, b.shapeOf(v), v.dtype);
}

export function zerosOfShape(b: GraphBuilder, shape: Value, dtype: DType): Value {
  return b.op('ConstantOfShape', [shape], { value: { tensor: { dtype, dims: [1], data: fill(dtype, 0) } } }, { dtype });
}

export function rankOf(v: Value, what: string): number {
  if (!v.shape) throw new Error(`gradient of ${what} needs the static rank of '${v.name}'`);
  return v.shape.length;
}

/** The input gradient when autodiff asked for input k, else null (nothing emitted). */
export function needGrad(a: VjpArgs, k: number, f: () => Value): Value | null {
  return a.needs(k) ? f() : null;
}

/** int64 [1] holding dim `axis` of v (a constant when static). */
export function dimOf(b: GraphBuilder, v: Value, axis: number): Value {
  const d = v.shape?.[axis];
  if (typeof d === 'number') return b.ints([d]);
  return b.op('Shape', [v], { start: axis, end: axis + 1 });
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
