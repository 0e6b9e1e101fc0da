// One loaded version of one model: its folder, tokenizer, ONNX session and dynamic batcher.
// Loading validates the graph with a smoke batch and warms it before the version may take traffic;
// releasing waits for the work that pinned this version before the session is freed.
import { join } from 'node:path';
import { versionLabels, type RmserveMetrics } from '../metrics.js';
import { DynamicBatcher, type BatcherOptions } from './batcher.js';
import { modelLoadFailed } from './errors.js';
import { cacheShapeHints, readModelFolder, type ModelSpec } from '../model/model-folder.js';
import { folderFingerprint } from '../model/versions.js';
import type { ScoreItem } from '../model/format.js';
import { calibrateBatching } from './calibrate.js';
import { onnxBytes, sessionLayout, type SessionLayout } from './session-layout.js';
import { openRewardSession, type RewardRunner, type ServingSessionOptions } from '../model/session-thread.js';

export interface LoadOptions {
  session: ServingSessionOptions;
  /** The configured limits; with calibrateBatching, the most a calibration may choose. */
  batcher: BatcherOptions;
  metrics: RmserveMetrics;
  /** Time batch sizes at load and batch by measured cost per row (src/scoring/calibrate.ts). */
  calibrateBatching?: boolean;
  /**
   * Sessions of the model, each running its own batches (--instances); 1 by default. `auto`: the
   * rule in session-layout.ts, which may also set the instances' and the solo session's threads.
   */
  instances?: number | 'auto';
  /**
   * Intra-op threads of one more session that runs the batches that have the model to themselves
   * (--solo-threads; 0 or unset: none): with several narrow instances, a lone request still gets
   * every core.
   */
  soloThreads?: number;
  /**
   * Open the solo session on the main thread, for lone batches expected to run at most this
   * many milliseconds (--solo-inline-ms; 0 or unset: the solo session gets an inference thread).
   */
  soloInlineMs?: number;
}

/** Where the solo session runs, and which lone batches it takes. */
export interface SoloPlacement {
  /** On the event loop's thread: no hand-off, but the loop waits out the run. */
  mainThread: boolean;
  /** Most padded tokens of a solo batch (on the main thread: what soloInlineMs allows). */
  maxTokens?: number;
  /** Why it went where it did, from the load-time timing. */
  reason: string;
}

/** The batch limits a version runs with, and whether they were measured. */
export interface BatchingLimits {
  maxBatchSize: number;
  maxBatchTokens: number;
  calibrated: boolean;
  calibrationSeconds?: number;
}

/**
 * Two items of clearly different lengths for the load-time self-check: each scored alone and both
 * in one padded batch must agree, or padding is being read as text (wrong pad id, padding side,
 * position ids) and every batched reward would be wrong.
 */
const SELF_CHECK_ITEMS = [
  { prompt: 'Hello', response: 'Hi.' },
  {
    prompt: 'What is the capital of France? Please answer in one full sentence.',
    response: 'The capital of France is Paris, which lies on the Seine in the north of the country.',
  },
];

/** How far batched and single-row rewards may differ: float32 kernels reorder sums; fp16 rounds. */
function selfCheckTolerance(outputType: string, value: number): number {
  return outputType === 'float16' ? 2e-2 + 1e-2 * Math.abs(value) : 1e-3 + 1e-3 * Math.abs(value);
}

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
    /** Every session of this version (the instances, then the solo session if any): released together. */
    private readonly sessions: readonly RewardRunner[],
    /** Its sessions: instances (the solo session not counted), their threads, the solo session's. */
    readonly layout: SessionLayout,
    /** Where the solo session runs; undefined without one. */
    readonly soloPlacement: SoloPlacement | undefined,
    readonly batcher: DynamicBatcher,
    readonly batching: BatchingLimits,
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
    metrics.retainVersion(versionLabels(this));
  }

  /** `name@version`, the logs' name of this version (metrics label model and version apart). */
  get id(): string {
    return `${this.name}@${this.version}`;
  }

  /**
   * This load's identity, unique in the process: what caches key on. A version name can be
   * reused for other weights (a folder deleted and written again), so `name@version` must not
   * be what a cached reward or a worker's tokenizer is found by.
   */
  readonly key: string;

  /**
   * Other names clients may use for this model: rmserve.json's `name` and config.json's
   * `_name_or_path` (the Hugging Face id vLLM and SGLang clients send as `model`).
   */
  get aliases(): string[] {
    const aliases = new Set<string>();
    const manifestName = this.spec.manifest?.name;
    if (manifestName !== undefined && manifestName !== '') aliases.add(manifestName);
    const hfId = this.spec.files.config._name_or_path;
    if (typeof hfId === 'string' && hfId !== '') aliases.add(hfId);
    aliases.delete(this.name);
    return [...aliases];
  }

  /** The folder this version was loaded from. */
  get dir(): string {
    return this.spec.dir;
  }

  static async load(name: string, version: string, dir: string, options: LoadOptions): Promise<ModelVersion> {
    const started = performance.now();
    // Taken before the files are read, so a folder rewritten during the load looks changed.
    const fingerprint = folderFingerprint(dir);
    const spec = readModelFolder(dir);
    const layout = sessionLayout({
      instances: options.instances ?? 1,
      intraOpThreads: options.session.intraOpThreads ?? 0,
      soloThreads: options.soloThreads ?? 0,
      device: options.session.device ?? 'cpu',
      inferenceThread: options.session.thread !== false,
    }, onnxBytes(dir));
    // Several one-thread instances: each inference thread is its run's only ORT thread, and the
    // instances together outnumber the cores beside the event loop that feeds them, so each is
    // lowered as pool threads are (--ort-pool-nice; docs/benchmarks.md, "The narrow instances'
    // inference threads at nice 10"). The solo session's thread, which runs alone, is not.
    const narrow = layout.instances > 1 && layout.intraOpThreads === 1;
    const open = (threads: number, threadNice = 0, thread = options.session.thread): Promise<RewardRunner> =>
      openRewardSession(join(dir, 'model.onnx'), spec.padId, spec.paddingSide, { ...options.session, intraOpThreads: threads, threadNice, thread }, cacheShapeHints(spec.files.config));
    const sessions: RewardRunner[] = [];
    const { soloThreads } = layout;
    const id = `${name}@${version}`;
    try {
      for (let i = 0; i < layout.instances; i++) sessions.push(await open(layout.intraOpThreads, narrow ? (options.session.poolNice ?? 0) : 0));
      const instances = [...sessions];
      // Every instance is checked: each is its own session, warmed on both shapes.
      let k = 0;
      for (const session of sessions) k = await selfCheck(id, spec, session);
      let solo: RewardRunner | undefined;
      let soloPlacement: SoloPlacement | undefined;
      if (soloThreads > 0) {
        const inlineMs = options.soloInlineMs ?? 0;
        const probe = probeRow(spec);
        // A one-thread instance's run bounds the solo session's (more threads, same row) from
        // above: only a model whose typical row runs that fast goes to the main thread, so no
        // long run ever holds the event loop, not even the solo session's warm-up below.
        const instanceMs = inlineMs > 0 ? await fastestRunMs(instances[0] as RewardRunner, probe) : Infinity;
        const inline = instanceMs <= inlineMs;
        solo = await open(soloThreads, 0, inline ? false : options.session.thread);
        sessions.push(solo);
        k = await selfCheck(id, spec, solo);
        soloPlacement = inline ? onMainThread(probe.length, inlineMs, await fastestRunMs(solo, probe)) : onItsThread(probe.length, inlineMs, instanceMs);
      }
      const { metrics } = options;
      const labels = versionLabels({ name, version });
      const batching = await batchingLimits(spec, options, layout.intraOpThreads);
      // The batcher never has more batches in flight than instances, so one is always free; a
      // solo batch runs with nothing else in flight.
      const free = [...instances];
      const batcher = new DynamicBatcher(
        async (batch, alone) => {
          const session = alone && solo !== undefined ? solo : (free.pop() as RewardRunner);
          const finished = metrics.batchStarted(labels, batch.length);
          try {
            const { rewards, runSeconds } = await session.run(batch);
            return { rewards, runSeconds };
          } finally {
            finished();
            if (session !== solo) free.push(session);
          }
        },
        {
          ...options.batcher,
          maxBatchSize: batching.maxBatchSize,
          maxBatchTokens: batching.maxBatchTokens,
          maxInFlight: instances.length,
          soloRuns: solo !== undefined,
          ...(soloPlacement?.maxTokens === undefined ? {} : { soloMaxTokens: soloPlacement.maxTokens }),
        },
        (stats) => {
          metrics.batchSize.observe(labels, stats.rows);
          metrics.batchTokens.observe(labels, stats.paddedTokens);
          metrics.paddingRatio.observe(labels, 1 - stats.realTokens / stats.paddedTokens);
          metrics.inferenceDuration.observe(labels, stats.runSeconds);
          metrics.tokensTotal.inc(labels, stats.realTokens);
          for (const wait of stats.queueWaitSeconds) metrics.queueWait.observe(labels, wait);
          if (stats.solo) metrics.soloBatches.inc(labels);
        },
        (depth) => metrics.queueDepth.set(labels, depth),
      );
      return new ModelVersion(name, version, spec, fingerprint, sessions, layout, soloPlacement, batcher, batching, k, (performance.now() - started) / 1000, metrics);
    } catch (err) {
      await Promise.all(sessions.map((session) => session.release()));
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
    await Promise.all(this.sessions.map((session) => session.release()));
    this.metrics.releaseVersion(versionLabels(this));
  }
}

/** Rows the solo placement is timed on: a typical single item's length (HH-RLHF's median is ~150). */
const PROBE_TOKENS = 128;

/** The longer self-check item's ids: the row load-time timings (placement, calibration) start from. */
function sampleIds(spec: ModelSpec): number[] {
  return spec.tokenizer.encode(spec.formatter.render(SELF_CHECK_ITEMS[1] as ScoreItem), spec.truncationSide).ids;
}

/** The sample row's ids, repeated up to PROBE_TOKENS (or the model's maximum). */
function probeRow(spec: ModelSpec): number[] {
  const ids = sampleIds(spec);
  const length = Math.min(PROBE_TOKENS, spec.maxLength);
  return Array.from({ length }, (_, i) => ids[i % ids.length] as number);
}

/**
 * The fastest of a few runs of one row, in ms, as timed where it ran (an inference thread
 * reports its run without the hand-offs). The fastest, since a busy machine only adds.
 */
async function fastestRunMs(session: RewardRunner, row: readonly number[]): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    const { runSeconds } = await session.run([row]);
    best = Math.min(best, runSeconds === undefined ? performance.now() - started : runSeconds * 1000);
  }
  return best;
}

/** A lone batch may run on the main thread while the solo session's rate keeps it within inlineMs. */
function onMainThread(probeTokens: number, inlineMs: number, soloMs: number): SoloPlacement {
  const maxTokens = Math.floor((probeTokens * inlineMs) / Math.max(soloMs, 1e-3));
  return {
    mainThread: true,
    maxTokens,
    reason: `the solo session runs lone batches of up to ${maxTokens} padded tokens on the main thread (a ${probeTokens}-token row: ${soloMs.toFixed(2)} ms; --solo-inline-ms ${inlineMs})`,
  };
}

function onItsThread(probeTokens: number, inlineMs: number, instanceMs: number): SoloPlacement {
  return {
    mainThread: false,
    reason: inlineMs > 0
      ? `the solo session has its own thread: a ${probeTokens}-token row took ${instanceMs.toFixed(2)} ms on an instance, over --solo-inline-ms ${inlineMs}`
      : 'the solo session has its own thread (--solo-inline-ms 0)',
  };
}

/**
 * Scores the self-check items alone and together in one padded batch (which also warms both
 * shapes); returns the number of reward columns. Refuses the version when the outputs are not
 * finite, not consistent, or change with padding.
 */
async function selfCheck(id: string, spec: ModelSpec, session: RewardRunner): Promise<number> {
  const rows = SELF_CHECK_ITEMS.map((item) => spec.tokenizer.encode(spec.formatter.render(item), spec.truncationSide).ids);
  const batched = (await session.run(rows)).rewards;
  const alone: Float32Array[] = [];
  for (const row of rows) alone.push((await session.run([row])).rewards[0] as Float32Array);
  const k = batched[0]?.length ?? 0;
  if (k === 0 || [...batched, ...alone].some((r) => r.length !== k || !r.every(Number.isFinite))) {
    throw modelLoadFailed(`${id}: the self-check batch gave non-finite or inconsistent outputs`);
  }
  for (const [i, row] of alone.entries()) {
    for (let c = 0; c < k; c++) {
      const single = row[c] as number;
      const padded = (batched[i] as Float32Array)[c] as number;
      if (Math.abs(single - padded) > selfCheckTolerance(session.outputType, single)) {
        throw modelLoadFailed(
          `${id}: refused by the padding self-check: a ${rows[i]?.length}-token text scores ${single.toFixed(4)} alone but ` +
            `${padded.toFixed(4)} in a ${spec.paddingSide}-padded batch (pad id ${spec.padId}, from ${spec.padIdSource}). ` +
            'Likely causes: the pad id the graph compares input_ids with (config.json pad_token_id), the padding side ' +
            '(tokenizer_config.json padding_side or rmserve.json padding_side), or position ids not derived from the attention mask',
        );
      }
    }
  }
  return k;
}

/**
 * The configured limits, or (calibrateBatching) those the measured cost per row calls for, timed
 * on a probe session with the instances' ORT threads (`intraOpThreads`).
 */
async function batchingLimits(spec: ModelSpec, options: LoadOptions, intraOpThreads: number): Promise<BatchingLimits> {
  const { maxBatchSize, maxBatchTokens } = options.batcher;
  if (!options.calibrateBatching) return { maxBatchSize, maxBatchTokens, calibrated: false };
  const sample = sampleIds(spec);
  // A session of its own, released after: the sweep's largest batches would otherwise leave the
  // serving session's CPU memory arena sized for them (measured on the shipped models: 749 MB
  // RSS at startup against 207 MB uncalibrated), though the limits chosen are often far smaller.
  const probe = await openRewardSession(join(spec.dir, 'model.onnx'), spec.padId, spec.paddingSide, { ...options.session, intraOpThreads }, cacheShapeHints(spec.files.config));
  try {
    const calibration = await calibrateBatching((rows) => probe.run(rows), sample, { maxBatchSize, maxBatchTokens, maxLength: spec.maxLength });
    return { maxBatchSize: calibration.maxBatchSize, maxBatchTokens: calibration.maxBatchTokens, calibrated: true, calibrationSeconds: calibration.seconds };
  } finally {
    await probe.release();
  }
}
