// Two hot spots of @huggingface/tokenizers 0.2, mended on a loaded Tokenizer without changing a
// single id (test/tokenizer-speedups.test.ts compares every id on real HH-RLHF text for the
// GPT-2, Llama 2, BERT, Qwen3 and shipped tokenizers). Profiled on the server at c = 1 (HH items,
// GPT-2 tokenizer), they were ~45% of tokenization, itself the largest main-thread cost:
//
//   1. BPE's word cache is a Map used as an LRU: every hit deletes and re-inserts its key, and
//      past 10,000 words the Map keeps rehashing (19.7% of tokenization time in `get`). Here it
//      is a Map that fills up to the same 10,000 words and then stops inserting, the policy of
//      Hugging Face's Rust tokenizers (tokenizers/src/utils/cache.rs): hits move nothing. (lru-cache
//      was tried first: its bookkeeping per hit still cost ~25% of what was left.)
//   2. The byte-level pre-tokenizer maps every pre-token to its byte alphabet through a
//      TextEncoder call, Array.from and join (~26%), though words repeat endlessly. Here the
//      mapping is memoised per pre-token, and ASCII skips the encoder.
//
// The library has no option for either, and nothing else on npm tokenizes with tokenizer.json
// in pure JS, so the two objects are replaced in place. Both are found by shape, not by class:
// if a later version renames them, nothing is patched and the library runs as it is (the test
// then fails on `patched`, which is the signal to look again).
import type { Tokenizer } from '@huggingface/tokenizers';

/** The library's BPE model, as far as this file relies on it. */
interface BpeModelShape {
  cache: { get(key: string): string[] | undefined; put(key: string, value: string[]): void; clear(): void };
  cache_capacity: number;
}

/** The library's ByteLevel pre-tokenizer, as far as this file relies on it. */
interface ByteLevelShape {
  add_prefix_space: boolean;
  use_regex: boolean;
  pattern: RegExp;
  byte_encoder: Record<number, string>;
  text_encoder: { encode(text: string): Uint8Array };
  pre_tokenize_text(text: string, options?: unknown): string[];
}

/** Distinct pre-tokens remembered per byte-level pre-tokenizer (a few MB at most). */
const BYTE_MAP_MEMO = 50_000;

/**
 * A Map that keeps its first `capacity` entries and then takes no more: text is Zipfian, so the
 * words met first are mostly the frequent ones, and a hit costs one Map lookup.
 */
class FillOnceMemo<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly capacity: number) {}
  get(key: string): V | undefined {
    return this.map.get(key);
  }
  set(key: string, value: V): void {
    if (this.map.size < this.capacity) this.map.set(key, value);
  }
  clear(): void {
    this.map.clear();
  }
}

export interface TokenizerSpeedups {
  /** The BPE word cache was replaced. */
  bpeCache: boolean;
  /** Byte-level pre-tokenizers whose mapping is now memoised. */
  byteLevel: number;
}

/** An object, or a function object: the library's models and pre-tokenizers are callables. */
function isRecord(x: unknown): x is Record<string, unknown> {
  return (typeof x === 'object' && x !== null) || typeof x === 'function';
}

function isBpeModel(x: unknown): x is BpeModelShape {
  if (!isRecord(x) || typeof x.cache_capacity !== 'number' || !isRecord(x.cache)) return false;
  const { cache } = x;
  return typeof cache.get === 'function' && typeof cache.put === 'function' && typeof cache.clear === 'function';
}

function isByteLevel(x: unknown): x is ByteLevelShape {
  return (
    isRecord(x) && typeof x.pre_tokenize_text === 'function' && typeof x.use_regex === 'boolean' && typeof x.add_prefix_space === 'boolean' &&
    x.pattern instanceof RegExp && isRecord(x.byte_encoder) && isRecord(x.text_encoder) && typeof x.text_encoder.encode === 'function'
  );
}

/** The byte-level pre-tokenizers of a pre-tokenizer tree (a Sequence holds them in `tokenizers`). */
function byteLevelsIn(node: unknown, depth = 0): ByteLevelShape[] {
  if (depth > 4 || !isRecord(node)) return [];
  if (isByteLevel(node)) return [node];
  const children = node.tokenizers;
  return Array.isArray(children) ? children.flatMap((child) => byteLevelsIn(child, depth + 1)) : [];
}

/** Same result as ByteLevel.pre_tokenize_text, with the per-pre-token mapping memoised. */
function memoisedPreTokenize(pre: ByteLevelShape): (text: string) => string[] {
  const memo = new FillOnceMemo<string>(BYTE_MAP_MEMO);
  const map = (token: string): string => {
    const hit = memo.get(token);
    if (hit !== undefined) return hit;
    let out = '';
    let ascii = true;
    for (let i = 0; i < token.length; i++) {
      const code = token.charCodeAt(i);
      if (code >= 0x80) {
        ascii = false;
        break;
      }
      out += pre.byte_encoder[code];
    }
    if (!ascii) {
      out = '';
      for (const byte of pre.text_encoder.encode(token)) out += pre.byte_encoder[byte];
    }
    memo.set(token, out);
    return out;
  };
  return (text: string): string[] => {
    if (pre.add_prefix_space && !text.startsWith(' ')) text = ' ' + text;
    const tokens = pre.use_regex ? (text.match(pre.pattern) ?? []) : [text];
    return tokens.map(map);
  };
}

/** Applies both mends to `tokenizer` in place; says which applied. */
export function speedUpTokenizer(tokenizer: Tokenizer): TokenizerSpeedups {
  const inner = tokenizer as unknown as { model?: unknown; pre_tokenizer?: unknown };
  let bpeCache = false;
  if (isBpeModel(inner.model)) {
    const words = new FillOnceMemo<string[]>(Math.max(1, inner.model.cache_capacity));
    inner.model.cache = {
      get: (key) => words.get(key),
      put: (key, value) => words.set(key, value),
      clear: () => words.clear(),
    };
    bpeCache = true;
  }
  const byteLevels = byteLevelsIn(inner.pre_tokenizer);
  for (const pre of byteLevels) pre.pre_tokenize_text = memoisedPreTokenize(pre);
  return { bpeCache, byteLevel: byteLevels.length };
}
