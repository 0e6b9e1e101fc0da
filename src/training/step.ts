// The training step as one ONNX graph: forward on chosen + rejected as one batch, the pairwise
// loss, the backward pass (graph/autodiff.ts) and the AdamW update with clipping and the LR
// schedule (graph/optim.ts). Built once per run with dynamic batch and sequence axes, so every
// mini-batch shape runs through the same session; parameters and moments go in as inputs and
// come out as outputs, and the loop feeds each step's outputs to the next without copying.
// With LoRA (lora.ts) the frozen weights are initializers of the graph and only the adapters and
// the reward head (and their moments) are inputs and outputs.
import * as ort from 'onnxruntime-node';
import { gradients } from './graph/autodiff.js';
import { GraphBuilder, type DType, type Value } from './graph/builder.js';
import { addOptimizerStep, type AdamWOptions, type LrSchedule } from './graph/optim.js';
import { lossFor, lossNeeds, type LossConfig } from './losses.js';
import { MODEL_OPSET, buildForward, declareParamInputs, lmHeadWeight, parameterSpecs, responseLogProbs, type ParamSpec, type RewardModelConfig } from './model.js';
import { declareLoraParams, loraLinear, trainableSpecs, type LoraGraph } from './lora.js';
import type { LinearLayer } from './arch/layers.js';
import type { ParamTensors } from './evaluate.js';

/**
 * Step-graph inputs besides the parameters (rows 0..P−1 are the chosen responses, P..2P−1 the
 * rejected ones, in the same pair order):
 *   input_ids, attention_mask  int64 [2P, T]
 *   margin                     [P]     Bradley–Terry margin (0 where none)
 *   objective                  [P, K]  one-hot: which reward column each pair is about
 * and, only for the losses that read them (lossNeeds):
 *   delta_star                 [P]     PCRM's δ*(s) per pair
 *   lm_positions, lm_targets   int64 [N] the response tokens, packed (log π through the LM head;
 *   lm_segments                [R, N]  batch.ts responseTokens), R = 2P, or P when only the
 *                                      chosen responses' log π is read (GRM's SFT regularisers)
 *   ref_logp                   [2P]    log π_ref of each row under the initial weights
 *   head_mask                  [2P, C] inverted-dropout mask before the reward head (GRM)
 */
export interface PairLoss {
  loss: Value; //                 scalar
  terms: Record<string, Value>; // scalars
  chosen: Value; //               [P]
  rejected: Value; //             [P]
}

/** [2P] → its chosen half and its rejected half, [P] each. */
function halves(b: GraphBuilder, rows: Value): { chosen: Value; rejected: Value } {
  const h = b.reshape(rows, [2, -1]); //                                      [2,P]
  const half = (i: number): Value => b.op('Gather', [h, b.scalar('int64', i)], { axis: 0 }, { shape: ['pairs'] });
  return { chosen: half(0), rejected: half(1) };
}

export function addPairLoss(
  b: GraphBuilder, c: RewardModelConfig, params: Map<string, Value>, loss: LossConfig, dtype: DType,
  options: { headDropout?: boolean; linear?: LinearLayer } = {},
): PairLoss {
  const needs = lossNeeds(loss);
  const ids = b.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['rows', 'seq']);
  const margin = b.input('margin', dtype, ['pairs']);
  const objective = b.input('objective', dtype, ['pairs', c.numObjectives]);
  const deltaStar = needs.deltaStar ? b.input('delta_star', dtype, ['pairs']) : undefined;
  const lmTokens = needs.logp
    ? {
      positions: b.input('lm_positions', 'int64', ['lm_tokens']),
      targets: b.input('lm_targets', 'int64', ['lm_tokens']),
      segments: b.input('lm_segments', dtype, ['lm_rows', 'lm_tokens']),
    }
    : undefined;
  const refLogp = needs.reference ? b.input('ref_logp', dtype, ['rows']) : undefined;
  const headMask = options.headDropout ? b.input('head_mask', dtype, ['rows', c.dModel]) : undefined;
  const { rewards, hidden } = buildForward(b, c, params, ids, mask, {
    lmHidden: needs.logp, ...(headMask ? { headMask } : {}), ...(options.linear ? { linear: options.linear } : {}),
  }); //                                                                      [2P,K], [2P,T,C]
  const byHalf = b.reshape(rewards, [2, -1, c.numObjectives]); //             [2,P,K]
  const column = (half: number): Value => {
    const r = b.op('Gather', [byHalf, b.scalar('int64', half)], { axis: 0 }, { shape: ['pairs', c.numObjectives] }); // [P,K]
    return b.reduceSum(b.mul(r, objective), [1], false); //                   [P]
  };
  const chosen = column(0);
  const rejected = column(1);
  let logp: { chosen: Value; rejected?: Value } | undefined;
  if (hidden && lmTokens) {
    const rows = responseLogProbs(b, hidden, lmHeadWeight(c, params), lmTokens); //               [R]
    logp = needs.logpRejected ? halves(b, rows) : { chosen: rows };
  }
  const out = lossFor(loss)({
    b, chosen, rejected, margin,
    ...(deltaStar ? { deltaStar } : {}),
    ...(logp ? { logp } : {}),
    ...(refLogp ? { refLogp: halves(b, refLogp) } : {}),
  });
  return { loss: out.loss, terms: out.terms, chosen, rejected };
}

export interface StepGraphOptions {
  config: RewardModelConfig;
  loss: LossConfig;
  /** dropout before the reward head at training time (GRM): the graph takes a head_mask input */
  headDropout?: boolean;
  optimizer: AdamWOptions;
  schedule: LrSchedule;
  /** train LoRA adapters and the head on the frozen base weights, which the graph holds */
  lora?: LoraGraph;
}

/** A graph's parameters: all of them as inputs, or with LoRA the frozen ones as initializers; and the trained ones. */
function stepParams(
  b: GraphBuilder, config: RewardModelConfig, lora: LoraGraph | undefined, dtype: DType,
): { params: Map<string, Value>; trainable: ParamSpec[]; linear?: LinearLayer } {
  if (!lora) return { params: declareParamInputs(b, config, dtype), trainable: parameterSpecs(config) };
  return { ...declareLoraParams(b, config, lora, dtype), linear: loraLinear(config, lora.settings) };
}

/** The parameters a step graph takes and updates, in its input order. */
export function trainedSpecs(config: RewardModelConfig, lora: Pick<LoraGraph, 'settings'> | undefined): ParamSpec[] {
  return lora ? trainableSpecs(config, lora.settings) : parameterSpecs(config);
}

/** The whole step: outputs `<param>.next`, `adam_m.<param>.next`, `adam_v.<param>.next`, loss, terms, rewards, grad_norm, lr_used. */
export function buildStepGraph(options: StepGraphOptions): Uint8Array {
  const { config } = options;
  const b = new GraphBuilder('reward_train_step', { opset: MODEL_OPSET });
  const { params, trainable: specs, linear } = stepParams(b, config, options.lora, 'float32');
  const pl = addPairLoss(b, config, params, options.loss, 'float32', { headDropout: options.headDropout === true, ...(linear ? { linear } : {}) });
  const grads = gradients(b, pl.loss, specs.map((s) => params.get(s.name) as Value));
  addOptimizerStep(b, specs.map((s) => ({ value: params.get(s.name) as Value, decay: s.decay })), grads, {
    ...options.optimizer,
    schedule: options.schedule,
  });
  b.output(pl.loss, 'loss');
  for (const [name, v] of Object.entries(pl.terms)) if (v !== pl.loss) b.output(v, `loss.${name}`);
  b.output(pl.chosen, 'chosen_rewards');
  b.output(pl.rejected, 'rejected_rewards');
  return b.toModelProto({ docString: 'rmserve training step: forward, loss, backward, AdamW' });
}

/** Loss and its gradient with respect to every trained parameter, without the update (gradient checks). */
export function buildLossGradGraph(config: RewardModelConfig, loss: LossConfig, dtype: DType, opset = MODEL_OPSET, lora?: LoraGraph): Uint8Array {
  const b = new GraphBuilder('reward_loss_grad', { opset });
  const { params, trainable: specs, linear } = stepParams(b, config, lora, dtype);
  const pl = addPairLoss(b, config, params, loss, dtype, linear ? { linear } : {});
  const grads = gradients(b, pl.loss, specs.map((s) => params.get(s.name) as Value));
  b.output(pl.loss, 'loss');
  for (const s of specs) b.output(grads.get(s.name) as Value, `grad.${s.name}`);
  return b.toModelProto();
}

/** One mini-batch as the step graph takes it. */
export interface StepBatch {
  inputIds: ort.Tensor; //       int64 [2P, T]
  attentionMask: ort.Tensor; //  int64 [2P, T]
  margin: ort.Tensor; //         float32 [P]
  objective: ort.Tensor; //      float32 [P, K]
  deltaStar?: ort.Tensor; //     float32 [P]      (PCRM)
  lmPositions?: ort.Tensor; //   int64 [N]        (HaF-RM, GRM)
  lmTargets?: ort.Tensor; //     int64 [N]
  lmSegments?: ort.Tensor; //    float32 [R, N]
  refLogp?: ort.Tensor; //       float32 [2P]     (HaF-RM, GRM-DPO)
  headMask?: ort.Tensor; //      float32 [2P, C]  (GRM's head dropout)
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  lr: number;
  chosen: Float32Array;
  rejected: Float32Array;
  terms: Record<string, number>;
}

/** Optimizer state the loop carries between steps (and checkpoints). */
export interface TrainState {
  /** the trained parameters: all of the model's, or with LoRA the adapters and the head */
  params: ParamTensors;
  m: ParamTensors;
  v: ParamTensors;
  /** optimizer steps taken so far */
  step: number;
}

export function zeroMoments(params: ParamTensors): ParamTensors {
  return new Map([...params].map(([name, t]) => [name, new ort.Tensor('float32', new Float32Array(t.size), t.dims)]));
}

export class TrainStep {
  private readonly names: string[];
  private readonly fetches: string[];

  private constructor(
    readonly config: RewardModelConfig,
    private readonly session: ort.InferenceSession,
    trained: ParamSpec[],
  ) {
    this.names = trained.map((s) => s.name);
    this.fetches = [...session.outputNames];
  }

  static async create(options: StepGraphOptions, sessionOptions: ort.InferenceSession.SessionOptions = {}): Promise<TrainStep> {
    const session = await ort.InferenceSession.create(buildStepGraph(options), { graphOptimizationLevel: 'all', ...sessionOptions });
    return new TrainStep(options.config, session, trainedSpecs(options.config, options.lora));
  }

  /** Runs one step and advances `state` in place to the updated parameters and moments. */
  async run(state: TrainState, batch: StepBatch): Promise<StepResult> {
    const feeds = batchFeeds(this.session, batch);
    feeds.step = stepTensor(state);
    for (const name of this.names) {
      feeds[name] = state.params.get(name) as ort.Tensor;
      feeds[`adam_m.${name}`] = state.m.get(name) as ort.Tensor;
      feeds[`adam_v.${name}`] = state.v.get(name) as ort.Tensor;
    }
    const out = await this.session.run(feeds, this.fetches);
    advance(state, this.names, out);
    const scalar = (name: string): number => (out[name] as ort.Tensor).data[0] as number;
    const terms: Record<string, number> = {};
    for (const name of this.fetches) if (name.startsWith('loss.')) terms[name.slice(5)] = scalar(name);
    return {
      loss: scalar('loss'),
      gradNorm: scalar('grad_norm'),
      lr: scalar('lr_used'),
      chosen: (out.chosen_rewards as ort.Tensor).data as Float32Array,
      rejected: (out.rejected_rewards as ort.Tensor).data as Float32Array,
      terms,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The batch's tensors under the names of the inputs `session`'s graph takes (the losses' extras only where it takes them). */
function batchFeeds(session: ort.InferenceSession, batch: StepBatch): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    margin: batch.margin,
    objective: batch.objective,
  };
  const extra: [string, ort.Tensor | undefined][] = [
    ['delta_star', batch.deltaStar], ['lm_positions', batch.lmPositions], ['lm_targets', batch.lmTargets], ['lm_segments', batch.lmSegments], ['ref_logp', batch.refLogp], ['head_mask', batch.headMask],
  ];
  for (const [name, t] of extra) {
    if (!session.inputNames.includes(name)) continue;
    if (t === undefined) throw new Error(`the step graph takes ${name}, which the batch lacks`);
    feeds[name] = t;
  }
  return feeds;
}

/** The 1-based number of the optimizer step about to run: AdamW's bias corrections and the LR schedule read it. */
function stepTensor(state: TrainState): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.of(BigInt(state.step + 1)), []);
}

/** The updated parameters and moments of an optimizer step's outputs into `state`, one step on. */
function advance(state: TrainState, names: readonly string[], out: ort.InferenceSession.OnnxValueMapType): void {
  for (const name of names) {
    state.params.set(name, out[`${name}.next`] as ort.Tensor);
    state.m.set(name, out[`adam_m.${name}.next`] as ort.Tensor);
    state.v.set(name, out[`adam_v.${name}.next`] as ort.Tensor);
  }
  state.step += 1;
}

// ---- gradient accumulation (--grad-accum n)
//
// One optimizer step over n micro-batches is n + 1 runs of two graphs. The accumulation graph is
// the step graph's first half — forward, loss, backward — on one micro-batch; it adds
// (P_i / P)·∇L_i to an accumulator it takes as `grad_acc.<p>` and returns as `grad_acc.<p>.next`
// (P_i the micro-batch's pairs, P all n micro-batches' pairs). Every loss is a mean over its pairs,
// L_i = (1/P_i)·Σ_{pairs of i} ℓ, so Σ_i (P_i/P)·∇L_i = ∇[(1/P)·Σ_{all pairs} ℓ]: the gradient of one
// batch of all P pairs, whatever the micro-batches' sizes (an epoch's last batch may be short).
// The update graph is the step graph's second half on that gradient: clipping to the global
// norm, AdamW and the LR schedule, once per optimizer step, from the optimizer step number.

/** The forward, the loss and its gradient on one micro-batch, accumulated (see above). */
export function buildAccumulateGraph(options: Omit<StepGraphOptions, 'optimizer' | 'schedule'>): Uint8Array {
  const { config } = options;
  const b = new GraphBuilder('reward_accumulate', { opset: MODEL_OPSET });
  const { params, trainable, linear } = stepParams(b, config, options.lora, 'float32');
  const pl = addPairLoss(b, config, params, options.loss, 'float32', { headDropout: options.headDropout === true, ...(linear ? { linear } : {}) });
  const grads = gradients(b, pl.loss, trainable.map((s) => params.get(s.name) as Value));
  const share = b.input('grad_scale', 'float32', []); //                    P_i / P
  for (const s of trainable) {
    const acc = b.input(`grad_acc.${s.name}`, 'float32', s.shape);
    b.output(b.add(acc, b.mul(grads.get(s.name) as Value, share)), `grad_acc.${s.name}.next`);
  }
  b.output(pl.loss, 'loss');
  for (const [name, v] of Object.entries(pl.terms)) if (v !== pl.loss) b.output(v, `loss.${name}`);
  b.output(pl.chosen, 'chosen_rewards');
  b.output(pl.rejected, 'rejected_rewards');
  return b.toModelProto({ docString: 'rmserve gradient accumulation: forward, loss, backward on one micro-batch' });
}

/** Clipping, AdamW and the LR schedule on the accumulated gradient `grad.<p>`: outputs as buildStepGraph's optimizer half. */
export function buildUpdateGraph(trainable: readonly ParamSpec[], optimizer: AdamWOptions, schedule: LrSchedule): Uint8Array {
  const b = new GraphBuilder('reward_update', { opset: MODEL_OPSET });
  const params = trainable.map((s) => ({ value: b.input(s.name, 'float32', s.shape), decay: s.decay }));
  const grads = new Map(trainable.map((s) => [s.name, b.input(`grad.${s.name}`, 'float32', s.shape)]));
  addOptimizerStep(b, params, grads, { ...optimizer, schedule });
  return b.toModelProto({ docString: 'rmserve optimizer step: clipping, AdamW, LR schedule' });
}

/** An optimizer step over several micro-batches (gradient accumulation); one micro-batch is TrainStep's single graph. */
export class AccumulatingStep {
  private constructor(
    private readonly accumulate: ort.InferenceSession,
    private readonly update: ort.InferenceSession,
    private readonly trained: readonly ParamSpec[],
  ) {}

  static async create(options: StepGraphOptions, sessionOptions: ort.InferenceSession.SessionOptions = {}): Promise<AccumulatingStep> {
    const trained = trainedSpecs(options.config, options.lora);
    const session = (graph: Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(graph, { graphOptimizationLevel: 'all', ...sessionOptions });
    const accumulate = await session(buildAccumulateGraph(options));
    const update = await session(buildUpdateGraph(trained, options.optimizer, options.schedule));
    return new AccumulatingStep(accumulate, update, trained);
  }

  /**
   * One optimizer step on `batches` (the micro-batches, in order): their gradients summed with
   * weights P_i/P, then one update. The loss and terms are the same weighted sums, the loss of one
   * batch of all their pairs; the rewards are the micro-batches' in order.
   */
  async run(state: TrainState, batches: readonly StepBatch[]): Promise<StepResult> {
    const pairs = batches.map((batch) => batch.margin.dims[0] as number);
    const total = pairs.reduce((a, p) => a + p, 0);
    // The accumulator starts at zero; each run returns the next one, handed back without copying.
    let acc: Map<string, ort.Tensor> = new Map(this.trained.map((s) => [s.name, new ort.Tensor('float32', new Float32Array(s.shape.reduce((a, d) => a * d, 1)), s.shape)]));
    let loss = 0;
    const terms: Record<string, number> = {};
    const chosen: Float32Array[] = [];
    const rejected: Float32Array[] = [];
    for (const [i, batch] of batches.entries()) {
      const share = (pairs[i] as number) / total;
      const feeds = batchFeeds(this.accumulate, batch);
      feeds.grad_scale = new ort.Tensor('float32', Float32Array.of(share), []);
      for (const s of this.trained) {
        feeds[s.name] = state.params.get(s.name) as ort.Tensor;
        feeds[`grad_acc.${s.name}`] = acc.get(s.name) as ort.Tensor;
      }
      const out = await this.accumulate.run(feeds);
      acc = new Map(this.trained.map((s) => [s.name, out[`grad_acc.${s.name}.next`] as ort.Tensor]));
      const scalar = (name: string): number => (out[name] as ort.Tensor).data[0] as number;
      loss += share * scalar('loss');
      for (const name of this.accumulate.outputNames) if (name.startsWith('loss.')) terms[name.slice(5)] = (terms[name.slice(5)] ?? 0) + share * scalar(name);
      chosen.push((out.chosen_rewards as ort.Tensor).data as Float32Array);
      rejected.push((out.rejected_rewards as ort.Tensor).data as Float32Array);
    }
    const feeds: Record<string, ort.Tensor> = { step: stepTensor(state) };
    for (const s of this.trained) {
      feeds[s.name] = state.params.get(s.name) as ort.Tensor;
      feeds[`adam_m.${s.name}`] = state.m.get(s.name) as ort.Tensor;
      feeds[`adam_v.${s.name}`] = state.v.get(s.name) as ort.Tensor;
      feeds[`grad.${s.name}`] = acc.get(s.name) as ort.Tensor;
    }
    const out = await this.update.run(feeds);
    advance(state, this.trained.map((s) => s.name), out);
    const concat = (parts: Float32Array[]): Float32Array => {
      const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return all;
    };
    return {
      loss, terms,
      gradNorm: (out.grad_norm as ort.Tensor).data[0] as number,
      lr: (out.lr_used as ort.Tensor).data[0] as number,
      chosen: concat(chosen),
      rejected: concat(rejected),
    };
  }

  async release(): Promise<void> {
    await this.accumulate.release();
    await this.update.release();
  }
}
