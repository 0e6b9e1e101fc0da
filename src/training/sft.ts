// `rmserve train --method sft`: the LM phase before HaF-RM or GRM. Next-token loss (the mean NLL
// per response token) on the chosen responses of the training split, each after its prompt, so
// that the LM head a later --init-from run starts from — and whose frozen copy is HaF-RM's and
// GRM-DPO's reference π_ref — is a language model of the data rather than a random network.
//
// Same machinery as the reward step (step.ts): one ONNX graph per step with the forward pass
// (model.ts buildForward), the LM head's response log-probs (model.ts responseLogProbs), the
// backward pass (graph/autodiff.ts) and AdamW with the LR schedule (graph/optim.ts), parameters
// and moments streaming through as inputs and outputs. Only the decoder is trained: the reward
// head gets no gradient from this loss and is not part of the causal-LM export, so it is fed
// unchanged and has no moments.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as ort from 'onnxruntime-node';
import { gradients } from './graph/autodiff.js';
import { GraphBuilder, type Value } from './graph/builder.js';
import { addOptimizerStep, type LrSchedule } from './graph/optim.js';
import { padBatch, responseTokens } from './batch.js';
import { LogProbForward, tensorsToWeights, weightsToTensors } from './evaluate.js';
import { epochBatches, type LoopProgress, type OptimizerConfig } from './loop.js';
import { MODEL_OPSET, buildForward, declareParamInputs, lmHeadWeight, parameterSpecs, responseLogProbs, type ModelWeights, type RewardModelConfig } from './model.js';
import { zeroMoments, type TrainState } from './step.js';

/** One sequence of the LM phase: prompt and response as the reward model sees them, and where the response starts. */
export interface LmExample {
  ids: number[];
  /** index of the first response token (EncodedPair.chosenStart): the loss counts tokens from here */
  start: number;
}

/** Response tokens of an example the loss counts: nothing predicts token 0 (batch.ts responseTokens). */
export function responseTokenCount(e: LmExample): number {
  return Math.max(0, e.ids.length - Math.max(1, e.start));
}

/** The reward head's parameters: no gradient from the LM loss, so neither updated nor given moments. */
function isHead(name: string): boolean {
  return name.startsWith('head.');
}

/**
 * The LM step graph: inputs as the reward step's LM-head inputs (input_ids, attention_mask
 * [R, T]; lm_positions, lm_targets [N]; lm_segments [R, N]) plus the parameters, the decoder's
 * moments and `step`; outputs `loss` (mean NLL over the batch's N response tokens), the updated
 * decoder parameters and moments, grad_norm, lr_used.
 */
export function buildLmStepGraph(config: RewardModelConfig, optimizer: OptimizerConfig, schedule: LrSchedule): Uint8Array {
  const b = new GraphBuilder('lm_train_step', { opset: MODEL_OPSET });
  const params = declareParamInputs(b, config);
  const ids = b.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['rows', 'seq']);
  const tokens = {
    positions: b.input('lm_positions', 'int64', ['lm_tokens']),
    targets: b.input('lm_targets', 'int64', ['lm_tokens']),
    segments: b.input('lm_segments', 'float32', ['rows', 'lm_tokens']),
  };
  const { hidden } = buildForward(b, config, params, ids, mask, { lmHidden: true });
  const rows = responseLogProbs(b, hidden as Value, lmHeadWeight(config, params), tokens); //  [R] Σ log π per row
  // N = Σ segments (a batch without response tokens has one placeholder of weight 0: max(N, 1)).
  const count = b.op('Max', [b.reduceSum(tokens.segments, [0, 1], false), b.scalar('float32', 1)]);
  const loss = b.div(b.neg(b.reduceSum(rows, [0], false)), count); //                          scalar
  const trained = parameterSpecs(config).filter((s) => !isHead(s.name));
  const values = trained.map((s) => params.get(s.name) as Value);
  const grads = gradients(b, loss, values);
  addOptimizerStep(b, trained.map((s, i) => ({ value: values[i] as Value, decay: s.decay })), grads, {
    beta1: optimizer.beta1, beta2: optimizer.beta2, eps: optimizer.eps, weightDecay: optimizer.weightDecay, maxGradNorm: optimizer.clip, schedule,
  });
  b.output(loss, 'loss');
  return b.toModelProto({ docString: 'rmserve LM step (SFT phase): forward, mean response-token NLL, backward, AdamW' });
}

/** One run of the LM step graph per batch; advances a TrainState whose moments cover the decoder only. */
export class LmStep {
  private constructor(private readonly session: ort.InferenceSession, private readonly trained: string[]) {}

  static async create(config: RewardModelConfig, optimizer: OptimizerConfig, schedule: LrSchedule, session: ort.InferenceSession.SessionOptions = {}): Promise<LmStep> {
    const s = await ort.InferenceSession.create(buildLmStepGraph(config, optimizer, schedule), { graphOptimizationLevel: 'all', ...session });
    return new LmStep(s, parameterSpecs(config).filter((p) => !isHead(p.name)).map((p) => p.name));
  }

  async run(state: TrainState, examples: readonly LmExample[], padId: number): Promise<{ loss: number; gradNorm: number; lr: number; tokens: number }> {
    const rows = examples.map((e) => e.ids);
    const padded = padBatch(rows, padId);
    const lm = responseTokens(rows, examples.map((e) => e.start), padded.inputIds.dims[1] as number);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: padded.inputIds, attention_mask: padded.attentionMask,
      lm_positions: lm.positions, lm_targets: lm.targets, lm_segments: lm.segments,
      step: new ort.Tensor('int64', BigInt64Array.of(BigInt(state.step + 1)), []),
    };
    for (const [name, t] of state.params) feeds[name] = t;
    for (const name of this.trained) {
      feeds[`adam_m.${name}`] = state.m.get(name) as ort.Tensor;
      feeds[`adam_v.${name}`] = state.v.get(name) as ort.Tensor;
    }
    const out = await this.session.run(feeds);
    for (const name of this.trained) {
      state.params.set(name, out[`${name}.next`] as ort.Tensor);
      state.m.set(name, out[`adam_m.${name}.next`] as ort.Tensor);
      state.v.set(name, out[`adam_v.${name}.next`] as ort.Tensor);
    }
    state.step += 1;
    const scalar = (name: string): number => (out[name] as ort.Tensor).data[0] as number;
    return { loss: scalar('loss'), gradNorm: scalar('grad_norm'), lr: scalar('lr_used'), tokens: padded.tokens };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The LM's fit on a set of responses. */
export interface LmMetrics {
  responses: number;
  /** response tokens scored */
  tokens: number;
  /** mean negative log-likelihood per response token, nats (uniform over V tokens: ln V) */
  nll_per_token: number;
  perplexity: number;
}

/** Mean NLL per response token of `examples` under `params`, from LogProbForward's per-row sums. */
export async function lmMetrics(forward: LogProbForward, params: Map<string, ort.Tensor>, examples: readonly LmExample[], padId: number): Promise<LmMetrics> {
  const logp = await forward.logProbs(params, examples.map((e) => e.ids), examples.map((e) => e.start), padId);
  const tokens = examples.reduce((n, e) => n + responseTokenCount(e), 0);
  const nll = -logp.reduce((a, v) => a + v, 0) / Math.max(1, tokens);
  return { responses: examples.length, tokens, nll_per_token: nll, perplexity: Math.exp(nll) };
}

export interface LmLoopOptions {
  model: RewardModelConfig;
  optimizer: OptimizerConfig;
  steps: number;
  /** responses per step */
  batchSize: number;
  /** validate every this many steps (and before the first and after the last); 0 = before and after only */
  evalEvery: number;
  seed: number;
  /** one JSON object per line: train steps and evaluations */
  metricsPath: string;
  progress?: LoopProgress | false;
  session?: ort.InferenceSession.SessionOptions;
  signal?: AbortSignal;
  log: (line: string) => void;
}

export interface LmStepRecord {
  kind: 'train';
  split: 'train';
  step: number;
  loss: number;
  grad_norm: number;
  lr: number;
  responses: number;
  tokens: number;
  seconds: number;
}

export interface LmEvalRecord extends LmMetrics {
  kind: 'eval';
  split: 'validation';
  step: number;
}

export interface LmLoopResult {
  /** the weights of the lowest validation NLL (the last weights without validation responses) */
  best: ModelWeights;
  bestStep: number;
  bestValidation: LmMetrics | undefined;
  /** validation before the first step: what the initial weights score */
  initialValidation: LmMetrics | undefined;
  steps: LmStepRecord[];
  evals: LmEvalRecord[];
  tokensPerSecond: number;
  /** stopped by the signal before the last step: nothing is exported */
  interrupted: boolean;
}

/**
 * The LM phase's loop: the reward loop's seeded, length-bucketed batch order (loop.ts
 * epochBatches), one LmStep per batch, validation NLL every --eval-every steps, the best
 * validation weights kept. No checkpoints: the phase is short and has no --resume (an
 * interrupted phase exports nothing and is run again).
 */
export async function trainLm(options: LmLoopOptions, data: { train: LmExample[]; validation: LmExample[] }, init: ModelWeights, padId: number): Promise<LmLoopResult> {
  const { model, optimizer, steps, log } = options;
  if (data.train.length === 0) throw new Error('no training responses');
  mkdirSync(dirname(options.metricsPath), { recursive: true });
  writeFileSync(options.metricsPath, '');
  const record = (r: LmStepRecord | LmEvalRecord): void => appendFileSync(options.metricsPath, JSON.stringify(r) + '\n');
  const schedule: LrSchedule = { peakLr: optimizer.lr, warmupSteps: optimizer.warmup, totalSteps: steps, minLr: optimizer.lr * optimizer.minLrRatio };
  const lmStep = await LmStep.create(model, optimizer, schedule, options.session);
  const forward = data.validation.length > 0 ? await LogProbForward.create(model, options.session) : undefined;
  const params = weightsToTensors(model, init);
  const decoder = new Map([...params].filter(([name]) => !isHead(name)));
  const state: TrainState = { params, m: zeroMoments(decoder), v: zeroMoments(decoder), step: 0 };
  const progress = options.progress === false ? undefined : options.progress;
  const result: LmLoopResult = {
    best: init, bestStep: 0, bestValidation: undefined, initialValidation: undefined, steps: [], evals: [], tokensPerSecond: 0, interrupted: false,
  };
  let bestParams: Map<string, ort.Tensor> | undefined;
  const validate = async (): Promise<void> => {
    if (!forward) return;
    const metrics = await lmMetrics(forward, state.params, data.validation, padId);
    const rec: LmEvalRecord = { kind: 'eval', split: 'validation', step: state.step, ...metrics };
    result.evals.push(rec);
    record(rec);
    if (state.step === 0) result.initialValidation = metrics;
    // Step 0 is not a candidate: the phase's output is a trained LM even if training made validation worse.
    if (state.step > 0 && (result.bestValidation === undefined || metrics.nll_per_token < result.bestValidation.nll_per_token)) {
      result.bestValidation = metrics;
      result.bestStep = state.step;
      bestParams = new Map(state.params);
    }
    log(`step ${state.step}: validation NLL ${metrics.nll_per_token.toFixed(4)} nats/token (perplexity ${metrics.perplexity.toFixed(1)}) on ${metrics.tokens} tokens`);
  };

  try {
    await validate();
    const lengths = data.train.map((e) => e.ids.length);
    const perEpoch = Math.ceil(data.train.length / options.batchSize);
    let epoch = -1;
    let batches: number[][] = [];
    let runTokens = 0;
    let runSeconds = 0;
    let ema: number | undefined;
    while (state.step < steps && options.signal?.aborted !== true) {
      if (Math.floor(state.step / perEpoch) !== epoch) {
        epoch = Math.floor(state.step / perEpoch);
        batches = epochBatches(lengths, options.batchSize, options.seed, epoch);
      }
      const examples = (batches[state.step % perEpoch] as number[]).map((i) => data.train[i] as LmExample);
      const t0 = performance.now();
      const r = await lmStep.run(state, examples, padId);
      const seconds = (performance.now() - t0) / 1000;
      if (!Number.isFinite(r.loss)) throw new Error(`loss is ${r.loss} at step ${state.step}; lower --lr or enable --clip`);
      runTokens += r.tokens;
      runSeconds += seconds;
      const rec: LmStepRecord = {
        kind: 'train', split: 'train', step: state.step, loss: r.loss, grad_norm: r.gradNorm, lr: r.lr,
        responses: examples.length, tokens: r.tokens, seconds,
      };
      result.steps.push(rec);
      record(rec);
      ema = ema === undefined ? r.loss : 0.9 * ema + 0.1 * r.loss;
      progress?.step({ step: state.step, stopAt: steps, firstStep: 0, loss: ema, lr: r.lr, tokensPerSecond: runTokens / runSeconds });
      if (options.evalEvery > 0 && state.step % options.evalEvery === 0 && state.step < steps) await validate();
    }
    result.tokensPerSecond = runSeconds > 0 ? runTokens / runSeconds : 0;
    result.interrupted = state.step < steps;
    if (result.interrupted) {
      log(`interrupted at step ${state.step}: the SFT phase has no --resume; nothing exported`);
      return result;
    }
    if (result.evals.at(-1)?.step !== state.step) await validate();
  } finally {
    await lmStep.release();
    await forward?.release();
  }
  const last = tensorsToWeights(state.params);
  result.best = bestParams ? tensorsToWeights(bestParams) : last;
  if (!bestParams) result.bestStep = state.step;
  return result;
}
