// `rmserve eval` without the terminal: one exported model, any number of preference files, each
// optionally cut to one split of the trainer's deterministic 80/10/10 split by prompt hash.
import { readPreferenceFileWithStats, type PreferencePair } from '../training/data.js';
import { splitByPrompt } from '../training/split.js';
import { evaluateRewards, pairAccuracy } from './metrics.js';
import { ModelScorer, type ModelScorerOptions } from './model-scorer.js';
import type { EvalResult, EvalSplit, FileEvaluation } from './types.js';

/** The trainer's split (docs/design.md, Data flow of a training run): train / validation / test by sha256 of the prompt. */
export const TRAINER_SPLIT = { train: 0.8, validation: 0.1, test: 0.1 } as const;

export interface EvaluateOptions extends ModelScorerOptions {
  model: string;
  data: readonly string[];
  /** Which of the trainer's splits to score (default test, as `rmserve eval`), or all pairs. */
  split?: EvalSplit;
  /** Keep the first N pairs of each file (after the split). */
  maxPairs?: number;
  /** Called per file as pairs are tokenized, then as responses are scored. */
  progress?: (file: number, phase: 'tokenize' | 'score', done: number, total: number) => void;
}

export function selectSplit(pairs: readonly PreferencePair[], split: EvalSplit): PreferencePair[] {
  return split === 'all' ? [...pairs] : splitByPrompt(pairs, TRAINER_SPLIT)[split];
}

export async function evaluateFiles(options: EvaluateOptions): Promise<EvalResult> {
  const started = performance.now();
  // The command's default (src/config/eval.ts): `all` would count the training pairs in the accuracy.
  const split = options.split ?? 'test';
  // Read every file before loading the model, so a typo in a path fails fast.
  const inputs = options.data.map((path) => ({ path, ...readPreferenceFileWithStats(path) }));
  const scorer = await ModelScorer.load(options.model, options);
  try {
    const files: FileEvaluation[] = [];
    for (const [f, input] of inputs.entries()) {
      let pairs = selectSplit(input.pairs, split);
      if (options.maxPairs !== undefined) pairs = pairs.slice(0, options.maxPairs);
      const scored = await scorer.score(pairs, (phase, done, total) => options.progress?.(f, phase, done, total));
      const objectives = Object.fromEntries(
        scorer.objectives.map((name, k) => [
          name,
          evaluateRewards(
            scored.chosen.map((r) => r[k] as number),
            scored.rejected.map((r) => r[k] as number),
          ),
        ]),
      );
      files.push({
        path: input.path,
        source: input.stats.source,
        split,
        read: input.stats,
        pairs: scored.kept.length,
        skipped: scored.skipped,
        ...(scored.skipReason === undefined ? {} : { skip_reason: scored.skipReason }),
        truncated: scored.truncated,
        length_baseline: pairAccuracy(scored.chosenTokens, scored.rejectedTokens),
        objectives,
      });
    }
    return {
      format_version: 1,
      model: {
        dir: options.model,
        name: scorer.name,
        version: scorer.version,
        objectives: scorer.objectives,
        max_length: scorer.spec.maxLength,
      },
      split,
      max_pairs: options.maxPairs ?? null,
      created_at: new Date().toISOString(),
      seconds: (performance.now() - started) / 1000,
      files,
    };
  } finally {
    await scorer.release();
  }
}
