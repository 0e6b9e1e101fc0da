// Tokenizes rendered items with the model's own tokenizer.json and truncates to the model's
// max length without losing the response (the part a reward model is asked about).
import { Tokenizer } from '@huggingface/tokenizers';
import { invalidItem } from './errors.js';
import type { RenderedItem } from './format.js';

export type TruncationSide = 'left' | 'right';

export interface TokenizedItem {
  ids: number[];
  truncated: boolean;
}

/**
 * Texts up to this many characters per token of max length are tokenized whole; longer ones
 * only through a window at the end that is kept (or the start, for right truncation). Natural
 * text averages 3–5 characters per token, so below this a text rarely needs truncating at all.
 */
export const WINDOW_CHARS_PER_TOKEN = 6;
/**
 * Tokens dropped at a window's cut. A cut can change the first token or two after it (a
 * whitespace run, a newline the pre-tokenizer joins to what follows); far from it the tokens
 * are those of the whole text. Checked against whole-text tokenization on real data for four
 * tokenizers (test/tokenize-window.test.ts).
 */
export const WINDOW_MARGIN_TOKENS = 8;
/**
 * Tokens a seam window at a prompt's end must hold: the first MARGIN may differ from the whole
 * text's (the cut changes them: a SentencePiece dummy prefix, a split whitespace run), the next
 * MARGIN are checked against the tokens they must equal, and the last MARGIN are those the
 * response may change (a prompt ending in a word the response continues, a newline run it
 * extends). Used by encodeWhole's truncation and by prompt groups (group-tokenize.ts).
 */
export const SEAM_TOKENS = 3 * WINDOW_MARGIN_TOKENS;
/** How far from the wanted cut a whitespace boundary is looked for. */
const ALIGN_SEARCH_CHARS = 256;

/** The tokens of a text's end (or start), and whether the whole text went through the tokenizer. */
interface Window {
  ids: number[];
  whole: boolean;
}

export class ItemTokenizer {
  /** Special tokens the post-processor puts around every sequence (e.g. Llama's `<s>`). */
  readonly prefix: readonly number[];
  readonly suffix: readonly number[];
  /** Rendered texts longer than this are tokenized through a window (see WINDOW_CHARS_PER_TOKEN). */
  readonly wholeTextChars: number;
  /**
   * Characters handed to the tokenizer so far, every call counted (the scorer exports the
   * difference per request as rmserve_tokenized_characters_total: a prompt group's prompt shows
   * up once there, not once per response).
   */
  tokenizedChars = 0;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly maxLength: number,
  ) {
    // Find what add_special_tokens adds by encoding a probe with and without it.
    const plain = tokenizer.encode('a', { add_special_tokens: false }).ids;
    const full = tokenizer.encode('a', { add_special_tokens: true }).ids;
    const at = indexOfSequence(full, plain);
    this.prefix = at < 0 ? [] : full.slice(0, at);
    this.suffix = at < 0 ? [] : full.slice(at + plain.length);
    this.wholeTextChars = (maxLength + WINDOW_MARGIN_TOKENS) * WINDOW_CHARS_PER_TOKEN;
  }

  /**
   * The model's tokens for an item, cut to max length. A long text costs what its kept part
   * costs, not what the whole text would: a megabyte prompt is tokenized as a few kilobytes, so
   * one request cannot hold the event loop (or a tokenizer worker) for seconds.
   */
  encode(item: RenderedItem, side: TruncationSide): TokenizedItem {
    return item.text.length <= this.wholeTextChars ? this.encodeWhole(item, side) : this.encodeWindowed(item, side);
  }

  /** The reference behaviour: tokenize the whole text, then cut. Exact, and linear in the text. */
  encodeWhole(item: RenderedItem, side: TruncationSide): TokenizedItem {
    this.tokenizedChars += item.text.length;
    const raw = this.tokenizer.encode(item.text, { add_special_tokens: true }).ids;
    const ids = this.withoutDoubledSpecials(raw);
    return this.cutWhole(item, side, ids, () => this.encodePlain(item.text), () => {
      const prompt = item.text.slice(0, item.responseStart);
      return this.promptOfWhole(prompt, raw, ids) ?? this.encodePlain(prompt);
    });
  }

  /**
   * The first whitespace-cut window at `prompt`'s end that holds SEAM_TOKENS tokens, with its
   * tokens, widened while it holds fewer (long words, CJK); undefined for a prompt no longer than
   * the window or without a whitespace cut near its end. The seam of encodeWhole's truncation and
   * of prompt groups (group-tokenize.ts).
   */
  seamWindow(prompt: string): { text: string; ids: number[] } | undefined {
    for (let chars = SEAM_TOKENS * WINDOW_CHARS_PER_TOKEN; chars < prompt.length; chars *= 2) {
      const cut = whitespaceCut(prompt, prompt.length - chars);
      if (cut === undefined) return undefined;
      const text = prompt.slice(cut);
      const ids = this.encodePlain(text);
      if (ids.length >= SEAM_TOKENS) return { text, ids };
    }
    return undefined;
  }

  /**
   * encodePlain(prompt), read off the whole text's tokens instead of tokenizing the prompt again.
   * Left truncation needs the prompt's own tokens, and tokenizing it a second time made a
   * truncated HH item cost 5× a short one (half of all tokenization time on harmless/1's HH
   * items, docs/benchmarks.md). Exact by the two premises PromptTokens (group-tokenize.ts)
   * relies on, with W a seam window at the prompt's end: W's tokens past its first MARGIN are the
   * prompt's last tokens, and the whole text's tokens equal the prompt's except its last MARGIN.
   * So W's middle tokens occur in the whole text's where the prompt's last |W| tokens begin, and
   * the prompt's tokens are the whole text's up to there (past W's first MARGIN) followed by W's.
   * The middle must occur exactly once; otherwise, or where `raw` is not prefix + plain tokens +
   * suffix (a doubled special was dropped), undefined and the caller tokenizes the prompt.
   */
  private promptOfWhole(prompt: string, raw: number[], ids: number[]): number[] | undefined {
    const p = this.prefix.length;
    const q = this.suffix.length;
    if (ids !== raw || raw.length < p + q || !startsWithAt(raw, this.prefix, 0) || !startsWithAt(raw, this.suffix, raw.length - q)) return undefined;
    // Without a seam (a prompt shorter than the window), tokenizing the prompt again is cheap.
    const seam = this.seamWindow(prompt)?.ids;
    if (seam === undefined) return undefined;
    const body = raw.slice(p, raw.length - q);
    const at = onlyOccurrence(body, seam, WINDOW_MARGIN_TOKENS, seam.length - WINDOW_MARGIN_TOKENS);
    return at === undefined ? undefined : [...body.slice(0, at + WINDOW_MARGIN_TOKENS), ...seam.slice(WINDOW_MARGIN_TOKENS)];
  }

  /**
   * encodeWhole's truncation, given the whole text's tokens: `ids` with special tokens, `body()`
   * without, `promptBody()` the prompt's (text before responseStart) on its own. A prompt group
   * (group-tokenize.ts) passes the tokens it stitched and the prompt's tokens it holds, so its
   * items are cut by this very code.
   */
  cutWhole(item: RenderedItem, side: TruncationSide, ids: number[], body: () => number[], promptBody: () => number[]): TokenizedItem {
    if (ids.length - this.prefix.length - this.suffix.length <= 0) {
      throw invalidItem('text tokenizes to no tokens');
    }
    if (ids.length <= this.maxLength) return { ids, truncated: false };

    const budget = this.budget();
    if (side === 'right') return this.wrap(body().slice(0, budget), true);
    // Left: drop the oldest prompt tokens first; the response is only cut once the prompt is gone.
    if (item.responseStart === undefined) {
      const all = body();
      return this.wrap(all.slice(all.length - budget), true);
    }
    const prompt = promptBody();
    const response = this.encodePlain(item.text.slice(item.responseStart));
    const keepPrompt = Math.max(0, budget - response.length);
    return this.wrap([...prompt.slice(prompt.length - keepPrompt), ...response.slice(Math.max(0, response.length - budget))], true);
  }

  /**
   * What encodeWhole's untruncated tokens are for a text whose tokens without special tokens are
   * `body`: the post-processors (template, BERT, RoBERTa, byte-level) add the same special tokens
   * whatever the text, which is what the constructor's probe relies on too.
   */
  withSpecials(body: readonly number[]): number[] {
    return this.withoutDoubledSpecials([...this.prefix, ...body, ...this.suffix]);
  }

  /**
   * The same tokens as encodeWhole for a text too long to tokenize whole cheaply. Whenever a
   * window has to grow to the whole text, encodeWhole decides, so the two can differ only
   * through a cut, which the margin covers.
   */
  private encodeWindowed(item: RenderedItem, side: TruncationSide): TokenizedItem {
    const budget = this.budget();
    if (side === 'right') {
      const head = this.head(item.text, budget + 1);
      if (head.whole) return this.encodeWhole(item, side);
      return this.wrap(head.ids.slice(0, budget), true);
    }
    if (item.responseStart === undefined) {
      const tail = this.tail(item.text, budget + 1);
      if (tail.whole) return this.encodeWhole(item, side);
      return this.wrap(tail.ids.slice(-budget), true);
    }
    const response = this.tail(item.text.slice(item.responseStart), budget);
    if (!response.whole || response.ids.length > budget) return this.wrap(response.ids.slice(-budget), true);
    const keepPrompt = budget - response.ids.length;
    const prompt = this.tail(item.text.slice(0, item.responseStart), keepPrompt + 1);
    // The window reached the start (a long text of few tokens): the whole text was cheap after
    // all, and encodeWhole decides truncation on the joined text exactly.
    if (prompt.whole) return this.encodeWhole(item, side);
    return this.wrap([...prompt.ids.slice(prompt.ids.length - keepPrompt), ...response.ids], true);
  }

  /**
   * At least the last `need` tokens of `text` (fewer only when the whole text has fewer), from a
   * window at its end that grows until it holds `need` tokens past its margin.
   */
  private tail(text: string, need: number): Window {
    let chars = (need + WINDOW_MARGIN_TOKENS) * WINDOW_CHARS_PER_TOKEN;
    while (chars < text.length) {
      const start = cutBefore(text, text.length - chars);
      const ids = this.encodePlain(text.slice(start));
      if (ids.length >= need + WINDOW_MARGIN_TOKENS) return { ids: ids.slice(ids.length - need), whole: false };
      chars *= 4;
    }
    return { ids: this.encodePlain(text), whole: true };
  }

  /** The first `need` tokens of `text`, the mirror of tail(). */
  private head(text: string, need: number): Window {
    let chars = (need + WINDOW_MARGIN_TOKENS) * WINDOW_CHARS_PER_TOKEN;
    while (chars < text.length) {
      const end = cutBefore(text, chars);
      const ids = this.encodePlain(text.slice(0, end));
      if (ids.length >= need + WINDOW_MARGIN_TOKENS) return { ids: ids.slice(0, need), whole: false };
      chars *= 4;
    }
    return { ids: this.encodePlain(text), whole: true };
  }

  private budget(): number {
    return this.maxLength - this.prefix.length - this.suffix.length;
  }

  private wrap(body: number[], truncated: boolean): TokenizedItem {
    return { ids: this.withoutDoubledSpecials([...this.prefix, ...body, ...this.suffix]), truncated };
  }

  /**
   * Chat templates that begin with `{{ bos_token }}` (Llama 2 and 3, Gemma) and pre-formatted
   * texts already hold the special prefix; add_special_tokens adds it again. transformers avoids
   * that by tokenizing templates with add_special_tokens=False (and OpenRLHF's serve_rm its
   * queries): drop the doubled copy, so a model never sees two BOS.
   */
  private withoutDoubledSpecials(ids: number[]): number[] {
    const p = this.prefix.length;
    const q = this.suffix.length;
    let start = 0;
    let end = ids.length;
    if (p > 0 && end - start >= 2 * p && startsWithAt(ids, this.prefix, p)) start = p;
    if (q > 0 && end - start >= 2 * q && startsWithAt(ids, this.suffix, end - 2 * q)) end -= q;
    return start === 0 && end === ids.length ? ids : ids.slice(start, end);
  }

  /** Tokens of `text` without special tokens. */
  encodePlain(text: string): number[] {
    this.tokenizedChars += text.length;
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }
}

/**
 * A cut position near `at`: before the last whitespace character of a run that a word follows,
 * where byte-level and SentencePiece pre-tokenizers split anyway; failing that, any position
 * that does not split a surrogate pair (CJK text has no whitespace; the margin absorbs it).
 */
function cutBefore(text: string, at: number): number {
  const cut = whitespaceCut(text, at);
  if (cut !== undefined) return cut;
  const code = text.charCodeAt(at);
  return code >= 0xdc00 && code <= 0xdfff ? at + 1 : at;
}

/** cutBefore's whitespace boundary near `at`, or undefined when there is none within ALIGN_SEARCH_CHARS. */
export function whitespaceCut(text: string, at: number): number | undefined {
  const isSpace = (i: number): boolean => /\s/.test(text[i] ?? '');
  for (let d = 0; d < ALIGN_SEARCH_CHARS; d++) {
    for (const i of [at + d, at - d]) {
      if (i > 0 && i < text.length - 1 && isSpace(i) && !isSpace(i + 1)) return i;
    }
  }
  return undefined;
}

function startsWithAt(ids: readonly number[], seq: readonly number[], at: number): boolean {
  return seq.every((id, j) => ids[at + j] === id);
}

/**
 * The one offset o at which haystack[o + j] === needle[j] for every j in [from, to), or undefined
 * when there is none or more than one.
 */
function onlyOccurrence(haystack: readonly number[], needle: readonly number[], from: number, to: number): number | undefined {
  const part = needle.slice(from, to);
  const first = indexOfSequence(haystack, part, from);
  if (first < 0 || indexOfSequence(haystack, part, first + 1) >= 0) return undefined;
  return first - from;
}

/** The first index ≥ start at which needle occurs in haystack, or -1. */
function indexOfSequence(haystack: readonly number[], needle: readonly number[], start = 0): number {
  outer: for (let i = start; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
