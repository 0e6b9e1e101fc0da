// Reads the trainer's metrics log: JSONL, one MetricsRow per line. A run killed mid-write leaves
// a torn last line, so unparsable lines are skipped and counted rather than fatal.
import { readFileSync } from 'node:fs';
import type { MetricsRow } from './types.js';

export interface MetricsLog {
  rows: MetricsRow[];
  /** Lines that were not JSON objects with a numeric `step` and a string `split`. */
  skipped: number;
}

export function parseMetricsLog(text: string): MetricsLog {
  const rows: MetricsRow[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    if (isMetricsRow(value)) rows.push(value);
    else skipped++;
  }
  return { rows, skipped };
}

export function readMetricsLog(path: string): MetricsLog {
  return parseMetricsLog(readFileSync(path, 'utf8'));
}

function isMetricsRow(value: unknown): value is MetricsRow {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const row = value as Record<string, unknown>;
  return typeof row.step === 'number' && Number.isFinite(row.step) && typeof row.split === 'string';
}

/** The numeric value of `field` in a row, or NaN (absent, null, or not a number). */
export function numberField(row: MetricsRow, field: string): number {
  const v = row[field];
  return typeof v === 'number' ? v : Number.NaN;
}
