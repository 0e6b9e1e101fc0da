// A small typed recorder of ONNX nodes. Every Value carries its dtype and, where it was cheap to
// infer, its shape (numbers for static dims, strings for symbolic ones such as 'batch'), so that
// autodiff can decide broadcasting at build time; each op's inference lives with its backward rule
// in the op registry (ops/). toModelProto() writes a ModelProto that onnxruntime-node loads
// directly (ort.InferenceSession.create(bytes)).
import { ModelProto, OnnxAttributeType, OnnxDataType } from './onnx-proto.js';
import { defaultOutputCount, expansionRule, inferOutputs, isUnknownDim, type ExpandRule, type InferContext, type OutputType } from './ops/index.js';

export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool';
/** A static size, or a symbolic (dynamic) axis name. Names starting with '?' are unknown dims. */
export type Dim = number | string;

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Dim[] | undefined;
}

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface TensorConst {
  readonly dtype: DType;
  readonly dims: number[];
  readonly data: TensorData;
}

/**
 * Attribute values. A plain number is written as INT when it is an integer, unless the attribute
 * name is one ONNX declares as float (epsilon, alpha, beta, ...); use { float } / { floats } to force.
 */
export type AttrValue =
  | number | string | number[] | string[]
  | { tensor: { dtype: DType; dims: number[]; data: TensorData } }
  | { float: number } | { floats: number[] };

export interface OpOptions {
  /** dtype of the (first) output, when inference would be wrong. */
  dtype?: DType;
  /** shape of the (first) output, when known better than inference. */
  shape?: Dim[];
  /** name of the (first) output value. */
  name?: string;
  /** operator domain ('' = ai.onnx). */
  domain?: string;
}

export interface GraphNode {
  readonly opType: string;
  readonly domain: string;
  readonly name: string;
  readonly inputs: readonly (Value | null)[];
  readonly outputs: readonly Value[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
  /**
   * A graph-level op's ONNX primitives (ops/ `expand`): autodiff sees this one node, the
   * ModelProto gets these in its place. Undefined for ONNX nodes.
   */
  readonly body?: readonly GraphNode[];
}

const FLOAT_ATTRS = new Set([
  'epsilon', 'alpha', 'beta', 'gamma', 'ratio', 'bias', 'lambd', 'mean', 'scale', 'high', 'low',
  'value_float', 'value_floats', 'scales', 'threshold', 'momentum', 'spatial_scale',
  'extrapolation_value', 'cubic_coeff_a',
]);

const TYPED_ARRAY: Record<DType, new (n: number) => TensorData> = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array,
};

/** ONNX TensorProto.DataType code of a dtype (for Cast's `to`, ConstantOfShape, ...). */
export function onnxType(dtype: DType): number {
  return OnnxDataType[dtype];
}

/** Converts plain numbers to the typed array for `dtype` (bigint for int64, 0/1 for bool). */
export function toTensorData(dtype: DType, data: TensorData | readonly number[]): TensorData {
  if (!Array.isArray(data)) {
    const d = data as TensorData;
    if (!(d instanceof TYPED_ARRAY[dtype])) throw new Error(`${dtype} tensor needs ${TYPED_ARRAY[dtype].name}`);
    return d;
  }
  const nums = data as readonly number[];
  if (dtype === 'int64') return BigInt64Array.from(nums, (v) => BigInt(Math.trunc(v)));
  if (dtype === 'bool') return Uint8Array.from(nums, (v) => (v ? 1 : 0));
  const out = new TYPED_ARRAY[dtype](nums.length);
  (out as Float64Array).set(nums);
  return out;
}

function tensorProto(name: string, t: TensorConst): Record<string, unknown> {
  const count = t.dims.reduce((p, d) => p * d, 1);
  if (t.data.length !== count) {
    throw new Error(`tensor ${name || '(attr)'}: ${t.data.length} values for dims [${t.dims.join(',')}]`);
  }
  return {
    name,
    dims: t.dims,
    dataType: OnnxDataType[t.dtype],
    // raw_data is little-endian, which is what typed arrays are on every platform Node runs on.
    rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  };
}

function attributeProto(name: string, v: AttrValue): Record<string, unknown> {
  const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
  if (typeof v === 'number') {
    return Number.isInteger(v) && !FLOAT_ATTRS.has(name)
      ? { name, type: OnnxAttributeType.INT, i: v }
      : { name, type: OnnxAttributeType.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: OnnxAttributeType.STRING, s: utf8(v) };
  if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') {
      return { name, type: OnnxAttributeType.STRINGS, strings: (v as string[]).map(utf8) };
    }
    const nums = v as number[];
    return nums.every(Number.isInteger) && !FLOAT_ATTRS.has(name)
      ? { name, type: OnnxAttributeType.INTS, ints: nums }
      : { name, type: OnnxAttributeType.FLOATS, floats: nums };
  }
  if ('tensor' in v) return { name, type: OnnxAttributeType.TENSOR, t: tensorProto('', v.tensor) };
  if ('float' in v) return { name, type: OnnxAttributeType.FLOAT, f: v.float };
  return { name, type: OnnxAttributeType.FLOATS, floats: v.floats };
}

function valueInfo(v: Value): Record<string, unknown> {
  const tensorType: Record<string, unknown> = { elemType: OnnxDataType[v.dtype] };
  if (v.shape) {
    tensorType['shape'] = {
      dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : isUnknownDim(d) ? {} : { dimParam: d })),
    };
  }
  return { name: v.name, type: { tensorType } };
}

/** The ONNX nodes of a node list: graph-level ops replaced by their primitives. */
function onnxNodes(nodes: readonly GraphNode[]): GraphNode[] {
  return nodes.flatMap((n) => (n.body ? onnxNodes(n.body) : [n]));
}

export class GraphBuilder {
  readonly name: string;
  readonly opset: number;
  private readonly nodeList: GraphNode[] = [];
  private readonly inputList: Value[] = [];
  private readonly outputList: Value[] = [];
  private readonly initializerList: { value: Value; tensor: TensorConst }[] = [];
  private readonly constants = new Map<string, TensorConst>();
  private readonly shapeValues = new Map<string, { dims: Dim[] }>();
  private readonly producers = new Map<string, GraphNode>();
  private readonly used = new Set<string>();
  private counter = 0;
  /** Nodes recorded so far, graph-level ops' bodies included: node names stay unique in the ModelProto. */
  private nodeCount = 0;
  private readonly ctx: InferContext;

  constructor(name: string, options: { opset?: number } = {}) {
    this.name = name;
    this.opset = options.opset ?? 17;
    const self = this;
    this.ctx = {
      opset: this.opset,
      constantValue: (v) => self.constantValue(v),
      shapeValue: (v) => self.shapeValue(v),
      freshDim: () => `?${self.counter++}`,
    };
  }

  /**
   * Recorded nodes in execution order (forward nodes first, then whatever autodiff appended); a
   * graph-level op is one node here, its primitives in its `body`.
   */
  get nodes(): readonly GraphNode[] { return this.nodeList; }
  get inputs(): readonly Value[] { return this.inputList; }
  get outputs(): readonly Value[] { return this.outputList; }
  get initializers(): readonly Value[] { return this.initializerList.map((i) => i.value); }

  /** The node that produced `v`, or undefined for graph inputs and initializers. */
  producer(v: Value): GraphNode | undefined { return this.producers.get(v.name); }

  /** The data of an initializer or Constant node, if `v` is one. */
  constantValue(v: Value): TensorConst | undefined { return this.constants.get(v.name); }

  /** The dims an int64 1-D value holds, when known at build time (a constant or a Shape of a known shape). */
  shapeValue(v: Value): Dim[] | undefined {
    const s = this.shapeValues.get(v.name);
    if (s) return s.dims;
    const c = this.constants.get(v.name);
    if (c && c.dtype === 'int64' && c.dims.length === 1) return Array.from(c.data as BigInt64Array, Number);
    return undefined;
  }

  /** A fresh value name with the given prefix, unique within this graph. */
  uniqueName(prefix: string): string {
    let name = `${prefix}_${this.counter++}`;
    while (this.used.has(name)) name = `${prefix}_${this.counter++}`;
    return name;
  }

  private claim(name: string): string {
    if (this.used.has(name)) throw new Error(`value name '${name}' is already used in graph ${this.name}`);
    this.used.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Dim[]): Value {
    const v: Value = { name: this.claim(name), dtype, shape: shape.slice() };
    this.inputList.push(v);
    return v;
  }

  /** A constant weight stored in the model (a graph initializer, not a graph input). */
  initializer(name: string, dtype: DType, dims: number[], data: TensorData): Value {
    const tensor: TensorConst = { dtype, dims: dims.slice(), data: toTensorData(dtype, data) };
    const v: Value = { name: this.claim(name), dtype, shape: dims.slice() };
    this.initializerList.push({ value: v, tensor });
    this.constants.set(v.name, tensor);
    return v;
  }

  /** A small Constant node; its data is also remembered for build-time reasoning (axes, shapes). */
  constant(dtype: DType, dims: number[], data: TensorData | number[]): Value {
    const tensor: TensorConst = { dtype, dims: dims.slice(), data: toTensorData(dtype, data) };
    const v = this.op('Constant', [], { value: { tensor } }, { dtype, shape: dims });
    this.constants.set(v.name, tensor);
    return v;
  }

  /** A rank-0 constant. */
  scalar(dtype: DType, value: number): Value {
    return this.constant(dtype, [], [value]);
  }

  /** A 1-D int64 constant (axes, shapes, starts/ends). */
  ints(values: number[]): Value {
    return this.constant('int64', [values.length], values);
  }

  op(opType: string, inputs: (Value | null)[], attrs: Record<string, AttrValue> = {}, options: OpOptions = {}): Value {
    // Some ops always expose extra outputs their backward rules read (LayerNormalization's Mean and
    // InvStdDev, Dropout's mask): the registry says how many.
    const n = (options.domain ?? '') === '' ? defaultOutputCount(opType) : 1;
    return this.opMulti(opType, inputs, n, attrs, options)[0]!;
  }

  opMulti(
    opType: string, inputs: (Value | null)[], numOutputs: number, attrs: Record<string, AttrValue> = {},
    options: OpOptions & { names?: string[] } = {},
  ): Value[] {
    for (const v of inputs) {
      if (v && !this.used.has(v.name)) throw new Error(`${opType}: input '${v.name}' is not in graph ${this.name}`);
    }
    const inferred = inferOutputs(this.ctx, opType, inputs, attrs, numOutputs);
    const expand = (options.domain ?? '') === '' ? expansionRule(opType) : undefined;
    if (expand) return this.graphLevelOp(opType, inputs, numOutputs, attrs, options, inferred, expand);
    const outputs: Value[] = [];
    for (let i = 0; i < numOutputs; i++) {
      const name = options.names?.[i] ?? (i === 0 ? options.name : undefined) ?? this.uniqueName(opType);
      const t = inferred[i] ?? { dtype: inferred[0]?.dtype ?? 'float32', shape: undefined };
      outputs.push({
        name: this.claim(name),
        dtype: i === 0 && options.dtype ? options.dtype : t.dtype,
        shape: i === 0 && options.shape ? options.shape.slice() : t.shape,
      });
    }
    const node: GraphNode = {
      opType, domain: options.domain ?? '', name: `n${this.nodeCount++}_${opType}`,
      inputs: inputs.slice(), outputs, attrs: { ...attrs },
    };
    this.nodeList.push(node);
    for (const o of outputs) this.producers.set(o.name, node);
    if (opType === 'Shape' && inputs[0]?.shape) {
      const s = outputs[0]!.shape!;
      const start = typeof attrs['start'] === 'number' ? attrs['start'] : 0;
      const r = inputs[0].shape.length;
      const from = Math.min(Math.max(start < 0 ? start + r : start, 0), r);
      this.shapeValues.set(outputs[0]!.name, { dims: inputs[0].shape.slice(from, from + (s[0] as number)) });
    }
    return outputs;
  }

  /**
   * Records a graph-level op: its expansion's nodes become the body of one node whose inputs and
   * outputs are the op's, so autodiff applies the op's own rule and never sees the primitives.
   */
  private graphLevelOp(
    opType: string, inputs: (Value | null)[], numOutputs: number, attrs: Record<string, AttrValue>,
    options: OpOptions & { names?: string[] }, types: readonly OutputType[], expand: ExpandRule,
  ): Value[] {
    if (options.name !== undefined || options.names !== undefined || options.shape || options.dtype) {
      throw new Error(`${opType}: a graph-level op names and types its outputs itself`);
    }
    const start = this.nodeList.length;
    const outputs = expand({ b: this, x: inputs, attrs, types });
    if (outputs.length !== numOutputs) throw new Error(`${opType}: its expansion gave ${outputs.length} outputs, not ${numOutputs}`);
    const body = this.nodeList.splice(start);
    const node: GraphNode = { opType, domain: '', name: `n${this.nodeCount++}_${opType}`, inputs: inputs.slice(), outputs, attrs: { ...attrs }, body };
    this.nodeList.push(node);
    for (const o of outputs) this.producers.set(o.name, node);
    return outputs;
  }

  /** Declares a graph output; renames through an Identity node when `name` differs from the value's. */
  output(value: Value, name?: string): void {
    const isInput = this.inputList.some((v) => v.name === value.name)
      || this.initializerList.some((i) => i.value.name === value.name);
    if ((name !== undefined && name !== value.name) || isInput) {
      value = this.op('Identity', [value], {}, { name: name ?? this.uniqueName(`${value.name}_out`) });
    }
    this.outputList.push(value);
  }

  toModelProto(options: { producer?: string; docString?: string } = {}): Uint8Array {
    if (this.outputList.length === 0) throw new Error(`graph ${this.name} has no outputs`);
    const graph = {
      name: this.name,
      node: onnxNodes(this.nodeList).map((n) => ({
        name: n.name,
        opType: n.opType,
        domain: n.domain,
        input: n.inputs.map((v) => (v ? v.name : '')),
        output: n.outputs.map((v) => v.name),
        attribute: Object.entries(n.attrs).map(([k, v]) => attributeProto(k, v)),
      })),
      initializer: this.initializerList.map((i) => tensorProto(i.value.name, i.tensor)),
      input: this.inputList.map(valueInfo),
      output: this.outputList.map(valueInfo),
    };
    // IR 8 goes with opsets up to 18, IR 9 with 19-20, IR 10 with 21+ (onnx/docs/Versioning.md).
    const irVersion = this.opset <= 18 ? 8 : this.opset <= 20 ? 9 : 10;
    const model = ModelProto.fromObject({
      irVersion,
      opsetImport: [{ domain: '', version: this.opset }],
      producerName: options.producer ?? 'rmserve',
      producerVersion: '0.1.0',
      docString: options.docString ?? '',
      graph,
    });
    return ModelProto.encode(model).finish();
  }

  // ---- convenience helpers (thin wrappers over op) ----

  add(a: Value, b: Value): Value { return this.op('Add', [a, b]); }
  sub(a: Value, b: Value): Value { return this.op('Sub', [a, b]); }
  mul(a: Value, b: Value): Value { return this.op('Mul', [a, b]); }
  div(a: Value, b: Value): Value { return this.op('Div', [a, b]); }
  neg(a: Value): Value { return this.op('Neg', [a]); }
  matmul(a: Value, b: Value): Value { return this.op('MatMul', [a, b]); }
  cast(a: Value, dtype: DType): Value {
    return a.dtype === dtype ? a : this.op('Cast', [a], { to: onnxType(dtype) });
  }
  shapeOf(a: Value): Value { return this.op('Shape', [a]); }
  reshape(a: Value, shape: number[] | Value): Value {
    return this.op('Reshape', [a, Array.isArray(shape) ? this.ints(shape) : shape]);
  }
  transpose(a: Value, perm: number[]): Value { return this.op('Transpose', [a], { perm }); }
  unsqueeze(a: Value, axes: number[]): Value { return this.op('Unsqueeze', [a, this.ints(axes)]); }
  squeeze(a: Value, axes: number[]): Value { return this.op('Squeeze', [a, this.ints(axes)]); }
  gather(data: Value, indices: Value, axis = 0): Value { return this.op('Gather', [data, indices], { axis }); }
  softmax(a: Value, axis = -1): Value { return this.op('Softmax', [a], { axis }); }
  logSoftmax(a: Value, axis = -1): Value { return this.op('LogSoftmax', [a], { axis }); }

  /** ReduceSum; axes go in as an input (opset >= 13). */
  reduceSum(a: Value, axes: number[], keepdims = true): Value {
    return this.op('ReduceSum', [a, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  /** ReduceMean; axes are an attribute before opset 18 and an input from 18 on. */
  reduceMean(a: Value, axes: number[], keepdims = true): Value {
    return this.opset >= 18
      ? this.op('ReduceMean', [a, this.ints(axes)], { keepdims: keepdims ? 1 : 0 })
      : this.op('ReduceMean', [a], { axes, keepdims: keepdims ? 1 : 0 });
  }

  /** LayerNormalization over the last axis (opset 17); returns Y only (Mean/InvStdDev are kept for autodiff). */
  layerNorm(x: Value, scale: Value, bias: Value | null, epsilon = 1e-5): Value {
    return this.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon });
  }
}
