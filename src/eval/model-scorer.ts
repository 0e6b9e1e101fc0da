// Scores preference pairs with an exported model folder exactly as the server does: the same
// readModelFolder (chat template or prompt format, tokenizer, truncation side, pad id) and the same
// RewardSession, without the HTTP layer, batcher or cache. Rows are sorted by length and run in
// fixed-size batches, so padding stays small and the order of the pairs does not matter.
import { basename, dirname, join, resolve } from 'node:path';
import { readModelFolder, type ModelSpec } from '../model/model-folder.js';
import { RewardSession } from '../model/onnx-session.js';
import type { PreferencePair } from '../training/data.js';

export interface ModelScorerOptions {
  device?: string;
  /** Rows (responses) per ONNX run. Default 32. */
  batchSize?: number;
  intraOpThreads?: number;
}

/** Rewards of the pairs a model could take, in input order, plus what it could not. */
export interface ScoredPairs {
  /** Indexes into the input of the pairs that were scored. */
  kept: number[];
  /** [kept.length] reward vectors (K values) of chosen and rejected. */
  chosen: Float32Array[];
  rejected: Float32Array[];
  /** Response-only token counts (the length baseline's feature). */
  chosenTokens: number[];
  rejectedTokens: number[];
  /** Pairs with a truncated chosen or rejected text. */
  truncated: number;
  skipped: number;
  skipReason: string | undefined;
}

/** Tokenizing (counted in pairs) takes as long as scoring (counted in responses) for small models. */
export type ScoreProgress = (phase: 'tokenize' | 'score', done: number, total: number) => void;

export class ModelScorer {
  private constructor(
    readonly spec: ModelSpec,
    private readonly session: RewardSession,
    readonly objectives: string[],
    readonly name: string,
    readonly version: string,
    private readonly batchSize: number,
  ) {}

  static async load(dir: string, options: ModelScorerOptions = {}): Promise<ModelScorer> {
    const spec = readModelFolder(dir);
    const session = await RewardSession.create(join(dir, 'model.onnx'), spec.padId, spec.paddingSide, {
      device: options.device ?? 'cpu',
      ...(options.intraOpThreads ? { intraOpThreads: options.intraOpThreads } : {}),
    });
    // The number of heads is what the graph outputs: ask it with one tiny row.
    const probe = spec.tokenizer.encode(spec.formatter.render({ prompt: 'Hello', response: 'Hi.' }), spec.truncationSide);
    const k = (await session.run([probe.ids])).rewards[0]?.length ?? 0;
    const folder = resolve(dir);
    const name = spec.manifest?.name ?? basename(dirname(folder));
    const objectives = spec.labels ?? (k === 1 ? [name] : Array.from({ length: k }, (_, i) => `${name}_${i}`));
    if (objectives.length !== k) {
      await session.release();
      throw new Error(`${dir}: ${objectives.length} objective names for ${k} logits columns`);
    }
    return new ModelScorer(spec, session, objectives, name, spec.manifest?.version ?? basename(folder), options.batchSize ?? 32);
  }

  async score(pairs: readonly PreferencePair[], progress?: ScoreProgress): Promise<ScoredPairs> {
    const { spec } = this;
    const kept: number[] = [];
    const rows: number[][] = [];
    const chosenTokens: number[] = [];
    const rejectedTokens: number[] = [];
    let truncated = 0;
    let skipped = 0;
    let skipReason: string | undefined;
    pairs.forEach((pair, i) => {
      try {
        const c = spec.tokenizer.encode(spec.formatter.render({ prompt: pair.prompt, response: pair.chosen }), spec.truncationSide);
        const r = spec.tokenizer.encode(spec.formatter.render({ prompt: pair.prompt, response: pair.rejected }), spec.truncationSide);
        kept.push(i);
        rows.push(c.ids, r.ids);
        chosenTokens.push(this.responseTokens(pair.chosen));
        rejectedTokens.push(this.responseTokens(pair.rejected));
        if (c.truncated || r.truncated) truncated++;
      } catch (err) {
        skipped++;
        skipReason ??= (err as Error).message;
      }
      progress?.('tokenize', i + 1, pairs.length);
    });

    const rewards = new Array<Float32Array>(rows.length);
    const order = rows.map((_, i) => i).sort((a, b) => (rows[a] as number[]).length - (rows[b] as number[]).length);
    for (let start = 0; start < order.length; start += this.batchSize) {
      const idx = order.slice(start, start + this.batchSize);
      const out = await this.session.run(idx.map((i) => rows[i] as number[]));
      idx.forEach((i, j) => (rewards[i] = out.rewards[j] as Float32Array));
      progress?.('score', Math.min(order.length, start + this.batchSize), order.length);
    }
    return {
      kept,
      chosen: kept.map((_, j) => rewards[2 * j] as Float32Array),
      rejected: kept.map((_, j) => rewards[2 * j + 1] as Float32Array),
      chosenTokens,
      rejectedTokens,
      truncated,
      skipped,
      skipReason,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  private responseTokens(response: string): number {
    return this.spec.tokenizer.tokenizer.encode(response, { add_special_tokens: false }).ids.length;
  }
}
