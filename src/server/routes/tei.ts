// Hugging Face text-embeddings-inference (TEI), router/src/http: POST /predict (sequence
// classification) and the TEI form of POST /rerank (`{query, texts}`; compat.ts sends the vLLM
// form, `{query, documents}`, to vllm.ts), with TEI's input forms, single-input replies and its
// error schema `{error, error_type}` with TEI's statuses.
//
// `inputs` (TEI's PredictInput deserializer): a string, or a flat array of one or two strings,
// is ONE input (a text, or a pair); a batch is an array of such arrays: `[["a"], ["b", "c"]]`.
// A pair is read as (prompt, response) and formatted with the model's chat template, as
// /v1/score formats its pairs. A single input gets a single list of predictions back, a batch a
// list of lists.
//
// `truncate` absent is TEI's `--auto-truncate` (rmserve cuts over-long inputs, as its own routes
// do); `false` refuses them with TEI's 413 Validation error. `truncation_direction` defaults to
// TEI's `Right` (the end is cut); `Left` keeps the end, which for a pair is the response.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ScoreItem } from '../../model/format.js';
import { ScoringError } from '../../scoring/errors.js';
import type { ItemFit, Scorer } from '../../scoring/scorer.js';
import type { ModelVersion } from '../../scoring/model-version.js';
import { requestClient } from '../client.js';
import { setTimingHeaders } from '../timing.js';
import { activate, checkFields, defaultActivation, labelsOf, oneModel, rawValues, type FieldRule } from './peer-common.js';

// ---------------------------------------------------------------------------------------------
// Errors

const TEI_ERROR_TYPES = ['Unhealthy', 'Backend', 'Overloaded', 'Validation', 'Tokenizer', 'Empty'] as const;
type TeiErrorType = (typeof TEI_ERROR_TYPES)[number];

export const TeiErrorSchema = Type.Object(
  {
    error: Type.String(),
    error_type: Type.Union(TEI_ERROR_TYPES.map((t) => Type.Literal(t))),
  },
  { description: "TEI's error body (its ErrorResponse): the message and TEI's error type" },
);

/**
 * TEI's status and error type for one of rmserve's errors. TEI answers 413 Validation for
 * limits (batch size, input length), 422 for a body it cannot deserialize (axum's JSON data
 * error) and for tokenizer failures, 424 Backend for a model failure, 429 Overloaded, 503
 * Unhealthy and 400 Empty for an empty input. Other statuses (401, 404, 415) keep theirs.
 */
export function teiError(status: number, code: string): { status: number; type: TeiErrorType } {
  if (code === 'empty_input') return { status: 400, type: 'Empty' };
  if (code === 'invalid_json') return { status: 400, type: 'Validation' };
  if (code === 'invalid_item') return { status: 422, type: 'Tokenizer' };
  if (status === 400) return { status: 422, type: 'Validation' };
  if (status === 413) return { status: 413, type: 'Validation' };
  if (status === 429) return { status: 429, type: 'Overloaded' };
  if (status === 503) return { status: 503, type: 'Unhealthy' };
  if (status === 424 || status === 500) return { status: 424, type: 'Backend' };
  if (status > 500) return { status, type: 'Backend' };
  return { status, type: 'Validation' };
}

/**
 * An onSend hook for the TEI routes: rmserve's error body `{error: {code, message}}`, from the
 * app's error handler or its hooks (401, 503 while draining), becomes TEI's. It runs after the
 * root onSend hook, which has already read rmserve's code for the failure metrics.
 */
export function teiErrorBody(isTei: (request: FastifyRequest) => boolean) {
  return async (request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> => {
    if (reply.statusCode < 400 || typeof payload !== 'string' || !isTei(request)) return payload;
    let body: unknown;
    try {
      body = JSON.parse(payload);
    } catch {
      return payload;
    }
    const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (typeof error !== 'object' || error === null || typeof error.code !== 'string' || typeof error.message !== 'string') return payload;
    const tei = teiError(reply.statusCode, error.code);
    void reply.code(tei.status);
    return JSON.stringify({ error: error.message, error_type: tei.type });
  };
}

// ---------------------------------------------------------------------------------------------
// Inputs

const Sequence = Type.Array(Type.String(), { minItems: 1, maxItems: 2, description: 'A text, or a (prompt, response) pair' });
const Direction = Type.Union(['Left', 'left', 'Right', 'right'].map((d) => Type.Literal(d)), {
  description: "TEI's truncation_direction (either case); default Right",
});
const ModelExtension = Type.String({
  minLength: 1,
  description: 'rmserve extension (TEI serves one model): which model answers, by name or alias; default the single served model',
});

export const PredictBody = Type.Object({
  inputs: Type.Union([Type.String(), Sequence, Type.Array(Sequence, { minItems: 1 })], {
    description: 'A string, a pair [string, string] (or [string]), or a batch of them: [[string], [string, string], …]',
  }),
  truncate: Type.Optional(Type.Boolean({ nullable: true, description: 'false: an input over the max length is a 413 (absent: truncated, as with --auto-truncate)' })),
  truncation_direction: Type.Optional(Direction),
  raw_scores: Type.Optional(Type.Boolean({ description: 'true: the raw rewards; false (default): sigmoid for one label, softmax across several' })),
  model: Type.Optional(ModelExtension),
});
type PredictBody = Static<typeof PredictBody>;

const Prediction = Type.Object({ score: Type.Number(), label: Type.String() });
export const PredictReply = Type.Union([Type.Array(Prediction), Type.Array(Type.Array(Prediction))], {
  description: 'One input: its predictions, best first. A batch: one such list per input',
});

export const TeiRerankBody = Type.Object({
  query: Type.String(),
  texts: Type.Array(Type.String()),
  truncate: Type.Optional(Type.Boolean({ nullable: true })),
  truncation_direction: Type.Optional(Direction),
  raw_scores: Type.Optional(Type.Boolean()),
  return_text: Type.Optional(Type.Boolean()),
  model: Type.Optional(ModelExtension),
});
type TeiRerankBody = Static<typeof TeiRerankBody>;

export const TeiRerankReply = Type.Array(Type.Object({ index: Type.Integer(), text: Type.Optional(Type.String()), score: Type.Number() }), {
  description: "TEI's ranks: one per text, best first",
});

const PREDICT_RULES: Record<string, FieldRule> = { inputs: true, truncate: true, truncation_direction: true, raw_scores: true, model: true };
const RERANK_RULES: Record<string, FieldRule> = {
  query: true, texts: true, truncate: true, truncation_direction: true, raw_scores: true, return_text: true, model: true,
};

/** TEI's reading of `inputs`: one sequence (a string or a flat array), or a batch of arrays. */
export function teiSequences(inputs: PredictBody['inputs']): { sequences: string[][]; single: boolean } {
  if (typeof inputs === 'string') return { sequences: [[inputs]], single: true };
  if (typeof inputs[0] === 'string') return { sequences: [inputs as string[]], single: true };
  return { sequences: inputs as string[][], single: false };
}

const toItem = (sequence: readonly string[]): ScoreItem =>
  sequence.length === 1 ? { text: sequence[0] as string } : { prompt: sequence[0] as string, response: sequence[1] as string };

function truncationOf(body: { truncation_direction?: string }): 'left' | 'right' {
  return body.truncation_direction?.toLowerCase() === 'left' ? 'left' : 'right';
}

/** TEI's max_client_batch_size check, with its message; rmserve's limit is --max-items. */
function checkBatchSize(n: number, maxItems: number): void {
  if (n > maxItems) throw new ScoringError('too_many_items', 413, `batch size ${n} > maximum allowed batch size ${maxItems}`);
}

/** `truncate: false`: TEI's 413 for an input over the max length, before anything is run. */
function refuseTruncated(fits: readonly ItemFit[], model: ModelVersion): void {
  const maxLength = model.spec.maxLength;
  const i = fits.findIndex((fit) => fit.truncated);
  if (i >= 0) {
    throw new ScoringError('input_too_long', 413, `Input validation error: \`inputs\` ${i} must have less than ${maxLength} tokens (truncate is false)`);
  }
}

function setTeiHeaders(reply: FastifyReply, versions: Record<string, string>, tokens: number, characters: number): void {
  void reply.headers({
    'x-rmserve-model-versions': JSON.stringify(versions),
    'x-compute-tokens': String(tokens),
    'x-compute-characters': String(characters),
  });
}

// ---------------------------------------------------------------------------------------------
// Handlers

export async function teiPredict(scorer: Scorer, maxItems: number, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const body = request.body as PredictBody;
  checkFields(body, "TEI's /predict", PREDICT_RULES);
  const { sequences, single } = teiSequences(body.inputs);
  if (!single) checkBatchSize(sequences.length, maxItems);
  // TEI's tokenizer refuses an empty input (a pair is empty when both texts are).
  if (sequences.some((s) => s.every((text) => text === ''))) throw new ScoringError('empty_input', 400, '`inputs` cannot be empty');
  const { model } = oneModel(scorer, body.model);
  const result = await scorer.score({
    models: [model.name],
    items: sequences.map(toItem),
    truncation: truncationOf(body),
    ...(body.truncate === false ? { checkFit: refuseTruncated } : {}),
    ...requestClient(request, reply),
  });
  const labels = labelsOf(model);
  const predictions = result.items.map((item) => {
    const values = rawValues(item);
    const scores = body.raw_scores === true ? values : activate(values, defaultActivation(values.length));
    return labels.map((label, k) => ({ score: scores[k] as number, label })).sort((a, b) => b.score - a.score);
  });
  setTimingHeaders(reply, result.timing);
  setTeiHeaders(reply, result.modelVersions, result.items.reduce((n, item) => n + item.tokens, 0), sequences.flat().join('').length);
  return single ? predictions[0] : predictions;
}

export async function teiRerank(scorer: Scorer, maxItems: number, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const body = request.body as TeiRerankBody;
  checkFields(body, "TEI's /rerank", RERANK_RULES);
  if (body.texts.length === 0) throw new ScoringError('empty_texts', 413, '`texts` cannot be empty');
  checkBatchSize(body.texts.length, maxItems);
  if (body.query === '' && body.texts.some((text) => text === '')) throw new ScoringError('empty_input', 400, '`inputs` cannot be empty');
  const { model } = oneModel(scorer, body.model);
  // TEI ranks with a single-label classifier (a re-ranker); a multi-head reward model has no one score.
  if (model.objectives.length !== 1) {
    throw new ScoringError('not_a_reranker', 424, `model is not a re-ranker model: ${model.name} has ${model.objectives.length} objectives (${model.objectives.join(', ')})`);
  }
  const result = await scorer.score({
    models: [model.name],
    items: body.texts.map((text) => ({ prompt: body.query, response: text })),
    truncation: truncationOf(body),
    ...(body.truncate === false ? { checkFit: refuseTruncated } : {}),
    ...requestClient(request, reply),
  });
  const ranks = result.items.map((item, index) => {
    const raw = rawValues(item)[0] as number;
    const score = body.raw_scores === true ? raw : (activate([raw], 'sigmoid')[0] as number);
    return { index, ...(body.return_text === true ? { text: body.texts[index] as string } : {}), score };
  });
  ranks.sort((a, b) => b.score - a.score);
  setTimingHeaders(reply, result.timing);
  setTeiHeaders(reply, result.modelVersions, result.items.reduce((n, item) => n + item.tokens, 0), body.query.length * body.texts.length + body.texts.join('').length);
  return ranks;
}
