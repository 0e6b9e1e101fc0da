// The trainer's own scoring: the forward graph with the parameters as inputs (built once, fed the
// current weights), and the pairwise metrics computed from its rewards.
import * as ort from 'onnxruntime-node';
import { GraphBuilder, type Value } from './graph/builder.js';
import { MODEL_OPSET, buildForward, declareParamInputs, lmHeadWeight, parameterSpecs, responseLogProbs, type ModelWeights, type RewardModelConfig } from './model.js';
import { padBatch, responseTokens } from './batch.js';
import type { EncodedPair } from './encode.js';
import { declareLoraParams, loraLinear, type LoraGraph } from './lora.js';

/** Parameters as ORT tensors by name: what the step graph takes and returns. */
export type ParamTensors = Map<string, ort.Tensor>;

export function weightsToTensors(c: RewardModelConfig, weights: ModelWeights): ParamTensors {
  return new Map(
    parameterSpecs(c).map((s) => {
      const data = weights.get(s.name);
      if (data === undefined) throw new Error(`weights are missing ${s.name}`);
      return [s.name, new ort.Tensor('float32', data, s.shape)];
    }),
  );
}

export function tensorsToWeights(params: ParamTensors): ModelWeights {
  return new Map([...params].map(([name, t]) => [name, t.data as Float32Array]));
}

export class RewardForward {
  private constructor(
    readonly config: RewardModelConfig,
    private readonly session: ort.InferenceSession,
  ) {}

  /**
   * With `lora`, the graph holds the frozen base weights and takes the adapters and the head (the
   * step's trained tensors), unmerged: validation scores the adapters exactly as the step runs them.
   */
  static async create(config: RewardModelConfig, sessionOptions: ort.InferenceSession.SessionOptions = {}, lora?: LoraGraph): Promise<RewardForward> {
    const b = new GraphBuilder('reward_forward', { opset: MODEL_OPSET });
    const params = lora ? declareLoraParams(b, config, lora, 'float32').params : declareParamInputs(b, config);
    const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
    const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
    b.output(buildForward(b, config, params, ids, mask, lora ? { linear: loraLinear(config, lora.settings) } : {}).rewards, 'logits');
    const session = await ort.InferenceSession.create(b.toModelProto(), { graphOptimizationLevel: 'all', ...sessionOptions });
    return new RewardForward(config, session);
  }

  /** Rewards of each row: [rows.length] arrays of K values. */
  async score(params: ParamTensors, rows: readonly (readonly number[])[], padId: number): Promise<Float32Array[]> {
    const batch = padBatch(rows, padId);
    const feeds: Record<string, ort.Tensor> = { input_ids: batch.inputIds, attention_mask: batch.attentionMask };
    for (const [name, t] of params) feeds[name] = t;
    const out = await this.session.run(feeds, ['logits']);
    const logits = out.logits as ort.Tensor;
    const data = logits.data as Float32Array;
    const K = this.config.numObjectives;
    return rows.map((_, i) => data.slice(i * K, (i + 1) * K));
  }

  /**
   * Scores many sequences in length-sorted batches of at most `maxTokens` padded tokens, so
   * padding stays small; returns rewards in the input order.
   */
  async scoreAll(params: ParamTensors, rows: readonly (readonly number[])[], padId: number, maxTokens = 8192): Promise<Float32Array[]> {
    const order = rows.map((_, i) => i).sort((a, b) => (rows[a] as number[]).length - (rows[b] as number[]).length);
    const out: Float32Array[] = new Array<Float32Array>(rows.length);
    let start = 0;
    while (start < order.length) {
      let end = start + 1;
      while (end < order.length && (end - start + 1) * (rows[order[end] as number] as number[]).length <= maxTokens) end++;
      const idx = order.slice(start, end);
      const rewards = await this.score(params, idx.map((i) => rows[i] as number[]), padId);
      idx.forEach((i, j) => (out[i] = rewards[j] as Float32Array));
      start = end;
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * log π(y|x) of sequences under the LM head (sum of response-token log-probs), with the
 * parameters as inputs: HaF-RM's and GRM-DPO's reference terms, computed once per pair with the
 * initial weights before training (so the step graph runs one model, not two).
 */
export class LogProbForward {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(config: RewardModelConfig, sessionOptions: ort.InferenceSession.SessionOptions = {}): Promise<LogProbForward> {
    const b = new GraphBuilder('response_logp', { opset: MODEL_OPSET });
    const params = declareParamInputs(b, config);
    const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
    const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
    const tokens = {
      positions: b.input('lm_positions', 'int64', ['lm_tokens']),
      targets: b.input('lm_targets', 'int64', ['lm_tokens']),
      segments: b.input('lm_segments', 'float32', ['batch', 'lm_tokens']),
    };
    const { hidden } = buildForward(b, config, params, ids, mask, { lmHidden: true });
    b.output(responseLogProbs(b, hidden as Value, lmHeadWeight(config, params), tokens), 'logp');
    const session = await ort.InferenceSession.create(b.toModelProto(), { graphOptimizationLevel: 'all', ...sessionOptions });
    return new LogProbForward(session);
  }

  /**
   * log π of each row (response from starts[i]) in length-sorted batches of at most `maxTokens`
   * padded tokens (the [N, V] logits of a batch's response tokens dominate its memory); results in the input order.
   */
  async logProbs(params: ParamTensors, rows: readonly (readonly number[])[], starts: readonly number[], padId: number, maxTokens = 2048): Promise<Float64Array> {
    const order = rows.map((_, i) => i).sort((a, b) => (rows[a] as number[]).length - (rows[b] as number[]).length);
    const out = new Float64Array(rows.length);
    let start = 0;
    while (start < order.length) {
      let end = start + 1;
      while (end < order.length && (end - start + 1) * (rows[order[end] as number] as number[]).length <= maxTokens) end++;
      const idx = order.slice(start, end);
      const batchRows = idx.map((i) => rows[i] as number[]);
      const batch = padBatch(batchRows, padId);
      const tokens = responseTokens(batchRows, idx.map((i) => starts[i] as number), batch.inputIds.dims[1] as number);
      const feeds: Record<string, ort.Tensor> = {
        input_ids: batch.inputIds, attention_mask: batch.attentionMask,
        lm_positions: tokens.positions, lm_targets: tokens.targets, lm_segments: tokens.segments,
      };
      for (const [name, t] of params) feeds[name] = t;
      const logp = (await this.session.run(feeds, ['logp'])).logp as ort.Tensor;
      idx.forEach((i, j) => (out[i] = (logp.data as Float32Array)[j] as number));
      start = end;
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export interface PairMetrics {
  pairs: number;
  /** Fraction of pairs with r_chosen > r_rejected (ties count half). */
  accuracy: number;
  loss: number;
  reward_mean: number;
  reward_std: number;
  chosen_mean: number;
  rejected_mean: number;
  margin_mean: number;
}

/** Pairwise metrics on one objective column. `loss` is the plain Bradley–Terry loss −log σ(Δ). */
export function pairMetrics(chosen: readonly Float32Array[], rejected: readonly Float32Array[], column = 0): PairMetrics {
  const n = chosen.length;
  let correct = 0, loss = 0, sum = 0, sumSq = 0, cSum = 0, rSum = 0;
  for (let i = 0; i < n; i++) {
    const c = (chosen[i] as Float32Array)[column] as number;
    const r = (rejected[i] as Float32Array)[column] as number;
    const d = c - r;
    correct += d > 0 ? 1 : d === 0 ? 0.5 : 0;
    loss += softplus(-d);
    sum += c + r;
    sumSq += c * c + r * r;
    cSum += c;
    rSum += r;
  }
  const mean = n > 0 ? sum / (2 * n) : 0;
  return {
    pairs: n,
    accuracy: n > 0 ? correct / n : 0,
    loss: n > 0 ? loss / n : 0,
    reward_mean: mean,
    reward_std: n > 0 ? Math.sqrt(Math.max(0, sumSq / (2 * n) - mean * mean)) : 0,
    chosen_mean: n > 0 ? cSum / n : 0,
    rejected_mean: n > 0 ? rSum / n : 0,
    margin_mean: n > 0 ? (cSum - rSum) / n : 0,
  };
}

function softplus(x: number): number {
  return x > 30 ? x : Math.log1p(Math.exp(x));
}

/** Scores both responses of every pair with the current parameters. */
export async function scorePairs(
  forward: RewardForward, params: ParamTensors, pairs: readonly EncodedPair[], padId: number, maxTokens?: number,
): Promise<{ chosen: Float32Array[]; rejected: Float32Array[] }> {
  const rows = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
  const rewards = await forward.scoreAll(params, rows, padId, maxTokens);
  return { chosen: rewards.slice(0, pairs.length), rejected: rewards.slice(pairs.length) };
}
