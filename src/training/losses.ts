// Pairwise reward-model losses as graph nodes. Every loss takes the same LossInputs (the rewards
// of the chosen and rejected responses, and whatever per-pair extras the batch carries) and
// returns a scalar loss plus named terms for logging, so PCRM, HaF-RM and GRM plug in as further
// entries of LOSSES with their extra inputs (log-probs, reference log-probs, δ*) added to
// LossInputs. Sign conventions follow DESIGN.md (Trainer → Losses); P = pairs in the batch.
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

export type LossMethod = 'bt' | 'labelsmooth';

export interface LossConfig {
  method: LossMethod;
  margin: boolean;
  centering: number;
  labelSmoothing: number;
}

export const DEFAULT_LOSS: LossConfig = { method: 'bt', margin: true, centering: 0, labelSmoothing: 0.1 };

export function lossFor(config: LossConfig): LossFn {
  switch (config.method) {
    case 'bt':
      return bradleyTerry({ margin: config.margin, centering: config.centering });
    case 'labelsmooth':
      return labelSmoothing(config.labelSmoothing);
  }
}
