// The backend: one onnxruntime-node InferenceSession for a reward model, fed padded batches.
// Accepts Hugging Face / optimum `*ForSequenceClassification` exports: inputs input_ids and
// attention_mask ([B,T], int64 or whatever integer/float type the graph declares), optional
// position_ids / token_type_ids, and decoder exports with a KV cache (`past_key_values.N.key|value`,
// fed empty so the graph runs as a plain forward; optimum's merged decoders' `use_cache_branch`
// is fed false); output `logits` [B,K] or [B], float32, float64 or float16.
import * as ort from 'onnxruntime-node';
import type { TruncationSide } from './tokenize.js';
import { modelLoadFailed } from './errors.js';
import { halfToFloat, toHalfBits } from './float16.js';

export type PaddingSide = TruncationSide;

export interface SessionOptions {
  /** `cpu`, `cuda` or `cuda:N`. */
  device: string;
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Let ORT's thread pools spin-wait between parallel sections and runs (ORT's default; off when unset). */
  allowSpinning?: boolean;
}

/** What the session needs from config.json to shape empty KV-cache inputs whose dims are symbolic. */
export interface CacheShapeHints {
  numKeyValueHeads?: number;
  headDim?: number;
}

const REQUIRED_INPUTS = ['input_ids', 'attention_mask'] as const;
const OPTIONAL_INPUTS = new Set(['position_ids', 'token_type_ids']);
const PAST_INPUT = /^past_key_values\.\d+\.(key|value)$/;
const USE_CACHE_BRANCH = 'use_cache_branch';
/** Token-like inputs may be declared with these types; the values are ids, 0/1 masks or positions. */
const INDEX_TYPES = new Set<ort.Tensor.Type>(['int64', 'int32', 'float32', 'float16', 'bool']);
const CACHE_TYPES = new Set<ort.Tensor.Type>(['float32', 'float16']);

/** The command that exports a reward model without a KV cache (for graphs rmserve cannot feed). */
export const OPTIMUM_EXPORT_HINT =
  'export it without a cache: optimum-cli export onnx --model <hub id or folder> --task text-classification <out dir>';

export function executionProviders(device: string): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device === 'cpu') return ['cpu'];
  const match = /^cuda(?::(\d+))?$/.exec(device);
  if (match === null) throw modelLoadFailed(`unknown device "${device}" (use cpu, cuda or cuda:N)`);
  return [{ name: 'cuda', deviceId: Number(match[1] ?? 0) }, 'cpu'];
}

/** An input the session feeds besides the token inputs: an empty past tensor, or use_cache_branch. */
interface ExtraInput {
  name: string;
  type: ort.Tensor.Type;
  /** Dims with the batch as -1 (filled per run) and the past length 0. */
  dims: number[];
}

export class RewardSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly outputName: string,
    private readonly padId: number,
    private readonly paddingSide: PaddingSide,
    /** Declared element type of each token-like input. */
    private readonly inputTypes: ReadonlyMap<string, ort.Tensor.Type>,
    private readonly extras: readonly ExtraInput[],
  ) {}

  static async create(
    model: string | Uint8Array,
    padId: number,
    paddingSide: PaddingSide,
    options: SessionOptions,
    hints: CacheShapeHints = {},
  ): Promise<RewardSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(options.device),
      graphOptimizationLevel: 'all',
      // ORT's pool threads spin between runs by default. With the session on the main thread that
      // stole the cores the event loop needed (p99 at concurrency 64: 2.7 s spinning, 0.7 s not);
      // on the inference thread spinning is faster at every level (docs/benchmarks.md), so the
      // server turns it on and off with --no-ort-spinning; other callers get it off unless asked.
      ...(options.allowSpinning ? {} : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }),
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
      ...(options.interOpThreads ? { interOpNumThreads: options.interOpThreads } : {}),
    };
    let session: ort.InferenceSession;
    try {
      // A path lets ORT find external weights (model.onnx_data, model.onnx.data) beside the graph.
      session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
    } catch (err) {
      throw modelLoadFailed(`cannot load ONNX model: ${(err as Error).message}`);
    }
    try {
      const { inputTypes, extras } = describeInputs(session, hints);
      const outputName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0];
      if (outputName === undefined) throw modelLoadFailed('model has no outputs');
      return new RewardSession(session, outputName, padId, paddingSide, inputTypes, extras);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /** The declared element type of the reward output (float16 for fp16 exports). */
  get outputType(): string {
    const meta = this.session.outputMetadata.find((m) => m.name === this.outputName);
    return meta !== undefined && meta.isTensor ? meta.type : 'float32';
  }

  /**
   * Runs one padded batch. Returns one reward vector (K values) per row.
   * Position ids follow transformers' convention: cumsum(mask) − 1, pads set to 1.
   */
  async run(rows: readonly (readonly number[])[]): Promise<{ rewards: Float32Array[]; paddedTokens: number }> {
    const batch = rows.length;
    const width = Math.max(...rows.map((r) => r.length));
    // Int32 staging rows: ids, masks and positions all fit, and int64 feeds are filled from them
    // word by word (int64Of) instead of one BigInt per token.
    const ids = new Int32Array(batch * width).fill(this.padId);
    const mask = new Int32Array(batch * width);
    const positions = new Int32Array(batch * width).fill(1);
    rows.forEach((row, b) => {
      const offset = b * width + (this.paddingSide === 'left' ? width - row.length : 0);
      for (let t = 0; t < row.length; t++) {
        ids[offset + t] = row[t] as number;
        mask[offset + t] = 1;
        positions[offset + t] = t;
      }
    });
    const dims = [batch, width];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: this.tensor('input_ids', ids, dims),
      attention_mask: this.tensor('attention_mask', mask, dims),
    };
    if (this.inputTypes.has('position_ids')) feeds.position_ids = this.tensor('position_ids', positions, dims);
    if (this.inputTypes.has('token_type_ids')) feeds.token_type_ids = this.tensor('token_type_ids', new Int32Array(batch * width), dims);
    for (const extra of this.extras) {
      const shape = extra.dims.map((d) => (d === -1 ? batch : d));
      feeds[extra.name] =
        extra.name === USE_CACHE_BRANCH ? new ort.Tensor('bool', new Uint8Array([0]), shape) : emptyTensor(extra.type, shape);
    }
    const outputs = await this.session.run(feeds, [this.outputName]);
    const logits = outputs[this.outputName] as ort.Tensor;
    const data = toFloat32(logits);
    if (data.length % batch !== 0) {
      throw modelLoadFailed(`output ${this.outputName} has ${data.length} values for a batch of ${batch}`);
    }
    const k = data.length / batch;
    const rewards = Array.from({ length: batch }, (_, b) => data.slice(b * k, (b + 1) * k));
    for (const t of Object.values(outputs)) t.dispose();
    return { rewards, paddedTokens: batch * width };
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  private tensor(name: string, values: Int32Array, dims: number[]): ort.Tensor {
    const type = this.inputTypes.get(name) ?? 'int64';
    switch (type) {
      case 'int64':
        return new ort.Tensor('int64', int64Of(values), dims);
      case 'int32':
        return new ort.Tensor('int32', values, dims);
      case 'float32':
        return new ort.Tensor('float32', Float32Array.from(values), dims);
      case 'float16':
        return new ort.Tensor('float16', Uint16Array.from(values, toHalfBits), dims);
      default:
        return new ort.Tensor('bool', Uint8Array.from(values, (v) => (v === 0 ? 0 : 1)), dims);
    }
  }
}

/** Checks the graph's inputs and works out how to feed each one. */
function describeInputs(
  session: ort.InferenceSession,
  hints: CacheShapeHints,
): { inputTypes: Map<string, ort.Tensor.Type>; extras: ExtraInput[] } {
  const metadata = new Map(session.inputMetadata.map((m) => [m.name, m]));
  const missing = REQUIRED_INPUTS.filter((name) => !metadata.has(name));
  const unknown = session.inputNames.filter(
    (name) => !(REQUIRED_INPUTS as readonly string[]).includes(name) && !OPTIONAL_INPUTS.has(name) && !PAST_INPUT.test(name) && name !== USE_CACHE_BRANCH,
  );
  if (missing.length > 0 || unknown.length > 0) {
    throw modelLoadFailed(
      `model inputs must be input_ids, attention_mask and optionally position_ids/token_type_ids/past_key_values.*; ` +
        `missing [${missing.join(', ')}], unsupported [${unknown.join(', ')}]`,
    );
  }
  const inputTypes = new Map<string, ort.Tensor.Type>();
  const extras: ExtraInput[] = [];
  for (const name of session.inputNames) {
    const meta = metadata.get(name);
    const type = meta !== undefined && meta.isTensor ? meta.type : 'int64';
    if (PAST_INPUT.test(name)) {
      extras.push(pastInput(name, meta, hints));
    } else if (name === USE_CACHE_BRANCH) {
      extras.push({ name, type: 'bool', dims: [1] });
    } else {
      if (!INDEX_TYPES.has(type)) throw modelLoadFailed(`input ${name} has type ${type}; rmserve feeds int64, int32, float32, float16 or bool`);
      inputTypes.set(name, type);
    }
  }
  return { inputTypes, extras };
}

/**
 * An empty past tensor [batch, kv_heads, 0, head_dim]: with no past, the graph's attention is over
 * the current tokens only, exactly the no-cache forward. Symbolic dims come from config.json.
 */
function pastInput(name: string, meta: ort.InferenceSession.ValueMetadata | undefined, hints: CacheShapeHints): ExtraInput {
  if (meta === undefined || !meta.isTensor || !CACHE_TYPES.has(meta.type) || meta.shape.length !== 4) {
    throw modelLoadFailed(`${name}: a KV-cache input must be a float32/float16 tensor [batch, heads, past, head_dim]; ${OPTIMUM_EXPORT_HINT}`);
  }
  const [, heads, , headDim] = meta.shape;
  const resolve = (dim: number | string | undefined, hint: number | undefined, what: string): number => {
    if (typeof dim === 'number' && dim > 0) return dim;
    if (hint !== undefined && hint > 0) return hint;
    throw modelLoadFailed(`${name}: the graph leaves ${what} symbolic and config.json does not give it; ${OPTIMUM_EXPORT_HINT}`);
  };
  return {
    name,
    type: meta.type,
    dims: [-1, resolve(heads, hints.numKeyValueHeads, 'the number of key/value heads'), 0, resolve(headDim, hints.headDim, 'the head dimension')],
  };
}

/**
 * `values` widened to int64 without a BigInt per element: each value is written as its low word
 * and the low word's sign as the high one (little-endian, which is every platform ORT ships for
 * Node). BigInt64Array.from with BigInt() took ~40 us of a batch-1 request's ~3 ms on the 2-core VM.
 */
export function int64Of(values: Int32Array): BigInt64Array {
  const out = new BigInt64Array(values.length);
  const words = new Int32Array(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    words[2 * i] = v;
    words[2 * i + 1] = v >> 31;
  }
  return out;
}

function emptyTensor(type: ort.Tensor.Type, dims: number[]): ort.Tensor {
  return type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float64') return Float32Array.from(tensor.data as Float64Array);
  // fp16 exports (optimum --fp16) give float16 logits: widen on the way out.
  if (tensor.type === 'float16') return Float32Array.from(tensor.data as Uint16Array, halfToFloat);
  throw modelLoadFailed(`model output must be float32, float64 or float16, got ${tensor.type} (bfloat16: add a Cast to float32 after the score head)`);
}
