// Records from .json (an array), .jsonl (one record per line) and .gz of either. A JSONL line
// that does not parse is counted, not fatal: one bad line should not cost a training run.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';

export interface RawRecords {
  records: unknown[];
  invalidLines: number;
}

export function readRecords(path: string): RawRecords {
  const name = basename(path).toLowerCase();
  const gz = name.endsWith('.gz');
  const inner = gz ? name.slice(0, -3) : name;
  if (!inner.endsWith('.json') && !inner.endsWith('.jsonl')) {
    throw new Error(`unsupported data file ${path}: expected .json, .jsonl, or either with .gz`);
  }
  const bytes = readFileSync(path);
  const text = (gz ? gunzipSync(bytes) : bytes).toString('utf8').replace(/^\uFEFF/, '');

  if (inner.endsWith('.json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new Error(`${path}: expected a JSON array of records`);
    return { records: parsed, invalidLines: 0 };
  }

  const records: unknown[] = [];
  let invalidLines = 0;
  for (const line of text.split('\n')) {
    if (line.trim().length === 0) continue;
    try {
      records.push(JSON.parse(line));
    } catch {
      invalidLines++;
    }
  }
  return { records, invalidLines };
}
