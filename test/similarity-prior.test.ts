import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  angularSimilarity,
  cosine,
  deltaStar,
  lengthRatio,
  lengthSimilarities,
  TfidfModel,
  tfidfSimilarities,
  wordTokens,
} from '../src/training/similarity.js';

const close = (actual: number, expected: number, tol = 1e-12): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} vs ${expected}`);

test('δ* = β1/(s + β2) + β3 with the defaults and the paper setting', () => {
  close(deltaStar(1), 6 / 1.001);
  close(deltaStar(0.5), 6 / 0.501);
  close(deltaStar(0.5, 20, 0.001, -15), 20 / 0.501 - 15);
  close(deltaStar(0), 6000);
  // More alike responses get a smaller bound on the margin.
  assert.ok(deltaStar(0.9) < deltaStar(0.3));
  assert.throws(() => deltaStar(Number.NaN), RangeError);
  assert.throws(() => deltaStar(-0.1), RangeError);
  assert.throws(() => deltaStar(0, 6, 0), RangeError);
});

test('length ratio is shorter over longer', () => {
  assert.equal(lengthRatio(3, 12), 0.25);
  assert.equal(lengthRatio(12, 3), 0.25);
  assert.equal(lengthRatio(7, 7), 1);
  assert.equal(lengthRatio(0, 5), 0);
  assert.equal(lengthRatio(0, 0), 1);
  assert.throws(() => lengthRatio(-1, 2), RangeError);
  assert.deepEqual([...lengthSimilarities([2, 10], [4, 5])], [0.5, 0.5]);
});

test('angular similarity clamps negative cosines to orthogonal', () => {
  assert.equal(angularSimilarity(1), 1);
  assert.equal(angularSimilarity(0), 0.5);
  close(angularSimilarity(0.5), 2 / 3); // arccos(0.5) = π/3
  close(angularSimilarity(Math.SQRT1_2), 3 / 4); // arccos(1/√2) = π/4
  assert.equal(angularSimilarity(-0.3), 0.5);
  assert.equal(angularSimilarity(1.0000001), 1);
  close(cosine([1, 0], [1, 1]), Math.SQRT1_2);
  assert.equal(cosine([0, 0], [1, 1]), 0);
});

test('word tokens: lowercase, two or more word characters', () => {
  assert.deepEqual(wordTokens("A cat's 2 Dogs, naïve_x 42!"), ['cat', 'dogs', 'naïve_x', '42']);
  assert.deepEqual(wordTokens(''), []);
});

test('TF-IDF uses smooth IDF and L2 norm (sklearn defaults), hand-computed', () => {
  // Documents after tokenisation: [the cat sat] [the dog sat] [cat] ("a" is one letter).
  const model = TfidfModel.fit(['The cat sat', 'the dog sat', 'a cat']);
  assert.equal(model.documents, 3);
  const a = Math.log(4 / 3) + 1; // df = 2 for the, cat, sat
  const d = Math.log(4 / 2) + 1; // df = 1 for dog
  close(model.idf('the'), a);
  close(model.idf('dog'), d);
  close(model.idf('never-seen'), Math.log(4) + 1); // as if df = 0

  // [a, a, a] on (the, cat, sat) vs [a, d, a] on (the, dog, sat): dot 2a², norms √3·a and √(2a² + d²).
  const expected = (2 * a) / (Math.sqrt(3) * Math.sqrt(2 * a * a + d * d));
  close(model.cosine('the cat sat', 'The dog sat.'), expected);
  close(expected, 0.5979, 1e-4);
  close(model.similarity('the cat sat', 'the dog sat'), (Math.PI - Math.acos(expected)) / Math.PI);

  // Term counts multiply the weight: "cat cat" vs "cat dog" → [2a] vs [a, d].
  close(model.cosine('cat cat', 'cat dog'), a / Math.sqrt(a * a + d * d));
  close(model.cosine('cat', 'Cat!'), 1);
  assert.equal(model.cosine('', 'cat'), 0);
  assert.equal(model.similarity('dog', 'cat'), 0.5);
  const v = model.vector('the the dog');
  close(Math.hypot(...v.values()), 1);
});

test('tfidfSimilarities fits the IDF on the pairs unless given a corpus', () => {
  const pairs = [
    { chosen: 'red apple pie', rejected: 'red apple tart' },
    { chosen: 'blue sky', rejected: 'green grass' },
  ];
  const own = tfidfSimilarities(pairs);
  const model = TfidfModel.fit(['red apple pie', 'red apple tart', 'blue sky', 'green grass']);
  close(own[0] as number, model.similarity('red apple pie', 'red apple tart'));
  assert.equal(own[1], 0.5);
  assert.ok((own[0] as number) > 0.5 && (own[0] as number) < 1);
  // A different corpus changes the IDF and so the value.
  const other = tfidfSimilarities(pairs, ['red', 'red', 'red apple', 'pie']);
  assert.notEqual(other[0], own[0]);
});
