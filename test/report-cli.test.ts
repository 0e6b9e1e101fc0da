import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { evaluateRewards, pairAccuracy } from '../src/eval/metrics.js';
import type { EvalResult } from '../src/eval/types.js';

const run = promisify(execFile);

test('rmserve report rebuilds report.html from a metrics log, an eval result and a config', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-report-cli-'));
  try {
    const rows = Array.from({ length: 30 }, (_, i) => ({ step: i + 1, split: i % 10 === 9 ? 'validation' : 'train', loss: 0.7 - 0.01 * i, accuracy: 0.5 + 0.01 * i }));
    writeFileSync(join(dir, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const chosen = [0.5, 1.5, -0.2, 2, 0.1];
    const rejected = [0, 1, 0.3, -1, 0.1];
    const result: EvalResult = {
      format_version: 1,
      model: { dir: 'm/1', name: 'm', version: '1', objectives: ['m'], max_length: 64 },
      split: 'all', max_pairs: null, created_at: '2026-01-01T00:00:00Z', seconds: 0,
      files: [{
        path: 'x.jsonl', source: 'x.jsonl', split: 'all', read: { source: 'x.jsonl', records: 5, kept: 5, formats: {}, dropped: {} },
        pairs: 5, skipped: 0, truncated: 0, length_baseline: pairAccuracy([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), objectives: { m: evaluateRewards(chosen, rejected) },
      }],
    };
    writeFileSync(join(dir, 'eval.json'), JSON.stringify(result));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ method: 'bt', steps: 30 }));
    const out = join(dir, 'out');
    const { stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'report', '--metrics', join(dir, 'metrics.jsonl'), '--eval', join(dir, 'eval.json'), '--config', join(dir, 'config.json'), '--out', out]);
    assert.match(stderr, /wrote .*report\.html/);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.equal(html.match(/<svg class="chart"/g)?.length, 5, 'loss, accuracy + rewards, margin, calibration');
    assert.match(html, /x\.jsonl \(all\) \/ m: accuracy<\/td><td>70\.0%/, 'accuracy (3 right + 1 tie) / 5');
    assert.match(html, /<td>steps<\/td><td class="text"><span>30<\/span>/);

    await assert.rejects(run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'report', '--eval', join(dir, 'config.json'), '--out', out]), (err: { stderr?: string }) =>
      /not an rmserve eval result/.test(err.stderr ?? ''),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
