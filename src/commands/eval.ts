// `rmserve eval`: score preference files with an exported model folder, exactly as the server
// would, and report accuracy, reward scale, margins and calibration (docs/evaluation.md).
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Command } from 'commander';
import { addOptions, readOptions } from '../config/options.js';
import { EVAL_OPTIONS } from '../config/eval.js';
import { evaluateFiles } from '../eval/evaluate-files.js';
import { formatEvalResult } from '../eval/table.js';
import type { EvalResult } from '../eval/types.js';
import { Progress } from './progress.js';

export function evalCommand(): Command {
  return addOptions(
    new Command('eval').description('pairwise accuracy, reward scale, margin quantiles and calibration of a model folder on preference files'),
    EVAL_OPTIONS,
  )
    .action(async function (this: Command, parsed: Record<string, unknown>) {
      const { config, command: opts } = readOptions(EVAL_OPTIONS, parsed);
      // One phase per file and step: its pairs tokenized, then its responses scored.
      const progress = new Progress();
      let phase = '';
      let result: EvalResult;
      try {
        result = await evaluateFiles({
          ...config,
          progress: (f, step, done, total) => {
            if (`${f}:${step}` !== phase) {
              phase = `${f}:${step}`;
              progress.start(`${step === 'tokenize' ? 'tokenizing' : 'scoring'} ${basename(config.data[f] ?? '')}`, total, step === 'tokenize' ? 'pairs' : 'responses');
            }
            progress.update(done);
          },
        });
      } catch (err) {
        progress.stop();
        // Unreadable files, bad model folders: one line, no stack trace.
        this.error(`error: ${(err as Error).message}`);
      }
      progress.stop();
      if (opts.json !== undefined) {
        mkdirSync(dirname(opts.json), { recursive: true });
        writeFileSync(opts.json, JSON.stringify(result, null, 2) + '\n');
      }
      if (opts.json !== undefined) process.stderr.write(`wrote ${opts.json}\n`);
      if (!opts.quiet) process.stdout.write(formatEvalResult(result));
    });
}
