// `rmserve report`: rebuild report.html from what a training run leaves behind (its metrics log and
// an `rmserve eval --json` result), e.g. after re-evaluating a model on new data.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { addOptions, readOptions } from '../config/options.js';
import { REPORT_OPTIONS } from '../config/report.js';
import type { EvalResult } from '../eval/types.js';
import { writeTrainingReport, type ConfigTable } from '../eval/report/index.js';

function readJsonObject(path: string, what: string): Record<string, unknown> {
  const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${path}: ${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

export function reportCommand(): Command {
  return addOptions(
    new Command('report').description('write report.html from a training metrics log (JSONL) and an `rmserve eval --json` result'),
    REPORT_OPTIONS,
  )
    .action(function (this: Command, parsed: Record<string, unknown>) {
      const { config: opts } = readOptions(REPORT_OPTIONS, parsed);
      try {
        if (opts.metrics === undefined && opts.eval === undefined) throw new Error('give --metrics, --eval or both');
        const evalResult = opts.eval === undefined ? undefined : readJsonObject(opts.eval, 'the eval result');
        if (evalResult !== undefined && (evalResult.format_version !== 1 || !Array.isArray(evalResult.files))) {
          throw new Error(`${opts.eval}: not an rmserve eval result (format_version 1 with files)`);
        }
        const path = writeTrainingReport(opts.out, {
          ...(opts.title === undefined ? {} : { title: opts.title }),
          ...(opts.metrics === undefined ? {} : { metricsLogPath: opts.metrics }),
          ...(evalResult === undefined ? {} : { evalResult: evalResult as unknown as EvalResult }),
          ...(opts.config === undefined ? {} : { config: readJsonObject(opts.config, 'the config') as ConfigTable }),
        });
        process.stderr.write(`wrote ${path}\n`);
      } catch (err) {
        // A usage or file problem: one line, no stack trace.
        this.error(`error: ${(err as Error).message}`);
      }
    });
}
