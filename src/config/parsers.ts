// Parsers of option values (commander argParsers), for flags and environment variables alike.
// They throw commander's InvalidArgumentError: commander then prints one line naming the option
// (and the variable, when the value came from one) and exits 1 before the command runs. A plain
// Error would escape parseAsync as an uncaught exception with a stack trace.
import { InvalidArgumentError } from 'commander';

/** A non-negative integer (serve's counts, sizes and milliseconds); empty is refused, not 0 (`RMSERVE_MAX_QUEUE=` would refuse every item). */
export const nonNegativeInt = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  return n;
};

/** `--instances`: a positive count, or `auto` (src/scoring/session-layout.ts chooses per version). */
export const instanceCount = (value: string): number | 'auto' => {
  if (value.trim() === 'auto') return 'auto';
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer or auto, got "${value}"`);
  return n;
};

/** A nice value a process may set without privilege: 0 (unchanged) to 19 (lowest). */
export const niceValue = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 19) throw new InvalidArgumentError(`expected a nice value from 0 to 19, got "${value}"`);
  return n;
};

/** A TCP port, 0 (any free port) to 65535. */
export const tcpPort = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`expected a TCP port (0-65535), got "${value}"`);
  return n;
};

/** A number in [0, 1] that must be written out (an empty value is refused). */
export const unitInterval = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in [0, 1], got "${value}"`);
  return n;
};

/** A number in [0, 1] (--max-padding-ratio). */
export const ratio = (value: string): number => {
  const r = Number(value);
  if (!(r >= 0 && r <= 1)) throw new InvalidArgumentError(`expected a number in [0, 1], got "${value}"`);
  return r;
};

/** An integer >= min (train's sizes and step counts). */
export const intAtLeast = (min: number) => (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, got "${value}"`);
  return n;
};

/** A number in [min, max] (train's rates and coefficients). */
export const numberIn = (min: number, max = Number.POSITIVE_INFINITY) => (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !(n >= min && n <= max)) {
    throw new InvalidArgumentError(`expected a number ${max === Number.POSITIVE_INFINITY ? `>= ${min}` : `in [${min}, ${max}]`}, got "${value}"`);
  }
  return n;
};

/** An integer >= 1 (eval's counts). */
export const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
};

/** `--split 0.8,0.1,0.1` → { train, validation, test }. */
export const splitFractions = (value: string): { train: number; validation: number; test: number } => {
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !(p >= 0)) || Math.abs(parts[0]! + parts[1]! + parts[2]! - 1) > 1e-9) {
    throw new InvalidArgumentError(`expected three fractions TRAIN,VALIDATION,TEST summing to 1, got "${value}"`);
  }
  const [train, validation, test] = parts as [number, number, number];
  return { train, validation, test };
};

/** `--default-model a,b` → ['a', 'b']. */
export const commaList = (value: string): string[] => value.split(',').map((s) => s.trim()).filter(Boolean);

/** `--pin a=3 --pin b=7` (or RMSERVE_PIN="a=3,b=7") → { a: '3', b: '7' }. */
export function pins(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const out = { ...previous };
  for (const pair of commaList(value)) {
    const [name, version, ...rest] = pair.split('=');
    if (!name || !version || rest.length > 0) throw new InvalidArgumentError(`expected name=version, got "${pair}"`);
    out[name] = version;
  }
  return out;
}
