// writeTrainingReport: `report.html` beside a trained model (docs/design.md, Data flow of a training run). The trainer
// calls it at the end of a run; `rmserve report` calls it to rebuild a report from the files.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderTrainingReport } from './html.js';
import { readMetricsLog } from './metrics-log.js';
import type { TrainingReportInput } from './types.js';

export type { ConfigTable, MetricsRow, TrainingReportInput } from './types.js';
export { parseMetricsLog, readMetricsLog, type MetricsLog } from './metrics-log.js';
export { renderTrainingReport } from './html.js';

export const REPORT_FILE = 'report.html';

/** Writes `<dir>/report.html` and returns its path. */
export function writeTrainingReport(dir: string, input: TrainingReportInput): string {
  const notes: string[] = [];
  let rows = input.metrics;
  if (rows === undefined && input.metricsLogPath !== undefined) {
    const log = readMetricsLog(input.metricsLogPath);
    rows = log.rows;
    if (log.skipped > 0) notes.push(`${log.skipped} unreadable lines of ${input.metricsLogPath} were skipped.`);
  }
  mkdirSync(dir, { recursive: true });
  const path = join(dir, REPORT_FILE);
  writeFileSync(path, renderTrainingReport(input, rows ?? [], notes));
  return path;
}
