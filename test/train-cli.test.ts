import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { createService } from '../src/service.js';
import { readPreferenceFile } from '../src/training/data.js';
import { splitByPrompt } from '../src/training/split.js';

const run = promisify(execFile);
const DATA = 'data/hh-rlhf/harmless-base-test.jsonl.gz';

test('rmserve train --help lists every option with its default', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'train', '--help']);
  for (const flag of ['--data', '--out', '--tokenizer', '--vocab-size', '--d-model', '--layers', '--heads', '--max-length', '--batch-size',
    '--steps', '--lr', '--warmup', '--weight-decay', '--clip', '--seed', '--eval-every', '--objective', '--resume',
    '--method', '--pcrm-similarity', '--similarity-encoder', '--pcrm-beta1', '--pcrm-beta2', '--pcrm-beta3', '--haf-rm-ratio', '--haf-dpo-ratio',
    '--haf-beta', '--grm-alpha', '--grm-beta', '--grm-reg', '--head-dropout', '--no-report']) {
    assert.ok(stdout.includes(flag), `--help mentions ${flag}`);
  }
  assert.match(stdout, /--lr <x>\s+peak learning rate \(default: 0\.0003\)/);
  assert.match(stdout, /--method <name>[^]*choices:\s+"bt",\s+"pcrm",\s+"haf",\s+"grm",\s+"labelsmooth"/);
  assert.match(stdout, /--haf-dpo-ratio <x>[^]*?\(default:\s+0\.2\)/);
  assert.match(stdout, /--grm-alpha <x>[^]*?\(default:\s+0\.01\)/);
});

test('rmserve train, run as a user would, writes a model folder the server loads and scores as the trainer did', async () => {
  const root = mkdtempSync(join(tmpdir(), 'rmserve-cli-'));
  try {
    const out = join(root, 'models', 'harmless', '1');
    const { stdout } = await run(process.execPath, [
      '--import', 'tsx', 'src/cli.ts', 'train', '--data', DATA, '--out', out, '--checkpoint-dir', join(root, 'ckpt'),
      '--vocab-size', '384', '--d-model', '32', '--layers', '1', '--heads', '2', '--max-length', '64', '--batch-size', '8',
      '--steps', '10', '--eval-every', '5', '--max-train-pairs', '80', '--lr', '0.003', '--warmup', '2', '--threads', '1',
    ], { timeout: 60_000 });
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as { out: string; test_accuracy: number };
    assert.equal(summary.out, out);

    const manifest = JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as {
      objectives: string[]; max_length: number; metrics: { test: { accuracy: number; reward_mean: number; pairs: number } };
      provenance: { command: string; seed: number; git_commit: string | null };
    };
    assert.deepEqual(manifest.objectives, ['harmless']);
    assert.equal(manifest.max_length, 64);
    assert.match(manifest.provenance.command, /^rmserve train --data /);

    // The server's rewards on the test split reproduce the trainer's test metrics.
    const test = splitByPrompt(readPreferenceFile(DATA), { train: 0.8, validation: 0.1, test: 0.1 }).test;
    assert.equal(test.length, manifest.metrics.test.pairs);
    const service = await createService({ modelsRoot: join(root, 'models'), adminToken: 'secret' });
    try {
      const score = async (response: 'chosen' | 'rejected'): Promise<number[]> => {
        const rewards: number[] = [];
        for (let i = 0; i < test.length; i += 200) {
          const items = test.slice(i, i + 200).map((p) => ({ prompt: p.prompt, response: p[response] }));
          const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'harmless', items } });
          assert.equal(reply.statusCode, 200, reply.body);
          rewards.push(...(reply.json() as { results: { reward: number }[] }).results.map((r) => r.reward));
        }
        return rewards;
      };
      const chosen = await score('chosen');
      const rejected = await score('rejected');
      const accuracy = chosen.reduce((n, c, i) => n + (c > rejected[i]! ? 1 : c === rejected[i]! ? 0.5 : 0), 0) / test.length;
      const mean = (chosen.reduce((a, b) => a + b, 0) + rejected.reduce((a, b) => a + b, 0)) / (2 * test.length);
      assert.equal(accuracy, manifest.metrics.test.accuracy);
      assert.ok(Math.abs(mean - manifest.metrics.test.reward_mean) < 1e-4, `server reward mean ${mean} vs trainer ${manifest.metrics.test.reward_mean}`);

      // A second version, trained with --promote, goes live on the running server.
      await service.app.listen({ host: '127.0.0.1', port: 0 });
      const url = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
      const second = await run(process.execPath, [
        '--import', 'tsx', 'src/cli.ts', 'train', '--data', DATA, '--out', join(root, 'models', 'harmless', '2'),
        '--checkpoint-dir', join(root, 'ckpt2'), '--vocab-size', '300', '--d-model', '16', '--layers', '1', '--heads', '2',
        '--max-length', '32', '--steps', '2', '--max-train-pairs', '16', '--threads', '1', '--promote', url,
      ], { timeout: 60_000, env: { ...process.env, RMSERVE_ADMIN_TOKEN: 'secret' } });
      assert.equal((JSON.parse(second.stdout.trim().split('\n').at(-1)!) as { promoted: string }).promoted, '2');
      assert.equal(service.registry.get('harmless').version, '2');
    } finally {
      await service.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
