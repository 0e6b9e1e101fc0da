// Options declared once. Each command has one table (src/config/<command>.ts) whose entries hold
// everything about an option: its flag, environment variable, parser, default and help text, and,
// by its key (its path in nested groups), the config field it sets. From that table come
//   - the commander options (addOptions), so --help shows the same flag, env var and default;
//   - the typed config (ConfigOf), derived from the table's literal type, so a new entry is a new
//     typed field with no interface to edit;
//   - the config value at run time (readOptions, defaultsOf);
//   - the README's tables (src/config/markdown.ts, `npm run docs:options`, checked by a test).
// Adding an option is one table entry (docs/design.md, "Adding an option").
import { Option, type Command } from 'commander';

export interface OptionSpec {
  /** commander's flags: `--max-queue <n>` (a value), `--data <files...>` (a list), `--ort-spinning`, `--no-watch` (booleans). */
  readonly flags: string;
  /** one line for --help and the README */
  readonly help: string;
  /** environment variable read when the flag is absent */
  readonly env?: string;
  /** turns the text of the flag or env var into the config value; `previous` is the last value (repeatable flags) */
  readonly parse?: (value: string, previous: never) => unknown;
  readonly choices?: readonly string[];
  /** the value without the flag; --help and the README show it */
  readonly default?: unknown;
  /** what --help shows instead of the default value (for values whose JSON reads badly) */
  readonly defaultHelp?: string;
  /** the value without the flag where --help shows none (an empty map, off for a switch) */
  readonly fallback?: unknown;
  /**
   * `unset`: an empty value (`RMSERVE_API_KEY=`) counts as none, so the config says unset rather
   * than holding an empty secret that only truthiness checks keep from being a token.
   */
  readonly empty?: 'unset';
  /** commander refuses to run without it */
  readonly required?: true;
  /** `command`: read by the command itself (listen address, shutdown, logging), not a field of the config it builds */
  readonly scope?: 'command';
  /** README only: the default column in words, and a link */
  readonly docs?: { readonly default?: string; readonly see?: string };
}

/** A command's options: entries, or groups of entries that become nested config objects. */
export interface OptionTable {
  readonly [key: string]: OptionSpec | OptionTable;
}

// ---- the config type, from the table's literal type (declare tables `as const satisfies OptionTable`)

type Simplify<T> = { [K in keyof T]: T[K] } & {};

// What commander yields for a flag without a parser: a list, a string, or a switch.
type FlagValue<F> = F extends `${string}...>` | `${string}...]` ? string[] : F extends `${string}<${string}` | `${string}[${string}` ? string : boolean;

type Parsed<S> = S extends { parse: (...args: never[]) => infer R }
  ? R
  : S extends { choices: readonly (infer C)[] }
    ? C
    : S extends { flags: infer F }
      ? FlagValue<F>
      : never;

// Always set: a default, a fallback, a mandatory flag, or a `--no-` switch (commander defaults those to true).
type AlwaysSet<S> = S extends { default: unknown } | { fallback: unknown } | { required: true } | { flags: `--no-${string}` } ? true : false;

/** The config value of one entry. */
export type ValueOf<S> = AlwaysSet<S> extends true ? Parsed<S> : Parsed<S> | undefined;

type IsSpec<E> = E extends { flags: string } ? true : false;
type ConfigKeys<T> = { [K in keyof T]: T[K] extends { scope: 'command' } ? never : K }[keyof T];
type OptionalKeys<T> = { [K in ConfigKeys<T>]: IsSpec<T[K]> extends true ? (undefined extends ValueOf<T[K]> ? K : never) : never }[ConfigKeys<T>];
type Value<E> = IsSpec<E> extends true ? ValueOf<E> : ConfigOf<E>;

/** The config a table sets: one field per entry (optional where the entry may be unset), one object per group. */
export type ConfigOf<T> = Simplify<
  { -readonly [K in Exclude<ConfigKeys<T>, OptionalKeys<T>>]: Value<T[K]> } & { -readonly [K in OptionalKeys<T>]?: Exclude<Value<T[K]>, undefined> }
>;

/** The values of a table's `scope: 'command'` entries (top level only). */
export type CommandOf<T> = Simplify<{ -readonly [K in keyof T as T[K] extends { scope: 'command' } ? K : never]: ValueOf<T[K]> }>;

/** ConfigOf without the mandatory top-level entries: what defaults alone can fill. */
export type DefaultsOf<T> = ConfigOf<{ [K in keyof T as T[K] extends { required: true } ? never : K]: T[K] }>;

// ---- run time

export interface OptionEntry {
  /** the config path: ['rewardDefaults', 'transform'] */
  path: string[];
  spec: OptionSpec;
}

function isSpec(entry: OptionSpec | OptionTable): entry is OptionSpec {
  return typeof entry.flags === 'string' && typeof entry.help === 'string';
}

/** Every entry of a table, depth first in declaration order (the order of --help and the README). */
export function optionEntries(table: OptionTable, prefix: string[] = []): OptionEntry[] {
  return Object.entries(table).flatMap(([key, entry]) =>
    isSpec(entry) ? [{ path: [...prefix, key], spec: entry }] : optionEntries(entry, [...prefix, key]));
}

/** The commander Option of an entry. */
export function commanderOption(spec: OptionSpec): Option {
  const option = new Option(spec.flags, spec.help);
  if (spec.env !== undefined) option.env(spec.env);
  if (spec.choices !== undefined) option.choices(spec.choices);
  if (spec.default !== undefined) option.default(spec.default, spec.defaultHelp);
  // Commander hands a parser the value it returned last time, which is of the parser's own type.
  if (spec.parse !== undefined) option.argParser(spec.parse as (value: string, previous: unknown) => unknown);
  if (spec.required) option.makeOptionMandatory();
  return option;
}

/** Adds a table's options to a command, in table order. */
export function addOptions(command: Command, table: OptionTable): Command {
  for (const { spec } of optionEntries(table)) command.addOption(commanderOption(spec));
  return command;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    node[key] ??= {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function valueOf(spec: OptionSpec, given: unknown): unknown {
  if (given !== undefined && !(given === '' && spec.empty === 'unset')) return given;
  if (spec.default !== undefined) return spec.default;
  if (spec.fallback !== undefined) return spec.fallback;
  return spec.flags.startsWith('--no-') ? true : undefined;
}

// Unset entries get no key at all (not `key: undefined`): spreading the config over defaults then
// keeps the defaults, and the objects compare and serialise as they did when written by hand.
function build(table: OptionTable, given: (entry: OptionEntry) => unknown, keep: (spec: OptionSpec) => boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const entry of optionEntries(table)) {
    if (!keep(entry.spec)) continue;
    const value = valueOf(entry.spec, given(entry));
    if (value !== undefined) setPath(out, entry.path, value);
  }
  return out;
}

/**
 * The config and the command's own values from commander's parsed options (`command.opts()`).
 * The table's type is the contract here: commander's values are untyped, and each one is what the
 * entry's parser, choices or flag kind produce, which is what ValueOf says.
 */
export function readOptions<T extends OptionTable>(table: T, parsed: Record<string, unknown>): { config: ConfigOf<T>; command: CommandOf<T> } {
  const given = ({ spec }: OptionEntry): unknown => parsed[commanderOption(spec).attributeName()];
  const config = build(table, given, (spec) => spec.scope !== 'command') as ConfigOf<T>;
  const command: Record<string, unknown> = {};
  for (const entry of optionEntries(table)) {
    if (entry.spec.scope === 'command') command[entry.path.join('.')] = valueOf(entry.spec, given(entry));
  }
  return { config, command: command as CommandOf<T> };
}

/** The config with nothing given: every default and fallback (mandatory entries are left out). */
export function defaultsOf<T extends OptionTable>(table: T): DefaultsOf<T> {
  return build(table, () => undefined, (spec) => spec.scope !== 'command' && !spec.required) as DefaultsOf<T>;
}
