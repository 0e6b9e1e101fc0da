// Per-prompt LSC references remembered from requests that carried reference responses, so later
// requests for the same prompt (e.g. an RL trainer's next rollout) get a prompt-specific r_ref
// without resending them. Keyed by model version and the prompt as that version renders it:
// a new version, or a different chat template, never reuses another's rewards.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { splitItem, type ScoreItem } from '../model/format.js';
import type { ModelVersion } from './model-version.js';

export const DEFAULT_REFERENCE_CACHE_SIZE = 10_000;

/**
 * The raw reward vectors of one prompt's reference responses (one Float32Array of K heads per
 * response). The rewards are kept rather than one r_ref, so a later request may ask for another
 * quantile.
 */
export type ReferenceRewards = readonly Float32Array[];

export class ReferenceCache {
  private readonly lru: LRUCache<string, ReferenceRewards> | undefined;

  /** @param maxPrompts 0 turns remembering off (request references and manifests still work) */
  constructor(maxPrompts: number = DEFAULT_REFERENCE_CACHE_SIZE) {
    this.lru = maxPrompts > 0 ? new LRUCache({ max: maxPrompts }) : undefined;
  }

  get(modelVersionId: string, promptKey: string): ReferenceRewards | undefined {
    return this.lru?.get(`${modelVersionId}\u0000${promptKey}`);
  }

  set(modelVersionId: string, promptKey: string, rewards: ReferenceRewards): void {
    if (rewards.length > 0) this.lru?.set(`${modelVersionId}\u0000${promptKey}`, rewards);
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}

/**
 * The cache key of an item's prompt for one model version: a hash of the text the model sees
 * before the response (chat template or prompt format applied, trailing whitespace dropped), so
 * a /v1/score item and an OpenRLHF `prompts[i]` rendered with the same template share a key.
 * `promptText` is given for pre-formatted items, whose prompt the server cannot find alone.
 */
export function promptKey(model: ModelVersion, item: ScoreItem, promptText?: string): string | undefined {
  // An empty prompt text says nothing about the prompt: sharing one key would mix prompts.
  if (promptText !== undefined && promptText.trim() !== '') return hash(promptText.trimEnd());
  if ('text' in item) return undefined;
  const rendered = model.spec.formatter.render(item);
  if (rendered.responseStart !== undefined) return hash(rendered.text.slice(0, rendered.responseStart).trimEnd());
  // A template that does not render the prompt as a prefix: key by the messages themselves.
  return hash(`messages:${JSON.stringify(splitItem(item).prompt)}`);
}

/** Identity of an item's prompt independent of any model, to group reference responses. */
export function promptIdentity(item: Exclude<ScoreItem, { text: string }>): string {
  return JSON.stringify(splitItem(item).prompt);
}

/** The item that scores `response` as an answer to `item`'s prompt. */
export function withResponse(item: Exclude<ScoreItem, { text: string }>, response: string): ScoreItem {
  return { prompt: splitItem(item).prompt, response };
}

function hash(text: string): string {
  return createHash('sha1').update(text).digest('base64');
}
