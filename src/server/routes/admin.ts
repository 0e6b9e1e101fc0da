// Model control (Triton's explicit mode): POST /v1/models/:name/load {version | path, pin?},
// /unload and /rollback. Registered only when an admin token is configured, and every call
// must carry it as a bearer token. The registry refuses paths outside the models root.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { ModelRegistry } from '../../scoring/registry.js';
import { BearerToken, unauthorized } from '../auth.js';
import { ErrorSchema } from '../schemas.js';
import { ModelStatusSchema } from './models.js';

export const ADMIN_ROUTES: ReadonlySet<string> = new Set([
  '/v1/models/:name/load',
  '/v1/models/:name/unload',
  '/v1/models/:name/rollback',
]);

const LoadBody = Type.Object(
  {
    version: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'version folder under <root>/<name>/, or "latest"' })),
    path: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'model folder inside the models root' })),
    pin: Type.Optional(Type.Boolean({ description: 'keep this version even when a newer one appears (default: true unless "latest")' })),
  },
  { additionalProperties: false },
);
type LoadBody = Static<typeof LoadBody>;

const Params = Type.Object({ name: Type.String({ minLength: 1 }) });
type Params = Static<typeof Params>;

const responses = { 200: ModelStatusSchema, '4xx': ErrorSchema, '5xx': ErrorSchema };
const security = [{ bearerAuth: [] }];

export const adminRoutes: FastifyPluginAsync<{ registry: ModelRegistry; adminToken: string }> = async (app, { registry, adminToken }) => {
  const token = new BearerToken(adminToken);
  // onRequest runs before the body is read: a caller without the token gets nothing parsed.
  app.addHook('onRequest', async (request, reply) => {
    if (!token.matches(request)) return unauthorized(reply, 'rmserve-admin');
  });

  app.post<{ Params: Params; Body: LoadBody }>(
    '/v1/models/:name/load',
    {
      schema: {
        summary: 'Load, validate and warm a version, then switch to it (the old one drains)',
        params: Params,
        body: Type.Optional(LoadBody),
        response: responses,
        security,
      },
    },
    async (request) => {
      const { name } = request.params;
      await registry.loadRequest(name, { ...(request.body ?? {}), source: 'api' });
      return registry.statusOf(name);
    },
  );

  app.post<{ Params: Params }>(
    '/v1/models/:name/unload',
    { schema: { summary: 'Stop serving a model once its queued work is done', params: Params, response: responses, security } },
    async (request) => {
      await registry.unload(request.params.name);
      return registry.statusOf(request.params.name);
    },
  );

  app.post<{ Params: Params }>(
    '/v1/models/:name/rollback',
    { schema: { summary: 'Serve the previous version again (pinned)', params: Params, response: responses, security } },
    async (request) => {
      await registry.rollback(request.params.name);
      return registry.statusOf(request.params.name);
    },
  );
};
