// Reductions: Reduce* over constant axes (from the axes input or the attribute, by opset), ArgMax
// and ArgMin, CumSum. Backward: ḡ is broadcast back over the reduced axes.
import type { Dim, GraphBuilder, GraphNode, Value } from '../builder.js';
import { intAttr, normAxis, rankOf, reduceAxes, sameAsInput, scalarLike } from './common.js';
import type { InferRule, OpDefinition, OpTable, VjpRule } from './types.js';

/**
 * X [d0, d1, ...] → Y with the reduced axes dropped (keepdims 0) or set to 1 (keepdims 1);
 * no axes reduces all (or none, with noop_with_empty_axes); axes not known at build time give
 * fresh dims (keepdims 1) or an unknown shape.
 */
function reduceInfer(opType: string): InferRule {
  return ({ ctx, x, attrs, same }) => {
    const xs = x[0]?.shape;
    if (!xs) return same(undefined);
    const axes = reduceAxes(ctx, opType, x, attrs);
    const keep = intAttr(attrs, 'keepdims', 1) === 1;
    if (axes === 'unknown') return same(keep ? xs.map(() => ctx.freshDim()) : undefined);
    const noop = intAttr(attrs, 'noop_with_empty_axes', 0) === 1;
    if ((axes === undefined || axes.length === 0) && noop) return same(xs);
    const set = new Set((axes === undefined || axes.length === 0 ? xs.map((_, i) => i) : axes)
      .map((a) => normAxis(a, xs.length)));
    const out: Dim[] = [];
    xs.forEach((d, i) => { if (!set.has(i)) out.push(d); else if (keep) out.push(1); });
    return same(out);
  };
}

function reduction(opType: string, vjp?: VjpRule): OpDefinition {
  return vjp ? { infer: reduceInfer(opType), vjp } : { infer: reduceInfer(opType) };
}

/** The reduced axes of a Reduce* node, normalised, or null when it reduces nothing. */
function reducedAxes(b: GraphBuilder, node: GraphNode, rank: number): number[] | null {
  const axes = reduceAxes(b, node.opType, node.inputs, node.attrs);
  if (axes === 'unknown') throw new Error(`gradient of ${node.opType} needs constant axes`);
  if (axes === undefined || axes.length === 0) {
    return intAttr(node.attrs, 'noop_with_empty_axes', 0) === 1 ? null : Array.from({ length: rank }, (_, i) => i);
  }
  return axes.map((a) => normAxis(a, rank)).sort((p, q) => p - q);
}

/** ḡ of a reduction, broadcast back over the reduced axes: Expand(Unsqueeze(ḡ, axes), Shape(X)). */
function expandReduced(b: GraphBuilder, node: GraphNode, g: Value, x: Value): Value {
  const r = rankOf(x, node.opType);
  const axes = reducedAxes(b, node, r);
  if (axes === null) return g;
  const kept = intAttr(node.attrs, 'keepdims', 1) === 1 ? g : b.unsqueeze(g, axes);
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

/** X [..., n, ...] → Y int64 without axis (keepdims 0) or with it as 1. */
const argInfer: InferRule = ({ x, attrs, same }) => {
  const xs = x[0]?.shape;
  if (!xs) return same(undefined, 'int64');
  const axis = normAxis(intAttr(attrs, 'axis', 0), xs.length);
  const keep = intAttr(attrs, 'keepdims', 1) === 1;
  const out = xs.flatMap((d, i) => (i !== axis ? [d] : keep ? [1] : []));
  return same(out, 'int64');
};

export const reductionOps: OpTable = {
  // Y = Σ_axes X: X̄ = ḡ broadcast back over the reduced axes
  ReduceSum: reduction('ReduceSum', ({ b, node, x, g }) => [expandReduced(b, node, g[0]!, x[0]!), null]),

  // Y = mean_axes X: X̄ = ḡ broadcast back, divided by the number of reduced elements
  ReduceMean: reduction('ReduceMean', ({ b, node, x, y, g }) => {
    const X = x[0]!;
    return [b.div(expandReduced(b, node, g[0]!, X), reducedCount(b, node, X, y[0]!)), null];
  }),

  // Y = Σ_axes X²: X̄ = 2X ⊙ ḡ broadcast back
  ReduceSumSquare: reduction('ReduceSumSquare', ({ b, node, x, g }) => {
    const X = x[0]!;
    return [b.mul(expandReduced(b, node, g[0]!, X), b.mul(X, scalarLike(b, X, 2))), null];
  }),

  ReduceMax: reduction('ReduceMax'),
  ReduceMin: reduction('ReduceMin'),
  ReduceProd: reduction('ReduceProd'),
  ReduceL2: reduction('ReduceL2'),
  ReduceLogSumExp: reduction('ReduceLogSumExp'),

  ArgMax: { infer: argInfer },
  ArgMin: { infer: argInfer },

  // X [...] → Y [...] (running sum along an axis)
  CumSum: { infer: sameAsInput },
};
