// The backend: one onnxruntime-node InferenceSession for a reward model, fed padded batches.
// Accepts Hugging Face / optimum `*ForSequenceClassification` exports: inputs input_ids and
// attention_mask (int64 [B,T]), optional position_ids / token_type_ids, output `logits` [B,K] or [B].
import * as ort from 'onnxruntime-node';
import type { TruncationSide } from './tokenize.js';
import { modelLoadFailed } from './errors.js';

export type PaddingSide = TruncationSide;

export interface SessionOptions {
  /** `cpu`, `cuda` or `cuda:N`. */
  device: string;
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Let ORT's thread pools spin-wait between runs (ORT's default; off here). */
  allowSpinning?: boolean;
}

const REQUIRED_INPUTS = ['input_ids', 'attention_mask'] as const;
const OPTIONAL_INPUTS = new Set(['position_ids', 'token_type_ids']);

export function executionProviders(device: string): ort.InferenceSession.ExecutionProviderConfig[] {
  if (device === 'cpu') return ['cpu'];
  const match = /^cuda(?::(\d+))?$/.exec(device);
  if (match === null) throw modelLoadFailed(`unknown device "${device}" (use cpu, cuda or cuda:N)`);
  return [{ name: 'cuda', deviceId: Number(match[1] ?? 0) }, 'cpu'];
}

export class RewardSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly outputName: string,
    private readonly padId: number,
    private readonly paddingSide: PaddingSide,
  ) {}

  static async create(
    model: string | Uint8Array,
    padId: number,
    paddingSide: PaddingSide,
    options: SessionOptions,
  ): Promise<RewardSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(options.device),
      graphOptimizationLevel: 'all',
      // ORT's pool threads spin between runs by default; in a server they then steal the cores the
      // event loop needs to parse, tokenize and answer (measured: p99 at concurrency 64 fell from
      // 2.7 s to 0.7 s with spinning off, docs/benchmarks.md).
      ...(options.allowSpinning ? {} : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }),
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
      ...(options.interOpThreads ? { interOpNumThreads: options.interOpThreads } : {}),
    };
    let session: ort.InferenceSession;
    try {
      session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
    } catch (err) {
      throw modelLoadFailed(`cannot load ONNX model: ${(err as Error).message}`);
    }
    const missing = REQUIRED_INPUTS.filter((name) => !session.inputNames.includes(name));
    const unknown = session.inputNames.filter(
      (name) => !(REQUIRED_INPUTS as readonly string[]).includes(name) && !OPTIONAL_INPUTS.has(name),
    );
    if (missing.length > 0 || unknown.length > 0) {
      await session.release();
      throw modelLoadFailed(
        `model inputs must be input_ids, attention_mask and optionally position_ids/token_type_ids; ` +
          `missing [${missing.join(', ')}], unsupported [${unknown.join(', ')}]`,
      );
    }
    const outputName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0];
    if (outputName === undefined) throw modelLoadFailed('model has no outputs');
    return new RewardSession(session, outputName, padId, paddingSide);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /**
   * Runs one padded batch. Returns one reward vector (K values) per row.
   * Position ids follow transformers' convention: cumsum(mask) − 1, pads set to 1.
   */
  async run(rows: readonly (readonly number[])[]): Promise<{ rewards: Float32Array[]; paddedTokens: number }> {
    const batch = rows.length;
    const width = Math.max(...rows.map((r) => r.length));
    const ids = new BigInt64Array(batch * width).fill(BigInt(this.padId));
    const mask = new BigInt64Array(batch * width);
    const positions = new BigInt64Array(batch * width).fill(1n);
    rows.forEach((row, b) => {
      const offset = b * width + (this.paddingSide === 'left' ? width - row.length : 0);
      for (let t = 0; t < row.length; t++) {
        ids[offset + t] = BigInt(row[t] as number);
        mask[offset + t] = 1n;
        positions[offset + t] = BigInt(t);
      }
    });
    const dims = [batch, width];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, dims),
      attention_mask: new ort.Tensor('int64', mask, dims),
    };
    if (this.session.inputNames.includes('position_ids')) feeds.position_ids = new ort.Tensor('int64', positions, dims);
    if (this.session.inputNames.includes('token_type_ids')) {
      feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(batch * width), dims);
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
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float64') return Float32Array.from(tensor.data as Float64Array);
  throw modelLoadFailed(`model output must be float32 or float64, got ${tensor.type}`);
}
