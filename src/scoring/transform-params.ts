// What each request-time transform needs besides the raw reward, and where the server finds it:
// lsc its r_ref (request references → per-prompt cache → manifest quantile), znorm the mean/std
// of the model's rmserve.json, clip the request's bounds. The transforms themselves stay pure
// functions of numbers (src/transforms); this is the one place that knows their inputs.
import type { ReferenceStatistics } from '../model/manifest.js';
import {
  DEFAULT_REFERENCE_QUANTILE,
  quantile,
  resolveReference,
  TransformError,
  type ResolvedReference,
  type TransformName,
  type TransformParams,
} from '../transforms/index.js';

/** The parts of a request's reward options that choose and parameterise the transform. */
export interface TransformChoice {
  transform: TransformName;
  /** The quantile of reference rewards that is r_ref for lsc (default 0.85). */
  referenceQuantile?: number;
  /** [lo, hi] for clip. */
  clip?: readonly [number, number];
}

/** This objective's raw rewards of the reference responses that apply to one item. */
export interface ObjectiveReferences {
  rewards: readonly number[];
  /** Sent with this request, or remembered for the item's prompt from an earlier one. */
  source: 'request' | 'prompt_cache';
}

/** One objective of one item, as far as its transform is concerned. */
export interface ObjectiveInputs {
  /** The reply key (`objective`, or `model.objective` when two models share a head name). */
  key: string;
  /** The head's name inside its model: the key of its statistics in rmserve.json. */
  objective: string;
  model: string;
  /** rmserve.json `reference.<objective>`: quantiles for lsc, mean/std for znorm. */
  stats: ReferenceStatistics | undefined;
  /** Reference rewards for lsc; undefined when the item has none. */
  references: ObjectiveReferences | undefined;
}

export interface ObjectiveTransform {
  params: TransformParams;
  /** lsc only: r_ref and where it came from, shown in the reply. */
  reference?: ResolvedReference;
}

/**
 * The parameters `applyTransform(choice.transform, raw, params)` needs for one objective.
 * Throws a TransformError (400) when the model or request cannot supply them.
 */
export function transformParams(choice: TransformChoice, inputs: ObjectiveInputs): ObjectiveTransform {
  switch (choice.transform) {
    case 'lsc': {
      const reference = lscReference(choice.referenceQuantile ?? DEFAULT_REFERENCE_QUANTILE, inputs);
      return { params: { reference: reference.reference }, reference };
    }
    case 'znorm':
      return { params: znormParams(inputs) };
    case 'clip':
      // No bounds: applyTransform says clip needs [lo, hi].
      return { params: choice.clip === undefined ? {} : { clip: choice.clip } };
    default:
      // none and sigmoid need nothing; an unknown name is refused by applyTransform.
      return { params: {} };
  }
}

/**
 * r_ref at quantile `q`: of this request's reference rewards, else of the ones remembered for the
 * prompt, else the manifest's quantile. Remembered rewards are kept whole (not as one r_ref) so
 * each request may ask for its own quantile.
 */
function lscReference(q: number, { key, stats, references }: ObjectiveInputs): ResolvedReference {
  return resolveReference(
    key,
    {
      requestRewards: references?.source === 'request' ? references.rewards : undefined,
      promptCache: references?.source === 'prompt_cache' ? quantile(references.rewards, q) : undefined,
      manifestQuantiles: stats?.quantiles,
    },
    q,
  );
}

/** znorm uses the model's own reward statistics; a model without them cannot be z-normalised. */
function znormParams({ key, objective, model, stats }: ObjectiveInputs): TransformParams {
  if (stats === undefined) {
    throw new TransformError('missing_parameter', `objective ${key} has no reward mean/std: znorm needs reference.${objective} in model ${model}'s rmserve.json`);
  }
  return { mean: stats.mean, std: stats.std };
}
