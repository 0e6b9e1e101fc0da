// z-normalisation with a model's reward statistics, as OpenRLHF's `normalize_reward` does:
// (r − mean) / std, no epsilon — a std of 0 or below is a broken manifest, not a value to hide.
import { assertFinite, TransformError } from './errors.js';

export function znorm(raw: number, mean: number, std: number): number {
  assertFinite(raw, 'raw reward');
  assertFinite(mean, 'mean');
  assertFinite(std, 'std');
  if (!(std > 0)) throw new TransformError('invalid_parameter', `std must be > 0, got ${std}`);
  return (raw - mean) / std;
}
