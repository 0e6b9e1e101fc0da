// `rmserve report`'s options (src/config/options.ts explains the table): the files a report is
// rebuilt from and where it goes.
import type { ConfigOf, OptionTable } from './options.js';

export const REPORT_OPTIONS = {
  metrics: { flags: '--metrics <file>', help: 'metrics log: one {"step", "split", "loss", "accuracy", ...} object per line' },
  eval: { flags: '--eval <file>', help: 'evaluation result written by `rmserve eval --json`' },
  config: { flags: '--config <file>', help: 'JSON object of the run configuration, shown as a table (e.g. the model folder rmserve.json)' },
  title: { flags: '--title <text>', help: 'page title' },
  out: { flags: '--out <dir>', required: true, help: 'folder to write report.html into' },
} as const satisfies OptionTable;

export type ReportConfig = ConfigOf<typeof REPORT_OPTIONS>;
