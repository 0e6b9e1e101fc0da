// The scoring pipeline: format → tokenize → cache → batcher → raw reward vectors, for one or more
// models, then (in `reward`) reference rewards → transforms → aggregate. Each request pins the
// serving version of each model at its start (hot-swap safety).
import type { RmserveMetrics } from '../metrics.js';
import {
  aggregate,
  DEFAULT_REFERENCE_QUANTILE,
  quantile,
  resolveReference,
  applyTransform,
  TransformError,
  type AggregateName,
  type ReferenceSource,
  type TransformName,
  type TransformParams,
} from '../transforms/index.js';
import { invalidItem, queueFull, ScoringError, unknownModel } from './errors.js';
import type { ScoreItem } from '../model/format.js';
import type { ModelRegistry } from './registry.js';
import { RewardCache, tokenKey } from './reward-cache.js';
import type { ModelVersion } from './model-version.js';
import { promptIdentity, promptKey, ReferenceCache, withResponse } from './references.js';
import type { TokenizedItem, TruncationSide } from '../model/tokenize.js';
import { TokenizerPool } from './tokenizer-pool.js';

export interface ScoreRequest {
  /** Model names; undefined means the server's default models. */
  models?: string[];
  items: ScoreItem[];
  truncation?: TruncationSide;
  /** Aborted when the client goes away: queued items are dropped. */
  signal?: AbortSignal;
}

export interface ObjectiveScore {
  model: string;
  /** The head's name inside its model (the reply key is `model.objective` when two models share it). */
  objective: string;
  raw: number;
}

export interface ScoredItem {
  objectives: Record<string, ObjectiveScore>;
  /** True when every model answered this item from the cache. */
  cached: boolean;
  truncated: boolean;
}

export interface ScoreResult {
  modelVersions: Record<string, string>;
  items: ScoredItem[];
}

/** How raw rewards become the reply's `transformed` values and `reward`. */
export interface RewardOptions {
  transform: TransformName;
  aggregate: AggregateName;
  /** By objective name (reply key); unnamed objectives weigh 1. */
  weights?: Readonly<Record<string, number>>;
  /** The quantile of reference rewards that is r_ref for lsc (default 0.85). */
  referenceQuantile?: number;
  /** [lo, hi] for transform clip. */
  clip?: readonly [number, number];
}

export interface RewardRequest extends ScoreRequest {
  options: RewardOptions;
  /** Reference responses to each item's prompt (lsc only): scored like items, remembered per prompt. */
  references?: readonly (readonly string[] | undefined)[];
  /** The formatted prompt of each pre-formatted (`text`) item, for the per-prompt reference cache. */
  promptTexts?: readonly (string | undefined)[];
  /** Most (prompt, response) pairs, items and reference pairs together, one request may score. */
  maxPairs?: number;
}

export interface RewardedObjective extends ObjectiveScore {
  transformed: number;
  /** lsc only: r_ref and where it came from. */
  reference?: number;
  referenceSource?: ReferenceSource;
}

export interface RewardedItem {
  /** The aggregate; absent for aggregate none. */
  reward?: number;
  /** conjunction only: exp(reward). */
  probability?: number;
  cached: boolean;
  truncated: boolean;
  objectives: Record<string, RewardedObjective>;
}

export interface RewardResult {
  modelVersions: Record<string, string>;
  items: RewardedItem[];
}

/** What /get_reward applies when its query string says nothing (`rmserve serve --transform …`). */
export interface RewardDefaults {
  transform: TransformName;
  /** Undefined: defaultAggregate(transform). */
  aggregate?: AggregateName;
  referenceQuantile: number;
}

export const DEFAULT_REWARD_DEFAULTS: RewardDefaults = { transform: 'none', referenceQuantile: DEFAULT_REFERENCE_QUANTILE };

/**
 * The aggregate a request gets when it names none: LSC values are log-probabilities, whose sum is
 * the conjunction; anything else is summed (with one objective both equal its value).
 */
export function defaultAggregate(transform: TransformName): AggregateName {
  return transform === 'lsc' ? 'conjunction' : 'sum';
}

interface ModelScores {
  model: ModelVersion;
  rewards: Float32Array[];
  cached: boolean[];
  truncated: boolean[];
}

/** Where objective `key` of the reply is read from: column `k` of model `m`. */
interface ObjectiveSlot {
  key: string;
  m: number;
  k: number;
  model: ModelVersion;
  objective: string;
}

export class Scorer {
  readonly references: ReferenceCache;
  private readonly tokenizers: TokenizerPool;

  constructor(
    readonly registry: ModelRegistry,
    private readonly cache: RewardCache,
    private readonly metrics: RmserveMetrics,
    private readonly defaultModels: string[] | undefined,
    references?: ReferenceCache,
    tokenizers?: TokenizerPool,
  ) {
    this.references = references ?? new ReferenceCache();
    this.tokenizers = tokenizers ?? new TokenizerPool(0);
  }

  async close(): Promise<void> {
    await this.tokenizers.close();
  }

  /** The models a request without `model` is scored by. */
  resolveModels(requested: string[] | undefined): ModelVersion[] {
    const names = requested ?? this.defaultModels ?? this.registry.names();
    if (names.length === 0) throw unknownModel('(default)');
    const unique = [...new Set(names)];
    return unique.map((name) => this.registry.get(name));
  }

  /** Raw reward vectors only. */
  async score(request: ScoreRequest): Promise<ScoreResult> {
    const models = this.resolveModels(request.models);
    const perModel = await Promise.all(models.map((model) => this.scoreWith(model, request)));
    const slots = objectiveSlots(models);
    const items = request.items.map((_, i): ScoredItem => {
      const objectives: Record<string, ObjectiveScore> = {};
      for (const s of slots) {
        objectives[s.key] = { model: s.model.name, objective: s.objective, raw: rewardAt(perModel, s, i) };
      }
      return {
        objectives,
        cached: perModel.every((m) => m.cached[i]),
        truncated: perModel.some((m) => m.truncated[i]),
      };
    });
    return { modelVersions: versionsOf(models), items };
  }

  /**
   * Raw rewards, then per objective the transform (with its LSC reference) and the aggregate.
   * Reference responses ride in the same scoring call as the items, so they share the pinned
   * versions, the batcher, the cache and the all-or-nothing admission.
   */
  async reward(request: RewardRequest): Promise<RewardResult> {
    const { options } = request;
    const q = options.referenceQuantile ?? DEFAULT_REFERENCE_QUANTILE;
    const lsc = options.transform === 'lsc';
    const models = this.resolveModels(request.models);
    const n = request.items.length;

    // Reference pairs, deduplicated: the same response to the same prompt is scored once.
    const extra: ScoreItem[] = [];
    const refIndex = new Map<string, number>();
    const itemRefs: (number[] | undefined)[] = request.items.map((item, i) => {
      const responses = lsc ? request.references?.[i] : undefined;
      if (responses === undefined || responses.length === 0) return undefined;
      if ('text' in item) throw invalidItem(`items[${i}]: reference responses need a {prompt, response} or {messages} item`);
      const prompt = promptIdentity(item);
      return responses.map((response) => {
        const pair = `${prompt}\u0000${response}`;
        let j = refIndex.get(pair);
        if (j === undefined) {
          j = extra.length;
          refIndex.set(pair, j);
          extra.push(withResponse(item, response));
        }
        return n + j;
      });
    });
    if (request.maxPairs !== undefined && n + extra.length > request.maxPairs) {
      throw new ScoringError(
        'too_many_items',
        413,
        `at most ${request.maxPairs} (prompt, response) pairs per request, got ${n} items and ${extra.length} distinct reference pairs`,
      );
    }

    const all = extra.length === 0 ? request.items : [...request.items, ...extra];
    const perModel = await Promise.all(models.map((model) => this.scoreWith(model, { ...request, items: all })));
    const slots = objectiveSlots(models);

    // Per model and item: the reference reward vectors that apply (request, else remembered).
    // Remember first, so an item whose prompt got references from another item of this request
    // uses them too.
    const references = models.map((model, m) => {
      if (!lsc) return [];
      const scores = perModel[m] as ModelScores;
      const keys = request.items.map((item, i) => promptKey(model, item, request.promptTexts?.[i]));
      keys.forEach((key, i) => {
        const refs = itemRefs[i];
        if (key !== undefined && refs !== undefined) this.references.set(model.key, key, refs.map((j) => scores.rewards[j] as Float32Array));
      });
      return keys.map((key, i) => {
        const refs = itemRefs[i];
        if (refs !== undefined) return { rewards: refs.map((j) => scores.rewards[j] as Float32Array), source: 'request' as const };
        const remembered = key === undefined ? undefined : this.references.get(model.key, key);
        return remembered === undefined ? undefined : { rewards: remembered, source: 'prompt_cache' as const };
      });
    });

    try {
      const items = request.items.map((_, i): RewardedItem => {
        const objectives: Record<string, RewardedObjective> = {};
        const values: Record<string, number> = {};
        for (const s of slots) {
          const raw = rewardAt(perModel, s, i);
          if (!Number.isFinite(raw)) {
            throw new ScoringError('non_finite_reward', 500, `model ${s.model.id} gave a non-finite reward (${raw}) for objective ${s.key} of items[${i}]`);
          }
          const stats = s.model.spec.manifest?.reference?.[s.objective];
          const params: TransformParams = {};
          let resolved: { reference: number; source: ReferenceSource } | undefined;
          if (lsc) {
            const refs = references[s.m]?.[i];
            const column = refs?.rewards.map((r) => r[s.k] as number);
            resolved = resolveReference(
              s.key,
              {
                requestRewards: refs?.source === 'request' ? column : undefined,
                promptCache: refs?.source === 'prompt_cache' && column !== undefined ? quantile(column, q) : undefined,
                manifestQuantiles: stats?.quantiles,
              },
              q,
            );
            params.reference = resolved.reference;
          } else if (options.transform === 'znorm') {
            if (stats === undefined) {
              throw new TransformError('missing_parameter', `objective ${s.key} has no reward mean/std: znorm needs reference.${s.objective} in model ${s.model.name}'s rmserve.json`);
            }
            params.mean = stats.mean;
            params.std = stats.std;
          } else if (options.transform === 'clip') {
            if (options.clip !== undefined) params.clip = options.clip;
          }
          const transformed = applyTransform(options.transform, raw, params);
          values[s.key] = transformed;
          objectives[s.key] = {
            model: s.model.name,
            objective: s.objective,
            raw,
            transformed,
            ...(resolved === undefined ? {} : { reference: resolved.reference, referenceSource: resolved.source }),
          };
        }
        const { reward, probability } = aggregate(options.aggregate, values, options.weights);
        if (reward !== undefined && !Number.isFinite(reward)) {
          throw new TransformError('non_finite_result', `the ${options.aggregate} of items[${i}] is not finite; check the weights`);
        }
        return {
          ...(reward === undefined ? {} : { reward }),
          ...(probability === undefined ? {} : { probability }),
          cached: perModel.every((m) => m.cached[i]),
          truncated: perModel.some((m) => m.truncated[i]),
          objectives,
        };
      });
      return { modelVersions: versionsOf(models), items };
    } catch (err) {
      // Transform errors are the client's (bad weights, no reference…): 400 with their own code.
      if (err instanceof TransformError) throw new ScoringError(err.code, err.statusCode, err.message);
      throw err;
    }
  }

  private async scoreWith(model: ModelVersion, request: ScoreRequest): Promise<ModelScores> {
    // Tokenizing may hand off to a worker; the lease keeps this version's session alive until the
    // request's items are queued on it, even if a hot swap replaces it meanwhile.
    const release = model.acquire();
    try {
      return await this.scoreTokenized(model, request);
    } finally {
      release();
    }
  }

  private async scoreTokenized(model: ModelVersion, request: ScoreRequest): Promise<ModelScores> {
    const side = request.truncation ?? model.spec.truncationSide;
    // Admission before any work: a request's items hold queue slots while they are tokenized, so
    // under overload the 429 comes at once instead of after a wait behind the tokenizer pool.
    const releaseSlots = model.batcher.reserve(request.items.length);
    let tokenized: TokenizedItem[];
    try {
      tokenized = await this.tokenizers.tokenize(model, request.items, side);
    } finally {
      releaseSlots();
    }
    const keys = tokenized.map((t) => tokenKey(t.ids));
    const hits = keys.map((key) => this.cache.get(model.key, key));
    const misses = hits.filter((h) => h === undefined).length;
    this.metrics.cacheHits.inc({ model: model.name }, hits.length - misses);
    this.metrics.cacheMisses.inc({ model: model.name }, misses);
    // All-or-nothing admission: a request that does not fit changes nothing and gets 429. Between
    // releasing the reservation and queueing there is no await, so nothing can take the room.
    if (!model.batcher.hasRoomFor(misses)) throw queueFull(1);

    const rewards = await Promise.all(
      tokenized.map(async ({ ids }, i) => {
        const hit = hits[i];
        if (hit !== undefined) return hit;
        const key = keys[i] as string;
        const reward = await model.batcher.submit(ids, key, request.signal);
        this.cache.set(model.key, key, reward);
        return reward;
      }),
    );
    return {
      model,
      rewards,
      cached: hits.map((h) => h !== undefined),
      truncated: tokenized.map((t) => t.truncated),
    };
  }
}

/** Reply keys of every objective: the head's name, or `model.head` when an earlier model has it. */
function objectiveSlots(models: ModelVersion[]): ObjectiveSlot[] {
  const slots: ObjectiveSlot[] = [];
  const taken = new Set<string>();
  models.forEach((model, m) => {
    model.objectives.forEach((objective, k) => {
      const key = taken.has(objective) ? `${model.name}.${objective}` : objective;
      taken.add(key);
      slots.push({ key, m, k, model, objective });
    });
  });
  return slots;
}

function rewardAt(perModel: ModelScores[], slot: ObjectiveSlot, i: number): number {
  return ((perModel[slot.m] as ModelScores).rewards[i] as Float32Array)[slot.k] as number;
}

function versionsOf(models: ModelVersion[]): Record<string, string> {
  return Object.fromEntries(models.map((m) => [m.name, m.version]));
}
