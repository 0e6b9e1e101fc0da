// `rmserve eval`: score preference files with an exported model folder, exactly as the server
// would, and report accuracy, reward scale, margins and calibration (docs/evaluation.md).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command } from 'commander';
import { addOptions, readOptions } from '../config/options.js';
import { EVAL_OPTIONS } from '../config/eval.js';
import { evaluateFiles } from '../eval/evaluate-files.js';
import { ProgressLine } from '../eval/progress.js';
import { formatEvalResult } from '../eval/table.js';
import type { EvalResult } from '../eval/types.js';

export function evalCommand(): Command {
  return addOptions(
    new Command('eval').description('pairwise accuracy, reward scale, margin quantiles and calibration of a model folder on preference files'),
    EVAL_OPTIONS,
  )
    .action(async function (this: Command, parsed: Record<string, unknown>) {
      const { config, command: opts } = readOptions(EVAL_OPTIONS, parsed);
      const progress = new ProgressLine();
      let result: EvalResult;
      try {
        result = await evaluateFiles({
          ...config,
          progress: (f, phase, done, total) => progress.update(`${phase === 'tokenize' ? 'tokenizing pairs of' : 'scoring responses of'} ${config.data[f]}`, done, total),
        });
      } catch (err) {
        progress.done();
        // Unreadable files, bad model folders: one line, no stack trace.
        this.error(`error: ${(err as Error).message}`);
      }
      progress.done();
      if (opts.json !== undefined) {
        mkdirSync(dirname(opts.json), { recursive: true });
        writeFileSync(opts.json, JSON.stringify(result, null, 2) + '\n');
      }
      if (opts.json !== undefined) process.stderr.write(`wrote ${opts.json}\n`);
      if (!opts.quiet) process.stdout.write(formatEvalResult(result));
    });
}
