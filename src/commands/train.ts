// `rmserve train`: train a reward model on preference files and export it as a model folder the
// server loads. Every option has a default; `--help` lists them all. The options are TRAIN_OPTIONS
// (src/config/train.ts), the same table that types and defaults runTraining's config.
import { basename, resolve } from 'node:path';
import { Command } from 'commander';
import { promoteVersion } from '../server/promote-client.js';
import { runSftTraining, runTraining } from '../training/pipeline.js';
import { addOptions, readOptions } from '../config/options.js';
import { TRAIN_OPTIONS, modelName } from '../config/train.js';
import type { LoopProgress } from '../training/loop.js';
import { Progress } from './progress.js';

/** The loop's step reports drawn as one phase of `progress`: a bar on a terminal, plain lines elsewhere. */
function stepProgress(progress: Progress): LoopProgress {
  let started = false;
  return {
    step({ step, stopAt, firstStep, loss, lr, tokensPerSecond }) {
      if (!started) {
        started = true;
        progress.start('training', stopAt, 'steps', firstStep);
      }
      progress.update(step, `loss ${loss.toFixed(4)} lr ${lr.toExponential(2)} ${Math.round(tokensPerSecond)} tok/s`);
      // The last step ends the phase: what follows (validation, the test split, export) is not training time.
      if (step >= stopAt) progress.stop();
    },
  };
}

export function trainCommand(): Command {
  return addOptions(new Command('train').description('train a reward model on preference data and export it as a model folder the server loads'), TRAIN_OPTIONS)
    .addHelpText('after', '\nWrites <out>/model.onnx, tokenizer files, config.json, train-metrics.jsonl, rmserve.json (with the LSC reference\n' +
      'statistics of the validation split) and then report.html.')
    .action(async (parsed: Record<string, unknown>) => {
      const { config, command: opts } = readOptions(TRAIN_OPTIONS, parsed);
      // First Ctrl-C: finish the step, write the resumable checkpoint, exit. Second: exit now.
      const stop = new AbortController();
      process.once('SIGINT', () => {
        process.stderr.write('\nstopping after this step (Ctrl-C again to quit now)\n');
        stop.abort();
        process.once('SIGINT', () => process.exit(130));
      });
      // --no-progress: no bar and no step lines; the log lines and the JSONL log stay.
      const progress = opts.progress ? new Progress() : undefined;
      const run = {
        ...config,
        signal: stop.signal,
        progress: progress === undefined ? false as const : stepProgress(progress),
        // Through the bar, which clears itself for a line and redraws below it.
        log: (line: string) => (progress === undefined ? process.stderr.write(`${line}\n`) : progress.log(line)),
        command: ['rmserve', ...process.argv.slice(2)].join(' '),
      };
      if (config.loss?.method === 'sft') {
        if (opts.promote) {
          process.stderr.write('rmserve train: --promote does not apply to --method sft (its output is a causal LM for --init-from, not a reward model to serve)\n');
          process.exitCode = 1;
          return;
        }
        await sftAction(run, progress);
        return;
      }
      const result = await reportingFailure(() => runTraining(run), progress);
      if (result === undefined) return;
      if (result.manifest === undefined) {
        console.log(JSON.stringify({ interrupted: true, step: result.loop.steps.at(-1)?.step ?? null, checkpoint: result.loop.checkpoint }));
        // 128 + the signal's number, as a shell reports a process the signal stopped.
        process.exitCode = result.loop.stoppedBy === 'SIGTERM' ? 143 : 130;
        return;
      }
      const m = result.manifest.metrics as { validation?: { accuracy: number }; test?: { accuracy: number } } | undefined;
      let promoted: string | null = null;
      if (opts.promote) {
        const name = modelName(config.out);
        const version = basename(resolve(config.out));
        try {
          const status = await promoteVersion(opts.promote, name, version, opts.adminToken ?? '');
          promoted = status.serving?.version ?? null;
          process.stderr.write(`promoted ${name}@${version} on ${opts.promote}\n`);
        } catch (err) {
          // The model folder is complete and stays; only the hand-over failed.
          process.stderr.write(`rmserve train: exported ${result.outDir} but could not promote it: ${(err as Error).message}\n`);
          process.exitCode = 1;
        }
      }
      console.log(JSON.stringify({
        out: result.outDir, validation_accuracy: m?.validation?.accuracy ?? null, test_accuracy: m?.test?.accuracy ?? null,
        ...(opts.promote ? { promoted } : {}),
      }));
    });
}

/**
 * Runs a training phase and stops the progress line either way. A user error (bad file, bad
 * option combination, no CUDA) is one line on stderr and exit code 1, not a stack: undefined.
 */
async function reportingFailure<T>(phase: () => Promise<T>, progress: Progress | undefined): Promise<T | undefined> {
  let result: T;
  try {
    result = await phase();
  } catch (err) {
    progress?.stop(); // first: the progress line must not swallow the message
    process.stderr.write(`rmserve train: ${(err as Error).message}\n`);
    process.exitCode = 1;
    return undefined;
  }
  progress?.stop();
  return result;
}

/** --method sft: the LM phase, whose output is a causal-LM folder for a later --init-from (no --promote: nothing to serve). */
async function sftAction(run: Parameters<typeof runSftTraining>[0], progress: Progress | undefined): Promise<void> {
  const result = await reportingFailure(() => runSftTraining(run), progress);
  if (result === undefined) return;
  if (result.info === undefined) {
    console.log(JSON.stringify({ interrupted: true, step: result.lm.steps.at(-1)?.step ?? null }));
    process.exitCode = 130;
    return;
  }
  console.log(JSON.stringify({
    out: result.outDir, validation_nll_per_token: result.lm.bestValidation?.nll_per_token ?? null,
    initial_validation_nll_per_token: result.lm.initialValidation?.nll_per_token ?? null, best_step: result.lm.bestStep,
  }));
}
