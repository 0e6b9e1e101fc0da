// vLLM's pooling API (vllm/entrypoints/pooling: /classify, /pooling, /score, /rerank) and
// SGLang's reward-model APIs (native /classify {text}, OpenAI /v1/embeddings), for a reward
// model served by rmserve. Every field the peer defines is honoured or refused with a 400 that
// names it (peer-common.ts checkFields); replies carry vLLM's `usage`, counted from the tokens
// the model read.
//
// Meanings kept from the peers:
// - `use_activation` (and its older names `activation`, `softmax`) defaults to true on
//   /classify, /score and /rerank: sigmoid for one label, softmax across several, as vLLM's
//   classifier pooler. `false` gives the raw rewards (what verl's reward loop asks for).
//   /pooling (task reward/encode), /v1/embeddings and SGLang's /classify return raw rewards.
// - An input longer than the model's context is a 400, as in vLLM and SGLang, unless
//   `truncate_prompt_tokens: -1` allows truncating it.
// - `input` texts are scored as sent (pre-formatted: a chat template already applied, like
//   /get_reward's queries); `messages` are formatted with the model's chat template.
// - /score and /rerank pair (text_1, text_2) / (query, document) as (prompt, response).
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChatMessage, ScoreItem } from '../../model/format.js';
import type { TruncationSide } from '../../model/tokenize.js';
import type { ModelVersion } from '../../scoring/model-version.js';
import type { ScoredItem, ScoreResult, Scorer } from '../../scoring/scorer.js';
import { requestClient } from '../client.js';
import { ChatMessageSchema } from '../schemas.js';
import { setTimingHeaders } from '../timing.js';
import {
  activate,
  checkFields,
  checkItemCount,
  checkSpecialTokens,
  defaultActivation,
  emptyOnly,
  invalid,
  labelsOf,
  Nullable,
  oneModel,
  only,
  PRIORITY_RULE,
  rawValues,
  refused,
  refuseTooLong,
  renderedText,
  requestId,
  unixSeconds,
  usage,
  UsageSchema,
  useActivation,
  vllmTruncation,
  type Activation,
  type FieldRule,
  type TruncationChoice,
} from './peer-common.js';

export interface PeerContext {
  scorer: Scorer;
  maxItems: number;
}

// ---------------------------------------------------------------------------------------------
// Request schemas. Fields are typed as the peers type them; which values rmserve takes is the
// rules' business, so a refusal names the field and says why.

const NullableBool = Nullable(Type.Boolean());
const NullableString = Nullable(Type.String());
const NullableObject = Nullable(Type.Record(Type.String(), Type.Unknown()));

/** vLLM's `input`: a text, texts, or token ids (which rmserve refuses: it tokenizes itself). */
const VllmInput = Type.Union([
  Type.String(),
  Type.Array(Type.String(), { minItems: 1 }),
  Type.Array(Type.Integer()),
  Type.Array(Type.Array(Type.Integer())),
]);

/** PoolingBasicRequestMixin: every vLLM pooling request has these. */
const basicFields = {
  model: Type.Optional(NullableString),
  user: Type.Optional(NullableString),
  truncate_prompt_tokens: Type.Optional(Nullable(Type.Integer({ minimum: -1 }))),
  truncation_side: Type.Optional(Nullable(Type.Union([Type.Literal('left'), Type.Literal('right')]))),
  padding: Type.Optional(Nullable(Type.Union([Type.Literal('max_length'), Type.Literal('do_not_pad')]))),
  request_id: Type.Optional(NullableString),
  priority: Type.Optional(Nullable(Type.Integer())),
  mm_processor_kwargs: Type.Optional(NullableObject),
  cache_salt: Type.Optional(NullableString),
};

/** CompletionRequestMixin and ChatRequestMixin: `input` or `messages`. */
const inputFields = {
  input: Type.Optional(VllmInput),
  messages: Type.Optional(Type.Array(ChatMessageSchema, { minItems: 1 })),
  add_special_tokens: Type.Optional(NullableBool),
  add_generation_prompt: Type.Optional(NullableBool),
  continue_final_message: Type.Optional(NullableBool),
  chat_template: Type.Optional(NullableString),
  chat_template_kwargs: Type.Optional(NullableObject),
  media_io_kwargs: Type.Optional(NullableObject),
};

const activationFields = {
  use_activation: Type.Optional(NullableBool),
  activation: Type.Optional(Nullable(Type.Boolean({ description: 'deprecated name of use_activation' }))),
  softmax: Type.Optional(Nullable(Type.Boolean({ description: 'deprecated name of use_activation' }))),
};

const encodingFields = {
  encoding_format: Type.Optional(Nullable(Type.String({ description: 'float, or base64 (little-endian float32 by default)' }))),
  embed_dtype: Type.Optional(NullableString),
  endianness: Type.Optional(NullableString),
  dimensions: Type.Optional(Nullable(Type.Integer())),
  normalize: Type.Optional(NullableBool),
};

export const VllmClassifyBody = Type.Object({
  ...basicFields,
  ...inputFields,
  ...activationFields,
  classification_type: Type.Optional(Nullable(Type.Union([Type.Literal('multiclass'), Type.Literal('multilabel')]))),
  encoding_format: Type.Optional(NullableString),
  dimensions: Type.Optional(Nullable(Type.Integer())),
  additional_data: Type.Optional(Type.Unknown()),
});
type VllmClassifyBody = Static<typeof VllmClassifyBody>;

/** SGLang's EmbeddingReqInput, as its native /classify (a reward model's route) takes it. */
export const SglangClassifyBody = Type.Object({
  text: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 }), Type.Array(Type.Array(Type.String()))]),
  model: Type.Optional(NullableString),
  rid: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String())]))),
  priority: Type.Optional(Nullable(Type.Integer())),
  dimensions: Type.Optional(Nullable(Type.Integer())),
  input_ids: Type.Optional(Type.Unknown()),
  input_embeds: Type.Optional(Type.Unknown()),
  image_data: Type.Optional(Type.Unknown()),
  video_data: Type.Optional(Type.Unknown()),
  audio_data: Type.Optional(Type.Unknown()),
  lora_path: Type.Optional(Type.Unknown()),
  is_cross_encoder_request: Type.Optional(NullableBool),
});
type SglangClassifyBody = Static<typeof SglangClassifyBody>;

/** /classify takes both: SGLang's native body has `text`, vLLM's `input` or `messages`. */
export const ClassifyBody = Type.Object(
  { ...VllmClassifyBody.properties, ...SglangClassifyBody.properties, text: Type.Optional(SglangClassifyBody.properties.text) },
  { description: "vLLM's ClassificationRequest ({input} or {messages}), or SGLang's native reward request ({text}): `text` decides" },
);

export const PoolingBody = Type.Object({
  ...basicFields,
  ...inputFields,
  ...activationFields,
  ...encodingFields,
  task: Type.Optional(NullableString),
});
type PoolingBody = Static<typeof PoolingBody>;

export const EmbeddingsBody = Type.Object({
  ...basicFields,
  ...inputFields,
  ...activationFields,
  ...encodingFields,
  rid: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String())]))),
});
type EmbeddingsBody = Static<typeof EmbeddingsBody>;

const TextOrTexts = Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })]);

export const ScoreBody = Type.Object({
  ...basicFields,
  ...activationFields,
  text_1: TextOrTexts,
  text_2: TextOrTexts,
});
type ScoreBody = Static<typeof ScoreBody>;

export const VllmRerankBody = Type.Object({
  ...basicFields,
  ...activationFields,
  query: Type.String(),
  documents: Type.Array(Type.String(), { minItems: 1 }),
  top_n: Type.Optional(Nullable(Type.Integer({ minimum: 0 }))),
});
type VllmRerankBody = Static<typeof VllmRerankBody>;

// ---------------------------------------------------------------------------------------------
// Reply schemas (vLLM's protocol classes)

const replyHead = {
  id: Type.String(),
  object: Type.Literal('list'),
  created: Type.Integer(),
  model: Type.String(),
};

export const ClassifyReply = Type.Object({
  ...replyHead,
  data: Type.Array(Type.Object({ index: Type.Integer(), label: Type.String(), probs: Type.Array(Type.Number()), num_classes: Type.Integer() })),
  usage: UsageSchema,
});

const SglangEmbeddingOut = Type.Object({
  embedding: Type.Array(Type.Number(), { description: 'The raw reward of each head' }),
  meta_info: Type.Object({ id: Type.String(), prompt_tokens: Type.Integer() }),
});
export const SglangClassifyReply = Type.Union([SglangEmbeddingOut, Type.Array(SglangEmbeddingOut)], {
  description: 'One text: one result; a list of texts: a list',
});

const Vector = Type.Union([Type.Array(Type.Number()), Type.String({ description: 'base64 of the float32 values' })]);

export const PoolingReply = Type.Object({
  ...replyHead,
  data: Type.Array(Type.Object({ index: Type.Integer(), object: Type.Literal('pooling'), data: Vector })),
  usage: UsageSchema,
});

export const EmbeddingsReply = Type.Object({
  ...replyHead,
  data: Type.Array(Type.Object({ index: Type.Integer(), object: Type.Literal('embedding'), embedding: Vector })),
  usage: UsageSchema,
});

export const ScoreReply = Type.Object({
  ...replyHead,
  data: Type.Array(Type.Object({ index: Type.Integer(), object: Type.Literal('score'), score: Type.Number() })),
  usage: UsageSchema,
});

export const VllmRerankReply = Type.Object({
  id: Type.String(),
  model: Type.String(),
  usage: Type.Object({ prompt_tokens: Type.Integer(), total_tokens: Type.Integer() }),
  results: Type.Array(Type.Object({ index: Type.Integer(), document: Type.Object({ text: Type.String() }), relevance_score: Type.Number() })),
});

// ---------------------------------------------------------------------------------------------
// Field rules

const BASIC_RULES: Record<string, FieldRule> = {
  model: true,
  // An end-user identifier (OpenAI's): it does not change a score.
  user: true,
  truncate_prompt_tokens: true,
  truncation_side: true,
  // Padding cannot change a reward: every version passed the padding self-check at load.
  padding: true,
  request_id: true,
  priority: PRIORITY_RULE,
  mm_processor_kwargs: emptyOnly('rmserve serves text-only models'),
  // vLLM salts its prefix cache with it against timing attacks between tenants; rmserve's reward
  // cache is shared, so a salted request cannot be given what it asks for.
  cache_salt: refused("rmserve's reward cache is shared by every client; it has no per-tenant salt"),
};

const INPUT_RULES: Record<string, FieldRule> = {
  input: true,
  messages: true,
  add_special_tokens: true,
  add_generation_prompt: only(false, 'a reward model scores a finished conversation'),
  continue_final_message: only(false, 'a reward model scores a finished conversation'),
  chat_template: refused("rmserve formats with the model's own chat template; templates from requests are not run"),
  chat_template_kwargs: emptyOnly("rmserve renders the model's chat template with its own arguments"),
  media_io_kwargs: emptyOnly('rmserve serves text-only models'),
};

const ACTIVATION_RULES: Record<string, FieldRule> = { use_activation: true, activation: true, softmax: true };

const NO_DIMENSIONS = refused('a reward vector has one value per head; it cannot be shortened (vLLM refuses it for models without Matryoshka embeddings)');

const ENCODING_RULES: Record<string, FieldRule> = {
  encoding_format: (v) => (v === 'float' || v === 'base64' ? undefined : `${JSON.stringify(v)}: float and base64 are supported`),
  embed_dtype: only('float32', 'rewards are float32'),
  endianness: (v) => (v === 'native' || v === 'little' || v === 'big' ? undefined : `${JSON.stringify(v)}: native, little or big`),
  dimensions: NO_DIMENSIONS,
  // vLLM's `normalize` L2-normalises an embedding; a reward vector normalised loses its scale.
  normalize: only(false, 'rmserve returns the raw rewards'),
};

const CLASSIFY_RULES: Record<string, FieldRule> = {
  ...BASIC_RULES,
  ...INPUT_RULES,
  ...ACTIVATION_RULES,
  classification_type: true,
  encoding_format: only('float', 'probabilities are sent as numbers'),
  dimensions: NO_DIMENSIONS,
  additional_data: refused('it feeds vLLM pooling plugins, which rmserve does not have'),
};

const POOLING_RULES: Record<string, FieldRule> = {
  ...BASIC_RULES,
  ...INPUT_RULES,
  ...ACTIVATION_RULES,
  ...ENCODING_RULES,
  task: (v) =>
    v === 'reward' || v === 'encode' || v === 'classify'
      ? undefined
      : `${JSON.stringify(v)}: a reward model's /pooling serves reward (the default, raw rewards), encode (the same) or classify (with the classifier's activation)`,
};

const EMBEDDINGS_RULES: Record<string, FieldRule> = {
  ...BASIC_RULES,
  ...INPUT_RULES,
  ...ENCODING_RULES,
  // For embeddings vLLM's activation is the L2 normalisation: see `normalize`.
  use_activation: only(false, 'rmserve returns the raw rewards'),
  activation: only(false, 'rmserve returns the raw rewards'),
  softmax: only(false, 'rmserve returns the raw rewards'),
  rid: true,
};

const SCORE_RULES: Record<string, FieldRule> = { ...BASIC_RULES, ...ACTIVATION_RULES, text_1: true, text_2: true };
const RERANK_RULES: Record<string, FieldRule> = { ...BASIC_RULES, ...ACTIVATION_RULES, query: true, documents: true, top_n: true };

const SGLANG_CLASSIFY_RULES: Record<string, FieldRule> = {
  text: (v) => (Array.isArray(v) && v.some(Array.isArray) ? 'nested lists are cross-encoder pairs, which a reward model does not take' : undefined),
  // SGLang's EmbeddingReqInput has no `model` (its docs send one anyway); rmserve uses it to pick the model.
  model: true,
  rid: true,
  priority: PRIORITY_RULE,
  dimensions: NO_DIMENSIONS,
  input_ids: refused('rmserve tokenizes the text itself; send `text`'),
  input_embeds: refused('rmserve tokenizes the text itself; send `text`'),
  image_data: refused('rmserve serves text-only models'),
  video_data: refused('rmserve serves text-only models'),
  audio_data: refused('rmserve serves text-only models'),
  lora_path: refused('rmserve serves no LoRA adapters'),
  is_cross_encoder_request: only(false, 'a reward model is not a cross-encoder'),
};

// ---------------------------------------------------------------------------------------------
// Shared steps

interface Inputs {
  items: ScoreItem[];
  /** What an input is called in messages. */
  what: 'input' | 'messages';
}

/** vLLM's `input` (texts, scored as sent) or `messages` (one conversation, formatted by the model's template). */
function vllmInputs(body: { input?: Static<typeof VllmInput>; messages?: ChatMessage[] }): Inputs {
  if (body.input !== undefined && body.messages !== undefined) throw invalid('give either `input` or `messages`, not both');
  if (body.messages !== undefined) return { items: [{ messages: body.messages }], what: 'messages' };
  if (body.input === undefined) throw invalid('`input` (a text or a list of texts) or `messages` is required');
  const texts = typeof body.input === 'string' ? [body.input] : body.input;
  if (!texts.every((t): t is string => typeof t === 'string')) {
    throw invalid('`input` as token ids is not supported: rmserve tokenizes the text itself with the model\'s tokenizer; send the text', 'unsupported_parameter');
  }
  return { items: texts.map((text) => ({ text })), what: 'input' };
}

interface Scored {
  model: ModelVersion;
  /** The reply's `model`. */
  name: string;
  result: ScoreResult;
}

interface ScoreForOptions {
  model: string | null | undefined;
  items: ScoreItem[];
  what: string;
  addSpecialTokens?: boolean | null;
  /** Refuses a model the route cannot answer with (before any scoring). */
  check?: (model: ModelVersion) => void;
  truncation: (model: ModelVersion) => TruncationChoice;
  tooLongHint: string;
}

/**
 * Resolves the one model, checks the item count and special tokens, scores, and refuses inputs
 * that were cut without the client's leave. `addSpecialTokens` is the request's explicit value.
 */
async function scoreFor(
  ctx: PeerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  options: ScoreForOptions,
): Promise<Scored> {
  const { model, name } = oneModel(ctx.scorer, options.model);
  options.check?.(model);
  checkItemCount(options.items.length, ctx.maxItems, 'inputs');
  if (options.addSpecialTokens !== undefined && options.addSpecialTokens !== null) {
    checkSpecialTokens(model, options.items.map((item) => renderedText(model, item)), options.addSpecialTokens, options.what);
  }
  const choice = options.truncation(model);
  const result = await ctx.scorer.score({
    models: [model.name],
    items: options.items,
    ...(choice.truncation === undefined ? {} : { truncation: choice.truncation }),
    checkFit: (fits) => refuseTooLong(fits, model, choice, options.tooLongHint),
    ...requestClient(request, reply),
  });
  setTimingHeaders(reply, result.timing);
  void reply.header('x-rmserve-model-versions', JSON.stringify(result.modelVersions));
  return { model, name, result };
}

const VLLM_TOO_LONG = 'set `truncate_prompt_tokens: -1` to truncate it to the model\'s max length';

type VllmLimitFields = { truncate_prompt_tokens?: number | null; truncation_side?: TruncationSide | null };

/** scoreFor's truncation and too-long hint from vLLM's `truncate_prompt_tokens` and `truncation_side`. */
function vllmLimits(body: VllmLimitFields): Pick<ScoreForOptions, 'truncation' | 'tooLongHint'> {
  return { truncation: (m) => vllmTruncation(m, body.truncate_prompt_tokens, body.truncation_side), tooLongHint: VLLM_TOO_LONG };
}

/** scoreFor over vLLM's `input` or `messages` (the /classify, /pooling and embeddings routes). */
function scoreVllmInputs(
  ctx: PeerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  body: VllmLimitFields & { model?: string | null; input?: Static<typeof VllmInput>; messages?: ChatMessage[]; add_special_tokens?: boolean | null },
): Promise<Scored> {
  const inputs = vllmInputs(body);
  return scoreFor(ctx, request, reply, { model: body.model, items: inputs.items, what: inputs.what, addSpecialTokens: body.add_special_tokens, ...vllmLimits(body) });
}

/** The activation a classifier applies: `use_activation` (default `byDefault`) and classification_type. */
function classifierActivation(body: VllmClassifyBody | PoolingBody | ScoreBody, labels: number, byDefault: boolean): Activation {
  if (!(useActivation(body) ?? byDefault)) return 'none';
  return 'classification_type' in body && body.classification_type === 'multilabel' ? 'sigmoid' : defaultActivation(labels);
}

/** A reward vector as `encoding_format` asks: numbers, or base64 of its float32 bytes in `endianness`. */
function encodeVector(values: readonly number[], body: { encoding_format?: string | null; endianness?: string | null }): number[] | string {
  if (body.encoding_format !== 'base64') return [...values];
  const bytes = Buffer.alloc(values.length * 4);
  const big = body.endianness === 'big' || (body.endianness === 'native' && new Uint8Array(new Uint16Array([1]).buffer)[0] === 0);
  values.forEach((v, i) => (big ? bytes.writeFloatBE(v, i * 4) : bytes.writeFloatLE(v, i * 4)));
  return bytes.toString('base64');
}

function requireOneObjective(model: ModelVersion, route: string): void {
  if (model.objectives.length !== 1) {
    throw invalid(`${route} needs a model with one score per input; ${model.name} has ${model.objectives.length} objectives (${model.objectives.join(', ')}): use /classify or /pooling`, 'unsupported_model');
  }
}

// ---------------------------------------------------------------------------------------------
// Handlers

// The handlers below share their opening (fields, inputs, scoreFor) and differ in the reply each
// of vLLM's tasks defines; written out per route so each reads against vLLM's protocol class.
export async function vllmClassify(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof ClassifyReply>> {
  const body = request.body as VllmClassifyBody;
  checkFields(body, "vLLM's /classify", CLASSIFY_RULES);
  const { model, name, result } = await scoreVllmInputs(ctx, request, reply, body);
  const labels = labelsOf(model);
  const activation = classifierActivation(body, labels.length, true);
  return {
    id: `classify-${requestId(body.request_id)}`,
    object: 'list',
    created: unixSeconds(),
    model: name,
    data: result.items.map((item, index) => {
      const probs = activate(rawValues(item), activation);
      const best = probs.indexOf(Math.max(...probs));
      return { index, label: labels[best] as string, probs, num_classes: labels.length };
    }),
    usage: usage(result.items),
  };
}

export async function vllmPooling(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof PoolingReply>> {
  const body = request.body as PoolingBody;
  checkFields(body, "vLLM's /pooling", POOLING_RULES);
  const { model, name, result } = await scoreVllmInputs(ctx, request, reply, body);
  // The reward task returns the head's outputs as they are; classify applies the classifier's activation.
  const activation = classifierActivation(body, model.objectives.length, body.task === 'classify');
  return {
    id: `pool-${requestId(body.request_id)}`,
    object: 'list',
    created: unixSeconds(),
    model: name,
    data: result.items.map((item, index) => ({ index, object: 'pooling' as const, data: encodeVector(activate(rawValues(item), activation), body) })),
    usage: usage(result.items),
  };
}

export async function vllmScore(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof ScoreReply>> {
  const body = request.body as ScoreBody;
  checkFields(body, "vLLM's /score", SCORE_RULES);
  const first = typeof body.text_1 === 'string' ? [body.text_1] : body.text_1;
  const second = typeof body.text_2 === 'string' ? [body.text_2] : body.text_2;
  // vLLM's pairing: 1:1, 1:N (the one text_1 with every text_2) or N:N (by position).
  if (first.length !== 1 && first.length !== second.length) {
    throw invalid(`text_1 (${first.length}) and text_2 (${second.length}) must be 1:1, 1:N or N:N`);
  }
  const items = second.map((response, i) => ({ prompt: (first.length === 1 ? first[0] : first[i]) as string, response }));
  const { model, name, result } = await scoreFor(ctx, request, reply, {
    model: body.model,
    items,
    what: 'pair',
    check: (m) => requireOneObjective(m, '/score'),
    ...vllmLimits(body),
  });
  const activation = classifierActivation(body, model.objectives.length, true);
  return {
    id: `score-${requestId(body.request_id)}`,
    object: 'list',
    created: unixSeconds(),
    model: name,
    data: result.items.map((item, index) => ({ index, object: 'score' as const, score: activate(rawValues(item), activation)[0] as number })),
    usage: usage(result.items),
  };
}

export async function vllmRerank(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof VllmRerankReply>> {
  const body = request.body as VllmRerankBody;
  checkFields(body, "vLLM's /rerank", RERANK_RULES);
  const { model, name, result } = await scoreFor(ctx, request, reply, {
    model: body.model,
    items: body.documents.map((document) => ({ prompt: body.query, response: document })),
    what: 'document',
    check: (m) => requireOneObjective(m, '/rerank'),
    ...vllmLimits(body),
  });
  const activation: Activation = (useActivation(body) ?? true) ? defaultActivation(model.objectives.length) : 'none';
  const results = result.items
    .map((item, index) => ({ index, document: { text: body.documents[index] as string }, relevance_score: activate(rawValues(item), activation)[0] as number }))
    .sort((a, b) => b.relevance_score - a.relevance_score);
  const { prompt_tokens, total_tokens } = usage(result.items);
  const topN = body.top_n ?? 0;
  return {
    id: `rerank-${requestId(body.request_id)}`,
    model: name,
    usage: { prompt_tokens, total_tokens },
    results: topN > 0 ? results.slice(0, topN) : results,
  };
}

/** OpenAI's embeddings route as SGLang answers it for a reward model: each input's raw reward vector. */
export async function embeddings(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof EmbeddingsReply>> {
  const body = request.body as EmbeddingsBody;
  checkFields(body, 'the OpenAI embeddings API (SGLang, vLLM)', EMBEDDINGS_RULES);
  const { name, result } = await scoreVllmInputs(ctx, request, reply, body);
  const rid = typeof body.rid === 'string' ? body.rid : undefined;
  return {
    id: `embd-${requestId(body.request_id ?? rid)}`,
    object: 'list',
    created: unixSeconds(),
    model: name,
    data: result.items.map((item, index) => ({ index, object: 'embedding' as const, embedding: encodeVector(rawValues(item), body) })),
    usage: usage(result.items),
  };
}

/** SGLang's native /classify: `{text}` in, `{embedding: [raw rewards], meta_info}` out (a list for a list). */
export async function sglangClassify(ctx: PeerContext, request: FastifyRequest, reply: FastifyReply): Promise<Static<typeof SglangClassifyReply>> {
  const body = request.body as SglangClassifyBody;
  checkFields(body, "SGLang's /classify", SGLANG_CLASSIFY_RULES);
  const single = typeof body.text === 'string';
  const texts = (single ? [body.text] : body.text) as string[];
  const rids = Array.isArray(body.rid) ? body.rid : undefined;
  if (rids !== undefined && rids.length !== texts.length) throw invalid(`\`rid\` has ${rids.length} ids for ${texts.length} texts`);
  const { result } = await scoreFor(ctx, request, reply, {
    model: body.model,
    items: texts.map((text) => ({ text })),
    what: 'text',
    // SGLang refuses an input longer than the context (unless started with --allow-auto-truncate).
    truncation: () => ({ allowTruncation: false }),
    tooLongHint: 'shorten it (SGLang refuses it too)',
  });
  const out = result.items.map((item: ScoredItem, i) => ({
    embedding: rawValues(item),
    meta_info: { id: rids?.[i] ?? (typeof body.rid === 'string' && single ? body.rid : requestId(undefined)), prompt_tokens: item.tokens },
  }));
  return single ? (out[0] as Static<typeof SglangEmbeddingOut>) : out;
}
