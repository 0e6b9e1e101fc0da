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
import { dropoutMask, seededRandom, type ModelWeights, type RewardModelConfig } from './model.js';
import { padBatch, responseTokens } from './batch.js';
import { AccumulatingStep, TrainStep, trainedSpecs, zeroMoments, type StepBatch, type StepGraphOptions, type StepResult, type TrainState } from './step.js';
import { initialTrainable, mergeAdapters, type LoraSettings } from './lora.js';
import type { ParamSpec } from './arch/index.js';

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
  /**
   * Train LoRA adapters and the head on the initial weights, frozen (lora.ts): the state and the
   * checkpoints then hold those alone, and the result's weights are merged.
   */
  lora?: LoraSettings;
  optimizer: OptimizerConfig;
  /** total optimizer steps (the LR schedule's length) */
  steps: number;
  /** pairs per micro-batch (per step without accumulation) */
  batchSize: number;
  /** micro-batches per optimizer step, their gradients averaged over all their pairs (step.ts); default 1 */
  gradAccum?: number;
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
  /** weights of the best validation accuracy (the last weights when there is no validation set); with LoRA, merged */
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
  /** set when SIGTERM stopped it (the command exits 143 = 128 + 15, not Ctrl-C's 130) */
  stoppedBy?: 'SIGTERM';
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

function tensorsOf(specs: readonly ParamSpec[], weights: ModelWeights): ParamTensors {
  return new Map(specs.map((s) => [s.name, new ort.Tensor('float32', weights.get(s.name) as Float32Array, s.shape)]));
}

function toParams(tensors: ParamTensors): Map<string, Param> {
  return new Map([...tensors].map(([name, t]) => [name, { shape: t.dims.slice(), data: t.data as Float32Array }]));
}

function fromParams(specs: readonly ParamSpec[], params: Map<string, Param>, what: string): ParamTensors {
  return new Map(
    specs.map((s) => {
      const p = params.get(s.name);
      if (p === undefined) throw new Error(`${what} has no ${s.name}`);
      if (p.shape.join() !== s.shape.join()) throw new Error(`${what}: ${s.name} has shape [${p.shape}], the model needs [${s.shape}]`);
      return [s.name, new ort.Tensor('float32', p.data, s.shape)];
    }),
  );
}

// Everything that decides the trajectory, by the option a user would change to alter it: a resume
// that differs in any of these would silently train a model that neither run describes.
export function loopSettings(options: Pick<LoopOptions, 'model' | 'loss' | 'headDropout' | 'lora' | 'optimizer' | 'steps' | 'batchSize' | 'gradAccum' | 'seed' | 'settings'>): Record<string, unknown> {
  const o = options.optimizer;
  const l = lossConfig(options.loss);
  const m = options.model;
  return {
    ...options.settings,
    '--seed': options.seed, '--steps': options.steps, '--batch-size': options.batchSize, '--grad-accum': options.gradAccum ?? 1, '--head-dropout': options.headDropout ?? 0,
    '--lr': o.lr, '--warmup': o.warmup, '--min-lr-ratio': o.minLrRatio, '--weight-decay': o.weightDecay, '--clip': o.clip,
    '--beta1': o.beta1, '--beta2': o.beta2, 'AdamW eps': o.eps,
    '--method': l.method, '--margin/--no-margin': l.margin, '--centering': l.centering, '--label-smoothing': l.labelSmoothing,
    '--pcrm-beta1': l.pcrm.beta1, '--pcrm-beta2': l.pcrm.beta2, '--pcrm-beta3': l.pcrm.beta3, '--pcrm-similarity': l.pcrm.similarity,
    '--similarity-encoder': l.pcrm.encoder ?? null,
    '--haf-rm-ratio': l.haf.rmRatio, '--haf-dpo-ratio': l.haf.dpoRatio, '--haf-beta': l.haf.beta,
    '--grm-alpha': l.grm.alpha, '--grm-beta': l.grm.beta, '--grm-reg': l.grm.reg,
    // The rank always, so that a full-model checkpoint is refused for a LoRA run and the reverse.
    '--lora-rank': options.lora?.rank ?? 0,
    ...(options.lora ? { '--lora-alpha': options.lora.alpha, '--lora-targets': options.lora.targets.join(',') } : {}),
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

/** The pairs the loop trains on, and those it validates on (none: no validation, the last weights are kept). */
export interface LoopData {
  train: TrainExample[];
  validation: TrainExample[];
}

type Log = (line: string) => void;

/** The best validation so far: what last.safetensors records, and what a resumed run starts from. */
interface BestSoFar {
  bestStep: number;
  /** null until a validation has run */
  bestAccuracy: number | null;
  bestValidation: PairMetrics | null;
}

/** Where a run starts: step 0 with the initial weights, or a checkpoint's step, weights, moments and best so far. */
interface LoopStart {
  train: TrainState;
  best: BestSoFar;
  /** the best weights, when a resumed run's best.safetensors is the step its checkpoint names */
  bestParams: ParamTensors | undefined;
  /**
   * the step whose evaluation the kept metrics log already holds: a run resumed from its final
   * checkpoint evaluates that step again for its result, and does not log it twice
   */
  loggedEvalStep: number | undefined;
}

/** What stays fixed through a run: its options and data, the graphs, the paths and the schedule's bounds. */
interface LoopContext {
  options: LoopOptions;
  data: LoopData;
  padId: number;
  log: Log;
  /** loopSettings(options): stored in every last.safetensors for the resume check */
  settings: Record<string, unknown>;
  lastPath: string;
  bestPath: string;
  /** the step graph, or with --grad-accum > 1 the accumulation and update graphs */
  trainStep: TrainStep | AccumulatingStep;
  /** the validation forward graph; undefined without validation pairs */
  forward: RewardForward | undefined;
  needs: LossNeeds;
  /** the model's full weights for trained ones: themselves, or with LoRA merged into the frozen initial weights */
  fullWeights(trained: ParamTensors): ModelWeights;
  /** per training pair, its longer row: what the batches are bucketed by */
  lengths: number[];
  /** (micro-)batches per epoch */
  perEpoch: number;
  /** micro-batches per optimizer step */
  gradAccum: number;
  /** the step this run ends at (`steps`, or `stopAfter`) */
  stopAt: number;
  /** the step this run started from */
  firstStep: number;
  progress: LoopProgress | undefined;
}

/** What the loop changes from step to step. */
interface LoopState extends LoopStart {
  /** the epoch whose batch order `batches` holds (-1 before the first step) */
  epoch: number;
  batches: number[][];
  lastValidation: PairMetrics | undefined;
  steps: StepRecord[];
  evals: EvalRecord[];
  /** real tokens and step seconds of this run, for tokens per second */
  runTokens: number;
  runSeconds: number;
  /** the smoothed loss the progress display shows */
  emaLoss: number | undefined;
}

/**
 * Trains, validates and checkpoints (runSteps), stopping after the current step, with
 * last.safetensors written, on `options.signal` or on SIGTERM. A scheduler stops a job with
 * SIGTERM (Kubernetes, Slurm, systemd; SIGKILL follows after a grace period): treated like the
 * CLI's first Ctrl-C, the job then resumes from the step it reached rather than from its last
 * --eval-every checkpoint. A second SIGTERM exits at once (143 = 128 + 15; checkpoints are
 * written by rename, so the previous one stays whole). The listener lives only as long as the
 * loop: before and after it, SIGTERM keeps Node's default (exit), as there is nothing to save.
 */
export async function trainLoop(options: LoopOptions, data: LoopData, init: ModelWeights, padId: number): Promise<LoopResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const sigterm = stopOnSigterm(log);
  try {
    const signal = options.signal ? AbortSignal.any([options.signal, sigterm.signal]) : sigterm.signal;
    const result = await runSteps({ ...options, signal }, data, init, padId);
    return result.interrupted && sigterm.signal.aborted ? { ...result, stoppedBy: 'SIGTERM' } : result;
  } finally {
    sigterm.remove();
  }
}

/** A signal the first SIGTERM aborts (a second exits with 143), and remove() to give SIGTERM back to Node. */
function stopOnSigterm(log: Log): { signal: AbortSignal; remove(): void } {
  const sigterm = new AbortController();
  const onSigterm = (): void => {
    if (sigterm.signal.aborted) process.exit(143);
    log('SIGTERM: stopping after this step and writing the checkpoint (SIGTERM again to quit now)');
    sigterm.abort();
  };
  process.on('SIGTERM', onSigterm);
  return { signal: sigterm.signal, remove: () => process.off('SIGTERM', onSigterm) };
}

/**
 * Start (or resume), then steps until `stopAt` or the signal, validating and checkpointing every
 * --eval-every steps; at the end a last validation (unless that step has one) and last.safetensors.
 */
async function runSteps(options: LoopOptions, data: LoopData, init: ModelWeights, padId: number): Promise<LoopResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  if (data.train.length === 0) throw new Error('no training pairs');
  mkdirSync(options.checkpointDir, { recursive: true });
  const settings = loopSettings(options);
  const trained = trainedSpecs(options.model, options.lora ? { settings: options.lora } : undefined);
  const start = options.resume ? resumeStart(options, trained, options.resume, settings, log) : freshStart(options, trained, init);
  const ctx = await loopContext(options, data, init, padId, settings, start.train.step, log);
  const state: LoopState = {
    ...start, epoch: -1, batches: [], lastValidation: undefined, steps: [], evals: [], runTokens: 0, runSeconds: 0, emaLoss: undefined,
  };

  while (state.train.step < ctx.stopAt && options.signal?.aborted !== true) {
    await runOneStep(ctx, state);
    const step = state.train.step;
    // The final step's validation and checkpoint come after the loop, also when it is a multiple of --eval-every.
    if (options.evalEvery > 0 && step % options.evalEvery === 0 && step < ctx.stopAt) {
      await validateAndTrackBest(ctx, state);
      saveLast(ctx, state);
    }
  }
  const interrupted = state.train.step < ctx.stopAt;
  if (!interrupted && state.evals.at(-1)?.step !== state.train.step) await validateAndTrackBest(ctx, state);
  saveLast(ctx, state);
  if (interrupted) log(`interrupted at step ${state.train.step}; continue with --resume ${ctx.lastPath}`);

  await ctx.trainStep.release();
  await ctx.forward?.release();
  return loopResult(ctx, state, interrupted);
}

/** Step 0: the initial weights (with LoRA: fresh adapters and the initial head), zero moments, no best yet, an empty metrics log. */
function freshStart(options: LoopOptions, trained: readonly ParamSpec[], init: ModelWeights): LoopStart {
  startMetricsLog(options, undefined);
  const { model, lora } = options;
  const params = lora ? tensorsOf(trained, initialTrainable(model, lora, init, options.seed)) : weightsToTensors(model, init);
  return {
    train: { params, m: zeroMoments(params), v: zeroMoments(params), step: 0 },
    best: { bestStep: 0, bestAccuracy: null, bestValidation: null },
    bestParams: undefined,
    loggedEvalStep: undefined,
  };
}

/**
 * The checkpoint's step, weights, moments and best so far, refused when it was written with
 * other settings; the metrics log cut back to the checkpoint's step.
 */
function resumeStart(options: LoopOptions, trained: readonly ParamSpec[], path: string, settings: Record<string, unknown>, log: Log): LoopStart {
  const ckpt = loadCheckpoint(path);
  if (!ckpt.adam) throw new Error(`${path} holds weights only; resuming needs the optimizer moments`);
  const saved = (ckpt.state.settings as Record<string, unknown> | undefined) ?? legacySettings(ckpt.state);
  const differ = settingsMismatch(saved, settings);
  if (differ.length > 0) {
    throw new Error(`--resume ${path}: the checkpoint was written with ${differ.join(', ')}; resume with the options of the run it continues, or start a new run without --resume`);
  }
  const train: TrainState = {
    params: fromParams(trained, ckpt.params, path), m: fromParams(trained, ckpt.adam.m, path), v: fromParams(trained, ckpt.adam.v, path), step: ckpt.step,
  };
  const best: BestSoFar = {
    bestStep: Number(ckpt.state.bestStep ?? 0),
    bestAccuracy: (ckpt.state.bestAccuracy as number | null) ?? null,
    bestValidation: (ckpt.state.bestValidation as PairMetrics | null) ?? null,
  };
  let bestParams: ParamTensors | undefined;
  const bestFile = join(dirname(path), 'best.safetensors');
  if (best.bestAccuracy !== null && existsSync(bestFile)) {
    // best.safetensors is written just before last.safetensors: after a kill between the two it
    // holds a later step than this checkpoint knows of, which the resumed run reaches again.
    const savedBest = loadCheckpoint(bestFile);
    if (savedBest.step === best.bestStep) bestParams = fromParams(trained, savedBest.params, bestFile);
  }
  const evalLogged = startMetricsLog(options, train.step);
  log(`resumed from ${path} at step ${train.step}`);
  return { train, best, bestParams, loggedEvalStep: evalLogged ? train.step : undefined };
}

/**
 * Starts the metrics log: empty for a fresh run; for a run resumed at `resumeStep`, the continued
 * run's lines up to that step. Returns whether those include that step's evaluation.
 */
function startMetricsLog(options: LoopOptions, resumeStep: number | undefined): boolean {
  const path = options.metricsPath;
  if (!path) return false;
  mkdirSync(dirname(path), { recursive: true });
  if (resumeStep === undefined) {
    writeFileSync(path, '');
    return false;
  }
  const kept = metricsUpTo(options.resumeMetricsPath ?? path, resumeStep);
  writeFileSync(`${path}.tmp`, kept.text);
  renameSync(`${path}.tmp`, path);
  return kept.evalAtStep;
}

/** The step graph (with the LR schedule), the validation graph, and the run's fixed quantities. */
async function loopContext(
  options: LoopOptions, data: LoopData, init: ModelWeights, padId: number, settings: Record<string, unknown>, firstStep: number, log: Log,
): Promise<LoopContext> {
  const { model, steps, optimizer, lora } = options;
  // The initial weights are LoRA's frozen base: the step and validation graphs hold them.
  const loraGraph = lora ? { settings: lora, base: init } : undefined;
  const schedule: LrSchedule = {
    peakLr: optimizer.lr,
    warmupSteps: optimizer.warmup,
    totalSteps: steps,
    minLr: optimizer.lr * optimizer.minLrRatio,
  };
  const stepOptions: StepGraphOptions = {
    config: model,
    loss: options.loss,
    headDropout: (options.headDropout ?? 0) > 0,
    optimizer: {
      beta1: optimizer.beta1, beta2: optimizer.beta2, eps: optimizer.eps,
      weightDecay: optimizer.weightDecay, maxGradNorm: optimizer.clip,
    },
    schedule,
    ...(loraGraph ? { lora: loraGraph } : {}),
  };
  const gradAccum = options.gradAccum ?? 1;
  // One micro-batch keeps the single fused step graph (and its graph, byte for byte).
  const trainStep = gradAccum > 1 ? await AccumulatingStep.create(stepOptions, options.session) : await TrainStep.create(stepOptions, options.session);
  const forward = data.validation.length > 0 ? await RewardForward.create(model, options.session, loraGraph) : undefined;
  return {
    options, data, padId, log, settings,
    lastPath: join(options.checkpointDir, 'last.safetensors'),
    bestPath: join(options.checkpointDir, 'best.safetensors'),
    trainStep, forward,
    needs: lossNeeds(options.loss),
    fullWeights: (p) => (lora ? mergeAdapters(model, lora, init, tensorsToWeights(p)) : tensorsToWeights(p)),
    lengths: data.train.map((e) => Math.max(e.chosen.length, e.rejected.length)),
    perEpoch: Math.ceil(data.train.length / options.batchSize),
    gradAccum,
    stopAt: Math.min(steps, options.stopAfter ?? steps),
    firstStep,
    progress: options.progress === false ? undefined : options.progress,
  };
}

/**
 * One optimizer step on the next batch (the next --grad-accum micro-batches): run the step
 * graph(s), log the step, tell the progress display.
 */
async function runOneStep(ctx: LoopContext, state: LoopState): Promise<void> {
  // Micro-batch k of the run is batch k of the epochs' orders, so a resumed run (step·n) takes the same ones.
  const micro = Array.from({ length: ctx.gradAccum }, (_, j) => state.train.step * ctx.gradAccum + j);
  const parts = micro.map((k) => nextBatchExamples(ctx, state, k));
  const batches = parts.map((examples, j) => stepBatch(ctx, examples, micro[j] as number));
  const examples = parts.flat();
  const t0 = performance.now();
  const result = await runStep(ctx.trainStep, state.train, batches);
  const seconds = (performance.now() - t0) / 1000;
  const tokens = batches.reduce((n, b) => n + b.tokens, 0);
  state.runTokens += tokens;
  state.runSeconds += seconds;
  let correct = 0;
  for (let i = 0; i < examples.length; i++) correct += (result.chosen[i] as number) > (result.rejected[i] as number) ? 1 : 0;
  const rec: StepRecord = {
    kind: 'train', split: 'train', step: state.train.step, loss: result.loss, accuracy: correct / examples.length, grad_norm: result.gradNorm,
    lr: result.lr, pairs: examples.length, tokens, padded_tokens: batches.reduce((n, b) => n + b.paddedTokens, 0), seconds, terms: result.terms,
  };
  if (!Number.isFinite(result.loss)) throw new Error(`loss is ${result.loss} at step ${state.train.step}; lower --lr or enable --clip`);
  state.steps.push(rec);
  appendRecord(ctx, rec);
  state.emaLoss = state.emaLoss === undefined ? result.loss : 0.9 * state.emaLoss + 0.1 * result.loss;
  ctx.progress?.step({
    step: state.train.step, stopAt: ctx.stopAt, firstStep: ctx.firstStep, loss: state.emaLoss, lr: result.lr, tokensPerSecond: state.runTokens / state.runSeconds,
  });
}

/** The step graph(s) on the step's micro-batches: one fused graph for one, accumulation and an update for more. */
function runStep(step: TrainStep | AccumulatingStep, state: TrainState, batches: readonly StepBatch[]): Promise<StepResult> {
  return step instanceof AccumulatingStep ? step.run(state, batches) : step.run(state, batches[0] as StepBatch);
}

/** The training pairs of (micro-)batch `k` of the run (the epoch's order drawn when a new epoch begins). */
function nextBatchExamples(ctx: LoopContext, state: LoopState, k: number): TrainExample[] {
  const epoch = Math.floor(k / ctx.perEpoch);
  if (epoch !== state.epoch) {
    state.epoch = epoch;
    state.batches = epochBatches(ctx.lengths, ctx.options.batchSize, ctx.options.seed, epoch);
  }
  return (state.batches[k % ctx.perEpoch] as number[]).map((i) => ctx.data.train[i] as TrainExample);
}

/** The step graph's inputs for these pairs, with the head-dropout mask of (micro-)batch `step` when --head-dropout is on. */
function stepBatch(ctx: LoopContext, examples: readonly TrainExample[], step: number): ReturnType<typeof makeStepBatch> {
  const { model, headDropout = 0, seed } = ctx.options;
  const batch = makeStepBatch(examples, model.numObjectives, ctx.padId, ctx.needs);
  if (headDropout > 0) {
    const rows = 2 * examples.length;
    batch.headMask = new ort.Tensor('float32', dropoutMask(rows, model.dModel, headDropout, seed, step), [rows, model.dModel]);
  }
  return batch;
}

/**
 * Validates the current weights (nothing without validation pairs), logs the result, and keeps
 * the weights (in memory and best.safetensors) when their accuracy beats the best so far.
 */
async function validateAndTrackBest(ctx: LoopContext, state: LoopState): Promise<void> {
  const metrics = await validate(ctx, state.train.params);
  if (metrics === undefined) return;
  const step = state.train.step;
  state.lastValidation = metrics;
  const rec: EvalRecord = { kind: 'eval', split: 'validation', step, ...metrics };
  state.evals.push(rec);
  if (rec.step !== state.loggedEvalStep) appendRecord(ctx, rec);
  if (state.best.bestAccuracy === null || metrics.accuracy > state.best.bestAccuracy) {
    state.best = { bestStep: step, bestAccuracy: metrics.accuracy, bestValidation: metrics };
    state.bestParams = new Map(state.train.params);
    saveCheckpoint(ctx.bestPath, { params: toParams(state.train.params), step, state: { validation: metrics } });
  }
  ctx.log(`step ${step}: validation accuracy ${metrics.accuracy.toFixed(4)} loss ${metrics.loss.toFixed(4)} reward mean ${metrics.reward_mean.toFixed(3)} std ${metrics.reward_std.toFixed(3)}`);
}

/** Pairwise metrics of `params` on the validation pairs, each pair in its own objective's column. */
async function validate(ctx: LoopContext, params: ParamTensors): Promise<PairMetrics | undefined> {
  if (!ctx.forward) return undefined;
  const { validation } = ctx.data;
  const scored = await scorePairs(ctx.forward, params, validation, ctx.padId);
  const chosen = scored.chosen.map((r, i) => r.subarray((validation[i] as TrainExample).objective));
  const rejected = scored.rejected.map((r, i) => r.subarray((validation[i] as TrainExample).objective));
  return pairMetrics(chosen, rejected);
}

/** Writes last.safetensors: weights, moments, step, the best so far and the settings a resume is checked against. */
function saveLast(ctx: LoopContext, state: LoopState): void {
  const { options } = ctx;
  // saveCheckpoint writes a temporary file and renames it, so a kill leaves the previous checkpoint.
  saveCheckpoint(ctx.lastPath, {
    params: toParams(state.train.params),
    adam: { m: toParams(state.train.m), v: toParams(state.train.v) },
    step: state.train.step,
    state: {
      ...state.best,
      seed: options.seed, steps: options.steps, batchSize: options.batchSize, model: options.model, settings: ctx.settings,
    },
  });
}

function appendRecord(ctx: LoopContext, record: StepRecord | EvalRecord): void {
  if (ctx.options.metricsPath) appendFileSync(ctx.options.metricsPath, JSON.stringify(record) + '\n');
}

/** The kept weights (the best validation's; the last without one in this run or the resumed one) and the run's records. */
function loopResult(ctx: LoopContext, state: LoopState, interrupted: boolean): LoopResult {
  const last = ctx.fullWeights(state.train.params);
  const { bestParams } = state;
  return {
    best: bestParams ? ctx.fullWeights(bestParams) : last,
    bestStep: bestParams ? state.best.bestStep : state.train.step,
    bestValidation: bestParams ? state.best.bestValidation ?? undefined : state.lastValidation,
    last,
    lastValidation: state.lastValidation,
    steps: state.steps,
    evals: state.evals,
    tokensPerSecond: state.runSeconds > 0 ? state.runTokens / state.runSeconds : 0,
    interrupted,
    checkpoint: ctx.lastPath,
  };
}
