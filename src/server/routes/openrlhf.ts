// POST /get_reward — OpenRLHF's remote reward model protocol (openrlhf/cli/serve_rm.py, called by
// openrlhf/utils/remote_rm_utils.py). `query` holds full formatted texts (prompt + response, chat
// template already applied by the trainer). The protocol has no fields for transforms, so they
// come from the URL's query string (`/get_reward?transform=lsc`) or the server's defaults
// (`rmserve serve --transform lsc`): an OpenRLHF run needs no client change.
//
// What the client sends: `{query}` (≤ 0.4), `{query, prompts, labels}` (0.5 on; `labels` is null
// or a list of ground truths, which serve_rm ignores and so does this route). What it reads:
// `rewards` (and `scores`, `extra_logs` since 0.6: per-sample lists it logs).
//
// A rollout batch can be large (OpenRLHF ≤ 0.9 sends all of a step's queries at once, 1,024 and
// more): the only size limit here is the body limit. The queries are scored in chunks of at most
// --max-items, one after the other, so one request never holds more of the scoring queue than a
// /v1/score request may and admission stays all-or-nothing per chunk; a chunk refused (429) fails
// the request, and the client's retry finds the chunks before it in the reward cache.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ScoringError } from '../../scoring/errors.js';
import {
  DEFAULT_REWARD_DEFAULTS,
  defaultAggregate,
  type RewardDefaults,
  type RewardOptions,
  type RewardRequest,
  type RewardResult,
  type Scorer,
} from '../../scoring/scorer.js';
import { checkAggregate } from '../../transforms/index.js';
import { requestClient } from '../client.js';
import { setTimingHeaders } from '../timing.js';
import { AggregateNameSchema, ErrorSchema, ReferenceScopeSchema, TransformNameSchema } from '../schemas.js';
import { Nullable, registryNames } from './peer-common.js';

const GetRewardBody = Type.Object({
  query: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  // The prompt part of each query, formatted; keys the per-prompt LSC reference cache.
  prompts: Type.Optional(Nullable(Type.Array(Type.String()))),
  // Ground truths for rule-based rewards: serve_rm does not read them, nor does a reward model.
  labels: Type.Optional(Nullable(Type.Array(Type.Unknown()))),
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
  /** Queries per chunk (--max-items): a request may be larger, it is scored chunk by chunk. */
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
      const { query } = request.body;
      const prompts = request.body.prompts ?? undefined;
      if (prompts !== undefined && prompts.length !== query.length) {
        throw invalid(`prompts must have one entry per query: ${prompts.length} prompts for ${query.length} queries`);
      }
      const { options, models } = parseQuery(request.query, defaults);
      const result = await rewardInChunks(
        scorer,
        {
          models: registryNames(scorer, models),
          items: query.map((text) => ({ text })),
          promptTexts: prompts,
          ...(request.query.reference_scope === undefined ? {} : { referenceScope: request.query.reference_scope }),
          options,
          ...requestClient(request, reply),
        },
        Math.max(1, maxItems),
      );

      const names = Object.keys(result.items[0]?.objectives ?? {});
      if (options.aggregate === 'none' && names.length !== 1) {
        throw invalid(`aggregate none gives no single reward for ${names.length} objectives (${names.join(', ')}); pick conjunction, sum or min`);
      }
      const rewards = result.items.map((item) => item.reward ?? (Object.values(item.objectives)[0]?.transformed as number));
      void reply.header('x-rmserve-model-versions', JSON.stringify(result.modelVersions));
      setTimingHeaders(reply, result.timing);
      return { rewards, scores: rewards, extra_logs: extraLogs(result, options.transform !== 'none') };
    },
  );
};

/**
 * Per-objective values for `extra_logs`, which OpenRLHF splits per sample (one entry per query)
 * and averages per step: only keys every query has go in, so no list is shorter than `rewards`.
 */
function extraLogs(result: RewardResult, transformed: boolean): Record<string, number[]> {
  const logs: Record<string, number[]> = {};
  const log = (key: string, value: number): void => void (logs[key] ??= []).push(value);
  for (const item of result.items) {
    for (const [name, o] of Object.entries(item.objectives)) {
      log(`${name}_raw`, o.raw);
      if (transformed) log(`${name}_transformed`, o.transformed);
      if (o.reference !== undefined) log(`${name}_reference`, o.reference);
    }
    if (item.probability !== undefined) log('probability', item.probability);
  }
  return Object.fromEntries(Object.entries(logs).filter(([, values]) => values.length === result.items.length));
}

/**
 * Scores a request chunk after chunk (see the top of the file). A chunk the scoring queue could
 * never hold (--max-queue below --max-items) is halved until it fits, instead of the 413 the
 * batcher gives a request larger than its queue: OpenRLHF cannot split its batch. Every chunk pins
 * the versions serving when it starts; if a hot swap lands between two chunks the rewards would
 * mix two versions, so the whole request is scored once more (on the new version; the cache
 * answers what it already holds), and a second swap during that is a retryable 503.
 */
async function rewardInChunks(scorer: Scorer, request: RewardRequest, chunk: number): Promise<RewardResult> {
  const n = request.items.length;
  let size = Math.min(chunk, n);
  for (let attempt = 0; attempt < 2; attempt++) {
    const parts: RewardResult[] = [];
    for (let start = 0; start < n; ) {
      const end = Math.min(n, start + size);
      try {
        parts.push(
          await scorer.reward({
            ...request,
            items: request.items.slice(start, end),
            ...(request.promptTexts === undefined ? {} : { promptTexts: request.promptTexts.slice(start, end) }),
          }),
        );
      } catch (err) {
        if (size > 1 && err instanceof ScoringError && err.code === 'too_many_items') {
          size = Math.ceil(size / 2);
          continue;
        }
        throw err;
      }
      start = end;
    }
    if (parts.length === 1) return parts[0] as RewardResult;
    const versions = JSON.stringify((parts[0] as RewardResult).modelVersions);
    if (parts.every((part) => JSON.stringify(part.modelVersions) === versions)) {
      const timing = { tokenizationSeconds: 0, queueSeconds: 0, inferenceSeconds: 0 };
      for (const part of parts) for (const key of Object.keys(timing) as (keyof typeof timing)[]) timing[key] += part.timing[key];
      return { modelVersions: (parts[0] as RewardResult).modelVersions, items: parts.flatMap((part) => part.items), timing };
    }
  }
  throw new ScoringError('unavailable', 503, 'the model version changed twice while this request was scored; retry', 1);
}

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
