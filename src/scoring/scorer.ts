// The scoring pipeline: format → tokenize → cache → batcher → raw reward vectors, for one or more
// models. Each request pins the serving version of each model at its start (hot-swap safety).
import type { RmserveMetrics } from '../metrics.js';
import { invalidItem, queueFull, unknownModel } from './errors.js';
import type { ScoreItem } from './format.js';
import type { ModelRegistry } from './registry.js';
import { RewardCache, tokenKey } from './reward-cache.js';
import type { ModelVersion } from './model-version.js';
import type { TruncationSide } from './tokenize.js';

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

interface ModelScores {
  model: ModelVersion;
  rewards: Float32Array[];
  cached: boolean[];
  truncated: boolean[];
}

export class Scorer {
  constructor(
    readonly registry: ModelRegistry,
    private readonly cache: RewardCache,
    private readonly metrics: RmserveMetrics,
    private readonly defaultModels: string[] | undefined,
  ) {}

  /** The models a request without `model` is scored by. */
  resolveModels(requested: string[] | undefined): ModelVersion[] {
    const names = requested ?? this.defaultModels ?? this.registry.names();
    if (names.length === 0) throw unknownModel('(default)');
    const unique = [...new Set(names)];
    return unique.map((name) => this.registry.get(name));
  }

  async score(request: ScoreRequest): Promise<ScoreResult> {
    const models = this.resolveModels(request.models);
    const perModel = await Promise.all(models.map((model) => this.scoreWith(model, request)));
    const items = request.items.map((_, i): ScoredItem => {
      const objectives: Record<string, ObjectiveScore> = {};
      for (const { model, rewards } of perModel) {
        model.objectives.forEach((objective, k) => {
          const key = objectives[objective] === undefined ? objective : `${model.name}.${objective}`;
          objectives[key] = { model: model.name, raw: (rewards[i] as Float32Array)[k] as number };
        });
      }
      return {
        objectives,
        cached: perModel.every((m) => m.cached[i]),
        truncated: perModel.some((m) => m.truncated[i]),
      };
    });
    return { modelVersions: Object.fromEntries(models.map((m) => [m.name, m.version])), items };
  }

  private async scoreWith(model: ModelVersion, request: ScoreRequest): Promise<ModelScores> {
    const side = request.truncation ?? model.spec.truncationSide;
    const tokenized = request.items.map((item, i) => {
      try {
        return model.spec.tokenizer.encode(model.spec.formatter.render(item), side);
      } catch (err) {
        throw invalidItem(`items[${i}]: ${(err as Error).message}`);
      }
    });
    const keys = tokenized.map((t) => tokenKey(t.ids));
    const hits = keys.map((key) => this.cache.get(model.id, key));
    const misses = hits.filter((h) => h === undefined).length;
    this.metrics.cacheHits.inc({ model: model.name }, hits.length - misses);
    this.metrics.cacheMisses.inc({ model: model.name }, misses);
    // All-or-nothing admission: a request that does not fit changes nothing and gets 429.
    if (!model.batcher.hasRoomFor(misses)) throw queueFull(1);

    const rewards = await Promise.all(
      tokenized.map(async ({ ids }, i) => {
        const hit = hits[i];
        if (hit !== undefined) return hit;
        const key = keys[i] as string;
        const reward = await model.batcher.submit(ids, key, request.signal);
        this.cache.set(model.id, key, reward);
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
