// One loaded version of one model: its folder, tokenizer, ONNX session and dynamic batcher.
// Loading validates the graph with a smoke batch before the version may take traffic.
import { join } from 'node:path';
import type { RmserveMetrics } from '../metrics.js';
import { DynamicBatcher, type BatcherOptions } from './batcher.js';
import { modelLoadFailed } from './errors.js';
import { readModelFolder, type ModelSpec } from './model-folder.js';
import { RewardSession, type SessionOptions } from './onnx-session.js';

export interface LoadOptions {
  session: SessionOptions;
  batcher: BatcherOptions;
  metrics: RmserveMetrics;
}

/** Two items of different lengths, so padding is exercised by the smoke batch. */
const SMOKE_ITEMS = [
  { prompt: 'Hello', response: 'Hi.' },
  { prompt: 'What is the capital of France?', response: 'The capital of France is Paris.' },
];

export class ModelVersion {
  /** Objective names, one per logits column. */
  readonly objectives: string[];
  readonly loadedAt = new Date();

  private constructor(
    readonly name: string,
    readonly version: string,
    readonly spec: ModelSpec,
    private readonly session: RewardSession,
    readonly batcher: DynamicBatcher,
    numOutputs: number,
  ) {
    const labels = spec.labels;
    if (labels !== undefined && labels.length !== numOutputs) {
      throw modelLoadFailed(`${name}: ${labels.length} objective names for ${numOutputs} logits columns`);
    }
    this.objectives = labels ?? (numOutputs === 1 ? [name] : Array.from({ length: numOutputs }, (_, i) => `${name}_${i}`));
  }

  /** `name@version`, the cache's and metrics' identity of this version. */
  get id(): string {
    return `${this.name}@${this.version}`;
  }

  static async load(name: string, version: string, dir: string, options: LoadOptions): Promise<ModelVersion> {
    const spec = readModelFolder(dir);
    const session = await RewardSession.create(join(dir, 'model.onnx'), spec.padId, spec.paddingSide, options.session);
    try {
      const rows = SMOKE_ITEMS.map((item) => spec.tokenizer.encode(spec.formatter.render(item), spec.truncationSide).ids);
      const { rewards } = await session.run(rows);
      const k = rewards[0]?.length ?? 0;
      if (k === 0 || rewards.some((r) => r.length !== k || !r.every(Number.isFinite))) {
        throw modelLoadFailed(`${name}: the smoke batch gave non-finite or inconsistent outputs`);
      }
      const { metrics } = options;
      const model = `${name}@${version}`;
      const batcher = new DynamicBatcher(
        async (batch) => (await session.run(batch)).rewards,
        options.batcher,
        (stats) => {
          metrics.batchSize.observe({ model }, stats.rows);
          metrics.batchTokens.observe({ model }, stats.paddedTokens);
          metrics.paddingRatio.observe({ model }, 1 - stats.realTokens / stats.paddedTokens);
          metrics.inferenceDuration.observe({ model }, stats.runSeconds);
          metrics.tokensTotal.inc({ model }, stats.realTokens);
          for (const wait of stats.queueWaitSeconds) metrics.queueWait.observe({ model }, wait);
        },
        (depth) => metrics.queueDepth.set({ model }, depth),
      );
      return new ModelVersion(name, version, spec, session, batcher, k);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** Stops new work, lets queued items finish, then frees the session. */
  async release(): Promise<void> {
    this.batcher.close();
    await this.batcher.drain();
    await this.session.release();
  }
}
