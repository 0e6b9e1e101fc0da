// Bad trainer input fails before any training step, with one line that names the file, the line
// and the field: through the readers for every kind of fault, and through `rmserve train` run as
// a child process for the faults a user meets first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readPreferenceFileWithStats } from '../src/training/data.js';
import { arrayElementLines } from '../src/training/data/files.js';
import { promptUnit } from '../src/training/split.js';

const HH = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const BERT = 'data/tokenizers/bert-base-uncased/tokenizer.json';
const TINY = ['--vocab-size', '300', '--d-model', '16', '--layers', '1', '--heads', '2', '--max-length', '32', '--batch-size', '8',
  '--threads', '1', '--no-report', '--no-progress'];

const dir = mkdtempSync(join(tmpdir(), 'rmserve-bad-input-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

const jsonl = (records: readonly unknown[]): string => records.map((r) => JSON.stringify(r)).join('\n') + '\n';
const good = (i: number): Record<string, unknown> => ({ prompt: `question ${i}`, chosen: `a good answer ${i}`, rejected: `bad ${i}` });

function readError(path: string): string {
  try {
    readPreferenceFileWithStats(path);
  } catch (err) {
    const message = (err as Error).message;
    assert.ok(!message.includes('\n'), `one line: ${JSON.stringify(message)}`);
    return message;
  }
  assert.fail(`${path} was read without an error`);
}

interface Run { code: number | null; stdout: string; stderr: string }

function train(args: readonly string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'train', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

// The run stopped with exit 1 and one error line, and no step ran: nothing was logged for a step
// and no checkpoint exists.
function assertRefused(r: Run, ckpt: string, message: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('rmserve train: '));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, message);
  assert.equal(r.stderr.trimEnd().split('\n').at(-1), errors[0], 'the error is the last thing printed');
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /^step \d+/m, 'no training step ran');
  assert.ok(!existsSync(join(ckpt, 'last.safetensors')), 'no checkpoint was written');
}

test('a truncated gzip names the file and the line where it breaks off; a .gz that is not gzip says so', () => {
  const whole = readFileSync(HH);
  const path = write('cut.jsonl.gz', whole.subarray(0, Math.floor(whole.length / 2)));
  assert.match(readError(path), new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: the gzip data is cut off or corrupt after line \\d+ \\(unexpected end of file\\)`));
  const line = Number(/:(\d+):/.exec(readError(path))![1]);
  assert.ok(line > 100 && line < 2312, `the break is about half way through the 2312 lines: ${line}`);
  assert.match(readError(write('plain.jsonl.gz', jsonl([good(1)]))), /plain\.jsonl\.gz: not gzip data \(incorrect header check\)/);
});

test('empty files are errors, not zero pairs', () => {
  for (const [name, content] of [['empty.jsonl', ''], ['blank.jsonl', '\n \n\n'], ['empty.json', '[]'], ['empty.jsonl.gz', gzipSync('')]] as const) {
    assert.match(readError(write(name, content)), new RegExp(`${name.replace('.', '\\.')}: the (file|JSON array) is empty`), name);
  }
});

test('a JSONL line that is not JSON is an error at its line', () => {
  const path = write('bad-line.jsonl', `${JSON.stringify(good(1))}\n\n${JSON.stringify(good(2))}\n{"prompt": "q", "chosen": "a",\n`);
  assert.match(readError(path), /bad-line\.jsonl:4: not valid JSON/);
  // A plain file cut off mid-record fails the same way, at its last line.
  const cut = jsonl([good(1), good(2), good(3)]);
  assert.match(readError(write('cut.jsonl', cut.slice(0, -10))), /cut\.jsonl:3: not valid JSON/);
});

test('missing, misnamed and mistyped fields name the file, the line and the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ prompt: 'q', choosen: 'a', rejected: 'b' }, /:2: missing field "chosen" \(the record has "prompt", "choosen", "rejected"\)/],
    [{ prompt: 'q', chosen: 'a' }, /:2: missing field "rejected"/],
    [{ prompt: 'q', chosen: 'a', rejected: 7 }, /:2: field "rejected" is a number \(7\); expected a string or a list of/],
    [{ prompt: 'q', chosen: null, rejected: 'b' }, /:2: field "chosen" is null/],
    [{ chosen: 'a', rejected: 'b' }, /:2: field "prompt" is missing/],
    [{ prompt: '', chosen: 'a', rejected: 'b' }, /:2: field "prompt" is empty/],
    [{ prompt: [{ role: 'tool', content: 'x' }], chosen: 'a', rejected: 'b' }, /:2: field "prompt\[0\]\.role" is "tool"; expected "system", "user" or "assistant"/],
    [{ prompt: [{ role: 'user' }], chosen: 'a', rejected: 'b' }, /:2: field "prompt\[0\]\.content" is missing; expected a string/],
    [{ chosen: [{ role: 'user', content: 'q' }], rejected: [{ role: 'assistant', content: 'b' }] }, /:2: field "chosen" ends with a "user" message/],
    [{ prompt: 'q', chosen: 'a', rejected: 'b', margin: 'big' }, /:2: field "margin" is a string; expected a finite number/],
    [{ prompt: 'q', chosen: 'a', rejected: 'b', objective: 3 }, /:2: field "objective" is a number \(3\); expected a string/],
    [{ instruction: 'i', output_1: 'a', output_2: ['b'], preference: 1 }, /:2: field "output_2" is a list; expected a string/],
    [{ instruction: 'i', output_1: 'a', preference: 1 }, /:2: missing field "output_2"/],
    [{ instruction: 'i', response1: 'a', response2: 'b', annotator1: 1, annotator2: 'maybe' }, /:2: field "annotator2" is "maybe"; expected 0 \(tie\), 1 or 2/],
    [{ text: 'hello' }, /:2: missing fields "chosen" and "rejected" .*the record has "text"/],
    [['a', 'b'], /:2: the record is a list; expected a JSON object/],
  ];
  cases.forEach(([record, message], i) => {
    const name = `field-${i}.jsonl`;
    const error = readError(write(name, jsonl([good(1), record, good(3)])));
    assert.match(error, message, `${JSON.stringify(record)}: ${error}`);
    assert.ok(error.startsWith(join(dir, name)), error);
  });
  // Every bad record is counted, the first one is named.
  assert.match(readError(write('many.jsonl', jsonl([good(1), { prompt: 'q', chosen: 'a' }, { x: 1 }, { y: 2 }]))), /many\.jsonl:2: missing field "rejected" .*\(and 2 more bad records in the file\)$/);
});

test('a .json array names the line its bad element starts on', () => {
  const records = [good(1), good(2), { prompt: 'q', chosen: 'a', rejected: { text: 'b' } }, good(4)];
  const text = JSON.stringify(records, null, 2);
  const line = text.split('\n').findIndex((l, i, all) => l.trim() === '{' && all[i + 1]!.includes('"q"')) + 1;
  assert.match(readError(write('array.json', text)), new RegExp(`array\\.json:${line}: field "rejected" is an object`));
  // Brackets and commas inside strings do not count as structure.
  assert.deepEqual(arrayElementLines('[\n "a,]",\n {"b": "[{\\"x"},\n\n 3]'), [2, 3, 5]);
});

test('records without a usable preference are skipped with their lines; a file of nothing but those is an error', () => {
  const path = write('ties.jsonl', jsonl([
    good(1),
    { prompt: 'q', chosen: 'same', rejected: 'same' },
    { instruction: 'i', output_1: 'a', output_2: 'b', preference: 1.5 },
    good(4),
  ]));
  const file = readPreferenceFileWithStats(path);
  assert.deepEqual(file.lines, [1, 4]);
  assert.deepEqual(file.droppedLines, { identical_responses: [2], tie: [3] });

  const none = write('all-ties.jsonl', jsonl([{ prompt: 'q', chosen: 'same', rejected: 'same' }, { instruction: 'i', output_1: 'a', output_2: 'b', preference: 0 }]));
  assert.match(readError(none), /all-ties\.jsonl: no usable preference pairs in 2 records: identical_responses at line 1; tie at line 2$/);
});

test('rmserve train refuses bad files with one line naming file, line and field, before any step', async () => {
  const whole = readFileSync(HH);
  const cut = write('hh-cut.jsonl.gz', whole.subarray(0, 200_000));
  const typo = write('typo.jsonl', jsonl([good(1), good(2), { prompt: 'q', chosen: 'a', rejected: 7 }, good(4)]));
  const ties = write('cli-ties.jsonl', jsonl(Array.from({ length: 20 }, (_, i) => ({ prompt: `q${i}`, chosen: 'same', rejected: 'same' }))));
  // One prompt whose hash puts it outside the training split: pairs, but none to train on.
  const heldOut = Array.from({ length: 50 }, (_, i) => `question ${i}`).find((p) => promptUnit([{ role: 'user', content: p }]) >= 0.8)!;
  const oneHeldOut = write('held-out.jsonl', jsonl(Array.from({ length: 6 }, (_, i) => ({ prompt: heldOut, chosen: `yes ${i}`, rejected: `no ${i}` }))));
  // BERT's normalizer deletes control characters: a response of only those is no tokens at all.
  const vanishing = write('vanishing.jsonl', jsonl(Array.from({ length: 40 }, (_, i) => (i === 4 ? { ...good(i), chosen: '\u0007\u0007' } : good(i)))));

  const cases: Array<[string[], RegExp]> = [
    [['--data', cut], new RegExp(`rmserve train: ${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: the gzip data is cut off`)],
    [['--data', typo], /rmserve train: .*typo\.jsonl:3: field "rejected" is a number \(7\)/],
    [['--data', ties], /rmserve train: .*cli-ties\.jsonl: no usable preference pairs in 20 records: identical_responses at lines 1, 2, 3, 4, 5 and 15 more$/],
    [['--data', oneHeldOut], /rmserve train: no training pairs: the split by prompt \(--split 0\.8,0\.1,0\.1\) puts all 6 pairs \(1 distinct prompt\) in validation and test/],
    [['--data', vanishing, '--tokenizer', BERT], /rmserve train: .*vanishing\.jsonl:5: field "chosen" is not empty but tokenizes to nothing with --tokenizer /],
  ];
  // Spawned together: each child spends most of its time starting up.
  const runs = await Promise.all(cases.map(([args], i) => train([...args, '--out', join(dir, 'cli', String(i), 'models', 'm', '1'), '--checkpoint-dir', join(dir, 'cli', String(i), 'ckpt'), '--steps', '3', ...TINY])));
  runs.forEach((r, i) => {
    assertRefused(r, join(dir, 'cli', String(i), 'ckpt'), cases[i]![1]);
    assert.doesNotMatch(r.stderr, /numObjectives/);
  });
});

test('--resume with options that differ from the checkpoint\'s is refused, naming each option', async () => {
  const data = write('resume.jsonl', jsonl(Array.from({ length: 60 }, (_, i) => good(i))));
  const root = join(dir, 'resume');
  const ckpt = join(root, 'ckpt');
  const args = ['--data', data, '--out', join(root, 'models', 'm', '1'), '--checkpoint-dir', ckpt, ...TINY];
  const first = await train([...args, '--steps', '2', '--seed', '1', '--lr', '0.003']);
  assert.equal(first.code, 0, first.stderr);
  const log = readFileSync(join(ckpt, 'train-metrics.jsonl'), 'utf8');
  const checkpoint = readFileSync(join(ckpt, 'last.safetensors'));

  const r = await train([...args, '--steps', '2', '--seed', '2', '--lr', '0.001', '--resume', join(ckpt, 'last.safetensors')]);
  assert.equal(r.code, 1, r.stderr);
  const error = r.stderr.trimEnd().split('\n').at(-1)!;
  assert.match(error, /^rmserve train: --resume .*last\.safetensors: the checkpoint was written with --seed 1 \(this run: 2\), --lr 0\.003 \(this run: 0\.001\); resume with the options of the run it continues/);
  assert.doesNotMatch(r.stderr, /^step \d+/m);
  assert.equal(readFileSync(join(ckpt, 'train-metrics.jsonl'), 'utf8'), log, 'a refused resume leaves the log alone');
  assert.ok(readFileSync(join(ckpt, 'last.safetensors')).equals(checkpoint), 'and the checkpoint');

  const data2 = write('resume-other.jsonl', jsonl(Array.from({ length: 60 }, (_, i) => good(i + 1))));
  const other = await train([...args.map((a) => (a === data ? data2 : a)), '--steps', '2', '--seed', '1', '--lr', '0.003', '--resume', join(ckpt, 'last.safetensors')]);
  assert.equal(other.code, 1, other.stderr);
  assert.match(other.stderr.trimEnd().split('\n').at(-1)!, /the checkpoint was written with --data \["resume\.jsonl \(sha256 [0-9a-f]{12}\)"\] \(this run: \["resume-other\.jsonl/);
});
