// A position-weighted bag-of-words reward model as an ONNX graph: the interim default model
// (weights from a logistic regression, src/training/baselines.ts) and the test fixture that checks
// the server's padding and position handling. With all position weights 1 it is exactly
// r_k(ids) = (1/n)·Σ_t w[ids_t, k] + b_k, the bag-of-words baseline.
import { GraphBuilder, type Value } from './graph/builder.js';
import { mulberry32 } from './random.js';

export interface BowModelWeights {
  vocabSize: number;
  /** K reward heads. */
  numOutputs: number;
  /** [vocabSize, K] row-major. */
  tokenWeights: Float32Array;
  /** [maxPositions]; position p's tokens count with this weight. */
  positionWeights: Float32Array;
  /** [K] */
  bias: Float32Array;
}

export interface BowGraphOptions {
  /** Declare position_ids as an input (Hugging Face / optimum style) instead of deriving them from the mask. */
  positionIdsInput?: boolean;
  /** Emit logits as [B] instead of [B,1] (single head only), as some exports do. */
  flatOutput?: boolean;
  /**
   * Find real tokens as `input_ids != padIdInGraph` instead of reading attention_mask, as
   * transformers' *ForSequenceClassification pooling does with config.pad_token_id: a server
   * that pads with another id then scores batched rows wrong (the load-time self-check's case).
   */
  padIdInGraph?: number;
  /**
   * Make the run fail (an out-of-range Gather) when a batch is at least this many tokens wide:
   * the test fixture for an ONNX run that throws on some inputs only.
   */
  failFromLength?: number;
}

export function buildBowRewardGraph(w: BowModelWeights, options: BowGraphOptions = {}): Uint8Array {
  const K = w.numOutputs;
  const P = w.positionWeights.length;
  const g = new GraphBuilder('bow_reward_model', { opset: 17 });
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const table = g.initializer('token_weights', 'float32', [w.vocabSize, K], w.tokenWeights); // [V,K]
  const posTable = g.initializer('position_weights', 'float32', [P], w.positionWeights); // [P]
  const bias = g.initializer('bias', 'float32', [K], w.bias); // [K]

  // Position of each real token counted from the first real one (so left padding changes nothing):
  // cumsum(mask) − 1, clamped into [0, P−1] for pads and overlong rows.
  let positions: Value;
  if (options.positionIdsInput) {
    positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  } else {
    positions = g.sub(g.op('CumSum', [mask, g.scalar('int64', 1)]), g.scalar('int64', 1)); // [B,T]
  }
  positions = g.op('Clip', [positions, g.scalar('int64', 0), g.scalar('int64', P - 1)]); // [B,T]

  const real = options.padIdInGraph === undefined ? mask : g.cast(g.op('Not', [g.op('Equal', [ids, g.scalar('int64', options.padIdInGraph)])]), 'int64'); // [B,T]
  const m = g.cast(real, 'float32'); // [B,T]
  const weight = g.mul(m, g.gather(posTable, positions)); // [B,T]
  const tokens = g.gather(table, ids); // [B,T,K]
  const summed = g.reduceSum(g.mul(tokens, g.unsqueeze(weight, [2])), [1], false); // [B,K]
  const count = g.op('Max', [g.reduceSum(m, [1], true), g.scalar('float32', 1)]); // [B,1]
  let logits = g.add(g.div(summed, count), bias); // [B,K]
  if (options.failFromLength !== undefined) {
    // zeros[T]: valid for T < failFromLength, out of range (ORT throws) from there on.
    const width = g.op('Gather', [g.op('Shape', [ids]), g.scalar('int64', 1)]); // [] = T
    const zeros = g.initializer('fail_table', 'float32', [options.failFromLength], new Float32Array(options.failFromLength)); // [L]
    logits = g.add(logits, g.gather(zeros, width)); // [B,K] + [] = [B,K]
  }
  if (options.flatOutput) {
    if (K !== 1) throw new Error('flatOutput needs a single head');
    logits = g.reshape(logits, [-1]); // [B]
  }
  g.output(logits, 'logits');
  return g.toModelProto({ docString: 'rmserve bag-of-words reward model' });
}

/** The same function in plain JS, for tests and for the trainer's evaluation. */
export function bowScore(w: BowModelWeights, ids: readonly number[]): Float32Array {
  const K = w.numOutputs;
  const out = new Float32Array(K);
  ids.forEach((id, t) => {
    const pw = w.positionWeights[Math.min(t, w.positionWeights.length - 1)] as number;
    for (let k = 0; k < K; k++) out[k] = (out[k] as number) + pw * (w.tokenWeights[id * K + k] as number);
  });
  for (let k = 0; k < K; k++) out[k] = (out[k] as number) / Math.max(ids.length, 1) + (w.bias[k] as number);
  return out;
}

/** Seeded random weights for fixtures. */
export function randomBowWeights(vocabSize: number, numOutputs: number, maxPositions: number, seed: number): BowModelWeights {
  const rand = mulberry32(seed);
  return {
    vocabSize,
    numOutputs,
    tokenWeights: Float32Array.from({ length: vocabSize * numOutputs }, () => rand() * 2 - 1),
    positionWeights: Float32Array.from({ length: maxPositions }, () => 0.5 + rand()),
    bias: Float32Array.from({ length: numOutputs }, () => rand() - 0.5),
  };
}
