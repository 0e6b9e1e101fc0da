// The one writer of model folders: the trainer's export, the default-model scripts and the test
// fixtures all go through it. A folder is built under a dot-name beside its target (the registry
// and the watch ignore dot-names), its manifest validated, the READY marker written last, and
// then renamed into place, so a reader, or a kill at any moment, sees either the previous folder
// or the complete new one, never a mixture or a folder without its marker.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseManifest, type RmserveManifest } from './manifest.js';

/** What a model folder holds. JSON values are written as JSON; `files` as given. */
export interface ModelFolderContents {
  /** model.onnx */
  onnx: Uint8Array;
  tokenizerJson: unknown;
  tokenizerConfig: Record<string, unknown>;
  config: Record<string, unknown>;
  /** rmserve.json, validated before anything is written; omitted for a plain Hugging Face-style folder. */
  manifest?: unknown;
  /** Other files by name (model.onnx_data, train-metrics.jsonl, …). */
  files?: Readonly<Record<string, string | Uint8Array>>;
  /** Write the READY marker (default true); false leaves a folder the registry treats as incomplete unless it is a flat export. */
  marker?: boolean;
}

/** A folder being built: add files to `dir`, then publish() it at its target, or discard() it. */
export interface StagedModelFolder {
  dir: string;
  manifest: RmserveManifest | undefined;
  publish(): void;
  discard(): void;
}

const STAGING = '.staging-';
const REPLACED = '.replaced-';
export const READY_MARKER = 'READY';

/** Writes a complete model folder at `outDir` (replacing one there) and returns its manifest. */
export function writeModelFolder(outDir: string, contents: ModelFolderContents): RmserveManifest | undefined {
  const staged = stageModelFolder(outDir, contents);
  staged.publish();
  return staged.manifest;
}

/**
 * Builds the folder beside `outDir` without publishing it, for writers that add files that need
 * the model first (the trainer evaluates the staged folder and writes report.html into it).
 */
export function stageModelFolder(outDir: string, contents: ModelFolderContents): StagedModelFolder {
  // Validated first: an invalid manifest writes nothing at all.
  const manifest = contents.manifest === undefined ? undefined : parseManifest(contents.manifest);
  const dir = createStagingFolder(outDir);
  try {
    writeFileSync(join(dir, 'model.onnx'), contents.onnx);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(contents.tokenizerJson));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(contents.tokenizerConfig, null, 2) + '\n');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(contents.config, null, 2) + '\n');
    for (const [name, data] of Object.entries(contents.files ?? {})) writeFileSync(join(dir, name), data);
    if (manifest !== undefined) writeFileSync(join(dir, 'rmserve.json'), JSON.stringify(manifest, null, 2) + '\n');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let done = false;
  return {
    dir,
    manifest,
    publish() {
      if (done) throw new Error(`${outDir}: already published or discarded`);
      done = true;
      try {
        if (contents.marker ?? true) writeFileSync(join(dir, READY_MARKER), ''); // empty: the same contents write byte-identical folders
        publishFolder(dir, outDir);
      } catch (err) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    },
    discard() {
      done = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function siblings(outDir: string, kind: string): string[] {
  const parent = dirname(outDir);
  const prefix = `.${basename(outDir)}${kind}`;
  return existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith(prefix)).map((n) => join(parent, n)) : [];
}

/** Whether the writer whose pid ends `name` still runs (its folder is then not litter). */
function pidAlive(name: string): boolean {
  const pid = Number(name.slice(name.lastIndexOf('-') + 1));
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An empty folder to build a version of `outDir` in, beside it (so the final rename stays on one
 * file system). Tidies up after earlier writers that were killed: their half-built folders go,
 * and a previous version that was moved aside but never replaced is moved back.
 */
function createStagingFolder(outDir: string): string {
  for (const dir of siblings(outDir, STAGING)) if (!pidAlive(dir)) rmSync(dir, { recursive: true, force: true });
  const replaced = siblings(outDir, REPLACED).filter((dir) => !pidAlive(dir));
  if (!existsSync(outDir) && replaced.length > 0) renameSync(replaced[0] as string, outDir);
  for (const dir of siblings(outDir, REPLACED)) if (!pidAlive(dir)) rmSync(dir, { recursive: true, force: true });
  const staging = join(dirname(outDir), `.${basename(outDir)}${STAGING}${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  return staging;
}

/**
 * Puts the finished `staging` folder at `outDir`. With no previous version this is one rename.
 * A previous version is moved aside first (POSIX rename cannot replace a non-empty folder):
 * between the two renames outDir is briefly absent, and a kill there leaves the previous version
 * whole under its aside name, which the next writer moves back.
 */
function publishFolder(staging: string, outDir: string): void {
  if (!existsSync(outDir)) {
    renameSync(staging, outDir);
    return;
  }
  const aside = join(dirname(outDir), `.${basename(outDir)}${REPLACED}${process.pid}`);
  rmSync(aside, { recursive: true, force: true });
  renameSync(outDir, aside);
  try {
    renameSync(staging, outDir);
  } catch (err) {
    renameSync(aside, outDir);
    throw err;
  }
  rmSync(aside, { recursive: true, force: true });
}
