// HaF-RM's and GRM-DPO's frozen reference π_ref: what it was (for the manifest), a warning when
// it is a random network, and what the DPO term's implicit reward β·(log π − log π_ref) does on
// the test split — in particular how often it just prefers the longer response.
//
// The reference is the run's starting weights: --init-from's checkpoint (an `rmserve train
// --method sft` folder, or any Hugging Face causal LM), else the seed's random initialisation.
// A random decoder gives every token about 1/V (log π_ref ≈ −ln V per token), so log π − log π_ref
// sums a positive per-token gain over the response: the longer response gets the larger implicit
// reward whatever it says, and the DPO term teaches the LM head to count tokens.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { LogProbForward, weightsToTensors } from './evaluate.js';
import { sha256File } from './export.js';
import { SFT_INFO_FILE } from './causal-lm-export.js';
import type { TrainExample } from './loop.js';
import type { ModelWeights, RewardModelConfig } from './model.js';

/** The files that make a checkpoint what it is: config.json and the weights. */
const CHECKPOINT_FILE = /^(config\.json|.*\.safetensors|model\.safetensors\.index\.json)$/;

/** sha256 of each file of a checkpoint folder that decides its weights. */
export async function checkpointHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).filter((n) => CHECKPOINT_FILE.test(n)).sort()) out[name] = await sha256File(join(dir, name));
  return out;
}

/** The SFT phase that wrote a folder (its rmserve-sft.json, summarised), or undefined for another checkpoint. */
async function sftOrigin(dir: string): Promise<Record<string, unknown> | undefined> {
  const path = join(dir, SFT_INFO_FILE);
  if (!existsSync(path)) return undefined;
  const info = JSON.parse(readFileSync(path, 'utf8')) as { provenance?: Record<string, unknown>; metrics?: Record<string, unknown> };
  const p = info.provenance ?? {};
  return {
    file: SFT_INFO_FILE, sha256: await sha256File(path),
    data: p.data, init: p.init, steps: p.steps, seed: p.seed, git_commit: p.git_commit, command: p.command, created_at: p.created_at,
    metrics: info.metrics,
  };
}

/** Where the run's weights started: --init-from's folder with its hashes (and its SFT phase), or the seed's random init. */
export async function startProvenance(initFrom: string | undefined, seed: number): Promise<Record<string, unknown>> {
  if (initFrom === undefined) return { random_init: true, seed };
  const sft = await sftOrigin(initFrom);
  return { from: initFrom, sha256: await checkpointHashes(initFrom), ...(sft ? { sft } : {}) };
}

/** log π_ref of the training responses, summed (what the DPO term subtracts), and per token. */
export interface ReferenceLogProbs {
  responses: number;
  tokens: number;
  chosen_sum: number;
  rejected_sum: number;
  /** mean log π_ref per response token; uniform over V tokens is −ln V */
  mean_per_token: number;
}

/** Response tokens of a training row the log-probs count (from its start; nothing predicts token 0). */
function counted(row: readonly number[], start: number | undefined): number {
  return Math.max(0, row.length - Math.max(1, start ?? 1));
}

export function referenceSummary(train: readonly TrainExample[]): ReferenceLogProbs {
  let chosen = 0, rejected = 0, tokens = 0;
  for (const e of train) {
    if (e.refChosen === undefined || e.refRejected === undefined) throw new Error('training pair lacks reference log-probs');
    chosen += e.refChosen;
    rejected += e.refRejected;
    tokens += counted(e.chosen, e.chosenStart) + counted(e.rejected, e.rejectedStart);
  }
  return { responses: 2 * train.length, tokens, chosen_sum: chosen, rejected_sum: rejected, mean_per_token: (chosen + rejected) / Math.max(1, tokens) };
}

/** The manifest's provenance.reference for a loss with a reference. */
export function referenceProvenance(start: Record<string, unknown>, logp: ReferenceLogProbs): Record<string, unknown> {
  const sft = typeof start.sft === 'object' && start.sft !== null;
  return {
    policy: start.random_init === true
      ? 'random init: the seed\'s untrained network (no --init-from), so log π_ref is about −ln V per token and the implicit reward grows with length'
      : sft ? 'the --init-from checkpoint, an rmserve train --method sft phase, frozen' : 'the --init-from checkpoint, frozen',
    ...start,
    train_logp: logp,
  };
}

export function randomReferenceWarning(method: string, vocabSize: number): string {
  return `warning: --method ${method} without --init-from: the DPO term's frozen reference is the random initial network ` +
    `(about ln ${vocabSize} = ${Math.log(vocabSize).toFixed(2)} nats per token, near uniform), so its implicit reward β·(log π − log π_ref) ` +
    'grows with response length; train an LM first with `rmserve train --method sft --out DIR` and pass --init-from DIR';
}

/** The DPO term's implicit reward on the test split, beside the reward head and response length. */
export interface ImplicitRewardMetrics {
  split: 'test';
  pairs: number;
  beta: number;
  /** share of pairs whose implicit reward ranks the chosen response first (ties half) */
  accuracy: number;
  /** pairs whose responses differ in length (response tokens, untruncated, as the length baseline counts them) */
  unequal_length_pairs: number;
  /** on those pairs, share where the implicit margin's sign is "the longer response wins" (a zero margin counts half) */
  longer_agreement: number;
  /** the same for the reward head's margin r_c − r_r */
  reward_longer_agreement: number;
  /** mean NLL per response token of the test responses under π_ref and under the kept weights' LM head */
  reference_nll_per_token: number;
  policy_nll_per_token: number;
}

export interface ImplicitRewardInput {
  config: RewardModelConfig;
  /** the run's starting weights: the frozen reference */
  reference: ModelWeights;
  /** the kept (exported) weights */
  policy: ModelWeights;
  /** the test pairs, encoded with response starts */
  test: readonly TrainExample[];
  /** per test pair, the untruncated response token counts */
  lengths: readonly { chosen: number; rejected: number }[];
  /** per test pair, the reward head's r_c − r_r */
  rewardMargins: readonly number[];
  beta: number;
  padId: number;
  session: ort.InferenceSession.SessionOptions;
}

/** Share of `pairs` (indices) where sign(margin) is the sign of `longer`; zero margins count half. */
function agreement(margins: ArrayLike<number>, longer: readonly number[], pairs: readonly number[]): number {
  if (pairs.length === 0) return 0;
  const hits = pairs.reduce((n, i) => {
    const m = margins[i] as number;
    return n + (m === 0 ? 0.5 : Math.sign(m) === Math.sign(longer[i] as number) ? 1 : 0);
  }, 0);
  return hits / pairs.length;
}

export async function implicitRewardMetrics(input: ImplicitRewardInput): Promise<ImplicitRewardMetrics> {
  const { test, config, padId } = input;
  const rows = [...test.map((e) => e.chosen), ...test.map((e) => e.rejected)];
  const starts = [...test.map((e) => e.chosenStart ?? 1), ...test.map((e) => e.rejectedStart ?? 1)];
  const tokens = rows.reduce((n, r, i) => n + counted(r, starts[i]), 0);
  const forward = await LogProbForward.create(config, input.session);
  let ref: Float64Array, pol: Float64Array;
  try {
    ref = await forward.logProbs(weightsToTensors(config, input.reference), rows, starts, padId);
    pol = await forward.logProbs(weightsToTensors(config, input.policy), rows, starts, padId);
  } finally {
    await forward.release();
  }
  const P = test.length;
  const implicit = Float64Array.from({ length: P }, (_, i) =>
    input.beta * (((pol[i] as number) - (ref[i] as number)) - ((pol[P + i] as number) - (ref[P + i] as number))));
  const longer = input.lengths.map((l) => l.chosen - l.rejected);
  const unequal = longer.map((d, i) => (d !== 0 ? i : -1)).filter((i) => i >= 0);
  const sum = (xs: Float64Array): number => xs.reduce((a, v) => a + v, 0);
  return {
    split: 'test', pairs: P, beta: input.beta,
    accuracy: P > 0 ? implicit.reduce((n, m) => n + (m > 0 ? 1 : m === 0 ? 0.5 : 0), 0) / P : 0,
    unequal_length_pairs: unequal.length,
    longer_agreement: agreement(implicit, longer, unequal),
    reward_longer_agreement: agreement(input.rewardMargins, longer, unequal),
    reference_nll_per_token: -sum(ref) / Math.max(1, tokens),
    policy_nll_per_token: -sum(pol) / Math.max(1, tokens),
  };
}
