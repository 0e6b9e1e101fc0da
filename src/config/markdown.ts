// The README's option tables, generated from the commands' tables: `npm run docs:options` writes
// them between marker comments, and test/readme-options.test.ts fails when the README is stale.
import { optionEntries, type OptionSpec, type OptionTable } from './options.js';
import { EVAL_OPTIONS } from './eval.js';
import { REPORT_OPTIONS } from './report.js';
import { SERVE_OPTIONS } from './serve.js';
import { TRAIN_OPTIONS } from './train.js';

/** Each command's table, by the name in its README markers (`<!-- options:serve -->`). */
export const COMMAND_TABLES: Readonly<Record<string, OptionTable>> = {
  serve: SERVE_OPTIONS,
  train: TRAIN_OPTIONS,
  eval: EVAL_OPTIONS,
  report: REPORT_OPTIONS,
};

// Help text in a table cell: `|` would end the cell and `<name>` would vanish as an HTML tag
// (code spans, between backticks, show `<` as it is and keep it).
const cell = (text: string): string =>
  text
    .split('`')
    .map((part, i) => (i % 2 === 1 ? part : part.replaceAll('<', '&lt;').replaceAll('>', '&gt;')))
    .join('`')
    .replaceAll('|', '\\|')
    .replaceAll('\n', ' ');
const code = (text: string): string => `\`${text}\``;

function defaultCell(spec: OptionSpec): string {
  if (spec.docs?.default !== undefined) return cell(spec.docs.default);
  if (spec.required) return 'required';
  const value = spec.default ?? spec.fallback;
  if (spec.defaultHelp !== undefined) return code(spec.defaultHelp);
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'string' || typeof value === 'number') return code(String(value));
  if (value !== undefined) return code(JSON.stringify(value));
  return spec.flags.startsWith('--no-') ? 'on' : '–';
}

/** One row per option in table order: flag, env var (when any option has one), default, config key, meaning. */
export function optionsMarkdown(table: OptionTable): string {
  const entries = optionEntries(table);
  const withEnv = entries.some(({ spec }) => spec.env !== undefined);
  const header = ['flag', ...(withEnv ? ['env'] : []), 'default', 'config key', 'meaning'];
  const rows = entries.map(({ path, spec }) => [
    code(spec.flags),
    ...(withEnv ? [spec.env === undefined ? '–' : code(spec.env)] : []),
    defaultCell(spec),
    spec.scope === 'command' ? '(command)' : code(path.join('.')),
    cell(spec.help) + (spec.docs?.see === undefined ? '' : ` (${spec.docs.see})`),
  ]);
  return [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

const markers = (name: string): { start: string; end: string } => ({ start: `<!-- options:${name} -->`, end: `<!-- /options:${name} -->` });

/** `text` with every command's block regenerated; a block whose markers are missing is an error. */
export function withOptionTables(text: string): string {
  let out = text;
  for (const [name, table] of Object.entries(COMMAND_TABLES)) {
    const { start, end } = markers(name);
    const from = out.indexOf(start);
    const to = out.indexOf(end);
    if (from < 0 || to < from) throw new Error(`README.md has no ${start} … ${end} block`);
    out = `${out.slice(0, from + start.length)}\n${optionsMarkdown(table)}\n${out.slice(to)}`;
  }
  return out;
}

/** The text between a command's markers, as the README has it. */
export function optionBlock(text: string, name: string): string {
  const { start, end } = markers(name);
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  return from < 0 || to < from ? '' : text.slice(from + start.length, to);
}
