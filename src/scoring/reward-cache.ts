// Raw reward vectors keyed by (model version, token ids). Transforms run after the cache, so one
// entry serves every transform; a hit never reaches the batcher.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** Stable key of a token-id sequence; also used to run identical items of a batch once. */
export function tokenKey(ids: readonly number[]): string {
  return createHash('sha1').update(Int32Array.from(ids)).digest('base64');
}

export class RewardCache {
  private readonly lru: LRUCache<string, Float32Array> | undefined;

  /** @param maxEntries 0 turns the cache off */
  constructor(maxEntries: number) {
    this.lru = maxEntries > 0 ? new LRUCache({ max: maxEntries }) : undefined;
  }

  get(modelVersionId: string, key: string): Float32Array | undefined {
    return this.lru?.get(`${modelVersionId}\u0000${key}`);
  }

  set(modelVersionId: string, key: string, reward: Float32Array): void {
    this.lru?.set(`${modelVersionId}\u0000${key}`, reward);
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}
