import { BYTE_TO_CHAR, preTokenize, utf8Bytes } from './byte-level.js';
import { learnMerges, type WordTable } from './learn-merges.js';

/**
 * Trains a GPT-2-style byte-level BPE tokenizer from a corpus and returns it as the two files a
 * Hugging Face model folder carries: tokenizer.json and tokenizer_config.json. The output loads
 * in @huggingface/tokenizers (JS) and the Rust/Python `tokenizers`, and round-trips any text.
 *
 * Vocabulary layout (as the `tokenizers` BpeTrainer writes it): special tokens first (ids 0..S-1),
 * then the 256 byte characters sorted by code point, then one id per learned merge.
 */

export interface BpeTrainingOptions {
  /** total vocabulary size, special tokens and the 256 byte tokens included */
  vocabSize: number;
  /** stop when the most frequent pair occurs fewer times than this (default 2) */
  minFrequency?: number;
  /** special tokens, added before the byte alphabet (default ['<|endoftext|>']) */
  specialTokens?: string[];
  /** read at most this many characters of the corpus (default: all of it) */
  maxTrainChars?: number;
  /** tokenizer_config.json model_max_length (default 1024, GPT-2's context) */
  modelMaxLength?: number;
  /** tokenizer_config.json padding_side (default 'right'; reward heads pool on the last real token) */
  paddingSide?: 'left' | 'right';
  /** which special tokens serve as bos/eos/pad/unk (each defaults to the first special token) */
  roles?: { bos?: string; eos?: string; pad?: string; unk?: string };
}

export interface TrainedTokenizer {
  /** tokenizer.json content */
  tokenizerJson: TokenizerJson;
  /** tokenizer_config.json content */
  tokenizerConfig: TokenizerConfig;
}

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface ByteLevelJson {
  type: 'ByteLevel';
  add_prefix_space: boolean;
  trim_offsets: boolean;
  use_regex: boolean;
}

export interface TokenizerJson {
  version: '1.0';
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: ByteLevelJson;
  post_processor: ByteLevelJson;
  decoder: ByteLevelJson;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: '';
    end_of_word_suffix: '';
    fuse_unk: false;
    byte_fallback: false;
    vocab: Record<string, number>;
    merges: string[];
  };
}

export interface TokenizerConfig {
  tokenizer_class: 'GPT2Tokenizer';
  add_bos_token: false;
  add_prefix_space: false;
  bos_token: string | null;
  eos_token: string | null;
  pad_token: string | null;
  unk_token: string | null;
  model_max_length: number;
  padding_side: 'left' | 'right';
  /** false, or decode() would rewrite " ." to "." and break round trips */
  clean_up_tokenization_spaces: false;
  added_tokens_decoder: Record<string, Omit<AddedTokenJson, 'id'>>;
}

const DEFAULT_SPECIAL_TOKENS = ['<|endoftext|>'];

export function trainByteLevelBpe(texts: Iterable<string>, options: BpeTrainingOptions): TrainedTokenizer {
  const specialTokens = options.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const minFrequency = options.minFrequency ?? 2;
  const maxTrainChars = options.maxTrainChars ?? Number.POSITIVE_INFINITY;
  const baseSize = specialTokens.length + 256;
  if (!Number.isInteger(options.vocabSize) || options.vocabSize < baseSize) {
    throw new RangeError(
      `vocabSize must be an integer >= ${baseSize} (${specialTokens.length} special tokens + 256 byte tokens), got ${options.vocabSize}`,
    );
  }
  if (new Set(specialTokens).size !== specialTokens.length || specialTokens.some((t) => t.length === 0)) {
    throw new Error(`special tokens must be distinct and non-empty: ${JSON.stringify(specialTokens)}`);
  }

  const { table, initialTokens } = buildWordTable(texts, specialTokens, maxTrainChars);
  const { tokens, merges } = learnMerges(table, initialTokens, options.vocabSize, minFrequency);

  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => {
    vocab[t] = id;
  });
  const addedTokens: AddedTokenJson[] = specialTokens.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));

  const tokenizerJson: TokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    // Same components, same flags as GPT-2's own tokenizer.json.
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      // "a b" strings (the classic format): byte-level tokens never contain a space.
      merges: merges.map(([a, b]) => `${tokens[a]} ${tokens[b]}`),
    },
  };

  const role = (name: 'bos' | 'eos' | 'pad' | 'unk'): string | null => {
    const chosen = options.roles?.[name] ?? specialTokens[0] ?? null;
    if (chosen !== null && !specialTokens.includes(chosen)) {
      throw new Error(`${name} token ${JSON.stringify(chosen)} is not one of the special tokens`);
    }
    return chosen;
  };
  const tokenizerConfig: TokenizerConfig = {
    tokenizer_class: 'GPT2Tokenizer',
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: role('bos'),
    eos_token: role('eos'),
    pad_token: role('pad'),
    unk_token: role('unk'),
    model_max_length: options.modelMaxLength ?? 1024,
    padding_side: options.paddingSide ?? 'right',
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(addedTokens.map(({ id, ...rest }) => [String(id), rest])),
  };

  return { tokenizerJson, tokenizerConfig };
}

/**
 * The corpus as the merge learner sees it: each distinct pre-token (`texts` its raw text) written in
 * the ids of the initial vocabulary (special tokens, then the byte characters by code point),
 * with its frequency. Exported so tests can compare the trainer's segmentation with a loader's.
 */
export function buildWordTable(
  texts: Iterable<string>,
  specialTokens: readonly string[],
  maxChars = Number.POSITIVE_INFINITY,
): { table: WordTable; texts: string[]; initialTokens: string[] } {
  const wordCounts = countPreTokens(texts, specialTokens, maxChars);
  const byteChars = BYTE_TO_CHAR.slice().sort();
  const initialTokens = [...specialTokens, ...byteChars];
  const idOfByte = Int32Array.from(BYTE_TO_CHAR, (c) => specialTokens.length + byteChars.indexOf(c));
  const words: Int32Array[] = [];
  const counts: number[] = [];
  for (const [word, count] of wordCounts) {
    words.push(Int32Array.from(utf8Bytes(word), (b) => idOfByte[b]));
    counts.push(count);
  }
  return { table: { words, counts }, texts: [...wordCounts.keys()], initialTokens };
}

/**
 * Pre-token → frequency over the corpus. Special tokens are cut out of the text first, as the
 * loader does before pre-tokenizing, so their characters never feed merges.
 */
function countPreTokens(texts: Iterable<string>, specialTokens: readonly string[], maxChars: number): Map<string, number> {
  const counts = new Map<string, number>();
  const splitter =
    specialTokens.length === 0
      ? null
      : new RegExp(specialTokens.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'u');
  let remaining = maxChars;
  for (const text of texts) {
    if (remaining <= 0) break;
    let slice = text.length > remaining ? text.slice(0, remaining) : text;
    // Never cut a surrogate pair in half: a lone surrogate would be counted as U+FFFD's bytes.
    if (slice.length < text.length && /[\uD800-\uDBFF]$/.test(slice)) slice = slice.slice(0, -1);
    remaining -= slice.length;
    const sections = splitter === null ? [slice] : slice.split(splitter);
    for (const section of sections) {
      for (const piece of preTokenize(section)) counts.set(piece, (counts.get(piece) ?? 0) + 1);
    }
  }
  return counts;
}
