// Writes a model folder the server loads (docs/design.md, Model folder contract): model.onnx (the forward graph
// with the trained weights as initializers), tokenizer.json, tokenizer_config.json, config.json
// and, last, rmserve.json. The folder is built under a dot-name beside its target (the registry
// ignores dot-names) and renamed into place, so a kill at any moment leaves either the previous
// folder or the new one, never a mixture or a folder without its manifest.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
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

const STAGING = '.staging-';
const REPLACED = '.replaced-';

function siblings(outDir: string, kind: string): string[] {
  const parent = dirname(outDir);
  const prefix = `.${basename(outDir)}${kind}`;
  return existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith(prefix)).map((n) => join(parent, n)) : [];
}

function pidAlive(name: string): boolean {
  const pid = Number(name.slice(name.lastIndexOf('-') + 1));
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An empty folder to build a version of `outDir` in, beside it (so the final rename stays on one
 * file system). Tidies up after earlier exports that were killed: their half-built folders go,
 * and a previous version that was moved aside but never replaced is moved back.
 */
export function createStagingFolder(outDir: string): string {
  for (const dir of siblings(outDir, STAGING)) if (!pidAlive(dir)) rmSync(dir, { recursive: true, force: true });
  const replaced = siblings(outDir, REPLACED).filter((dir) => !pidAlive(dir));
  if (!existsSync(outDir) && replaced.length > 0) renameSync(replaced[0] as string, outDir);
  for (const dir of siblings(outDir, REPLACED)) if (!pidAlive(dir)) rmSync(dir, { recursive: true, force: true });
  const staging = join(dirname(outDir), `.${basename(outDir)}${STAGING}${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  return staging;
}

/**
 * Puts the finished `staging` folder at `outDir`. With no previous version this is one rename.
 * A previous version is moved aside first (POSIX rename cannot replace a non-empty folder):
 * between the two renames outDir is briefly absent, and a kill there leaves the previous version
 * whole under its aside name, which the next createStagingFolder moves back.
 */
export function publishModelFolder(staging: string, outDir: string): void {
  if (!existsSync(outDir)) {
    renameSync(staging, outDir);
    return;
  }
  const aside = join(dirname(outDir), `.${basename(outDir)}${REPLACED}${process.pid}`);
  rmSync(aside, { recursive: true, force: true });
  renameSync(outDir, aside);
  try {
    renameSync(staging, outDir);
  } catch (err) {
    renameSync(aside, outDir);
    throw err;
  }
  rmSync(aside, { recursive: true, force: true });
}

/** exportRewardModel's files, written straight into `options.outDir`: a staging folder nothing reads yet. */
export function writeModelFiles(options: ExportOptions): RmserveManifest {
  const { outDir, config, objectives } = options;
  if (objectives.length !== config.numObjectives) {
    throw new Error(`${objectives.length} objective names for a model with ${config.numObjectives} reward columns`);
  }
  mkdirSync(outDir, { recursive: true });
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
  writeFileSync(join(outDir, 'rmserve.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

export function exportRewardModel(options: ExportOptions): RmserveManifest {
  const staging = createStagingFolder(options.outDir);
  try {
    const manifest = writeModelFiles({ ...options, outDir: staging });
    publishModelFolder(staging, options.outDir);
    return manifest;
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
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
