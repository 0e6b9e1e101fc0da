// Wires the scoring core and the HTTP app together; used by `rmserve serve`, the tests and bench/.
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { RmserveMetrics } from './metrics.js';
import { ModelRegistry } from './scoring/registry.js';
import { DEFAULT_WATCH_OPTIONS, ModelWatcher } from './scoring/watcher.js';
import { RewardCache } from './scoring/reward-cache.js';
import { DEFAULT_REFERENCE_CACHE_SIZE, ReferenceCache } from './scoring/references.js';
import { DEFAULT_REWARD_DEFAULTS, Scorer, type RewardDefaults } from './scoring/scorer.js';
import { TokenizerPool } from './scoring/tokenizer-pool.js';
import { buildApp } from './server/app.js';
import { checkAggregate } from './transforms/index.js';
import { DEFAULT_HTTP_LIMITS, validateHttpLimits, type HttpLimits } from './server/limits.js';

export interface ServiceConfig extends HttpLimits {
  modelsRoot: string;
  device: string;
  intraOpThreads: number;
  interOpThreads: number;
  /** ORT thread pools spin-wait between runs (off: the event loop needs those cores). */
  ortSpinning: boolean;
  maxBatchSize: number;
  maxBatchTokens: number;
  maxWaitMs: number;
  maxQueueItems: number;
  /** Largest padding share of one batch (1 = no limit). */
  maxPaddingRatio: number;
  cacheSize: number;
  maxItems: number;
  bodyLimit: number;
  defaultModels: string[] | undefined;
  /** Versions served instead of the newest, by model name (`--pin name=version`). */
  pins: Record<string, string>;
  /** Watch the models root and serve each model's newest complete version once it has settled. */
  watch: boolean;
  watchSettleMs: number;
  watchPollMs: number;
  /** Bearer token of the admin routes (load/unload/rollback); they are off without one. */
  adminToken: string | undefined;
  /** Bearer token required by every route but /health, /ready, /metrics and /docs; off when unset. */
  apiKey: string | undefined;
  /** /get_reward's transform, aggregate and LSC reference quantile when the URL names none. */
  rewardDefaults: RewardDefaults;
  /** Prompts whose LSC reference rewards are remembered (0 = off). */
  referenceCacheSize: number;
  /** Worker threads that tokenize large requests off the event loop (0 = always inline). */
  tokenizerThreads: number;
}

export const DEFAULT_CONFIG: ServiceConfig = {
  modelsRoot: './models',
  device: 'cpu',
  intraOpThreads: 0,
  interOpThreads: 0,
  ortSpinning: false,
  maxBatchSize: 64,
  maxBatchTokens: 32768,
  maxWaitMs: 2,
  maxQueueItems: 4096,
  maxPaddingRatio: 0.1,
  cacheSize: 100_000,
  maxItems: 256,
  bodyLimit: 8 * 1024 * 1024,
  defaultModels: undefined,
  pins: {},
  watch: false,
  watchSettleMs: DEFAULT_WATCH_OPTIONS.settleMs,
  watchPollMs: DEFAULT_WATCH_OPTIONS.pollMs,
  adminToken: undefined,
  apiKey: undefined,
  rewardDefaults: DEFAULT_REWARD_DEFAULTS,
  referenceCacheSize: DEFAULT_REFERENCE_CACHE_SIZE,
  tokenizerThreads: 1,
  ...DEFAULT_HTTP_LIMITS,
};

export interface Service {
  app: FastifyInstance;
  registry: ModelRegistry;
  scorer: Scorer;
  metrics: RmserveMetrics;
  watcher: ModelWatcher | undefined;
  /** Graceful stop: /ready off, watch off, no new requests, in-flight and queued ones answered, sessions released. */
  close(): Promise<void>;
}

export async function createService(
  overrides: Partial<ServiceConfig>,
  options: { logger?: FastifyServerOptions['logger']; log?: (message: string) => void } = {},
): Promise<Service> {
  const config = { ...DEFAULT_CONFIG, ...overrides };
  // Before any model loads: a bad limit is a configuration mistake, not a runtime failure.
  validateHttpLimits(config);
  const { transform, aggregate } = config.rewardDefaults;
  if (aggregate !== undefined) {
    try {
      checkAggregate(transform, aggregate);
    } catch (err) {
      throw new Error(`--transform ${transform} --aggregate ${aggregate}: ${(err as Error).message}`);
    }
  }
  const metrics = new RmserveMetrics();
  const registry = new ModelRegistry(config.modelsRoot, {
    metrics,
    session: { device: config.device, intraOpThreads: config.intraOpThreads, interOpThreads: config.interOpThreads, allowSpinning: config.ortSpinning },
    batcher: {
      maxBatchSize: config.maxBatchSize,
      maxBatchTokens: config.maxBatchTokens,
      maxWaitMs: config.maxWaitMs,
      maxQueueItems: config.maxQueueItems,
      maxPaddingRatio: config.maxPaddingRatio,
    },
  }, { pins: config.pins, log: options.log });
  await registry.loadAll(options.log);
  const scorer = new Scorer(
    registry,
    new RewardCache(config.cacheSize),
    metrics,
    config.defaultModels,
    new ReferenceCache(config.referenceCacheSize),
    new TokenizerPool(config.tokenizerThreads),
  );
  const app = await buildApp({
    scorer,
    registry,
    metrics,
    bodyLimit: config.bodyLimit,
    maxItems: config.maxItems,
    rewardDefaults: config.rewardDefaults,
    logger: options.logger,
    adminToken: config.adminToken,
    apiKey: config.apiKey,
    http: {
      requestTimeoutMs: config.requestTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      maxConnections: config.maxConnections,
      maxHeaderBytes: config.maxHeaderBytes,
    },
  });
  const watcher = config.watch
    ? new ModelWatcher(registry, { settleMs: config.watchSettleMs, pollMs: config.watchPollMs, log: options.log })
    : undefined;
  watcher?.start();
  return {
    app,
    registry,
    scorer,
    metrics,
    watcher,
    async close() {
      // From here every new request is answered 503 with `Connection: close` (app.ts).
      registry.beginShutdown();
      await watcher?.stop();
      // Stops accepting connections and resolves once every open one has closed: those that carry
      // a request close after its reply; idle keep-alive ones at their keep-alive timeout, never
      // by a reset under a request the client has just sent (DrainingHttpServer in limits.ts).
      await app.close();
      await registry.close();
      await scorer.close();
    },
  };
}
