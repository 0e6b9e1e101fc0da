// POST /v1/score — rmserve's own scoring API (docs/api.md has the shapes, docs/transforms.md the
// maths). Raw rewards by default; transforms and the aggregate are applied per request after the
// cache, so one cached score serves every transform.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { defaultAggregate, type ItemFit, type RewardedItem, type Scorer } from '../../scoring/scorer.js';
import type { ModelVersion } from '../../scoring/model-version.js';
import { ScoringError } from '../../scoring/errors.js';
import { setTimingHeaders } from '../timing.js';
import { checkAggregate } from '../../transforms/index.js';
import { requestClient } from '../client.js';
import {
  AggregateNameSchema,
  ErrorSchema,
  ModelSelectorSchema,
  ReferenceQuantileSchema,
  ReferenceSchema,
  ReferenceScopeSchema,
  ScoreItemSchema,
  TransformNameSchema,
  TruncationSchema,
  WeightsSchema,
  modelList,
} from '../schemas.js';

/** `truncate: false`: an item that did not fit the model is the client's to shorten (413, before anything runs). */
function refuseTruncated(fits: readonly ItemFit[], model: ModelVersion): void {
  const i = fits.findIndex((fit) => fit.truncated);
  if (i >= 0) {
    throw new ScoringError('input_too_long', 413, `items[${i}] is longer than model ${model.name}'s ${model.spec.maxLength} tokens and truncate is false`);
  }
}

const ScoreBody = Type.Object(
  {
    model: Type.Optional(ModelSelectorSchema),
    items: Type.Array(ScoreItemSchema, { minItems: 1 }),
    transform: Type.Optional(TransformNameSchema),
    // Default: conjunction for lsc, sum otherwise (one objective: its own value either way).
    aggregate: Type.Optional(AggregateNameSchema),
    weights: Type.Optional(WeightsSchema),
    // Reference responses for every item's prompt; an item's own `reference` replaces them.
    reference: Type.Optional(ReferenceSchema),
    reference_quantile: Type.Optional(ReferenceQuantileSchema),
    reference_scope: Type.Optional(ReferenceScopeSchema),
    truncate: Type.Optional(
      Type.Boolean({ description: "false: an item longer than a model's max length is a 413 instead of being cut (default true)" }),
    ),
    clip: Type.Optional(Type.Tuple([Type.Number(), Type.Number()])),
    truncation: Type.Optional(TruncationSchema),
  },
  { additionalProperties: false },
);
type ScoreBody = Static<typeof ScoreBody>;

const ObjectiveResult = Type.Object({
  raw: Type.Number(),
  transformed: Type.Number(),
  model: Type.String(),
  reference: Type.Optional(Type.Number()),
  reference_source: Type.Optional(Type.Union([Type.Literal('request'), Type.Literal('prompt_cache'), Type.Literal('manifest')])),
});
const ScoreReply = Type.Object({
  model_versions: Type.Record(Type.String(), Type.String()),
  results: Type.Array(
    Type.Object({
      reward: Type.Optional(Type.Number()),
      probability: Type.Optional(Type.Number()),
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
        summary: 'Score (prompt, response) pairs with one or more reward models, optionally transformed and aggregated',
        body: ScoreBody,
        response: { 200: ScoreReply, '4xx': ErrorSchema },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.items.length > maxItems) {
        throw new ScoringError('too_many_items', 413, `at most ${maxItems} items per request, got ${body.items.length}`);
      }
      const transform = body.transform ?? 'none';
      const aggregate = body.aggregate ?? defaultAggregate(transform);
      // Before scoring: whether the pair is allowed depends on the request, never on the rewards.
      checkAggregate(transform, aggregate, body.weights);
      const result = await scorer.reward({
        models: modelList(body.model),
        items: body.items.map(({ reference: _, ...item }) => item),
        references: body.items.map((item) => (item.reference ?? body.reference)?.responses),
        ...(body.reference_scope === undefined ? {} : { referenceScope: body.reference_scope }),
        options: {
          transform,
          aggregate,
          weights: body.weights,
          referenceQuantile: body.reference_quantile,
          clip: body.clip,
        },
        maxPairs: maxItems,
        truncation: body.truncation,
        ...(body.truncate === false ? { checkFit: refuseTruncated } : {}),
        ...requestClient(request, reply),
      });
      setTimingHeaders(reply, result.timing);
      return { model_versions: result.modelVersions, results: result.items.map(resultJson) };
    },
  );
};

function resultJson(item: RewardedItem): Static<typeof ScoreReply>['results'][number] {
  return {
    ...(item.reward === undefined ? {} : { reward: item.reward }),
    ...(item.probability === undefined ? {} : { probability: item.probability }),
    cached: item.cached,
    truncated: item.truncated,
    objectives: Object.fromEntries(
      Object.entries(item.objectives).map(([name, o]) => [
        name,
        {
          raw: o.raw,
          transformed: o.transformed,
          model: o.model,
          ...(o.reference === undefined ? {} : { reference: o.reference, reference_source: o.referenceSource }),
        },
      ]),
    ),
  };
}
