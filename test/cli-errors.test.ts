// What the CLI says when it cannot run: a bad flag or environment value, a busy port, a models
// root that is missing or empty is one `error: …` line on stderr and exit status 1, with no stack
// trace, and `serve` says it before any model loads. Also: `eval` defaults to the test split, and
// the progress display (src/commands/progress.ts) in its two modes.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { evalCommand } from '../src/commands/eval.js';
import { Progress, formatSeconds } from '../src/commands/progress.js';
import { EVAL_OPTIONS } from '../src/config/eval.js';
import { readOptions } from '../src/config/options.js';
import { REPO_ROOT, writeBowModel } from './helpers/model-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'rmserve-cli-errors-'));
const models = join(dir, 'models');
const empty = join(dir, 'empty');

before(() => {
  writeBowModel(join(models, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
  mkdirSync(empty);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI from source; resolves with its exit code and output whatever the code. */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr });
    });
  });
}

/** Exit 1 and exactly one line on stderr, matching `line`. */
function assertOneLine(result: { code: number | null; stderr: string }, line: RegExp): void {
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, line);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

describe('bad option values', () => {
  test('a flag: one line naming the option, before anything runs', async () => {
    assertOneLine(await cli(['serve', '--max-queue', '-1']), /^error: option '--max-queue <n>' argument '-1' is invalid\. expected a non-negative integer, got "-1"$/);
    assertOneLine(await cli(['serve', '--port', '70000']), /^error: option '--port <port>' argument '70000' is invalid\. expected a TCP port \(0-65535\)/);
    assertOneLine(await cli(['train', '--data', 'a.jsonl', '--out', join(dir, 'o'), '--lr', 'fast']), /^error: option '--lr <x>' argument 'fast' is invalid\. expected a number >= 0, got "fast"$/);
    assertOneLine(await cli(['eval', '--model', models, '--data', 'a.jsonl', '--batch-size', '0']), /^error: option '--batch-size <n>' argument '0' is invalid/);
  });

  test('an environment variable: one line naming the variable', async () => {
    assertOneLine(await cli(['serve'], { RMSERVE_MAX_QUEUE: 'lots' }), /^error: option '--max-queue <n>' value 'lots' from env 'RMSERVE_MAX_QUEUE' is invalid/);
    // Empty is not 0: RMSERVE_MAX_QUEUE= would have refused every item.
    assertOneLine(await cli(['serve'], { RMSERVE_MAX_QUEUE: '' }), /from env 'RMSERVE_MAX_QUEUE' is invalid/);
  });
});

describe('serve: refused before any model loads', () => {
  let busy: Server;
  let port: number;
  before(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    port = (busy.address() as AddressInfo).port;
  });
  after(() => busy.close());

  test('a busy port', async () => {
    const result = await cli(['serve', '--models', models, '--port', String(port), '--no-watch']);
    assertOneLine(result, new RegExp(`^error: port ${port} on 127\\.0\\.0\\.1 is already in use \\(--port, PORT\\)$`));
    assert.doesNotMatch(result.stderr, /loaded/, 'no model loaded');
  });

  test('a models root that does not exist, or is empty without the watch', async () => {
    assertOneLine(await cli(['serve', '--models', join(dir, 'nope')]), /^error: models root .*nope does not exist \(--models, RMSERVE_MODELS\)$/);
    assertOneLine(await cli(['serve', '--models', empty, '--no-watch']), /^error: models root .*empty holds no model folders, and with --no-watch none would ever load/);
  });

  test('an empty models root with the watch on: a warning, then it serves (not ready)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--models', empty, '--port', '0'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      for (let i = 0; i < 400 && !/Server listening/.test(output) && child.exitCode === null; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.match(output, /\[rmserve\] warning: models root .*empty holds no model folders yet: \/ready answers 503 until one is written there/);
      assert.match(output, /Server listening/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

test('eval uses the test split unless told otherwise', async () => {
  const command = evalCommand().exitOverride().configureOutput({ writeErr: () => {} }).action(() => {});
  await command.parseAsync(['--model', 'm', '--data', 'd.jsonl'], { from: 'user' });
  assert.equal(readOptions(EVAL_OPTIONS, command.opts()).config.split, 'test');
  assert.match(evalCommand().helpInformation().replace(/\s+/g, ' '), /--split <split> .*\(choices: "test", "validation", "train", "all", default: "test"\)/);
});

/** A stream that keeps what is written; `isTTY` as asked. */
function sink(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  Object.assign(stream, { isTTY, columns: 160 });
  return { stream, text: () => text };
}

describe('progress', () => {
  test('plain lines: one at most every plainEveryMs with rate and ETA, and a last one with the time taken', () => {
    const { stream, text } = sink(false);
    let now = 0;
    const progress = new Progress({ stream, now: () => now, plainEveryMs: 10_000 });
    progress.start('training', 100, 'steps');
    for (let step = 1; step <= 100; step++) {
      now += 500; // 2 steps/s
      progress.update(step, 'loss 0.5');
      if (step === 30) progress.log('step 30: validation accuracy 0.6');
    }
    progress.stop();
    assert.deepEqual(text().trimEnd().split('\n'), [
      'training: 20/100 steps (20%), 2.00 steps/s, ETA 40s, loss 0.5',
      'step 30: validation accuracy 0.6',
      'training: 40/100 steps (40%), 2.00 steps/s, ETA 30s, loss 0.5',
      'training: 60/100 steps (60%), 2.00 steps/s, ETA 20s, loss 0.5',
      'training: 80/100 steps (80%), 2.00 steps/s, ETA 10s, loss 0.5',
      'training: 100/100 steps in 50.0 s, 2.00 steps/s',
    ]);
  });

  test('on a terminal: a cli-progress bar with count, rate and ETA; log lines above it', () => {
    const { stream, text } = sink(true);
    let now = 0;
    const progress = new Progress({ stream, now: () => now });
    progress.start('scoring a.jsonl', 40, 'responses');
    for (let done = 4; done <= 40; done += 4) {
      now += 1000;
      progress.update(done);
      if (done === 20) progress.log('a line while the bar is up');
    }
    progress.stop();
    const out = text();
    assert.match(out, /scoring a\.jsonl \u2588+ 100% \| 40\/40 responses \| 4\.00 responses\/s \| ETA /);
    assert.match(out, /a line while the bar is up\n/);
    assert.ok(out.endsWith('\n'), 'the finished bar stays, with the cursor below it');
  });

  test('formatSeconds', () => {
    assert.deepEqual([5, 65, 3725, Number.POSITIVE_INFINITY].map(formatSeconds), ['5s', '1m05s', '1h02m', '?']);
  });
});
