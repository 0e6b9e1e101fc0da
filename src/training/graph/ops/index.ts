// The op registry: one OpDefinition per ONNX op type — its shape/dtype inference beside its
// vector-Jacobian rule — gathered from the family files (elementwise, nn, reductions, matmul,
// shape), and the graph-level ops that expand to ONNX primitives with a backward rule of their own
// (token-logprob). builder.ts asks it for output types, output counts and expansions, autodiff.ts
// for backward rules. An op that is not here still records (outputs of unknown shape), but cannot
// be differentiated.
import { elementwiseOps } from './elementwise.js';
import { matmulOps } from './matmul.js';
import { nnOps } from './nn.js';
import { reductionOps } from './reductions.js';
import { shapeOps } from './shape.js';
import { tokenLogProbOps } from './token-logprob.js';
import type { AttrValue, DType, Value } from '../builder.js';
import type { ExpandRule, InferContext, OpDefinition, OpTable, OutputType, VjpRule } from './types.js';

export type { ExpandArgs, ExpandRule, InferContext, OpDefinition, OutputType, VjpArgs, VjpRule } from './types.js';
export { isUnknownDim, unbroadcast, zerosLike } from './common.js';

function registry(families: Record<string, OpTable>): Map<string, OpDefinition> {
  const ops = new Map<string, OpDefinition>();
  for (const [family, table] of Object.entries(families)) {
    for (const [op, def] of Object.entries(table)) {
      if (ops.has(op)) throw new Error(`op ${op} is defined twice (again in the ${family} family)`);
      ops.set(op, def);
    }
  }
  return ops;
}

/**
 * Every op the builder knows. A Map (not frozen) so that a test can wrap a definition's vjp to
 * record which ops a graph really differentiates through, and put the original back.
 */
export const OPS: Map<string, OpDefinition> = registry({
  elementwise: elementwiseOps, nn: nnOps, reductions: reductionOps, matmul: matmulOps, shape: shapeOps,
  tokenLogProb: tokenLogProbOps,
});

/** Output dtypes and shapes of one node at build time; shape undefined where it is not cheap to know. */
export function inferOutputs(
  ctx: InferContext, opType: string, inputs: readonly (Value | null)[], attrs: Record<string, AttrValue>,
  numOutputs: number,
): OutputType[] {
  const dtype: DType = inputs[0]?.dtype ?? 'float32';
  const same = (shape: OutputType['shape'], d: DType = dtype): OutputType[] =>
    Array.from({ length: numOutputs }, () => ({ dtype: d, shape }));
  const def = OPS.get(opType);
  return def ? def.infer({ ctx, x: inputs, attrs, numOutputs, dtype, same }) : same(undefined);
}

/** The backward rule of an op, or undefined when it has none. */
export function vjpRule(opType: string): VjpRule | undefined {
  return OPS.get(opType)?.vjp;
}

/** The primitives a graph-level op expands to, or undefined for an ONNX op. */
export function expansionRule(opType: string): ExpandRule | undefined {
  return OPS.get(opType)?.expand;
}

/** How many outputs GraphBuilder.op gives an ai.onnx node of this type. */
export function defaultOutputCount(opType: string): number {
  return OPS.get(opType)?.outputs ?? 1;
}

/** The op types with a backward rule, sorted (docs/design.md lists them; a test compares). */
export function differentiableOps(): string[] {
  return [...OPS].filter(([, def]) => def.vjp).map(([op]) => op).sort();
}
