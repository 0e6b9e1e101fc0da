// One loaded version of one model: its folder, tokenizer, ONNX session and dynamic batcher.
// Loading validates the graph with a smoke batch and warms it before the version may take traffic;
// releasing waits for the work that pinned this version before the session is freed.
import { join } from 'node:path';
import type { RmserveMetrics } from '../metrics.js';
import { DynamicBatcher, type BatcherOptions } from './batcher.js';
import { modelLoadFailed } from './errors.js';
import { readModelFolder, type ModelSpec } from '../model/model-folder.js';
import { folderFingerprint } from '../model/versions.js';
import { RewardSession, type SessionOptions } from '../model/onnx-session.js';

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

/**
 * After its queue drains, a retired version waits this long for late submissions before its
 * session goes: a request that pinned it may still be between two awaits (e.g. references
 * scored before items). Holders of an explicit lease are waited for however long they take.
 */
const RETIRE_LINGER_MS = 200;

let loadSerial = 0;

export class ModelVersion {
  /** Objective names, one per logits column. */
  readonly objectives: string[];
  readonly loadedAt = new Date();
  private leases = 0;
  private leaseWaiters: (() => void)[] = [];
  private released: Promise<void> | undefined;

  private constructor(
    readonly name: string,
    readonly version: string,
    readonly spec: ModelSpec,
    /** The folder's fingerprint when it was loaded: tells a rewrite under the same version name. */
    readonly fingerprint: string,
    private readonly session: RewardSession,
    readonly batcher: DynamicBatcher,
    numOutputs: number,
    /** Seconds from reading the folder to the end of warm-up. */
    readonly loadSeconds: number,
    private readonly metrics: RmserveMetrics,
  ) {
    this.key = `${name}@${version}#${++loadSerial}`;
    const labels = spec.labels;
    if (labels !== undefined && labels.length !== numOutputs) {
      throw modelLoadFailed(`${name}: ${labels.length} objective names for ${numOutputs} logits columns`);
    }
    this.objectives = labels ?? (numOutputs === 1 ? [name] : Array.from({ length: numOutputs }, (_, i) => `${name}_${i}`));
  }

  /** `name@version`, the metrics' and logs' name of this version. */
  get id(): string {
    return `${this.name}@${this.version}`;
  }

  /**
   * This load's identity, unique in the process: what caches key on. A version name can be
   * reused for other weights (a folder deleted and written again), so `name@version` must not
   * be what a cached reward or a worker's tokenizer is found by.
   */
  readonly key: string;

  /** The folder this version was loaded from. */
  get dir(): string {
    return this.spec.dir;
  }

  static async load(name: string, version: string, dir: string, options: LoadOptions): Promise<ModelVersion> {
    const started = performance.now();
    // Taken before the files are read, so a folder rewritten during the load looks changed.
    const fingerprint = folderFingerprint(dir);
    const spec = readModelFolder(dir);
    const session = await RewardSession.create(join(dir, 'model.onnx'), spec.padId, spec.paddingSide, options.session);
    try {
      const rows = SMOKE_ITEMS.map((item) => spec.tokenizer.encode(spec.formatter.render(item), spec.truncationSide).ids);
      const { rewards } = await session.run(rows);
      const k = rewards[0]?.length ?? 0;
      if (k === 0 || rewards.some((r) => r.length !== k || !r.every(Number.isFinite))) {
        throw modelLoadFailed(`${name}@${version}: the smoke batch gave non-finite or inconsistent outputs`);
      }
      // Warm-up: ORT allocates per shape on first use; a single-row run is the trainer's common case.
      const warm = await session.run(rows.slice(1));
      if (!warm.rewards.every((r) => r.length === k && r.every(Number.isFinite))) {
        throw modelLoadFailed(`${name}@${version}: the warm-up run gave non-finite outputs`);
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
      return new ModelVersion(name, version, spec, fingerprint, session, batcher, k, (performance.now() - started) / 1000, metrics);
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /**
   * Holds this version open until the returned function is called, so a request that spans
   * several awaits keeps its session even if a newer version takes over meanwhile.
   */
  acquire(): () => void {
    this.leases++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.leases--;
      if (this.leases === 0) this.leaseWaiters.splice(0).forEach((wake) => wake());
    };
  }

  /**
   * Retires this version: waits until nothing queued, running or leased remains (new requests
   * no longer reach it once the registry switched), then frees the session and this version's
   * metric series. `lingerMs` is the grace window for late submissions (0 when the server no
   * longer takes requests). Idempotent.
   */
  release(lingerMs = RETIRE_LINGER_MS): Promise<void> {
    this.released ??= this.retire(lingerMs);
    return this.released;
  }

  private leasesReleased(): Promise<void> {
    if (this.leases === 0) return Promise.resolve();
    return new Promise((resolve) => this.leaseWaiters.push(resolve));
  }

  private async retire(lingerMs: number): Promise<void> {
    await this.batcher.drain();
    await this.leasesReleased();
    if (lingerMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, lingerMs));
      await this.leasesReleased();
    }
    this.batcher.close();
    await this.batcher.drain();
    await this.session.release();
    const labels = { model: this.id };
    for (const metric of [
      this.metrics.batchSize,
      this.metrics.batchTokens,
      this.metrics.paddingRatio,
      this.metrics.inferenceDuration,
      this.metrics.tokensTotal,
      this.metrics.queueWait,
      this.metrics.queueDepth,
    ]) {
      metric.remove(labels);
    }
  }
}
