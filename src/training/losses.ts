// Pairwise reward-model losses as graph nodes. Every loss takes the same LossInputs (the rewards
// of the chosen and rejected responses, and whatever per-pair extras the batch carries) and
// returns a scalar loss plus named terms for logging, so PCRM, HaF-RM and GRM plug in as further
// entries of LOSSES with their extra inputs (log-probs, reference log-probs, δ*) added to
// LossInputs. Sign conventions follow docs/design.md (Training losses); P = pairs in the batch.
//
// log σ(x) is always emitted as −softplus(−x) (see negLogSigmoid), never Log(Sigmoid(x)), which underflows.
import type { GraphBuilder, Value } from './graph/builder.js';

export interface LossInputs {
  b: GraphBuilder;
  /** [P] reward of the chosen response (the pair's objective column). */
  chosen: Value;
  /** [P] reward of the rejected response. */
  rejected: Value;
  /** [P] Bradley–Terry margin m (0 where the data gives none). */
  margin: Value;
  /** [P] PCRM's bound δ*(s) per pair, computed outside the graph (no gradient). */
  deltaStar?: Value;
  /**
   * log π(y|x) of each response under the model's LM head: [P] each, sums of response-token
   * log-probs (only the chosen ones where the loss needs no more: LossNeeds.logpRejected).
   */
  logp?: { chosen: Value; rejected?: Value };
  /** the same under the frozen initial weights (π_ref), precomputed before training: [P] each. */
  refLogp?: { chosen: Value; rejected: Value };
}

export interface LossOutput {
  /** scalar: mean over the batch's pairs */
  loss: Value;
  /** scalars worth logging, by name */
  terms: Record<string, Value>;
}

export type LossFn = (inputs: LossInputs) => LossOutput;

export interface BradleyTerryOptions {
  /** use the pair's margin m in −log σ(r_c − r_r − m) */
  margin: boolean;
  /** c in c·mean((r_c + r_r)²), which keeps rewards centred on 0; 0 = off (0.01 when on) */
  centering: number;
}

/**
 * −log σ(x) = softplus(−x), elementwise, as relu(z) + log(1 + exp(−|z|)) with z = −x: stable for
 * any x, and built from ops that have float64 kernels in ORT (Softplus has none), so the
 * float64 gradient checks run the very nodes the float32 training graph runs.
 */
export function negLogSigmoid(b: GraphBuilder, x: Value): Value {
  const z = b.neg(x);
  const pos = b.op('Relu', [z]); //                       max(z, 0)
  const negAbs = b.sub(z, b.mul(pos, b.scalar(x.dtype, 2))); // −|z|
  return b.add(pos, b.op('Log', [b.add(b.scalar(x.dtype, 1), b.op('Exp', [negAbs]))]));
}

function mean(b: GraphBuilder, x: Value): Value {
  return b.reduceMean(x, [0], false);
}

/** Δ = r_c − r_r (− m when margins are on); L = mean(−log σ(Δ)) [+ c·mean((r_c + r_r)²)]. */
export function bradleyTerry(options: BradleyTerryOptions): LossFn {
  return ({ b, chosen, rejected, margin }): LossOutput => {
    let delta = b.sub(chosen, rejected); //                         [P]
    if (options.margin) delta = b.sub(delta, margin);
    const bt = mean(b, negLogSigmoid(b, delta)); //                 scalar
    if (options.centering <= 0) return { loss: bt, terms: { bt } };
    const sum = b.add(chosen, rejected);
    const centering = b.mul(mean(b, b.mul(sum, sum)), b.scalar(chosen.dtype, options.centering));
    return { loss: b.add(bt, centering), terms: { bt, centering } };
  };
}

/** Label smoothing baseline: L = mean(−(1−ε)·log σ(Δ) − ε·log σ(−Δ)). */
export function labelSmoothing(epsilon: number): LossFn {
  return ({ b, chosen, rejected }) => {
    const delta = b.sub(chosen, rejected);
    const s = (v: number): Value => b.scalar(chosen.dtype, v);
    const per = b.add(b.mul(negLogSigmoid(b, delta), s(1 - epsilon)), b.mul(negLogSigmoid(b, b.neg(delta)), s(epsilon)));
    const loss = mean(b, per);
    return { loss, terms: { label_smoothing: loss } };
  };
}

function need<T>(value: T | undefined, what: string, method: string): T {
  if (value === undefined) throw new Error(`${method} loss needs ${what} among its inputs`);
  return value;
}

/**
 * PCRM: L = mean(−log σ(Δ) − log σ(δ* − Δ)), Δ = r_c − r_r, δ* = β1/(s + β2) + β3 fed per pair.
 * The second term bounds the margin from above by the pair's prior: alike responses (small δ*)
 * may not be separated as far as very different ones.
 */
export function pcrm(): LossFn {
  return ({ b, chosen, rejected, deltaStar }) => {
    const bound = need(deltaStar, 'delta_star', 'PCRM');
    const delta = b.sub(chosen, rejected); //                                 [P]
    const bt = mean(b, negLogSigmoid(b, delta));
    const prior = mean(b, negLogSigmoid(b, b.sub(bound, delta)));
    return { loss: b.add(bt, prior), terms: { bt, prior } };
  };
}

/**
 * The DPO term −log σ(β[(log π − log π_ref)(y_c) − (log π − log π_ref)(y_r)]), mean over pairs;
 * without `ref` the reference ratios drop out (GRM's DPO without reference).
 */
export function dpoTerm(b: GraphBuilder, beta: number, logp: { chosen: Value; rejected?: Value }, ref?: { chosen: Value; rejected: Value }): Value {
  let diff = b.sub(logp.chosen, need(logp.rejected, 'log π of the rejected responses', 'DPO')); // [P]
  if (ref) diff = b.sub(diff, b.sub(ref.chosen, ref.rejected));
  return mean(b, negLogSigmoid(b, b.mul(diff, b.scalar(logp.chosen.dtype, beta))));
}

export interface HafOptions {
  rmRatio: number;
  dpoRatio: number;
  beta: number;
}

/** HaF-RM: L = rm_ratio·L_BT + dpo_ratio·L_DPO, L_DPO against the frozen initial weights. */
export function hafRm(bt: LossFn, o: HafOptions): LossFn {
  return (inputs) => {
    const { b } = inputs;
    const rm = bt(inputs);
    const dpo = dpoTerm(b, o.beta, need(inputs.logp, 'log π', 'HaF-RM'), need(inputs.refLogp, 'reference log π', 'HaF-RM'));
    const s = (v: number): Value => b.scalar(inputs.chosen.dtype, v);
    const loss = b.add(b.mul(rm.loss, s(o.rmRatio)), b.mul(dpo, s(o.dpoRatio)));
    return { loss, terms: { ...rm.terms, rm: rm.loss, dpo } };
  };
}

export type GrmRegulariser = 'sft' | 'plain-sft' | 'dpo' | 'dpo-noref';

export interface GrmOptions {
  alpha: number;
  beta: number;
  reg: GrmRegulariser;
}

/** Which extra inputs a GRM regulariser reads. */
export function grmNeedsReference(reg: GrmRegulariser): boolean {
  return reg === 'dpo';
}

/**
 * GRM: L = (1 − α)·L_BT + α·L_reg with L_reg one of
 *   sft        −log σ(β log π(y_c|x))
 *   plain-sft  −log π(y_c|x)
 *   dpo        DPO against the frozen initial weights
 *   dpo-noref  −log σ(β[log π(y_c) − log π(y_r)])
 */
export function grm(bt: LossFn, o: GrmOptions): LossFn {
  return (inputs) => {
    const { b } = inputs;
    const rm = bt(inputs);
    const logp = need(inputs.logp, 'log π', 'GRM');
    let reg: Value;
    switch (o.reg) {
      case 'sft':
        reg = mean(b, negLogSigmoid(b, b.mul(logp.chosen, b.scalar(logp.chosen.dtype, o.beta))));
        break;
      case 'plain-sft':
        reg = b.neg(mean(b, logp.chosen));
        break;
      case 'dpo':
        reg = dpoTerm(b, o.beta, logp, need(inputs.refLogp, 'reference log π', 'GRM-DPO'));
        break;
      case 'dpo-noref':
        reg = dpoTerm(b, o.beta, logp);
        break;
    }
    const s = (v: number): Value => b.scalar(inputs.chosen.dtype, v);
    const loss = b.add(b.mul(rm.loss, s(1 - o.alpha)), b.mul(reg, s(o.alpha)));
    return { loss, terms: { ...rm.terms, rm: rm.loss, reg } };
  };
}

/**
 * `sft` is not a pairwise loss: it is the LM phase (src/training/sft.ts, next-token loss on the
 * chosen responses) whose output a later haf/grm run starts from and takes as its reference.
 */
export type LossMethod = 'bt' | 'pcrm' | 'haf' | 'grm' | 'labelsmooth' | 'sft';
export const LOSS_METHODS: readonly LossMethod[] = ['bt', 'pcrm', 'haf', 'grm', 'labelsmooth', 'sft'];
export type PcrmSimilarity = 'length' | 'tfidf' | 'encoder';
export const GRM_REGULARISERS: readonly GrmRegulariser[] = ['sft', 'plain-sft', 'dpo', 'dpo-noref'];

export interface LossConfig {
  method: LossMethod;
  /** BT (and the BT part of HaF-RM and GRM): use the data's margin field */
  margin: boolean;
  centering: number;
  labelSmoothing: number;
  /** the method's hyperparameters; absent ones take DEFAULT_LOSS's (docs/design.md, Training losses) */
  pcrm?: PcrmOptions;
  haf?: HafOptions;
  grm?: GrmOptions;
}

export interface PcrmOptions {
  beta1: number;
  beta2: number;
  beta3: number;
  similarity: PcrmSimilarity;
  /** ONNX encoder for similarity 'encoder' */
  encoder?: string;
}

export const DEFAULT_LOSS: Required<Omit<LossConfig, 'method'>> & Pick<LossConfig, 'method'> = {
  method: 'bt', margin: true, centering: 0, labelSmoothing: 0.1,
  pcrm: { beta1: 6, beta2: 0.001, beta3: 0, similarity: 'tfidf' },
  haf: { rmRatio: 1, dpoRatio: 0.2, beta: 0.1 },
  grm: { alpha: 0.01, beta: 0.1, reg: 'sft' },
};

/** A LossConfig with docs/design.md's defaults (Training losses) for whatever `partial` leaves out. */
export function lossConfig(partial: LossConfig | (Partial<LossConfig> & Pick<LossConfig, 'method'>)): typeof DEFAULT_LOSS {
  return {
    ...DEFAULT_LOSS, ...partial,
    pcrm: { ...DEFAULT_LOSS.pcrm, ...partial.pcrm },
    haf: { ...DEFAULT_LOSS.haf, ...partial.haf },
    grm: { ...DEFAULT_LOSS.grm, ...partial.grm },
  };
}

/** What the step graph must compute and feed for a loss. */
export interface LossNeeds {
  /** PCRM's δ* per pair */
  deltaStar: boolean;
  /** log π of the responses through the LM head (and a response mask) */
  logp: boolean;
  /** …of the rejected responses too (false: the LM head runs on the chosen half only) */
  logpRejected: boolean;
  /** log π_ref of the responses under the initial weights, precomputed */
  reference: boolean;
}

export function lossNeeds(config: LossConfig): LossNeeds {
  return {
    deltaStar: config.method === 'pcrm',
    // sft reads log π of the chosen responses only; an untied LM head must then be loaded.
    logp: config.method === 'haf' || config.method === 'grm' || config.method === 'sft',
    logpRejected: config.method === 'haf' || (config.method === 'grm' && !['sft', 'plain-sft'].includes((config.grm ?? DEFAULT_LOSS.grm).reg)),
    reference: config.method === 'haf' || (config.method === 'grm' && grmNeedsReference((config.grm ?? DEFAULT_LOSS.grm).reg)),
  };
}

export function lossFor(config: LossConfig): LossFn {
  const bt = bradleyTerry({ margin: config.margin, centering: config.centering });
  switch (config.method) {
    case 'bt':
      return bt;
    case 'pcrm':
      return pcrm();
    case 'haf':
      return hafRm(bt, config.haf ?? DEFAULT_LOSS.haf);
    case 'grm':
      return grm(bt, config.grm ?? DEFAULT_LOSS.grm);
    case 'labelsmooth':
      return labelSmoothing(config.labelSmoothing);
    case 'sft':
      throw new Error('--method sft is the LM phase (src/training/sft.ts), not a pairwise loss of the reward step');
  }
}
