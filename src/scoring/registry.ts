// Which version of each model serves, and every change to it (Triton's model control): a new
// version is loaded, validated and warmed, then switched in atomically; requests that pinned the
// old version finish on it, and it is released once drained. A failed load leaves the old version
// serving. Layout: <root>/<name>/<version>/ (complete once its rmserve.json or READY marker
// exists) or a flat <root>/<name>/ holding model.onnx directly (a plain Hugging Face / optimum
// export), served as version "0".
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import {
  byVersion,
  folderFingerprint,
  isCompleteVersion,
  isDirectory,
  isInside,
  listDir,
  listVersions,
} from '../model/versions.js';
import type { RmserveMetrics } from '../metrics.js';
import { ScoringError, unknownModel } from './errors.js';
import { ModelVersion, type LoadOptions } from './model-version.js';

/** What asked for a load; shown with failures and swap events. */
export type LoadSource = 'startup' | 'api' | 'watch' | 'rollback';

export interface LoadFailure {
  version: string;
  message: string;
  at: string;
  source: LoadSource;
}

export interface ModelStatus {
  name: string;
  serving: {
    version: string;
    loaded_at: string;
    load_seconds: number;
    objectives: string[];
    max_length: number;
    /** The id rows are padded with, and which rule gave it (src/model/model-folder.ts padIdOf). */
    pad_id: number;
    pad_id_source: string;
    padding_side: string;
    /** The batch limits this version runs with; calibrated ones were measured at load. */
    batching: { max_batch_size: number; max_batch_tokens: number; calibrated: boolean; calibration_seconds?: number };
    /** Session instances running batches side by side (--instances). */
    instances: number;
    /** ORT threads of the session that runs batches alone (--solo-threads); 0: none. */
    solo_threads: number;
    /** ORT threads of each instance (--intra-op-threads); 0: ORT's default. */
    intra_op_threads: number;
    /** With a solo session: whether it runs on the main thread, up to how many padded tokens, and why (--solo-inline-ms). */
    solo_placement?: { main_thread: boolean; max_tokens?: number; reason: string };
    /** With --instances auto: what the rule chose and why (src/scoring/session-layout.ts). */
    layout_rule?: string;
    metrics?: Record<string, unknown>;
  } | null;
  /** Complete versions on disk, oldest first. */
  versions: string[];
  /** The version the watch and `load {version: "latest"}` would serve. */
  newest: string | null;
  /** Set when a version is pinned (by --pin, the API or a rollback): the watch leaves it alone. */
  pinned: string | null;
  /** The version that served before the current one: what rollback loads. */
  previous: string | null;
  /** A version being loaded right now. */
  loading: string | null;
  /** Unloaded through the API: not served, not reloaded by the watch, not needed for /ready. */
  unloaded: boolean;
  /** Message of the last failed load, until that version or a newer one serves. */
  last_error: string | null;
  last_failure: LoadFailure | null;
}

export interface SwapEvent {
  model: string;
  /** The version now serving; null after an unload. */
  version: string | null;
  previous: string | null;
  source: LoadSource;
  /** performance.now() at the switch. */
  at: number;
}

export interface LoadRequest {
  /** A version folder name under <root>/<name>/, or "latest" (the default) for the newest complete one. */
  version?: string;
  /** A model folder inside the models root (relative to it, or absolute). */
  path?: string;
  /** Pin the loaded version so the watch does not replace it. Default: true, except for "latest". */
  pin?: boolean;
  source?: LoadSource;
}

export interface RegistrySettings {
  /** Versions to serve instead of the newest, by model name (`--pin name=version`). */
  pins?: Record<string, string>;
  log?: (message: string) => void;
}

interface VersionRef {
  version: string;
  dir: string;
}

/**
 * The registry's life, which only moves forward (serving → draining → closed):
 * - 'serving': loads switch in, the watch follows the newest versions, /ready may say ready.
 * - 'draining' (beginShutdown): /ready says not ready and every reply closes its connection, so
 *   load balancers move traffic away; requests in flight finish and loads still switch in.
 * - 'closed' (close): nothing serves; a load that finishes now is released and refused
 *   (503 shutting_down), and the watch replaces nothing.
 */
export type RegistryLifecycle = 'serving' | 'draining' | 'closed';

const LIFECYCLE_ORDER: readonly RegistryLifecycle[] = ['serving', 'draining', 'closed'];

/**
 * Which version a model should serve, as the operator last chose it:
 * - 'newest': the newest complete version; the watch switches to a newer one once it settles.
 * - 'pinned': `version` (by --pin, an API load of a named version, or a rollback); the watch
 *   leaves it alone.
 * - 'unloaded': nothing (the API's unload); the watch leaves it alone and /ready does not wait
 *   for it, until a load serves a version again.
 */
type Selection = { kind: 'newest' } | { kind: 'pinned'; version: string } | { kind: 'unloaded' };

/** How long /ready trusts what it last saw on disk before it looks again (see `ready`). */
export const READY_RESCAN_MS = 1000;

interface ModelState {
  selection: Selection;
  previous: VersionRef | undefined;
  lastFailure: LoadFailure | undefined;
  /**
   * The version a load under the lock is working on, shown in the status. Not part of the
   * selection: a pinned or unloaded model keeps its selection until the switch succeeds.
   */
  loading: string | undefined;
  /** Tail of this model's load queue: loads of one model run one at a time, in order. */
  lock: Promise<void>;
  /** model_info series still exported for this model (serving = 1, the one before = 0). */
  infoVersions: string[];
}


const versionNotFound = (name: string, version: string): ScoringError =>
  new ScoringError('version_not_found', 404, `model "${name}" has no version "${version}"`);
const pathOutsideRoot = (path: string): ScoringError =>
  new ScoringError('path_outside_models_root', 403, `"${path}" is outside the models root`);

export class ModelRegistry {
  private readonly serving = new Map<string, ModelVersion>();
  private readonly states = new Map<string, ModelState>();
  private readonly swapListeners = new Set<(event: SwapEvent) => void>();
  private stage: RegistryLifecycle = 'serving';
  /**
   * Models with a complete version on disk, as last seen: what /ready waits for. Every listing
   * of the root or of a model's versions (loads, the watch's scans, status) updates it, and
   * `ready` rescans the whole root when no full scan is newer than READY_RESCAN_MS.
   */
  private readonly withVersions = new Set<string>();
  private fullScanAt = -Infinity;

  constructor(
    readonly root: string,
    private readonly options: LoadOptions,
    private readonly settings: RegistrySettings = {},
  ) {
    for (const [name, version] of Object.entries(settings.pins ?? {})) this.state(name).selection = { kind: 'pinned', version };
  }

  get lifecycle(): RegistryLifecycle {
    return this.stage;
  }

  /** Moves the lifecycle forward to `stage`; never back (a beginShutdown after close keeps it closed). */
  private advance(stage: RegistryLifecycle): void {
    if (LIFECYCLE_ORDER.indexOf(stage) > LIFECYCLE_ORDER.indexOf(this.stage)) this.stage = stage;
  }

  private get metrics(): RmserveMetrics {
    return this.options.metrics;
  }

  private log(message: string): void {
    this.settings.log?.(message);
  }

  /** Model names found under the root. */
  discover(): string[] {
    const names = listDir(this.root)
      .filter((entry) => !entry.startsWith('.') && isDirectory(join(this.root, entry)))
      .sort();
    const present = new Set(names);
    for (const name of this.withVersions) if (!present.has(name)) this.withVersions.delete(name);
    return names;
  }

  /** Complete versions of a model, oldest first. A link to a folder outside the root is not one. */
  versions(name: string): string[] {
    const versions = listVersions(this.root, join(this.root, name));
    if (versions.length > 0) this.withVersions.add(name);
    else this.withVersions.delete(name);
    return versions;
  }

  /**
   * Every model under the root with its complete versions, oldest first; what the watch scans
   * and /ready's cached view of the disk are refreshed by.
   */
  rescan(): Map<string, string[]> {
    const found = new Map(this.discover().map((name) => [name, this.versions(name)]));
    this.fullScanAt = performance.now();
    return found;
  }

  /** The newest complete version, which serves unless one is pinned. */
  newest(name: string): string | undefined {
    return this.versions(name).at(-1);
  }

  /** Calls `listener` on every switch (load, rollback, unload); returns the unsubscribe function. */
  onSwap(listener: (event: SwapEvent) => void): () => void {
    this.swapListeners.add(listener);
    return () => this.swapListeners.delete(listener);
  }

  /**
   * Loads the pinned or newest complete version of every model under the root. When the newest
   * fails, older ones are tried so the model still serves; every failure is counted and kept.
   */
  async loadAll(log?: (message: string) => void): Promise<void> {
    for (const name of this.discover()) {
      const state = this.state(name);
      const pinned = state.selection.kind === 'pinned' ? state.selection.version : undefined;
      const candidates = pinned !== undefined ? [pinned] : this.versions(name).reverse();
      if (candidates.length === 0) {
        state.lastFailure = failure('', 'no complete version (model.onnx with rmserve.json or READY)', 'startup');
        continue;
      }
      for (const version of candidates) {
        try {
          await this.load(name, version, { pin: pinned !== undefined, source: 'startup' });
          log?.(`loaded ${name}@${version}`);
          break;
        } catch (err) {
          // Recorded in lastFailure and the metrics; the server starts with what did load.
          log?.(`failed to load ${name}@${version}: ${(err as Error).message}`);
        }
      }
    }
  }

  /**
   * Loads `version` of `name` ("latest" = newest complete) and makes it serve. Resolves once it
   * serves; rejects with a ScoringError when it was refused (the old version keeps serving).
   */
  load(name: string, version = 'latest', options: { pin?: boolean; source?: LoadSource } = {}): Promise<ModelVersion> {
    return this.loadRequest(name, { ...options, version });
  }

  /** The admin API's load: `{version}` or `{path}` (checked to lie inside the models root). */
  async loadRequest(name: string, request: LoadRequest): Promise<ModelVersion> {
    this.assertKnown(name);
    if (request.version !== undefined && request.path !== undefined) {
      throw new ScoringError('invalid_request', 400, 'give either version or path, not both');
    }
    const source = request.source ?? 'api';
    const latest = request.path === undefined && (request.version === undefined || request.version === 'latest');
    return this.withLock(name, async () => {
      let ref: VersionRef;
      if (request.path !== undefined) {
        ref = this.resolvePath(name, request.path);
      } else if (latest) {
        const newest = this.newest(name);
        if (newest === undefined) {
          throw this.refuse(name, '', source, 'no complete version (model.onnx with rmserve.json or READY)');
        }
        ref = this.resolveVersion(name, newest);
      } else {
        ref = this.resolveVersion(name, request.version as string);
      }
      // A version folder needs its marker; a flat export, or a folder named by path, needs only model.onnx.
      const markerless = request.path !== undefined || ref.dir === join(this.root, name);
      if (!isCompleteVersion(ref.dir) && !(markerless && existsSync(join(ref.dir, 'model.onnx')))) {
        throw this.refuse(name, ref.version, source, `${ref.version} is not complete: model.onnx and rmserve.json or READY are required`);
      }
      return this.swap(name, ref, { pin: request.pin ?? !latest, source });
    });
  }

  /** Serves the version that served before the current one again, pinned. */
  rollback(name: string): Promise<ModelVersion> {
    this.assertKnown(name);
    return this.withLock(name, async () => {
      const previous = this.state(name).previous;
      if (previous === undefined) throw new ScoringError('no_previous_version', 409, `model "${name}" has no previous version to roll back to`);
      if (!existsSync(join(previous.dir, 'model.onnx'))) {
        throw this.refuse(name, previous.version, 'rollback', `${previous.dir} no longer holds model.onnx`);
      }
      return this.swap(name, previous, { pin: true, source: 'rollback' });
    });
  }

  /** Stops serving `name`; queued work finishes on it first. The watch leaves it alone until a load. */
  unload(name: string): Promise<void> {
    this.assertKnown(name);
    return this.withLock(name, async () => {
      const state = this.state(name);
      const current = this.serving.get(name);
      state.selection = { kind: 'unloaded' };
      if (current === undefined) return;
      this.serving.delete(name);
      this.metrics.modelInfo.set({ model: name, version: current.version }, 0);
      state.previous = { version: current.version, dir: current.dir };
      this.emit({ model: name, version: null, previous: current.version, source: 'api', at: performance.now() });
      this.log(`unloaded ${current.id}`);
      void current.release().catch((err: Error) => this.log(`releasing ${current.id} failed: ${err.message}`));
    });
  }

  /**
   * The watch's entry point: if `name` follows its newest version (not pinned, not unloaded) and
   * a newer complete one than the serving one exists, load it. Returns the loaded version, if any.
   */
  async followNewest(name: string, version: string): Promise<ModelVersion | undefined> {
    return this.withLock(name, async () => {
      if (!this.follows(name)) return undefined;
      const serving = this.serving.get(name);
      const ref = this.resolveVersion(name, version);
      if (serving !== undefined && !this.supersedes(serving, ref.version, ref.dir)) return undefined;
      return this.swap(name, ref, { pin: false, source: 'watch' });
    });
  }

  /**
   * Whether the watch should replace `serving` by the folder `ref`: a newer version, or the same
   * version name written again with other files (its fingerprint differs from the one loaded).
   * An older version never is: when the serving version's folder is deleted, it keeps serving
   * from memory rather than silently downgrading a training run's reward model.
   */
  supersedes(serving: ModelVersion, version: string, dir: string): boolean {
    const order = byVersion(version, serving.version);
    if (order !== 0) return order > 0;
    return folderFingerprint(dir) !== serving.fingerprint;
  }

  /** Whether the watch may replace what serves `name`. */
  follows(name: string): boolean {
    return this.stage !== 'closed' && this.selectionOf(name).kind === 'newest';
  }

  private selectionOf(name: string): Selection {
    return this.states.get(name)?.selection ?? { kind: 'newest' };
  }

  /** The version serving `name` right now; requests pin it for their whole life. */
  get(name: string): ModelVersion {
    const model = this.serving.get(name);
    if (model === undefined) throw unknownModel(name);
    return model;
  }

  /**
   * The serving version a client means by `requested`: its registry name first, else the one
   * model that has it as an alias (ModelVersion.aliases); 404 for none, 400 for several.
   */
  find(requested: string): ModelVersion {
    const direct = this.serving.get(requested);
    if (direct !== undefined) return direct;
    const matches = [...this.serving.values()].filter((model) => model.aliases.includes(requested));
    if (matches.length > 1) {
      throw new ScoringError(
        'ambiguous_model',
        400,
        `"${requested}" is an alias of ${matches.length} served models (${matches.map((m) => m.name).sort().join(', ')}); name one of them`,
      );
    }
    if (matches.length === 0) throw unknownModel(requested);
    return matches[0] as ModelVersion;
  }

  names(): string[] {
    return [...this.serving.keys()].sort();
  }

  /**
   * True when every model that has a complete version (and was not unloaded) serves one. Probes
   * come often (every few seconds from each load balancer), so this touches the disk at most
   * once per READY_RESCAN_MS: it reads the set of models with a complete version that loads, the
   * watch's scans and status listings keep current, and rescans only when no full scan is that
   * recent. A model folder that appears is therefore noticed within about a second.
   */
  get ready(): boolean {
    if (this.stage !== 'serving' || this.serving.size === 0) return false;
    if (performance.now() - this.fullScanAt >= READY_RESCAN_MS) this.rescan();
    return [...this.withVersions].every((name) => this.serving.has(name) || this.selectionOf(name).kind === 'unloaded');
  }

  /** Turns /ready off so load balancers stop sending traffic while the server drains. */
  beginShutdown(): void {
    this.advance('draining');
  }

  /** True from beginShutdown() on: replies should close their connections. */
  get draining(): boolean {
    return this.stage !== 'serving';
  }

  status(): ModelStatus[] {
    const names = new Set([...this.discover(), ...this.serving.keys()]);
    return [...names].sort().map((name) => this.statusOf(name));
  }

  statusOf(name: string): ModelStatus {
    const model = this.serving.get(name);
    const state = this.states.get(name);
    const selection = this.selectionOf(name);
    const versions = this.versions(name);
    return {
      name,
      serving: model
        ? {
            version: model.version,
            loaded_at: model.loadedAt.toISOString(),
            load_seconds: Number(model.loadSeconds.toFixed(4)),
            objectives: model.objectives,
            max_length: model.spec.maxLength,
            pad_id: model.spec.padId,
            pad_id_source: model.spec.padIdSource,
            padding_side: model.spec.paddingSide,
            batching: {
              max_batch_size: model.batching.maxBatchSize,
              max_batch_tokens: model.batching.maxBatchTokens,
              calibrated: model.batching.calibrated,
              ...(model.batching.calibrationSeconds === undefined ? {} : { calibration_seconds: Number(model.batching.calibrationSeconds.toFixed(3)) }),
            },
            instances: model.layout.instances,
            solo_threads: model.layout.soloThreads,
            intra_op_threads: model.layout.intraOpThreads,
            ...(model.soloPlacement === undefined
              ? {}
              : {
                  solo_placement: {
                    main_thread: model.soloPlacement.mainThread,
                    ...(model.soloPlacement.maxTokens === undefined ? {} : { max_tokens: model.soloPlacement.maxTokens }),
                    reason: model.soloPlacement.reason,
                  },
                }),
            ...(model.layout.auto === undefined ? {} : { layout_rule: model.layout.auto }),
            ...(model.spec.manifest?.metrics ? { metrics: model.spec.manifest.metrics } : {}),
          }
        : null,
      versions,
      newest: versions.at(-1) ?? null,
      pinned: selection.kind === 'pinned' ? selection.version : null,
      previous: state?.previous?.version ?? null,
      loading: state?.loading ?? null,
      unloaded: selection.kind === 'unloaded',
      last_error: state?.lastFailure?.message ?? null,
      last_failure: state?.lastFailure ?? null,
    };
  }

  /** Releases every version once its queued work is done; loads still running are released when they finish. */
  async close(): Promise<void> {
    this.advance('closed');
    const models = [...this.serving.values()];
    this.serving.clear();
    await Promise.all(models.map((m) => m.release(0)));
  }

  // ---- internals -------------------------------------------------------------------------

  private state(name: string): ModelState {
    let state = this.states.get(name);
    if (state === undefined) {
      state = { selection: { kind: 'newest' }, previous: undefined, lastFailure: undefined, loading: undefined, lock: Promise.resolve(), infoVersions: [] };
      this.states.set(name, state);
    }
    return state;
  }

  private assertKnown(name: string): void {
    if (!this.serving.has(name) && !this.discover().includes(name)) throw unknownModel(name);
  }

  private withLock<T>(name: string, task: () => Promise<T>): Promise<T> {
    const state = this.state(name);
    const run = state.lock.then(task);
    state.lock = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** The folder of `<name>/<version>`, refusing names that would leave the model's folder. */
  private resolveVersion(name: string, version: string): VersionRef {
    if (version.length === 0 || version === '.' || version === '..' || /[/\\\0]/.test(version)) {
      throw new ScoringError('invalid_version', 400, `"${version}" is not a version name`);
    }
    const flat = join(this.root, name);
    if (version === '0' && existsSync(join(flat, 'model.onnx'))) return { version, dir: flat };
    const dir = join(flat, version);
    if (!existsSync(dir)) throw versionNotFound(name, version);
    // A version folder may be a link, but not to somewhere outside the models root.
    this.assertInsideRoot(dir, version);
    return { version, dir };
  }

  /**
   * A model folder named by path: relative paths are taken from the models root. After resolving
   * links it must lie inside the root. Its version is its folder name when it sits in
   * <root>/<name>/, else its path relative to the root.
   */
  private resolvePath(name: string, path: string): VersionRef {
    if (path.includes('\0')) throw pathOutsideRoot(path);
    const root = realpathSync(this.root);
    const requested = isAbsolute(path) ? path : resolve(root, path);
    if (!isInside(root, resolve(requested)) && !isInside(resolve(this.root), resolve(requested))) throw pathOutsideRoot(path);
    let real: string;
    try {
      real = realpathSync(requested);
    } catch {
      throw new ScoringError('version_not_found', 404, `"${path}" does not exist`);
    }
    if (!isInside(root, real) || real === root) throw pathOutsideRoot(path);
    if (!isDirectory(real)) throw new ScoringError('invalid_path', 400, `"${path}" is not a folder`);
    const rel = relative(root, real);
    const parts = rel.split(sep);
    if (parts[0] === name && parts.length === 1) return { version: '0', dir: real };
    if (parts[0] === name && parts.length === 2) return { version: parts[1] as string, dir: real };
    return { version: parts.join('/'), dir: real };
  }

  private assertInsideRoot(dir: string, shown: string): void {
    let real: string;
    try {
      real = realpathSync(dir);
    } catch {
      throw new ScoringError('version_not_found', 404, `"${shown}" does not exist`);
    }
    if (!isInside(realpathSync(this.root), real)) throw pathOutsideRoot(shown);
  }

  /** Records a refused load (metrics, status, log) and returns the error to throw. */
  private refuse(name: string, version: string, source: LoadSource, message: string, cause?: unknown): ScoringError {
    const state = this.state(name);
    state.lastFailure = failure(version, message, source);
    this.metrics.modelLoads.inc({ model: name, result: 'failure' });
    const serving = this.serving.get(name);
    this.log(`refused ${name}@${version} (${source}): ${message}${serving ? `; ${serving.id} keeps serving` : ''}`);
    return cause instanceof ScoringError ? cause : new ScoringError('model_load_failed', 422, message);
  }

  /** Load → validate → warm (ModelVersion.load), then the atomic switch. Runs under the model's lock. */
  private async swap(name: string, ref: VersionRef, options: { pin: boolean; source: LoadSource }): Promise<ModelVersion> {
    const state = this.state(name);
    state.loading = ref.version;
    let loaded: ModelVersion;
    try {
      loaded = await ModelVersion.load(name, ref.version, ref.dir, this.options);
    } catch (err) {
      throw this.refuse(name, ref.version, options.source, (err as Error).message, err);
    } finally {
      state.loading = undefined;
    }
    if (this.stage === 'closed') {
      await loaded.release(0);
      throw new ScoringError('shutting_down', 503, 'the server is shutting down');
    }
    // The switch: one synchronous step, so every request sees either the old or the new version.
    const previous = this.serving.get(name);
    this.serving.set(name, loaded);
    const at = performance.now();
    state.selection = options.pin ? { kind: 'pinned', version: ref.version } : { kind: 'newest' };
    // A failure stays visible until that version or a newer one serves (not when an older one fills in).
    if (state.lastFailure !== undefined && byVersion(state.lastFailure.version, loaded.version) <= 0) state.lastFailure = undefined;
    if (previous !== undefined && previous.dir !== loaded.dir) state.previous = { version: previous.version, dir: previous.dir };
    this.metrics.modelLoads.inc({ model: name, result: 'success' });
    this.flipInfo(name, state, loaded.version);
    this.emit({ model: name, version: loaded.version, previous: previous?.version ?? null, source: options.source, at });
    this.log(`${loaded.id} serves (${options.source}, loaded in ${loaded.loadSeconds.toFixed(3)} s${previous ? `, replacing ${previous.version}` : ''})`);
    if (loaded.layout.auto !== undefined) this.log(`${loaded.id}: --instances auto: ${loaded.layout.auto}`);
    if (loaded.soloPlacement !== undefined) this.log(`${loaded.id}: ${loaded.soloPlacement.reason}`);
    if (previous !== undefined) {
      void previous.release().catch((err: Error) => this.log(`releasing ${previous.id} failed: ${err.message}`));
    }
    return loaded;
  }

  /** model_info: 1 for the serving version, 0 for the one it replaced; older series are dropped. */
  private flipInfo(name: string, state: ModelState, version: string): void {
    const shown = [version, ...state.infoVersions.filter((v) => v !== version)];
    for (const old of shown.slice(2)) this.metrics.modelInfo.remove({ model: name, version: old });
    state.infoVersions = shown.slice(0, 2);
    for (const v of state.infoVersions) this.metrics.modelInfo.set({ model: name, version: v }, v === version ? 1 : 0);
  }

  private emit(event: SwapEvent): void {
    for (const listener of this.swapListeners) listener(event);
  }
}

function failure(version: string, message: string, source: LoadSource): LoadFailure {
  return { version, message, at: new Date().toISOString(), source };
}

export { isCompleteVersion };

