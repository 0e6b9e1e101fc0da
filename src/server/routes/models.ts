// GET /v1/models, GET /v1/models/:name — what is loaded, which version serves, and what failed.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { unknownModel } from '../../scoring/errors.js';
import type { ModelRegistry } from '../../scoring/registry.js';
import { ErrorSchema } from '../schemas.js';

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);

export const ModelStatusSchema = Type.Object({
  name: Type.String(),
  serving: Type.Union([
    Type.Null(),
    Type.Object({
      version: Type.String(),
      loaded_at: Type.String(),
      load_seconds: Type.Number(),
      objectives: Type.Array(Type.String()),
      max_length: Type.Integer(),
      pad_id: Type.Integer({ description: 'The id rows are padded with' }),
      pad_id_source: Type.String({ description: 'Which rule gave the pad id: config.pad_token_id, tokenizer pad_token, tokenizer eos_token, config.eos_token_id or default 0' }),
      padding_side: Type.String(),
      batching: Type.Object({
        max_batch_size: Type.Integer(),
        max_batch_tokens: Type.Integer(),
        calibrated: Type.Boolean({ description: 'true when the limits were chosen by timing batch sizes at load (--calibrate-batching)' }),
        calibration_seconds: Type.Optional(Type.Number()),
      }),
      metrics: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  ]),
  versions: Type.Array(Type.String()),
  newest: Nullable(Type.String()),
  pinned: Nullable(Type.String()),
  previous: Nullable(Type.String()),
  loading: Nullable(Type.String()),
  unloaded: Type.Boolean(),
  last_error: Nullable(Type.String()),
  last_failure: Type.Union([
    Type.Null(),
    Type.Object({ version: Type.String(), message: Type.String(), at: Type.String(), source: Type.String() }),
  ]),
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
