// Tokenization for the scorer: inline for small requests (a worker round trip costs more than
// tokenizing a few items), on a piscina worker pool for large ones so a 256-item request does not
// hold the event loop for ~100 ms while other requests wait (measured: docs/benchmarks.md).
import { Piscina } from 'piscina';
import { invalidItem } from './errors.js';
import type { ScoreItem } from '../model/format.js';
import type { ModelSpec } from '../model/model-folder.js';
import type { TokenizedItem, TruncationSide } from '../model/tokenize.js';
import type { TokenizeResult, TokenizeTask } from './tokenize-worker.js';

/** Requests with fewer items are tokenized on the main thread. */
export const POOL_MIN_ITEMS = 16;

export class TokenizerPool {
  private readonly pool: Piscina<TokenizeTask, TokenizeResult> | undefined;

  /** @param threads worker threads; 0 tokenizes everything inline */
  constructor(threads: number) {
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

  async tokenize(spec: ModelSpec, items: readonly ScoreItem[], side: TruncationSide): Promise<TokenizedItem[]> {
    if (this.pool === undefined || items.length < POOL_MIN_ITEMS) {
      return items.map((item, i) => {
        try {
          return spec.tokenizer.encode(spec.formatter.render(item), side);
        } catch (err) {
          throw invalidItem(`items[${i}]: ${(err as Error).message}`);
        }
      });
    }
    const result = await this.pool.run({ dir: spec.dir, items: [...items], side });
    if (!result.ok) throw invalidItem(`items[${result.index}]: ${result.message}`);
    return result.ids.map((ids, i) => ({ ids, truncated: result.truncated[i] as boolean }));
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}
