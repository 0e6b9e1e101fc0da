// Clamp into [lo, hi]; RL trainers clip rewards so one outlier cannot dominate an update.
import { assertFinite, TransformError } from './errors.js';

export function clip(raw: number, lo: number, hi: number): number {
  assertFinite(raw, 'raw reward');
  assertFinite(lo, 'clip lower bound');
  assertFinite(hi, 'clip upper bound');
  if (lo > hi) throw new TransformError('invalid_parameter', `clip bounds must satisfy lo <= hi, got [${lo}, ${hi}]`);
  return Math.min(Math.max(raw, lo), hi);
}
