// The split is a pure function of the prompt's sha256: deterministic, order-independent, and
// never separates the pairs of one prompt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promptKey, readPreferenceFile, type PreferencePair } from '../src/training/data.js';
import { promptUnit, splitByPrompt } from '../src/training/split.js';

const FRACTIONS = { train: 0.8, validation: 0.1, test: 0.1 };

function splitOf(splits: ReturnType<typeof splitByPrompt<PreferencePair>>): Map<string, string> {
  const where = new Map<string, string>();
  for (const name of ['train', 'validation', 'test'] as const) {
    for (const pair of splits[name]) {
      const key = promptKey(pair.prompt);
      const seen = where.get(key);
      assert.ok(seen === undefined || seen === name, `prompt split across ${seen} and ${name}`);
      where.set(key, name);
    }
  }
  return where;
}

test('promptKey is canonical JSON of [role, content] and promptUnit is its sha256 in [0, 1)', () => {
  const prompt = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'Hi "there"' },
  ];
  assert.equal(promptKey(prompt), '[["system","Be brief."],["user","Hi \\"there\\""]]');
  const hex = createHash('sha256').update('[["system","Be brief."],["user","Hi \\"there\\""]]').digest('hex');
  assert.equal(promptUnit(prompt), parseInt(hex.slice(0, 12), 16) / 2 ** 48);
  assert.notEqual(promptKey([{ role: 'user', content: 'a' }]), promptKey([{ role: 'assistant', content: 'a' }]));
});

test('AlpacaEval: all pairs of an instruction land in one split, in any input order', () => {
  const pairs = readPreferenceFile('data/alpaca-eval/gpt4-judgments.jsonl.gz');
  const splits = splitByPrompt(pairs, FRACTIONS);
  assert.equal(splits.train.length + splits.validation.length + splits.test.length, pairs.length);
  const where = splitOf(splits);
  assert.equal(where.size, 805, 'README: 805 distinct instructions');
  // Reversing the input changes no prompt's split and keeps input order within a split.
  const reversed = splitByPrompt([...pairs].reverse(), FRACTIONS);
  assert.deepEqual(splitOf(reversed), where);
  assert.deepEqual(reversed.test.map((p) => p.id), [...splits.test].reverse().map((p) => p.id));
});

test('HH: the 80/10/10 split is close to its fractions and the same on every call', () => {
  const pairs = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz');
  const splits = splitByPrompt(pairs, FRACTIONS);
  const n = pairs.length;
  // Binomial standard deviation at n = 2312 is under 1%; 3% is a broken hash, not bad luck.
  assert.ok(Math.abs(splits.train.length / n - 0.8) < 0.03, `train ${splits.train.length}`);
  assert.ok(Math.abs(splits.validation.length / n - 0.1) < 0.03, `validation ${splits.validation.length}`);
  assert.ok(Math.abs(splits.test.length / n - 0.1) < 0.03, `test ${splits.test.length}`);
  for (const pair of splits.test) assert.ok(promptUnit(pair.prompt) >= 0.9);
  const again = splitByPrompt(readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz'), FRACTIONS);
  assert.deepEqual(again.test.map((p) => p.id), splits.test.map((p) => p.id));
});

test('degenerate and invalid fractions', () => {
  const pairs = [{ prompt: [{ role: 'user' as const, content: 'a' }] }, { prompt: [{ role: 'user' as const, content: 'b' }] }];
  assert.equal(splitByPrompt(pairs, { train: 1, validation: 0, test: 0 }).train.length, 2);
  assert.equal(splitByPrompt(pairs, { train: 0, validation: 0, test: 1 }).test.length, 2);
  assert.throws(() => splitByPrompt(pairs, { train: 0.8, validation: 0.1, test: 0.2 }), /sum to 1/);
  assert.throws(() => splitByPrompt(pairs, { train: 1.1, validation: -0.1, test: 0 }), /validation must be a finite number >= 0/);
  assert.throws(() => splitByPrompt(pairs, { train: Number.NaN, validation: 0.5, test: 0.5 }), /train/);
});
