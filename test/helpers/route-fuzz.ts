// Property-based fuzzing of every HTTP route (issue 14), shared by test/fuzz-routes.test.ts (a
// bounded, seeded run in CI) and scripts/fuzz.ts (large runs). Requests go through app.inject(),
// so no socket is involved and a case costs about a millisecond.
//
// Each route gets four kinds of input:
//  - valid requests built from the API's own shapes (so they reach the scorer, the cache and the
//    tokenizer worker) with edge-case strings: lone surrogates, NUL, special-token text, long runs;
//  - the same requests after 1–3 structure-aware mutations (a node replaced by arbitrary JSON,
//    deleted, duplicated far past the item limit, wrapped, or a key added);
//  - arbitrary JSON values, deep nesting and raw number literals JSON.stringify cannot write
//    (1e999, -0, 40-digit integers);
//  - arbitrary bytes and truncated JSON text under a range of content-types.
// The property (checkReply) is: a 2xx whose body has the route's shape, or a 4xx in the project's
// {"error": {code, message}} shape; never a 5xx, never a rejected inject. After every case the
// known-good request must return exactly the score it returned at the start, and every raw score
// the `rm` model gives on /v1/score must equal the same bag-of-words model computed in JS.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { createService, type Service } from '../../src/service.js';
import { bowScore, type BowModelWeights } from '../../src/training/bow-model.js';
import { AGGREGATE_NAMES, TRANSFORM_NAMES } from '../../src/transforms/index.js';
import { tempModelsRoot, writeBowModel } from './model-fixtures.js';

export const API_KEY = 'fuzz-api-key';
export const ADMIN_TOKEN = 'fuzz-admin-token';
/** Most items per request in the fuzzed service: 16 is also where tokenizing moves to the worker. */
export const MAX_ITEMS = 16;
/** Small enough that enormous arrays and long strings also reach the 413 path. */
export const BODY_LIMIT = 128 * 1024;

export const KNOWN_GOOD = { model: 'rm', items: [{ prompt: 'Is the sky blue?', response: 'Yes, on a clear day.' }] };

// ---------------------------------------------------------------------------------------------
// The service under test: three small bag-of-words models on real tokenizers.

export interface FuzzService {
  service: Service;
  app: FastifyInstance;
  root: string;
  /** Weights of `rm@1`, the oracle for its raw scores. */
  rmWeights: BowModelWeights;
  close(): Promise<void>;
}

export async function startFuzzService(): Promise<FuzzService> {
  const root = tempModelsRoot();
  // rm: GPT-2 BPE, one objective, manifest reference statistics (so znorm and LSC's manifest
  // fallback are reachable). duo: BERT WordPiece (drops whitespace, so blank texts tokenize to
  // nothing), two objectives, max length 64 so truncation happens often. scratch: the model the
  // admin routes may load, unload and roll back; two versions.
  const rmWeights = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1, labels: ['score'], maxLength: 128 });
  const manifestPath = join(root, 'rm', '1', 'rmserve.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(
    manifestPath,
    JSON.stringify({ ...manifest, reference: { score: { quantiles: { '0.5': 0.01, '0.85': 0.05 }, mean: 0, std: 0.1, n: 100 } } }),
  );
  writeBowModel(join(root, 'duo', '1'), { tokenizer: 'bert-base-uncased', seed: 2, labels: ['harmless', 'helpful'], maxLength: 64 });
  writeBowModel(join(root, 'scratch', '1'), { tokenizer: 'gpt2', seed: 3, labels: ['score'], maxLength: 32 });
  writeBowModel(join(root, 'scratch', '2'), { tokenizer: 'gpt2', seed: 4, labels: ['score'], maxLength: 32 });
  // A folder that is not a model, to load by path.
  mkdirSync(join(root, 'scratch', 'empty'));
  const service = await createService({
    modelsRoot: root,
    maxItems: MAX_ITEMS,
    bodyLimit: BODY_LIMIT,
    // As small as a 16-item request, so fuzz items evict the known-good item and it is really
    // recomputed now and then, while repeated pool texts still get cache hits.
    cacheSize: 16,
    maxWaitMs: 1,
    watch: false,
    tokenizerThreads: 1,
    apiKey: API_KEY,
    adminToken: ADMIN_TOKEN,
  });
  await service.app.ready();
  return {
    service,
    app: service.app,
    root,
    rmWeights,
    async close() {
      await service.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// JSON trees with raw literals.

/** A JSON literal written verbatim: numbers JSON.stringify cannot produce (1e999, -0, 40 digits). */
export class RawJson {
  constructor(readonly text: string) {}
}
export type Json = null | boolean | number | string | RawJson | Json[] | { [key: string]: Json };

export function toJsonText(value: Json): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${toJsonText(v)}`).join(',')}}`;
  }
  // NaN and ±Infinity become null, as JSON.stringify writes them.
  return JSON.stringify(value) ?? 'null';
}

const isObject = (v: Json): v is { [key: string]: Json } => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawJson);

// ---------------------------------------------------------------------------------------------
// Strings.

const SPECIAL_STRINGS: readonly string[] = [
  '', ' ', '\u0000', 'a\u0000b', '\ud800', '\udfff', 'x\ud83dy', '\udc00\ud800', '\ud83d\ude00', '\uFEFF', '\u202Eevil',
  '\u200B\u200C\u200D', 'e\u0301\u0301\u0301', 'NaN', 'Infinity', '-Infinity', '1e309', '-0', 'null', 'true', 'undefined',
  '__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', '<|endoftext|>', '<|im_start|>', '<s>', '</s>',
  '[CLS]', '[SEP]', '[PAD]', '[UNK]', '[MASK]', '{{ 7*7 }}', '{% for x in range(10) %}x{% endfor %}', '{{ raise_exception("x") }}',
  '\n\nHuman: hi\n\nAssistant:', '\r\n\t\v\f', '\u2028\u2029', '\u{10FFFF}', '\uFFFD', '\uFFFF', '%00', '%', '%zz',
  '../../etc/passwd', '..', '.', '/', '\\', 'rm', 'duo', 'scratch', 'score', 'harmless', 'helpful', 'latest', '1', '0',
  'Ω≈ç√∫', '田中さんにあげて下さい', 'مرحبا', 'Ṱ̺̺̕o͞ ̷i̲̬͇̪͙n̝̗͕v̟̜̘̦͟o̶̙̰̠kè͚̮̺̪̹̱̤', '👨‍👩‍👧‍👦', '🏳️‍🌈',
];

/** Texts reused across cases, so the reward cache gets hits. */
const POOL_TEXTS: readonly string[] = [
  'Is the sky blue?', 'Yes, on a clear day.', 'No.', 'How do I bake bread?', 'Mix flour, water and yeast, then wait.',
  'I cannot help with that.', 'Sure! Here is a poem about the sea.', 'hello', 'What is 2 + 2?', '4',
];

/** Long runs of one unit: many tokens, truncation, and (past BODY_LIMIT) 413s. Rare, as they cost the most. */
const longString = fc
  .tuple(fc.constantFrom('a', 'é', '💩', '\u0000', ' ', 'ab ', '\ud800', 'e\u0301', '<s>', '[CLS] '), fc.integer({ min: 100, max: 12_000 }))
  .map(([unit, n]) => unit.repeat(n));

export const edgeString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  // 'binary' draws any code point, lone surrogate halves included.
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 4, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 1, arbitrary: longString },
);

const text: fc.Arbitrary<string> = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...POOL_TEXTS) }, { weight: 4, arbitrary: edgeString });
const nonEmptyText: fc.Arbitrary<string> = text.filter((s) => s.length > 0);

// ---------------------------------------------------------------------------------------------
// Arbitrary JSON.

const FIELD_NAMES: readonly string[] = [
  'items', 'prompt', 'response', 'messages', 'role', 'content', 'model', 'transform', 'aggregate', 'weights', 'reference',
  'responses', 'reference_quantile', 'clip', 'truncation', 'query', 'prompts', 'labels', 'inputs', 'raw_scores', 'truncate',
  'truncation_direction', 'input', 'version', 'path', 'pin', '__proto__', 'constructor', 'prototype',
];

const RAW_NUMBERS: readonly string[] = [
  '1e999', '-1e999', '1e-999', '-0', '0e0', '123456789012345678901234567890123456789', '9007199254740993', '-9007199254740993',
  '1.7976931348623157e308', '5e-324', '0.1e1', '1E+2', '-0.0',
];

export const jsonKey: fc.Arbitrary<string> = fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...FIELD_NAMES) }, { weight: 1, arbitrary: edgeString });

const jsonLeaf: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(...RAW_NUMBERS).map((t) => new RawJson(t)),
  edgeString,
);

export const arbitraryJson: fc.Arbitrary<Json> = fc.letrec<{ value: Json; array: Json[]; object: { [key: string]: Json } }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, jsonLeaf, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  object: fc.dictionary(jsonKey, tie('value'), { maxKeys: 6 }),
})).value;

/** Arrays far past the item limit (and past the body limit at the top end), of small elements. */
const enormousArray: fc.Arbitrary<Json> = fc
  .tuple(
    fc.constantFrom(0, 17, 1000, 10_000, 60_000),
    fc.constantFrom<Json>(null, 0, 'x', '', {}, [], { prompt: 'a', response: 'b' }, { role: 'user', content: 'hi' }, new RawJson('1e999')),
  )
  .map(([n, leaf]) => Array.from({ length: n }, () => leaf));

// ---------------------------------------------------------------------------------------------
// Valid bodies of each route.

/** Model selectors and the objective keys their reply carries (`model.head` where a name repeats). */
const SELECTIONS: readonly { model: Json | undefined; objectives: readonly string[]; manifestStats: boolean }[] = [
  { model: 'rm', objectives: ['score'], manifestStats: true },
  { model: ['rm'], objectives: ['score'], manifestStats: true },
  { model: ['rm', 'rm'], objectives: ['score'], manifestStats: true },
  { model: 'duo', objectives: ['harmless', 'helpful'], manifestStats: false },
  { model: 'scratch', objectives: ['score'], manifestStats: false },
  { model: ['rm', 'duo'], objectives: ['score', 'harmless', 'helpful'], manifestStats: false },
  { model: ['duo', 'rm'], objectives: ['harmless', 'helpful', 'score'], manifestStats: false },
  { model: ['rm', 'duo', 'scratch'], objectives: ['score', 'harmless', 'helpful', 'scratch.score'], manifestStats: false },
  // No model: every serving one, by name (duo, rm, scratch).
  { model: undefined, objectives: ['harmless', 'helpful', 'score', 'scratch.score'], manifestStats: false },
];
const OBJECTIVE_KEYS: readonly string[] = ['score', 'harmless', 'helpful', 'duo.score', 'scratch.score', 'rm.score'];

const message = (role: fc.Arbitrary<string>): fc.Arbitrary<Json> => fc.record({ role, content: text });
const anyRole = fc.constantFrom('system', 'user', 'assistant');
const reference: fc.Arbitrary<Json> = fc.record({ responses: fc.array(text, { minLength: 1, maxLength: 2 }) });

const scoreItem = (withReference: boolean): fc.Arbitrary<Json> => {
  const ref = withReference ? fc.option(reference, { nil: undefined, freq: 3 }) : fc.constant(undefined);
  const withRef = (item: { [key: string]: Json }, r: Json | undefined): Json => (r === undefined ? item : { ...item, reference: r });
  return fc.oneof(
    fc.record({ prompt: text, response: text, r: ref }).map(({ prompt, response, r }) => withRef({ prompt, response }, r)),
    fc.record({ prompt: fc.array(message(anyRole), { minLength: 1, maxLength: 3 }), response: text, r: ref }).map(({ prompt, response, r }) => withRef({ prompt, response }, r)),
    fc.record({ turns: fc.array(message(anyRole), { maxLength: 3 }), last: message(fc.constant('assistant')), r: ref }).map(({ turns, last, r }) => withRef({ messages: [...turns, last] }, r)),
  );
};

const finite = (min: number, max: number): fc.Arbitrary<number> => fc.double({ min, max, noNaN: true, noDefaultInfinity: true });

/**
 * /v1/score bodies that should mostly score (2xx): weights name only objectives the selected
 * models have, znorm only where the manifest has statistics, LSC with references (or rm's
 * manifest quantiles), clip bounds in order, and items plus reference pairs within the limit.
 */
const validScoreBody: fc.Arbitrary<Json> = fc.constantFrom(...SELECTIONS).chain((sel) =>
  fc
    .record({
      transform: fc.constantFrom(...TRANSFORM_NAMES).filter((t) => t !== 'znorm' || sel.manifestStats),
      aggregate: fc.option(fc.constantFrom(...AGGREGATE_NAMES), { nil: undefined, freq: 2 }),
      weights: fc.option(fc.dictionary(fc.constantFrom(...sel.objectives), finite(-3, 3), { maxKeys: 3, minKeys: 1 }), { nil: undefined, freq: 2 }),
      reference: fc.option(reference, { nil: undefined, freq: 2 }),
      reference_quantile: fc.option(finite(0, 1), { nil: undefined, freq: 2 }),
      clip: fc.option(fc.tuple(finite(-10, 10), finite(-10, 10)).map(([a, b]): Json => [Math.min(a, b), Math.max(a, b)]), { nil: undefined, freq: 2 }),
      truncation: fc.option(fc.constantFrom('left', 'right'), { nil: undefined, freq: 2 }),
    })
    .chain((opts) => {
      const lsc = opts.transform === 'lsc';
      // Reference pairs count against the item limit: fewer items when they come along.
      const maxItems = lsc ? 4 : MAX_ITEMS;
      // LSC needs a reference from somewhere: the request's, or rm's manifest quantiles.
      const needsReference = lsc && !sel.manifestStats && opts.reference === undefined;
      return fc.array(scoreItem(lsc), { minLength: 1, maxLength: maxItems }).map((items): Json => {
        const body: { [key: string]: Json } = {};
        if (sel.model !== undefined) body.model = sel.model;
        body.items = needsReference ? items.map((item) => (isObject(item) && item.reference === undefined ? { ...item, reference: { responses: ['Yes.'] } } : item)) : items;
        for (const [key, value] of Object.entries(opts)) if (value !== undefined) body[key] = value as Json;
        // clip needs its bounds; conjunction needs log-probabilities (LSC's) and weights >= 0.
        if (opts.transform === 'clip' && body.clip === undefined) body.clip = [-1, 1];
        const conjunction = opts.aggregate === 'conjunction' || (opts.aggregate === undefined && lsc);
        if (opts.aggregate === 'conjunction' && !lsc) body.aggregate = 'sum';
        else if (conjunction && opts.weights !== undefined) body.weights = Object.fromEntries(Object.entries(opts.weights).map(([k, w]) => [k, Math.abs(w)]));
        return body;
      });
    }),
);

const validGetRewardBody: fc.Arbitrary<Json> = fc
  .record({
    query: fc.array(nonEmptyText, { minLength: 1, maxLength: MAX_ITEMS }),
    withPrompts: fc.boolean(),
    promptPool: fc.array(text, { minLength: 1, maxLength: 4 }),
    labels: fc.option(fc.array(arbitraryJson, { maxLength: 4 }), { nil: undefined }),
  })
  .map(({ query, withPrompts, promptPool, labels }): Json => ({
    query,
    ...(withPrompts ? { prompts: query.map((_, i) => promptPool[i % promptPool.length] as string) } : {}),
    ...(labels === undefined ? {} : { labels }),
  }));

// TEI's input forms: a text or a flat [text] / [text, text] is one input; a batch is a list of those lists.
const teiSequence: fc.Arbitrary<Json> = fc.oneof(nonEmptyText.map((t): Json => [t]), fc.tuple(text, text));
// The compatibility routes answer with one model: the fuzzed service serves three, so they name one.
const compatModel = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('rm', 'duo', 'scratch') }, { weight: 1, arbitrary: fc.constant('nope') });
const validPredictBody: fc.Arbitrary<Json> = fc.record(
  {
    inputs: fc.oneof(nonEmptyText, teiSequence, fc.array(teiSequence, { minLength: 1, maxLength: MAX_ITEMS })),
    raw_scores: fc.boolean(),
    truncate: fc.boolean(),
    truncation_direction: fc.constantFrom('Left', 'Right', 'left', 'right'),
    model: compatModel,
  },
  { requiredKeys: ['inputs', 'model'] },
);

const vllmTexts = fc.oneof(nonEmptyText, fc.array(nonEmptyText, { minLength: 1, maxLength: MAX_ITEMS }));
const vllmOptions = {
  model: compatModel,
  truncate_prompt_tokens: fc.constantFrom(-1, null, 4096),
  use_activation: fc.option(fc.boolean(), { nil: null }),
  request_id: text,
  user: text,
  priority: fc.constantFrom(0, 1),
};

// vLLM's /classify ({input}) or SGLang's native one ({text}).
const validClassifyBody: fc.Arbitrary<Json> = fc.oneof(
  fc.record({ ...vllmOptions, input: vllmTexts }, { requiredKeys: ['input', 'model'] }),
  fc.record({ model: compatModel, text: vllmTexts, rid: text }, { requiredKeys: ['text', 'model'] }),
);
const validVllmClassifyBody: fc.Arbitrary<Json> = fc.record({ ...vllmOptions, input: vllmTexts }, { requiredKeys: ['input', 'model'] });
const validPoolingBody: fc.Arbitrary<Json> = fc.record(
  { ...vllmOptions, input: vllmTexts, task: fc.constantFrom('reward', 'encode', 'classify', 'embed'), encoding_format: fc.constantFrom('float', 'base64') },
  { requiredKeys: ['input', 'model'] },
);
const validEmbeddingsBody: fc.Arbitrary<Json> = fc.record(
  { model: compatModel, input: vllmTexts, encoding_format: fc.constantFrom('float', 'base64'), truncate_prompt_tokens: fc.constantFrom(-1, null), user: text },
  { requiredKeys: ['input', 'model'] },
);
const validVllmScoreBody: fc.Arbitrary<Json> = fc.record(
  { ...vllmOptions, text_1: fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 2 })), text_2: fc.oneof(text, fc.array(text, { minLength: 1, maxLength: MAX_ITEMS })) },
  { requiredKeys: ['text_1', 'text_2', 'model'] },
);
const validVllmRerankBody: fc.Arbitrary<Json> = fc.record(
  { ...vllmOptions, query: text, documents: fc.array(text, { minLength: 1, maxLength: MAX_ITEMS }), top_n: fc.nat(4) },
  { requiredKeys: ['query', 'documents', 'model'] },
);
// /rerank: TEI's form ({query, texts}) or vLLM's ({query, documents}).
const validRerankBody: fc.Arbitrary<Json> = fc.oneof(
  validVllmRerankBody,
  fc.record(
    { model: compatModel, query: text, texts: fc.array(text, { minLength: 1, maxLength: MAX_ITEMS }), raw_scores: fc.boolean(), return_text: fc.boolean(), truncate: fc.boolean() },
    { requiredKeys: ['query', 'texts', 'model'] },
  ),
);

const validLoadBody = (root: string): fc.Arbitrary<Json> =>
  fc.oneof(
    fc.record(
      {
        version: fc.constantFrom('1', '2', 'latest', '0', '3', 'empty', '..', '.', '1/../2', '\u0000', 'x'.repeat(255)),
        pin: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    fc.record(
      {
        path: fc.constantFrom('scratch/1', 'scratch/2', 'scratch/empty', 'scratch', 'rm/1', '.', '..', '../..', '/etc', '/', root, join(root, 'scratch', '2'), 'scratch/1/model.onnx', 'a\u0000b'),
        pin: fc.boolean(),
      },
      { requiredKeys: ['path'] },
    ),
  );

// ---------------------------------------------------------------------------------------------
// Structure-aware mutation.

type Path = (string | number)[];

function paths(value: Json, prefix: Path = [], out: Path[] = [], depth = 0): Path[] {
  out.push(prefix);
  if (depth > 6) return out;
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out, depth + 1));
  else if (isObject(value)) for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out, depth + 1);
  return out;
}

/** A copy of `value` with the node at `path` replaced by `f(node)` (removed when f returns undefined). */
function update(value: Json, path: Path, f: (node: Json) => Json | undefined): Json | undefined {
  if (path.length === 0) return f(value);
  const [head, ...rest] = path;
  if (Array.isArray(value) && typeof head === 'number') {
    const copy = [...value];
    const next = update(copy[head] as Json, rest, f);
    if (next === undefined) copy.splice(head, 1);
    else copy[head] = next;
    return copy;
  }
  if (isObject(value) && typeof head === 'string') {
    const copy: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) {
      if (k !== head) copy[k] = v;
      else {
        const next = update(v, rest, f);
        if (next !== undefined) copy[k] = next;
      }
    }
    return copy;
  }
  return value;
}

type Mutation =
  | { op: 'replace'; at: number; value: Json }
  | { op: 'delete'; at: number }
  | { op: 'addKey'; at: number; key: string; value: Json }
  | { op: 'repeat'; at: number; times: number }
  | { op: 'wrap'; at: number; inArray: boolean }
  | { op: 'string'; at: number; value: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('replace' as const), at: fc.nat(), value: fc.oneof(arbitraryJson, enormousArray) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('addKey' as const), at: fc.nat(), key: jsonKey, value: arbitraryJson }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), times: fc.constantFrom(2, 17, 300, 5000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('wrap' as const), at: fc.nat(), inArray: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('string' as const), at: fc.nat(), value: edgeString }) },
);

function applyMutation(value: Json, m: Mutation): Json {
  const all = paths(value);
  const path = all[m.at % all.length] as Path;
  const result = update(value, path, (node): Json | undefined => {
    switch (m.op) {
      case 'replace':
        return m.value;
      case 'delete':
        return path.length === 0 ? {} : undefined;
      case 'addKey':
        return isObject(node) ? { ...node, [m.key]: m.value } : Array.isArray(node) ? [...node, m.value] : { [m.key]: m.value };
      case 'repeat': {
        // Far past the body limit is enough: cap the copy at ~4× BODY_LIMIT of JSON text.
        const unit = Math.max(1, toJsonText(node).length);
        const times = Math.max(1, Math.min(m.times, Math.floor((4 * BODY_LIMIT) / unit)));
        return Array.isArray(node) && node.length > 0
          ? Array.from({ length: node.length * times }, (_, i) => node[i % node.length] as Json)
          : Array.from({ length: times }, () => node);
      }
      case 'wrap':
        return m.inArray ? [node] : { value: node };
      case 'string':
        return typeof node === 'string' || path.length > 0 ? m.value : node;
    }
  });
  return result ?? {};
}

const mutated = (valid: fc.Arbitrary<Json>): fc.Arbitrary<Json> =>
  fc.tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([v, ms]) => ms.reduce(applyMutation, v));

// ---------------------------------------------------------------------------------------------
// Requests.

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS';

export interface FuzzRequest {
  /** The route pattern this case aims at, e.g. "POST /v1/models/:name/load" (counts are by it). */
  route: string;
  /** valid | mutated | json | deep | bytes | text | auth | method | url */
  kind: string;
  method: Method;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

const JSON_TYPES: readonly string[] = ['application/json', 'application/json; charset=utf-8', 'Application/JSON'];
const OTHER_TYPES: readonly string[] = [
  'application/json; charset=utf-16le', 'application/json; charset=latin1', 'application/json;;;', 'application/json; charset=',
  'application/jsonx', 'application/vnd.api+json', 'application/problem+json', 'text/plain', 'text/json', 'text/html; charset=utf-8',
  'application/x-www-form-urlencoded', 'multipart/form-data; boundary=xyz', 'application/octet-stream', '*/*', 'application/*', ';', 'json',
];

type Auth = 'api' | 'admin' | 'open';

const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 60 });

/** An Authorization header: mostly the right token for the route, else missing, wrong or malformed. */
function authHeader(auth: Auth): fc.Arbitrary<string | undefined> {
  const right = auth === 'admin' ? ADMIN_TOKEN : API_KEY;
  const wrong = fc.oneof(
    fc.constant(undefined),
    fc.constantFrom(
      'Bearer wrong', `bearer ${right}`, `Bearer  ${right}  `, `Basic ${Buffer.from(`u:${right}`).toString('base64')}`, 'Bearer',
      'Bearer ', `Bearer ${right}x`, `Bearer ${right} ${right}`, `Bearer ${auth === 'admin' ? API_KEY : ADMIN_TOKEN}`, `Token ${right}`,
      `Bearer ${right.slice(0, -1)}`, '',
    ),
    latin1.map((s) => `Bearer ${s}`),
  );
  return fc.oneof({ weight: 12, arbitrary: fc.constant(`Bearer ${right}`) }, { weight: auth === 'open' ? 6 : 1, arbitrary: wrong });
}

/** Percent-encodes every UTF-16 unit, lone surrogates included (as their CESU-8 bytes: invalid UTF-8). */
function encodeAll(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...s].map((c) => {
      const code = c.charCodeAt(0);
      if (code >= 0xd800 && code <= 0xdfff && c.length === 1) {
        return [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
      }
      return encodeURIComponent(c);
    }).join('');
  }
}

const rawPercentBytes = fc.uint8Array({ maxLength: 12 }).map((bytes) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));

/** A path segment: real names, encoded edge strings, broken escapes, or one past find-my-way's 100-character parameter limit. */
export function pathSegment(names: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...names) },
    { weight: 3, arbitrary: edgeString.map(encodeAll) },
    { weight: 2, arbitrary: fc.constantFrom('%', '%zz', '%ff', '%c0%af', '%2e%2e', '..', '.', '%00', '%2F', '~', 'a'.repeat(101), '%E0%A4%A') },
    { weight: 1, arbitrary: rawPercentBytes },
  );
}

const queryValue = fc.oneof(edgeString.map(encodeAll), rawPercentBytes, fc.constantFrom('', '%', '%zz', '+', '&', '='));

/** An arbitrary query string: random keys, repeated keys, broken escapes. */
const randomQuery: fc.Arbitrary<string> = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom('transform', 'aggregate', 'model', 'weights', 'clip', 'reference_quantile', 'x', ''), edgeString.map(encodeAll)), queryValue), { maxLength: 4 })
  .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`));

/** /get_reward's query parameters as the protocol means them. */
const validRewardQuery = fc.record(
  {
    transform: fc.constantFrom(...TRANSFORM_NAMES.filter((t) => t !== 'znorm' && t !== 'clip')),
    reference_quantile: finite(0, 1).map(String),
    model: fc.constantFrom('rm', 'duo', 'rm,duo', ' rm , ', 'rm,rm', 'scratch'),
  },
  { requiredKeys: [] },
);

/** Each parameter, valid or not: names off the list, numbers that are not, lists that do not parse. */
const anyRewardQuery = fc.record(
  {
    transform: fc.oneof(fc.constantFrom(...TRANSFORM_NAMES), edgeString),
    aggregate: fc.oneof(fc.constantFrom(...AGGREGATE_NAMES), edgeString),
    reference_quantile: fc.oneof(finite(0, 1).map(String), fc.double().map(String), fc.constantFrom('', ' ', 'NaN', '1e999', '0x1', '.5', '1/2'), edgeString),
    weights: fc.oneof(
      fc.array(fc.tuple(fc.constantFrom(...OBJECTIVE_KEYS, ''), fc.oneof(finite(-5, 5).map(String), fc.constantFrom('', 'x', 'Infinity', '1e999'))), { minLength: 1, maxLength: 3 })
        .map((pairs) => pairs.map(([k, w]) => `${k}:${w}`).join(',')),
      edgeString,
    ),
    model: fc.oneof(fc.constantFrom('rm', 'duo', 'rm,duo', ',', 'nope', 'rm,nope'), edgeString),
    clip: fc.oneof(fc.tuple(finite(-10, 10), finite(-10, 10)).map(([a, b]) => `${a},${b}`), fc.constantFrom('', ',', '1', '1,2,3', 'a,b', '-Infinity,Infinity'), edgeString),
  },
  { requiredKeys: [] },
);

const asQueryString = (q: Record<string, string | undefined>): string => {
  const s = new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => e[1] !== undefined)).toString();
  return s === '' ? '' : `?${s}`;
};

const getRewardQuery: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: validRewardQuery.map(asQueryString) },
  { weight: 3, arbitrary: anyRewardQuery.map(asQueryString) },
  { weight: 1, arbitrary: randomQuery },
);

interface RouteSpec {
  route: string;
  method: Method;
  auth: Auth;
  /** The URL (with its parameters and query string) of one case. */
  url: fc.Arbitrary<string>;
  /** A valid body; routes without one take no body (they still get bodies thrown at them). */
  body?: fc.Arbitrary<Json>;
}

function routeSpecs(root: string): RouteSpec[] {
  const name = pathSegment(['rm', 'duo', 'scratch', 'nope']);
  // With the admin token, only `scratch` and unknown names: unloading `rm` or `duo` is legitimate
  // and would only make every later scoring case a 404.
  const adminName = fc.oneof({ weight: 2, arbitrary: fc.constant('scratch') }, { weight: 1, arbitrary: pathSegment(['nope', 'scratch']) }).filter((s) => s !== 'rm' && s !== 'duo');
  const withQuery = (path: fc.Arbitrary<string>, query: fc.Arbitrary<string> = randomQuery): fc.Arbitrary<string> =>
    fc.tuple(path, fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: query })).map(([p, q]) => p + q);
  const fixed = (path: string): fc.Arbitrary<string> => withQuery(fc.constant(path));
  return [
    { route: 'POST /v1/score', method: 'POST', auth: 'api', url: fixed('/v1/score'), body: validScoreBody },
    {
      route: 'POST /get_reward',
      method: 'POST',
      auth: 'api',
      url: fc.oneof({ weight: 1, arbitrary: fc.constant('/get_reward') }, { weight: 3, arbitrary: getRewardQuery.map((q) => `/get_reward${q}`) }),
      body: validGetRewardBody,
    },
    { route: 'POST /predict', method: 'POST', auth: 'api', url: fixed('/predict'), body: validPredictBody },
    { route: 'POST /classify', method: 'POST', auth: 'api', url: fixed('/classify'), body: validClassifyBody },
    { route: 'POST /v1/classify', method: 'POST', auth: 'api', url: fixed('/v1/classify'), body: validVllmClassifyBody },
    { route: 'POST /pooling', method: 'POST', auth: 'api', url: fixed('/pooling'), body: validPoolingBody },
    { route: 'POST /score', method: 'POST', auth: 'api', url: fixed('/score'), body: validVllmScoreBody },
    { route: 'POST /rerank', method: 'POST', auth: 'api', url: fixed('/rerank'), body: validRerankBody },
    { route: 'POST /v1/rerank', method: 'POST', auth: 'api', url: fixed('/v1/rerank'), body: validVllmRerankBody },
    { route: 'POST /v2/rerank', method: 'POST', auth: 'api', url: fixed('/v2/rerank'), body: validVllmRerankBody },
    { route: 'POST /v1/embeddings', method: 'POST', auth: 'api', url: fixed('/v1/embeddings'), body: validEmbeddingsBody },
    { route: 'GET /v1/models', method: 'GET', auth: 'api', url: fixed('/v1/models') },
    { route: 'GET /v1/models/:name', method: 'GET', auth: 'api', url: withQuery(name.map((n) => `/v1/models/${n}`)) },
    { route: 'GET /health', method: 'GET', auth: 'open', url: fixed('/health') },
    { route: 'GET /ready', method: 'GET', auth: 'open', url: fixed('/ready') },
    { route: 'GET /metrics', method: 'GET', auth: 'open', url: fixed('/metrics') },
    { route: 'POST /v1/models/:name/load', method: 'POST', auth: 'admin', url: adminName.map((n) => `/v1/models/${n}/load`), body: validLoadBody(root) },
    { route: 'POST /v1/models/:name/unload', method: 'POST', auth: 'admin', url: adminName.map((n) => `/v1/models/${n}/unload`) },
    { route: 'POST /v1/models/:name/rollback', method: 'POST', auth: 'admin', url: adminName.map((n) => `/v1/models/${n}/rollback`) },
    {
      route: 'GET /docs/*',
      method: 'GET',
      auth: 'open',
      url: fc.oneof(
        fc.constantFrom('/docs', '/docs/', '/docs/json', '/docs/yaml', '/docs/static/index.html', '/docs/static/swagger-ui.css', '/docs/uiConfig', '/docs/initOAuth'),
        fc.array(pathSegment(['..', '.', 'index.html', 'package.json', 'etc', 'passwd', '%2e%2e%2f']), { minLength: 1, maxLength: 5 }).map((segs) => `/docs/static/${segs.join('/')}`),
      ),
    },
    {
      route: 'unknown routes',
      method: 'GET',
      auth: 'api',
      url: fc.oneof(
        fc.array(pathSegment(['v1', 'v2', 'score', 'models', 'rm', 'load', 'get_reward', '']), { minLength: 0, maxLength: 4 }).map((segs) => `/${segs.join('/')}`),
        fc.constantFrom('/v1/score/', '//v1/score', '/v1//score', '/V1/SCORE', '/v1/score%00', '/v1/models/rm/', '/v1/models/rm/load/x', '*', '/%', '/..%2f..%2fetc%2fpasswd'),
      ),
    },
  ];
}

/** Routes whose requests the fuzzer generates, as fastify names them; the test checks it covers every registered route. */
export const FUZZED_ROUTES: readonly string[] = [
  'POST /v1/score', 'POST /get_reward', 'POST /predict', 'POST /classify', 'POST /v1/classify', 'POST /pooling', 'POST /score',
  'POST /rerank', 'POST /v1/rerank', 'POST /v2/rerank', 'POST /v1/embeddings', 'GET /v1/models', 'GET /v1/models/:name', 'GET /health',
  'GET /ready', 'GET /metrics', 'POST /v1/models/:name/load', 'POST /v1/models/:name/unload', 'POST /v1/models/:name/rollback',
];

/** What the fuzzer aims at: every route, the API docs and paths that match no route. */
export const FUZZ_TARGETS: readonly string[] = [...FUZZED_ROUTES, 'GET /docs/*', 'unknown routes'];

const OTHER_METHODS: readonly Method[] = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];

/** Raw JSON text: nesting 50–50 000 deep, duplicated keys, or valid JSON cut short / with a byte flipped. */
function jsonText(valid: fc.Arbitrary<Json> | undefined): fc.Arbitrary<{ kind: string; text: string }> {
  const deep = fc
    .record({ depth: fc.integer({ min: 50, max: 50_000 }), array: fc.boolean(), field: fc.constantFrom('items', 'labels', 'query', 'inputs', 'input', 'model', 'version') })
    .map(({ depth, array, field }) => {
      const nest = array ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
      // labels is the one field typed as arbitrary JSON: a deep value there passes the schema.
      const text = field === 'labels' ? `{"query":["hello"],"labels":[${nest}]}` : `{"${field}":${nest}}`;
      return { kind: 'deep', text };
    });
  const source = valid ?? arbitraryJson;
  const broken = fc.tuple(source, fc.nat(), fc.constantFrom('', '\u0000', '"', '}', ',', '\ud800', 'NaN', '//', '\\')).map(([v, cut, junk]) => {
    const full = toJsonText(v);
    const at = cut % (full.length + 1);
    return { kind: 'text', text: full.slice(0, at) + junk + (junk === '' ? '' : full.slice(at + 1)) };
  });
  const duplicated = source.map((v) => {
    const full = toJsonText(v);
    return { kind: 'text', text: isObject(v) && full.length > 2 ? `${full.slice(0, -1)},${full.slice(1)}` : full };
  });
  const protoPoison = fc.constantFrom(
    '{"__proto__":{"admin":true},"items":[{"prompt":"a","response":"b"}]}',
    '{"constructor":{"prototype":{"x":1}},"query":["a"]}',
    '{"items":[{"prompt":"a","response":"b","__proto__":{"response":1}}]}',
  ).map((t) => ({ kind: 'text', text: t }));
  return fc.oneof(deep, broken, duplicated, protoPoison);
}

/** All cases for one route. */
function routeRequests(spec: RouteSpec): fc.Arbitrary<FuzzRequest> {
  const valid = spec.body;
  const body: fc.Arbitrary<{ kind: string; payload: string | Buffer | undefined; contentType: string | undefined }> = fc.oneof(
    // The route's own input: valid (a body-less route gets none), then mutated.
    { weight: valid ? 5 : 6, arbitrary: (valid ?? fc.constant(undefined)).map((v) => ({ kind: 'valid', payload: v === undefined ? undefined : toJsonText(v), contentType: v === undefined ? undefined : 'application/json' })) },
    ...(valid ? [{ weight: 6, arbitrary: mutated(valid).map((v) => ({ kind: 'mutated', payload: toJsonText(v), contentType: 'application/json' })) }] : []),
    { weight: 3, arbitrary: fc.oneof(arbitraryJson, enormousArray).map((v) => ({ kind: 'json', payload: toJsonText(v), contentType: 'application/json' })) },
    { weight: 2, arbitrary: fc.tuple(jsonText(valid), fc.constantFrom(...JSON_TYPES)).map(([t, ct]) => ({ kind: t.kind, payload: t.text, contentType: ct })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.oneof(fc.uint8Array({ maxLength: 2048 }), fc.constant(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), fc.constant(new Uint8Array([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00]))), fc.option(fc.constantFrom(...JSON_TYPES, ...OTHER_TYPES), { nil: undefined }))
        .map(([bytes, ct]) => ({ kind: 'bytes', payload: Buffer.from(bytes), contentType: ct })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(valid ?? arbitraryJson, fc.constantFrom(...OTHER_TYPES)).map(([v, ct]) => ({ kind: 'content-type', payload: toJsonText(v), contentType: ct })),
    },
  );
  const method: fc.Arbitrary<Method> = fc.oneof({ weight: 12, arbitrary: fc.constant(spec.method) }, { weight: 1, arbitrary: fc.constantFrom(...OTHER_METHODS) });
  return fc.record({ url: spec.url, body, auth: authHeader(spec.auth), method, accept: fc.option(fc.constantFrom('*/*', 'application/json', 'text/html', 'application/xml', ''), { nil: undefined }) }).map(
    ({ url, body: b, auth, method: m, accept }): FuzzRequest => {
      const headers: Record<string, string> = {};
      if (auth !== undefined) headers.authorization = auth;
      if (b.contentType !== undefined) headers['content-type'] = b.contentType;
      if (accept !== undefined) headers.accept = accept;
      const rightAuth = auth === `Bearer ${spec.auth === 'admin' ? ADMIN_TOKEN : API_KEY}`;
      const kind = m !== spec.method ? 'method' : spec.auth !== 'open' && !rightAuth ? 'auth' : b.kind;
      return { route: spec.route, kind, method: m, url, headers, ...(b.payload === undefined ? {} : { payload: b.payload }) };
    },
  );
}

/** One arbitrary per route (plus docs and unknown routes), keyed by route. */
export function routeArbitraries(root: string): Map<string, fc.Arbitrary<FuzzRequest>> {
  return new Map(routeSpecs(root).map((spec) => [spec.route, routeRequests(spec)]));
}

// ---------------------------------------------------------------------------------------------
// The property.

interface InjectReply {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isFiniteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function parseJson(body: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch {
    return { ok: false };
  }
}

function parsedPayload(request: FuzzRequest): unknown {
  if (typeof request.payload !== 'string') return undefined;
  const parsed = parseJson(request.payload);
  return parsed.ok ? parsed.value : undefined;
}

/** Shape of a 2xx body per route; a message when it is wrong. */
function check2xx(request: FuzzRequest, reply: InjectReply, json: unknown): string | undefined {
  const body = parsedPayload(request);
  const route = request.route;
  const count = (list: unknown): number | undefined => (Array.isArray(list) ? list.length : typeof list === 'string' ? 1 : undefined);
  switch (route) {
    case 'POST /v1/score': {
      if (!isRecord(json) || !isRecord(json.model_versions) || !Array.isArray(json.results)) return 'score reply without model_versions/results';
      const items = isRecord(body) ? count(body.items) : undefined;
      if (json.results.length !== items) return `score reply has ${json.results.length} results for ${items} items`;
      for (const r of json.results) {
        if (!isRecord(r) || typeof r.cached !== 'boolean' || typeof r.truncated !== 'boolean' || !isRecord(r.objectives)) return 'malformed score result';
        if (r.reward !== undefined && !isFiniteNumber(r.reward)) return `non-finite reward ${String(r.reward)}`;
        if (r.probability !== undefined && !(isFiniteNumber(r.probability) && r.probability >= 0 && r.probability <= 1)) return `bad probability ${String(r.probability)}`;
        const objectives = Object.values(r.objectives);
        if (objectives.length === 0) return 'score result without objectives';
        for (const o of objectives) {
          if (!isRecord(o) || !isFiniteNumber(o.raw) || !isFiniteNumber(o.transformed) || typeof o.model !== 'string') return 'malformed objective';
        }
      }
      return undefined;
    }
    case 'POST /get_reward': {
      if (!isRecord(json) || !Array.isArray(json.rewards) || !Array.isArray(json.scores) || !isRecord(json.extra_logs)) return 'get_reward reply without rewards/scores/extra_logs';
      const n = isRecord(body) ? count(body.query) : undefined;
      if (json.rewards.length !== n || json.scores.length !== n) return `get_reward reply has ${json.rewards.length} rewards for ${n} queries`;
      if (![...json.rewards, ...json.scores].every(isFiniteNumber)) return 'non-finite reward in get_reward reply';
      for (const v of Object.values(json.extra_logs)) if (!Array.isArray(v) || !v.every(isFiniteNumber)) return 'malformed extra_logs';
      return undefined;
    }
    case 'POST /predict': {
      const okPrediction = (p: unknown): boolean => Array.isArray(p) && p.length > 0 && p.every((x) => isRecord(x) && isFiniteNumber(x.score) && typeof x.label === 'string');
      if (!Array.isArray(json) || json.length === 0) return 'predict reply is not a non-empty list';
      if (!(okPrediction(json) || json.every(okPrediction))) return 'malformed predictions';
      return undefined;
    }
    case 'POST /classify':
    case 'POST /v1/classify': {
      // SGLang's native form: {embedding, meta_info} per text, a bare object for one text.
      if (isRecord(body) && body.text !== undefined) {
        const out = Array.isArray(json) ? json : [json];
        if (out.length !== count(body.text)) return `sglang classify reply has ${out.length} entries for ${count(body.text)} texts`;
        return out.every((o) => isRecord(o) && Array.isArray(o.embedding) && o.embedding.every(isFiniteNumber) && isRecord(o.meta_info)) ? undefined : 'malformed sglang classify entry';
      }
      if (!isRecord(json) || json.object !== 'list' || !Array.isArray(json.data) || !isRecord(json.usage)) return 'classify reply without data/usage';
      const n = isRecord(body) ? count(body.input) : undefined;
      if (json.data.length !== n) return `classify reply has ${json.data.length} entries for ${n} inputs`;
      for (const d of json.data) {
        if (!isRecord(d) || !Array.isArray(d.probs) || !d.probs.every(isFiniteNumber)) return 'malformed classify entry';
        const total = (d.probs as number[]).reduce((a, b) => a + b, 0);
        const activated = isRecord(body) && body.use_activation !== false;
        if (activated && d.probs.length > 1 && Math.abs(total - 1) > 1e-6) return `classify probs sum to ${total}`;
      }
      return undefined;
    }
    case 'POST /pooling':
    case 'POST /v1/embeddings': {
      if (!isRecord(json) || json.object !== 'list' || !Array.isArray(json.data) || !isRecord(json.usage)) return `${route} reply without data/usage`;
      const n = isRecord(body) ? count(body.input) : undefined;
      if (json.data.length !== n) return `${route} reply has ${json.data.length} entries for ${n} inputs`;
      const key = route === 'POST /pooling' ? 'data' : 'embedding';
      const ok = (v: unknown): boolean => typeof v === 'string' || (Array.isArray(v) && v.every(isFiniteNumber));
      return json.data.every((d) => isRecord(d) && ok(d[key])) ? undefined : `malformed ${route} entry`;
    }
    case 'POST /score': {
      if (!isRecord(json) || !Array.isArray(json.data) || !isRecord(json.usage)) return 'score reply without data/usage';
      const n = isRecord(body) ? count(body.text_2) : undefined;
      if (json.data.length !== n) return `score reply has ${json.data.length} entries for ${n} pairs`;
      return json.data.every((d) => isRecord(d) && isFiniteNumber(d.score)) ? undefined : 'malformed score entry';
    }
    case 'POST /rerank':
    case 'POST /v1/rerank':
    case 'POST /v2/rerank': {
      if (isRecord(body) && body.texts !== undefined) {
        if (!Array.isArray(json) || json.length !== count(body.texts)) return 'TEI rerank reply is not one rank per text';
        return json.every((r) => isRecord(r) && isFiniteNumber(r.score) && typeof r.index === 'number') ? undefined : 'malformed TEI rank';
      }
      if (!isRecord(json) || !Array.isArray(json.results) || !isRecord(json.usage)) return 'rerank reply without results/usage';
      return json.results.every((r) => isRecord(r) && isFiniteNumber(r.relevance_score) && isRecord(r.document)) ? undefined : 'malformed rerank result';
    }
    case 'GET /v1/models':
      if (!isRecord(json) || json.object !== 'list' || !Array.isArray(json.data) || !json.data.every((m) => isRecord(m) && typeof m.id === 'string')) return 'not an OpenAI model list';
      return Array.isArray(json.models) && json.models.every((m) => isRecord(m) && typeof m.name === 'string') ? undefined : 'malformed model list';
    case 'GET /v1/models/:name':
    case 'POST /v1/models/:name/load':
    case 'POST /v1/models/:name/unload':
    case 'POST /v1/models/:name/rollback':
      return isRecord(json) && typeof json.name === 'string' && Array.isArray(json.versions) ? undefined : 'malformed model status';
    case 'GET /health':
      return isRecord(json) && json.status === 'ok' ? undefined : 'health reply is not {status: ok}';
    case 'GET /ready':
      return isRecord(json) && json.status === 'ready' && Array.isArray(json.models) ? undefined : 'ready reply is not {status: ready, models}';
    case 'GET /metrics':
      return reply.body.includes('rmserve_requests_total') ? undefined : 'metrics text without rmserve_requests_total';
    default:
      return undefined;
  }
}

/** TEI's routes answer in TEI's error body: /predict, and /rerank in its TEI form ({query, texts}). */
function isTeiRequest(request: FuzzRequest): boolean {
  if (request.method !== 'POST') return false;
  const path = request.url.split('?')[0];
  if (path === '/predict') return true;
  const body = parsedPayload(request);
  return path === '/rerank' && isRecord(body) && 'texts' in body;
}

const PRE_PARSE_CODES = new Set(['invalid_json', 'payload_too_large', 'unsupported_media_type', 'unauthorized', 'shutting_down']);
const TEI_ERROR_TYPES = new Set(['Unhealthy', 'Backend', 'Overloaded', 'Validation', 'Tokenizer', 'Empty']);

function teiErrorProblem(status: number, reply: InjectReply, value: unknown): string | undefined {
  if (!isRecord(value) || typeof value.error !== 'string' || value.error === '' || typeof value.error_type !== 'string' || !TEI_ERROR_TYPES.has(value.error_type)) {
    return `${status} not in TEI's error shape: ${reply.body.slice(0, 200)}`;
  }
  if (Object.keys(value).length !== 2) return `${status} TEI error body with extra fields: ${reply.body.slice(0, 200)}`;
  // TEI answers a model failure 424 Backend: the one expected here is a multi-head model asked to rerank; any other is a 5xx in TEI's clothes.
  if (status === 424 && !value.error.startsWith('model is not a re-ranker model')) return `424 (a server failure): ${reply.body.slice(0, 300)}`;
  if (status === 401 && reply.headers['www-authenticate'] === undefined) return '401 without WWW-Authenticate';
  return undefined;
}

/** The property for one reply; undefined when it holds. */
export function checkReply(request: FuzzRequest, reply: InjectReply): string | undefined {
  const status = reply.statusCode;
  if (status >= 500) return `${status} ${reply.body.slice(0, 300)}`;
  // The docs redirect (index.html → /docs/), for GET and its HEAD twin alike.
  const docs = request.route === 'GET /docs/*' && (request.method === 'GET' || request.method === 'HEAD');
  if (status >= 300 && status < 400) return docs ? undefined : `unexpected redirect ${status}`;
  if (status < 200 || status >= 500) return `unexpected status ${status}`;
  if (request.method === 'HEAD' || request.method === 'OPTIONS') return undefined;
  const contentType = String(reply.headers['content-type'] ?? '');
  if (status >= 400) {
    if (!contentType.startsWith('application/json')) return `${status} with content-type "${contentType}": ${reply.body.slice(0, 200)}`;
    const parsed = parseJson(reply.body);
    if (!parsed.ok) return `${status} whose body is not JSON: ${reply.body.slice(0, 200)}`;
    const error = isRecord(parsed.value) ? parsed.value.error : undefined;
    // Which /rerank a body is for is known once the server has parsed it: refusals of the bytes come in rmserve's shape.
    const unparsed = isRecord(error) && typeof error.code === 'string' && PRE_PARSE_CODES.has(error.code) && request.url.split('?')[0] === '/rerank';
    if (isTeiRequest(request) && !unparsed) return teiErrorProblem(status, reply, parsed.value);
    if (!isRecord(error) || typeof error.code !== 'string' || error.code === '' || typeof error.message !== 'string' || error.message === '') {
      return `${status} not in the error shape: ${reply.body.slice(0, 200)}`;
    }
    if (Object.keys(parsed.value as object).length !== 1) return `${status} error body with extra fields: ${reply.body.slice(0, 200)}`;
    if (status === 401 && reply.headers['www-authenticate'] === undefined) return '401 without WWW-Authenticate';
    return undefined;
  }
  // 2xx
  if (docs || request.route === 'unknown routes') return undefined;
  if (request.route === 'GET /metrics') return check2xx(request, reply, undefined);
  if (!contentType.startsWith('application/json')) return `${status} with content-type "${contentType}"`;
  const parsed = parseJson(reply.body);
  if (!parsed.ok) return `${status} whose body is not JSON: ${reply.body.slice(0, 200)}`;
  return check2xx(request, reply, parsed.value);
}

// ---------------------------------------------------------------------------------------------
// Running cases.

export interface FuzzStats {
  /** Cases per route. */
  cases: Record<string, number>;
  /** Cases per kind of input. */
  kinds: Record<string, number>;
  /** Replies per route and status. */
  statuses: Record<string, Record<string, number>>;
  fiveXx: number;
  /** inject() rejections and uncaught errors. */
  crashes: number;
  /** Property violations other than 5xx (wrong shape, changed known-good score, wrong raw score). */
  violations: number;
  knownGoodChecks: number;
  /** Known-good checks that were really recomputed (not a cache hit). */
  knownGoodRecomputed: number;
  /** Raw `rm` scores compared with the JS bag-of-words model. */
  oracleChecks: number;
  failures: { route: string; kind: string; problem: string; request: FuzzRequest }[];
}

export function emptyStats(): FuzzStats {
  return { cases: {}, kinds: {}, statuses: {}, fiveXx: 0, crashes: 0, violations: 0, knownGoodChecks: 0, knownGoodRecomputed: 0, oracleChecks: 0, failures: [] };
}

type ScoreReply = { results: { reward?: number; cached: boolean; objectives: Record<string, { raw: number; model: string }> }[]; model_versions: Record<string, string> };

export class RouteFuzzer {
  readonly stats = emptyStats();
  /** The last case's status and error code, e.g. "400 invalid_item" (for tallies). */
  lastOutcome = '';
  private baseline: number | undefined;

  constructor(readonly fuzz: FuzzService) {}

  private async knownGood(): Promise<{ reward: number; cached: boolean }> {
    const reply = await this.fuzz.app.inject({
      method: 'POST',
      url: '/v1/score',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      payload: JSON.stringify(KNOWN_GOOD),
    });
    if (reply.statusCode !== 200) throw new Error(`known-good request got ${reply.statusCode}: ${reply.body}`);
    const result = reply.json<ScoreReply>().results[0];
    if (result?.reward === undefined) throw new Error(`known-good reply without a reward: ${reply.body}`);
    return { reward: result.reward, cached: result.cached };
  }

  /** Scores the known-good request once; later checks must match it exactly. */
  async init(): Promise<void> {
    this.baseline = (await this.knownGood()).reward;
  }

  /**
   * Raw scores of `rm@1` in a 2xx /v1/score reply against the same model in JS, on the server's
   * own tokenization. Only for requests that carry rm's scores under an `rm` model label.
   */
  private oracle(request: FuzzRequest, json: ScoreReply): string | undefined {
    if (json.model_versions.rm !== '1') return undefined;
    const body = parsedPayload(request);
    if (!isRecord(body) || !Array.isArray(body.items)) return undefined;
    const spec = this.fuzz.service.registry.get('rm').spec;
    const side = body.truncation === 'left' || body.truncation === 'right' ? body.truncation : spec.truncationSide;
    for (const [i, result] of json.results.entries()) {
      const rm = Object.values(result.objectives).find((o) => o.model === 'rm');
      if (rm === undefined) continue;
      const { reference: _, ...item } = body.items[i] as Record<string, unknown>;
      // The body passed the schema (the reply is a 200), so the item has one of the scored shapes.
      const ids = spec.tokenizer.encode(spec.formatter.render(item as Parameters<typeof spec.formatter.render>[0]), side).ids;
      const expected = bowScore(this.fuzz.rmWeights, ids)[0] as number;
      this.stats.oracleChecks++;
      if (!(Math.abs(rm.raw - expected) <= 1e-5 * Math.max(1, Math.abs(expected)))) {
        return `items[${i}]: rm raw score ${rm.raw}, the JS model gives ${expected}`;
      }
    }
    return undefined;
  }

  /** Runs one case and the known-good check after it; returns what broke the property, if anything. */
  async run(request: FuzzRequest): Promise<string | undefined> {
    const s = this.stats;
    s.cases[request.route] = (s.cases[request.route] ?? 0) + 1;
    s.kinds[request.kind] = (s.kinds[request.kind] ?? 0) + 1;
    let problem: string | undefined;
    try {
      const reply = await this.fuzz.app.inject({
        method: request.method,
        url: request.url,
        headers: request.headers,
        ...(request.payload === undefined ? {} : { payload: request.payload }),
      });
      const errorCode = reply.statusCode >= 400 ? (parseJson(reply.body) as { value?: { error?: { code?: unknown } } }).value?.error?.code : undefined;
      this.lastOutcome = `${reply.statusCode}${typeof errorCode === 'string' ? ` ${errorCode}` : ''}`;
      const byStatus = (s.statuses[request.route] ??= {});
      byStatus[reply.statusCode] = (byStatus[reply.statusCode] ?? 0) + 1;
      if (reply.statusCode >= 500) s.fiveXx++;
      problem = checkReply(request, reply);
      if (problem === undefined && request.route === 'POST /v1/score' && reply.statusCode === 200) problem = this.oracle(request, reply.json<ScoreReply>());
      if (problem !== undefined && reply.statusCode < 500) s.violations++;
    } catch (err) {
      s.crashes++;
      problem = `inject rejected: ${(err as Error).stack ?? String(err)}`;
    }
    if (problem === undefined) {
      try {
        const after = await this.knownGood();
        s.knownGoodChecks++;
        if (!after.cached) s.knownGoodRecomputed++;
        if (after.reward !== this.baseline) {
          s.violations++;
          problem = `known-good score changed from ${this.baseline} to ${after.reward} (cached: ${after.cached})`;
        }
      } catch (err) {
        s.violations++;
        problem = `known-good check failed: ${(err as Error).message}`;
      }
    }
    if (problem !== undefined && s.failures.length < 50) s.failures.push({ route: request.route, kind: request.kind, problem, request });
    return problem;
  }
}

/** A short, printable form of a request (long strings cut), for failure reports. */
export function describeRequest(request: FuzzRequest): string {
  const payload = request.payload === undefined ? undefined : typeof request.payload === 'string' ? request.payload : `<${request.payload.length} bytes: ${request.payload.subarray(0, 64).toString('hex')}>`;
  const cut = (s: string): string => (s.length > 400 ? `${s.slice(0, 400)}… (${s.length} chars)` : s);
  return JSON.stringify({ method: request.method, url: cut(request.url), headers: request.headers, payload: payload === undefined ? undefined : cut(payload) });
}
