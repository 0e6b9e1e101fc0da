// `rmserve train` stopped by SIGTERM (what Kubernetes, Slurm and systemd send before SIGKILL)
// finishes its step, writes last.safetensors at that step and exits; --resume then continues from
// exactly that step, and the finished run logs every step once with the losses of a run that was
// never stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/training/checkpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'rmserve-sigterm-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const DATA = join(dir, 'pairs.jsonl');
writeFileSync(DATA, Array.from({ length: 96 }, (_, i) => JSON.stringify({
  prompt: `question ${i} about fruit`, chosen: `I like apples ${i % 11} very much`, rejected: `pears ${i % 7}`,
})).join('\n') + '\n');
const STEPS = 30;
const ARGS = ['--vocab-size', '300', '--d-model', '16', '--layers', '1', '--heads', '2', '--max-length', '32', '--batch-size', '8',
  '--threads', '1', '--no-report', '--no-progress', '--steps', String(STEPS), '--seed', '3', '--eval-every', '1', '--lr', '0.003', '--warmup', '2'];

interface Child { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs `rmserve train`; with `term`, sends SIGTERM once stderr first matches it. */
function train(args: readonly string[], term?: RegExp): Promise<Child> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'train', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (!sent && term?.test(stderr)) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    const limit = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      done({ code, signal, stdout, stderr });
    });
  });
}

interface LogLine { kind: string; step: number; loss: number }

function metricsLog(path: string): LogLine[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine);
}

test('SIGTERM checkpoints the step reached; --resume continues from it to the same end as an uninterrupted run', async () => {
  const out = join(dir, 'models', 'm', '1');
  const ckpt = join(dir, 'ckpt');
  const last = join(ckpt, 'last.safetensors');

  // SIGTERM once the third validation line is out: the loop is mid-run, between checkpoints of every step.
  const stopped = await train(['--data', DATA, '--out', out, '--checkpoint-dir', ckpt, ...ARGS], /^step 3:/m);
  assert.equal(stopped.signal, null, `exited on its own, not killed by the signal: ${stopped.stderr}`);
  assert.equal(stopped.code, 143, `128 + SIGTERM's 15, not Ctrl-C's 130: ${stopped.stderr}`);
  assert.match(stopped.stderr, /SIGTERM: stopping after this step and writing the checkpoint/);
  const reported = JSON.parse(stopped.stdout.trim().split('\n').at(-1)!) as { interrupted: boolean; step: number; checkpoint: string };
  assert.equal(reported.interrupted, true);
  const step = loadCheckpoint(last).step;
  assert.ok(step >= 3 && step < STEPS, `checkpoint at step ${step}`);
  assert.equal(reported.step, step, 'the checkpoint holds the last step run, not an earlier one');
  assert.ok(loadCheckpoint(last).adam, 'with the optimizer moments');
  assert.match(stopped.stderr, new RegExp(`interrupted at step ${step}; continue with --resume`));

  const resumed = await train(['--data', DATA, '--out', out, '--checkpoint-dir', ckpt, ...ARGS, '--resume', last]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resumed from .*last\\.safetensors at step ${step}\\b`));
  const log = metricsLog(join(out, 'train-metrics.jsonl'));
  const trainSteps = log.filter((l) => l.kind === 'train').map((l) => l.step);
  assert.deepEqual(trainSteps, Array.from({ length: STEPS }, (_, i) => i + 1), 'each step once, in order');

  const straightOut = join(dir, 'models', 'm', '2');
  const straight = await train(['--data', DATA, '--out', straightOut, '--checkpoint-dir', join(dir, 'ckpt-straight'), ...ARGS]);
  assert.equal(straight.code, 0, straight.stderr);
  const reference = metricsLog(join(straightOut, 'train-metrics.jsonl'));
  assert.equal(log.length, reference.length);
  log.forEach((l, i) => {
    assert.ok(Math.abs(l.loss - reference[i]!.loss) <= 1e-6 * Math.max(1, Math.abs(reference[i]!.loss)), `${l.kind} step ${l.step}: ${l.loss} vs ${reference[i]!.loss}`);
  });
});
