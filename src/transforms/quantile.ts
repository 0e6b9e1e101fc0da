// The q-quantile with linear interpolation between order statistics, numpy's default
// (method="linear", R type 7): position h = (n − 1)·q, value x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋]).
// LSC picks r_ref(x) as this quantile of the rewards of reference responses to the same prompt.
import { assertFinite, TransformError } from './errors.js';

// The value public re-implementations of the LSC paper use.
export const DEFAULT_REFERENCE_QUANTILE = 0.85;

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new TransformError('missing_parameter', 'quantile of an empty list of rewards');
  assertFinite(q, 'quantile');
  if (q < 0 || q > 1) throw new TransformError('invalid_parameter', `quantile must be in [0, 1], got ${q}`);
  values.forEach((v, i) => assertFinite(v, `reference reward [${i}]`));
  const sorted = [...values].sort((a, b) => a - b);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  const t = h - lo;
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  // numpy's lerp: interpolate from the nearer end, so q = 1 returns the maximum exactly.
  return t < 0.5 ? a + (b - a) * t : b - (b - a) * (1 - t);
}
