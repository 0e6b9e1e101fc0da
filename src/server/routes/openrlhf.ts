// POST /get_reward — OpenRLHF's remote reward model protocol. `query` holds full formatted texts
// (prompt + response, chat template already applied by the trainer).
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ScoringError } from '../../scoring/errors.js';
import type { Scorer } from '../../scoring/scorer.js';
import { clientAbortSignal } from '../abort.js';
import { ErrorSchema } from '../schemas.js';

const GetRewardBody = Type.Object({
  query: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  prompts: Type.Optional(Type.Array(Type.String())),
  labels: Type.Optional(Type.Array(Type.Unknown())),
});
type GetRewardBody = Static<typeof GetRewardBody>;

const GetRewardReply = Type.Object({
  rewards: Type.Array(Type.Number()),
  scores: Type.Array(Type.Number()),
  extra_logs: Type.Record(Type.String(), Type.Array(Type.Number())),
});

export interface OpenRlhfRouteOptions {
  scorer: Scorer;
  maxItems: number;
}

export const openRlhfRoutes: FastifyPluginAsync<OpenRlhfRouteOptions> = async (app, { scorer, maxItems }) => {
  app.post<{ Body: GetRewardBody }>(
    '/get_reward',
    {
      schema: {
        summary: 'OpenRLHF remote reward model: one reward per formatted query',
        body: GetRewardBody,
        response: { 200: GetRewardReply, '4xx': ErrorSchema },
      },
    },
    async (request, reply) => {
      const { query } = request.body;
      if (query.length > maxItems) {
        throw new ScoringError('too_many_items', 413, `at most ${maxItems} queries per request, got ${query.length}`);
      }
      const result = await scorer.score({
        items: query.map((text) => ({ text })),
        signal: clientAbortSignal(request, reply),
      });
      // With several objectives the reward is their sum; per-objective values go to extra_logs.
      const rewards = result.items.map((item) => Object.values(item.objectives).reduce((sum, o) => sum + o.raw, 0));
      const extraLogs: Record<string, number[]> = {};
      for (const item of result.items) {
        for (const [name, o] of Object.entries(item.objectives)) (extraLogs[`${name}_raw`] ??= []).push(o.raw);
      }
      void reply.header('x-rmserve-model-versions', JSON.stringify(result.modelVersions));
      return { rewards, scores: rewards, extra_logs: extraLogs };
    },
  );
};
