// Watches the models root and has each model serve its newest complete version (Triton's poll
// mode, with fs.watch to react sooner). A folder is loaded only once it is complete (marker
// present) and has settled: its files looked the same for `settleMs`. So a half-written or
// half-copied folder is never loaded; one that fails to load is not retried until it changes.
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { byVersion, folderFingerprint, isDirectory, listDir } from '../model/versions.js';
import type { ModelVersion } from './model-version.js';
import type { ModelRegistry } from './registry.js';

export interface WatchOptions {
  /** How long a complete version folder must stay unchanged before it loads. */
  settleMs: number;
  /** Period of the full rescan; fs.watch events only make scans come sooner. */
  pollMs: number;
  log?: (message: string) => void;
}

export const DEFAULT_WATCH_OPTIONS: WatchOptions = { settleMs: 1000, pollMs: 2000 };

interface Observation {
  fingerprint: string;
  since: number;
}


export class ModelWatcher {
  private readonly seen = new Map<string, Observation>();
  /** Folders whose load failed, with the fingerprint they failed with. */
  private readonly refused = new Map<string, string>();
  private readonly watchers = new Map<string, FSWatcher>();
  /** Loaded versions already reported as serving without their folder. */
  private readonly gone = new Set<string>();
  private pollTimer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private scanning: Promise<void> | undefined;
  private rescan = false;
  private stopped = false;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly options: WatchOptions = DEFAULT_WATCH_OPTIONS,
  ) {}

  start(): void {
    this.pollTimer = setInterval(() => void this.scan(), this.options.pollMs);
    this.pollTimer.unref();
    void this.scan();
  }

  /** Stops watching; resolves after a scan (and the load it started) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.wakeTimer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    await this.scanning;
  }

  /** One pass over the root now (and again if something changed meanwhile). */
  scan(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.scanning !== undefined) {
      this.rescan = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.rescan = false;
        await this.scanOnce();
      } while (this.rescan && !this.stopped);
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    // A full rescan, so /ready's view of the disk is refreshed by the watch too (registry.ready).
    const names = [...this.registry.rescan().keys()];
    this.refreshWatches(names);
    for (const name of names) {
      if (this.stopped) return;
      if (!this.registry.follows(name)) continue;
      const newest = this.registry.newest(name);
      const serving = this.serving(name);
      if (newest === undefined) {
        if (serving !== undefined) this.noteGone(serving);
        continue;
      }
      const dir = this.versionDir(name, newest);
      if (serving !== undefined && !this.registry.supersedes(serving, newest, dir)) {
        if (byVersion(newest, serving.version) < 0) this.noteGone(serving);
        continue;
      }
      const fingerprint = folderFingerprint(dir);
      if (this.refused.get(dir) === fingerprint) continue;
      const now = performance.now();
      const seen = this.seen.get(dir);
      if (seen?.fingerprint !== fingerprint) {
        this.seen.set(dir, { fingerprint, since: now });
        this.wake(now + this.options.settleMs);
        continue;
      }
      if (now - seen.since < this.options.settleMs) {
        this.wake(seen.since + this.options.settleMs);
        continue;
      }
      try {
        await this.registry.followNewest(name, newest);
        this.refused.delete(dir);
        this.seen.delete(dir);
      } catch (err) {
        this.refused.set(dir, fingerprint);
        this.options.log?.(`watch: ${name}@${newest} refused: ${(err as Error).message}`);
      }
    }
  }

  private serving(name: string): ModelVersion | undefined {
    try {
      return this.registry.get(name);
    } catch {
      return undefined;
    }
  }

  private servingVersion(name: string): string | undefined {
    return this.serving(name)?.version;
  }

  /** Says once per loaded version that its folder is gone and it serves from memory. */
  private noteGone(serving: ModelVersion): void {
    if (this.gone.has(serving.key)) return;
    this.gone.add(serving.key);
    this.options.log?.(
      `watch: the folder of ${serving.id} is gone; it keeps serving from memory (load another version to change it)`,
    );
  }

  private versionDir(name: string, version: string): string {
    const flat = join(this.registry.root, name);
    return version === '0' && listDir(flat).includes('model.onnx') ? flat : join(flat, version);
  }

  /** Schedules a scan at `at` (performance.now() time), keeping the earliest one pending. */
  private wake(at: number): void {
    if (this.stopped || at >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeAt = Infinity;
      void this.scan();
    }, Math.max(0, at - performance.now()));
    this.wakeTimer.unref();
  }

  /**
   * fs.watch on the root, each model folder and each version folder newer than the serving one
   * (where a marker is about to appear). Events only bring the next scan forward.
   */
  private refreshWatches(names: string[]): void {
    const wanted = new Set<string>([this.registry.root]);
    for (const name of names) {
      const modelDir = join(this.registry.root, name);
      wanted.add(modelDir);
      const serving = this.servingVersion(name);
      for (const entry of listDir(modelDir)) {
        if (entry.startsWith('.') || (serving !== undefined && byVersion(entry, serving) <= 0)) continue;
        const dir = join(modelDir, entry);
        if (isDirectory(dir)) wanted.add(dir);
      }
    }
    for (const [path, watcher] of this.watchers) {
      if (!wanted.has(path)) {
        watcher.close();
        this.watchers.delete(path);
      }
    }
    for (const path of wanted) {
      if (this.watchers.has(path)) continue;
      try {
        const watcher = watch(path, { persistent: false }, () => this.wake(performance.now() + this.options.settleMs));
        watcher.on('error', () => {
          watcher.close();
          this.watchers.delete(path);
        });
        this.watchers.set(path, watcher);
      } catch {
        // Gone already, or not watchable (some network file systems): the poll still covers it.
      }
    }
  }
}

