// Combining per-objective (transformed) rewards into one reward per item. Every aggregate sees
// the weighted values w_k·u_k; weights default to 1 and name objectives, so a weight for an
// objective the request did not score is an error rather than silently ignored.
import { assertFinite, TransformError } from './errors.js';
import type { TransformName } from './transform.js';

export const AGGREGATE_NAMES = ['none', 'conjunction', 'sum', 'min'] as const;
export type AggregateName = (typeof AGGREGATE_NAMES)[number];

export interface Aggregated {
  // Absent for `none`: the reply then carries per-objective values only.
  reward?: number;
  // conjunction only: exp(reward) = Π_k P(good in objective k)^w_k.
  probability?: number;
}

export function isAggregateName(name: unknown): name is AggregateName {
  return typeof name === 'string' && (AGGREGATE_NAMES as readonly string[]).includes(name);
}

function unknownAggregate(name: unknown): TransformError {
  return new TransformError('unknown_aggregate', `unknown aggregate ${JSON.stringify(name)}; expected one of ${AGGREGATE_NAMES.join(', ')}`);
}

export function parseAggregateName(name: unknown): AggregateName {
  if (isAggregateName(name)) return name;
  throw unknownAggregate(name);
}

function weighted(values: Readonly<Record<string, number>>, weights: Readonly<Record<string, number>> | undefined): number[] {
  const names = Object.keys(values);
  if (names.length === 0) throw new TransformError('missing_parameter', 'no objectives to aggregate');
  for (const name of Object.keys(weights ?? {})) {
    if (!Object.hasOwn(values, name)) {
      throw new TransformError('unknown_objective', `weight given for unknown objective ${JSON.stringify(name)}; objectives are ${names.join(', ')}`);
    }
  }
  return names.map((name) => {
    const u = assertFinite(values[name]!, `value of objective ${name}`);
    const w = weights !== undefined && Object.hasOwn(weights, name) ? assertFinite(weights[name]!, `weight of objective ${name}`) : 1;
    return w * u;
  });
}

// Transforms whose values are log-probabilities (log σ(r − r_ref) ≤ 0), the only values whose sum
// is the log-probability of a conjunction.
const LOG_PROBABILITY_TRANSFORMS: readonly TransformName[] = ['lsc'];

/**
 * The request-time rule for a transform/aggregate pair, checked before anything is scored so the
 * answer depends on the request alone: conjunction needs log-probabilities (transform lsc) and
 * weights >= 0. Checking the values instead made `transform: none` pass or fail with the sign of
 * the rewards, and `clip: [-5, -1]` pass although clipped rewards are no probabilities.
 */
export function checkAggregate(transform: TransformName, aggregate: AggregateName, weights?: Readonly<Record<string, number>>): void {
  if (aggregate !== 'conjunction') return;
  if (!LOG_PROBABILITY_TRANSFORMS.includes(transform)) {
    throw new TransformError(
      'invalid_parameter',
      `aggregate conjunction sums log-probabilities, which only transform lsc gives (transform is ${transform}); ` +
        'use transform lsc, or aggregate sum or min',
    );
  }
  for (const [name, w] of Object.entries(weights ?? {})) {
    if (w < 0) throw new TransformError('invalid_parameter', `conjunction needs weights >= 0; objective ${name} has ${w}`);
  }
}

// Σ_k w_k·u_k with u_k = log P(good in k) is log P(good in every objective) when the objectives
// are independent (LSC paper, §3). It only means that for log-probabilities: the server refuses
// any transform but lsc up front (checkAggregate); for callers that pass bare values it still
// refuses values above 0, and negative weights, which would turn the product into a ratio.
export function conjunction(values: Readonly<Record<string, number>>, weights?: Readonly<Record<string, number>>): Required<Aggregated> {
  const terms = weighted(values, weights);
  for (const [name, u] of Object.entries(values)) {
    if (u > 0) {
      throw new TransformError('invalid_parameter', `conjunction needs log-probabilities (<= 0, as transform lsc gives); objective ${name} is ${u}`);
    }
  }
  for (const [name, w] of Object.entries(weights ?? {})) {
    if (w < 0) throw new TransformError('invalid_parameter', `conjunction needs weights >= 0; objective ${name} has ${w}`);
  }
  const reward = terms.reduce((s, x) => s + x, 0) + 0;
  return { reward, probability: Math.exp(reward) };
}

export function weightedSum(values: Readonly<Record<string, number>>, weights?: Readonly<Record<string, number>>): number {
  return weighted(values, weights).reduce((s, x) => s + x, 0);
}

// The worst objective decides: a hard conjunction without the probabilistic reading.
export function weightedMin(values: Readonly<Record<string, number>>, weights?: Readonly<Record<string, number>>): number {
  return Math.min(...weighted(values, weights));
}

export function aggregate(
  name: AggregateName,
  values: Readonly<Record<string, number>>,
  weights?: Readonly<Record<string, number>>,
): Aggregated {
  switch (name) {
    case 'none':
      weighted(values, weights); // still reject unknown names and non-finite values
      return {};
    case 'conjunction':
      return conjunction(values, weights);
    case 'sum':
      return { reward: weightedSum(values, weights) };
    case 'min':
      return { reward: weightedMin(values, weights) };
    default:
      throw unknownAggregate(name satisfies never);
  }
}
