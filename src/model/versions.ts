// The on-disk layout of a model's versions, and when a version folder counts as complete:
// <root>/<name>/<version>/ holding model.onnx and a marker (rmserve.json or READY) written last,
// or a flat <root>/<name>/ holding model.onnx directly (a plain Hugging Face / optimum export),
// served as version "0". Shared by the registry (what may load), the watch (what changed) and
// the folder writer (what to write last).
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';

/** Files whose presence marks a version folder complete; the writer puts them there last. */
export const COMPLETE_MARKERS = ['rmserve.json', 'READY'] as const;

/** Version names in numeric order ("2" before "10"). */
export const byVersion = new Intl.Collator('en', { numeric: true }).compare;

/** A version folder is complete when model.onnx and a marker (written last) are there. */
export function isCompleteVersion(dir: string): boolean {
  return isDirectory(dir) && existsSync(join(dir, 'model.onnx')) && COMPLETE_MARKERS.some((m) => existsSync(join(dir, m)));
}

/** A flat export: model.onnx directly in the model's folder. */
export function isFlatModel(modelDir: string): boolean {
  return existsSync(join(modelDir, 'model.onnx'));
}

/**
 * Complete versions under `modelDir`, oldest first. Neither the model's folder nor a version
 * folder may be a link to somewhere outside `root` (the admin API refuses such paths too).
 */
export function listVersions(root: string, modelDir: string): string[] {
  const realRoot = realpathOrUndefined(root);
  const realModel = realpathOrUndefined(modelDir);
  if (realRoot === undefined || realModel === undefined || !isInside(realRoot, realModel)) return [];
  if (isFlatModel(modelDir)) return ['0'];
  if (!isDirectory(modelDir)) return [];
  return listDir(modelDir)
    .filter((v) => {
      if (v.startsWith('.') || !isCompleteVersion(join(modelDir, v))) return false;
      const real = realpathOrUndefined(join(modelDir, v)); // undefined when deleted meanwhile
      return real !== undefined && isInside(realRoot, real);
    })
    .sort(byVersion);
}

/**
 * Names, sizes and modification times of the files under `dir` (two levels deep): what tells a
 * folder that settled from one being written, and a version from another written under its name.
 */
export function folderFingerprint(dir: string, depth = 2): string {
  const parts: string[] = [];
  for (const entry of listDir(dir).sort()) {
    const path = join(dir, entry);
    try {
      const stat = statSync(path);
      if (stat.isDirectory()) {
        if (depth > 0) parts.push(`${entry}/[${folderFingerprint(path, depth - 1)}]`);
      } else {
        parts.push(`${entry}:${stat.size}:${stat.mtimeMs}:${stat.ino}`);
      }
    } catch {
      parts.push(`${entry}:gone`);
    }
  }
  return parts.join(',');
}

export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Entries of a folder; none when it does not exist (any more). */
export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function realpathOrUndefined(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}
