// Reverse-mode autodiff over a GraphBuilder: walks the recorded nodes backwards from a loss and
// appends, into the same builder, the nodes that compute d loss / d param for each param. Each op's
// vector-Jacobian product lives beside its shape inference in the op registry (ops/); this file only
// does the bookkeeping: which values carry a gradient, summing contributions where a value fans
// out, zeros for params the loss never reaches.
import type { DType, GraphBuilder, GraphNode, Value } from './builder.js';
import { vjpRule, zerosLike } from './ops/index.js';

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

export interface GradientOptions {
  /** Gradient of `loss` to start from (same shape as loss); default ones. */
  seed?: Value;
}

/**
 * Emits the backward pass of `loss` with respect to `params` (graph inputs, initializers or any
 * float value) into `b`, and returns a map from each param's name to the Value holding its
 * gradient (same shape and dtype as the param). A non-scalar loss is summed (seeded with ones).
 * Params the loss does not depend on get explicit zeros, so every param has a gradient Value.
 */
export function gradients(b: GraphBuilder, loss: Value, params: Value[], options: GradientOptions = {}): Map<string, Value> {
  if (!isFloat(loss.dtype)) throw new Error(`gradients: loss '${loss.name}' is ${loss.dtype}, not float`);
  for (const p of params) {
    if (!isFloat(p.dtype)) throw new Error(`gradients: param '${p.name}' is ${p.dtype}, not float`);
  }
  const forward = b.nodes.slice();

  // Values that depend on some param through float values (only these can carry a gradient).
  const dependsOnParam = new Set(params.map((p) => p.name));
  for (const node of forward) {
    if (node.inputs.some((v) => v && dependsOnParam.has(v.name))) {
      for (const o of node.outputs) if (isFloat(o.dtype)) dependsOnParam.add(o.name);
    }
  }
  // Values the loss depends on.
  const reachesLoss = new Set([loss.name]);
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i]!;
    if (node.outputs.some((o) => reachesLoss.has(o.name))) {
      for (const v of node.inputs) if (v) reachesLoss.add(v.name);
    }
  }
  const active = (v: Value | null): v is Value =>
    v !== null && dependsOnParam.has(v.name) && reachesLoss.has(v.name) && isFloat(v.dtype);

  const contributions = new Map<string, Value[]>();
  const addContribution = (v: Value, g: Value): void => {
    const list = contributions.get(v.name);
    if (list) list.push(g);
    else contributions.set(v.name, [g]);
  };
  // Fan-out: a value used k times gets the sum of its k incoming gradients.
  const gradOf = (v: Value): Value | null => {
    const list = contributions.get(v.name);
    if (!list || list.length === 0) return null;
    if (list.length === 1) return list[0]!;
    const total = b.op('Sum', list, {}, { shape: v.shape });
    contributions.set(v.name, [total]);
    return total;
  };

  if (active(loss)) {
    const seed = options.seed ?? (loss.shape && loss.shape.length === 0
      ? b.scalar(loss.dtype, 1)
      : onesLike(b, loss));
    addContribution(loss, seed);
  }

  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i]!;
    if (!node.inputs.some(active) || !node.outputs.some(active)) continue;
    const g = node.outputs.map((o) => (active(o) ? gradOf(o) : null));
    if (g.every((x) => x === null)) continue;
    const rule = vjpRule(node.opType);
    if (!rule) throw new Error(`gradients: no vector-Jacobian rule for ${node.opType} (node ${node.name})`);
    const needs = node.inputs.map(active);
    const inputGrads = rule({ b, node, x: node.inputs, y: node.outputs, g, needs: (k) => needs[k] === true });
    node.inputs.forEach((v, k) => {
      const gk = inputGrads[k];
      if (v && needs[k] && gk) addContribution(v, gk);
    });
  }

  const result = new Map<string, Value>();
  for (const p of params) result.set(p.name, gradOf(p) ?? zerosLike(b, p));
  return result;
}

function onesLike(b: GraphBuilder, v: Value): Value {
  return b.op('ConstantOfShape', [b.shapeOf(v)], {
    value: { tensor: { dtype: v.dtype, dims: [1], data: v.dtype === 'float64' ? new Float64Array([1]) : new Float32Array([1]) } },
  }, { dtype: v.dtype });
}

export type { GraphNode };
