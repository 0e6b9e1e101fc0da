// Which version of each model serves. Layout: <root>/<name>/<version>/ (complete once its
// rmserve.json or READY marker exists) or a flat <root>/<name>/ holding model.onnx directly
// (a plain Hugging Face / optimum export), served as version "0".
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RmserveMetrics } from '../metrics.js';
import { unknownModel } from './errors.js';
import { ModelVersion, type LoadOptions } from './model-version.js';

export interface ModelStatus {
  name: string;
  serving: { version: string; loaded_at: string; objectives: string[]; max_length: number; metrics?: Record<string, unknown> } | null;
  versions: string[];
  last_error: string | null;
}

const byVersion = new Intl.Collator('en', { numeric: true }).compare;

export class ModelRegistry {
  private readonly serving = new Map<string, ModelVersion>();
  private readonly lastError = new Map<string, string>();

  constructor(
    readonly root: string,
    private readonly options: LoadOptions,
  ) {}

  private get metrics(): RmserveMetrics {
    return this.options.metrics;
  }

  /** Model names found under the root. */
  discover(): string[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root)
      .filter((entry) => !entry.startsWith('.') && statSync(join(this.root, entry)).isDirectory())
      .sort();
  }

  /** Complete versions of a model, oldest first. */
  versions(name: string): string[] {
    const dir = join(this.root, name);
    if (existsSync(join(dir, 'model.onnx'))) return ['0'];
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((v) => {
        const path = join(dir, v);
        return (
          statSync(path).isDirectory() &&
          existsSync(join(path, 'model.onnx')) &&
          (existsSync(join(path, 'rmserve.json')) || existsSync(join(path, 'READY')))
        );
      })
      .sort(byVersion);
  }

  /** Loads the newest complete version of every model under the root; failures are logged and kept. */
  async loadAll(log: (message: string) => void = () => {}): Promise<void> {
    for (const name of this.discover()) {
      const newest = this.versions(name).at(-1);
      if (newest === undefined) {
        this.lastError.set(name, 'no complete version (model.onnx with rmserve.json or READY)');
        continue;
      }
      try {
        await this.load(name, newest);
        log(`loaded ${name}@${newest}`);
      } catch (err) {
        log(`failed to load ${name}@${newest}: ${(err as Error).message}`);
      }
    }
  }

  /** Loads, validates and warms a version, then makes it the one that serves. */
  async load(name: string, version: string): Promise<ModelVersion> {
    const dir = version === '0' && existsSync(join(this.root, name, 'model.onnx')) ? join(this.root, name) : join(this.root, name, version);
    let loaded: ModelVersion;
    try {
      loaded = await ModelVersion.load(name, version, dir, this.options);
    } catch (err) {
      this.metrics.modelLoads.inc({ model: name, result: 'failure' });
      this.lastError.set(name, (err as Error).message);
      throw err;
    }
    const previous = this.serving.get(name);
    this.serving.set(name, loaded);
    this.lastError.delete(name);
    this.metrics.modelLoads.inc({ model: name, result: 'success' });
    this.metrics.modelInfo.set({ model: name, version }, 1);
    if (previous !== undefined && previous !== loaded) {
      this.metrics.modelInfo.set({ model: name, version: previous.version }, 0);
      void previous.release();
    }
    return loaded;
  }

  /** The version serving `name` right now; requests pin it for their whole life. */
  get(name: string): ModelVersion {
    const model = this.serving.get(name);
    if (model === undefined) throw unknownModel(name);
    return model;
  }

  names(): string[] {
    return [...this.serving.keys()].sort();
  }

  get ready(): boolean {
    return this.serving.size > 0;
  }

  status(): ModelStatus[] {
    const names = new Set([...this.discover(), ...this.serving.keys()]);
    return [...names].sort().map((name) => {
      const model = this.serving.get(name);
      return {
        name,
        serving: model
          ? {
              version: model.version,
              loaded_at: model.loadedAt.toISOString(),
              objectives: model.objectives,
              max_length: model.spec.maxLength,
              ...(model.spec.manifest?.metrics ? { metrics: model.spec.manifest.metrics } : {}),
            }
          : null,
        versions: this.versions(name),
        last_error: this.lastError.get(name) ?? null,
      };
    });
  }

  async close(): Promise<void> {
    const models = [...this.serving.values()];
    this.serving.clear();
    await Promise.all(models.map((m) => m.release()));
  }
}
