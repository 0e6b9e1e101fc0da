// The shape of `rmserve eval --json` and of what the trainer's report reads (docs/evaluation.md).
// Snake-case keys: this is a file format other tools read, like rmserve.json.
import type { ReadStats } from '../training/data.js';

export type EvalSplit = 'train' | 'validation' | 'test' | 'all';

export interface RewardStats {
  n: number;
  mean: number;
  /** Population standard deviation (ddof 0). */
  std: number;
}

/** One bin of the reliability table: pairs whose confidence σ(|r_c − r_r|) lies in [lo, hi). */
export interface CalibrationBin {
  lo: number;
  hi: number;
  count: number;
  /** Mean σ(|Δ|) of the bin's pairs: how sure the model was of its pick. null when empty. */
  confidence: number | null;
  /** Share of the bin's pairs the model ranked right (ties half). null when empty. */
  accuracy: number | null;
}

export interface Calibration {
  bins: CalibrationBin[];
  /** Expected calibration error Σ_b (n_b/n)·|accuracy_b − confidence_b|. */
  ece: number;
}

/** Counts per bin between consecutive edges (the last bin includes its right edge). */
export interface Histogram {
  edges: number[];
  counts: number[];
}

export interface PairAccuracy {
  /** (correct + ties/2) / pairs; null for no pairs. */
  accuracy: number | null;
  correct: number;
  ties: number;
  incorrect: number;
}

/** Everything measured about one reward column on one set of pairs. */
export interface ObjectiveEvaluation extends PairAccuracy {
  pairs: number;
  /** Mean Bradley–Terry loss −log σ(r_c − r_r). */
  loss: number | null;
  rewards: { chosen: RewardStats; rejected: RewardStats; all: RewardStats };
  margin: {
    mean: number;
    std: number;
    /** Median of |r_c − r_r|: the scale of the rewards' separations. */
    abs_median: number;
    /** Quantiles of r_c − r_r ("0.05" … "0.95"), linear interpolation (numpy's default). */
    quantiles: Record<string, number>;
  };
  calibration: Calibration;
  histograms: {
    /** Chosen and rejected rewards over the same edges, so they overlay. */
    rewards: { edges: number[]; chosen: number[]; rejected: number[] };
    margin: Histogram;
  };
}

export interface FileEvaluation {
  path: string;
  /** The file's basename, as pairs name their source. */
  source: string;
  split: EvalSplit;
  /** What the reader kept and dropped (before the split and --max-pairs). */
  read: ReadStats;
  /** Pairs scored. */
  pairs: number;
  /** Pairs the model cannot take (e.g. multi-turn prompts for a single-turn prompt_format), with the first reason. */
  skipped: number;
  skip_reason?: string;
  /** Pairs where the chosen or the rejected text was cut to the model's max length. */
  truncated: number;
  /** Prefer the response with more tokens (model tokenizer, response only); ties count half. */
  length_baseline: PairAccuracy;
  /** One entry per reward column of the model, by objective name. */
  objectives: Record<string, ObjectiveEvaluation>;
}

export interface EvalResult {
  format_version: 1;
  model: { dir: string; name: string; version: string; objectives: string[]; max_length: number };
  split: EvalSplit;
  max_pairs: number | null;
  created_at: string;
  seconds: number;
  files: FileEvaluation[];
}
