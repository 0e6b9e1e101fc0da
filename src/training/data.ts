// Preference data readers for the trainer: every supported file shape becomes PreferencePair[]
// (see data/records.ts for the shapes), with counts of what was kept and dropped and why.
import { basename } from 'node:path';
import { readRecords } from './data/files.js';
import { recordToPair } from './data/records.js';
import type { DropReason, PreferencePair, ReadStats } from './data/types.js';

export type { ChatMessage, ChatRole, DropReason, PreferencePair, ReadStats, RecordFormat } from './data/types.js';
export { pairId, promptKey } from './data/keys.js';
export { parseHHPair, parseHHTurns, renderHHTranscript } from './data/hh.js';
export { recordToPair } from './data/records.js';

export interface PreferenceFile {
  pairs: PreferencePair[];
  stats: ReadStats;
}

export function parsePreferenceRecords(records: readonly unknown[], source: string, invalidLines = 0): PreferenceFile {
  const stats: ReadStats = { source, records: records.length + invalidLines, kept: 0, formats: {}, dropped: {} };
  const drop = (reason: DropReason, n = 1): void => {
    if (n > 0) stats.dropped[reason] = (stats.dropped[reason] ?? 0) + n;
  };
  drop('invalid_json', invalidLines);
  const pairs: PreferencePair[] = [];
  for (const record of records) {
    const result = recordToPair(record, source);
    if ('dropped' in result) {
      drop(result.dropped);
    } else {
      pairs.push(result.pair);
      stats.formats[result.format] = (stats.formats[result.format] ?? 0) + 1;
    }
  }
  stats.kept = pairs.length;
  return { pairs, stats };
}

// Throws only when the file itself is unreadable (missing, wrong extension, not JSON);
// bad records are counted in `stats.dropped`.
export function readPreferenceFileWithStats(path: string): PreferenceFile {
  const { records, invalidLines } = readRecords(path);
  return parsePreferenceRecords(records, basename(path), invalidLines);
}

export function readPreferenceFile(path: string): PreferencePair[] {
  return readPreferenceFileWithStats(path).pairs;
}

// One line for the CLI: "harmless-base-test.jsonl.gz: 2312 records, kept 2312 (hh_rlhf 2312), dropped 0".
export function formatReadStats(stats: ReadStats): string {
  const list = (counts: Partial<Record<string, number>>): string =>
    Object.entries(counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const dropped = Object.values(stats.dropped).reduce((s, v) => s + (v ?? 0), 0);
  const formats = list(stats.formats);
  return `${stats.source}: ${stats.records} records, kept ${stats.kept}${formats ? ` (${formats})` : ''}, dropped ${dropped}${dropped > 0 ? ` (${list(stats.dropped)})` : ''}`;
}
