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


export class ItemTokenizer {
  /** Special tokens the post-processor puts around every sequence (e.g. Llama's `<s>`). */
  readonly prefix: readonly number[];
  readonly suffix: readonly number[];

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
  }

  encode(item: RenderedItem, side: TruncationSide): TokenizedItem {
    const ids = this.tokenizer.encode(item.text, { add_special_tokens: true }).ids;
    if (ids.length - this.prefix.length - this.suffix.length <= 0) {
      throw invalidItem('text tokenizes to no tokens');
    }
    if (ids.length <= this.maxLength) return { ids, truncated: false };

    const budget = this.maxLength - this.prefix.length - this.suffix.length;
    if (side === 'right') {
      const body = this.encodePlain(item.text).slice(0, budget);
      return { ids: [...this.prefix, ...body, ...this.suffix], truncated: true };
    }
    // Left: drop the oldest prompt tokens first; the response is only cut once the prompt is gone.
    if (item.responseStart === undefined) {
      const body = this.encodePlain(item.text);
      return { ids: [...this.prefix, ...body.slice(body.length - budget), ...this.suffix], truncated: true };
    }
    const prompt = this.encodePlain(item.text.slice(0, item.responseStart));
    const response = this.encodePlain(item.text.slice(item.responseStart));
    const keepPrompt = Math.max(0, budget - response.length);
    const body = [...prompt.slice(prompt.length - keepPrompt), ...response.slice(Math.max(0, response.length - budget))];
    return { ids: [...this.prefix, ...body, ...this.suffix], truncated: true };
  }

  private encodePlain(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }
}

function indexOfSequence(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
