import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { learnMerges } from '../src/training/tokenizer/learn-merges.js';
import { BYTE_TO_CHAR, preTokenize, utf8Bytes } from '../src/training/tokenizer/byte-level.js';

// The incremental trainer must pick exactly the merges that a full recount per step picks.
// This reference recounts every pair of every word before each merge (slow, obviously right),
// with the same ordering: highest count, then smallest (a, b).
function referenceMerges(
  words: number[][],
  counts: number[],
  initialTokens: string[],
  vocabSize: number,
  minFrequency: number,
): { tokens: string[]; merges: Array<[number, number]> } {
  const tokens = initialTokens.slice();
  const merges: Array<[number, number]> = [];
  while (tokens.length < vocabSize) {
    const pairCounts = new Map<string, { a: number; b: number; count: number }>();
    words.forEach((w, i) => {
      for (let j = 0; j + 1 < w.length; j++) {
        const k = `${w[j]},${w[j + 1]}`;
        const e = pairCounts.get(k) ?? { a: w[j], b: w[j + 1], count: 0 };
        e.count += counts[i];
        pairCounts.set(k, e);
      }
    });
    let best: { a: number; b: number; count: number } | undefined;
    for (const e of pairCounts.values()) {
      if (
        best === undefined ||
        e.count > best.count ||
        (e.count === best.count && (e.a < best.a || (e.a === best.a && e.b < best.b)))
      ) {
        best = e;
      }
    }
    if (best === undefined || best.count < Math.max(1, minFrequency)) break;
    const merged = tokens[best.a] + tokens[best.b];
    let id = tokens.indexOf(merged);
    if (id < 0) id = tokens.push(merged) - 1;
    merges.push([best.a, best.b]);
    for (let i = 0; i < words.length; i++) {
      const out: number[] = [];
      const w = words[i];
      for (let j = 0; j < w.length; ) {
        if (w[j] === best.a && j + 1 < w.length && w[j + 1] === best.b) {
          out.push(id);
          j += 2;
        } else {
          out.push(w[j++]);
        }
      }
      words[i] = out;
    }
  }
  return { tokens, merges };
}

function wordTable(texts: string[]): { words: number[][]; counts: number[]; alphabet: string[] } {
  const freq = new Map<string, number>();
  for (const t of texts) for (const p of preTokenize(t)) freq.set(p, (freq.get(p) ?? 0) + 1);
  const alphabet = BYTE_TO_CHAR.slice();
  return {
    words: [...freq.keys()].map((w) => Array.from(utf8Bytes(w))),
    counts: [...freq.values()],
    alphabet,
  };
}

function compare(texts: string[], vocabSize: number, minFrequency: number): number {
  const { words, counts, alphabet } = wordTable(texts);
  const fast = learnMerges(
    { words: words.map((w) => Int32Array.from(w)), counts },
    alphabet,
    vocabSize,
    minFrequency,
  );
  const slow = referenceMerges(
    words.map((w) => w.slice()),
    counts,
    alphabet,
    vocabSize,
    minFrequency,
  );
  assert.deepEqual(fast.merges, slow.merges);
  assert.deepEqual(fast.tokens, slow.tokens);
  return fast.merges.length;
}

test('incremental merges equal a full recount on repetitive, overlapping words', () => {
  // Runs of one byte ("aaaa") and of a repeated pair ("abab") are where the neighbour
  // bookkeeping of an in-place merge goes wrong if it goes wrong anywhere.
  const texts = [
    'aaaa aaa aa a aaaaaaa',
    'abab ababab abababab ab ba baba',
    'aaaa abab aaab baaa aabb bbaa',
    'the cat sat on the mat; the mat sat on the cat',
    '!!!! ???? ... 1111 2222 112211',
  ];
  const n = compare(texts, 256 + 80, 1);
  assert.ok(n > 20, `expected a few dozen merges, got ${n}`);
});

test('incremental merges equal a full recount on real dialogue text', () => {
  const lines = gunzipSync(readFileSync('data/hh-rlhf/harmless-base-test.jsonl.gz'))
    .toString('utf8')
    .split('\n')
    .slice(0, 40);
  const texts = lines.map((l) => (JSON.parse(l) as { chosen: string }).chosen);
  const n = compare(texts, 256 + 150, 2);
  assert.equal(n, 150);
});

test('learning stops at the first pair rarer than minFrequency', () => {
  const texts = ['xyxyxy zz zz zz qq'];
  const { words, counts, alphabet } = wordTable(texts);
  const { merges, tokens } = learnMerges({ words: words.map((w) => Int32Array.from(w)), counts }, alphabet, 400, 3);
  // Pairs seen 3 times: (x,y) in one word of count 1 occurs 3 times; (Ġ,z) and (z,z) 3 times each.
  for (const [a, b] of merges) assert.ok(!`${tokens[a]}${tokens[b]}`.includes('q'), 'a pair seen once was merged');
  assert.ok(merges.length >= 3 && merges.length < 10, `unexpected merge count ${merges.length}`);
  compare(texts, 400, 3);
});
