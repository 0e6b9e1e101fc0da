// Builds the fastify app: HTTP only. Scoring, registry and metrics are passed in (no model logic here).
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { RmserveMetrics } from '../metrics.js';
import type { ModelRegistry } from '../scoring/registry.js';
import type { RewardDefaults, Scorer } from '../scoring/scorer.js';
import { RMSERVE_VERSION } from '../version.js';
import { OPEN_ROUTES, requireApiKey } from './auth.js';
import { clientErrorHandler, errorBody, frameworkErrorHandler, registerErrorHandling } from './errors.js';
import { DEFAULT_HTTP_LIMITS, httpServerFactory, type HttpLimits } from './limits.js';
import { completeOpenApi } from './openapi.js';
import { RequestAccounting } from './request-metrics.js';
import { ADMIN_ROUTES, adminRoutes } from './routes/admin.js';
import { compatRoutes } from './routes/compat.js';
import { healthRoutes } from './routes/health.js';
import { modelRoutes } from './routes/models.js';
import { openRlhfRoutes } from './routes/openrlhf.js';
import { scoreRoutes } from './routes/score.js';

export interface AppOptions {
  scorer: Scorer;
  registry: ModelRegistry;
  metrics: RmserveMetrics;
  /** Largest request body in bytes (413 beyond). */
  bodyLimit: number;
  /** Most items (pairs or queries) in one request (413 beyond). */
  maxItems: number;
  /** /get_reward's transform, aggregate and reference quantile when its query string names none. */
  rewardDefaults?: RewardDefaults;
  logger?: FastifyServerOptions['logger'];
  /** Log every request and reply (off: per-request logging is on the hot path). */
  accessLog?: boolean;
  /** Enables the admin routes (load/unload/rollback), which require it as a bearer token. */
  adminToken?: string;
  /** Bearer token for every route but /health, /ready, /metrics and /docs. */
  apiKey?: string;
  /** Timeouts and connection limits against slow clients (DEFAULT_HTTP_LIMITS when absent). */
  http?: HttpLimits;
}

/** Routes that still answer while draining: probes and scrapes see the shutdown rather than a 503 of ours. */
const DRAIN_OPEN_ROUTES = new Set(['/health', '/ready', '/metrics']);

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { metrics } = options;
  const limits = options.http ?? DEFAULT_HTTP_LIMITS;
  const accounting = new RequestAccounting(metrics);
  // rmserve_ready says what GET /ready would.
  metrics.setReadiness(() => options.registry.ready);
  const app = Fastify({
    logger: options.logger ?? false,
    logController: new LogController({ disableRequestLogging: !(options.accessLog ?? false) }),
    bodyLimit: options.bodyLimit,
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false } },
    serverFactory: httpServerFactory(limits, metrics),
    clientErrorHandler: clientErrorHandler(accounting, limits),
    frameworkErrors: frameworkErrorHandler(accounting),
    // The drain hook below answers 503 in the error shape; fastify's own would not be.
    return503OnClosing: false,
  });
  registerErrorHandling(app);
  // Every route takes JSON; a text body is a client mistake worth a 415, not a schema error.
  app.removeContentTypeParser('text/plain');
  accounting.install(app);
  app.addHook('onRequest', async (request, reply) => {
    // Node answers a Host-less HTTP/1.1 request itself, with an empty body (requireHostHeader is
    // off in limits.ts so that the refusal comes from here, in the error shape).
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
      return reply.status(400).send(errorBody('missing_host', 'an HTTP/1.1 request needs a Host header'));
    }
    // Draining: a request that arrives, on a keep-alive connection or a new one accepted before the
    // listener closed, is answered 503 (it has not started, so another replica can take it) rather
    // than reset; the onSend hook closes its connection.
    if (options.registry.draining && !DRAIN_OPEN_ROUTES.has(request.routeOptions.url ?? '')) {
      return reply.status(503).send(errorBody('shutting_down', 'the server is shutting down; retry on another replica'));
    }
  });
  if (options.apiKey) requireApiKey(app, options.apiKey, ADMIN_ROUTES);
  // While draining for shutdown every reply closes its connection, so no keep-alive outlives it.
  app.addHook('onSend', async (_request, reply) => {
    if (options.registry.draining) void reply.header('connection', 'close');
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'rmserve',
        description: 'Reward-model inference server',
        version: RMSERVE_VERSION,
        license: { name: 'MIT', url: 'https://spdx.org/licenses/MIT.html' },
      },
      // Declared for @fastify/swagger, which looks up every scheme a route names; the finished
      // document keeps it only where a route uses it.
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    },
    // operationIds, security (from --api-key / --admin-token), tuples in OpenAPI 3.0's form and
    // every error status: src/server/openapi.ts, for all routes at once.
    transformObject: (document) =>
      'openapiObject' in document
        ? completeOpenApi(document.openapiObject, {
            apiKey: options.apiKey !== undefined && options.apiKey !== '',
            adminRoutes: ADMIN_ROUTES,
            openRoutes: OPEN_ROUTES,
            drainOpenRoutes: DRAIN_OPEN_ROUTES,
            metricsContentType: metrics.registry.contentType,
          })
        : document.swaggerObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await app.register(healthRoutes, { registry: options.registry, metrics });
  await app.register(modelRoutes, { registry: options.registry });
  if (options.adminToken) await app.register(adminRoutes, { registry: options.registry, adminToken: options.adminToken });
  await app.register(scoreRoutes, { scorer: options.scorer, maxItems: options.maxItems });
  await app.register(openRlhfRoutes, { scorer: options.scorer, maxItems: options.maxItems, defaults: options.rewardDefaults });
  await app.register(compatRoutes, { scorer: options.scorer, maxItems: options.maxItems });
  return app;
}
