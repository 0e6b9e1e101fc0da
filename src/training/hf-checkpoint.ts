// Hugging Face checkpoint folders as a starting point for training: config.json + model.safetensors
// (or shards named by model.safetensors.index.json; F32, F16 or BF16, widened to float32) of GPT-2,
// Llama, Qwen2 or Qwen3, as *ForCausalLM (the reward head is new), *ForSequenceClassification (its
// score layer is kept, with the labels of id2label) or the bare *Model; the tokenizer and chat
// template come from the same folder when --tokenizer is not given.
//
// A config value the graph does not implement is refused with the field named (a RoPE scaling
// other than linear/llama3/dynamic-within-range, a sliding window shorter than --max-length, an
// activation other than SiLU, an LM head that contradicts tie_word_embeddings, quantized weights,
// …) rather than loaded into a model that computes something else; what is read but has no effect,
// and what is not read at all, is listed in `notes` for the log.
//
// Names: transformers' → the trainer's (model.ts, arch/*.ts). nn.Linear stores [out, in]; the
// trainer's weights are [in, out], so every projection is transposed here (embeddings and the LM
// head, [V, C] on both sides, are not):
//   model.embed_tokens.weight                  tok_emb              [V, C]
//   model.layers.{i}.input_layernorm.weight    blocks.{i}.attn_norm.g          [C]
//   model.layers.{i}.self_attn.q_proj.weight   blocks.{i}.attn.q.w  [C, H·D]    (.bias → .b)
//   model.layers.{i}.self_attn.k_proj.weight   blocks.{i}.attn.k.w  [C, Hkv·D]
//   model.layers.{i}.self_attn.v_proj.weight   blocks.{i}.attn.v.w  [C, Hkv·D]
//   model.layers.{i}.self_attn.o_proj.weight   blocks.{i}.attn.o.w  [H·D, C]
//   model.layers.{i}.self_attn.q_norm.weight   blocks.{i}.attn.q_norm.g        [D] (Qwen3; k_norm alike)
//   model.layers.{i}.post_attention_layernorm.weight  blocks.{i}.mlp_norm.g    [C]
//   model.layers.{i}.mlp.gate_proj.weight      blocks.{i}.mlp.gate.w [C, F]     (up_proj alike)
//   model.layers.{i}.mlp.down_proj.weight      blocks.{i}.mlp.down.w [F, C]
//   model.norm.weight                          norm_f.g             [C]
//   lm_head.weight                             lm_head              [V, C] (untied only)
//   score.weight                               head.out.w           [C, K] (*ForSequenceClassification)
// GPT-2 goes through hf-gpt2.ts (Conv1D is already [in, out]).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readTokenizerFiles, type TokenizerFiles } from './encode.js';
import { loadHfGpt2, readCheckpointTensors, type Gpt2Config, type LoadedGpt2, type Param } from './hf-gpt2.js';
import {
  defaultModelConfig, parameterSpecs, type Architecture, type HeadKind, type LlamaFamilyConfig, type RewardModelConfig, type RopeScaling,
} from './model.js';
import { toFloat32, type NamedTensor } from './safetensors.js';

type Json = Record<string, unknown>;

export type HfTask = 'causal-lm' | 'sequence-classification' | 'base';

/** The sizes a checkpoint fixes, to spread into defaultModelConfig. */
export type CheckpointModel = Pick<RewardModelConfig, 'arch' | 'vocabSize' | 'dModel' | 'nLayers' | 'nHeads' | 'dMlp' | 'activation' | 'layerNormEps' | 'initStd'>
  & { llama?: LlamaFamilyConfig };

export interface HfCheckpoint {
  dir: string;
  arch: Architecture;
  /** config.architectures[0], or what the tensors imply when it is absent */
  hfClass: string;
  task: HfTask;
  model: CheckpointModel;
  /** n_positions / max_position_embeddings */
  maxPositions: number;
  /** decoder parameters under the trainer's names and layouts (no reward head) */
  params: Map<string, Param>;
  /** *ForSequenceClassification: score.weight as head.out.w [C, K] and id2label in column order */
  score?: { weight: Param; labels: string[] };
  /** tensors of the checkpoint that no parameter takes */
  ignoredTensors: string[];
  /** lines for the log: what was read with a caveat, ignored, or not read */
  notes: string[];
}

export interface LoadOptions {
  /** --max-length: refused when longer than the checkpoint's positions (or its sliding window) */
  maxLength: number;
  /**
   * The loss reads log-probs (HaF-RM, GRM): an untied LM head is kept. Without, it is dropped,
   * since a [V, C] table with its two AdamW moments would cross the step for nothing.
   */
  needsLmHead: boolean;
}

// ---- config.json fields

/** Fields with no effect on the forward pass the trainer builds, and why. */
const NO_EFFECT: Readonly<Record<string, string>> = {
  bos_token_id: 'special tokens come from the tokenizer files',
  eos_token_id: 'special tokens come from the tokenizer files',
  pad_token_id: 'special tokens come from the tokenizer files',
  torch_dtype: 'weights are widened to float32',
  dtype: 'weights are widened to float32',
  use_cache: 'no KV cache in training',
  transformers_version: 'no effect',
  _name_or_path: 'no effect',
  architectures: 'read to tell the head apart',
  model_type: 'read to pick the block',
  initializer_range: 'read as the std of new parameters (the reward head)',
  problem_type: 'the reward is the score logit whatever the task was',
  label2id: 'id2label is read',
  return_dict: 'no effect',
  output_attentions: 'no effect',
  output_hidden_states: 'no effect',
  tokenizer_class: 'no effect',
  pretraining_tp: 'it splits the same products into slices: numerically the same model',
  attention_dropout: 'the graph has no dropout in the decoder (trained without it)',
  resid_pdrop: 'the graph has no dropout in the decoder (trained without it)',
  embd_pdrop: 'the graph has no dropout in the decoder (trained without it)',
  attn_pdrop: 'the graph has no dropout in the decoder (trained without it)',
  summary_type: 'GPT2DoubleHeadsModel only',
  summary_use_proj: 'GPT2DoubleHeadsModel only',
  summary_activation: 'GPT2DoubleHeadsModel only',
  summary_proj_to_labels: 'GPT2DoubleHeadsModel only',
  summary_first_dropout: 'GPT2DoubleHeadsModel only',
  reorder_and_upcast_attn: 'an fp16 stability reordering of the same product; the graph is float32',
  task_specific_params: 'no effect',
  n_ctx: 'n_positions is read',
};

/** Values that must hold for the graph to compute what the checkpoint was trained to compute. */
function refuse(source: string, field: string, value: unknown, why: string): never {
  throw new Error(`${source}: ${field} ${JSON.stringify(value)} is not supported: ${why}`);
}

function positiveInt(source: string, json: Json, field: string, fallback?: number): number {
  const value = json[field] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`${source}: ${field} must be a positive integer, got ${JSON.stringify(json[field])}`);
  }
  return value;
}

function positiveNumber(source: string, json: Json, field: string, fallback: number): number {
  const value = json[field] ?? fallback;
  if (typeof value !== 'number' || !(value > 0)) throw new Error(`${source}: ${field} must be a positive number, got ${JSON.stringify(json[field])}`);
  return value;
}

function bool(source: string, json: Json, field: string, fallback: boolean): boolean {
  const value = json[field] ?? fallback;
  if (typeof value !== 'boolean') throw new Error(`${source}: ${field} must be true or false, got ${JSON.stringify(json[field])}`);
  return value;
}

/**
 * The RoPE of config.json: transformers ≥ 5 writes rope_parameters {rope_type, rope_theta, …};
 * earlier ones rope_theta beside rope_scaling {rope_type (or type), factor, …} or null.
 */
function parseRope(source: string, json: Json, maxPositions: number, notes: string[]): { theta: number; scaling?: RopeScaling } {
  const nested = json.rope_parameters;
  const params: Json = nested !== undefined && nested !== null ? (nested as Json) : { ...((json.rope_scaling ?? {}) as Json), rope_theta: json.rope_theta };
  const field = nested !== undefined && nested !== null ? 'rope_parameters' : 'rope_scaling';
  if (typeof params !== 'object' || Array.isArray(params)) refuse(source, field, params, 'expected an object');
  const theta = positiveNumber(source, params, 'rope_theta', 10000);
  if (json.partial_rotary_factor !== undefined && json.partial_rotary_factor !== null && json.partial_rotary_factor !== 1) {
    refuse(source, 'partial_rotary_factor', json.partial_rotary_factor, 'the graph rotates every dimension of a head');
  }
  const type = params.rope_type ?? params.type ?? 'default';
  const num = (key: string): number => {
    const v = params[key];
    if (typeof v !== 'number' || !(v > 0)) throw new Error(`${source}: ${field}.${key} must be a positive number for rope_type ${String(type)}, got ${JSON.stringify(v)}`);
    return v;
  };
  const known = new Set(['rope_type', 'type', 'rope_theta']);
  const rest = (keys: string[]): void => {
    const extra = Object.keys(params).filter((k) => !known.has(k) && !keys.includes(k));
    if (extra.length > 0) notes.push(`${field}: not read: ${extra.join(', ')}`);
  };
  switch (type) {
    case 'default':
      rest([]);
      return { theta };
    case 'linear':
      rest(['factor']);
      return { theta, scaling: { type: 'linear', factor: num('factor') } };
    case 'llama3': {
      rest(['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']);
      const scaling: RopeScaling = {
        type: 'llama3', factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings'),
      };
      if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) refuse(source, `${field}.high_freq_factor`, scaling.highFreqFactor, 'must exceed low_freq_factor');
      return { theta, scaling };
    }
    case 'dynamic':
      // Dynamic NTK rescales only for sequences longer than max_position_embeddings, which
      // --max-length may not exceed (checked by the caller): up to there it is the default RoPE.
      rest(['factor', 'original_max_position_embeddings']);
      notes.push(`${field}: rope_type dynamic is the default RoPE for sequences up to max_position_embeddings (${maxPositions}), which --max-length does not exceed`);
      return { theta };
    default:
      return refuse(source, `${field}.rope_type`, type, 'the graph implements RoPE default, linear, llama3 and dynamic (within max_position_embeddings); not yarn, longrope or ntk');
  }
}

/** Qwen2/Qwen3's sliding window: refused only where it would mask something (a window shorter than --max-length). */
function checkSlidingWindow(source: string, json: Json, nLayers: number, maxLength: number, notes: string[]): void {
  const layerTypes = Array.isArray(json.layer_types) ? (json.layer_types as unknown[]) : undefined;
  const maxWindowLayers = typeof json.max_window_layers === 'number' ? json.max_window_layers : nLayers;
  const sliding = layerTypes
    ? layerTypes.some((t) => t === 'sliding_attention')
    : json.use_sliding_window === true && maxWindowLayers < nLayers;
  if (layerTypes && layerTypes.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) {
    refuse(source, 'layer_types', layerTypes, 'layers are full_attention or sliding_attention');
  }
  if (!sliding) {
    if (json.sliding_window !== undefined && json.sliding_window !== null) notes.push(`sliding_window ${String(json.sliding_window)}: not used (use_sliding_window is off)`);
    return;
  }
  const window = json.sliding_window;
  if (window === null || window === undefined) return;
  if (typeof window !== 'number' || window < maxLength) {
    refuse(source, 'sliding_window', window, `sliding-window attention is not in the graph, and a window shorter than --max-length ${maxLength} would mask keys the graph attends to`);
  }
  notes.push(`sliding_window ${window} ≥ --max-length ${maxLength}: it masks nothing, so full attention computes the same`);
}

const LLAMA_FAMILY_FIELDS: Readonly<Record<Exclude<Architecture, 'gpt2'>, readonly string[]>> = {
  llama: ['attention_bias', 'mlp_bias', 'head_dim'],
  qwen2: ['use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types'],
  qwen3: ['attention_bias', 'head_dim', 'use_sliding_window', 'sliding_window', 'max_window_layers', 'layer_types'],
};

const COMMON_FIELDS = [
  'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'intermediate_size', 'vocab_size',
  'max_position_embeddings', 'rms_norm_eps', 'hidden_act', 'rope_theta', 'rope_scaling', 'rope_parameters', 'partial_rotary_factor',
  'tie_word_embeddings', 'num_labels', 'id2label',
];

/** Fields that change the computation in ways no Llama/Qwen block here has; present and set, they are refused. */
const FOREIGN_FIELDS: Readonly<Record<string, string>> = {
  quantization_config: 'quantized weights are not read; give the full-precision checkpoint',
  attn_logit_softcapping: 'logit soft-capping (Gemma 2) is not in the graph',
  final_logit_softcapping: 'logit soft-capping (Gemma 2) is not in the graph',
  query_pre_attn_scalar: 'a query scale other than head_dim^-0.5 is not in the graph',
  embedding_multiplier: 'scaled embeddings are not in the graph',
  logits_scaling: 'scaled logits are not in the graph',
  residual_multiplier: 'scaled residuals are not in the graph',
  attention_multiplier: 'a query scale other than head_dim^-0.5 is not in the graph',
  num_experts: 'mixture-of-experts layers are not in the graph',
  num_local_experts: 'mixture-of-experts layers are not in the graph',
};

interface ParsedConfig {
  model: CheckpointModel;
  maxPositions: number;
  tie: boolean;
  numLabels?: number;
  labels?: string[];
}

function parseLlamaFamily(source: string, arch: Exclude<Architecture, 'gpt2'>, json: Json, maxLength: number, notes: string[]): ParsedConfig {
  for (const [field, why] of Object.entries(FOREIGN_FIELDS)) {
    const v = json[field];
    if (v !== undefined && v !== null && v !== false && v !== 0) refuse(source, field, v, why);
  }
  const C = positiveInt(source, json, 'hidden_size');
  const H = positiveInt(source, json, 'num_attention_heads');
  const Hkv = positiveInt(source, json, 'num_key_value_heads', H);
  if (H % Hkv !== 0) refuse(source, 'num_key_value_heads', Hkv, `num_attention_heads ${H} must be a multiple of it`);
  // Qwen2 has no head_dim field in transformers; Llama and Qwen3 default it to C/H (null means the same).
  const headDimField = arch === 'qwen2' ? undefined : json.head_dim;
  const D = headDimField === undefined || headDimField === null ? C / H : positiveInt(source, json, 'head_dim');
  if (!Number.isInteger(D)) refuse(source, 'hidden_size', C, `not divisible by num_attention_heads ${H}, and no head_dim is given`);
  const maxPositions = positiveInt(source, json, 'max_position_embeddings');
  if (maxLength > maxPositions) refuse(source, 'max_position_embeddings', maxPositions, `--max-length ${maxLength} is longer than the positions the model was trained on`);
  const act = json.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') refuse(source, 'hidden_act', act, 'the MLP is SwiGLU with SiLU');
  const rope = parseRope(source, json, maxPositions, notes);
  const nLayers = positiveInt(source, json, 'num_hidden_layers');
  if (arch !== 'llama') checkSlidingWindow(source, json, nLayers, maxLength, notes);
  const attentionBias = arch === 'qwen2' ? true : bool(source, json, 'attention_bias', false);
  const mlpBias = arch === 'llama' ? bool(source, json, 'mlp_bias', false) : false;
  if (arch !== 'llama' && json.mlp_bias === true) refuse(source, 'mlp_bias', true, `${arch} has no MLP biases`);
  const tie = bool(source, json, 'tie_word_embeddings', false);
  if (typeof json.hidden_act === 'string' && json.hidden_act === 'swish') notes.push('hidden_act swish: the same function as silu');
  const rms = positiveNumber(source, json, 'rms_norm_eps', 1e-6);
  const known = new Set([...COMMON_FIELDS, ...LLAMA_FAMILY_FIELDS[arch], ...Object.keys(NO_EFFECT)]);
  notFields(json, known, notes);
  return {
    model: {
      arch, vocabSize: positiveInt(source, json, 'vocab_size'), dModel: C, nLayers, nHeads: H, dMlp: positiveInt(source, json, 'intermediate_size'),
      activation: 'silu', layerNormEps: rms, initStd: initStd(json),
      llama: {
        nKvHeads: Hkv, headDim: D, ropeTheta: rope.theta, ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
        lmHead: 'tied', attentionBias, mlpBias,
      },
    },
    maxPositions, tie, ...labelsOf(source, json),
  };
}

function initStd(json: Json): number {
  return typeof json.initializer_range === 'number' && json.initializer_range > 0 ? json.initializer_range : 0.02;
}

/** Notes for the fields read without effect (grouped by why) and for those not read at all. */
function notFields(json: Json, known: ReadonlySet<string>, notes: string[]): void {
  const read = new Set(['architectures', 'model_type', 'initializer_range', 'label2id']);
  const byWhy = new Map<string, string[]>();
  for (const k of Object.keys(json)) {
    if (!Object.hasOwn(NO_EFFECT, k) || read.has(k) || json[k] === null) continue;
    const why = NO_EFFECT[k] as string;
    byWhy.set(why, [...(byWhy.get(why) ?? []), k]);
  }
  if (byWhy.size > 0) notes.push(`config.json, no effect on the graph: ${[...byWhy].map(([why, ks]) => `${ks.join(', ')} (${why})`).join('; ')}`);
  const unread = Object.keys(json).filter((k) => !known.has(k));
  if (unread.length > 0) notes.push(`config.json, not read: ${unread.join(', ')}`);
}

function labelsOf(source: string, json: Json): { numLabels?: number; labels?: string[] } {
  const id2label = json.id2label;
  if (id2label === undefined || id2label === null) {
    return typeof json.num_labels === 'number' ? { numLabels: json.num_labels } : {};
  }
  if (typeof id2label !== 'object' || Array.isArray(id2label)) throw new Error(`${source}: id2label must be an object`);
  const entries = Object.entries(id2label as Json);
  const labels = entries.map((_, i) => {
    const name = (id2label as Json)[String(i)];
    if (typeof name !== 'string') throw new Error(`${source}: id2label must name ids 0..${entries.length - 1}, got ${JSON.stringify(id2label)}`);
    return name;
  });
  return { numLabels: labels.length, labels };
}

function parseGpt2(source: string, json: Json, loaded: Gpt2Config, maxLength: number, notes: string[]): ParsedConfig {
  const activation = json.activation_function ?? 'gelu_new';
  // gelu_pytorch_tanh and gelu_fast are the tanh approximation gelu_new is, written differently.
  const tanhForms = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'];
  if (activation !== 'gelu' && !tanhForms.includes(activation as string)) refuse(source, 'activation_function', activation, 'GPT-2\'s MLP runs gelu_new (tanh) or gelu (erf)');
  if (json.scale_attn_weights === false) refuse(source, 'scale_attn_weights', false, 'the graph divides attention scores by √D');
  if (json.scale_attn_by_inverse_layer_idx === true) refuse(source, 'scale_attn_by_inverse_layer_idx', true, 'the graph does not scale scores by layer');
  if (json.add_cross_attention === true) refuse(source, 'add_cross_attention', true, 'the decoder has no cross-attention');
  for (const field of ['quantization_config']) if (json[field] !== undefined && json[field] !== null) refuse(source, field, json[field], FOREIGN_FIELDS[field] as string);
  if (maxLength > loaded.maxPositions) refuse(source, 'n_positions', loaded.maxPositions, `--max-length ${maxLength} is longer than the learned position embedding`);
  const tie = bool(source, json, 'tie_word_embeddings', true);
  if (!tie) refuse(source, 'tie_word_embeddings', false, 'GPT-2\'s LM head is the token embedding in this trainer');
  notFields(json, new Set([
    'n_embd', 'n_layer', 'n_head', 'n_positions', 'n_inner', 'vocab_size', 'layer_norm_epsilon', 'activation_function', 'scale_attn_weights',
    'scale_attn_by_inverse_layer_idx', 'add_cross_attention', 'tie_word_embeddings', 'num_labels', 'id2label', ...Object.keys(NO_EFFECT),
  ]), notes);
  return {
    model: {
      arch: 'gpt2', vocabSize: loaded.vocabSize, dModel: loaded.dModel, nLayers: loaded.nLayers, nHeads: loaded.nHeads, dMlp: loaded.dFF,
      activation: activation === 'gelu' ? 'gelu' : 'gelu_new', layerNormEps: loaded.layerNormEpsilon, initStd: initStd(json),
    },
    maxPositions: loaded.maxPositions, tie, ...labelsOf(source, json),
  };
}

// ---- tensors

/** transformers' name (without the base-model prefix) of one of the trainer's Llama-family parameters. */
function hfName(name: string): string {
  if (name === 'tok_emb') return 'embed_tokens.weight';
  if (name === 'norm_f.g') return 'norm.weight';
  if (name === 'lm_head') return 'lm_head.weight';
  const m = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (!m) throw new Error(`no Hugging Face name for ${name}`);
  const [, i, rest] = m as unknown as [string, string, string];
  const table: Record<string, string> = {
    'attn_norm.g': 'input_layernorm.weight',
    'mlp_norm.g': 'post_attention_layernorm.weight',
    'attn.q_norm.g': 'self_attn.q_norm.weight',
    'attn.k_norm.g': 'self_attn.k_norm.weight',
  };
  if (table[rest]) return `layers.${i}.${table[rest]}`;
  const proj = /^(attn|mlp)\.(q|k|v|o|gate|up|down)\.(w|b)$/.exec(rest);
  if (!proj) throw new Error(`no Hugging Face name for ${name}`);
  const [, block, which, wb] = proj as unknown as [string, string, string, string];
  return `layers.${i}.${block === 'attn' ? 'self_attn' : 'mlp'}.${which}_proj.${wb === 'w' ? 'weight' : 'bias'}`;
}

/** Whether the trainer's layout of this parameter is transformers' transposed (a projection weight). */
function transposed(name: string): boolean {
  return /^blocks\.\d+\.(attn|mlp)\.(q|k|v|o|gate|up|down)\.w$/.test(name);
}

/** Our parameter ↔ transformers' tensor, for every decoder parameter of a Llama-family model (used by the parity test too). */
export function hfParamTable(model: CheckpointModel & { llama: LlamaFamilyConfig }): Array<{ name: string; hfName: string; shape: number[]; transpose: boolean }> {
  const config = defaultModelConfig({ ...model, maxLength: 1 });
  return parameterSpecs(config).filter((s) => !s.name.startsWith('head.')).map((s) => {
    const transpose = transposed(s.name);
    return { name: s.name, hfName: hfName(s.name), shape: s.shape, transpose };
  });
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c] as number;
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function taskOf(hfClass: string | undefined, tensorNames: ReadonlySet<string>): { task: HfTask; hfClass: string } {
  if (hfClass?.endsWith('ForSequenceClassification')) return { task: 'sequence-classification', hfClass };
  if (hfClass?.endsWith('ForCausalLM') || hfClass === 'GPT2LMHeadModel') return { task: 'causal-lm', hfClass };
  if (hfClass?.endsWith('Model')) return { task: 'base', hfClass };
  if (hfClass !== undefined) throw new Error(`architectures ${JSON.stringify(hfClass)}: expected a *ForCausalLM, *ForSequenceClassification or *Model class`);
  if (tensorNames.has('score.weight')) return { task: 'sequence-classification', hfClass: '(no architectures; score.weight present)' };
  return { task: tensorNames.has('lm_head.weight') ? 'causal-lm' : 'base', hfClass: '(no architectures in config.json)' };
}

function scoreOf(source: string, tensor: NamedTensor | undefined, C: number, parsed: ParsedConfig): HfCheckpoint['score'] {
  if (tensor === undefined) throw new Error(`${source}: a *ForSequenceClassification checkpoint without score.weight`);
  const [K, width] = tensor.shape as [number, number];
  if (tensor.shape.length !== 2 || width !== C) throw new Error(`${source}: score.weight has shape ${JSON.stringify(tensor.shape)}, expected [num_labels, ${C}]`);
  if (parsed.numLabels !== undefined && parsed.numLabels !== K) refuse(source, 'num_labels', parsed.numLabels, `score.weight has ${K} rows`);
  const labels = parsed.labels ?? Array.from({ length: K }, (_, i) => `LABEL_${i}`);
  return { weight: { shape: [C, K], data: transpose2d(toFloat32(tensor), K, C) }, labels };
}

function dtypeNote(tensors: Iterable<NamedTensor>): string {
  const dtypes = [...new Set([...tensors].map((t) => t.dtype))].sort();
  return `weights stored as ${dtypes.join(', ')}${dtypes.every((d) => d === 'F32') ? '' : ', widened to float32'}`;
}

function loadGpt2Checkpoint(dir: string, json: Json, options: LoadOptions): HfCheckpoint {
  const source = join(dir, 'config.json');
  const loaded: LoadedGpt2 = loadHfGpt2(dir);
  const notes: string[] = [];
  const parsed = parseGpt2(source, json, loaded.config, options.maxLength, notes);
  const { task, hfClass } = taskOf(Array.isArray(json.architectures) ? (json.architectures[0] as string) : undefined, new Set(loaded.others.keys()));
  const lm = loaded.others.get('lm_head.weight');
  if (lm !== undefined && !sameValues(toFloat32(lm), (loaded.params.get('tok_emb') as Param).data)) {
    refuse(source, 'tie_word_embeddings', true, 'lm_head.weight differs from wte.weight, and GPT-2\'s LM head is the token embedding');
  }
  const score = task === 'sequence-classification' ? scoreOf(source, loaded.others.get('score.weight'), loaded.config.dModel, parsed) : undefined;
  const used = new Set(['lm_head.weight', ...(score ? ['score.weight'] : [])]);
  return {
    dir, arch: 'gpt2', hfClass, task, model: parsed.model, maxPositions: parsed.maxPositions, params: loaded.params,
    ...(score ? { score } : {}), ignoredTensors: loaded.ignored.filter((n) => !used.has(n)), notes,
  };
}

/** Reads a Hugging Face checkpoint folder; refuses (with the field named) what the graph cannot compute. */
// Slightly over 80 lines: the refusals are checked in the order the fields are read, so a
// refused checkpoint names the first field the graph cannot compute, as the tests expect.
export function loadHfCheckpoint(dir: string, options: LoadOptions): HfCheckpoint {
  const source = join(dir, 'config.json');
  if (!existsSync(source)) throw new Error(`${dir}: no config.json (a Hugging Face model folder has config.json beside model.safetensors)`);
  const json = JSON.parse(readFileSync(source, 'utf8')) as Json;
  const modelType = json.model_type;
  // GPT-2 configs written by hand (and by old tools) may lack model_type; its n_embd/n_layer names are GPT-2's alone.
  if (modelType === 'gpt2' || (modelType === undefined && json.n_embd !== undefined)) return loadGpt2Checkpoint(dir, json, options);
  if (modelType !== 'llama' && modelType !== 'qwen2' && modelType !== 'qwen3') {
    refuse(source, 'model_type', modelType, 'the trainer has blocks for gpt2, llama, qwen2 and qwen3');
  }
  const arch = modelType;
  const notes: string[] = [];
  const parsed = parseLlamaFamily(source, arch, json, options.maxLength, notes);
  const raw = readCheckpointTensors(dir);

  // *ForCausalLM and *ForSequenceClassification prefix the body with "model."; the bare *Model does not.
  const byName = new Map<string, NamedTensor>();
  for (const [name, tensor] of Object.entries(raw)) {
    const bare = name.startsWith('model.') ? name.slice('model.'.length) : name;
    if (byName.has(bare)) throw new Error(`${dir}: tensor ${bare} appears both with and without the "model." prefix`);
    byName.set(bare, tensor);
  }
  const hfClassField = Array.isArray(json.architectures) ? (json.architectures[0] as unknown) : undefined;
  const { task, hfClass } = taskOf(typeof hfClassField === 'string' ? hfClassField : undefined, new Set(byName.keys()));

  // The LM head: tied (the embedding), untied (lm_head.weight), or none in the graph.
  const lm = byName.get('lm_head.weight');
  const llama = parsed.model.llama as LlamaFamilyConfig;
  let lmHead: LlamaFamilyConfig['lmHead'];
  if (parsed.tie) {
    if (lm !== undefined) {
      const emb = byName.get('embed_tokens.weight');
      if (emb === undefined || !sameValues(toFloat32(lm), toFloat32(emb))) {
        refuse(source, 'tie_word_embeddings', true, 'the checkpoint\'s lm_head.weight differs from model.embed_tokens.weight');
      }
    }
    lmHead = 'tied';
  } else if (lm !== undefined) {
    lmHead = options.needsLmHead ? 'untied' : 'none';
    if (!options.needsLmHead) notes.push('lm_head.weight: not loaded, the loss reads no log-probs (an untied [V, C] table would only cross the step)');
  } else if (task === 'causal-lm') {
    refuse(source, 'tie_word_embeddings', false, `${hfClass} has no lm_head.weight to be untied from`);
  } else {
    lmHead = 'none';
  }
  if (lmHead === 'none' && options.needsLmHead) {
    throw new Error(`${dir}: the loss reads log-probs through the LM head, which this ${hfClass} checkpoint does not have ` +
      '(tie_word_embeddings false and no lm_head.weight); start from the *ForCausalLM checkpoint');
  }
  const model: CheckpointModel & { llama: LlamaFamilyConfig } = { ...parsed.model, llama: { ...llama, lmHead } };

  const params = new Map<string, Param>();
  const missing: string[] = [];
  const used = new Set<string>();
  for (const { name, hfName: hf, shape, transpose } of hfParamTable(model)) {
    const tensor = byName.get(hf);
    if (tensor === undefined) {
      missing.push(name === 'lm_head' ? hf : `model.${hf}`);
      continue;
    }
    used.add(hf);
    const hfShape = transpose ? [shape[1] as number, shape[0] as number] : shape;
    if (!sameShape(tensor.shape, hfShape)) {
      throw new Error(`${dir}: ${hf} has shape ${JSON.stringify(tensor.shape)}, config.json implies ${JSON.stringify(hfShape)}`);
    }
    const data = toFloat32(tensor);
    params.set(name, { shape: shape.slice(), data: transpose ? transpose2d(data, hfShape[0] as number, hfShape[1] as number) : data });
  }
  if (missing.length > 0) {
    throw new Error(`${dir}: checkpoint lacks ${missing.length} ${arch} tensor(s): ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
  }
  if (lm !== undefined) used.add('lm_head.weight');
  const score = task === 'sequence-classification' ? scoreOf(source, byName.get('score.weight'), model.dModel, parsed) : undefined;
  if (score) used.add('score.weight');
  // Older transformers saved RoPE's inverse frequencies as a buffer; the graph computes its own.
  const buffers = [...byName.keys()].filter((n) => /\.rotary_emb\.inv_freq$/.test(n));
  for (const n of buffers) used.add(n);
  if (buffers.length > 0) notes.push(`${buffers.length} rotary_emb.inv_freq buffer(s): not read (the graph computes RoPE from rope_theta)`);
  notes.push(dtypeNote([...byName].filter(([n]) => used.has(n)).map(([, t]) => t)));
  return {
    dir, arch, hfClass, task, model, maxPositions: parsed.maxPositions, params, ...(score ? { score } : {}),
    ignoredTensors: [...byName.keys()].filter((n) => !used.has(n)).sort(), notes,
  };
}

// ---- what runTraining needs

export interface PretrainedStart {
  /** to spread into defaultModelConfig (the vocabulary is the larger of the tokenizer's and the checkpoint's) */
  sizes: CheckpointModel;
  /** initFromPretrained's pretrained parameters: the decoder, and head.out.w when the score layer is kept */
  params: Map<string, Param>;
  checkpoint: HfCheckpoint;
}

/**
 * The checkpoint as runTraining's start: sizes, parameters, and the score layer's columns put in
 * the order of the data's objectives (matched by id2label name, or the one column to the one
 * objective); logs what it read and what it did not.
 */
export function pretrainedStart(
  dir: string,
  options: LoadOptions & { vocabSize: number; objectives: readonly string[]; head: HeadKind; log: (line: string) => void },
): PretrainedStart {
  const checkpoint = loadHfCheckpoint(dir, options);
  const { log } = options;
  log(`--init-from ${dir}: ${checkpoint.hfClass} (${checkpoint.arch}; ${checkpoint.task === 'causal-lm' ? 'a new reward head' : checkpoint.task === 'base' ? 'no head: a new reward head' : 'its score head'})`);
  for (const note of checkpoint.notes) log(`  ${note}`);
  if (checkpoint.ignoredTensors.length > 0) {
    log(`  tensors not loaded: ${checkpoint.ignoredTensors.slice(0, 8).join(', ')}${checkpoint.ignoredTensors.length > 8 ? ` and ${checkpoint.ignoredTensors.length - 8} more` : ''}`);
  }
  const params = new Map(checkpoint.params);
  const score = checkpoint.score;
  if (score && options.head !== 'linear') {
    log(`  score.weight: not used, --head ${options.head} starts a new head`);
  } else if (score) {
    const { labels } = score;
    let columns: number[];
    if (options.objectives.every((o) => labels.includes(o))) {
      columns = options.objectives.map((o) => labels.indexOf(o));
    } else if (labels.length === 1 && options.objectives.length === 1) {
      columns = [0];
      log(`  score.weight: its one column (${labels[0]}) scores objective ${options.objectives[0]}`);
    } else {
      throw new Error(`${dir}: score.weight scores ${JSON.stringify(labels)} (config.json id2label); the data's objectives are ` +
        `${JSON.stringify(options.objectives)}: name them after the labels (--objective, the data's objective field), or start from the *ForCausalLM checkpoint for a new head`);
    }
    const [C, K] = score.weight.shape as [number, number];
    const data = new Float32Array(C * columns.length);
    for (let r = 0; r < C; r++) columns.forEach((k, j) => { data[r * columns.length + j] = score.weight.data[r * K + k] as number; });
    params.set('head.out.w', { shape: [C, columns.length], data });
    if (columns.length < K) log(`  score.weight: ${K - columns.length} column(s) the data has no objective for are dropped`);
  }
  return { sizes: { ...checkpoint.model, vocabSize: Math.max(options.vocabSize, checkpoint.model.vocabSize) }, params, checkpoint };
}

/**
 * The run's options with --tokenizer defaulting to the --init-from folder's tokenizer.json (a
 * checkpoint is trained with its own tokenizer; one from elsewhere would feed it other ids).
 */
export function withCheckpointTokenizer<T extends { tokenizer?: string | undefined; initFrom?: string | undefined }>(o: T): T {
  if (o.tokenizer !== undefined || o.initFrom === undefined) return o;
  const path = join(o.initFrom, 'tokenizer.json');
  if (!existsSync(path)) throw new Error(`--init-from ${o.initFrom} has no tokenizer.json: pass the checkpoint's tokenizer with --tokenizer`);
  return { ...o, tokenizer: path };
}

/**
 * readTokenizerFiles, plus the chat template of a folder that keeps it in chat_template.jinja
 * (transformers ≥ 4.43 saves it there rather than in tokenizer_config.json).
 */
export function readFolderTokenizer(tokenizerPath: string, maxLength: number): TokenizerFiles {
  const files = readTokenizerFiles(tokenizerPath, maxLength);
  const jinja = join(dirname(tokenizerPath), 'chat_template.jinja');
  const configPath = join(dirname(tokenizerPath), 'tokenizer_config.json');
  const own = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as Json).chat_template : undefined;
  if (own === undefined && existsSync(jinja)) return { ...files, tokenizerConfig: { ...files.tokenizerConfig, chat_template: readFileSync(jinja, 'utf8') } };
  return files;
}
