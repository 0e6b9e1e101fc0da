// Where LSC's r_ref comes from, in order of precedence (docs/design.md, Transforms): reference
// responses in the request, then a per-prompt reference remembered from earlier requests, then
// the model's rmserve.json statistic. The reply names the source, so a client can tell a
// prompt-specific reference from a model-wide one.
import { assertFinite, TransformError } from './errors.js';
import { DEFAULT_REFERENCE_QUANTILE, quantile } from './quantile.js';

export type ReferenceSource = 'request' | 'prompt_cache' | 'manifest';

export interface ReferenceCandidates {
  // Raw rewards (this objective) of the reference responses sent with the request.
  requestRewards?: readonly number[];
  // r_ref remembered for (model version, prompt, q) from an earlier request with references.
  promptCache?: number;
  // rmserve.json `reference.<objective>.quantiles`, keyed by the quantile as a decimal string.
  manifestQuantiles?: Readonly<Record<string, number>>;
}

export interface ResolvedReference {
  reference: number;
  source: ReferenceSource;
}

export function resolveReference(objective: string, candidates: ReferenceCandidates, q: number = DEFAULT_REFERENCE_QUANTILE): ResolvedReference {
  const { requestRewards, promptCache, manifestQuantiles } = candidates;
  if (requestRewards !== undefined && requestRewards.length > 0) {
    return { reference: quantile(requestRewards, q), source: 'request' };
  }
  if (promptCache !== undefined) {
    return { reference: assertFinite(promptCache, `cached reference of objective ${objective}`), source: 'prompt_cache' };
  }
  // Keys are decimal strings; compare as numbers so "0.85" and "0.850" both match q = 0.85.
  const key = Object.keys(manifestQuantiles ?? {}).find((k) => Number(k) === q);
  if (key !== undefined) {
    return { reference: assertFinite(manifestQuantiles![key]!, `manifest reference of objective ${objective}`), source: 'manifest' };
  }
  throw new TransformError(
    'missing_parameter',
    `objective ${objective} has no LSC reference: send reference responses with the request, or serve a model whose rmserve.json has reference.${objective}.quantiles["${q}"]`,
  );
}
