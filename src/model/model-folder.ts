// Reads a model folder (rmserve's own or a Hugging Face / optimum export) into a ModelSpec:
// everything the scorer needs besides the ONNX session itself.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { speedUpTokenizer } from './tokenizer-speedups.js';
import { PromptFormatter } from './format.js';
import { parseManifest, type RmserveManifest } from './manifest.js';
import { ItemTokenizer, type TruncationSide } from './tokenize.js';
import type { PaddingSide } from './onnx-session.js';
import { modelLoadFailed } from './errors.js';

export interface ModelSpec {
  dir: string;
  /** What the spec was built from, as read at load. */
  files: ModelFiles;
  /** Names of the K logits columns, or undefined to name a single head after the model. */
  labels: string[] | undefined;
  maxLength: number;
  paddingSide: PaddingSide;
  truncationSide: TruncationSide;
  padId: number;
  padIdSource: PadIdSource;
  formatter: PromptFormatter;
  tokenizer: ItemTokenizer;
  manifest: RmserveManifest | undefined;
}

type Json = Record<string, unknown>;

/** Lengths transformers uses to mean "no limit" are ignored in favour of the model config's. */
const UNSET_MAX_LENGTH = 1e9;
const DEFAULT_MAX_LENGTH = 1024;

/**
 * The JSON files a spec is built from, read once. A tokenizer worker gets these rather than the
 * folder's path, so it builds exactly the spec the main thread loaded even if the folder has
 * since been deleted or replaced by other weights under the same version name.
 */
export interface ModelFiles {
  tokenizerJson: Json;
  tokenizerConfig: Json;
  config: Json;
  manifest: Json | undefined;
}

export function readModelFiles(dir: string): ModelFiles {
  const files = {
    tokenizerJson: readJson(join(dir, 'tokenizer.json'), true) as Json,
    tokenizerConfig: readJson(join(dir, 'tokenizer_config.json'), false) ?? {},
    config: readJson(join(dir, 'config.json'), false) ?? {},
    manifest: readJson(join(dir, 'rmserve.json'), false),
  };
  if (!existsSync(join(dir, 'model.onnx'))) throw modelLoadFailed(`${dir}: model.onnx is missing`);
  return files;
}

export function readModelFolder(dir: string): ModelSpec {
  return specFromFiles(dir, readModelFiles(dir));
}

/** Everything but the ONNX session, from a folder's files (`dir` is only shown in messages). */
export function specFromFiles(dir: string, files: ModelFiles): ModelSpec {
  const { tokenizerJson, tokenizerConfig, config } = files;
  let manifest: RmserveManifest | undefined;
  try {
    manifest = files.manifest === undefined ? undefined : parseManifest(files.manifest);
  } catch (err) {
    throw modelLoadFailed((err as Error).message);
  }

  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    speedUpTokenizer(tokenizer);
  } catch (err) {
    throw modelLoadFailed(`${dir}: tokenizer.json does not load: ${(err as Error).message}`);
  }

  const { specialTokens, chatTemplate, padId, padIdSource } = tokenizerSettings(tokenizer, tokenizerConfig, config);
  const maxLength = manifest?.max_length ?? firstLength(tokenizerConfig.model_max_length, config.n_positions, config.max_position_embeddings);

  return {
    dir,
    files,
    labels: manifest?.objectives ?? labelsFromConfig(config),
    maxLength,
    paddingSide: manifest?.padding_side ?? sideOf(tokenizerConfig.padding_side) ?? 'right',
    truncationSide: manifest?.truncation_side ?? sideOf(tokenizerConfig.truncation_side) ?? 'left',
    padId,
    padIdSource,
    formatter: new PromptFormatter(chatTemplate, manifest?.prompt_format, specialTokens),
    tokenizer: new ItemTokenizer(tokenizer, maxLength),
    manifest,
  };
}

/**
 * What tokenizer_config.json (and config.json) say about special tokens, the chat template and
 * the pad id, read the way transformers does. The trainer uses it too, so both format alike.
 */
export function tokenizerSettings(
  tokenizer: Tokenizer,
  tokenizerConfig: Json,
  config: Json = {},
): { specialTokens: Record<string, string>; chatTemplate: string | undefined; padId: number; padIdSource: PadIdSource } {
  const specialTokens: Record<string, string> = {};
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    const token = tokenText(tokenizerConfig[key]);
    if (token !== undefined) specialTokens[key] = token;
  }
  const pad = padIdOf(tokenizer, specialTokens, config);
  return { specialTokens, chatTemplate: chatTemplateOf(tokenizerConfig.chat_template), padId: pad.id, padIdSource: pad.source };
}

function readJson(path: string, required: boolean): Json | undefined {
  if (!existsSync(path)) {
    if (required) throw modelLoadFailed(`${path} is missing`);
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Json;
  } catch (err) {
    throw modelLoadFailed(`${path}: ${(err as Error).message}`);
  }
}

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as Json).content === 'string') {
    return (value as Json).content as string;
  }
  return undefined;
}

/** tokenizer_config's chat_template is a string, or a list of named templates ("default" wins). */
function chatTemplateOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    return typeof pick?.template === 'string' ? pick.template : undefined;
  }
  return undefined;
}

function firstLength(...candidates: unknown[]): number {
  for (const value of candidates) {
    if (typeof value === 'number' && Number.isInteger(value) && value > 1 && value < UNSET_MAX_LENGTH) return value;
  }
  return DEFAULT_MAX_LENGTH;
}

function sideOf(value: unknown): 'left' | 'right' | undefined {
  return value === 'left' || value === 'right' ? value : undefined;
}

function labelsFromConfig(config: Json): string[] | undefined {
  const id2label = config.id2label;
  if (typeof id2label !== 'object' || id2label === null) return undefined;
  const entries = Object.entries(id2label as Json).sort(([a], [b]) => Number(a) - Number(b));
  const labels = entries.map(([, v]) => String(v));
  // transformers fills id2label with LABEL_0… when nobody named the heads: treat those as unnamed.
  return labels.every((l, i) => l === `LABEL_${i}`) && labels.length === 1 ? undefined : labels;
}

/** Where a model's pad id came from, shown in /v1/models. */
export type PadIdSource = 'config.pad_token_id' | 'tokenizer pad_token' | 'tokenizer eos_token' | 'config.eos_token_id' | 'default 0';

/**
 * The one pad-id rule, for loading and export alike. config.json's pad_token_id first: a
 * transformers `*ForSequenceClassification` graph finds the last real token by comparing
 * input_ids with it, so padding with anything else pools at a pad. Then the tokenizer's pad
 * token, then its EOS (what transformers' pipelines fall back to), then config's eos_token_id.
 */
export function padIdOf(tokenizer: Tokenizer, special: Record<string, string>, config: Json): { id: number; source: PadIdSource } {
  const fromConfig = firstId(config.pad_token_id);
  if (fromConfig !== undefined) return { id: fromConfig, source: 'config.pad_token_id' };
  for (const [key, source] of [['pad_token', 'tokenizer pad_token'], ['eos_token', 'tokenizer eos_token']] as const) {
    const name = special[key];
    const id = name === undefined ? undefined : tokenizer.token_to_id(name);
    if (id !== undefined) return { id, source };
  }
  const eos = firstId(config.eos_token_id);
  if (eos !== undefined) return { id: eos, source: 'config.eos_token_id' };
  return { id: 0, source: 'default 0' };
}

/** An id field of config.json: a number, or a list of them (Llama 3's eos_token_id) whose first counts. */
function firstId(value: unknown): number | undefined {
  const first = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof first === 'number' && Number.isInteger(first) && first >= 0 ? first : undefined;
}

/** config.json's KV-cache geometry, for decoder exports whose past inputs have symbolic dims. */
export function cacheShapeHints(config: Json): { numKeyValueHeads?: number; headDim?: number } {
  const num = (key: string): number | undefined => (typeof config[key] === 'number' ? (config[key] as number) : undefined);
  const heads = num('num_attention_heads') ?? num('n_head');
  const hidden = num('hidden_size') ?? num('n_embd');
  const headDim = num('head_dim') ?? (heads !== undefined && hidden !== undefined ? hidden / heads : undefined);
  const kvHeads = num('num_key_value_heads') ?? heads;
  return { ...(kvHeads === undefined ? {} : { numKeyValueHeads: kvHeads }), ...(headDim === undefined ? {} : { headDim }) };
}
