// Drop-in shapes of other servers, so clients written for them work unchanged:
// - POST /predict  — Hugging Face text-embeddings-inference (sequence classification).
//   `inputs` is a text, a [text, text_pair] pair, or a list of those; a pair is read as
//   (prompt, response) and formatted with the model's chat template like /v1/score.
// - POST /classify — vLLM's classification API (`input`: a text or a list of texts).
// Raw scores are TEI's `raw_scores: true`; otherwise TEI/vLLM squash them: sigmoid for one label,
// softmax across several. rmserve's own /v1/score keeps raw scores as the default.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ScoringError } from '../../scoring/errors.js';
import type { ScoreItem } from '../../model/format.js';
import type { ScoredItem, Scorer } from '../../scoring/scorer.js';
import { clientAbortSignal } from '../abort.js';
import { ErrorSchema } from '../schemas.js';

const Text = Type.String({ minLength: 1 });
const Sequence = Type.Union([Text, Type.Tuple([Type.String(), Type.String()])]);
const PredictBody = Type.Object({
  inputs: Type.Union([Sequence, Type.Array(Sequence, { minItems: 1 })]),
  raw_scores: Type.Optional(Type.Boolean()),
  truncate: Type.Optional(Type.Boolean()),
  truncation_direction: Type.Optional(Type.Union([Type.Literal('Left'), Type.Literal('Right')])),
});
type PredictBody = Static<typeof PredictBody>;
const Prediction = Type.Array(Type.Object({ score: Type.Number(), label: Type.String() }));

const ClassifyBody = Type.Object({
  model: Type.Optional(Type.String({ minLength: 1 })),
  input: Type.Union([Text, Type.Array(Text, { minItems: 1 })]),
});
type ClassifyBody = Static<typeof ClassifyBody>;
const ClassifyReply = Type.Object({
  id: Type.String(),
  object: Type.Literal('list'),
  created: Type.Integer(),
  model: Type.String(),
  data: Type.Array(Type.Object({ index: Type.Integer(), label: Type.String(), probs: Type.Array(Type.Number()), num_classes: Type.Integer() })),
});

type Sequence = Static<typeof Sequence>;

/** TEI's untagged enum: a 2-string array is one pair, not a batch of two. */
function teiInputs(inputs: PredictBody['inputs']): { items: ScoreItem[]; single: boolean } {
  const isSequence = (x: unknown): x is Sequence => typeof x === 'string' || (Array.isArray(x) && x.length === 2 && x.every((s) => typeof s === 'string'));
  const single = isSequence(inputs) && !(Array.isArray(inputs) && Array.isArray(inputs[0]));
  const list = (single ? [inputs] : inputs) as Sequence[];
  return { single, items: list.map((s) => (typeof s === 'string' ? { text: s } : { prompt: s[0], response: s[1] })) };
}

function squash(values: number[]): number[] {
  if (values.length === 1) return values.map((v) => 1 / (1 + Math.exp(-v)));
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

const rawOf = (item: ScoredItem): { labels: string[]; values: number[] } => ({
  labels: Object.keys(item.objectives),
  values: Object.values(item.objectives).map((o) => o.raw),
});

export const compatRoutes: FastifyPluginAsync<{ scorer: Scorer; maxItems: number }> = async (app, { scorer, maxItems }) => {
  const checkSize = (n: number): void => {
    if (n > maxItems) throw new ScoringError('too_many_items', 413, `at most ${maxItems} inputs per request, got ${n}`);
  };

  app.post<{ Body: PredictBody }>(
    '/predict',
    {
      schema: {
        summary: 'text-embeddings-inference compatible sequence classification',
        body: PredictBody,
        response: { 200: Type.Union([Prediction, Type.Array(Prediction)]), '4xx': ErrorSchema },
      },
    },
    async (request, reply) => {
      const { items, single } = teiInputs(request.body.inputs);
      checkSize(items.length);
      const direction = request.body.truncation_direction;
      const result = await scorer.score({
        items,
        ...(direction ? { truncation: direction === 'Left' ? 'left' : 'right' } : {}),
        signal: clientAbortSignal(request, reply),
      });
      const predictions = result.items.map((item) => {
        const { labels, values } = rawOf(item);
        const scores = request.body.raw_scores ? values : squash(values);
        return labels.map((label, k) => ({ label, score: scores[k] as number })).sort((a, b) => b.score - a.score);
      });
      void reply.header('x-rmserve-model-versions', JSON.stringify(result.modelVersions));
      return single ? predictions[0] : predictions;
    },
  );

  app.post<{ Body: ClassifyBody }>(
    '/classify',
    { schema: { summary: 'vLLM compatible classification', body: ClassifyBody, response: { 200: ClassifyReply, '4xx': ErrorSchema } } },
    async (request, reply) => {
      const texts = typeof request.body.input === 'string' ? [request.body.input] : request.body.input;
      checkSize(texts.length);
      const result = await scorer.score({
        ...(request.body.model ? { models: [request.body.model] } : {}),
        items: texts.map((text) => ({ text })),
        signal: clientAbortSignal(request, reply),
      });
      return {
        id: `classify-${request.id}`,
        object: 'list' as const,
        created: Math.floor(Date.now() / 1000),
        model: Object.entries(result.modelVersions).map(([name, version]) => `${name}@${version}`).join(','),
        data: result.items.map((item, index) => {
          const { labels, values } = rawOf(item);
          const probs = squash(values);
          const best = probs.indexOf(Math.max(...probs));
          return { index, label: labels[best] as string, probs, num_classes: labels.length };
        }),
      };
    },
  );
};
