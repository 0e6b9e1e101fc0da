// Baselines on hand-made pairs (length) and a synthetic signal (bag of words).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lengthBaseline, pairwiseAccuracy, trainBagOfWords, type TokenPair } from '../src/training/baselines.js';

test('length baseline prefers the longer response and counts ties as half', () => {
  const pairs: TokenPair[] = [
    { chosen: [1, 2, 3], rejected: [4, 5] }, // longer chosen: correct
    { chosen: [1], rejected: [4, 5, 6, 7] }, // shorter chosen: incorrect
    { chosen: [1, 2], rejected: [3, 4] }, // tie
    { chosen: Int32Array.from([9, 9, 9, 9]), rejected: [] }, // typed arrays work too
  ];
  assert.deepEqual(lengthBaseline(pairs), { n: 4, correct: 2, ties: 1, incorrect: 1, accuracy: 2.5 / 4 });
  assert.ok(Number.isNaN(lengthBaseline([]).accuracy));
});

test('pairwiseAccuracy compares score(chosen) with score(rejected)', () => {
  const sumScore = (ids: ArrayLike<number>): number => Array.from(ids).reduce((s, x) => s + x, 0);
  const result = pairwiseAccuracy(sumScore, [
    { chosen: [5], rejected: [1, 1] },
    { chosen: [1], rejected: [2] },
    { chosen: [2], rejected: [1, 1] },
  ]);
  assert.deepEqual(result, { n: 3, correct: 1, ties: 1, incorrect: 1, accuracy: 0.5 });
});

// Random sequences over a 60-token vocabulary with independent lengths, so length says nothing;
// the chosen response always contains token 7 and the rejected one never does.
function syntheticPairs(n: number, seed: number): TokenPair[] {
  let s = seed;
  const rand = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const token = (): number => {
    for (;;) {
      const t = Math.floor(rand() * 60);
      if (t !== 7) return t;
    }
  };
  const seq = (): number[] => Array.from({ length: 5 + Math.floor(rand() * 20) }, token);
  return Array.from({ length: n }, () => {
    const chosen = seq();
    chosen[Math.floor(rand() * chosen.length)] = 7;
    return { chosen, rejected: seq() };
  });
}

test('bag-of-words logistic regression learns a token signal that length cannot see', () => {
  const train = syntheticPairs(400, 1);
  const heldOut = syntheticPairs(300, 2);
  const model = trainBagOfWords(train, { vocabSize: 60, seed: 3 });
  const acc = pairwiseAccuracy(model.score, heldOut);
  assert.ok(acc.accuracy > 0.9, `held-out accuracy ${acc.accuracy}`);
  assert.ok(lengthBaseline(heldOut).accuracy < 0.65, 'the signal is not length');
  // Token 7 carries the signal, so it gets the largest weight.
  const top = model.weights.indexOf(Math.max(...model.weights));
  assert.equal(top, 7);
  assert.ok(model.epochLoss.at(-1)! < model.epochLoss[0]!, `loss ${model.epochLoss.join(', ')}`);
  assert.ok(model.epochLoss[0]! < Math.LN2, 'first-epoch loss already below chance');
});

test('the score is the mean of w over all ids, so a masked-mean ONNX graph reproduces it', () => {
  const model = trainBagOfWords(syntheticPairs(50, 4), { vocabSize: 60, seed: 0, epochs: 2 });
  const w = model.weights;
  const ids = [7, 3, 3, 59, 0];
  assert.equal(model.score(ids), (w[7]! + w[3]! + w[3]! + w[59]! + w[0]!) / 5);
  assert.equal(model.score([]), 0);
  assert.throws(() => model.score([60]), /outside the vocabulary/);
  assert.throws(() => model.score([1.5]), RangeError);
  assert.throws(() => trainBagOfWords([{ chosen: [99], rejected: [1] }], { vocabSize: 60 }), /token id 99/);
});

test('training is deterministic for a seed and the seed matters', () => {
  const pairs = syntheticPairs(200, 5);
  const a = trainBagOfWords(pairs, { vocabSize: 60, seed: 11 });
  const b = trainBagOfWords(pairs, { vocabSize: 60, seed: 11 });
  const c = trainBagOfWords(pairs, { vocabSize: 60, seed: 12 });
  assert.deepEqual(a.weights, b.weights);
  assert.deepEqual(a.epochLoss, b.epochLoss);
  assert.notDeepEqual(a.weights, c.weights);
  // L2 shrinks: a heavier penalty gives a smaller weight vector on the same data and order.
  const norm = (w: Float32Array): number => Math.hypot(...w);
  assert.ok(norm(trainBagOfWords(pairs, { vocabSize: 60, seed: 11, l2: 0.1 }).weights) < norm(a.weights));
});
