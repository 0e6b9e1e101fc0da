// What one op is to the graph builder and to autodiff, in one record: how its outputs' dtypes and
// shapes follow from its inputs (the forward rule the builder needs), and its vector-Jacobian
// product (the backward rule autodiff needs). Each family file under ops/ writes both side by side.
import type { AttrValue, Dim, DType, GraphBuilder, GraphNode, TensorConst, Value } from '../builder.js';

/** What inference may ask of the graph being built. */
export interface InferContext {
  readonly opset: number;
  constantValue(v: Value): TensorConst | undefined;
  /** Dims carried by an int64 shape vector (from a Shape node or a constant), if known. */
  shapeValue(v: Value): Dim[] | undefined;
  /** A new unknown dim ('?N'); it advances the builder's name counter, so call it only where it is needed. */
  freshDim(): Dim;
}

export interface OutputType {
  dtype: DType;
  shape: Dim[] | undefined;
}

export interface InferArgs {
  ctx: InferContext;
  /** The op's inputs (null for omitted optional inputs). */
  x: readonly (Value | null)[];
  attrs: Readonly<Record<string, AttrValue>>;
  numOutputs: number;
  /** The first input's dtype (float32 for an op without inputs): most ops' output dtype. */
  dtype: DType;
  /** numOutputs outputs all of one type (one shared shape array); dtype defaults to `dtype`. */
  same(shape: Dim[] | undefined, dtype?: DType): OutputType[];
}

/** Output dtypes and shapes at build time; a shape is undefined where it is not cheap to know. */
export type InferRule = (a: InferArgs) => OutputType[];

// Notation of the backward rules: X, A, B are the op's inputs, Y its output, ḡ = dL/dY (same shape
// as Y); a rule returns dL/d(input) for every input autodiff asked for (needs(k)), null elsewhere.
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

export interface ExpandArgs {
  b: GraphBuilder;
  /** The op's inputs (null for omitted optional inputs). */
  x: readonly (Value | null)[];
  attrs: Readonly<Record<string, AttrValue>>;
  /** The outputs' types as the op's infer rule gives them (for the shapes of the last nodes). */
  types: readonly OutputType[];
}

/** A graph-level op's ONNX primitives: emits them through `b` and returns the op's outputs, in order. */
export type ExpandRule = (a: ExpandArgs) => Value[];

export interface OpDefinition {
  /** Forward: the outputs' dtypes and shapes. */
  infer: InferRule;
  /** Backward: absent for ops autodiff cannot differentiate through (a build-time error if it must). */
  vjp?: VjpRule;
  /**
   * How many outputs `GraphBuilder.op` creates (default 1): LayerNormalization always exposes
   * Mean and InvStdDev, Dropout its mask, because their backward rules read them.
   */
  outputs?: number;
  /**
   * Graph-level ops only (ops ONNX does not have, such as TokenLogProb): the ONNX primitives the
   * node stands for. The builder records one node for autodiff, which applies this op's own `vjp`
   * to it instead of differentiating the primitives one by one, and writes the primitives in its
   * place in the ModelProto.
   */
  expand?: ExpandRule;
}

/** One family's ops by ONNX op type. */
export type OpTable = Readonly<Record<string, OpDefinition>>;
