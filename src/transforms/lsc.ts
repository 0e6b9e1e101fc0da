// LSC, the log-sigmoid-centered transform (Wang et al. 2024, "Transforming and Combining
// Rewards"): u = log σ(r − r_ref), read as log P(the response beats the reference). It is ≤ 0,
// saturates at 0 for responses far above the reference (polishing a good answer earns little)
// and is ≈ r − r_ref far below it (fixing a bad one earns a lot). Summed over objectives it is
// the log-probability of being good in all of them, which is what `conjunction` aggregates.
import { assertFinite } from './errors.js';
import { logSigmoid } from './logistic.js';

export function lsc(raw: number, reference: number): number {
  assertFinite(raw, 'raw reward');
  assertFinite(reference, 'reference reward');
  return logSigmoid(raw - reference);
}
