// The LM-head log-prob as responseLogProbs built it before TokenLogProb (MatMul with Wᵀ,
// LogSoftmax, GatherElements, differentiated node by node), and step.ts's pair loss with it: the
// reference that test/token-logprob.test.ts compares the fused op with, and the "before" of
// bench/lm-head-logprob.ts.
import type { DType, GraphBuilder, Value } from '../../src/training/graph/builder.js';
import { lossFor, lossNeeds, type LossConfig } from '../../src/training/losses.js';
import { buildForward, lmHeadWeight, type ResponseTokenInputs, type RewardModelConfig } from '../../src/training/model.js';

/** hidden [B,T,C], lmWeight [V,C] → log π [R], the old way. */
export function compositionLogProbs(b: GraphBuilder, hidden: Value, lmWeight: Value, tokens: ResponseTokenInputs): Value {
  const C = lmWeight.shape?.[1] as number;
  const h = b.gather(b.reshape(hidden, [-1, C]), tokens.positions); //                       [N,C]
  const logits = b.matmul(h, b.transpose(lmWeight, [1, 0])); //                                 [N,V]
  const target = b.unsqueeze(tokens.targets, [1]); //                                          [N,1]
  const tokenLogp = b.op('GatherElements', [b.logSoftmax(logits, -1), target], { axis: 1 }); // [N,1]
  return b.squeeze(b.matmul(tokens.segments, tokenLogp), [1]); //                              [R]
}

/**
 * step.ts's addPairLoss for a loss that reads log π (HaF-RM, GRM; no head dropout), with the old
 * log-probs: the same graph inputs, rewards, halves and loss terms, so that a graph built from it
 * differs from buildLossGradGraph's or buildStepGraph's only in how log π is built. Returns the loss.
 */
export function compositionPairLoss(b: GraphBuilder, c: RewardModelConfig, params: Map<string, Value>, loss: LossConfig, dtype: DType): Value {
  const needs = lossNeeds(loss);
  if (!needs.logp) throw new Error(`compositionPairLoss: ${loss.method} reads no log-probs`);
  const ids = b.input('input_ids', 'int64', ['rows', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['rows', 'seq']);
  const margin = b.input('margin', dtype, ['pairs']);
  const objective = b.input('objective', dtype, ['pairs', c.numObjectives]);
  const tokens: ResponseTokenInputs = {
    positions: b.input('lm_positions', 'int64', ['lm_tokens']),
    targets: b.input('lm_targets', 'int64', ['lm_tokens']),
    segments: b.input('lm_segments', dtype, ['lm_rows', 'lm_tokens']),
  };
  const refLogp = needs.reference ? b.input('ref_logp', dtype, ['rows']) : undefined;
  const { rewards, hidden } = buildForward(b, c, params, ids, mask, { lmHidden: true }); //   [2P,K], [2P,T,C]
  const halves = (rows: Value, k?: number): { chosen: Value; rejected: Value } => {
    const h = b.reshape(rows, k === undefined ? [2, -1] : [2, -1, k]);
    const half = (i: number): Value => b.op('Gather', [h, b.scalar('int64', i)], { axis: 0 });
    return { chosen: half(0), rejected: half(1) };
  };
  const r = halves(rewards, c.numObjectives); //                                            [P,K] each
  const column = (v: Value): Value => b.reduceSum(b.mul(v, objective), [1], false); //        [P]
  const rows = compositionLogProbs(b, hidden as Value, lmHeadWeight(c, params), tokens); //  [R]
  return lossFor(loss)({
    b, chosen: column(r.chosen), rejected: column(r.rejected), margin,
    logp: needs.logpRejected ? halves(rows) : { chosen: rows },
    ...(refLogp ? { refLogp: halves(refLogp) } : {}),
  }).loss;
}
