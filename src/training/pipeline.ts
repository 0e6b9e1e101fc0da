// `rmserve train` end to end: read the preference files, split by prompt, get a tokenizer (the
// user's or one trained on the training split), encode with the server's formatter/tokenizer,
// train, evaluate the kept weights on validation and test beside the length and bag-of-words
// baselines, and export the model folder with its metrics and provenance.
//
// runTraining reads as that list: each step below is one function with typed inputs and outputs,
// in the order the run calls them.
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { executionProviders } from '../model/onnx-session.js';
import { lengthBaseline, trainBagOfWords, pairwiseAccuracy } from './baselines.js';
import { readPreferenceFileWithStats, formatDroppedLines, formatReadStats, promptKey, type PreferencePair } from './data.js';
import { completeTokenizerConfig, PairEncoder, type TokenizerFiles } from './encode.js';
import { LogProbForward, RewardForward, pairMetrics, scorePairs, weightsToTensors, type PairMetrics } from './evaluate.js';
import { gitCommit, modelFolderContents, sha256File } from './export.js';
import { stageModelFolder } from '../model/write-folder.js';
import { lossConfig, lossNeeds, type LossConfig } from './losses.js';
import { TfidfModel, deltaStar, lengthRatio } from './similarity.js';
import { SimilarityEncoder } from './similarity-encoder.js';
import { quantile } from '../transforms/quantile.js';
import { TRAINER_SPLIT, evaluateFiles, type EvalResult } from '../eval/index.js';
import { writeTrainingReport } from '../eval/report/index.js';
import type { ReferenceStatistics } from '../model/manifest.js';
import { trainLoop, type LoopProgress, type LoopResult, type TrainExample } from './loop.js';
import { defaultModelConfig, initFromPretrained, initWeights, parameterCount, validateModelConfig, type ModelWeights, type RewardModelConfig } from './model.js';
import { pretrainedStart, readFolderTokenizer, withCheckpointTokenizer } from './hf-checkpoint.js';
import { splitByPrompt, type Splits } from './split.js';
import { loraSummary, resolveLora } from './lora.js';
import { trainLm, type LmExample, type LmLoopResult } from './sft.js';
import { writeCausalLmFolder } from './causal-lm-export.js';
import {
  implicitRewardMetrics, randomReferenceWarning, referenceProvenance, referenceSummary, startProvenance, type ImplicitRewardMetrics,
} from './reference.js';
import { trainByteLevelBpe } from './tokenizer/index.js';
import type { RmserveManifest } from '../model/manifest.js';
import { DEFAULT_TRAIN_CONFIG, resolveTrainConfig, type ResolvedTrainConfig, type TrainInput } from '../config/train.js';

export { defaultCheckpointDir } from '../config/train.js';

/** A run: its TrainConfig (src/config/train.ts; what is left out takes the defaults there) and the caller's hooks. */
export interface TrainRunOptions extends TrainInput {
  /** stop after this step as if interrupted (checkpoint written, nothing exported) */
  stopAfter?: number;
  /** told after every training step (trainLoop's `progress`); default: none */
  progress?: LoopProgress | false;
  /** stop early (after the current step), checkpoint and skip the export */
  signal?: AbortSignal;
  /** the command line, for provenance */
  command?: string;
  log?: (line: string) => void;
}

/**
 * DEFAULT_TRAIN_CONFIG for callers that spread it into a TrainRunOptions; their reward column has
 * always been named `reward` (the command names it after the model folder).
 */
export const DEFAULT_TRAIN_OPTIONS = { ...DEFAULT_TRAIN_CONFIG, objective: 'reward' };

export interface TrainRunResult {
  outDir: string;
  /** undefined when the run was interrupted (nothing exported) */
  manifest: RmserveManifest | undefined;
  config: RewardModelConfig;
  loop: LoopResult;
  test: PairMetrics | undefined;
}

/** What `--method sft` (runSftTraining) returns: the LM phase's loop and, unless interrupted, its rmserve-sft.json. */
export interface SftRunResult {
  outDir: string;
  config: RewardModelConfig;
  lm: LmLoopResult;
  /** undefined when the phase was interrupted (nothing exported) */
  info: Record<string, unknown> | undefined;
}

/** The run's whole config (every default filled in) and the caller's hooks: what the steps read. */
type RunConfig = ResolvedTrainConfig & Omit<TrainRunOptions, keyof TrainInput>;

type Log = (line: string) => void;

/** Where a pair was read, for error messages that point at the line. */
type PairOrigins = ReadonlyMap<PreferencePair, { path: string; line: number }>;

/** One --data file as the manifest's provenance and the resume check record it. */
interface DataFileProvenance {
  path: string;
  sha256: string;
  pairs: number;
}

/** The --data files read: every pair, where each came from, and each file's provenance. */
interface TrainingData {
  pairs: PreferencePair[];
  origin: PairOrigins;
  provenance: DataFileProvenance[];
}

/** The tokenizer files the run encodes with and exports, and the sha256 of --tokenizer when one was given. */
interface RunTokenizer {
  files: TokenizerFiles;
  sha256: string | undefined;
}

/** The splits as the step and evaluation graphs take them. */
type EncodedSplits = Splits<TrainExample>;

/** The model's shape and its initial weights (the seed's or --init-from's). */
interface InitialModel {
  config: RewardModelConfig;
  init: ModelWeights;
}

/** The loop's result and what the export needs to know about how it ran. */
interface TrainedModel {
  loop: LoopResult;
  /** wall time of the loop, for the manifest and the report */
  seconds: number;
  /** the run's metrics log (beside the checkpoints until the export copies it into the folder) */
  metricsPath: string;
}

/** The kept weights on the test split, beside the baselines. */
interface TestEvaluation {
  metrics: PairMetrics;
  /** per objective, when the model has more than one reward column */
  byObjective: Record<string, PairMetrics> | undefined;
  baselines: NonNullable<TrainingMetrics['baselines']>;
  /** per test pair, r_c − r_r in its objective's column */
  margins: number[];
}

/** What evaluateSplits scores and with what. */
interface EvaluationInput {
  config: RewardModelConfig;
  /** the kept weights */
  weights: ModelWeights;
  encoded: EncodedSplits;
  /** the test split as read, for the length baseline (which counts the untruncated responses) */
  testPairs: readonly PreferencePair[];
  objectives: readonly string[];
  encoder: PairEncoder;
  /** the bag-of-words baseline's seed */
  seed: number;
  session: ort.InferenceSession.SessionOptions;
}

interface SplitEvaluation {
  /** undefined when the test split is empty */
  test: TestEvaluation | undefined;
  /** LSC reference statistics; undefined when validation and test are both empty */
  reference: Record<string, ReferenceStatistics> | undefined;
}

/**
 * The manifest's `metrics`, in the order the keys are written. A type alias rather than an
 * interface: modelFolderContents takes a Record<string, unknown>, which an interface (having no
 * implicit index signature) would not satisfy.
 */
export type TrainingMetrics = {
  test?: PairMetrics;
  test_by_objective?: Record<string, PairMetrics>;
  baselines?: { split: 'test'; length: number; bag_of_words: number };
  /** HaF-RM's and GRM-DPO's implicit reward β·(log π − log π_ref) on the test split (reference.ts) */
  implicit_reward?: ImplicitRewardMetrics;
  /** the kept weights' validation metrics */
  validation?: PairMetrics;
  train: {
    /** the last step this run took (0 when it took none: a resume from the final checkpoint) */
    steps: number;
    best_step: number;
    /** undefined (so left out of the JSON) when this run took no step */
    final_loss: number | undefined;
    tokens_per_second: number;
    seconds: number;
  };
  splits: { train: number; validation: number; test: number };
};

/**
 * The steps every run starts with, reward and SFT alike: data, split, objectives, tokenizer,
 * encoding and the model. One function, so an SFT phase and the reward run after it see the
 * same split and the same token ids.
 */
async function prepareRun(o: RunConfig, log: (line: string) => void) {
  const data = await readData(o.data, log);
  const split = splitData(data.pairs, o, log);
  const objectives = objectiveNames(data.pairs, o.objective);
  const tokenizer = await prepareTokenizer(o, split.train, log);
  const encoder = new PairEncoder(tokenizer.files, o.maxLength);
  if (o.tokenizer) checkTexts(encoder, [...split.train, ...split.validation, ...split.test], data.origin, o.tokenizer);
  const encoded = await encodeSplits(o, encoder, split, objectives, log);
  const { config, init } = buildModel(o, encoder.vocabSize, objectives, log);
  return { data, split, objectives, tokenizer, encoder, encoded, config, init };
}

export async function runTraining(options: TrainRunOptions): Promise<TrainRunResult> {
  // --init-from brings its own tokenizer (and chat template) unless --tokenizer names another.
  const o: RunConfig = withCheckpointTokenizer({ ...options, ...resolveTrainConfig(options) });
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (o.loss.method === 'sft') throw new Error('--method sft is the LM phase: run it with runSftTraining');
  if (o.data.length === 0) throw new Error('give at least one --data file');

  const { data, split, objectives, tokenizer, encoder, encoded, config, init } = await prepareRun(o, log);
  const session = sessionOptions(o);
  const start = await startProvenance(o.initFrom, o.seed);
  const needsReference = lossNeeds(o.loss).reference;
  if (needsReference && !o.initFrom) log(randomReferenceWarning(o.loss.method, config.vocabSize));
  // From the initial weights (the seed's, or --init-from's), also on --resume: the same references as the uninterrupted run.
  if (needsReference) await addReferenceLogProbs(config, init, encoded.train, encoder.padId, session, log);
  const trained = await runLoop(o, { config, init }, encoded, encoder.padId, session, runSettings(o, data.provenance, tokenizer.sha256, objectives), log);
  if (trained.loop.interrupted) return { outDir: o.out, manifest: undefined, config, loop: trained.loop, test: undefined };

  const evaluation = await evaluateSplits({
    config, weights: trained.loop.best, encoded, testPairs: split.test, objectives, encoder, seed: o.seed, session,
  }, log);
  const implicit = needsReference && evaluation.test
    ? await implicitReward(o, { config, init, best: trained.loop.best, encoded, testPairs: split.test, encoder, session, margins: evaluation.test.margins }, log)
    : undefined;
  const metrics = { ...trainingMetrics(evaluation.test, trained, encoded), ...(implicit ? { implicit_reward: implicit } : {}) };
  const manifest = await exportFolder(o, {
    config, weights: trained.loop.best, tokenizer, objectives, reference: evaluation.reference, metrics, data: data.provenance, trained,
    start, ...(needsReference ? { referenceLogp: referenceSummary(encoded.train) } : {}),
  }, log);
  return { outDir: o.out, manifest, config, loop: trained.loop, test: evaluation.test?.metrics };
}

/**
 * `rmserve train --method sft`: the LM phase (sft.ts) on the distinct chosen responses of the
 * training split, validated on those of the validation split, and the weights of the lowest
 * validation NLL written as a Hugging Face causal-LM folder at --out (causal-lm-export.ts) that a
 * haf or grm run takes as --init-from, and so as its reference. Data, split, tokenizer, encoding
 * and the model are the reward runs' own steps, so the following run sees the same token ids.
 */
export async function runSftTraining(options: TrainRunOptions): Promise<SftRunResult> {
  const o: RunConfig = withCheckpointTokenizer({ ...options, ...resolveTrainConfig(options) });
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (o.loss.method !== 'sft') throw new Error(`runSftTraining runs --method sft, not ${o.loss.method}`);
  if (o.resume) throw new Error('--method sft has no --resume (the phase keeps no optimizer checkpoint); run it again');
  // Its export is a full causal-LM folder; LoRA is for the reward run that starts from it.
  if (o.lora.rank > 0) throw new Error('--lora-rank trains reward-model adapters; --method sft trains every weight of the LM');
  if (o.gradAccum > 1) throw new Error('--grad-accum is not implemented for --method sft: raise --batch-size instead');
  if (o.data.length === 0) throw new Error('give at least one --data file');

  const { data, tokenizer, encoder, encoded, config, init } = await prepareRun(o, log);
  const train = distinctChosen(encoded.train);
  const validation = distinctChosen(encoded.validation);
  log(`sft: next-token loss on ${train.length} distinct chosen responses of ${encoded.train.length} training pairs (validation: ${validation.length})`);
  const t0 = performance.now();
  const metricsPath = join(o.checkpointDir, 'train-metrics.jsonl');
  const lm = await trainLm({
    model: config, optimizer: o.optimizer, steps: o.steps, batchSize: o.batchSize, evalEvery: o.evalEvery, seed: o.seed, metricsPath,
    progress: o.progress, session: sessionOptions(o), signal: o.signal, log,
  }, { train, validation }, init, encoder.padId);
  if (lm.interrupted) return { outDir: o.out, config, lm, info: undefined };
  const seconds = (performance.now() - t0) / 1000;
  const info = {
    format: 'rmserve-sft/1',
    what: 'causal LM of rmserve train --method sft: mean next-token NLL of the chosen responses of the training split, each after its prompt; ' +
      'start a --method haf or grm run from it with --init-from (its frozen copy is then the DPO reference)',
    metrics: {
      validation_initial: lm.initialValidation ?? null,
      validation: lm.bestValidation ?? null,
      best_step: lm.bestStep,
      train: {
        steps: lm.steps.at(-1)?.step ?? 0, first_loss: lm.steps[0]?.loss ?? null, final_loss: lm.steps.at(-1)?.loss ?? null,
        tokens_per_second: Math.round(lm.tokensPerSecond), seconds: Math.round(seconds),
      },
      responses: { train: train.length, validation: validation.length },
    },
    provenance: {
      data: data.provenance,
      split: { method: 'sha256 of the prompt', ...o.split },
      responses: 'chosen',
      tokenizer: o.tokenizer ? { path: o.tokenizer, sha256: tokenizer.sha256 } : { trained: 'byte-level BPE on the training split', vocab_size: o.vocabSize },
      init: await startProvenance(o.initFrom, o.seed),
      config,
      method: 'sft',
      optimizer: o.optimizer,
      steps: o.steps,
      batch_size: o.batchSize,
      seed: o.seed,
      git_commit: gitCommit() ?? null,
      command: o.command ?? null,
      created_at: new Date().toISOString(),
    },
  };
  writeCausalLmFolder(o.out, { config, weights: lm.best, tokenizer: tokenizer.files, info, files: { 'train-metrics.jsonl': readFileSync(metricsPath) } });
  log(`exported ${o.out} (best step ${lm.bestStep}): a Hugging Face causal-LM folder; train the reward model from it with --init-from ${o.out}`);
  return { outDir: o.out, config, lm, info };
}

/** Each distinct chosen response (with its prompt) once: pairs that share one would weight it twice. */
function distinctChosen(pairs: readonly TrainExample[]): LmExample[] {
  const seen = new Set<string>();
  const out: LmExample[] = [];
  for (const e of pairs) {
    const key = e.chosen.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ids: e.chosen, start: e.chosenStart ?? 1 });
  }
  return out;
}

// ---- data

/** Reads every --data file, logging what each held and skipped. */
async function readData(paths: readonly string[], log: Log): Promise<TrainingData> {
  const pairs: PreferencePair[] = [];
  const origin = new Map<PreferencePair, { path: string; line: number }>();
  const provenance: DataFileProvenance[] = [];
  for (const path of paths) {
    const file = readPreferenceFileWithStats(path);
    log(formatReadStats(file.stats));
    if (Object.keys(file.droppedLines).length > 0) log(`${file.stats.source}: skipped ${formatDroppedLines(file)}`);
    file.pairs.forEach((p, i) => origin.set(p, { path, line: file.lines[i] as number }));
    pairs.push(...file.pairs);
    provenance.push({ path, sha256: await sha256File(path), pairs: file.pairs.length });
  }
  return { pairs, origin, provenance };
}

/** Splits by prompt and cuts the training split to --max-train-pairs; refuses a split with no training pairs. */
function splitData(all: readonly PreferencePair[], o: Pick<RunConfig, 'split' | 'maxTrainPairs'>, log: Log): Splits<PreferencePair> {
  const split = splitByPrompt(all, o.split);
  const train = o.maxTrainPairs > 0 ? split.train.slice(0, o.maxTrainPairs) : split.train;
  log(`split by prompt: ${split.train.length} train (using ${train.length}), ${split.validation.length} validation, ${split.test.length} test pairs`);
  if (train.length === 0) {
    const prompts = new Set(all.map((p) => promptKey(p.prompt))).size;
    throw new Error(`no training pairs: the split by prompt (--split ${o.split.train},${o.split.validation},${o.split.test}) puts all ${all.length} pairs ` +
      `(${prompts} distinct prompt${prompts > 1 ? 's' : ''}) in validation and test; give more data (more distinct prompts) or a larger train fraction`);
  }
  return { ...split, train };
}

/** The reward columns, sorted: every objective the data names, and --objective for pairs that name none. */
function objectiveNames(pairs: readonly PreferencePair[], objective: string): string[] {
  return [...new Set(pairs.map((p) => p.objective ?? objective))].sort();
}

// ---- tokenizer and encoding

function responseTexts(pairs: readonly PreferencePair[]): string[] {
  return pairs.flatMap((p) => [...p.prompt.map((m) => m.content), p.chosen, p.rejected]);
}

/** --tokenizer's files, or a byte-level BPE trained on the training split. */
async function prepareTokenizer(
  o: Pick<RunConfig, 'tokenizer' | 'maxLength' | 'vocabSize'>, trainPairs: readonly PreferencePair[], log: Log,
): Promise<RunTokenizer> {
  if (o.tokenizer) {
    const sha256 = await sha256File(o.tokenizer);
    return { files: readFolderTokenizer(o.tokenizer, o.maxLength), sha256 };
  }
  const t0 = performance.now();
  const bpe = trainByteLevelBpe(responseTexts(trainPairs), { vocabSize: o.vocabSize, modelMaxLength: o.maxLength });
  const json = bpe.tokenizerJson as unknown as Record<string, unknown>;
  const files = { tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, o.maxLength) };
  log(`trained a byte-level BPE tokenizer (${o.vocabSize} tokens) on the training split in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { files, sha256: undefined };
}

/**
 * Every split as token ids with its margin and reward column; the training pairs also get what
 * the loss reads beyond them (response starts for log-probs, PCRM's δ*).
 */
async function encodeSplits(
  o: RunConfig, encoder: PairEncoder, split: Splits<PreferencePair>, objectives: readonly string[], log: Log,
): Promise<EncodedSplits> {
  const needs = lossNeeds(o.loss);
  const encode = (pairs: readonly PreferencePair[], responseStart = false): TrainExample[] =>
    pairs.map((p) => ({ ...encoder.encode(p, { responseStart }), margin: p.margin ?? 0, objective: objectives.indexOf(p.objective ?? o.objective) }));
  const train = encode(split.train, needs.logp);
  if (needs.deltaStar) await addDeltaStar(o, split.train, train, encoder, log);
  // sft validates log π of the chosen responses; the DPO term's implicit reward is measured on the test split.
  const validation = encode(split.validation, o.loss.method === 'sft');
  const test = encode(split.test, needs.reference);
  const truncated = train.filter((e) => e.truncated).length;
  log(`encoded: ${train.reduce((n, e) => n + e.chosen.length + e.rejected.length, 0)} training tokens, ${truncated} of ${train.length} pairs truncated to ${o.maxLength}`);
  return { train, validation, test };
}

// ---- model and training

/**
 * The model's config and initial weights: from the seed, or from --init-from's checkpoint. A
 * --resume run starts from these too (the loop then loads the checkpoint's weights over them);
 * the reference log-probs are taken from them.
 */
function buildModel(o: RunConfig, vocabSize: number, objectives: readonly string[], log: Log): InitialModel {
  const pretrained = o.initFrom
    ? pretrainedStart(o.initFrom, { vocabSize, maxLength: o.maxLength, needsLmHead: lossNeeds(o.loss).logp, objectives, head: o.head, log })
    : undefined;
  const sizes = pretrained
    ? pretrained.sizes
    : { vocabSize, dModel: o.dModel, nLayers: o.layers, nHeads: o.heads, dMlp: 4 * o.dModel };
  const config = defaultModelConfig({
    ...sizes, maxLength: o.maxLength, numObjectives: objectives.length, head: o.head, headHidden: o.headHidden,
  });
  validateModelConfig(config);
  log(`model: ${parameterCount(config).toLocaleString('en')} parameters (d_model ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads, vocab ${config.vocabSize}, K ${config.numObjectives})` +
    (pretrained ? `, initialised from ${o.initFrom}` : ''));
  const zeroHead = o.zeroHead;
  const init = pretrained ? initFromPretrained(config, pretrained.params, o.seed, { zeroHead }) : initWeights(config, o.seed, { zeroHead });
  return { config, init };
}

/** ORT session options of every graph the run builds: --device and --threads. */
function sessionOptions(o: Pick<RunConfig, 'device' | 'threads'>): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: executionProviders(o.device),
    ...(o.threads ? { intraOpNumThreads: o.threads } : {}),
  };
}

/**
 * The pipeline's settings a --resume must share with the run it continues, keyed by the option
 * that sets each (the loop adds the model's, the loss's and the optimizer's).
 */
function runSettings(
  o: RunConfig, data: readonly DataFileProvenance[], tokenizerSha: string | undefined, objectives: readonly string[],
): Record<string, unknown> {
  return {
    '--data': data.map((d) => `${basename(d.path)} (sha256 ${d.sha256.slice(0, 12)})`),
    '--split': `${o.split.train},${o.split.validation},${o.split.test}`,
    '--max-train-pairs': o.maxTrainPairs,
    '--tokenizer': tokenizerSha === undefined ? 'none (a BPE trained on the training split)' : `sha256 ${tokenizerSha.slice(0, 12)}`,
    '--vocab-size': o.tokenizer ? null : o.vocabSize,
    '--init-from': o.initFrom ?? null,
    'objective names (--objective, the data\'s objective fields)': objectives,
  };
}

/** trainLoop from the initial weights (or --resume's checkpoint), timed, with its metrics log beside the checkpoints. */
async function runLoop(
  o: RunConfig, model: InitialModel, encoded: EncodedSplits, padId: number,
  session: ort.InferenceSession.SessionOptions, settings: Record<string, unknown>, log: Log,
): Promise<TrainedModel> {
  const t0 = performance.now();
  const checkpointDir = o.checkpointDir;
  // The log grows beside the checkpoints and goes into the model folder with the export: --out
  // holds the previous version untouched until the new one replaces it whole.
  const metricsPath = join(checkpointDir, 'train-metrics.jsonl');
  const lora = resolveLora(model.config, o.lora);
  if (lora) log(loraSummary(model.config, lora));
  const loop = await trainLoop({
    model: model.config, loss: o.loss, headDropout: o.headDropout, ...(lora ? { lora } : {}),
    optimizer: o.optimizer, steps: o.steps, batchSize: o.batchSize, gradAccum: o.gradAccum,
    evalEvery: o.evalEvery, seed: o.seed, checkpointDir,
    metricsPath, resume: o.resume, stopAfter: o.stopAfter,
    ...(o.resume ? { resumeMetricsPath: resumeMetrics(o.resume, o.out) } : {}),
    settings,
    progress: o.progress, session, log, signal: o.signal,
  }, { train: encoded.train, validation: encoded.validation }, model.init, padId);
  return { loop, seconds: (performance.now() - t0) / 1000, metricsPath };
}

// ---- evaluation of the kept weights

/**
 * The kept weights on the test split (beside the baselines) and the LSC reference statistics
 * (from validation, or test when validation is empty), with one forward graph for both: when the
 * reference split is the test split its rewards are the test evaluation's.
 */
async function evaluateSplits(input: EvaluationInput, log: Log): Promise<SplitEvaluation> {
  const { config, encoded, encoder, objectives } = input;
  const referenceSplit = encoded.validation.length > 0 ? { name: 'validation', pairs: encoded.validation } : { name: 'test', pairs: encoded.test };
  if (encoded.test.length === 0 && referenceSplit.pairs.length === 0) return { test: undefined, reference: undefined };
  const forward = await RewardForward.create(config, input.session);
  try {
    const params = weightsToTensors(config, input.weights);
    const testScores = encoded.test.length > 0 ? await scorePairs(forward, params, encoded.test, encoder.padId) : undefined;
    const test = testScores ? testEvaluation(input, testScores, log) : undefined;
    const referenceScores = referenceSplit.name === 'test' && testScores ? testScores : await scorePairs(forward, params, referenceSplit.pairs, encoder.padId);
    return { test, reference: referenceStatistics(objectives, referenceSplit.pairs, referenceScores, referenceSplit.name) };
  } finally {
    await forward.release();
  }
}

/** Test metrics (overall and per objective) from the test rewards, the baselines on the same pairs, and the log line. */
function testEvaluation(input: EvaluationInput, scored: { chosen: Float32Array[]; rejected: Float32Array[] }, log: Log): TestEvaluation {
  const { encoded, objectives, encoder } = input;
  const { test } = encoded;
  // Each pair's reward is its own objective's column.
  const chosen = scored.chosen.map((r, i) => r.subarray((test[i] as TrainExample).objective));
  const rejected = scored.rejected.map((r, i) => r.subarray((test[i] as TrainExample).objective));
  const metrics = pairMetrics(chosen, rejected);
  const byObjective = objectives.length > 1
    ? Object.fromEntries(objectives.map((name, k) => {
      const idx = test.map((e, i) => (e.objective === k ? i : -1)).filter((i) => i >= 0);
      return [name, pairMetrics(idx.map((i) => chosen[i] as Float32Array), idx.map((i) => rejected[i] as Float32Array))];
    }))
    : undefined;
  const bow = trainBagOfWords(encoded.train, { vocabSize: input.config.vocabSize, seed: input.seed });
  // Length: the response alone, untruncated (after left truncation whole sequences tie at max_length).
  const responseIds = (text: string): number[] => encoder.tokenizer.encode(text, { add_special_tokens: false }).ids;
  const responses = input.testPairs.map((p) => ({ chosen: responseIds(p.chosen), rejected: responseIds(p.rejected) }));
  const baselines = {
    split: 'test' as const,
    length: lengthBaseline(responses).accuracy,
    bag_of_words: pairwiseAccuracy((ids) => bow.score(ids), test).accuracy,
  };
  log(`test: accuracy ${metrics.accuracy.toFixed(4)} (length baseline ${baselines.length.toFixed(4)}, ` +
    `bag of words ${baselines.bag_of_words.toFixed(4)}) on ${test.length} pairs`);
  const margins = chosen.map((c, i) => (c[0] as number) - ((rejected[i] as Float32Array)[0] as number));
  return { metrics, byObjective, baselines, margins };
}

/** What implicitReward measures with: the reference (initial) and kept weights, the test split and its rewards. */
interface ImplicitRewardInput {
  config: RewardModelConfig;
  init: ModelWeights;
  best: ModelWeights;
  encoded: EncodedSplits;
  testPairs: readonly PreferencePair[];
  encoder: PairEncoder;
  session: ort.InferenceSession.SessionOptions;
  margins: readonly number[];
}

/** The DPO term's implicit reward on the test split (reference.ts), logged beside the length it may be counting. */
async function implicitReward(o: RunConfig, input: ImplicitRewardInput, log: Log): Promise<ImplicitRewardMetrics> {
  const t0 = performance.now();
  const loss = lossConfig(o.loss);
  const count = (text: string): number => input.encoder.tokenizer.encode(text, { add_special_tokens: false }).ids.length;
  const m = await implicitRewardMetrics({
    config: input.config, reference: input.init, policy: input.best, test: input.encoded.test,
    lengths: input.testPairs.map((p) => ({ chosen: count(p.chosen), rejected: count(p.rejected) })),
    rewardMargins: input.margins, beta: o.loss.method === 'haf' ? loss.haf.beta : loss.grm.beta, padId: input.encoder.padId, session: input.session,
  });
  log(`test: implicit reward β·(log π − log π_ref) accuracy ${m.accuracy.toFixed(4)}, agrees with "prefer the longer response" on ` +
    `${(100 * m.longer_agreement).toFixed(1)}% of ${m.unequal_length_pairs} pairs (reward head ${(100 * m.reward_longer_agreement).toFixed(1)}%); ` +
    `NLL per token: reference ${m.reference_nll_per_token.toFixed(3)}, kept weights ${m.policy_nll_per_token.toFixed(3)} ` +
    `(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return m;
}

/** The manifest's `metrics`. */
function trainingMetrics(test: TestEvaluation | undefined, trained: TrainedModel, encoded: EncodedSplits): TrainingMetrics {
  const { loop } = trained;
  const lastStep = loop.steps.at(-1);
  return {
    ...(test ? { test: test.metrics, ...(test.byObjective ? { test_by_objective: test.byObjective } : {}), baselines: test.baselines } : {}),
    ...(loop.bestValidation ? { validation: loop.bestValidation } : {}),
    train: {
      steps: lastStep ? lastStep.step : 0,
      best_step: loop.bestStep,
      final_loss: lastStep?.loss,
      tokens_per_second: Math.round(loop.tokensPerSecond),
      seconds: Math.round(trained.seconds),
    },
    splits: { train: encoded.train.length, validation: encoded.validation.length, test: encoded.test.length },
  };
}

// ---- export

/** What the exported folder holds beyond the run's config. */
interface ExportInput {
  config: RewardModelConfig;
  weights: ModelWeights;
  tokenizer: RunTokenizer;
  objectives: string[];
  reference: Record<string, ReferenceStatistics> | undefined;
  metrics: TrainingMetrics;
  data: DataFileProvenance[];
  trained: TrainedModel;
  /** startProvenance: --init-from's folder and hashes (and its SFT phase), or the random init */
  start: Record<string, unknown>;
  /** log π_ref of the training responses, for a loss with a reference */
  referenceLogp?: ReturnType<typeof referenceSummary>;
}

/**
 * Stages the model folder (weights, tokenizer, manifest), adds the metrics log and the report,
 * then publishes it at --out; a failure on the way discards the staging folder and leaves --out
 * as it was.
 */
async function exportFolder(o: RunConfig, input: ExportInput, log: Log): Promise<RmserveManifest> {
  const outDir = o.out;
  const staged = stageModelFolder(outDir, modelFolderContents({
    outDir, config: input.config, weights: input.weights, tokenizer: input.tokenizer.files, objectives: input.objectives,
    ...(input.reference ? { reference: input.reference } : {}),
    name: basename(dirname(resolve(outDir))), version: basename(resolve(outDir)),
    metrics: input.metrics,
    provenance: provenance(o, input),
  }));
  try {
    copyFileSync(input.trained.metricsPath, join(staged.dir, 'train-metrics.jsonl'));
    if (o.report) await writeReport(o, staged.dir, input, log);
    staged.publish();
  } catch (err) {
    staged.discard();
    throw err;
  }
  log(`exported ${outDir} (best step ${input.trained.loop.bestStep})`);
  if (o.report) log(`wrote ${join(outDir, 'report.html')}`);
  return staged.manifest as RmserveManifest;
}

/** The manifest's `provenance`: what the model was trained from and how. */
function provenance(o: RunConfig, input: ExportInput): Record<string, unknown> {
  const lora = resolveLora(input.config, o.lora);
  return {
    data: input.data,
    split: { method: 'sha256 of the prompt', ...o.split },
    tokenizer: o.tokenizer ? { path: o.tokenizer, sha256: input.tokenizer.sha256 } : { trained: 'byte-level BPE on the training split', vocab_size: o.vocabSize },
    init: input.start,
    ...(input.referenceLogp ? { reference: referenceProvenance(input.start, input.referenceLogp) } : {}),
    config: input.config,
    method: o.loss.method,
    loss: lossConfig(o.loss),
    head_dropout: o.headDropout,
    zero_head: o.zeroHead,
    // The adapters' settings; model.onnx holds them merged (W + alpha/rank·A·B).
    ...(lora ? { lora: { ...lora, merged: true } } : {}),
    optimizer: o.optimizer,
    steps: o.steps,
    batch_size: o.batchSize,
    ...(o.gradAccum > 1 ? { grad_accum: o.gradAccum } : {}),
    seed: o.seed,
    git_commit: gitCommit() ?? null,
    command: o.command ?? null,
    created_at: new Date().toISOString(),
  };
}

/** report.html in the staging folder, with rmserve eval's evaluation of the staged folder on the test split. */
async function writeReport(o: RunConfig, staging: string, input: ExportInput, log: Log): Promise<void> {
  const { config, metrics, trained } = input;
  const { evalResult, evaluated } = await evaluateStaged(o, staging, log);
  writeTrainingReport(staging, {
    title: `Training report: ${basename(dirname(resolve(o.out)))}/${basename(resolve(o.out))} (${o.loss.method})`,
    metricsLogPath: join(staging, 'train-metrics.jsonl'),
    evalResult,
    config: {
      method: o.loss.method, loss: lossConfig(o.loss), head: config.head, head_dropout: o.headDropout, zero_head: o.zeroHead,
      d_model: config.dModel, layers: config.nLayers, heads: config.nHeads, vocab: config.vocabSize, max_length: config.maxLength,
      steps: o.steps, batch_size: o.batchSize, optimizer: o.optimizer, seed: o.seed, data: o.data,
      evaluated_split: evaluated,
    },
    finalMetrics: {
      ...(metrics.test ? { test_accuracy: Number(metrics.test.accuracy.toFixed(4)) } : {}),
      ...(trained.loop.bestValidation ? { validation_accuracy: Number(trained.loop.bestValidation.accuracy.toFixed(4)) } : {}),
      best_step: trained.loop.bestStep,
      train_seconds: Math.round(trained.seconds),
    },
  });
}

/**
 * rmserve eval on the staged folder's test split, and the report's words for what was evaluated.
 * rmserve eval's test split is the trainer's only with the default fractions; with others the
 * report has no evaluation rather than one that mixes in training pairs.
 */
async function evaluateStaged(
  o: RunConfig, staging: string, log: Log,
): Promise<{ evalResult: EvalResult | undefined; evaluated: string }> {
  const sameSplit = o.split.train === TRAINER_SPLIT.train && o.split.validation === TRAINER_SPLIT.validation && o.split.test === TRAINER_SPLIT.test;
  if (!sameSplit) return { evalResult: undefined, evaluated: 'none: --split differs from rmserve eval\'s 0.8,0.1,0.1' };
  try {
    const result = await evaluateFiles({
      model: staging, data: o.data, split: 'test', device: o.device, ...(o.threads ? { intraOpThreads: o.threads } : {}),
    });
    return { evalResult: { ...result, model: { ...result.model, dir: o.out } }, evaluated: 'test' };
  } catch (err) {
    // The model is exported; a report without the evaluation beats a failed run.
    log(`report: could not evaluate the test split: ${(err as Error).message}`);
    return { evalResult: undefined, evaluated: `none: ${(err as Error).message}` };
  }
}

/** Quantiles of the LSC reference statistics (the server's LSC transform reads "0.85" by default). */
export const REFERENCE_QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.85, 0.95] as const;

/**
 * Per objective: quantiles, mean, std (population) and n of the rewards of every chosen and
 * rejected response of `pairs` about that objective (all pairs when none is), in that objective's
 * column. Both responses stand in for samples of the reference policy.
 */
export function referenceStatistics(
  objectives: readonly string[], pairs: readonly TrainExample[], scored: { chosen: Float32Array[]; rejected: Float32Array[] }, source: string,
): Record<string, ReferenceStatistics> {
  const out: Record<string, ReferenceStatistics> = {};
  objectives.forEach((name, k) => {
    let idx = pairs.map((e, i) => (e.objective === k ? i : -1)).filter((i) => i >= 0);
    if (idx.length === 0) idx = pairs.map((_, i) => i);
    const values = idx.flatMap((i) => [(scored.chosen[i] as Float32Array)[k] as number, (scored.rejected[i] as Float32Array)[k] as number]);
    const mean = values.reduce((a, v) => a + v, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) * (v - mean), 0) / values.length);
    out[name] = {
      quantiles: Object.fromEntries(REFERENCE_QUANTILES.map((q) => [String(q), quantile(values, q)])),
      mean, std, n: values.length,
      source: `rewards of the chosen and rejected responses of the ${source} split (${idx.length} pairs)`,
    };
  });
  return out;
}

/**
 * PCRM's prior for each pair: s (length ratio of the responses' tokens, TF-IDF angular cosine with
 * the IDF fitted on these pairs' responses — the training split —, or an ONNX encoder's angular
 * cosine) and δ*(s) = β1/(s + β2) + β3.
 */
export async function pcrmPriors(
  pairs: readonly PreferencePair[], loss: LossConfig, tokenizer: Pick<PairEncoder['tokenizer'], 'encode'>, device = 'cpu',
): Promise<{ similarity: Float64Array; deltaStar: Float64Array }> {
  const p = lossConfig(loss).pcrm;
  let s: Float64Array;
  if (p.similarity === 'length') {
    const tokens = (text: string): number => tokenizer.encode(text, { add_special_tokens: false }).ids.length;
    s = Float64Array.from(pairs, (pair) => lengthRatio(tokens(pair.chosen), tokens(pair.rejected)));
  } else if (p.similarity === 'tfidf') {
    const model = TfidfModel.fit(pairs.flatMap((pair) => [pair.chosen, pair.rejected]));
    s = Float64Array.from(pairs, (pair) => model.similarity(pair.chosen, pair.rejected));
  } else {
    if (!p.encoder) throw new Error('--pcrm-similarity encoder needs --similarity-encoder model.onnx');
    const enc = await SimilarityEncoder.create(p.encoder, { device });
    try {
      s = await enc.similarities(pairs);
    } finally {
      await enc.release();
    }
  }
  return { similarity: s, deltaStar: s.map((v) => deltaStar(v, p.beta1, p.beta2, p.beta3)) };
}

async function addDeltaStar(
  o: ResolvedTrainConfig, pairs: readonly PreferencePair[], train: TrainExample[], encoder: PairEncoder, log: (line: string) => void,
): Promise<void> {
  const p = lossConfig(o.loss).pcrm;
  const t0 = performance.now();
  const prior = await pcrmPriors(pairs, o.loss, encoder.tokenizer, o.device);
  train.forEach((e, i) => (e.deltaStar = prior.deltaStar[i] as number));
  const mean = (xs: Float64Array): number => xs.reduce((a, v) => a + v, 0) / Math.max(1, xs.length);
  log(`PCRM: ${p.similarity} similarity of ${train.length} training pairs (mean s ${mean(prior.similarity).toFixed(3)}, mean δ* ${mean(prior.deltaStar).toFixed(2)}) ` +
    `in ${((performance.now() - t0) / 1000).toFixed(1)} s; δ* = ${p.beta1}/(s + ${p.beta2}) + ${p.beta3}`);
}

/** log π_ref of every training response under the initial weights: one forward pass per pair, before training. */
async function addReferenceLogProbs(
  config: RewardModelConfig, init: ModelWeights, train: TrainExample[], padId: number,
  session: ort.InferenceSession.SessionOptions, log: (line: string) => void,
): Promise<void> {
  const t0 = performance.now();
  const forward = await LogProbForward.create(config, session);
  const rows = [...train.map((e) => e.chosen), ...train.map((e) => e.rejected)];
  const starts = [...train.map((e) => e.chosenStart ?? 1), ...train.map((e) => e.rejectedStart ?? 1)];
  const logp = await forward.logProbs(weightsToTensors(config, init), rows, starts, padId);
  await forward.release();
  train.forEach((e, i) => {
    e.refChosen = logp[i] as number;
    e.refRejected = logp[train.length + i] as number;
  });
  log(`reference log-probs of ${rows.length} training responses (initial weights) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

// The metrics log of the run a checkpoint belongs to: beside it, or (runs before the log moved
// there) in the model folder.
function resumeMetrics(resume: string, out: string): string {
  const beside = join(dirname(resume), 'train-metrics.jsonl');
  return existsSync(beside) ? beside : join(out, 'train-metrics.jsonl');
}

/**
 * A user's tokenizer can map a non-empty text to no tokens (a normalizer that strips control
 * characters or whitespace, a BPE with neither byte fallback nor an unknown token): the item's
 * reward would then be that of the prompt alone, the same for both responses. The trained
 * byte-level BPE has a token for every byte and cannot. Empty responses are data (HH-RLHF and
 * PandaLM have a few) and stay.
 */
function checkTexts(
  encoder: PairEncoder, pairs: readonly PreferencePair[], origin: ReadonlyMap<PreferencePair, { path: string; line: number }>, tokenizerPath: string,
): void {
  const empty = (text: string): boolean => text.length > 0 && encoder.tokenizer.encode(text, { add_special_tokens: false }).ids.length === 0;
  for (const pair of pairs) {
    const field = empty(pair.chosen) ? 'chosen' : empty(pair.rejected) ? 'rejected'
      : pair.prompt.every((m) => m.content.length === 0 || empty(m.content)) ? 'prompt' : undefined;
    if (field === undefined) continue;
    const at = origin.get(pair);
    const where = at ? `${at.path}:${at.line}` : pair.source;
    throw new Error(`${where}: field "${field}" is not empty but tokenizes to nothing with --tokenizer ${tokenizerPath}; fix the text or use a tokenizer that covers it`);
  }
}
