// Tokenization for the scorer: inline for small requests (a worker round trip costs more than
// tokenizing a few items), on a piscina worker pool for large ones so a 256-item request, or one
// carrying megabyte texts, does not hold the event loop while other requests wait (measured:
// docs/benchmarks.md).
import { Piscina } from 'piscina';
import { invalidItem, ModelError, ScoringError } from './errors.js';
import type { ScoreItem } from '../model/format.js';
import type { ModelSpec } from '../model/model-folder.js';
import type { TokenizedItem, TruncationSide } from '../model/tokenize.js';
import type { TokenizeResult, TokenizeTask } from './tokenize-worker.js';

/** Requests with fewer items are tokenized on the main thread… */
export const POOL_MIN_ITEMS = 16;
/** …unless their texts add up to this many characters (rendering and windowing still cost). */
export const POOL_MIN_CHARS = 64 * 1024;
/** Default longest item, in characters of its texts together (`--max-item-chars`). */
export const DEFAULT_MAX_ITEM_CHARS = 1 << 20;

/** What the pool needs of a loaded version: its unique key and spec. */
export interface TokenizerModel {
  key: string;
  spec: ModelSpec;
}

export interface TokenizerPoolOptions {
  /** Worker threads; 0 tokenizes everything inline. */
  threads: number;
  maxItemChars?: number;
}

export class TokenizerPool {
  private readonly pool: Piscina<TokenizeTask, TokenizeResult> | undefined;
  private readonly maxItemChars: number;

  constructor(options: TokenizerPoolOptions | number) {
    const { threads, maxItemChars } = typeof options === 'number' ? { threads: options, maxItemChars: undefined } : options;
    this.maxItemChars = maxItemChars ?? DEFAULT_MAX_ITEM_CHARS;
    this.pool =
      threads > 0
        ? new Piscina({
            // A .mjs entry registers tsx in the worker, so the TypeScript worker loads however the
            // main thread was started (node --import tsx, or bin/rmserve.js).
            filename: new URL('./tokenize-worker-entry.mjs', import.meta.url).href,
            minThreads: threads,
            maxThreads: threads,
            idleTimeout: Infinity,
          })
        : undefined;
  }

  /** @param indices each item's index in the request, for error messages (default: its position here) */
  async tokenize(model: TokenizerModel, items: readonly ScoreItem[], side: TruncationSide, indices?: readonly number[]): Promise<TokenizedItem[]> {
    const at = (i: number): number => indices?.[i] ?? i;
    let chars = 0;
    for (const [i, item] of items.entries()) {
      const n = charsOf(item);
      if (n > this.maxItemChars) {
        throw new ScoringError('item_too_long', 413, `items[${at(i)}] has ${n} characters; at most ${this.maxItemChars} per item (--max-item-chars)`);
      }
      chars += n;
    }
    const { spec } = model;
    if (this.pool === undefined || (items.length < POOL_MIN_ITEMS && chars < POOL_MIN_CHARS)) {
      return items.map((item, i) => {
        try {
          return spec.tokenizer.encode(spec.formatter.render(item), side);
        } catch (err) {
          // Only what the model code calls the item's fault is a 400; anything else is a bug of
          // ours and must surface as a 500, not pass for a bad request.
          if (err instanceof ModelError) throw invalidItem(`items[${at(i)}]: ${err.message}`);
          throw err;
        }
      });
    }
    const task: TokenizeTask = { model: model.key, dir: spec.dir, items: [...items], side };
    let result = await this.pool.run(task);
    // A worker meets each loaded version once: it then gets the files that version was read from.
    if (!result.ok && 'unknownModel' in result) result = await this.pool.run({ ...task, files: spec.files });
    if (!result.ok) {
      if ('unknownModel' in result) throw new Error(`tokenizer worker could not build ${model.key}`);
      if (!result.itemFault) throw new Error(`tokenizer worker failed on items[${at(result.index)}]: ${result.message}`);
      throw invalidItem(`items[${at(result.index)}]: ${result.message}`);
    }
    return result.ids.map((ids, i) => ({ ids, truncated: result.truncated[i] as boolean }));
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}

/** Characters of an item's texts, before any template is applied. */
function charsOf(item: ScoreItem): number {
  if ('text' in item) return item.text.length;
  if ('messages' in item) return item.messages.reduce((n, m) => n + m.content.length, 0);
  const prompt = typeof item.prompt === 'string' ? item.prompt.length : item.prompt.reduce((n, m) => n + m.content.length, 0);
  return prompt + item.response.length;
}
