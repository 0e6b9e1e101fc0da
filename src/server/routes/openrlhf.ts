// POST /get_reward — OpenRLHF's remote reward model protocol. `query` holds full formatted texts
// (prompt + response, chat template already applied by the trainer). The protocol has no fields
// for transforms, so they come from the URL's query string (`/get_reward?transform=lsc`) or the
// server's defaults (`rmserve serve --transform lsc`): an OpenRLHF run needs no client change.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ScoringError } from '../../scoring/errors.js';
import { DEFAULT_REWARD_DEFAULTS, defaultAggregate, type RewardDefaults, type RewardOptions, type Scorer } from '../../scoring/scorer.js';
import { checkAggregate } from '../../transforms/index.js';
import { clientAbortSignal } from '../abort.js';
import { AggregateNameSchema, ErrorSchema, ReferenceScopeSchema, TransformNameSchema } from '../schemas.js';

const GetRewardBody = Type.Object({
  query: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  // The prompt part of each query, formatted; keys the per-prompt LSC reference cache.
  prompts: Type.Optional(Type.Array(Type.String())),
  labels: Type.Optional(Type.Array(Type.Unknown())),
});
type GetRewardBody = Static<typeof GetRewardBody>;

// Query-string values are strings; numbers and lists are parsed below with their own errors.
const GetRewardQuery = Type.Object({
  transform: Type.Optional(TransformNameSchema),
  aggregate: Type.Optional(AggregateNameSchema),
  reference_quantile: Type.Optional(Type.String()),
  weights: Type.Optional(Type.String({ description: 'objective:weight pairs, comma-separated' })),
  model: Type.Optional(Type.String({ description: 'model names, comma-separated' })),
  clip: Type.Optional(Type.String({ description: 'lo,hi' })),
  reference_scope: Type.Optional(ReferenceScopeSchema),
});
type GetRewardQuery = Static<typeof GetRewardQuery>;

const GetRewardReply = Type.Object({
  rewards: Type.Array(Type.Number()),
  scores: Type.Array(Type.Number()),
  extra_logs: Type.Record(Type.String(), Type.Array(Type.Number())),
});

export interface OpenRlhfRouteOptions {
  scorer: Scorer;
  maxItems: number;
  /** Transform, aggregate and reference quantile when the query string names none. */
  defaults?: RewardDefaults;
}

export const openRlhfRoutes: FastifyPluginAsync<OpenRlhfRouteOptions> = async (app, { scorer, maxItems, defaults = DEFAULT_REWARD_DEFAULTS }) => {
  app.post<{ Body: GetRewardBody; Querystring: GetRewardQuery }>(
    '/get_reward',
    {
      schema: {
        summary: 'OpenRLHF remote reward model: one reward per formatted query',
        body: GetRewardBody,
        querystring: GetRewardQuery,
        response: { 200: GetRewardReply, '4xx': ErrorSchema },
      },
    },
    async (request, reply) => {
      const { query, prompts } = request.body;
      if (query.length > maxItems) {
        throw new ScoringError('too_many_items', 413, `at most ${maxItems} queries per request, got ${query.length}`);
      }
      if (prompts !== undefined && prompts.length !== query.length) {
        throw invalid(`prompts must have one entry per query: ${prompts.length} prompts for ${query.length} queries`);
      }
      const { options, models } = parseQuery(request.query, defaults);
      const result = await scorer.reward({
        models,
        items: query.map((text) => ({ text })),
        promptTexts: prompts,
        ...(request.query.reference_scope === undefined ? {} : { referenceScope: request.query.reference_scope }),
        options,
        signal: clientAbortSignal(request, reply),
      });

      const names = Object.keys(result.items[0]?.objectives ?? {});
      if (options.aggregate === 'none' && names.length !== 1) {
        throw invalid(`aggregate none gives no single reward for ${names.length} objectives (${names.join(', ')}); pick conjunction, sum or min`);
      }
      const rewards = result.items.map((item) => item.reward ?? (Object.values(item.objectives)[0]?.transformed as number));
      // Per-objective values go to extra_logs, which OpenRLHF averages and logs per step.
      const extraLogs: Record<string, number[]> = {};
      const log = (key: string, value: number): void => void (extraLogs[key] ??= []).push(value);
      for (const item of result.items) {
        for (const [name, o] of Object.entries(item.objectives)) {
          log(`${name}_raw`, o.raw);
          if (options.transform !== 'none') log(`${name}_transformed`, o.transformed);
          if (o.reference !== undefined) log(`${name}_reference`, o.reference);
        }
        if (item.probability !== undefined) log('probability', item.probability);
      }
      void reply.header('x-rmserve-model-versions', JSON.stringify(result.modelVersions));
      return { rewards, scores: rewards, extra_logs: extraLogs };
    },
  );
};

function invalid(message: string): ScoringError {
  return new ScoringError('invalid_request', 400, message);
}

function parseQuery(query: GetRewardQuery, defaults: RewardDefaults): { options: RewardOptions; models: string[] | undefined } {
  const transform = query.transform ?? defaults.transform;
  // A transform named in the URL brings its own default aggregate rather than the server's.
  const aggregate = query.aggregate ?? (query.transform === undefined ? defaults.aggregate : undefined) ?? defaultAggregate(transform);
  let referenceQuantile = defaults.referenceQuantile;
  if (query.reference_quantile !== undefined) {
    referenceQuantile = Number(query.reference_quantile);
    if (query.reference_quantile.trim() === '' || !(referenceQuantile >= 0 && referenceQuantile <= 1)) {
      throw invalid(`reference_quantile must be a number in [0, 1], got "${query.reference_quantile}"`);
    }
  }
  let weights: Record<string, number> | undefined;
  if (query.weights !== undefined) {
    weights = {};
    for (const pair of query.weights.split(',')) {
      const at = pair.lastIndexOf(':');
      const name = pair.slice(0, at).trim();
      const weight = Number(pair.slice(at + 1));
      if (at <= 0 || pair.slice(at + 1).trim() === '' || !Number.isFinite(weight)) {
        throw invalid(`weights must look like "harmless:1,helpful:0.5", got "${query.weights}"`);
      }
      weights[name] = weight;
    }
  }
  let clip: [number, number] | undefined;
  if (query.clip !== undefined) {
    const bounds = query.clip.split(',').map((v) => (v.trim() === '' ? NaN : Number(v)));
    if (bounds.length !== 2 || !bounds.every(Number.isFinite)) throw invalid(`clip must look like "-5,5", got "${query.clip}"`);
    clip = [bounds[0] as number, bounds[1] as number];
  }
  // Before scoring: whether the pair is allowed depends on the request, never on the rewards.
  checkAggregate(transform, aggregate, weights);
  const models = query.model?.split(',').map((s) => s.trim()).filter(Boolean);
  return {
    options: { transform, aggregate, weights, referenceQuantile, clip },
    models: models === undefined || models.length === 0 ? undefined : models,
  };
}
