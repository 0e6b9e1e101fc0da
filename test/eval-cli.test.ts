// Runs `rmserve eval` as a user would and checks its JSON against rewards the server gives for
// the same pairs, with every statistic recomputed here from those rewards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { createService } from '../src/service.js';
import { readPreferenceFile, type PreferencePair } from '../src/training/data.js';
import { splitByPrompt } from '../src/training/split.js';
import type { EvalResult } from '../src/eval/types.js';

const run = promisify(execFile);
const HH = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const PANDALM = 'data/pandalm/testset-v1.json';
const N = 24;

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  return s[lo]! + (h - lo) * (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!);
}
const mean = (v: number[]): number => v.reduce((s, x) => s + x, 0) / v.length;
const std = (v: number[]): number => Math.sqrt(mean(v.map((x) => (x - mean(v)) ** 2)));
const close = (a: number | null | undefined, b: number, what: string, tol = 1e-5): void =>
  assert.ok(a !== null && a !== undefined && Math.abs(a - b) <= tol, `${what}: eval ${a} vs server ${b}`);

test('rmserve eval on the shipped harmless model matches the server, statistic by statistic', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-eval-'));
  // A models root holding only (a copy of) the shipped harmless model, so the server loads nothing
  // else; the registry refuses links that leave its root.
  const root = join(dir, 'models');
  cpSync('models/harmless', join(root, 'harmless'), { recursive: true });
  const service = await createService({ modelsRoot: root, cacheSize: 0 });
  try {
    // Whatever version of the shipped harmless model the server serves, eval gets the same folder.
    const served = service.registry.get('harmless');
    const MODEL = served.spec.dir;
    const objective = served.objectives[0]!;
    const out = join(dir, 'eval.json');
    const { stdout } = await run(process.execPath, [
      '--import', 'tsx', 'src/cli.ts', 'eval', '--model', MODEL, '--data', HH, PANDALM,
      '--split', 'test', '--max-pairs', String(N), '--json', out, '--batch-size', '7',
    ]);
    const result = JSON.parse(readFileSync(out, 'utf8')) as EvalResult;
    assert.equal(result.model.name, 'harmless');
    assert.equal(result.model.version, served.version);
    assert.deepEqual(result.model.objectives, served.objectives);
    assert.equal(result.split, 'test');
    assert.equal(result.files.length, 2);
    assert.match(stdout, new RegExp(`harmless-base-test\\.jsonl\\.gz\\s+${objective}\\s+${N}\\s`));
    assert.match(stdout, /calibration of σ\(\|margin\|\), testset-v1\.json/);

    const tokenizer = new Tokenizer(JSON.parse(readFileSync(join(MODEL, 'tokenizer.json'), 'utf8')) as Record<string, unknown>, {});
    const tokens = (text: string): number => tokenizer.encode(text, { add_special_tokens: false }).ids.length;

    for (const [f, path] of [HH, PANDALM].entries()) {
      const pairs: PreferencePair[] = splitByPrompt(readPreferenceFile(path), { train: 0.8, validation: 0.1, test: 0.1 }).test.slice(0, N);
      const items = pairs.flatMap((p) => [{ prompt: p.prompt, response: p.chosen }, { prompt: p.prompt, response: p.rejected }]);
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'harmless', items, aggregate: 'none' } });
      assert.equal(reply.statusCode, 200, reply.body);
      const raw = (reply.json() as { results: { objectives: Record<string, { raw: number }> }[] }).results.map((r) => r.objectives[objective]!.raw);
      const c = pairs.map((_, i) => raw[2 * i]!);
      const r = pairs.map((_, i) => raw[2 * i + 1]!);
      const d = c.map((x, i) => x - r[i]!);

      const file = result.files[f]!;
      const e = file.objectives[objective]!;
      assert.equal(file.pairs, pairs.length);
      assert.equal(file.skipped, 0);
      // Margins this close to 0 could flip between batchings; none are, so accuracy must match exactly.
      assert.ok(d.every((x) => Math.abs(x) > 1e-5), 'no near-ties in the sample');
      const right = d.filter((x) => x > 0).length;
      assert.equal(e.correct, right);
      close(e.accuracy, right / pairs.length, `${path} accuracy`, 0);
      close(e.loss, mean(d.map((x) => Math.log1p(Math.exp(-x)))), `${path} loss`);
      close(e.rewards.chosen.mean, mean(c), 'chosen mean');
      close(e.rewards.chosen.std, std(c), 'chosen std');
      close(e.rewards.rejected.mean, mean(r), 'rejected mean');
      close(e.rewards.rejected.std, std(r), 'rejected std');
      close(e.rewards.all.mean, mean([...c, ...r]), 'all mean');
      close(e.rewards.all.std, std([...c, ...r]), 'all std');
      for (const q of [0.05, 0.25, 0.5, 0.75, 0.95]) close(e.margin.quantiles[String(q)], quantile(d, q), `margin q${q}`);
      close(e.margin.abs_median, quantile(d.map(Math.abs), 0.5), 'median |margin|');

      // Calibration: bin b holds σ(|Δ|) ∈ [0.5 + 0.05b, 0.5 + 0.05(b+1)).
      const conf = d.map((x) => 1 / (1 + Math.exp(-Math.abs(x))));
      const bins = e.calibration.bins;
      let ece = 0;
      bins.forEach((bin, b) => {
        const inBin = conf.map((p, i) => i).filter((i) => Math.min(9, Math.floor((conf[i]! - 0.5) / 0.05)) === b);
        assert.equal(bin.count, inBin.length, `bin ${b} count`);
        if (inBin.length === 0) return;
        const acc = inBin.filter((i) => d[i]! > 0).length / inBin.length;
        const cf = mean(inBin.map((i) => conf[i]!));
        close(bin.accuracy, acc, `bin ${b} accuracy`);
        close(bin.confidence, cf, `bin ${b} confidence`);
        ece += (inBin.length / d.length) * Math.abs(acc - cf);
      });
      close(e.calibration.ece, ece, 'ECE');

      const longer = pairs.map((p) => Math.sign(tokens(p.chosen) - tokens(p.rejected)));
      close(file.length_baseline.accuracy, (longer.filter((s) => s > 0).length + 0.5 * longer.filter((s) => s === 0).length) / pairs.length, 'length baseline', 0);
    }
    // The sample is not degenerate: the model gets some pairs right and some wrong.
    const hh = result.files[0]!.objectives[objective]!;
    assert.ok(hh.correct > 0 && hh.incorrect > 0);
  } finally {
    await service.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rmserve eval fails with a message for a missing data file', async () => {
  await assert.rejects(
    run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'eval', '--model', 'models/harmless/0', '--data', 'no/such/file.jsonl']),
    (err: { code?: number; stderr?: string }) => err.code !== 0 && /no\/such\/file\.jsonl/.test(err.stderr ?? ''),
  );
});
