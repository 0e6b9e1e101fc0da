// `rmserve train` end to end: read the preference files, split by prompt, get a tokenizer (the
// user's or one trained on the training split), encode with the server's formatter/tokenizer,
// train, evaluate the kept weights on validation and test beside the length and bag-of-words
// baselines, and export the model folder with its metrics and provenance.
import { basename, dirname, join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { executionProviders } from '../scoring/onnx-session.js';
import { lengthBaseline, trainBagOfWords, pairwiseAccuracy } from './baselines.js';
import { readPreferenceFileWithStats, formatReadStats, type PreferencePair } from './data.js';
import { completeTokenizerConfig, PairEncoder, readTokenizerFiles, type TokenizerFiles } from './encode.js';
import { RewardForward, pairMetrics, scorePairs, weightsToTensors, type PairMetrics } from './evaluate.js';
import { exportRewardModel, gitCommit, sha256File } from './export.js';
import { DEFAULT_LOSS, type LossConfig } from './losses.js';
import { trainLoop, DEFAULT_OPTIMIZER, type LoopResult, type OptimizerConfig, type TrainExample } from './loop.js';
import { defaultModelConfig, initFromPretrained, initWeights, parameterCount, validateModelConfig, type HeadKind, type ModelWeights, type RewardModelConfig } from './model.js';
import { loadHfGpt2, type LoadedGpt2 } from './hf-gpt2.js';
import { splitByPrompt, type SplitFractions } from './split.js';
import { trainByteLevelBpe } from './tokenizer/index.js';
import type { RmserveManifest } from '../scoring/manifest.js';

export interface TrainRunOptions {
  data: string[];
  out: string;
  /** a tokenizer.json to use (tokenizer_config.json beside it is read too); else one is trained */
  tokenizer?: string;
  /** start from a Hugging Face GPT-2 folder (config.json + model.safetensors); its sizes replace dModel/layers/heads */
  initFrom?: string;
  vocabSize: number;
  dModel: number;
  layers: number;
  heads: number;
  maxLength: number;
  head: HeadKind;
  headHidden: number;
  loss: LossConfig;
  optimizer: OptimizerConfig;
  steps: number;
  batchSize: number;
  evalEvery: number;
  seed: number;
  /** name of the reward column for pairs whose data names no objective */
  objective: string;
  split: SplitFractions;
  /** use at most this many training pairs (0 = all) */
  maxTrainPairs: number;
  checkpointDir?: string;
  resume?: string;
  stopAfter?: number;
  progress?: boolean;
  threads?: number;
  /** cpu, cuda or cuda:N (as `rmserve serve --device`) */
  device?: string;
  /** stop early (after the current step), checkpoint and skip the export */
  signal?: AbortSignal;
  /** the command line, for provenance */
  command?: string;
  log?: (line: string) => void;
}

export const DEFAULT_TRAIN_OPTIONS: Omit<TrainRunOptions, 'data' | 'out'> = {
  vocabSize: 8192,
  dModel: 256,
  layers: 4,
  heads: 4,
  maxLength: 256,
  head: 'linear',
  headHidden: 1024,
  loss: DEFAULT_LOSS,
  optimizer: DEFAULT_OPTIMIZER,
  steps: 1000,
  batchSize: 16,
  evalEvery: 100,
  seed: 1,
  objective: 'reward',
  split: { train: 0.8, validation: 0.1, test: 0.1 },
  maxTrainPairs: 0,
};

export interface TrainRunResult {
  outDir: string;
  /** undefined when the run was interrupted (nothing exported) */
  manifest: RmserveManifest | undefined;
  config: RewardModelConfig;
  loop: LoopResult;
  test: PairMetrics | undefined;
}

function responseTexts(pairs: readonly PreferencePair[]): string[] {
  return pairs.flatMap((p) => [...p.prompt.map((m) => m.content), p.chosen, p.rejected]);
}

/** The default checkpoint folder: under the git-ignored .rmserve-cache, named after the model folder. */
export function defaultCheckpointDir(out: string): string {
  const abs = resolve(out);
  return join('.rmserve-cache', 'checkpoints', basename(dirname(abs)), basename(abs));
}

export async function runTraining(o: TrainRunOptions): Promise<TrainRunResult> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (o.data.length === 0) throw new Error('give at least one --data file');

  // ---- data
  const all: PreferencePair[] = [];
  const dataProvenance: { path: string; sha256: string; pairs: number }[] = [];
  for (const path of o.data) {
    const { pairs, stats } = readPreferenceFileWithStats(path);
    log(formatReadStats(stats));
    all.push(...pairs);
    dataProvenance.push({ path, sha256: await sha256File(path), pairs: pairs.length });
  }
  const split = splitByPrompt(all, o.split);
  const trainPairs = o.maxTrainPairs > 0 ? split.train.slice(0, o.maxTrainPairs) : split.train;
  log(`split by prompt: ${split.train.length} train (using ${trainPairs.length}), ${split.validation.length} validation, ${split.test.length} test pairs`);
  const objectives = [...new Set(all.map((p) => p.objective ?? o.objective))].sort();

  // ---- tokenizer
  let tokenizer: TokenizerFiles;
  if (o.tokenizer) {
    tokenizer = readTokenizerFiles(o.tokenizer, o.maxLength);
  } else {
    const t0 = performance.now();
    const bpe = trainByteLevelBpe(responseTexts(trainPairs), { vocabSize: o.vocabSize, modelMaxLength: o.maxLength });
    const json = bpe.tokenizerJson as unknown as Record<string, unknown>;
    tokenizer = { tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, o.maxLength) };
    log(`trained a byte-level BPE tokenizer (${o.vocabSize} tokens) on the training split in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const encoder = new PairEncoder(tokenizer, o.maxLength);
  const encode = (pairs: readonly PreferencePair[]): TrainExample[] =>
    pairs.map((p) => ({ ...encoder.encode(p), margin: p.margin ?? 0, objective: objectives.indexOf(p.objective ?? o.objective) }));
  const train = encode(trainPairs);
  const validation = encode(split.validation);
  const test = encode(split.test);
  const truncated = train.filter((e) => e.truncated).length;
  log(`encoded: ${train.reduce((n, e) => n + e.chosen.length + e.rejected.length, 0)} training tokens, ${truncated} of ${train.length} pairs truncated to ${o.maxLength}`);

  // ---- model
  const pretrained: LoadedGpt2 | undefined = o.initFrom ? loadHfGpt2(o.initFrom) : undefined;
  if (pretrained && !o.tokenizer) throw new Error('--init-from needs the checkpoint\'s own tokenizer: pass --tokenizer');
  const sizes = pretrained
    ? {
      vocabSize: Math.max(encoder.vocabSize, pretrained.config.vocabSize), dModel: pretrained.config.dModel,
      nLayers: pretrained.config.nLayers, nHeads: pretrained.config.nHeads, dMlp: pretrained.config.dFF,
      layerNormEps: pretrained.config.layerNormEpsilon,
      activation: pretrained.config.activation === 'gelu' ? 'gelu' as const : 'gelu_new' as const,
    }
    : { vocabSize: encoder.vocabSize, dModel: o.dModel, nLayers: o.layers, nHeads: o.heads, dMlp: 4 * o.dModel };
  const config = defaultModelConfig({
    ...sizes, maxLength: o.maxLength, numObjectives: objectives.length, head: o.head, headHidden: o.headHidden,
  });
  validateModelConfig(config);
  log(`model: ${parameterCount(config).toLocaleString('en')} parameters (d_model ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads, vocab ${config.vocabSize}, K ${config.numObjectives})` +
    (pretrained ? `, initialised from ${o.initFrom}` : ''));
  const init: ModelWeights = pretrained ? initFromPretrained(config, pretrained.params, o.seed) : initWeights(config, o.seed);

  // ---- train
  const session: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(o.device ?? 'cpu'),
    ...(o.threads ? { intraOpNumThreads: o.threads } : {}),
  };
  const t0 = performance.now();
  const loop = await trainLoop({
    model: config, loss: o.loss, optimizer: o.optimizer, steps: o.steps, batchSize: o.batchSize,
    evalEvery: o.evalEvery, seed: o.seed, checkpointDir: o.checkpointDir ?? defaultCheckpointDir(o.out),
    metricsPath: join(o.out, 'train-metrics.jsonl'), resume: o.resume, stopAfter: o.stopAfter,
    progress: o.progress, session, log, signal: o.signal,
  }, { train, validation }, init, encoder.padId);
  const trainSeconds = (performance.now() - t0) / 1000;
  if (loop.interrupted) return { outDir: o.out, manifest: undefined, config, loop, test: undefined };

  // ---- evaluate the kept weights on the test split, beside the baselines
  let testMetrics: PairMetrics | undefined;
  const metrics: Record<string, unknown> = {};
  if (test.length > 0) {
    const forward = await RewardForward.create(config, session);
    const scored = await scorePairs(forward, weightsToTensors(config, loop.best), test, encoder.padId);
    await forward.release();
    const chosen = scored.chosen.map((r, i) => r.subarray((test[i] as TrainExample).objective));
    const rejected = scored.rejected.map((r, i) => r.subarray((test[i] as TrainExample).objective));
    testMetrics = pairMetrics(chosen, rejected);
    const bow = trainBagOfWords(train, { vocabSize: config.vocabSize, seed: o.seed });
    metrics.test = testMetrics;
    if (objectives.length > 1) {
      metrics.test_by_objective = Object.fromEntries(objectives.map((name, k) => {
        const idx = test.map((e, i) => (e.objective === k ? i : -1)).filter((i) => i >= 0);
        return [name, pairMetrics(idx.map((i) => chosen[i] as Float32Array), idx.map((i) => rejected[i] as Float32Array))];
      }));
    }
    // Length: the response alone, untruncated (after left truncation whole sequences tie at max_length).
    const responseIds = (text: string): number[] => encoder.tokenizer.encode(text, { add_special_tokens: false }).ids;
    const responses = split.test.map((p) => ({ chosen: responseIds(p.chosen), rejected: responseIds(p.rejected) }));
    metrics.baselines = {
      split: 'test',
      length: lengthBaseline(responses).accuracy,
      bag_of_words: pairwiseAccuracy((ids) => bow.score(ids), test).accuracy,
    };
    log(`test: accuracy ${testMetrics.accuracy.toFixed(4)} (length baseline ${(metrics.baselines as { length: number }).length.toFixed(4)}, ` +
      `bag of words ${(metrics.baselines as { bag_of_words: number }).bag_of_words.toFixed(4)}) on ${test.length} pairs`);
  }
  if (loop.bestValidation) metrics.validation = loop.bestValidation;
  const lastStep = loop.steps.at(-1);
  metrics.train = {
    steps: lastStep ? lastStep.step : 0,
    best_step: loop.bestStep,
    final_loss: lastStep?.loss,
    tokens_per_second: Math.round(loop.tokensPerSecond),
    seconds: Math.round(trainSeconds),
  };
  metrics.splits = { train: train.length, validation: validation.length, test: test.length };

  // ---- export
  const outDir = o.out;
  const manifest = exportRewardModel({
    outDir, config, weights: loop.best, tokenizer, objectives,
    name: basename(dirname(resolve(outDir))), version: basename(resolve(outDir)),
    metrics,
    provenance: {
      data: dataProvenance,
      split: { method: 'sha256 of the prompt', ...o.split },
      tokenizer: o.tokenizer ? { path: o.tokenizer, sha256: await sha256File(o.tokenizer) } : { trained: 'byte-level BPE on the training split', vocab_size: o.vocabSize },
      init: o.initFrom ? { from: o.initFrom } : { seed: o.seed },
      config,
      loss: o.loss,
      optimizer: o.optimizer,
      steps: o.steps,
      batch_size: o.batchSize,
      seed: o.seed,
      git_commit: gitCommit() ?? null,
      command: o.command ?? null,
      created_at: new Date().toISOString(),
    },
  });
  log(`exported ${outDir} (best step ${loop.bestStep})`);
  return { outDir, manifest, config, loop, test: testMetrics };
}
