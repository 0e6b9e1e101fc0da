// GET /health (process is up), GET /ready (a model serves), GET /metrics (Prometheus text format).
import type { FastifyPluginAsync } from 'fastify';
import type { RmserveMetrics } from '../../metrics.js';
import type { ModelRegistry } from '../../scoring/registry.js';
import { errorBody } from '../errors.js';

export const healthRoutes: FastifyPluginAsync<{ registry: ModelRegistry; metrics: RmserveMetrics }> = async (
  app,
  { registry, metrics },
) => {
  app.get('/health', { schema: { summary: 'Liveness' } }, async () => ({ status: 'ok' }));
  app.get('/ready', { schema: { summary: 'Readiness: every configured model has a serving version' } }, async (_request, reply) =>
    registry.ready
      ? { status: 'ready', models: registry.names() }
      : reply.status(503).send(errorBody('not_ready', 'no model is loaded yet')),
  );
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false } }, async (_request, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
};
