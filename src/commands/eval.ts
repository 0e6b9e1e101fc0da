// `rmserve eval`: score preference files with an exported model folder, exactly as the server
// would, and report accuracy, reward scale, margins and calibration (docs/evaluation.md).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Command, Option } from 'commander';
import { evaluateFiles } from '../eval/evaluate-files.js';
import { ProgressLine } from '../eval/progress.js';
import { formatEvalResult } from '../eval/table.js';
import type { EvalResult, EvalSplit } from '../eval/types.js';

const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive integer, got "${value}"`);
  return n;
};

interface EvalOptions {
  model: string;
  data: string[];
  json?: string;
  maxPairs?: number;
  split: EvalSplit;
  batchSize: number;
  device: string;
  threads?: number;
  quiet?: boolean;
}

export function evalCommand(): Command {
  return new Command('eval')
    .description('pairwise accuracy, reward scale, margin quantiles and calibration of a model folder on preference files')
    .requiredOption('--model <dir>', 'model folder (model.onnx, tokenizer.json, ...), as the server loads it')
    .requiredOption('--data <files...>', 'preference files: JSONL/JSON(.gz), HH-RLHF, AlpacaEval, PandaLM, prompt/chosen/rejected')
    .option('--json <file>', 'also write the full result as JSON (histograms and calibration included)')
    .option('--max-pairs <n>', 'first N pairs of each file (after --split)', positiveInt)
    .addOption(
      new Option('--split <split>', "one split of the trainer's 80/10/10 split by prompt hash, or all pairs")
        .choices(['test', 'validation', 'train', 'all'])
        .default('all'),
    )
    .option('--batch-size <n>', 'responses per ONNX run (sorted by length)', positiveInt, 32)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--threads <n>', 'ORT intra-op threads (default: ORT decides)', positiveInt)
    .option('--quiet', 'no table on stdout (with --json)')
    .action(async function (this: Command, opts: EvalOptions) {
      const progress = new ProgressLine();
      let result: EvalResult;
      try {
        result = await evaluateFiles({
          model: opts.model,
          data: opts.data,
          split: opts.split,
          ...(opts.maxPairs === undefined ? {} : { maxPairs: opts.maxPairs }),
          batchSize: opts.batchSize,
          device: opts.device,
          ...(opts.threads === undefined ? {} : { intraOpThreads: opts.threads }),
          progress: (f, phase, done, total) => progress.update(`${phase === 'tokenize' ? 'tokenizing pairs of' : 'scoring responses of'} ${opts.data[f]}`, done, total),
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
