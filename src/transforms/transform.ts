// Per-objective transforms of a raw reward, applied after the cache so one cached raw score
// serves every transform. Raw is the default: nothing is squashed unless asked.
import { clip } from './clip.js';
import { assertFinite, TransformError } from './errors.js';
import { sigmoid } from './logistic.js';
import { lsc } from './lsc.js';
import { znorm } from './znorm.js';

export const TRANSFORM_NAMES = ['none', 'lsc', 'sigmoid', 'znorm', 'clip'] as const;
export type TransformName = (typeof TRANSFORM_NAMES)[number];

export interface TransformParams {
  // r_ref for lsc, already resolved by the caller (request, per-prompt cache or manifest).
  reference?: number;
  // The model's reward statistics for znorm.
  mean?: number;
  std?: number;
  // [lo, hi] for clip.
  clip?: readonly [number, number];
}

export function isTransformName(name: unknown): name is TransformName {
  return typeof name === 'string' && (TRANSFORM_NAMES as readonly string[]).includes(name);
}

// Names arrive from JSON bodies and query strings: check them once, at the edge.
function unknownTransform(name: unknown): TransformError {
  return new TransformError('unknown_transform', `unknown transform ${JSON.stringify(name)}; expected one of ${TRANSFORM_NAMES.join(', ')}`);
}

export function parseTransformName(name: unknown): TransformName {
  if (isTransformName(name)) return name;
  throw unknownTransform(name);
}

function required(value: number | undefined, param: string, transform: TransformName): number {
  if (value === undefined) throw new TransformError('missing_parameter', `transform ${transform} needs ${param}`);
  return value;
}

export function applyTransform(name: TransformName, raw: number, params: TransformParams = {}): number {
  let out: number;
  switch (name) {
    case 'none':
      out = assertFinite(raw, 'raw reward');
      break;
    case 'lsc':
      out = lsc(raw, required(params.reference, 'a reference reward', name));
      break;
    case 'sigmoid':
      out = sigmoid(assertFinite(raw, 'raw reward'));
      break;
    case 'znorm':
      out = znorm(raw, required(params.mean, 'mean', name), required(params.std, 'std', name));
      break;
    case 'clip': {
      if (params.clip === undefined) throw new TransformError('missing_parameter', 'transform clip needs [lo, hi]');
      out = clip(raw, params.clip[0], params.clip[1]);
      break;
    }
    default:
      throw unknownTransform(name satisfies never);
  }
  // Finite inputs can still overflow, e.g. znorm with std 1e-300; JSON cannot carry the result.
  if (!Number.isFinite(out)) {
    throw new TransformError('non_finite_result', `transform ${name} of ${raw} is not finite; check its parameters`);
  }
  return out;
}
