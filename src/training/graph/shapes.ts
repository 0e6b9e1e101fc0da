// Build-time dtype and shape inference for the ops the trainer uses. It only needs to be good
// enough for autodiff to decide broadcasting at build time (static ranks, which dims are 1);
// anything it cannot work out cheaply becomes a fresh unknown dim ('?N') or an unknown shape.
import type { AttrValue, Dim, DType, TensorConst, Value } from './builder.js';

export interface InferContext {
  readonly opset: number;
  constantValue(v: Value): TensorConst | undefined;
  /** Dims carried by an int64 shape vector (from a Shape node or a constant), if known. */
  shapeValue(v: Value): Dim[] | undefined;
  freshDim(): Dim;
}

export interface OutputType {
  dtype: DType;
  shape: Dim[] | undefined;
}

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

function intAttr(attrs: Record<string, AttrValue>, name: string, fallback: number): number {
  const v = attrs[name];
  return typeof v === 'number' ? v : fallback;
}

function intsAttr(attrs: Record<string, AttrValue>, name: string): number[] | undefined {
  const v = attrs[name];
  return Array.isArray(v) ? (v as number[]) : undefined;
}

export function constInts(ctx: Pick<InferContext, 'constantValue'>, v: Value | null | undefined): number[] | undefined {
  if (!v) return undefined;
  const c = ctx.constantValue(v);
  if (!c) return undefined;
  return Array.from(c.data as ArrayLike<number | bigint>, (x) => Number(x));
}

/** Reduction axes, from the axes input (ReduceSum since opset 13, every Reduce* since 18) or attribute. */
export function reduceAxes(
  ctx: Pick<InferContext, 'opset' | 'constantValue'>, opType: string, inputs: readonly (Value | null)[], attrs: Record<string, AttrValue>,
): number[] | undefined | 'unknown' {
  const axesFromInput = opType === 'ReduceSum' ? ctx.opset >= 13 : ctx.opset >= 18;
  if (axesFromInput) {
    const ax = inputs[1];
    if (!ax) return undefined;
    return constInts(ctx, ax) ?? 'unknown';
  }
  return intsAttr(attrs, 'axes');
}

const UNARY_SAME = new Set([
  'Identity', 'Neg', 'Exp', 'Log', 'Sigmoid', 'Softplus', 'Tanh', 'Erf', 'Gelu', 'Sqrt', 'Relu', 'Abs',
  'Softmax', 'LogSoftmax', 'Reciprocal', 'Floor', 'Ceil', 'Sign', 'Trilu', 'Not', 'IsNaN', 'IsInf',
  'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'LeakyRelu', 'Elu', 'Selu', 'Softsign',
  'HardSigmoid', 'Clip', 'Round', 'CumSum',
]);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'Mod',
  'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Where', 'BitShift']);
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor',
  'Not', 'IsNaN', 'IsInf']);

/** Infers output dtypes and shapes; shape undefined where it is not cheap to know. */
export function inferOutputs(
  ctx: InferContext, opType: string, inputs: readonly (Value | null)[], attrs: Record<string, AttrValue>,
  numOutputs: number,
): OutputType[] {
  const x = inputs[0] ?? undefined;
  const xs = x?.shape;
  const dtype0: DType = x?.dtype ?? 'float32';
  const same = (shape: Dim[] | undefined, dtype: DType = dtype0): OutputType[] =>
    Array.from({ length: numOutputs }, () => ({ dtype, shape }));

  if (UNARY_SAME.has(opType)) return same(xs, BOOL_OUT.has(opType) ? 'bool' : dtype0);
  if (BROADCAST.has(opType)) {
    const shape = broadcastShapes(inputs.map((v) => v?.shape));
    if (opType === 'Where') return same(shape, inputs[1]!.dtype);
    return same(shape, BOOL_OUT.has(opType) ? 'bool' : dtype0);
  }

  switch (opType) {
    case 'Constant': {
      const v = attrs['value'];
      if (v && typeof v === 'object' && 'tensor' in v) return same(v.tensor.dims.slice(), v.tensor.dtype);
      return same(undefined);
    }
    case 'Cast':
      return same(xs, dtypeFromOnnx(intAttr(attrs, 'to', 1)));
    case 'Shape': {
      if (!xs) return same(undefined, 'int64');
      const r = xs.length;
      const clamp = (a: number): number => Math.min(Math.max(a < 0 ? a + r : a, 0), r);
      const start = clamp(intAttr(attrs, 'start', 0));
      const end = clamp(intAttr(attrs, 'end', r));
      return same([Math.max(0, end - start)], 'int64');
    }
    case 'Size':
      return same([], 'int64');
    case 'MatMul': {
      const a = inputs[0]?.shape;
      const b = inputs[1]?.shape;
      if (!a || !b) return same(undefined);
      const a2 = a.length === 1 ? [1, a[0]!] : a;
      const b2 = b.length === 1 ? [b[0]!, 1] : b;
      const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)])!;
      const out = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
      if (b.length === 1) out.splice(out.length - 1, 1);
      if (a.length === 1) out.splice(out.length - (b.length === 1 ? 1 : 2), 1);
      return same(out);
    }
    case 'Gemm': {
      const a = inputs[0]?.shape;
      const b = inputs[1]?.shape;
      if (!a || !b) return same(undefined);
      const m = intAttr(attrs, 'transA', 0) ? a[1]! : a[0]!;
      const n = intAttr(attrs, 'transB', 0) ? b[0]! : b[1]!;
      return same([m, n]);
    }
    case 'ReduceSum': case 'ReduceMean': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd':
    case 'ReduceL2': case 'ReduceLogSumExp': case 'ReduceSumSquare': {
      if (!xs) return same(undefined);
      const axes = reduceAxes(ctx, opType, inputs, attrs);
      const keep = intAttr(attrs, 'keepdims', 1) === 1;
      if (axes === 'unknown') return same(keep ? xs.map(() => ctx.freshDim()) : undefined);
      const noop = intAttr(attrs, 'noop_with_empty_axes', 0) === 1;
      if ((axes === undefined || axes.length === 0) && noop) return same(xs);
      const set = new Set((axes === undefined || axes.length === 0 ? xs.map((_, i) => i) : axes)
        .map((a) => normAxis(a, xs.length)));
      const out: Dim[] = [];
      xs.forEach((d, i) => { if (!set.has(i)) out.push(d); else if (keep) out.push(1); });
      return same(out);
    }
    case 'ArgMax': case 'ArgMin': {
      if (!xs) return same(undefined, 'int64');
      const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
      const keep = intAttr(attrs, 'keepdims', 1) === 1;
      const out = xs.flatMap((d, i) => (i !== axis ? [d] : keep ? [1] : []));
      return same(out, 'int64');
    }
    case 'Gather': {
      const ids = inputs[1]?.shape;
      if (!xs || !ids) return same(undefined);
      const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
      return same([...xs.slice(0, axis), ...ids, ...xs.slice(axis + 1)]);
    }
    case 'GatherElements':
      return same(inputs[1]?.shape);
    case 'ScatterND': case 'ScatterElements':
      return same(xs);
    case 'Reshape': {
      const target = ctx.shapeValue(inputs[1]!);
      if (!target) {
        const s = inputs[1]?.shape;
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
    }
    case 'Expand': {
      const target = ctx.shapeValue(inputs[1]!);
      if (!target || !xs) return same(undefined);
      return same(broadcastShapes([xs, target]));
    }
    case 'ConstantOfShape': {
      const v = attrs['value'];
      const dtype = v && typeof v === 'object' && 'tensor' in v ? v.tensor.dtype : 'float32';
      return same(ctx.shapeValue(x!), dtype);
    }
    case 'Flatten': {
      if (!xs) return same(undefined);
      const axis = intAttr(attrs, 'axis', 1);
      const a = axis < 0 ? axis + xs.length : axis;
      const prod = (ds: Dim[]): Dim => (ds.every((d) => typeof d === 'number')
        ? (ds as number[]).reduce((p, d) => p * d, 1) : ctx.freshDim());
      return same([prod(xs.slice(0, a)), prod(xs.slice(a))]);
    }
    case 'Transpose': {
      if (!xs) return same(undefined);
      const perm = intsAttr(attrs, 'perm') ?? xs.map((_, i) => xs.length - 1 - i);
      return same(perm.map((p) => xs[p]!));
    }
    case 'Unsqueeze': {
      const axes = constInts(ctx, inputs[1]);
      if (!xs || !axes) return same(undefined);
      const rank = xs.length + axes.length;
      const set = new Set(axes.map((a) => normAxis(a, rank)));
      const out: Dim[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : xs[k++]!);
      return same(out);
    }
    case 'Squeeze': {
      if (!xs) return same(undefined);
      const axes = inputs[1] ? constInts(ctx, inputs[1]) : xs.flatMap((d, i) => (d === 1 ? [i] : []));
      if (!axes) return same(undefined);
      const set = new Set(axes.map((a) => normAxis(a, xs.length)));
      return same(xs.filter((_, i) => !set.has(i)));
    }
    case 'Slice': {
      if (!xs) return same(undefined);
      const starts = constInts(ctx, inputs[1]);
      const ends = constInts(ctx, inputs[2]);
      const axes = inputs[3] ? constInts(ctx, inputs[3]) : starts?.map((_, i) => i);
      const steps = inputs[4] ? constInts(ctx, inputs[4]) : starts?.map(() => 1);
      if (!starts || !ends || !axes || !steps) return same(xs.map(() => ctx.freshDim()));
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
    }
    case 'Concat': {
      const shapes = inputs.map((v) => v?.shape);
      if (shapes.some((s) => !s)) return same(undefined);
      const first = shapes[0]!;
      const axis = normAxis(intAttr(attrs, 'axis', 0), first.length);
      const ds = shapes.map((s) => s![axis]!);
      const out = first.slice();
      out[axis] = ds.every((d) => typeof d === 'number')
        ? (ds as number[]).reduce((p, d) => p + d, 0) : ctx.freshDim();
      return same(out);
    }
    case 'Split': {
      if (!xs) return same(undefined);
      const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
      const sizes = constInts(ctx, inputs[1]);
      return Array.from({ length: numOutputs }, (_, i) => {
        const out = xs.slice();
        out[axis] = sizes ? sizes[i]! : ctx.freshDim();
        return { dtype: dtype0, shape: out };
      });
    }
    case 'LayerNormalization': {
      const axis = xs ? normAxis(intAttr(attrs, 'axis', -1), xs.length) : 0;
      const stash = dtypeFromOnnx(intAttr(attrs, 'stash_type', 1));
      const stats = xs ? xs.map((d, i) => (i < axis ? d : 1)) : undefined;
      return [{ dtype: dtype0, shape: xs }, { dtype: stash, shape: stats }, { dtype: stash, shape: stats }]
        .slice(0, numOutputs);
    }
    case 'Dropout':
      return [{ dtype: dtype0, shape: xs }, { dtype: 'bool' as DType, shape: xs }].slice(0, numOutputs);
    case 'Range': {
      const c = [0, 1, 2].map((i) => ctx.constantValue(inputs[i]!));
      if (c.every((t) => t)) {
        const [s, l, d] = c.map((t) => Number(t!.data[0]));
        return same([Math.max(Math.ceil((l! - s!) / d!), 0)]);
      }
      return same([ctx.freshDim()]);
    }
    case 'Pad': {
      const pads = constInts(ctx, inputs[1]);
      if (!xs) return same(undefined);
      if (!pads || inputs[3]) return same(xs.map(() => ctx.freshDim()));
      const r = xs.length;
      return same(xs.map((d, i) => (pads[i] === 0 && pads[i + r] === 0 ? d
        : typeof d === 'number' ? d + pads[i]! + pads[i + r]! : ctx.freshDim())));
    }
    default:
      return same(undefined);
  }
}

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
