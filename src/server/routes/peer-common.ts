// What the compatibility routes (TEI, vLLM, SGLang; compat.ts) share: which single model answers,
// model aliases, the peers' activations, the per-field policy (every field a peer defines is
// honoured or refused with a 400 that names it, never silently ignored), truncation, usage.
import { randomUUID } from 'node:crypto';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { ScoreItem } from '../../model/format.js';
import type { TruncationSide } from '../../model/tokenize.js';
import { ScoringError } from '../../scoring/errors.js';
import type { ModelVersion } from '../../scoring/model-version.js';
import type { ItemFit, ScoredItem, Scorer } from '../../scoring/scorer.js';

/**
 * A field the peer declares Optional: pydantic (vLLM, SGLang) reads `null` as "not given", so
 * null is accepted and means the default. Written with `nullable`, ajv's OpenAPI 3.0 keyword, so
 * the document stays valid OpenAPI 3.0 (which has no null type): on the schema itself, on each
 * branch of a union, and for a union of literals as an enum that lists null, as 3.0 asks.
 */
export function Nullable<T extends TSchema>(schema: T) {
  const branches = (schema as { anyOf?: TSchema[] }).anyOf;
  if (branches === undefined) return Type.Unsafe<Static<T> | null>({ ...schema, nullable: true });
  const consts = branches.map((b) => (b as { const?: unknown }).const);
  if (consts.every((c) => typeof c === 'string')) {
    return Type.Unsafe<Static<T> | null>({ type: 'string', enum: [...consts, null], nullable: true, ...descriptionOf(schema) });
  }
  return Type.Unsafe<Static<T> | null>({ anyOf: branches.map((b) => ({ ...b, nullable: true })), ...descriptionOf(schema) });
}

const descriptionOf = (schema: TSchema): { description?: string } =>
  typeof schema.description === 'string' ? { description: schema.description } : {};

export function invalid(message: string, code = 'invalid_request'): ScoringError {
  return new ScoringError(code, 400, message);
}

// ---------------------------------------------------------------------------------------------
// Models

/**
 * Other names a served model answers to: its `name` in rmserve.json and config.json's
 * `_name_or_path` (the Hugging Face id it was exported from, e.g. `Skywork/Skywork-Reward-V2-Llama-3.1-8B`),
 * which is what vLLM/SGLang clients send as `model` (verl sends its config's model path).
 */
/** Registry names for a list of requested names or aliases (/get_reward's `?model=`). */
export function registryNames(scorer: Scorer, requested: readonly string[] | undefined): string[] | undefined {
  return requested?.map((name) => scorer.registry.find(name).name);
}

export interface OneModel {
  model: ModelVersion;
  /** What the reply's `model` says: the name the client used, else the registry name. */
  name: string;
}

/**
 * The one model a compatibility route's reply comes from. The peers serve one model per server,
 * so their replies (a softmax over labels, a list of probabilities) only mean something for one
 * model: without `model`, the server's single default model answers, and a server with several
 * asks the client to name one rather than mixing their heads in one distribution.
 */
export function oneModel(scorer: Scorer, requested: string | null | undefined): OneModel {
  if (requested !== undefined && requested !== null && requested !== '') return { model: scorer.registry.find(requested), name: requested };
  const models = scorer.resolveModels(undefined);
  if (models.length === 1) return { model: models[0] as ModelVersion, name: (models[0] as ModelVersion).name };
  throw invalid(
    `this server scores with ${models.length} models (${models.map((m) => m.name).join(', ')}) and this route's reply comes from one: name it in \`model\``,
    'model_required',
  );
}

// ---------------------------------------------------------------------------------------------
// Activations

export type Activation = 'none' | 'sigmoid' | 'softmax';

/** What vLLM's and TEI's classifiers apply when asked to: sigmoid for one label, softmax across several. */
export function defaultActivation(labels: number): Activation {
  return labels === 1 ? 'sigmoid' : 'softmax';
}

export function activate(values: readonly number[], activation: Activation): number[] {
  if (activation === 'none') return [...values];
  if (activation === 'sigmoid') return values.map((v) => 1 / (1 + Math.exp(-v)));
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** The raw reward of each head, in the model's objective order. */
export function rawValues(item: ScoredItem): number[] {
  return Object.values(item.objectives).map((o) => o.raw);
}

export function labelsOf(model: ModelVersion): string[] {
  return model.objectives;
}

/** vLLM's activation switches, newest name last: `softmax` and `activation` are the deprecated spellings of `use_activation`. */
export interface ActivationFields {
  softmax?: boolean | null;
  activation?: boolean | null;
  use_activation?: boolean | null;
}

/**
 * The request's `use_activation`, read through its older names as vLLM's get_use_activation
 * does; undefined when none is given. Two of them that disagree are refused: vLLM would silently
 * take the first, and either reading could be what the client meant.
 */
export function useActivation(body: ActivationFields): boolean | undefined {
  const given = (['softmax', 'activation', 'use_activation'] as const).filter((key) => body[key] !== undefined && body[key] !== null);
  const values = new Set(given.map((key) => body[key]));
  if (values.size > 1) throw invalid(`${given.map((key) => `\`${key}: ${body[key]}\``).join(' and ')} disagree; send only \`use_activation\``, 'unsupported_parameter');
  return given.length === 0 ? undefined : (body[given[0] as keyof ActivationFields] as boolean);
}

// ---------------------------------------------------------------------------------------------
// Fields

/** A field's policy: honoured as is (`true`), or a check that returns why a value is refused. */
export type FieldRule = true | ((value: unknown) => string | undefined);

/**
 * Refuses any field not in `rules` and any value a rule refuses, with a 400 naming the field.
 * Null values of optional fields are the default (see Nullable) and skip their rule.
 */
export function checkFields(body: object, peer: string, rules: Readonly<Record<string, FieldRule>>): void {
  for (const [key, value] of Object.entries(body)) {
    const rule = rules[key];
    if (rule === undefined) {
      throw invalid(`\`${key}\` is not a field of ${peer} that rmserve implements; it is refused rather than ignored`, 'unsupported_field');
    }
    if (rule === true || value === null) continue;
    const why = rule(value);
    if (why !== undefined) throw invalid(`\`${key}\`: ${why}`, 'unsupported_parameter');
  }
}

/** A rule that accepts one value only (usually the peer's default), saying why others are refused. */
export function only(expected: unknown, why: string): FieldRule {
  return (value) => (JSON.stringify(value) === JSON.stringify(expected) ? undefined : `only ${JSON.stringify(expected)} is supported: ${why}`);
}

/** A rule that accepts an empty value only (an empty object or list means "nothing extra"). */
export function emptyOnly(why: string): FieldRule {
  return (value) => {
    const empty = (Array.isArray(value) && value.length === 0) || (typeof value === 'object' && value !== null && Object.keys(value).length === 0);
    return empty ? undefined : `not supported: ${why}`;
  };
}

export const refused = (why: string): FieldRule => () => `not supported: ${why}`;

/**
 * vLLM's and SGLang's `priority`: schedulers without priority scheduling refuse anything but 0
 * (vLLM says so in the field's description); rmserve's batcher has none.
 */
export const PRIORITY_RULE: FieldRule = only(0, "rmserve's batcher has no priority scheduling");

export function requestId(given: string | null | undefined): string {
  return given ?? randomUUID().replaceAll('-', '');
}

// ---------------------------------------------------------------------------------------------
// Truncation and special tokens

export interface TruncationChoice {
  truncation?: TruncationSide;
  /** Whether an input longer than the model's max length may be cut (else it is refused). */
  allowTruncation: boolean;
  /** A token budget below the model's max length: inputs over it are refused (rmserve cuts only at the model's max length). */
  tokenBudget?: number;
}

/**
 * vLLM's `truncate_prompt_tokens` (and `truncation_side`): absent, an input over the model's
 * context is an error, as in vLLM; -1 truncates to the model's max length; k keeps k tokens,
 * which rmserve can do only at the model's max length, so a k below it is honoured for inputs
 * that already fit and refused for the others (refuseOverBudget), never silently ignored.
 */
export function vllmTruncation(model: ModelVersion, tokens: number | null | undefined, side: TruncationSide | null | undefined): TruncationChoice {
  const maxLength = model.spec.maxLength;
  const truncation = side ?? undefined;
  if (tokens === undefined || tokens === null) return { truncation, allowTruncation: false };
  if (tokens === -1 || tokens === maxLength) return { truncation, allowTruncation: true };
  if (tokens > maxLength) {
    throw invalid(`\`truncate_prompt_tokens\` (${tokens}) is greater than the model's max length (${maxLength}); use -1 to truncate to it`, 'unsupported_parameter');
  }
  return { truncation, allowTruncation: false, tokenBudget: tokens };
}

/**
 * Once tokenized, before anything runs (the scorer's checkFit): an input the model had to cut
 * when the client did not allow it, or one over its token budget.
 */
export function refuseTooLong(items: readonly ItemFit[], model: ModelVersion, choice: TruncationChoice, hint: string): void {
  const maxLength = model.spec.maxLength;
  items.forEach((item, i) => {
    if (item.truncated && !choice.allowTruncation) {
      throw invalid(`input ${i} is longer than the model's maximum context length of ${maxLength} tokens; ${hint}`, 'input_too_long');
    }
    if (choice.tokenBudget !== undefined && item.tokens > choice.tokenBudget) {
      throw invalid(
        `input ${i} has ${item.tokens} tokens, over \`truncate_prompt_tokens\` ${choice.tokenBudget}: rmserve truncates only at the model's max length (${maxLength}); use -1 or shorten the input`,
        'unsupported_parameter',
      );
    }
  });
}

/**
 * Whether rmserve tokenizes `text` the way the peer's `add_special_tokens` says: rmserve always
 * puts the tokenizer's special tokens (Llama's `<s>`) around a text once, dropping a copy the
 * text (a rendered chat template) already carries. That is `add_special_tokens: true` for a text
 * without them, and `false` for a text that already has them; the other combinations would give
 * the model different tokens, so they are refused (`what` says which input).
 */
export function checkSpecialTokens(model: ModelVersion, texts: readonly string[], addSpecialTokens: boolean, what: string): void {
  const { prefix, suffix, tokenizer } = model.spec.tokenizer;
  if (prefix.length === 0 && suffix.length === 0) return;
  // The tokenizer refuses to decode no ids.
  const decode = (ids: readonly number[]): string => (ids.length === 0 ? '' : tokenizer.decode([...ids], { skip_special_tokens: false }));
  const head = decode(prefix);
  const tail = decode(suffix);
  texts.forEach((text, i) => {
    const startsWithHead = prefix.length > 0 && text.startsWith(head);
    const endsWithTail = suffix.length > 0 && text.endsWith(tail);
    if (addSpecialTokens && (startsWithHead || endsWithTail)) {
      throw invalid(
        `\`add_special_tokens: true\` with ${what} ${i}, which already holds ${JSON.stringify(startsWithHead ? head : tail)}: the model would read it twice; rmserve adds special tokens once (omit the field, or send false)`,
        'unsupported_parameter',
      );
    }
    if (!addSpecialTokens && ((prefix.length > 0 && !startsWithHead) || (suffix.length > 0 && !endsWithTail))) {
      throw invalid(
        `\`add_special_tokens: false\` with ${what} ${i}, which lacks the model's special tokens ${JSON.stringify(head + tail)}: rmserve always adds them (omit the field, or put them in the text)`,
        'unsupported_parameter',
      );
    }
  });
}

/** The text an item reaches the tokenizer as (a chat is rendered with the model's template). */
export function renderedText(model: ModelVersion, item: ScoreItem): string {
  return model.spec.formatter.render(item).text;
}

// ---------------------------------------------------------------------------------------------
// Replies

/** OpenAI's usage object as vLLM and SGLang fill it for pooling requests: no completion tokens. */
export const UsageSchema = Type.Object({
  prompt_tokens: Type.Integer(),
  total_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
});

export function usage(items: readonly ScoredItem[]): Static<typeof UsageSchema> {
  const tokens = items.reduce((n, item) => n + item.tokens, 0);
  return { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0 };
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Per-request item limit (--max-items), as /v1/score has it. */
export function checkItemCount(n: number, maxItems: number, what: string): void {
  if (n > maxItems) throw new ScoringError('too_many_items', 413, `at most ${maxItems} ${what} per request, got ${n}`);
}

/** The 2-string array schema of a (prompt, response) pair, in a form OpenAPI 3.0 validators accept. */
export const StringPair = Type.Unsafe<[string, string]>(Type.Array(Type.String(), { minItems: 2, maxItems: 2 }));
