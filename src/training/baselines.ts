// Baselines every reward model's pairwise accuracy is reported beside, over token-id sequences
// (the caller tokenizes and decides what the ids cover: response only, or prompt + response).
//
// - length: prefer the longer response. Strong on judgments known to favour long answers.
// - bag of words: Bradley–Terry logistic regression on mean-pooled token weights,
//   r(ids) = (1/n)·Σ_t w[ids_t], P(chosen ≻ rejected) = σ(r(c) − r(r)). The feature is exactly
//   the mean of w over ALL ids given, so an ONNX Gather → masked mean (bow-model.ts, K = 1,
//   bias 0, position weights 1) reproduces the score.

import { mulberry32 } from './random.js';

export interface TokenPair {
  chosen: ArrayLike<number>;
  rejected: ArrayLike<number>;
}

export interface PairwiseAccuracy {
  n: number;
  correct: number; // score(chosen) > score(rejected)
  ties: number; // equal scores: a coin flip, counted as 0.5
  incorrect: number;
  accuracy: number; // (correct + 0.5·ties) / n; NaN for no pairs
}

export function pairwiseAccuracy(score: (ids: ArrayLike<number>) => number, pairs: readonly TokenPair[]): PairwiseAccuracy {
  let correct = 0;
  let ties = 0;
  for (const pair of pairs) {
    const c = score(pair.chosen);
    const r = score(pair.rejected);
    if (c > r) correct++;
    else if (c === r) ties++;
  }
  const n = pairs.length;
  return { n, correct, ties, incorrect: n - correct - ties, accuracy: n > 0 ? (correct + 0.5 * ties) / n : Number.NaN };
}

export function lengthBaseline(pairs: readonly TokenPair[]): PairwiseAccuracy {
  return pairwiseAccuracy((ids) => ids.length, pairs);
}

export interface BagOfWordsOptions {
  vocabSize: number;
  epochs?: number; // default 5
  learningRate?: number; // Adagrad step, default 0.5
  l2?: number; // λ in λ/2·‖w‖², default 1e-4
  seed?: number; // pair order per epoch, default 0
}

export interface BagOfWordsModel {
  weights: Float32Array; // [vocabSize]
  score(ids: ArrayLike<number>): number;
  epochLoss: number[]; // mean −log σ(r_c − r_r) over the pairs of each epoch, as trained
}

function meanWeight(weights: Float32Array, ids: ArrayLike<number>): number {
  const n = ids.length;
  if (n === 0) return 0;
  let sum = 0;
  for (let t = 0; t < n; t++) {
    const id = ids[t]!;
    if (!(id >= 0 && id < weights.length) || !Number.isInteger(id)) throw new RangeError(`token id ${id} outside the vocabulary [0, ${weights.length})`);
    sum += weights[id]!;
  }
  return sum / n;
}

// Per-pair Adagrad over sparse features. For one pair, with Δ = r(c) − r(r):
//   forward  L = −log σ(Δ) = softplus(−Δ)            (+ λ/2·w_j² for each touched j)
//   backward ∂L/∂Δ = −σ(−Δ);  ∂Δ/∂w_j = cnt_c(j)/n_c − cnt_r(j)/n_r
// Only tokens present in the pair are updated, and the L2 term is applied to those alone (the
// usual sparse convention): frequent tokens are pulled to 0 more often, absent ones stay put.
export function trainBagOfWords(pairs: readonly TokenPair[], options: BagOfWordsOptions): BagOfWordsModel {
  const { vocabSize, epochs = 5, learningRate = 0.5, l2 = 1e-4, seed = 0 } = options;
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
  const weights = new Float32Array(vocabSize); // [V]
  const sumSq = new Float64Array(vocabSize); // [V] Adagrad accumulator
  const coef = new Float64Array(vocabSize); // [V] scratch: ∂Δ/∂w_j, zero outside `touched`
  const isTouched = new Uint8Array(vocabSize); // [V] scratch: j is in `touched`
  const touched: number[] = [];
  const order = Array.from(pairs.keys());
  const random = mulberry32(seed);
  const epochLoss: number[] = [];

  const addCounts = (ids: ArrayLike<number>, sign: number): void => {
    const n = ids.length;
    for (let t = 0; t < n; t++) {
      const id = ids[t]!;
      if (isTouched[id] === 0) {
        isTouched[id] = 1;
        touched.push(id);
      }
      coef[id]! += sign / n;
    }
  };

  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    for (const index of order) {
      const { chosen, rejected } = pairs[index]!;
      const delta = meanWeight(weights, chosen) - meanWeight(weights, rejected);
      // softplus(−Δ) and σ(−Δ), both in their overflow-free forms.
      lossSum += Math.max(-delta, 0) + Math.log1p(Math.exp(-Math.abs(delta)));
      const dDelta = delta >= 0 ? -Math.exp(-delta) / (1 + Math.exp(-delta)) : -1 / (1 + Math.exp(delta));
      addCounts(chosen, 1);
      addCounts(rejected, -1);
      for (const id of touched) {
        const grad = dDelta * coef[id]! + l2 * weights[id]!;
        sumSq[id]! += grad * grad;
        if (sumSq[id]! > 0) weights[id]! -= (learningRate * grad) / Math.sqrt(sumSq[id]!);
        coef[id] = 0;
        isTouched[id] = 0;
      }
      touched.length = 0;
    }
    epochLoss.push(order.length > 0 ? lossSum / order.length : 0);
  }
  return { weights, score: (ids) => meanWeight(weights, ids), epochLoss };
}
