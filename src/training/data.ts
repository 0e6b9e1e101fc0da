// Preference data readers for the trainer: every supported file shape becomes PreferencePair[]
// (see data/records.ts for the shapes), with counts of what was kept and dropped and why.
import { basename } from 'node:path';
import { readRecords } from './data/files.js';
import { recordToPair, type Dropped } from './data/records.js';
import type { DropReason, PreferencePair, ReadStats } from './data/types.js';

export type { ChatMessage, ChatRole, DropReason, PreferencePair, ReadStats, RecordFormat } from './data/types.js';
export { pairId, promptKey } from './data/keys.js';
export { parseHHPair, parseHHTurns, renderHHTranscript } from './data/hh.js';
export { recordToPair } from './data/records.js';

export interface PreferenceFile {
  pairs: PreferencePair[];
  stats: ReadStats;
  /** the line (1-based; for a .json array, the line its element starts on) of each pair */
  lines: number[];
  /** the lines of the dropped records, by reason */
  droppedLines: Partial<Record<DropReason, number[]>>;
}

// A record of none of the known shapes, or with a field of the wrong type, means the file is not
// what the user thinks it is (a misnamed column, another data set's schema): skipping it would
// train on whatever rows happen to fit, so a file with one is refused.
const SCHEMA_ERRORS: ReadonlySet<DropReason> = new Set(['not_an_object', 'unknown_format', 'malformed', 'missing_prompt']);

export function isSchemaError(reason: DropReason): boolean {
  return SCHEMA_ERRORS.has(reason);
}

interface Parsed extends PreferenceFile {
  firstSchemaError?: { line: number; drop: Dropped };
}

function parse(records: readonly unknown[], source: string, lines: readonly number[]): Parsed {
  const stats: ReadStats = { source, records: records.length, kept: 0, formats: {}, dropped: {} };
  const out: Parsed = { pairs: [], stats, lines: [], droppedLines: {} };
  records.forEach((record, i) => {
    const line = lines[i] ?? i + 1;
    const result = recordToPair(record, source);
    if ('dropped' in result) {
      stats.dropped[result.dropped] = (stats.dropped[result.dropped] ?? 0) + 1;
      (out.droppedLines[result.dropped] ??= []).push(line);
      if (out.firstSchemaError === undefined && isSchemaError(result.dropped)) out.firstSchemaError = { line, drop: result };
    } else {
      out.pairs.push(result.pair);
      out.lines.push(line);
      stats.formats[result.format] = (stats.formats[result.format] ?? 0) + 1;
    }
  });
  stats.kept = out.pairs.length;
  return out;
}

/** Records already in memory: every bad record is counted in `stats.dropped`, none throws. */
export function parsePreferenceRecords(records: readonly unknown[], source: string): PreferenceFile {
  const { firstSchemaError: _, ...file } = parse(records, source, records.map((_r, i) => i + 1));
  return file;
}

// The first few lines of each kind of skipped record, for the log: enough to find them.
export function formatDroppedLines(file: Pick<PreferenceFile, 'droppedLines'>, shown = 5): string {
  return Object.entries(file.droppedLines)
    .map(([reason, lines]) => {
      const more = lines.length > shown ? ` and ${lines.length - shown} more` : '';
      return `${reason} at line${lines.length > 1 ? 's' : ''} ${lines.slice(0, shown).join(', ')}${more}`;
    })
    .join('; ');
}

// Throws, with file:line and the field, when the file cannot be read whole (missing, wrong
// extension, not JSON, truncated), holds a record that is not a preference record, or yields no
// pair at all. Records that are preference records without a usable preference (ties, identical
// responses) are skipped and counted in `stats.dropped`, their lines in `droppedLines`.
export function readPreferenceFileWithStats(path: string): PreferenceFile {
  const { records, lines } = readRecords(path);
  const { firstSchemaError, ...file } = parse(records, basename(path), lines);
  if (firstSchemaError !== undefined) {
    const { line, drop } = firstSchemaError;
    const others = [...SCHEMA_ERRORS].reduce((n, r) => n + (file.stats.dropped[r] ?? 0), 0) - 1;
    throw new Error(`${path}:${line}: ${drop.detail ?? drop.dropped}${others > 0 ? ` (and ${others} more bad record${others > 1 ? 's' : ''} in the file)` : ''}`);
  }
  if (file.pairs.length === 0) {
    throw new Error(`${path}: no usable preference pairs in ${file.stats.records} record${file.stats.records > 1 ? 's' : ''}: ${formatDroppedLines(file)}`);
  }
  return file;
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
