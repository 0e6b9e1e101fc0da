// What a trainer leaves on disk when it stops at a bad moment: a resumed run logs each step once,
// an export replaces the previous model folder whole or not at all, and `rmserve train` killed
// with SIGKILL at seeded random moments leaves a checkpoint that loads and resumes to the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadCheckpoint } from '../src/training/checkpoint.js';
import { completeTokenizerConfig } from '../src/training/encode.js';
import { exportRewardModel, type ExportOptions } from '../src/training/export.js';
import type { RmserveManifest } from '../src/model/manifest.js';
import { defaultModelConfig, initWeights } from '../src/training/model.js';
import { DEFAULT_TRAIN_OPTIONS, runTraining, type TrainRunOptions } from '../src/training/pipeline.js';
import { mulberry32 } from '../src/training/random.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

const dir = mkdtempSync(join(tmpdir(), 'rmserve-crash-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

// Pairs a tiny model separates within a few steps; 96 prompts give every split some.
const DATA = join(dir, 'pairs.jsonl');
writeFileSync(DATA, Array.from({ length: 96 }, (_, i) => JSON.stringify({
  prompt: `question ${i} about fruit`, chosen: `I like apples ${i % 11} very much`, rejected: `pears ${i % 7}`,
})).join('\n') + '\n');
const TINY = ['--vocab-size', '300', '--d-model', '16', '--layers', '1', '--heads', '2', '--max-length', '32', '--batch-size', '8',
  '--threads', '1', '--no-report', '--no-progress'];

interface LogLine { kind: string; step: number }

function metricsLog(path: string): LogLine[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine);
}

function steps(log: readonly LogLine[], kind: string): number[] {
  return log.filter((l) => l.kind === kind).map((l) => l.step);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function snapshot(folder: string): Record<string, string> {
  return Object.fromEntries(readdirSync(folder).sort().map((f) => [f, createHash('sha256').update(readFileSync(join(folder, f))).digest('hex')]));
}

test('a resume from an earlier checkpoint than the log reached logs each step once', async () => {
  const root = join(dir, 'log');
  const ckpt = join(root, 'ckpt');
  const run = (overrides: Partial<TrainRunOptions>): Promise<unknown> => runTraining({
    ...DEFAULT_TRAIN_OPTIONS, data: [DATA], out: join(root, 'models', 'm', '1'), checkpointDir: ckpt,
    vocabSize: 300, dModel: 16, layers: 1, heads: 2, maxLength: 32, batchSize: 8, steps: 8, evalEvery: 2,
    optimizer: { ...DEFAULT_TRAIN_OPTIONS.optimizer, lr: 3e-3, warmup: 2 }, report: false, threads: 1, log: () => {}, progress: false,
    ...overrides,
  });
  await run({ stopAfter: 4 });
  // What a kill leaves: a checkpoint at step 4 and a log that went on to step 6.
  copyFileSync(join(ckpt, 'last.safetensors'), join(ckpt, 'step-4.safetensors'));
  await run({ stopAfter: 6, resume: join(ckpt, 'last.safetensors') });
  assert.deepEqual(steps(metricsLog(join(ckpt, 'train-metrics.jsonl')), 'train'), range(1, 6));
  await run({ resume: join(ckpt, 'step-4.safetensors') });

  const log = metricsLog(join(root, 'models', 'm', '1', 'train-metrics.jsonl'));
  assert.deepEqual(steps(log, 'train'), range(1, 8));
  assert.deepEqual(steps(log, 'eval'), [2, 4, 6, 8]);

  // Resuming a finished run (as after a kill between the export and the exit) adds nothing.
  await run({ resume: join(ckpt, 'last.safetensors') });
  assert.deepEqual(metricsLog(join(root, 'models', 'm', '1', 'train-metrics.jsonl')), log);
});

function tinyExport(outDir: string): ExportOptions {
  const bpe = trainByteLevelBpe(['hello world', 'good answer', 'bad answer'], { vocabSize: 270 });
  const json = bpe.tokenizerJson as unknown as Record<string, unknown>;
  const config = defaultModelConfig({ vocabSize: 270, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 16, numObjectives: 1 });
  return {
    outDir, config, weights: initWeights(config, 1), objectives: ['m'], provenance: { seed: 1 },
    tokenizer: { tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, 16) },
  };
}

test('an export that fails part way leaves the previous version whole, and replaces it whole when it succeeds', () => {
  const out = join(dir, 'export-fail', 'm', '1');
  exportRewardModel(tinyExport(out));
  const before = snapshot(out);
  // An invalid manifest fails after model.onnx and the tokenizer files are written.
  const bad = { x: { quantiles: 'none' } } as unknown as RmserveManifest['reference'];
  assert.throws(() => exportRewardModel({ ...tinyExport(out), provenance: { seed: 2 }, reference: bad }), /invalid rmserve\.json/);
  assert.deepEqual(snapshot(out), before);
  assert.deepEqual(readdirSync(join(out, '..')), ['1'], 'no staging folder is left behind');

  exportRewardModel({ ...tinyExport(out), provenance: { seed: 2 } });
  assert.deepEqual((JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as { provenance: unknown }).provenance, { seed: 2 });
  assert.deepEqual(readdirSync(join(out, '..')), ['1']);
});

interface Child { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

// Runs node with `args`; with `kill`, sends SIGKILL `kill.delayMs` after the output first matches `kill.after`.
function runNode(args: readonly string[], kill?: { after: RegExp; delayMs: number }): Promise<Child> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let armed = false;
    const watch = (): void => {
      if (armed || kill === undefined || !kill.after.test(stdout + stderr)) return;
      armed = true;
      setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
    };
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); watch(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); watch(); });
    const limit = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      done({ code, signal, stdout, stderr });
    });
  });
}

test('an export killed at random moments leaves the previous version whole at its name', async (t) => {
  const root = join(dir, 'export-kill');
  const out = join(root, 'm', '1');
  const script = join(root, 'exporter.mts');
  const src = (file: string): string => pathToFileURL(resolve('src/training', file)).href;
  exportRewardModel(tinyExport(out));
  const expected = snapshot(out);
  // The child exports the same model over and over; every export is byte-identical, so whatever
  // moment the kill lands on, the folder must hold exactly these files.
  writeFileSync(script, [
    `import { exportRewardModel } from '${src('export.js')}';`,
    `import { completeTokenizerConfig } from '${src('encode.js')}';`,
    `import { defaultModelConfig, initWeights } from '${src('model.js')}';`,
    `import { trainByteLevelBpe } from '${src('tokenizer/index.js')}';`,
    `const bpe = trainByteLevelBpe(['hello world', 'good answer', 'bad answer'], { vocabSize: 270 });`,
    `const json = bpe.tokenizerJson as unknown as Record<string, unknown>;`,
    `const config = defaultModelConfig({ vocabSize: 270, dModel: 8, nLayers: 1, nHeads: 2, maxLength: 16, numObjectives: 1 });`,
    `const options = { outDir: process.argv[2]!, config, weights: initWeights(config, 1), objectives: ['m'], provenance: { seed: 1 },`,
    `  tokenizer: { tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, 16) } };`,
    `for (let i = 0; i < (process.argv[3] === 'once' ? 1 : 100000); i++) {`,
    `  exportRewardModel(options);`,
    `  if (i === 0) console.log('ready');`,
    `  await new Promise((r) => setImmediate(r));`,
    `}`,
  ].join('\n'));
  const random = mulberry32(14);
  for (let k = 0; k < 4; k++) {
    const delay = Math.floor(random() * 40);
    const r = await runNode(['--import', 'tsx', script, out], { after: /ready/, delayMs: delay });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    t.diagnostic(`kill ${k + 1} after ${delay} ms: ${existsSync(out) ? 'in place' : 'aside'}`);
    // A kill between the two renames of a replacement leaves the previous version aside, whole.
    const aside = readdirSync(join(root, 'm')).find((n) => n.startsWith('.1.replaced-'));
    assert.deepEqual(snapshot(existsSync(out) ? out : join(root, 'm', aside!)), expected, `after kill ${k + 1}`);
  }
  const last = await runNode(['--import', 'tsx', script, out, 'once']);
  assert.equal(last.code, 0, last.stderr);
  assert.deepEqual(snapshot(out), expected);
  assert.deepEqual(readdirSync(join(root, 'm')), ['1'], 'the next export tidies up what the kills left');
});

test('rmserve train killed with SIGKILL at random moments resumes from its checkpoint and finishes, logging each step once', async (t) => {
  const root = join(dir, 'train-kill');
  const out = join(root, 'models', 'm', '1');
  const ckpt = join(root, 'ckpt');
  const last = join(ckpt, 'last.safetensors');
  const cli = (args: readonly string[]): string[] => ['--import', 'tsx', 'src/cli.ts', 'train', '--data', DATA, '--out', out, ...args, ...TINY];

  // A finished earlier version in --out, which the killed runs must not touch.
  exportRewardModel({ ...tinyExport(out), provenance: { seed: 1 } });
  writeFileSync(join(out, 'train-metrics.jsonl'), '{"kind":"train","step":1}\n');
  const before = snapshot(out);

  const STEPS = 60;
  // Checkpoint (and validate) after every step, so kills land inside checkpoint writes too.
  const args = ['--checkpoint-dir', ckpt, '--steps', String(STEPS), '--seed', '3', '--eval-every', '1', '--lr', '0.003', '--warmup', '2'];
  const random = mulberry32(7);
  let checkpointStep = 0;
  for (let k = 0; k < 4; k++) {
    const resume = existsSync(last) ? ['--resume', last] : [];
    const r = await runNode(cli([...args, ...resume]), { after: /^step \d+:/m, delayMs: Math.floor(random() * 250) });
    if (r.code === 0) {
      checkpointStep = STEPS;
      break;
    }
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const now = snapshot(out);
    const manifest = JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as { provenance: { seed: number } };
    if (manifest.provenance.seed === 3) {
      // The kill came after the new version was published: it is there whole, checkpoint and all.
      assert.equal(loadCheckpoint(last).step, STEPS);
      assert.ok(existsSync(join(out, 'model.onnx')) && existsSync(join(out, 'train-metrics.jsonl')));
      checkpointStep = STEPS;
      break;
    }
    assert.deepEqual(now, before, `kill ${k + 1} left the previous version in --out alone`);
    if (existsSync(last)) {
      const c = loadCheckpoint(last);
      assert.ok(c.adam, 'the checkpoint holds the optimizer moments');
      assert.ok(c.step >= checkpointStep && c.step >= 1 && c.step <= STEPS, `kill ${k + 1}: checkpoint at step ${c.step}, before it ${checkpointStep}`);
      checkpointStep = c.step;
    }
    t.diagnostic(`kill ${k + 1}: checkpoint at step ${existsSync(last) ? checkpointStep : 'none'}`);
  }
  assert.ok(checkpointStep > 0, 'some kill came after a checkpoint');

  const final = await runNode(cli([...args, '--resume', last]));
  assert.equal(final.code, 0, final.stderr);
  assert.match(final.stderr, new RegExp(`resumed from .*last\\.safetensors at step ${checkpointStep}\\b`));
  type Manifest = { provenance: { seed: number }; metrics: { train: { best_step: number } } };
  const manifest = JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as Manifest;
  assert.equal(manifest.provenance.seed, 3);
  const log = metricsLog(join(out, 'train-metrics.jsonl'));
  assert.deepEqual(steps(log, 'train'), range(1, STEPS), 'each step once, in order');
  assert.deepEqual(steps(log, 'eval'), range(1, STEPS));
  assert.equal(loadCheckpoint(last).step, STEPS);

  // The kills changed nothing: the same losses and the same kept step as a run left alone.
  const out2 = join(root, 'models', 'm', '2');
  const straight = await runNode(['--import', 'tsx', 'src/cli.ts', 'train', '--data', DATA, '--out', out2, ...args.map((a) => (a === ckpt ? join(root, 'ckpt-straight') : a)), ...TINY]);
  assert.equal(straight.code, 0, straight.stderr);
  const reference = metricsLog(join(out2, 'train-metrics.jsonl')) as (LogLine & { loss: number })[];
  (log as (LogLine & { loss: number })[]).forEach((l, i) => {
    assert.ok(Math.abs(l.loss - reference[i]!.loss) <= 1e-6 * Math.max(1, Math.abs(reference[i]!.loss)), `${l.kind} step ${l.step}: ${l.loss} vs ${reference[i]!.loss}`);
  });
  assert.equal(manifest.metrics.train.best_step, (JSON.parse(readFileSync(join(out2, 'rmserve.json'), 'utf8')) as Manifest).metrics.train.best_step);
});
