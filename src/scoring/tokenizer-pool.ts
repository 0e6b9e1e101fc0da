// Tokenization for the scorer: inline for small requests (a worker round trip costs more than
// tokenizing a few items), on a piscina worker pool for large ones so a 256-item request, or one
// carrying megabyte texts, does not hold the event loop while other requests wait (measured:
// docs/benchmarks.md).
import { Piscina } from 'piscina';
import { invalidItem, ScoringError } from './errors.js';
import type { ScoreItem } from '../model/format.js';
import { ItemTokenizeError, tokenizeItems, type TokenizeStats } from '../model/group-tokenize.js';
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
  /**
   * Items of one request that share a prompt tokenize it once (default true; `--no-prompt-groups`
   * turns it off, for comparison). The tokens are the same either way.
   */
  promptGroups?: boolean;
}

/** A request's tokens for one model, and what tokenizing them cost. */
export interface TokenizedRequest {
  items: TokenizedItem[];
  stats: TokenizeStats;
}

export class TokenizerPool {
  private readonly pool: Piscina<TokenizeTask, TokenizeResult> | undefined;
  private readonly maxItemChars: number;
  private readonly promptGroups: boolean;

  constructor(options: TokenizerPoolOptions | number) {
    const { threads, maxItemChars, promptGroups }: TokenizerPoolOptions = typeof options === 'number' ? { threads: options } : options;
    this.maxItemChars = maxItemChars ?? DEFAULT_MAX_ITEM_CHARS;
    this.promptGroups = promptGroups ?? true;
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
  async tokenize(model: TokenizerModel, items: readonly ScoreItem[], side: TruncationSide, indices?: readonly number[]): Promise<TokenizedRequest> {
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
      try {
        return tokenizeItems(spec, items, side, this.promptGroups);
      } catch (err) {
        if (!(err instanceof ItemTokenizeError)) throw err;
        // Only what the model code calls the item's fault is a 400; anything else is a bug of
        // ours and must surface as a 500, not pass for a bad request.
        if (err.itemFault) throw invalidItem(`items[${at(err.index)}]: ${err.message}`);
        throw err.error;
      }
    }
    const task: TokenizeTask = { model: model.key, dir: spec.dir, items: [...items], side, promptGroups: this.promptGroups };
    let result = await this.pool.run(task);
    // A worker meets each loaded version once: it then gets the files that version was read from.
    if (!result.ok && 'unknownModel' in result) result = await this.pool.run({ ...task, files: spec.files });
    if (!result.ok) {
      if ('unknownModel' in result) throw new Error(`tokenizer worker could not build ${model.key}`);
      if (!result.itemFault) throw new Error(`tokenizer worker failed on items[${at(result.index)}]: ${result.message}`);
      throw invalidItem(`items[${at(result.index)}]: ${result.message}`);
    }
    return { items: result.ids.map((ids, i) => ({ ids, truncated: result.truncated[i] as boolean })), stats: result.stats };
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
