// The SFT phase's output: a Hugging Face causal-LM folder — config.json (GPT2LMHeadModel, or
// {Llama,Qwen2,Qwen3}ForCausalLM), model.safetensors (float32, transformers' tensor names and
// layouts), tokenizer.json and tokenizer_config.json — plus rmserve-sft.json (what the phase was
// trained on and how well it fits) and train-metrics.jsonl.
//
// Why this format rather than teaching --init-from to read rmserve's own folders: --init-from
// already reads it (hf-checkpoint.ts, with PyTorch parity tests), so the following HaF-RM or GRM
// run goes through the one tested loader; and the folder is an ordinary checkpoint that
// transformers opens (GPT2LMHeadModel.from_pretrained) for inspection or sampling. An rmserve
// reward folder holds the weights only inside model.onnx, with no LM head output.
//
// Layouts are the inverse of the loaders': GPT-2 as hf-gpt2.ts reads it (Conv1D [in, out], the
// trainer's own layout, under "transformer."); the Llama family as hf-checkpoint.ts reads it
// (nn.Linear [out, in], so projections are transposed back, under "model."; an untied LM head as
// lm_head.weight). The folder is built under a dot-name beside --out and renamed into place, so
// a kill leaves the previous folder or the new one.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { TokenizerFiles } from './encode.js';
import { hfConfig } from './export.js';
import { hfParamTable } from './hf-checkpoint.js';
import { hfGpt2ParamTable } from './hf-gpt2.js';
import { archOf, type ModelWeights, type RewardModelConfig } from './model.js';
import { serializeSafetensors, type NamedTensor } from './safetensors.js';

/** rmserve-sft.json: beside the weights, read back by the --init-from run for its provenance. */
export const SFT_INFO_FILE = 'rmserve-sft.json';

export interface CausalLmFolder {
  config: RewardModelConfig;
  weights: ModelWeights;
  tokenizer: TokenizerFiles;
  /** rmserve-sft.json's contents */
  info: Record<string, unknown>;
  /** other files by name (train-metrics.jsonl) */
  files?: Readonly<Record<string, string | Uint8Array>>;
}

// The reward-model config keys hfConfig adds that a causal LM has not.
const REWARD_KEYS = new Set(['num_labels', 'id2label', 'label2id', 'pad_token_id', 'rmserve_head', 'rmserve_head_hidden']);

/** config.json of the causal LM: export.ts's description of the sizes, as the *ForCausalLM class. */
export function causalLmConfig(config: RewardModelConfig): Record<string, unknown> {
  const described = Object.entries(hfConfig(config, ['lm'], undefined)).filter(([key]) => !REWARD_KEYS.has(key));
  const arch = archOf(config);
  const cls = arch === 'gpt2' ? 'GPT2LMHeadModel' : `${{ llama: 'Llama', qwen2: 'Qwen2', qwen3: 'Qwen3' }[arch]}ForCausalLM`;
  // GPT-2's LM head is the token embedding (transformers' default; said so for a reader).
  return { ...Object.fromEntries(described), architectures: [cls], ...(arch === 'gpt2' ? { tie_word_embeddings: true } : {}) };
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c] as number;
  return out;
}

/** The decoder's weights under transformers' names and layouts (the reward head is not part of a causal LM). */
export function causalLmTensors(config: RewardModelConfig, weights: ModelWeights): Record<string, NamedTensor> {
  const get = (name: string): Float32Array => {
    const data = weights.get(name);
    if (data === undefined) throw new Error(`weights are missing ${name}`);
    return data;
  };
  const tensors: Record<string, NamedTensor> = {};
  if (archOf(config) === 'gpt2') {
    const table = hfGpt2ParamTable({
      dModel: config.dModel, nLayers: config.nLayers, nHeads: config.nHeads, maxPositions: config.maxLength, vocabSize: config.vocabSize,
      dFF: config.dMlp, layerNormEpsilon: config.layerNormEps, activation: config.activation,
    });
    for (const { name, hfName, shape } of table) tensors[`transformer.${hfName}`] = { dtype: 'F32', shape, data: get(name) };
    return tensors;
  }
  if (config.llama === undefined) throw new Error(`a ${config.arch} config needs its llama settings`);
  for (const { name, hfName, shape, transpose } of hfParamTable({ ...config, llama: config.llama })) {
    const [rows, cols] = shape as [number, number];
    const data = get(name);
    tensors[name === 'lm_head' ? hfName : `model.${hfName}`] = transpose
      ? { dtype: 'F32', shape: [cols, rows], data: transpose2d(data, rows, cols) }
      : { dtype: 'F32', shape, data };
  }
  return tensors;
}

/** Writes the causal-LM folder at `outDir` (replacing one there) through a staging folder beside it. */
export function writeCausalLmFolder(outDir: string, folder: CausalLmFolder): void {
  const parent = dirname(outDir);
  mkdirSync(parent, { recursive: true });
  const staging = join(parent, `.${basename(outDir)}.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging);
  try {
    writeFileSync(join(staging, 'config.json'), JSON.stringify(causalLmConfig(folder.config), null, 2) + '\n');
    writeFileSync(join(staging, 'model.safetensors'), serializeSafetensors(causalLmTensors(folder.config, folder.weights), { format: 'pt' }));
    writeFileSync(join(staging, 'tokenizer.json'), JSON.stringify(folder.tokenizer.tokenizerJson));
    writeFileSync(join(staging, 'tokenizer_config.json'), JSON.stringify(folder.tokenizer.tokenizerConfig, null, 2) + '\n');
    for (const [name, data] of Object.entries(folder.files ?? {})) writeFileSync(join(staging, name), data);
    writeFileSync(join(staging, SFT_INFO_FILE), JSON.stringify(folder.info, null, 2) + '\n');
    // POSIX rename cannot replace a non-empty folder: the previous one goes aside first.
    const aside = join(parent, `.${basename(outDir)}.replaced-${process.pid}`);
    if (existsSync(outDir)) renameSync(outDir, aside);
    renameSync(staging, outDir);
    rmSync(aside, { recursive: true, force: true });
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}
