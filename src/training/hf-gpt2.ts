import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, toFloat32, type NamedTensor } from './safetensors.js';

/**
 * Loads a Hugging Face GPT-2 checkpoint (config.json + model.safetensors, or a sharded
 * model.safetensors.index.json) into the trainer's framework-neutral parameter dictionary.
 *
 * Our parameter names and shapes (H = dModel, V = vocabSize, P = maxPositions, F = dFF = 4H
 * unless config.n_inner says otherwise); every weight is float32, row-major:
 *
 *   tok_emb                 [V, H]    token embedding; the LM head is tied to it (logits = x · tok_embᵀ)
 *   pos_emb                 [P, H]    learned position embedding
 *   blocks.{i}.ln1.g / .b   [H]       LayerNorm before attention (γ, β)
 *   blocks.{i}.attn.qkv.w   [H, 3H]   y = x · w + b; columns [0,H) are q, [H,2H) k, [2H,3H) v,
 *   blocks.{i}.attn.qkv.b   [3H]      and within each, head h owns columns [h·H/nHeads, (h+1)·H/nHeads)
 *   blocks.{i}.attn.proj.w  [H, H]    attention output projection, y = x · w + b
 *   blocks.{i}.attn.proj.b  [H]
 *   blocks.{i}.ln2.g / .b   [H]       LayerNorm before the MLP
 *   blocks.{i}.mlp.fc.w     [H, F]    y = gelu(x · w + b)
 *   blocks.{i}.mlp.fc.b     [F]
 *   blocks.{i}.mlp.proj.w   [F, H]
 *   blocks.{i}.mlp.proj.b   [H]
 *   ln_f.g / ln_f.b         [H]       final LayerNorm
 *
 * HF GPT-2 stores its linear layers as Conv1D with weight [in, out] and y = x · W + b — the same
 * layout as ours, so weights are copied, never transposed. The causal-mask buffers
 * (h.{i}.attn.bias / masked_bias) are not parameters and are skipped; any other tensor
 * (lm_head.weight, score.weight, ...) is reported in `ignored` rather than dropped silently.
 */

export interface Gpt2Config {
  dModel: number;
  nLayers: number;
  nHeads: number;
  maxPositions: number;
  vocabSize: number;
  /** MLP width (HF n_inner, default 4·dModel) */
  dFF: number;
  /** HF layer_norm_epsilon (GPT-2: 1e-5) */
  layerNormEpsilon: number;
  /** HF activation_function; GPT-2 uses "gelu_new", the tanh approximation */
  activation: string;
}

export interface Param {
  shape: number[];
  data: Float32Array;
}

export interface LoadedGpt2 {
  config: Gpt2Config;
  params: Map<string, Param>;
  /** checkpoint tensors that map to no parameter (other than the causal-mask buffers) */
  ignored: string[];
  /**
   * Those tensors themselves, by bare name (score.weight of GPT2ForSequenceClassification,
   * lm_head.weight when saved): hf-checkpoint.ts keeps a score head and checks a saved LM head is
   * the tied one.
   */
  others: Map<string, NamedTensor>;
}

interface HfGpt2ConfigJson {
  n_embd?: unknown;
  n_layer?: unknown;
  n_head?: unknown;
  n_positions?: unknown;
  n_ctx?: unknown;
  vocab_size?: unknown;
  n_inner?: unknown;
  layer_norm_epsilon?: unknown;
  activation_function?: unknown;
}

/** Reads an HF GPT-2 config.json into our config, checking the fields we depend on. */
export function parseHfGpt2Config(json: HfGpt2ConfigJson, source = 'config.json'): Gpt2Config {
  const int = (field: keyof HfGpt2ConfigJson, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new Error(`${source}: ${field} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const dModel = int('n_embd', json.n_embd);
  const nHeads = int('n_head', json.n_head);
  if (dModel % nHeads !== 0) throw new Error(`${source}: n_embd ${dModel} is not divisible by n_head ${nHeads}`);
  const epsilon = json.layer_norm_epsilon ?? 1e-5;
  if (typeof epsilon !== 'number' || !(epsilon > 0)) throw new Error(`${source}: layer_norm_epsilon must be a positive number`);
  return {
    dModel,
    nLayers: int('n_layer', json.n_layer),
    nHeads,
    maxPositions: int('n_positions', json.n_positions ?? json.n_ctx),
    vocabSize: int('vocab_size', json.vocab_size),
    dFF: json.n_inner === null || json.n_inner === undefined ? 4 * dModel : int('n_inner', json.n_inner),
    layerNormEpsilon: epsilon,
    activation: typeof json.activation_function === 'string' ? json.activation_function : 'gelu_new',
  };
}

/** Our name → HF name (without the optional "transformer." prefix) and expected shape. */
export function hfGpt2ParamTable(config: Gpt2Config): Array<{ name: string; hfName: string; shape: number[] }> {
  const { dModel: H, dFF: F, vocabSize: V, maxPositions: P } = config;
  const table = [
    { name: 'tok_emb', hfName: 'wte.weight', shape: [V, H] },
    { name: 'pos_emb', hfName: 'wpe.weight', shape: [P, H] },
  ];
  for (let i = 0; i < config.nLayers; i++) {
    const ours = `blocks.${i}`;
    const hf = `h.${i}`;
    table.push(
      { name: `${ours}.ln1.g`, hfName: `${hf}.ln_1.weight`, shape: [H] },
      { name: `${ours}.ln1.b`, hfName: `${hf}.ln_1.bias`, shape: [H] },
      { name: `${ours}.attn.qkv.w`, hfName: `${hf}.attn.c_attn.weight`, shape: [H, 3 * H] },
      { name: `${ours}.attn.qkv.b`, hfName: `${hf}.attn.c_attn.bias`, shape: [3 * H] },
      { name: `${ours}.attn.proj.w`, hfName: `${hf}.attn.c_proj.weight`, shape: [H, H] },
      { name: `${ours}.attn.proj.b`, hfName: `${hf}.attn.c_proj.bias`, shape: [H] },
      { name: `${ours}.ln2.g`, hfName: `${hf}.ln_2.weight`, shape: [H] },
      { name: `${ours}.ln2.b`, hfName: `${hf}.ln_2.bias`, shape: [H] },
      { name: `${ours}.mlp.fc.w`, hfName: `${hf}.mlp.c_fc.weight`, shape: [H, F] },
      { name: `${ours}.mlp.fc.b`, hfName: `${hf}.mlp.c_fc.bias`, shape: [F] },
      { name: `${ours}.mlp.proj.w`, hfName: `${hf}.mlp.c_proj.weight`, shape: [F, H] },
      { name: `${ours}.mlp.proj.b`, hfName: `${hf}.mlp.c_proj.bias`, shape: [H] },
    );
  }
  table.push(
    { name: 'ln_f.g', hfName: 'ln_f.weight', shape: [H] },
    { name: 'ln_f.b', hfName: 'ln_f.bias', shape: [H] },
  );
  return table;
}

/** All tensors of a checkpoint folder: model.safetensors, or the shards its index names. */
export function readCheckpointTensors(dir: string): Record<string, NamedTensor> {
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return readSafetensors(single).tensors;
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexPath)) {
    throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not read; convert them to safetensors)`);
  }
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map?: Record<string, string> };
  if (typeof index.weight_map !== 'object' || index.weight_map === null) throw new Error(`${indexPath}: no weight_map`);
  const tensors: Record<string, NamedTensor> = {};
  for (const shard of new Set(Object.values(index.weight_map))) {
    if (shard.includes('/') || shard.includes('\\')) throw new Error(`${indexPath}: shard name ${JSON.stringify(shard)} must be a file in the folder`);
    Object.assign(tensors, readSafetensors(join(dir, shard)).tensors);
  }
  // A weight_map entry whose shard lacks it is a broken download, not a smaller model.
  const absent = Object.keys(index.weight_map).filter((name) => !Object.hasOwn(tensors, name));
  if (absent.length > 0) throw new Error(`${indexPath}: ${absent.length} tensor(s) the index names are in none of the shards: ${absent.slice(0, 5).join(', ')}`);
  return tensors;
}

const CAUSAL_MASK_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;

export function loadHfGpt2(dir: string): LoadedGpt2 {
  const configPath = join(dir, 'config.json');
  const config = parseHfGpt2Config(JSON.parse(readFileSync(configPath, 'utf8')) as HfGpt2ConfigJson, configPath);
  const raw = readCheckpointTensors(dir);

  // GPT2Model saves bare names; GPT2LMHeadModel and *ForSequenceClassification prefix "transformer.".
  const byHfName = new Map<string, NamedTensor>();
  const ignored: string[] = [];
  for (const [name, tensor] of Object.entries(raw)) {
    const bare = name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
    if (byHfName.has(bare)) throw new Error(`${dir}: tensor ${bare} appears both with and without the "transformer." prefix`);
    byHfName.set(bare, tensor);
  }

  const params = new Map<string, Param>();
  const missing: string[] = [];
  for (const { name, hfName, shape } of hfGpt2ParamTable(config)) {
    const tensor = byHfName.get(hfName);
    if (tensor === undefined) {
      missing.push(hfName);
      continue;
    }
    byHfName.delete(hfName);
    if (tensor.shape.length !== shape.length || tensor.shape.some((d, k) => d !== shape[k])) {
      throw new Error(`${dir}: ${hfName} has shape ${JSON.stringify(tensor.shape)}, config.json implies ${JSON.stringify(shape)}`);
    }
    params.set(name, { shape: shape.slice(), data: toFloat32(tensor) });
  }
  if (missing.length > 0) {
    throw new Error(`${dir}: checkpoint lacks ${missing.length} GPT-2 tensor(s): ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
  }
  const others = new Map<string, NamedTensor>();
  for (const [name, tensor] of byHfName) {
    if (CAUSAL_MASK_BUFFER.test(name)) continue;
    ignored.push(name);
    others.set(name, tensor);
  }
  return { config, params, ignored: ignored.sort(), others };
}
