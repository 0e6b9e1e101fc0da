// Writes a model folder the server loads (docs/design.md, Model folder contract): model.onnx (the forward graph
// with the trained weights as initializers), tokenizer.json, tokenizer_config.json, config.json
// and, last, rmserve.json — the registry treats a version as complete once its manifest exists,
// so a folder being written is never served half-done.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseManifest, type RmserveManifest } from '../model/manifest.js';
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
  return b.toModelProto({ docString: 'rmserve reward model (GPT-2-style decoder, reward at the last real token)' });
}

/** Hugging Face-style config.json for a GPT2ForSequenceClassification-shaped model. */
export function hfConfig(config: RewardModelConfig, objectives: string[], padId: number | undefined): Record<string, unknown> {
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
    num_labels: objectives.length,
    id2label: Object.fromEntries(objectives.map((o, i) => [String(i), o])),
    label2id: Object.fromEntries(objectives.map((o, i) => [o, i])),
    ...(padId === undefined ? {} : { pad_token_id: padId }),
    rmserve_head: config.head,
    ...(config.head === 'mlp' ? { rmserve_head_hidden: config.headHidden } : {}),
  };
}

export function exportRewardModel(options: ExportOptions): RmserveManifest {
  const { outDir, config, objectives } = options;
  if (objectives.length !== config.numObjectives) {
    throw new Error(`${objectives.length} objective names for a model with ${config.numObjectives} reward columns`);
  }
  mkdirSync(outDir, { recursive: true });
  // An earlier export into the same folder stops being "complete" before anything is replaced.
  rmSync(join(outDir, 'rmserve.json'), { force: true });

  writeFileSync(join(outDir, 'model.onnx'), forwardModelProto(config, options.weights));
  writeFileSync(join(outDir, 'tokenizer.json'), JSON.stringify(options.tokenizer.tokenizerJson));
  writeFileSync(join(outDir, 'tokenizer_config.json'), JSON.stringify(options.tokenizer.tokenizerConfig, null, 2) + '\n');
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(hfConfig(config, objectives, padIdOf(options.tokenizer)), null, 2) + '\n');

  const manifest = parseManifest({
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
  });
  const tmp = join(outDir, '.rmserve.json.tmp');
  writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
  renameSync(tmp, join(outDir, 'rmserve.json'));
  return manifest;
}

function padIdOf(files: TokenizerFiles): number | undefined {
  const pad = files.tokenizerConfig.pad_token ?? files.tokenizerConfig.eos_token;
  const name = typeof pad === 'string' ? pad : typeof pad === 'object' && pad !== null ? (pad as { content?: unknown }).content : undefined;
  const added = files.tokenizerJson.added_tokens;
  if (typeof name !== 'string' || !Array.isArray(added)) return undefined;
  const hit = (added as { id?: unknown; content?: unknown }[]).find((t) => t.content === name);
  return typeof hit?.id === 'number' ? hit.id : undefined;
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

export function isModelFolder(dir: string): boolean {
  return existsSync(join(dir, 'model.onnx')) && existsSync(join(dir, 'rmserve.json'));
}
