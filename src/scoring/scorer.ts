// The scoring pipeline: format → tokenize → cache → batcher → raw reward vectors, for one or more
// models, then (in `reward`) reference rewards → transforms → aggregate. Each request pins the
// serving version of each model at its start (hot-swap safety).
import { versionLabels, type RmserveMetrics } from '../metrics.js';
import {
  aggregate,
  DEFAULT_REFERENCE_QUANTILE,
  applyTransform,
  TransformError,
  type AggregateName,
  type ReferenceSource,
  type TransformName,
} from '../transforms/index.js';
import { invalidItem, queueFull, ScoringError, unknownModel } from './errors.js';
import type { ScoreItem } from '../model/format.js';
import type { ModelRegistry } from './registry.js';
import { itemKey, RewardCache, tokenKey, type CachedReward } from './reward-cache.js';
import type { ClientConnection, ItemTiming } from './batcher.js';
import type { ModelVersion } from './model-version.js';
import { promptIdentity, promptKey, ReferenceCache, withResponse, type ReferenceRewards } from './references.js';
import { transformParams, type ObjectiveReferences, type TransformChoice } from './transform-params.js';
import type { TokenizedItem, TruncationSide } from '../model/tokenize.js';
import { TokenizerPool } from './tokenizer-pool.js';

export interface ScoreRequest {
  /** Model names; undefined means the server's default models. */
  models?: string[];
  items: ScoreItem[];
  truncation?: TruncationSide;
  /**
   * Called per model once every item's tokens are known (cache hits included) and before any is
   * queued: throwing refuses the request with nothing run. Routes refuse over-long inputs here
   * in their own words (`/v1/score`'s and TEI's `truncate: false`, vLLM's context-length error).
   */
  checkFit?: (items: readonly ItemFit[], model: ModelVersion) => void;
  /** Aborted when the client goes away: queued items are dropped. */
  signal?: AbortSignal;
  /** The connection the request came on, if any: see DynamicBatcher.submit. */
  connection?: ClientConnection;
}

/** What the model made of an item: whether it had to cut it, and the tokens it saw. */
export interface ItemFit {
  truncated: boolean;
  tokens: number;
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
  /** Tokens the model saw, special tokens included (the largest count when several models score it). */
  tokens: number;
}

/** Where a request's time went, in seconds (the slowest model's, when several score it). */
export interface RequestTiming {
  tokenizationSeconds: number;
  /** Longest wait of one of its items for a batch. */
  queueSeconds: number;
  /** Longest ONNX run one of its items was in. */
  inferenceSeconds: number;
}

export interface ScoreResult {
  modelVersions: Record<string, string>;
  items: ScoredItem[];
  timing: RequestTiming;
}

/** How raw rewards become the reply's `transformed` values (TransformChoice) and `reward`. */
export interface RewardOptions extends TransformChoice {
  aggregate: AggregateName;
  /** By objective name (reply key); unnamed objectives weigh 1. */
  weights?: Readonly<Record<string, number>>;
}

export interface RewardRequest extends ScoreRequest {
  options: RewardOptions;
  /** Reference responses to each item's prompt (lsc only): scored like items, remembered per prompt. */
  references?: readonly (readonly string[] | undefined)[];
  /** The formatted prompt of each pre-formatted (`text`) item, for the per-prompt reference cache. */
  promptTexts?: readonly (string | undefined)[];
  /**
   * The namespace of the per-prompt reference cache this request reads and writes ('' = the
   * shared one). A training run that picks an unguessable scope cannot have its references set
   * by another client.
   */
  referenceScope?: string;
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
  tokens: number;
  objectives: Record<string, RewardedObjective>;
}

export interface RewardResult {
  modelVersions: Record<string, string>;
  items: RewardedItem[];
  timing: RequestTiming;
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
  tokens: number[];
  timing: RequestTiming;
}

/** Where objective `key` of the reply is read from: column `k` of model `m`. */
interface ObjectiveSlot {
  key: string;
  m: number;
  k: number;
  model: ModelVersion;
  objective: string;
}

/** The reference reward vectors (all K heads) that apply to one item for one model. */
interface ItemReferences {
  rewards: ReferenceRewards;
  source: ObjectiveReferences['source'];
}

/** A request's reference pairs, deduplicated: the same response to the same prompt is scored once. */
interface ReferencePairs {
  /** The distinct (prompt, reference response) items, scored after the request's own items. */
  extra: ScoreItem[];
  /** Per item, where its references' rewards will be: indexes into items followed by extra. */
  itemRefs: (number[] | undefined)[];
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
    // By name or alias; a model named twice (even by two of its names) is scored once.
    return [...new Set(names.map((name) => this.registry.find(name)))];
  }

  /** Raw reward vectors only. */
  async score(request: ScoreRequest): Promise<ScoreResult> {
    const models = this.resolveModels(request.models);
    const perModel = await this.scoreAll(models, request);
    const slots = objectiveSlots(models);
    const items = request.items.map((_, i): ScoredItem => {
      const objectives: Record<string, ObjectiveScore> = {};
      for (const s of slots) {
        objectives[s.key] = { model: s.model.name, objective: s.objective, raw: rewardAt(perModel, s, i) };
      }
      return { objectives, ...itemFlags(perModel, i) };
    });
    return { modelVersions: versionsOf(models), items, timing: slowest(perModel) };
  }

  /**
   * Raw rewards, then per objective the transform (with its LSC reference) and the aggregate.
   * Reference responses ride in the same scoring call as the items, so they share the pinned
   * versions, the batcher, the cache and the all-or-nothing admission.
   */
  async reward(request: RewardRequest): Promise<RewardResult> {
    const models = this.resolveModels(request.models);
    const pairs = referencePairs(request);
    checkPairLimit(request, pairs.extra.length);
    const all = pairs.extra.length === 0 ? request.items : [...request.items, ...pairs.extra];
    const perModel = await this.scoreAll(models, { ...request, items: all });
    const references = models.map((model, m) => this.rememberedReferences(model, perModel[m] as ModelScores, request, pairs.itemRefs));
    const slots = objectiveSlots(models);
    const items = asScoringErrors(() => request.items.map((_, i) => rewardedItem(i, slots, perModel, references, request.options)));
    return { modelVersions: versionsOf(models), items, timing: slowest(perModel) };
  }

  /** Every model scores the same items; each pins its own serving version. */
  private scoreAll(models: ModelVersion[], request: ScoreRequest): Promise<ModelScores[]> {
    return Promise.all(models.map((model) => this.scoreWith(model, request)));
  }

  /**
   * Per item, the reference reward vectors that apply for `model`: the request's own, else the
   * ones remembered for the item's prompt. Remembers first, so an item whose prompt got
   * references from another item of this request uses them too. Only lsc reads references, so
   * other transforms neither render prompt keys nor touch the cache.
   */
  private rememberedReferences(
    model: ModelVersion,
    scores: ModelScores,
    request: RewardRequest,
    itemRefs: readonly (number[] | undefined)[],
  ): (ItemReferences | undefined)[] {
    if (request.options.transform !== 'lsc') return [];
    const rewardsOf = (refs: number[]): Float32Array[] => refs.map((j) => scores.rewards[j] as Float32Array);
    // Scoped by the request's reference_scope: a client that does not know a training run's
    // scope can neither read nor overwrite the references that run remembered.
    const scope = request.referenceScope ?? '';
    const keys = request.items.map((item, i) => {
      const key = promptKey(model, item, request.promptTexts?.[i]);
      return key === undefined ? undefined : `${scope}\u0000${key}`;
    });
    keys.forEach((key, i) => {
      const refs = itemRefs[i];
      if (key !== undefined && refs !== undefined) this.references.set(model.key, key, rewardsOf(refs));
    });
    return keys.map((key, i) => {
      const refs = itemRefs[i];
      if (refs !== undefined) return { rewards: rewardsOf(refs), source: 'request' };
      const remembered = key === undefined ? undefined : this.references.get(model.key, key);
      return remembered === undefined ? undefined : { rewards: remembered, source: 'prompt_cache' };
    });
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
    // The cache is looked up by the item itself, so a hit costs a hash, not a tokenization.
    const keys = request.items.map((item) => itemKey(item, side));
    const hits = keys.map((key) => this.cache.get(model.key, key));
    const missing = hits.flatMap((hit, i) => (hit === undefined ? [i] : []));
    const labels = versionLabels(model);
    this.metrics.cacheHits.inc(labels, hits.length - missing.length);
    this.metrics.cacheMisses.inc(labels, missing.length);

    // Admission before any work: the misses hold queue slots while they are tokenized, so under
    // overload the 429 comes at once instead of after a wait behind the tokenizer pool.
    const releaseSlots = model.batcher.reserve(missing.length);
    const tokenizeStarted = performance.now();
    let tokenized: TokenizedItem[] = [];
    try {
      if (missing.length > 0) {
        const result = await this.tokenizers.tokenize(model, missing.map((i) => request.items[i] as ScoreItem), side, missing);
        tokenized = result.items;
        this.metrics.observeTokenizedText(labels, result.stats);
      }
    } finally {
      releaseSlots();
    }
    const tokenizationSeconds = (performance.now() - tokenizeStarted) / 1000;
    if (missing.length > 0) this.metrics.observeTokenization(labels, tokenizationSeconds);
    // All-or-nothing admission: a request that does not fit changes nothing and gets 429. Between
    // releasing the reservation and queueing there is no await, so nothing can take the room.
    if (!model.batcher.hasRoomFor(missing.length)) throw queueFull(1);

    // Known once tokenized: a refused request runs nothing.
    request.checkFit?.(itemFits(hits, tokenized, missing), model);
    const timings = tokenized.map((): ItemTiming => ({}));
    const fresh = await Promise.all(
      tokenized.map(async ({ ids, truncated }, j) => {
        const reward = await model.batcher.submit(ids, tokenKey(ids), request.signal, timings[j], request.connection);
        const entry: CachedReward = { reward, truncated, tokens: ids.length };
        this.cache.set(model.key, keys[missing[j] as number] as string, entry);
        return entry;
      }),
    );
    const entries = [...hits];
    missing.forEach((i, j) => (entries[i] = fresh[j]));
    const done = entries as CachedReward[];
    this.metrics.observeInputTokens(labels, done);
    return {
      model,
      rewards: done.map((e) => e.reward),
      cached: hits.map((h) => h !== undefined),
      truncated: done.map((e) => e.truncated),
      tokens: done.map((e) => e.tokens),
      timing: {
        tokenizationSeconds,
        queueSeconds: Math.max(0, ...timings.map((t) => t.queueSeconds ?? 0)),
        inferenceSeconds: Math.max(0, ...timings.map((t) => t.inferenceSeconds ?? 0)),
      },
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

/** Whether every model answered item `i` from the cache, whether any truncated it, and its tokens. */
function itemFlags(perModel: ModelScores[], i: number): { cached: boolean; truncated: boolean; tokens: number } {
  return {
    cached: perModel.every((m) => m.cached[i]),
    truncated: perModel.some((m) => m.truncated[i]),
    tokens: Math.max(0, ...perModel.map((m) => m.tokens[i] ?? 0)),
  };
}

/** Every item's fit, in request order: a hit's from the cache, a miss's from its tokenization. */
function itemFits(hits: readonly (CachedReward | undefined)[], tokenized: readonly TokenizedItem[], missing: readonly number[]): ItemFit[] {
  const fits = hits.map((hit): ItemFit => ({ truncated: hit?.truncated ?? false, tokens: hit?.tokens ?? 0 }));
  missing.forEach((i, j) => {
    const item = tokenized[j] as TokenizedItem;
    fits[i] = { truncated: item.truncated, tokens: item.ids.length };
  });
  return fits;
}

/** The request's timing: each part's slowest model. */
function slowest(perModel: ModelScores[]): RequestTiming {
  const max = (part: keyof RequestTiming): number => Math.max(0, ...perModel.map((m) => m.timing[part]));
  return { tokenizationSeconds: max('tokenizationSeconds'), queueSeconds: max('queueSeconds'), inferenceSeconds: max('inferenceSeconds') };
}

/**
 * The reference pairs of a lsc request (other transforms ignore references). Only items whose
 * prompt the server can pair with another response may carry them: not pre-formatted `text`.
 */
function referencePairs(request: RewardRequest): ReferencePairs {
  const n = request.items.length;
  const extra: ScoreItem[] = [];
  const index = new Map<string, number>();
  const itemRefs = request.items.map((item, i) => {
    const responses = request.options.transform === 'lsc' ? request.references?.[i] : undefined;
    if (responses === undefined || responses.length === 0) return undefined;
    if ('text' in item) throw invalidItem(`items[${i}]: reference responses need a {prompt, response} or {messages} item`);
    const prompt = promptIdentity(item);
    return responses.map((response) => {
      const pair = `${prompt}\u0000${response}`;
      let j = index.get(pair);
      if (j === undefined) {
        j = extra.length;
        index.set(pair, j);
        extra.push(withResponse(item, response));
      }
      return n + j;
    });
  });
  return { extra, itemRefs };
}

/** Items and distinct reference pairs count alike against the request's pair limit (413). */
function checkPairLimit(request: RewardRequest, extraPairs: number): void {
  const n = request.items.length;
  if (request.maxPairs !== undefined && n + extraPairs > request.maxPairs) {
    throw new ScoringError(
      'too_many_items',
      413,
      `at most ${request.maxPairs} (prompt, response) pairs per request, got ${n} items and ${extraPairs} distinct reference pairs`,
    );
  }
}

/** Item `i` of the reply: every objective transformed, then their aggregate. */
function rewardedItem(
  i: number,
  slots: ObjectiveSlot[],
  perModel: ModelScores[],
  references: (ItemReferences | undefined)[][],
  options: RewardOptions,
): RewardedItem {
  const objectives: Record<string, RewardedObjective> = {};
  const values: Record<string, number> = {};
  for (const s of slots) {
    const objective = rewardedObjective(s, i, rewardAt(perModel, s, i), references[s.m]?.[i], options);
    values[s.key] = objective.transformed;
    objectives[s.key] = objective;
  }
  const { reward, probability } = aggregate(options.aggregate, values, options.weights);
  if (reward !== undefined && !Number.isFinite(reward)) {
    throw new TransformError('non_finite_result', `the ${options.aggregate} of items[${i}] is not finite; check the weights`);
  }
  return {
    ...(reward === undefined ? {} : { reward }),
    ...(probability === undefined ? {} : { probability }),
    ...itemFlags(perModel, i),
    objectives,
  };
}

/** One objective of item `i`: its raw reward, checked finite, and its transform. */
function rewardedObjective(
  s: ObjectiveSlot,
  i: number,
  raw: number,
  refs: ItemReferences | undefined,
  options: RewardOptions,
): RewardedObjective {
  if (!Number.isFinite(raw)) {
    throw new ScoringError('non_finite_reward', 500, `model ${s.model.id} gave a non-finite reward (${raw}) for objective ${s.key} of items[${i}]`);
  }
  const { params, reference } = transformParams(options, {
    key: s.key,
    objective: s.objective,
    model: s.model.name,
    stats: s.model.spec.manifest?.reference?.[s.objective],
    references: refs === undefined ? undefined : { rewards: refs.rewards.map((r) => r[s.k] as number), source: refs.source },
  });
  const transformed = applyTransform(options.transform, raw, params);
  return {
    model: s.model.name,
    objective: s.objective,
    raw,
    transformed,
    ...(reference === undefined ? {} : { reference: reference.reference, referenceSource: reference.source }),
  };
}

/** Transform errors are the client's (bad weights, no reference…): 400 with their own code. */
function asScoringErrors<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof TransformError) throw new ScoringError(err.code, err.statusCode, err.message);
    throw err;
  }
}
