// Evaluation of reward models on preference pairs: `rmserve eval`, the trainer's report, bench/.
export { evaluateFiles, selectSplit, TRAINER_SPLIT, type EvaluateOptions } from './evaluate-files.js';
export { calibration, evaluateRewards, histogram, histogramEdges, MARGIN_QUANTILES, pairAccuracy, rewardStats } from './metrics.js';
export { ModelScorer, type ModelScorerOptions, type ScoredPairs } from './model-scorer.js';
export { formatEvalResult } from './table.js';
export type * from './types.js';
