// Raw reward vectors keyed by (loaded model version, item as sent, truncation side). Transforms
// run after the cache, so one entry serves every transform; a hit never reaches the tokenizer or
// the batcher: a version's formatter and tokenizer are fixed, so the item determines its tokens.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ScoreItem } from '../model/format.js';
import type { TruncationSide } from '../model/tokenize.js';

/** Stable key of a token-id sequence: identical items of a batch run once. */
export function tokenKey(ids: readonly number[]): string {
  return createHash('sha1').update(Int32Array.from(ids)).digest('base64');
}

/**
 * Stable key of an item as the client sent it, with the truncation side that applies. The three
 * item shapes get distinct prefixes, so `{prompt, response}` and the same `messages` are two
 * entries (they may render differently under a prompt_format).
 */
export function itemKey(item: ScoreItem, side: TruncationSide): string {
  const hash = createHash('sha1').update(side);
  if ('text' in item) hash.update('\u0000t\u0000').update(item.text);
  else if ('messages' in item) hash.update('\u0000m\u0000').update(JSON.stringify(item.messages));
  else hash.update('\u0000p\u0000').update(typeof item.prompt === 'string' ? item.prompt : JSON.stringify(item.prompt)).update('\u0000r\u0000').update(item.response);
  return hash.digest('base64');
}

/** What a hit gives back besides the reward: what tokenization would have said. */
export interface CachedReward {
  reward: Float32Array;
  truncated: boolean;
  /** Tokens the model saw (usage reporting). */
  tokens: number;
}

export class RewardCache {
  private readonly lru: LRUCache<string, CachedReward> | undefined;

  /** @param maxEntries 0 turns the cache off */
  constructor(maxEntries: number) {
    this.lru = maxEntries > 0 ? new LRUCache({ max: maxEntries }) : undefined;
  }

  get(modelVersionKey: string, key: string): CachedReward | undefined {
    return this.lru?.get(`${modelVersionKey}\u0000${key}`);
  }

  set(modelVersionKey: string, key: string, value: CachedReward): void {
    this.lru?.set(`${modelVersionKey}\u0000${key}`, value);
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}
