// The preference readers on the real files in data/ (counts from data/README.md) and on small
// in-code fixtures of the other shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  formatReadStats,
  pairId,
  parsePreferenceRecords,
  readPreferenceFile,
  readPreferenceFileWithStats,
  recordToPair,
  renderHHTranscript,
  type PreferencePair,
} from '../src/training/data.js';
import { readRecords } from '../src/training/data/files.js';

const HH = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const ALPACA = 'data/alpaca-eval/gpt4-judgments.jsonl.gz';
const PANDALM = 'data/pandalm/testset-v1.json';

type Raw = Record<string, unknown>;

function keep(record: unknown): PreferencePair {
  const result = recordToPair(record, 'fixture.jsonl');
  assert.ok('pair' in result, `dropped: ${JSON.stringify(result)}`);
  return result.pair;
}

function dropReason(record: unknown): string {
  const result = recordToPair(record, 'fixture.jsonl');
  assert.ok('dropped' in result, 'expected the record to be dropped');
  return result.dropped;
}

test('HH-RLHF harmless test: 2,312 pairs, and re-rendering reproduces every transcript byte for byte', () => {
  const { pairs, stats } = readPreferenceFileWithStats(HH);
  const raw = readRecords(HH).records as Raw[];
  assert.equal(stats.records, 2312);
  assert.equal(stats.kept, 2312);
  assert.deepEqual(stats.formats, { hh_rlhf: 2312 });
  assert.deepEqual(stats.dropped, {});
  let responsesWithMarker = 0;
  pairs.forEach((pair, i) => {
    assert.equal(renderHHTranscript(pair.prompt, pair.chosen), raw[i]!.chosen, `chosen of record ${i}`);
    assert.equal(renderHHTranscript(pair.prompt, pair.rejected), raw[i]!.rejected, `rejected of record ${i}`);
    assert.equal(pair.prompt[0]!.role, 'user');
    assert.equal(pair.prompt.at(-1)!.role, 'user');
    assert.equal(pair.source, 'harmless-base-test.jsonl.gz');
    assert.match(pair.id, /^[0-9a-f]{16}$/);
    if (`${pair.chosen}${pair.rejected}`.includes('\n\nAssistant:')) responsesWithMarker++;
  });
  // A few responses contain "\n\nAssistant:" themselves; splitting each transcript at its own
  // last marker would give those pairs different prompts.
  assert.ok(responsesWithMarker > 0);
  // The first record, by hand: two user turns answered, the last assistant turn differs.
  assert.equal(pairs[0]!.prompt.length, 5);
  assert.equal(pairs[0]!.prompt[0]!.content, 'what are some pranks with a pen i can do?');
  assert.equal(pairs[0]!.prompt[1]!.content, 'Are you looking for practical joke ideas?');
  assert.equal(pairs[0]!.prompt[4]!.content, 'okay some of these do not have anything to do with pens');
  assert.ok(pairs[0]!.chosen.startsWith('No, sorry!  All of these involve a pen'));
  assert.ok(pairs[0]!.rejected.startsWith('There are lots of funny things'));
  assert.deepEqual(readPreferenceFile(HH).map((p) => p.id), pairs.map((p) => p.id), 'ids are stable across reads');
});

test('AlpacaEval GPT-4 judgments: 12,777 pairs, the preferred output is chosen', () => {
  const { pairs, stats } = readPreferenceFileWithStats(ALPACA);
  const raw = readRecords(ALPACA).records as Raw[];
  assert.equal(stats.kept, 12777);
  assert.deepEqual(stats.dropped, {});
  let prefersFirst = 0;
  pairs.forEach((pair, i) => {
    const r = raw[i]!;
    const first = r.preference === 1;
    if (first) prefersFirst++;
    assert.equal(pair.chosen, first ? r.output_1 : r.output_2);
    assert.equal(pair.rejected, first ? r.output_2 : r.output_1);
    assert.deepEqual(pair.prompt, [{ role: 'user', content: r.instruction }]);
  });
  // README: output_2 preferred in 78%.
  assert.equal(Math.round((100 * (pairs.length - prefersFirst)) / pairs.length), 78);
});

test('PandaLM test set: majority vote keeps 422 + 472 pairs and drops 105 ties', () => {
  const { pairs, stats } = readPreferenceFileWithStats(PANDALM);
  assert.equal(stats.records, 999);
  assert.equal(stats.kept, 894);
  assert.deepEqual(stats.dropped, { tie: 105 });
  const raw = readRecords(PANDALM).records as Raw[];
  const text = (x: unknown): string => (x === true ? 'True' : String(x));
  let first = 0;
  let second = 0;
  for (const r of raw) {
    const votes = [r.annotator1, r.annotator2, r.annotator3].map(Number);
    const count = (v: number): number => votes.filter((x) => x === v).length;
    const result = recordToPair(r, 'testset-v1.json');
    if (count(1) >= 2 || count(2) >= 2) {
      assert.ok('pair' in result);
      const expected = count(1) >= 2 ? [r.response1, r.response2] : [r.response2, r.response1];
      assert.deepEqual([result.pair.chosen, result.pair.rejected], expected.map(text));
      if (count(1) >= 2) first++;
      else second++;
    } else {
      assert.ok('dropped' in result);
    }
  }
  assert.equal(first, 422);
  assert.equal(second, 472);
  // Instruction and non-empty input are joined by a blank line.
  const withInput = raw.find((r) => r.input !== '' && Number(r.annotator1) === 2 && Number(r.annotator2) === 2)!;
  assert.ok(pairs.some((p) => p.prompt[0]!.content === `${withInput.instruction}\n\n${withInput.input}`));
  assert.match(formatReadStats(stats), /^testset-v1\.json: 999 records, kept 894 \(pandalm 894\), dropped 105 \(tie 105\)$/);
});

test('prompt/chosen/rejected strings with margin and objective (RewardBench, TRL standard)', () => {
  const pair = keep({ prompt: 'Hi?', chosen: 'Hello!', rejected: 'Go away.', margin: 2, objective: 'helpful', subset: 'x' });
  assert.deepEqual(pair.prompt, [{ role: 'user', content: 'Hi?' }]);
  assert.equal(pair.chosen, 'Hello!');
  assert.equal(pair.rejected, 'Go away.');
  assert.equal(pair.margin, 2);
  assert.equal(pair.objective, 'helpful');
  assert.equal(pair.source, 'fixture.jsonl');
  assert.equal(pair.id, pairId(pair.prompt, 'Hello!', 'Go away.'));
  assert.notEqual(pair.id, pairId(pair.prompt, 'Go away.', 'Hello!'));
  assert.equal(keep({ prompt: 'Hi?', chosen: 'a', rejected: 'b', margin: null }).margin, undefined);
});

test('TRL conversational shapes: implicit prompt, explicit prompt, prompt repeated inside the lists', () => {
  const sys = { role: 'system', content: 'Be brief.' };
  const user = { role: 'user', content: 'What is 2+2?' };
  const implicit = keep({
    chosen: [sys, user, { role: 'assistant', content: '4' }],
    rejected: [sys, user, { role: 'assistant', content: '5' }],
  });
  assert.deepEqual(implicit.prompt, [sys, user]);
  assert.equal(implicit.chosen, '4');
  assert.equal(implicit.rejected, '5');

  const explicit = keep({ prompt: [sys, user], chosen: [{ role: 'assistant', content: '4' }], rejected: [{ role: 'assistant', content: '5' }] });
  assert.deepEqual(explicit.prompt, [sys, user]);
  assert.equal(explicit.id, implicit.id, 'the same pair in two shapes has one id');

  // UltraFeedback-binarized: prompt string and the same user turn inside chosen/rejected.
  const repeated = keep({
    prompt: user.content,
    chosen: [user, { role: 'assistant', content: '4' }],
    rejected: [user, { role: 'assistant', content: '5' }],
  });
  assert.deepEqual(repeated.prompt, [user]);

  const mixed = keep({ prompt: [user], chosen: '4', rejected: '5' });
  assert.deepEqual(mixed.prompt, [user]);
  const stats = parsePreferenceRecords([{ prompt: [user], chosen: '4', rejected: '5' }, { prompt: 'q', chosen: 'a', rejected: 'b' }], 'x.jsonl').stats;
  assert.deepEqual(stats.formats, { messages: 1, prompt_chosen_rejected: 1 });
});

test('HH prompts in prompt/chosen/rejected form lose the marker space like transcripts do', () => {
  const pair = keep({ prompt: '\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant:', chosen: ' Sure.', rejected: ' No.' });
  assert.deepEqual(pair.prompt, [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'hello' },
    { role: 'user', content: 'and?' },
  ]);
  assert.equal(pair.chosen, 'Sure.');
  const transcript = keep({ chosen: '\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: Sure.', rejected: '\n\nHuman: hi\n\nAssistant: hello\n\nHuman: and?\n\nAssistant: No.' });
  assert.equal(transcript.id, pair.id);
});

test('pairwise judgments: instruction + input, preference 1 | 2, ties dropped', () => {
  const base = { instruction: 'Translate.', input: 'Bonjour', output_1: 'Hello', output_2: 'Goodbye' };
  const one = keep({ ...base, preference: 1 });
  assert.deepEqual(one.prompt, [{ role: 'user', content: 'Translate.\n\nBonjour' }]);
  assert.equal(one.chosen, 'Hello');
  assert.equal(one.rejected, 'Goodbye');
  const two = keep({ ...base, input: '', preference: '2' });
  assert.deepEqual(two.prompt, [{ role: 'user', content: 'Translate.' }]);
  assert.equal(two.chosen, 'Goodbye');
  assert.equal(dropReason({ ...base, preference: 1.5 }), 'tie');
  assert.equal(dropReason({ ...base, preference: 0 }), 'tie');
  assert.equal(dropReason({ ...base, preference: null }), 'tie');
  assert.equal(dropReason({ ...base, output_2: 'Hello', preference: 1 }), 'identical_responses');
});

test('PandaLM votes: strict majority, mixed strings and ints, ties and splits dropped', () => {
  const base = { instruction: 'Sum.', input: '1 2', response1: '3', response2: '12' };
  assert.equal(keep({ ...base, annotator1: '1', annotator2: 1, annotator3: 2 }).chosen, '3');
  assert.equal(keep({ ...base, annotator1: 2, annotator2: '2', annotator3: '0' }).chosen, '12');
  assert.equal(keep({ ...base, response1: true, annotator1: 1, annotator2: 1, annotator3: 1 }).chosen, 'True');
  assert.equal(dropReason({ ...base, annotator1: 0, annotator2: '0', annotator3: 1 }), 'tie');
  assert.equal(dropReason({ ...base, annotator1: 0, annotator2: 1, annotator3: 2 }), 'no_majority');
  assert.equal(dropReason({ ...base, annotator1: 1, annotator2: 1, annotator3: 'maybe' }), 'malformed');
});

test('malformed records are counted by reason, never thrown', () => {
  const cases: Array<[unknown, string]> = [
    [42, 'not_an_object'],
    [['a'], 'not_an_object'],
    [{ text: 'hello' }, 'unknown_format'],
    [{ prompt: 'q', chosen: 'same', rejected: 'same' }, 'identical_responses'],
    [{ prompt: 'q', chosen: 'a', rejected: 7 }, 'malformed'],
    [{ prompt: 'q', chosen: 'a', rejected: 'b', margin: 'big' }, 'malformed'],
    [{ prompt: 'q', chosen: 'a', rejected: 'b', objective: 3 }, 'malformed'],
    [{ prompt: [{ role: 'tool', content: 'x' }], chosen: 'a', rejected: 'b' }, 'malformed'],
    [{ chosen: [{ role: 'user', content: 'q' }], rejected: [{ role: 'user', content: 'q' }] }, 'malformed'],
    [{ chosen: 'a', rejected: 'b' }, 'missing_prompt'],
    [{ chosen: [{ role: 'assistant', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] }, 'missing_prompt'],
    [
      {
        chosen: [{ role: 'user', content: 'q1' }, { role: 'assistant', content: 'a' }],
        rejected: [{ role: 'user', content: 'q2' }, { role: 'assistant', content: 'b' }],
      },
      'prompt_mismatch',
    ],
    [{ chosen: '\n\nHuman: a\n\nAssistant: b', rejected: '\n\nHuman: c\n\nAssistant: d' }, 'hh_unparseable'],
    [{ chosen: '\n\nHuman: a\n\nAssistant: b', rejected: '\n\nHuman: a\n\nAssistant: b' }, 'identical_responses'],
  ];
  for (const [record, reason] of cases) assert.equal(dropReason(record), reason, JSON.stringify(record));
  const { pairs, stats } = parsePreferenceRecords([...cases.map(([r]) => r), { prompt: 'q', chosen: 'a', rejected: 'b' }], 'mixed.jsonl');
  assert.equal(pairs.length, 1);
  assert.equal(stats.records, cases.length + 1);
  assert.equal(stats.kept, 1);
  assert.equal(stats.dropped.malformed, 5);
  assert.equal(stats.dropped.not_an_object, 2);
});

test('file shapes: .jsonl with blank lines, .json, .gz of either; a line that is not JSON and unreadable files throw', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-data-'));
  try {
    const records = [
      { prompt: 'q1', chosen: 'a', rejected: 'b' },
      { prompt: 'q2', chosen: 'c', rejected: 'd' },
    ];
    const jsonl = `${JSON.stringify(records[0])}\n\n${JSON.stringify(records[1])}\n`;
    writeFileSync(join(dir, 'p.jsonl'), jsonl);
    writeFileSync(join(dir, 'p.jsonl.gz'), gzipSync(jsonl));
    writeFileSync(join(dir, 'p.json'), `\uFEFF${JSON.stringify(records)}`);
    writeFileSync(join(dir, 'p.json.gz'), gzipSync(JSON.stringify(records)));
    for (const name of ['p.jsonl', 'p.jsonl.gz']) {
      const { pairs, stats, lines } = readPreferenceFileWithStats(join(dir, name));
      assert.deepEqual(pairs.map((p) => p.chosen), ['a', 'c']);
      assert.equal(pairs[0]!.source, name);
      assert.deepEqual(stats.dropped, {});
      assert.equal(stats.records, 2);
      assert.deepEqual(lines, [1, 3]);
    }
    // A line that does not parse is an error at its line, not a silently smaller data set.
    const broken = `${JSON.stringify(records[0])}\n\n{not json\n${JSON.stringify(records[1])}\n`;
    writeFileSync(join(dir, 'broken.jsonl'), broken);
    writeFileSync(join(dir, 'broken.jsonl.gz'), gzipSync(broken));
    for (const name of ['broken.jsonl', 'broken.jsonl.gz']) {
      assert.throws(() => readPreferenceFile(join(dir, name)), (err: Error) => err.message.startsWith(`${join(dir, name)}:3: not valid JSON`));
    }
    for (const name of ['p.json', 'p.json.gz']) assert.deepEqual(readPreferenceFile(join(dir, name)).map((p) => p.rejected), ['b', 'd']);
    writeFileSync(join(dir, 'obj.json'), '{"data": []}');
    writeFileSync(join(dir, 'bad.json'), '[{');
    writeFileSync(join(dir, 'p.csv'), 'a,b');
    assert.throws(() => readPreferenceFile(join(dir, 'obj.json')), /expected a JSON array/);
    assert.throws(() => readPreferenceFile(join(dir, 'bad.json')), /not valid JSON/);
    assert.throws(() => readPreferenceFile(join(dir, 'p.csv')), /unsupported data file/);
    assert.throws(() => readPreferenceFile(join(dir, 'missing.jsonl')), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
