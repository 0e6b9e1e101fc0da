// Request-time reward transforms: pure functions, no I/O. The server resolves r_ref (request
// references → per-prompt cache → manifest) and calls these after the score cache.
export { TransformError, type TransformErrorCode } from './errors.js';
export { softplus, logSigmoid, sigmoid } from './logistic.js';
export { lsc } from './lsc.js';
export { znorm } from './znorm.js';
export { clip } from './clip.js';
export { quantile, DEFAULT_REFERENCE_QUANTILE } from './quantile.js';
export { resolveReference, type ReferenceCandidates, type ReferenceSource, type ResolvedReference } from './reference.js';
export {
  applyTransform,
  isTransformName,
  parseTransformName,
  TRANSFORM_NAMES,
  type TransformName,
  type TransformParams,
} from './transform.js';
export {
  aggregate,
  checkAggregate,
  conjunction,
  weightedSum,
  weightedMin,
  isAggregateName,
  parseAggregateName,
  AGGREGATE_NAMES,
  type AggregateName,
  type Aggregated,
} from './aggregate.js';
