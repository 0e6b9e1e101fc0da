// Writes a model folder the server loads (docs/design.md, Model folder contract): model.onnx (the forward graph
// with the trained weights as initializers), tokenizer.json, tokenizer_config.json, config.json
// and, last, rmserve.json. The folder is built under a dot-name beside its target (the registry
// ignores dot-names) and renamed into place, so a kill at any moment leaves either the previous
// folder or the new one, never a mixture or a folder without its manifest.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { RmserveManifest } from '../model/manifest.js';
import { tokenizerSettings } from '../model/model-folder.js';
import { writeModelFolder, type ModelFolderContents } from '../model/write-folder.js';
import { GraphBuilder } from './graph/builder.js';
import { MODEL_OPSET, buildForward, declareParamInitializers, type ModelWeights, type RewardModelConfig } from './model.js';
import type { TokenizerFiles } from './encode.js';

export interface ExportOptions {
  outDir: string;
  config: RewardModelConfig;
  weights: ModelWeights;
  tokenizer: TokenizerFiles;
  /** Names of the K reward columns. */
  objectives: string[];
  name?: string;
  version?: string;
  metrics?: Record<string, unknown>;
  provenance?: Record<string, unknown>;
  reference?: RmserveManifest['reference'];
}

/** The forward graph as ONNX bytes: inputs input_ids, attention_mask int64 [batch, seq]; output logits float32 [batch, K]. */
export function forwardModelProto(config: RewardModelConfig, weights: ModelWeights): Uint8Array {
  const b = new GraphBuilder('reward_model', { opset: MODEL_OPSET });
  const params = declareParamInitializers(b, config, weights);
  const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = b.input('attention_mask', 'int64', ['batch', 'sequence']);
  b.output(buildForward(b, config, params, ids, mask).rewards, 'logits');
  return b.toModelProto({ docString: `rmserve reward model (${config.arch} decoder, reward at the last real token)` });
}

/**
 * Hugging Face-style config.json describing the model as the *ForSequenceClassification of its
 * architecture (the sizes, norms and RoPE a reader needs to rebuild it; the server reads only
 * pad_token_id), with the objectives as id2label.
 */
export function hfConfig(config: RewardModelConfig, objectives: string[], padId: number | undefined): Record<string, unknown> {
  const labels = {
    num_labels: objectives.length,
    id2label: Object.fromEntries(objectives.map((o, i) => [String(i), o])),
    label2id: Object.fromEntries(objectives.map((o, i) => [o, i])),
    ...(padId === undefined ? {} : { pad_token_id: padId }),
    rmserve_head: config.head,
    ...(config.head === 'mlp' ? { rmserve_head_hidden: config.headHidden } : {}),
  };
  const f = config.llama;
  if (config.arch !== 'gpt2' && f) {
    const cls = { llama: 'Llama', qwen2: 'Qwen2', qwen3: 'Qwen3' }[config.arch];
    const s = f.ropeScaling;
    return {
      architectures: [`${cls}ForSequenceClassification`],
      model_type: config.arch,
      vocab_size: config.vocabSize,
      hidden_size: config.dModel,
      num_hidden_layers: config.nLayers,
      num_attention_heads: config.nHeads,
      num_key_value_heads: f.nKvHeads,
      head_dim: f.headDim,
      intermediate_size: config.dMlp,
      hidden_act: 'silu',
      rms_norm_eps: config.layerNormEps,
      rope_theta: f.ropeTheta,
      rope_scaling: s === undefined ? null : s.type === 'linear' ? { rope_type: 'linear', factor: s.factor } : {
        rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositions,
      },
      max_position_embeddings: config.maxLength,
      tie_word_embeddings: f.lmHead === 'tied',
      ...(config.arch === 'qwen2' ? {} : { attention_bias: f.attentionBias }),
      ...(config.arch === 'llama' ? { mlp_bias: f.mlpBias } : {}),
      initializer_range: config.initStd,
      ...labels,
    };
  }
  return {
    architectures: ['GPT2ForSequenceClassification'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.maxLength,
    n_embd: config.dModel,
    n_layer: config.nLayers,
    n_head: config.nHeads,
    n_inner: config.dMlp,
    activation_function: config.activation,
    layer_norm_epsilon: config.layerNormEps,
    initializer_range: config.initStd,
    ...labels,
  };
}

/**
 * What the trainer puts in a model folder: the forward graph with the trained weights, the
 * tokenizer, an HF-style config.json and the validated manifest. src/model's writer does the rest.
 */
export function modelFolderContents(options: ExportOptions): ModelFolderContents {
  const { config, objectives } = options;
  if (objectives.length !== config.numObjectives) {
    throw new Error(`${objectives.length} objective names for a model with ${config.numObjectives} reward columns`);
  }
  return {
    onnx: forwardModelProto(config, options.weights),
    tokenizerJson: options.tokenizer.tokenizerJson,
    tokenizerConfig: options.tokenizer.tokenizerConfig,
    config: hfConfig(config, objectives, exportPadId(options.tokenizer)),
    manifest: {
      format_version: 1,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.version === undefined ? {} : { version: options.version }),
      objectives,
      max_length: config.maxLength,
      truncation_side: 'left',
      padding_side: 'right',
      ...(options.reference === undefined ? {} : { reference: options.reference }),
      metrics: options.metrics ?? {},
      provenance: options.provenance ?? {},
    },
  };
}

export function exportRewardModel(options: ExportOptions): RmserveManifest {
  return writeModelFolder(options.outDir, modelFolderContents(options)) as RmserveManifest;
}

/**
 * The pad id config.json declares, by the one rule the server loads with (src/model padIdOf);
 * none when the tokenizer names no pad or EOS token, rather than a guessed 0.
 */
function exportPadId(files: TokenizerFiles): number | undefined {
  const tokenizer = new Tokenizer(files.tokenizerJson as Record<string, unknown>, files.tokenizerConfig);
  const { padId, padIdSource } = tokenizerSettings(tokenizer, files.tokenizerConfig);
  return padIdSource === 'default 0' ? undefined : padId;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The commit the trainer runs from (with "-dirty" when the tree has changes), or undefined outside git. */
export function gitCommit(cwd = process.cwd()): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty === '' ? head : `${head}-dirty`;
  } catch {
    return undefined;
  }
}
