import { PairHeap } from './pair-heap.js';

/**
 * The BPE merge-learning loop over a word-frequency table, in the manner of the Rust
 * `tokenizers` BpeTrainer: pair counts are computed once, then kept up to date incrementally —
 * each merge only revisits the words that contain the merged pair and adjusts the counts of the
 * pairs beside each occurrence. Choosing the next merge is a heap pop, not a scan.
 * Cost per merge ~ (occurrences of the merged pair), not (size of the corpus).
 */

export interface WordTable {
  /** Each distinct pre-token as a sequence of token ids (initially its bytes' ids). Mutated. */
  words: Int32Array[];
  /** How often each word occurs in the corpus. */
  counts: number[];
}

export interface LearnedMerges {
  /** token strings, index = id; starts as the initial vocabulary and grows by one per new token */
  tokens: string[];
  /** merges in rank order, as pairs of token ids */
  merges: Array<[number, number]>;
}

/**
 * Learns merges until the vocabulary holds `vocabSize` tokens or no pair occurs at least
 * `minFrequency` times. `initialTokens` are the ids 0..n-1 the words are written in.
 * When a merge produces a string that is already a token (two merge paths to one string), the
 * merge is kept but no id is added, as in the reference trainer.
 *
 * One function of ~110 lines on purpose: it is the merge loop of Hugging Face's BpeTrainer (pair
 * counts, a heap of candidate pairs, in-place word updates) and reads against it step by step;
 * the state it updates is shared by every step, so pieces would only pass it around.
 */
export function learnMerges(
  table: WordTable,
  initialTokens: readonly string[],
  vocabSize: number,
  minFrequency: number,
): LearnedMerges {
  const tokens = initialTokens.slice();
  const idOf = new Map<string, number>(tokens.map((t, i) => [t, i]));
  const merges: Array<[number, number]> = [];
  const { words, counts } = table;
  const lengths = Int32Array.from(words, (w) => w.length);

  // Pair (a, b) is keyed as a * stride + b; ids never reach vocabSize, so keys are unique.
  const stride = Math.max(vocabSize, tokens.length);
  const pairCount = new Map<number, number>();
  // Words in which a pair has occurred (may be stale: a word is re-checked when merged).
  const pairWords = new Map<number, number[]>();

  const addOccurrence = (key: number, word: number, count: number): void => {
    pairCount.set(key, (pairCount.get(key) ?? 0) + count);
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [word]);
    else if (list[list.length - 1] !== word) list.push(word);
  };
  const removeOccurrence = (key: number, count: number): void => {
    const left = (pairCount.get(key) ?? 0) - count;
    if (left > 0) pairCount.set(key, left);
    else pairCount.delete(key);
  };

  for (let w = 0; w < words.length; w++) {
    const symbols = words[w];
    for (let i = 0; i + 1 < symbols.length; i++) addOccurrence(symbols[i] * stride + symbols[i + 1], w, counts[w]);
  }
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push(count, Math.floor(key / stride), key % stride);

  const visited = new Int32Array(words.length).fill(-1);
  const threshold = Math.max(1, minFrequency);
  const createdKeys = new Set<number>();

  while (tokens.length < vocabSize) {
    const top = heap.pop();
    if (top === undefined) break;
    const a = top.a;
    const b = top.b;
    const key = a * stride + b;
    const current = pairCount.get(key) ?? 0;
    if (current !== top.count) {
      // Stale entry: the pair lost occurrences to earlier merges. Requeue with the true count.
      if (current > 0) heap.push(current, a, b);
      continue;
    }
    if (current < threshold) break;

    const merged = tokens[a] + tokens[b];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      idOf.set(merged, id);
    }
    const step = merges.length;
    merges.push([a, b]);

    // Replace every non-overlapping (a, b), left to right, compacting the word in place.
    // For each occurrence x a b y: pairs (x,a) and (b,y) lose one, (x,id) and (id,y) gain one.
    // x is read after compaction, so in "a b a b" the second occurrence sees x = id, which
    // cancels the (id,a) just added and counts (id,id) — the right result.
    createdKeys.clear();
    for (const w of pairWords.get(key) ?? []) {
      if (visited[w] === step) continue;
      visited[w] = step;
      const symbols = words[w];
      const n = lengths[w];
      const count = counts[w];
      let read = 0;
      let write = 0;
      while (read < n) {
        if (symbols[read] === a && read + 1 < n && symbols[read + 1] === b) {
          if (write > 0) {
            const x = symbols[write - 1];
            removeOccurrence(x * stride + a, count);
            const k = x * stride + id;
            addOccurrence(k, w, count);
            createdKeys.add(k);
          }
          if (read + 2 < n) {
            const y = symbols[read + 2];
            removeOccurrence(b * stride + y, count);
            const k = id * stride + y;
            addOccurrence(k, w, count);
            createdKeys.add(k);
          }
          symbols[write++] = id;
          read += 2;
        } else {
          symbols[write++] = symbols[read++];
        }
      }
      lengths[w] = write;
    }
    pairCount.delete(key);
    pairWords.delete(key);
    for (const k of createdKeys) {
      const count = pairCount.get(k);
      if (count !== undefined) heap.push(count, Math.floor(k / stride), k % stride);
    }
  }

  for (let w = 0; w < words.length; w++) words[w] = words[w].subarray(0, lengths[w]);
  return { tokens, merges };
}
