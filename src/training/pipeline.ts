// `rmserve train` end to end: read the preference files, split by prompt, get a tokenizer (the
// user's or one trained on the training split), encode with the server's formatter/tokenizer,
// train, evaluate the kept weights on validation and test beside the length and bag-of-words
// baselines, and export the model folder with its metrics and provenance.
import { copyFileSync, existsSync, rmSync } from 'node:fs';
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
import { pretrainedStart, readFolderTokenizer, withCheckpointTokenizer, type PretrainedStart } from './hf-checkpoint.js';
import { splitByPrompt } from './split.js';
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

function responseTexts(pairs: readonly PreferencePair[]): string[] {
  return pairs.flatMap((p) => [...p.prompt.map((m) => m.content), p.chosen, p.rejected]);
}

export async function runTraining(options: TrainRunOptions): Promise<TrainRunResult> {
  // --init-from brings its own tokenizer (and chat template) unless --tokenizer names another.
  const o = withCheckpointTokenizer({ ...options, ...resolveTrainConfig(options) });
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (o.data.length === 0) throw new Error('give at least one --data file');

  // ---- data
  const all: PreferencePair[] = [];
  const origin = new Map<PreferencePair, { path: string; line: number }>();
  const dataProvenance: { path: string; sha256: string; pairs: number }[] = [];
  for (const path of o.data) {
    const file = readPreferenceFileWithStats(path);
    log(formatReadStats(file.stats));
    if (Object.keys(file.droppedLines).length > 0) log(`${file.stats.source}: skipped ${formatDroppedLines(file)}`);
    file.pairs.forEach((p, i) => origin.set(p, { path, line: file.lines[i] as number }));
    all.push(...file.pairs);
    dataProvenance.push({ path, sha256: await sha256File(path), pairs: file.pairs.length });
  }
  const split = splitByPrompt(all, o.split);
  const trainPairs = o.maxTrainPairs > 0 ? split.train.slice(0, o.maxTrainPairs) : split.train;
  log(`split by prompt: ${split.train.length} train (using ${trainPairs.length}), ${split.validation.length} validation, ${split.test.length} test pairs`);
  if (trainPairs.length === 0) {
    const prompts = new Set(all.map((p) => promptKey(p.prompt))).size;
    throw new Error(`no training pairs: the split by prompt (--split ${o.split.train},${o.split.validation},${o.split.test}) puts all ${all.length} pairs ` +
      `(${prompts} distinct prompt${prompts > 1 ? 's' : ''}) in validation and test; give more data (more distinct prompts) or a larger train fraction`);
  }
  const objectives = [...new Set(all.map((p) => p.objective ?? o.objective))].sort();
  const tokenizerSha = o.tokenizer ? await sha256File(o.tokenizer) : undefined;

  // ---- tokenizer
  let tokenizer: TokenizerFiles;
  if (o.tokenizer) {
    tokenizer = readFolderTokenizer(o.tokenizer, o.maxLength);
  } else {
    const t0 = performance.now();
    const bpe = trainByteLevelBpe(responseTexts(trainPairs), { vocabSize: o.vocabSize, modelMaxLength: o.maxLength });
    const json = bpe.tokenizerJson as unknown as Record<string, unknown>;
    tokenizer = { tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, o.maxLength) };
    log(`trained a byte-level BPE tokenizer (${o.vocabSize} tokens) on the training split in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const encoder = new PairEncoder(tokenizer, o.maxLength);
  if (o.tokenizer) checkTexts(encoder, [...trainPairs, ...split.validation, ...split.test], origin, o.tokenizer);
  const needs = lossNeeds(o.loss);
  const encode = (pairs: readonly PreferencePair[], responseStart = false): TrainExample[] =>
    pairs.map((p) => ({ ...encoder.encode(p, { responseStart }), margin: p.margin ?? 0, objective: objectives.indexOf(p.objective ?? o.objective) }));
  const train = encode(trainPairs, needs.logp);
  if (needs.deltaStar) await addDeltaStar(o, trainPairs, train, encoder, log);
  const validation = encode(split.validation);
  const test = encode(split.test);
  const truncated = train.filter((e) => e.truncated).length;
  log(`encoded: ${train.reduce((n, e) => n + e.chosen.length + e.rejected.length, 0)} training tokens, ${truncated} of ${train.length} pairs truncated to ${o.maxLength}`);

  // ---- model
  const pretrained: PretrainedStart | undefined = o.initFrom
    ? pretrainedStart(o.initFrom, { vocabSize: encoder.vocabSize, maxLength: o.maxLength, needsLmHead: needs.logp, objectives, head: o.head, log })
    : undefined;
  const sizes = pretrained
    ? pretrained.sizes
    : { vocabSize: encoder.vocabSize, dModel: o.dModel, nLayers: o.layers, nHeads: o.heads, dMlp: 4 * o.dModel };
  const config = defaultModelConfig({
    ...sizes, maxLength: o.maxLength, numObjectives: objectives.length, head: o.head, headHidden: o.headHidden,
  });
  validateModelConfig(config);
  log(`model: ${parameterCount(config).toLocaleString('en')} parameters (d_model ${config.dModel}, ${config.nLayers} layers, ${config.nHeads} heads, vocab ${config.vocabSize}, K ${config.numObjectives})` +
    (pretrained ? `, initialised from ${o.initFrom}` : ''));
  const zeroHead = o.zeroHead;
  const init: ModelWeights = pretrained ? initFromPretrained(config, pretrained.params, o.seed, { zeroHead }) : initWeights(config, o.seed, { zeroHead });

  // ---- train
  const session: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(o.device),
    ...(o.threads ? { intraOpNumThreads: o.threads } : {}),
  };
  // From the initial weights (the seed's, or --init-from's), also on --resume: the same references as the uninterrupted run.
  if (needs.reference) await addReferenceLogProbs(config, init, train, encoder.padId, session, log);
  const t0 = performance.now();
  const checkpointDir = o.checkpointDir;
  // The log grows beside the checkpoints and goes into the model folder with the export: --out
  // holds the previous version untouched until the new one replaces it whole.
  const metricsPath = join(checkpointDir, 'train-metrics.jsonl');
  const loop = await trainLoop({
    model: config, loss: o.loss, headDropout: o.headDropout, optimizer: o.optimizer, steps: o.steps, batchSize: o.batchSize,
    evalEvery: o.evalEvery, seed: o.seed, checkpointDir,
    metricsPath, resume: o.resume, stopAfter: o.stopAfter,
    ...(o.resume ? { resumeMetricsPath: resumeMetrics(o.resume, o.out) } : {}),
    settings: {
      '--data': dataProvenance.map((d) => `${basename(d.path)} (sha256 ${d.sha256.slice(0, 12)})`),
      '--split': `${o.split.train},${o.split.validation},${o.split.test}`,
      '--max-train-pairs': o.maxTrainPairs,
      '--tokenizer': tokenizerSha === undefined ? 'none (a BPE trained on the training split)' : `sha256 ${tokenizerSha.slice(0, 12)}`,
      '--vocab-size': o.tokenizer ? null : o.vocabSize,
      '--init-from': o.initFrom ?? null,
      'objective names (--objective, the data\'s objective fields)': objectives,
    },
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

  // ---- LSC reference statistics: the kept model's rewards of the validation responses
  const referenceSplit = validation.length > 0 ? { name: 'validation', pairs: validation } : { name: 'test', pairs: test };
  let reference: Record<string, ReferenceStatistics> | undefined;
  if (referenceSplit.pairs.length > 0) {
    const forward = await RewardForward.create(config, session);
    const scored = await scorePairs(forward, weightsToTensors(config, loop.best), referenceSplit.pairs, encoder.padId);
    await forward.release();
    reference = referenceStatistics(objectives, referenceSplit.pairs, scored, referenceSplit.name);
  }

  // ---- export
  const outDir = o.out;
  const staged = stageModelFolder(outDir, modelFolderContents({
      outDir, config, weights: loop.best, tokenizer, objectives, ...(reference ? { reference } : {}),
      name: basename(dirname(resolve(outDir))), version: basename(resolve(outDir)),
      metrics,
      provenance: {
        data: dataProvenance,
        split: { method: 'sha256 of the prompt', ...o.split },
        tokenizer: o.tokenizer ? { path: o.tokenizer, sha256: tokenizerSha } : { trained: 'byte-level BPE on the training split', vocab_size: o.vocabSize },
        init: o.initFrom ? { from: o.initFrom } : { seed: o.seed },
        config,
        method: o.loss.method,
        loss: lossConfig(o.loss),
        head_dropout: o.headDropout,
        zero_head: zeroHead,
        optimizer: o.optimizer,
        steps: o.steps,
        batch_size: o.batchSize,
        seed: o.seed,
        git_commit: gitCommit() ?? null,
        command: o.command ?? null,
        created_at: new Date().toISOString(),
      },
    }));
  const staging = staged.dir;
  const manifest = staged.manifest as RmserveManifest;
  try {
    copyFileSync(metricsPath, join(staging, 'train-metrics.jsonl'));

    // ---- report.html beside the model, with an evaluation of the exported folder on the test split
    if (o.report) {
      // rmserve eval's test split is the trainer's only with the default fractions; with others the
      // report has no evaluation rather than one that mixes in training pairs.
      const sameSplit = o.split.train === TRAINER_SPLIT.train && o.split.validation === TRAINER_SPLIT.validation && o.split.test === TRAINER_SPLIT.test;
      let evalResult: EvalResult | undefined;
      let evaluated = sameSplit ? 'test' : 'none: --split differs from rmserve eval\'s 0.8,0.1,0.1';
      if (sameSplit) {
        try {
          evalResult = await evaluateFiles({
            model: staging, data: o.data, split: 'test', device: o.device, ...(o.threads ? { intraOpThreads: o.threads } : {}),
          });
          evalResult = { ...evalResult, model: { ...evalResult.model, dir: outDir } };
        } catch (err) {
          // The model is exported; a report without the evaluation beats a failed run.
          evaluated = `none: ${(err as Error).message}`;
          log(`report: could not evaluate the test split: ${(err as Error).message}`);
        }
      }
      writeTrainingReport(staging, {
        title: `Training report: ${basename(dirname(resolve(outDir)))}/${basename(resolve(outDir))} (${o.loss.method})`,
        metricsLogPath: join(staging, 'train-metrics.jsonl'),
        evalResult,
        config: {
          method: o.loss.method, loss: lossConfig(o.loss), head: config.head, head_dropout: o.headDropout, zero_head: zeroHead,
          d_model: config.dModel, layers: config.nLayers, heads: config.nHeads, vocab: config.vocabSize, max_length: config.maxLength,
          steps: o.steps, batch_size: o.batchSize, optimizer: o.optimizer, seed: o.seed, data: o.data,
          evaluated_split: evaluated,
        },
        finalMetrics: {
          ...(testMetrics ? { test_accuracy: Number(testMetrics.accuracy.toFixed(4)) } : {}),
          ...(loop.bestValidation ? { validation_accuracy: Number(loop.bestValidation.accuracy.toFixed(4)) } : {}),
          best_step: loop.bestStep,
          train_seconds: Math.round(trainSeconds),
        },
      });
    }
    staged.publish();
  } catch (err) {
    staged.discard();
    throw err;
  }
  log(`exported ${outDir} (best step ${loop.bestStep})`);
  if (o.report) log(`wrote ${join(outDir, 'report.html')}`);
  return { outDir, manifest, config, loop, test: testMetrics };
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
