// POST /v1/score — rmserve's own scoring API (see docs/api.md for the reply shape).
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Scorer } from '../../scoring/scorer.js';
import { ScoringError } from '../../scoring/errors.js';
import { clientAbortSignal } from '../abort.js';
import { ErrorSchema, ModelSelectorSchema, ScoreItemSchema, TruncationSchema, modelList } from '../schemas.js';

const ScoreBody = Type.Object(
  {
    model: Type.Optional(ModelSelectorSchema),
    items: Type.Array(ScoreItemSchema, { minItems: 1 }),
    transform: Type.Optional(Type.Literal('none')),
    aggregate: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('sum'), Type.Literal('min')])),
    truncation: Type.Optional(TruncationSchema),
  },
  { additionalProperties: false },
);
type ScoreBody = Static<typeof ScoreBody>;

const ObjectiveResult = Type.Object({ raw: Type.Number(), transformed: Type.Number(), model: Type.String() });
const ScoreReply = Type.Object({
  model_versions: Type.Record(Type.String(), Type.String()),
  results: Type.Array(
    Type.Object({
      reward: Type.Optional(Type.Number()),
      cached: Type.Boolean(),
      truncated: Type.Boolean(),
      objectives: Type.Record(Type.String(), ObjectiveResult),
    }),
  ),
});

export interface ScoreRouteOptions {
  scorer: Scorer;
  maxItems: number;
}

export const scoreRoutes: FastifyPluginAsync<ScoreRouteOptions> = async (app, { scorer, maxItems }) => {
  app.post<{ Body: ScoreBody }>(
    '/v1/score',
    {
      schema: {
        summary: 'Score (prompt, response) pairs with one or more reward models',
        body: ScoreBody,
        response: { 200: ScoreReply, '4xx': ErrorSchema },
      },
    },
    async (request, reply) => {
      const { items, aggregate = 'sum' } = request.body;
      if (items.length > maxItems) {
        throw new ScoringError('too_many_items', 413, `at most ${maxItems} items per request, got ${items.length}`);
      }
      const result = await scorer.score({
        models: modelList(request.body.model),
        items,
        truncation: request.body.truncation,
        signal: clientAbortSignal(request, reply),
      });
      return {
        model_versions: result.modelVersions,
        results: result.items.map((item) => {
          const raws = Object.values(item.objectives).map((o) => o.raw);
          const reward = aggregate === 'none' ? undefined : aggregate === 'min' ? Math.min(...raws) : raws.reduce((a, b) => a + b, 0);
          return {
            ...(reward === undefined ? {} : { reward }),
            cached: item.cached,
            truncated: item.truncated,
            objectives: Object.fromEntries(
              Object.entries(item.objectives).map(([name, o]) => [name, { raw: o.raw, transformed: o.raw, model: o.model }]),
            ),
          };
        }),
      };
    },
  );
};
