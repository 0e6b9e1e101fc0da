// Deterministic train/validation/test split by prompt: the split of a pair is a function of
// sha256(promptKey(prompt)) alone, so every pair of one prompt lands in the same split, the
// same prompt lands in the same split in every run and on every machine, and adding files
// never moves existing prompts. No randomness, no seed.
import { createHash } from 'node:crypto';
import { promptKey } from './data/keys.js';
import type { ChatMessage } from './data/types.js';

export interface SplitFractions {
  train: number;
  validation: number;
  test: number;
}

export interface Splits<T> {
  train: T[];
  validation: T[];
  test: T[];
}

// The first 48 bits of the hash as a number in [0, 1): uniform, and exact in a double.
export function promptUnit(prompt: readonly ChatMessage[]): number {
  return createHash('sha256').update(promptKey(prompt)).digest().readUIntBE(0, 6) / 2 ** 48;
}

export function splitByPrompt<T extends { prompt: readonly ChatMessage[] }>(pairs: readonly T[], fractions: SplitFractions): Splits<T> {
  const { train, validation, test } = fractions;
  for (const [name, f] of Object.entries(fractions)) {
    if (!Number.isFinite(f) || f < 0) throw new RangeError(`split fraction ${name} must be a finite number >= 0, got ${f}`);
  }
  if (Math.abs(train + validation + test - 1) > 1e-9) {
    throw new RangeError(`split fractions must sum to 1, got ${train} + ${validation} + ${test}`);
  }
  const out: Splits<T> = { train: [], validation: [], test: [] };
  const units = new Map<string, number>();
  for (const pair of pairs) {
    const key = promptKey(pair.prompt);
    let u = units.get(key);
    if (u === undefined) {
      u = promptUnit(pair.prompt);
      units.set(key, u);
    }
    if (u < train) out.train.push(pair);
    else if (u < train + validation) out.validation.push(pair);
    else out.test.push(pair);
  }
  return out;
}
