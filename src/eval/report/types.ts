// What the training report is drawn from. The trainer passes these to writeTrainingReport;
// `rmserve report` rebuilds them from the files a run leaves behind (metrics JSONL, eval JSON).
import type { EvalResult } from '../types.js';

/**
 * One line of the trainer's metrics log (JSONL), e.g.
 * `{"step": 10, "split": "train", "loss": 0.61, "accuracy": 0.7, "lr": 3e-4, "reward_mean": 0.1,
 *   "reward_std": 0.9, "tokens_per_second": 5120}`.
 * Every field but `step` and `split` is optional; unknown fields are kept and shown nowhere, so
 * the trainer may log more without breaking the report.
 */
export interface MetricsRow {
  step: number;
  /** `train` (running training batches) or `validation` (the held-out split); other names are plotted as their own series. */
  split: string;
  loss?: number;
  accuracy?: number;
  lr?: number;
  reward_mean?: number;
  reward_std?: number;
  tokens_per_second?: number;
  [field: string]: unknown;
}

/** A flat or nested table of settings; nested objects are shown with dotted keys. */
export type ConfigTable = Record<string, unknown>;

export interface TrainingReportInput {
  /** Page title; default "Training report". */
  title?: string;
  /** The metrics rows, or the path of the JSONL log to read them from (rows win when both are given). */
  metrics?: readonly MetricsRow[];
  metricsLogPath?: string;
  /** `rmserve eval`'s result on the exported model (histograms, margins, calibration per file). */
  evalResult?: EvalResult;
  /** The run's configuration: method, hyperparameters, model size, data, seed… */
  config?: ConfigTable;
  /** Extra final numbers to list first in the summary table (e.g. training seconds, test accuracy). */
  finalMetrics?: Record<string, number | string>;
  /** When the run finished; default now. */
  createdAt?: string;
}
