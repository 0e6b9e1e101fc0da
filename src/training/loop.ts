// The training loop: length-bucketed mini-batches of pairs in a seeded order, one step-graph run
// per batch, validation every N steps (pairwise accuracy, reward mean/std), the best weights kept,
// checkpoints that resume the same trajectory, progress reports for a display (the CLI's bar)
// and a JSONL metrics log.
//
// Resume is exact because everything that decides the next step is either in the checkpoint
// (float32 parameters and moments, stored bit-for-bit; the step) or a pure function of the seed
// and the step (the batch order: epoch e's order comes from seed + e alone).
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadCheckpoint, saveCheckpoint, type Param } from './checkpoint.js';
import { RewardForward, pairMetrics, scorePairs, tensorsToWeights, weightsToTensors, type PairMetrics, type ParamTensors } from './evaluate.js';
import type { EncodedPair } from './encode.js';
import type { LrSchedule } from './graph/optim.js';
import { lossConfig, lossNeeds, type LossConfig, type LossNeeds } from './losses.js';
import { dropoutMask, parameterSpecs, seededRandom, type ModelWeights, type RewardModelConfig } from './model.js';
import { padBatch, responseTokens } from './batch.js';
import { TrainStep, zeroMoments, type StepBatch, type TrainState } from './step.js';

/** A pair ready for the step graph. */
export interface TrainExample extends EncodedPair {
  /** Bradley–Terry margin (0 when the data gives none) */
  margin: number;
  /** index of the reward column this pair is about */
  objective: number;
  /** PCRM's δ*(s) for this pair */
  deltaStar?: number;
  /** log π_ref of the chosen and rejected responses (initial weights; HaF-RM, GRM-DPO) */
  refChosen?: number;
  refRejected?: number;
}

export interface OptimizerConfig {
  lr: number;
  /** linear warmup steps */
  warmup: number;
  /** cosine decays to lr · minLrRatio at the last step */
  minLrRatio: number;
  weightDecay: number;
  /** global gradient-norm clip; 0 = off */
  clip: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export const DEFAULT_OPTIMIZER: OptimizerConfig = {
  lr: 3e-4, warmup: 20, minLrRatio: 0.1, weightDecay: 0.01, clip: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8,
};

export interface LoopOptions {
  model: RewardModelConfig;
  loss: LossConfig;
  /** dropout before the reward head while training (GRM's head); 0 = none */
  headDropout?: number;
  optimizer: OptimizerConfig;
  /** total optimizer steps (the LR schedule's length) */
  steps: number;
  /** pairs per step */
  batchSize: number;
  /** validate every this many steps (and at the end); 0 = only at the end */
  evalEvery: number;
  seed: number;
  /** last.safetensors (resumable) and best.safetensors (weights) go here */
  checkpointDir: string;
  /** one JSON object per line: train steps and evaluations */
  metricsPath?: string;
  /** continue from this checkpoint (written by an earlier run with the same options) */
  resume?: string;
  /** the metrics log of the run `resume` continues (default: metricsPath) */
  resumeMetricsPath?: string;
  /**
   * The caller's settings a resumed run must share with the run that wrote the checkpoint (data,
   * split, tokenizer …), keyed by the CLI option that sets each; the loop adds its own.
   */
  settings?: Record<string, unknown>;
  /** stop after this step although the schedule runs to `steps` (an interrupted run) */
  stopAfter?: number;
  /** stop after the current step, write last.safetensors and return (Ctrl-C in the CLI) */
  signal?: AbortSignal;
  /** told after every step; `rmserve train` draws its progress bar from it (src/commands/progress.ts). Default: none */
  progress?: LoopProgress | false;
  /** ORT session options for the step and evaluation graphs (threads, execution providers) */
  session?: ort.InferenceSession.SessionOptions;
  log?: (line: string) => void;
}

/** Where a run is after a step: what a progress display shows. */
export interface StepProgress {
  /** steps done, those of the run a resumed one continues included */
  step: number;
  /** the step this run ends at (`steps`, or `stopAfter`) */
  stopAt: number;
  /** the step this run started from (0, or the resumed checkpoint's) */
  firstStep: number;
  /** the training loss, smoothed (EMA, 0.9) */
  loss: number;
  lr: number;
  /** real tokens per second over this run's steps */
  tokensPerSecond: number;
}

/** A progress display. The loop only reports; drawing it (and clearing it for log lines) is the caller's. */
export interface LoopProgress {
  step(progress: StepProgress): void;
}

export interface StepRecord {
  kind: 'train';
  /** the report's series name (src/eval/report reads `split`) */
  split: 'train';
  step: number;
  loss: number;
  accuracy: number;
  grad_norm: number;
  lr: number;
  pairs: number;
  tokens: number;
  padded_tokens: number;
  seconds: number;
  /** the loss's named parts (bt, prior, dpo, reg, …) */
  terms: Record<string, number>;
}

export interface EvalRecord extends PairMetrics {
  kind: 'eval';
  split: 'validation';
  step: number;
}

export interface LoopResult {
  /** weights of the best validation accuracy (the last weights when there is no validation set) */
  best: ModelWeights;
  bestStep: number;
  bestValidation: PairMetrics | undefined;
  last: ModelWeights;
  lastValidation: PairMetrics | undefined;
  steps: StepRecord[];
  evals: EvalRecord[];
  /** real tokens per second over the steps of this run (excluding evaluation) */
  tokensPerSecond: number;
  /** stopped by `signal` before `steps` (or `stopAfter`) */
  interrupted: boolean;
  /** the resumable checkpoint written last */
  checkpoint: string;
}

/** The pair indices of every batch of epoch `epoch`: shuffled, bucketed by length, batches shuffled. */
export function epochBatches(lengths: readonly number[], batchSize: number, seed: number, epoch: number): number[][] {
  const rand = seededRandom((seed * 1000003 + epoch * 7919) >>> 0);
  const order = shuffle(lengths.map((_, i) => i), rand);
  // Sort within windows of 32 batches: pairs of similar length share a batch (less padding)
  // while the order stays random at the scale of an epoch.
  const window = batchSize * 32;
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += window) {
    const chunk = order.slice(start, start + window).sort((a, b) => (lengths[a] as number) - (lengths[b] as number));
    for (let i = 0; i < chunk.length; i += batchSize) batches.push(chunk.slice(i, i + batchSize));
  }
  return shuffle(batches, rand);
}

function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

const NO_EXTRAS: LossNeeds = { deltaStar: false, logp: false, logpRejected: false, reference: false };

export function makeStepBatch(
  examples: readonly TrainExample[], numObjectives: number, padId: number, needs: LossNeeds = NO_EXTRAS,
): StepBatch & { tokens: number; paddedTokens: number } {
  const P = examples.length;
  const rows = [...examples.map((e) => e.chosen), ...examples.map((e) => e.rejected)];
  const padded = padBatch(rows, padId);
  const objective = new Float32Array(P * numObjectives);
  examples.forEach((e, i) => (objective[i * numObjectives + e.objective] = 1));
  const field = (what: string, value: number | undefined): number => {
    if (value === undefined) throw new Error(`training pair lacks ${what}, which the loss needs`);
    return value;
  };
  const batch: StepBatch & { tokens: number; paddedTokens: number } = {
    inputIds: padded.inputIds,
    attentionMask: padded.attentionMask,
    margin: new ort.Tensor('float32', Float32Array.from(examples, (e) => e.margin), [P]),
    objective: new ort.Tensor('float32', objective, [P, numObjectives]),
    tokens: padded.tokens,
    paddedTokens: padded.inputIds.size,
  };
  if (needs.deltaStar) batch.deltaStar = new ort.Tensor('float32', Float32Array.from(examples, (e) => field('δ*', e.deltaStar)), [P]);
  if (needs.logp) {
    const starts = [...examples.map((e) => field('a response start', e.chosenStart)), ...examples.map((e) => field('a response start', e.rejectedStart))];
    // GRM's SFT regularisers read log π of the chosen rows (0..P−1) only.
    const tokens = responseTokens(rows, starts, padded.inputIds.dims[1] as number, needs.logpRejected ? 2 * P : P);
    batch.lmPositions = tokens.positions;
    batch.lmTargets = tokens.targets;
    batch.lmSegments = tokens.segments;
  }
  if (needs.reference) {
    const ref = [...examples.map((e) => field('reference log π', e.refChosen)), ...examples.map((e) => field('reference log π', e.refRejected))];
    batch.refLogp = new ort.Tensor('float32', Float32Array.from(ref), [2 * P]);
  }
  return batch;
}

function toParams(tensors: ParamTensors): Map<string, Param> {
  return new Map([...tensors].map(([name, t]) => [name, { shape: t.dims.slice(), data: t.data as Float32Array }]));
}

function fromParams(c: RewardModelConfig, params: Map<string, Param>, what: string): ParamTensors {
  return new Map(
    parameterSpecs(c).map((s) => {
      const p = params.get(s.name);
      if (p === undefined) throw new Error(`${what} has no ${s.name}`);
      if (p.shape.join() !== s.shape.join()) throw new Error(`${what}: ${s.name} has shape [${p.shape}], the model needs [${s.shape}]`);
      return [s.name, new ort.Tensor('float32', p.data, s.shape)];
    }),
  );
}

// Everything that decides the trajectory, by the option a user would change to alter it: a resume
// that differs in any of these would silently train a model that neither run describes.
export function loopSettings(options: Pick<LoopOptions, 'model' | 'loss' | 'headDropout' | 'optimizer' | 'steps' | 'batchSize' | 'seed' | 'settings'>): Record<string, unknown> {
  const o = options.optimizer;
  const l = lossConfig(options.loss);
  const m = options.model;
  return {
    ...options.settings,
    '--seed': options.seed, '--steps': options.steps, '--batch-size': options.batchSize, '--head-dropout': options.headDropout ?? 0,
    '--lr': o.lr, '--warmup': o.warmup, '--min-lr-ratio': o.minLrRatio, '--weight-decay': o.weightDecay, '--clip': o.clip,
    '--beta1': o.beta1, '--beta2': o.beta2, 'AdamW eps': o.eps,
    '--method': l.method, '--margin/--no-margin': l.margin, '--centering': l.centering, '--label-smoothing': l.labelSmoothing,
    '--pcrm-beta1': l.pcrm.beta1, '--pcrm-beta2': l.pcrm.beta2, '--pcrm-beta3': l.pcrm.beta3, '--pcrm-similarity': l.pcrm.similarity,
    '--similarity-encoder': l.pcrm.encoder ?? null,
    '--haf-rm-ratio': l.haf.rmRatio, '--haf-dpo-ratio': l.haf.dpoRatio, '--haf-beta': l.haf.beta,
    '--grm-alpha': l.grm.alpha, '--grm-beta': l.grm.beta, '--grm-reg': l.grm.reg,
    ...modelSettings(m),
  };
}

function modelSettings(m: RewardModelConfig): Record<string, unknown> {
  return {
    '--d-model': m.dModel, '--layers': m.nLayers, '--heads': m.nHeads, '--max-length': m.maxLength, '--head': m.head, '--head-hidden': m.headHidden,
    'vocabulary size (--vocab-size, --tokenizer)': m.vocabSize, 'reward columns (objectives of the data, --objective)': m.numObjectives,
    'MLP width': m.dMlp, 'activation': m.activation, 'LayerNorm eps': m.layerNormEps, 'init std': m.initStd,
  };
}

// Checkpoints from before `settings` was stored hold these; comparing them still catches the usual mistakes.
function legacySettings(state: Record<string, unknown>): Record<string, unknown> {
  const model = state.model as RewardModelConfig | undefined;
  return {
    ...(state.seed === undefined ? {} : { '--seed': state.seed }),
    ...(state.steps === undefined ? {} : { '--steps': state.steps }),
    ...(state.batchSize === undefined ? {} : { '--batch-size': state.batchSize }),
    ...(model === undefined ? {} : modelSettings(model)),
  };
}

/** The settings a resume would change, as "--seed 1 (this run: 2)"; empty when it may go on. */
export function settingsMismatch(saved: Record<string, unknown>, current: Record<string, unknown>): string[] {
  const show = (v: unknown): string => (v === undefined ? 'unset' : typeof v === 'string' ? v : JSON.stringify(v));
  return Object.keys(current)
    .filter((k) => k in saved && JSON.stringify(saved[k]) !== JSON.stringify(current[k]))
    .map((k) => `${k} ${show(saved[k])} (this run: ${show(current[k])})`);
}

// The log of the continued run up to the checkpoint's step: a killed run may have logged steps
// after its last checkpoint, which the resumed run does again. A line cut off by the kill is dropped.
function metricsUpTo(path: string, step: number): { text: string; evalAtStep: boolean } {
  if (!existsSync(path)) return { text: '', evalAtStep: false };
  let evalAtStep = false;
  const kept = readFileSync(path, 'utf8').split('\n').filter((line) => {
    try {
      const rec = JSON.parse(line) as { step?: unknown; kind?: unknown };
      if (typeof rec.step !== 'number' || rec.step > step) return false;
      if (rec.step === step && rec.kind === 'eval') evalAtStep = true;
      return true;
    } catch {
      return false;
    }
  });
  return { text: kept.map((line) => line + '\n').join(''), evalAtStep };
}

interface ResumeState {
  bestStep: number;
  bestAccuracy: number | null;
  bestValidation: PairMetrics | null;
}

/**
 * Trains, validates and checkpoints (runLoop), stopping after the current step, with
 * last.safetensors written, on `options.signal` or on SIGTERM. A scheduler stops a job with
 * SIGTERM (Kubernetes, Slurm, systemd; SIGKILL follows after a grace period): treated like the
 * CLI's first Ctrl-C, the job then resumes from the step it reached rather than from its last
 * --eval-every checkpoint. A second SIGTERM exits at once (143 = 128 + 15; checkpoints are
 * written by rename, so the previous one stays whole). The listener lives only as long as the
 * loop: before and after it, SIGTERM keeps Node's default (exit), as there is nothing to save.
 */
export async function trainLoop(options: LoopOptions, data: { train: TrainExample[]; validation: TrainExample[] }, init: ModelWeights, padId: number): Promise<LoopResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const sigterm = new AbortController();
  const onSigterm = (): void => {
    if (sigterm.signal.aborted) process.exit(143);
    log('SIGTERM: stopping after this step and writing the checkpoint (SIGTERM again to quit now)');
    sigterm.abort();
  };
  process.on('SIGTERM', onSigterm);
  try {
    const signal = options.signal ? AbortSignal.any([options.signal, sigterm.signal]) : sigterm.signal;
    return await runLoop({ ...options, signal }, data, init, padId);
  } finally {
    process.off('SIGTERM', onSigterm);
  }
}

async function runLoop(options: LoopOptions, data: { train: TrainExample[]; validation: TrainExample[] }, init: ModelWeights, padId: number): Promise<LoopResult> {
  const { model, steps } = options;
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (data.train.length === 0) throw new Error('no training pairs');
  mkdirSync(options.checkpointDir, { recursive: true });
  const settings = loopSettings(options);
  const lastPath = join(options.checkpointDir, 'last.safetensors');
  const bestPath = join(options.checkpointDir, 'best.safetensors');

  let state: TrainState;
  let resume: ResumeState = { bestStep: 0, bestAccuracy: null, bestValidation: null };
  let best: ParamTensors | undefined;
  // A run resumed from its final checkpoint evaluates that step again for its result; the log has it.
  let evalLoggedAt: number | undefined;
  if (options.resume) {
    const ckpt = loadCheckpoint(options.resume);
    if (!ckpt.adam) throw new Error(`${options.resume} holds weights only; resuming needs the optimizer moments`);
    const saved = (ckpt.state.settings as Record<string, unknown> | undefined) ?? legacySettings(ckpt.state);
    const differ = settingsMismatch(saved, settings);
    if (differ.length > 0) {
      throw new Error(`--resume ${options.resume}: the checkpoint was written with ${differ.join(', ')}; resume with the options of the run it continues, or start a new run without --resume`);
    }
    const params = fromParams(model, ckpt.params, options.resume);
    state = { params, m: fromParams(model, ckpt.adam.m, options.resume), v: fromParams(model, ckpt.adam.v, options.resume), step: ckpt.step };
    resume = {
      bestStep: Number(ckpt.state.bestStep ?? 0),
      bestAccuracy: (ckpt.state.bestAccuracy as number | null) ?? null,
      bestValidation: (ckpt.state.bestValidation as PairMetrics | null) ?? null,
    };
    const bestFile = join(dirname(options.resume), 'best.safetensors');
    if (resume.bestAccuracy !== null && existsSync(bestFile)) {
      // best.safetensors is written just before last.safetensors: after a kill between the two it
      // holds a later step than this checkpoint knows of, which the resumed run reaches again.
      const saved = loadCheckpoint(bestFile);
      if (saved.step === resume.bestStep) best = fromParams(model, saved.params, bestFile);
    }
    if (options.metricsPath) {
      const kept = metricsUpTo(options.resumeMetricsPath ?? options.metricsPath, state.step);
      if (kept.evalAtStep) evalLoggedAt = state.step;
      mkdirSync(dirname(options.metricsPath), { recursive: true });
      writeFileSync(`${options.metricsPath}.tmp`, kept.text);
      renameSync(`${options.metricsPath}.tmp`, options.metricsPath);
    }
    log(`resumed from ${options.resume} at step ${state.step}`);
  } else {
    if (options.metricsPath) {
      mkdirSync(dirname(options.metricsPath), { recursive: true });
      writeFileSync(options.metricsPath, '');
    }
    const params = weightsToTensors(model, init);
    state = { params, m: zeroMoments(params), v: zeroMoments(params), step: 0 };
  }

  const schedule: LrSchedule = {
    peakLr: options.optimizer.lr,
    warmupSteps: options.optimizer.warmup,
    totalSteps: steps,
    minLr: options.optimizer.lr * options.optimizer.minLrRatio,
  };
  const trainStep = await TrainStep.create({
    config: model,
    loss: options.loss,
    headDropout: (options.headDropout ?? 0) > 0,
    optimizer: {
      beta1: options.optimizer.beta1, beta2: options.optimizer.beta2, eps: options.optimizer.eps,
      weightDecay: options.optimizer.weightDecay, maxGradNorm: options.optimizer.clip,
    },
    schedule,
  }, options.session);
  const forward = data.validation.length > 0 ? await RewardForward.create(model, options.session) : undefined;

  const record = (obj: StepRecord | EvalRecord): void => {
    if (options.metricsPath) appendFileSync(options.metricsPath, JSON.stringify(obj) + '\n');
  };
  const evaluate = async (): Promise<PairMetrics | undefined> => {
    if (!forward) return undefined;
    const scored = await scorePairs(forward, state.params, data.validation, padId);
    const chosen = scored.chosen.map((r, i) => r.subarray((data.validation[i] as TrainExample).objective));
    const rejected = scored.rejected.map((r, i) => r.subarray((data.validation[i] as TrainExample).objective));
    return pairMetrics(chosen, rejected);
  };
  // saveCheckpoint writes a temporary file and renames it, so a kill leaves the previous checkpoint.
  const saveLast = (): void => {
    saveCheckpoint(lastPath, {
      params: toParams(state.params),
      adam: { m: toParams(state.m), v: toParams(state.v) },
      step: state.step,
      state: {
        bestStep: resume.bestStep, bestAccuracy: resume.bestAccuracy, bestValidation: resume.bestValidation,
        seed: options.seed, steps, batchSize: options.batchSize, model, settings,
      },
    });
  };

  const needs = lossNeeds(options.loss);
  const lengths = data.train.map((e) => Math.max(e.chosen.length, e.rejected.length));
  const perEpoch = Math.ceil(data.train.length / options.batchSize);
  let epoch = -1;
  let batches: number[][] = [];
  const stepRecords: StepRecord[] = [];
  const evalRecords: EvalRecord[] = [];
  let lastValidation: PairMetrics | undefined;
  let runTokens = 0;
  let runSeconds = 0;
  const stopAt = Math.min(steps, options.stopAfter ?? steps);
  const progress = options.progress === false ? undefined : options.progress;
  const firstStep = state.step;
  let emaLoss: number | undefined;

  const runEval = async (): Promise<void> => {
    const metrics = await evaluate();
    if (metrics === undefined) return;
    lastValidation = metrics;
    const rec: EvalRecord = { kind: 'eval', split: 'validation', step: state.step, ...metrics };
    evalRecords.push(rec);
    if (rec.step !== evalLoggedAt) record(rec);
    if (resume.bestAccuracy === null || metrics.accuracy > resume.bestAccuracy) {
      resume = { bestStep: state.step, bestAccuracy: metrics.accuracy, bestValidation: metrics };
      best = new Map(state.params);
      saveCheckpoint(bestPath, { params: toParams(state.params), step: state.step, state: { validation: metrics } });
    }
    log(`step ${state.step}: validation accuracy ${metrics.accuracy.toFixed(4)} loss ${metrics.loss.toFixed(4)} reward mean ${metrics.reward_mean.toFixed(3)} std ${metrics.reward_std.toFixed(3)}`);
  };

  while (state.step < stopAt && options.signal?.aborted !== true) {
    const e = Math.floor(state.step / perEpoch);
    if (e !== epoch) {
      epoch = e;
      batches = epochBatches(lengths, options.batchSize, options.seed, epoch);
    }
    const examples = (batches[state.step % perEpoch] as number[]).map((i) => data.train[i] as TrainExample);
    const batch = makeStepBatch(examples, model.numObjectives, padId, needs);
    const p = options.headDropout ?? 0;
    if (p > 0) {
      const rows = 2 * examples.length;
      batch.headMask = new ort.Tensor('float32', dropoutMask(rows, model.dModel, p, options.seed, state.step), [rows, model.dModel]);
    }
    const t0 = performance.now();
    const result = await trainStep.run(state, batch);
    const seconds = (performance.now() - t0) / 1000;
    runTokens += batch.tokens;
    runSeconds += seconds;
    let correct = 0;
    for (let i = 0; i < examples.length; i++) correct += (result.chosen[i] as number) > (result.rejected[i] as number) ? 1 : 0;
    const rec: StepRecord = {
      kind: 'train', split: 'train', step: state.step, loss: result.loss, accuracy: correct / examples.length, grad_norm: result.gradNorm,
      lr: result.lr, pairs: examples.length, tokens: batch.tokens, padded_tokens: batch.paddedTokens, seconds, terms: result.terms,
    };
    if (!Number.isFinite(result.loss)) throw new Error(`loss is ${result.loss} at step ${state.step}; lower --lr or enable --clip`);
    stepRecords.push(rec);
    record(rec);
    emaLoss = emaLoss === undefined ? result.loss : 0.9 * emaLoss + 0.1 * result.loss;
    progress?.step({ step: state.step, stopAt, firstStep, loss: emaLoss, lr: result.lr, tokensPerSecond: runTokens / runSeconds });
    if (options.evalEvery > 0 && state.step % options.evalEvery === 0 && state.step < stopAt) {
      await runEval();
      saveLast();
    }
  }
  const interrupted = state.step < stopAt;
  if (!interrupted && evalRecords.at(-1)?.step !== state.step) await runEval();
  saveLast();
  if (interrupted) log(`interrupted at step ${state.step}; continue with --resume ${lastPath}`);

  await trainStep.release();
  await forward?.release();
  const last = tensorsToWeights(state.params);
  return {
    best: best ? tensorsToWeights(best) : last,
    bestStep: best ? resume.bestStep : state.step,
    bestValidation: best ? resume.bestValidation ?? undefined : lastValidation,
    last,
    lastValidation,
    steps: stepRecords,
    evals: evalRecords,
    tokensPerSecond: runSeconds > 0 ? runTokens / runSeconds : 0,
    interrupted,
    checkpoint: lastPath,
  };
}
