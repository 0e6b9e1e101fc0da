// GET /v1/models, GET /v1/models/:name — what is loaded and which version serves.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { unknownModel } from '../../scoring/errors.js';
import type { ModelRegistry } from '../../scoring/registry.js';
import { ErrorSchema } from '../schemas.js';

const ModelStatusSchema = Type.Object({
  name: Type.String(),
  serving: Type.Union([
    Type.Null(),
    Type.Object({
      version: Type.String(),
      loaded_at: Type.String(),
      objectives: Type.Array(Type.String()),
      max_length: Type.Integer(),
      metrics: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  ]),
  versions: Type.Array(Type.String()),
  last_error: Type.Union([Type.String(), Type.Null()]),
});

export const modelRoutes: FastifyPluginAsync<{ registry: ModelRegistry }> = async (app, { registry }) => {
  app.get(
    '/v1/models',
    { schema: { summary: 'List models and their serving versions', response: { 200: Type.Object({ models: Type.Array(ModelStatusSchema) }) } } },
    async () => ({ models: registry.status() }),
  );
  app.get<{ Params: { name: string } }>(
    '/v1/models/:name',
    {
      schema: {
        summary: 'One model and its versions',
        params: Type.Object({ name: Type.String() }),
        response: { 200: ModelStatusSchema, '4xx': ErrorSchema },
      },
    },
    async (request) => {
      const status = registry.status().find((m) => m.name === request.params.name);
      if (status === undefined) throw unknownModel(request.params.name);
      return status;
    },
  );
};
