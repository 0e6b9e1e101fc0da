// Records from .json (an array), .jsonl (one record per line) and .gz of either, each with the
// line it starts on, so a bad record can be reported as file:line. A file that cannot be read
// whole (truncated gzip, a JSONL line that does not parse, no records at all) is an error:
// training on what happens to parse would quietly train on a different data set.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { constants, gunzipSync } from 'node:zlib';

export interface RawRecords {
  records: unknown[];
  /** 1-based line on which each record starts */
  lines: number[];
}

function linesIn(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

function gunzip(path: string, bytes: Buffer): Buffer {
  try {
    return gunzipSync(bytes);
  } catch (err) {
    // A sync flush returns what decompresses before the damage, so the message can say where
    // the file stops being readable; a file that is not gzip at all fails this too.
    let partial: Buffer;
    try {
      partial = gunzipSync(bytes, { finishFlush: constants.Z_SYNC_FLUSH });
    } catch {
      throw new Error(`${path}: not gzip data (${(err as Error).message})`);
    }
    const complete = linesIn(partial.toString('utf8'));
    throw new Error(`${path}:${complete + 1}: the gzip data is cut off or corrupt after line ${complete} (${(err as Error).message}); re-download or re-compress the file`);
  }
}

// JSON.parse gives no positions; this finds the line each top-level array element starts on.
export function arrayElementLines(text: string): number[] {
  const out: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expecting = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === 92) escaped = true;
      else if (c === 34) inString = false;
      continue;
    }
    if (c === 32 || c === 9 || c === 10 || c === 13) continue;
    if (depth === 1 && expecting && c !== 93) {
      out.push(line);
      expecting = false;
    }
    if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      depth++;
      if (depth === 1) expecting = true;
    } else if (c === 93 || c === 125) depth--;
    else if (c === 44 && depth === 1) expecting = true;
  }
  return out;
}

export function readRecords(path: string): RawRecords {
  const name = basename(path).toLowerCase();
  const gz = name.endsWith('.gz');
  const inner = gz ? name.slice(0, -3) : name;
  if (!inner.endsWith('.json') && !inner.endsWith('.jsonl')) {
    throw new Error(`unsupported data file ${path}: expected .json, .jsonl, or either with .gz`);
  }
  const bytes = readFileSync(path);
  const text = (gz ? gunzip(path, bytes) : bytes).toString('utf8').replace(/^\uFEFF/, '');
  if (text.trim().length === 0) throw new Error(`${path}: the file is empty, there are no records to train on`);

  if (inner.endsWith('.json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new Error(`${path}: expected a JSON array of records`);
    if (parsed.length === 0) throw new Error(`${path}: the JSON array is empty, there are no records to train on`);
    const lines = arrayElementLines(text);
    // The scanner and JSON.parse agree on valid JSON; the fallback only guards the reporting.
    return { records: parsed, lines: lines.length === parsed.length ? lines : parsed.map((_, i) => i + 1) };
  }

  const records: unknown[] = [];
  const lines: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim().length === 0) return;
    try {
      records.push(JSON.parse(line));
    } catch (err) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(err as Error).message})`);
    }
    lines.push(i + 1);
  });
  return { records, lines };
}
