// Wires the scoring core and the HTTP app together; used by `rmserve serve`, the tests and bench/.
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { RmserveMetrics } from './metrics.js';
import { ModelRegistry } from './scoring/registry.js';
import { ModelWatcher } from './scoring/watcher.js';
import { RewardCache } from './scoring/reward-cache.js';
import { ReferenceCache } from './scoring/references.js';
import { Scorer } from './scoring/scorer.js';
import { TokenizerPool } from './scoring/tokenizer-pool.js';
import { buildApp } from './server/app.js';
import { checkAggregate } from './transforms/index.js';
import { validateHttpLimits } from './server/limits.js';
import { defaultsOf } from './config/options.js';
import { SERVE_OPTIONS, type ServeConfig } from './config/serve.js';

/**
 * createService's config. Its fields, defaults and documentation are the entries of SERVE_OPTIONS
 * (src/config/serve.ts), the same table `rmserve serve` builds its flags from.
 */
export type ServiceConfig = ServeConfig;

export const DEFAULT_CONFIG: ServiceConfig = {
  ...defaultsOf(SERVE_OPTIONS),
  // The command watches unless --no-watch; a service embedded in a test or a benchmark loads what
  // is there and nothing later, unless it asks.
  watch: false,
  // Timing batch sizes makes limits depend on the machine's load at that moment: the command
  // calibrates; tests and benchmarks batch by the limits they give, unless they ask.
  calibrateBatching: false,
  // Likewise one session: how many `auto` opens depends on the machine (its cores and memory).
  instances: 1,
  // And a solo session on its own thread: where it goes is timed at load.
  soloInlineMs: 0,
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
  // `auto` opens one session without the inference threads (src/scoring/session-layout.ts).
  const fixedInstances = config.instances === 'auto' ? 1 : config.instances;
  if ((fixedInstances > 1 || config.soloThreads > 0) && !config.inferenceThread) {
    const flag = fixedInstances > 1 ? `--instances ${config.instances}` : `--solo-threads ${config.soloThreads}`;
    throw new Error(`${flag} needs the inference threads: on the main thread the sessions could only run one batch at a time`);
  }
  const metrics = new RmserveMetrics();
  const registry = new ModelRegistry(config.modelsRoot, {
    metrics,
    session: { device: config.device, intraOpThreads: config.intraOpThreads, interOpThreads: config.interOpThreads, allowSpinning: config.ortSpinning, thread: config.inferenceThread, poolNice: config.ortPoolNice },
    batcher: {
      maxBatchSize: config.maxBatchSize,
      maxBatchTokens: config.maxBatchTokens,
      maxWaitMs: config.maxWaitMs,
      maxQueueItems: config.maxQueueItems,
      maxPaddingRatio: config.maxPaddingRatio,
    },
    calibrateBatching: config.calibrateBatching,
    instances: config.instances,
    soloThreads: config.soloThreads,
    soloInlineMs: config.soloInlineMs,
  }, { pins: config.pins, log: options.log });
  await registry.loadAll(options.log);
  const scorer = new Scorer(
    registry,
    new RewardCache(config.cacheSize),
    metrics,
    config.defaultModels,
    new ReferenceCache(config.referenceCacheSize),
    new TokenizerPool({ threads: config.tokenizerThreads, maxItemChars: config.maxItemChars, promptGroups: config.promptGroups }),
  );
  const app = await buildApp({
    scorer,
    registry,
    metrics,
    bodyLimit: config.bodyLimit,
    maxItems: config.maxItems,
    rewardDefaults: config.rewardDefaults,
    logger: options.logger,
    accessLog: config.accessLog,
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
