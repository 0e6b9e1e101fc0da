import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { evaluateRewards, pairAccuracy } from '../src/eval/metrics.js';
import type { EvalResult } from '../src/eval/types.js';
import { parseMetricsLog, writeTrainingReport, type MetricsRow } from '../src/eval/report/index.js';
import { niceTicks } from '../src/eval/report/svg.js';

// Debian's package path; CHROMIUM_PATH points elsewhere (or at nothing, to see the skip).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const STEPS = 120;
const VALIDATION_EVERY = 20;

// Deterministic noise for synthetic curves and rewards.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function metricsRows(): MetricsRow[] {
  const r = rng(1);
  const rows: MetricsRow[] = [];
  for (let step = 1; step <= STEPS; step++) {
    rows.push({ step, split: 'train', loss: 0.4 + 0.3 * Math.exp(-step / 40) + 0.05 * r(), accuracy: 0.55 + 0.2 * (1 - Math.exp(-step / 30)) + 0.05 * r(), lr: 1e-4 * Math.min(1, step / 10), reward_mean: 0.01 * step, reward_std: 0.5, tokens_per_second: 4000 + 500 * r() });
    if (step % VALIDATION_EVERY === 0) rows.push({ step, split: 'validation', loss: 0.5 + 0.2 * Math.exp(-step / 50), accuracy: 0.6 + 0.1 * (1 - Math.exp(-step / 40)) });
  }
  return rows;
}

function evalResult(): EvalResult {
  const r = rng(2);
  const n = 300;
  const chosen = Array.from({ length: n }, () => 0.4 + r() + r() - 1);
  const rejected = Array.from({ length: n }, () => r() + r() - 1);
  return {
    format_version: 1,
    model: { dir: 'models/x/1', name: 'x', version: '1', objectives: ['helpful'], max_length: 512 },
    split: 'test',
    max_pairs: null,
    created_at: '2026-01-01T00:00:00.000Z',
    seconds: 1,
    files: [
      {
        path: 'data/a.jsonl', source: 'a.jsonl', split: 'test',
        read: { source: 'a.jsonl', records: n, kept: n, formats: {}, dropped: {} },
        pairs: n, skipped: 0, truncated: 0,
        length_baseline: pairAccuracy(chosen.map((_, i) => i % 3), rejected.map((_, i) => i % 2)),
        objectives: { helpful: evaluateRewards(chosen, rejected) },
      },
    ],
  };
}

function writeReport(dir: string): string {
  return writeTrainingReport(dir, {
    title: 'Report <test> & co',
    metrics: metricsRows(),
    evalResult: evalResult(),
    config: { method: 'pcrm', pcrm: { beta1: 6, beta2: 0.001 }, data: ['a.jsonl', 'b.jsonl'], note: '<script>alert(1)</script>' },
    finalMetrics: { 'training seconds': 12.5 },
  });
}

test('report.html is self-contained: inline SVG plots, escaped text, no scripts or URLs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-report-'));
  try {
    const html = readFileSync(writeReport(dir), 'utf8');
    assert.ok(!/https?:\/\//.test(html), 'no network URLs');
    assert.ok(!/<script/i.test(html), 'no scripts (config text is escaped)');
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(html.includes('<title>Report &lt;test&gt; &amp; co</title>'));
    // loss, accuracy, reward scale, lr, throughput + rewards, margin, calibration for the one file.
    assert.equal(html.match(/<svg class="chart"/g)?.length, 8);
    const loss = html.match(/<svg class="chart"[^]*?<\/svg>/)![0];
    const train = loss.match(/data-series="train" points="([^"]*)"/)![1]!.split(' ');
    const validation = loss.match(/data-series="validation" points="([^"]*)"/)![1]!.split(' ');
    assert.equal(train.length, STEPS);
    assert.equal(validation.length, STEPS / VALIDATION_EVERY);
    assert.ok(html.includes('pcrm.beta1'), 'nested config is flattened');
    assert.match(html, /a\.jsonl \(test\) \/ helpful: accuracy/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('metrics log: rows with step and split, torn or foreign lines counted and skipped', () => {
  const log = parseMetricsLog('{"step":1,"split":"train","loss":0.7}\n\n{"step":2,"split":"validation","accuracy":0.6}\n{"nope":1}\n{"step":3,"spl');
  assert.deepEqual(log.rows.map((r) => r.step), [1, 2]);
  assert.equal(log.skipped, 2);
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-report-'));
  try {
    const path = join(dir, 'metrics.jsonl');
    writeFileSync(path, '{"step":1,"split":"train","loss":0.7}\n{"step":2,"split":"train","loss":NaN}\n');
    const html = readFileSync(writeTrainingReport(dir, { metricsLogPath: path }), 'utf8');
    assert.match(html, /1 unreadable lines/);
    assert.equal(html.match(/<svg class="chart"/g)?.length, 2, 'loss and accuracy only; no eval section without an eval result');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('axis ticks are round numbers covering the range', () => {
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 120), [0, 20, 40, 60, 80, 100, 120]);
  assert.deepEqual(niceTicks(-0.37, 0.74), [-0.2, 0, 0.2, 0.4, 0.6]);
});

test('report.html renders in Debian chromium: every chart laid out, no console errors, no requests', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is absent: install Debian's chromium (apt-get install chromium) to run the report rendering check`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-report-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const url = pathToFileURL(writeReport(dir)).href;
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      if (r.url() !== url) problems.push(`request: ${r.url()}`);
    });
    await page.goto(url);
    const charts = page.locator('svg.chart');
    assert.equal(await charts.count(), 8);
    for (let i = 0; i < 8; i++) {
      const box = await charts.nth(i).boundingBox();
      assert.ok(box !== null && box.width > 300 && box.height > 100, `chart ${i} is laid out: ${JSON.stringify(box)}`);
    }
    // The marks themselves have extent: lines, bars and dots inside the plot, not collapsed to a point.
    // Browser-side code as a string: the project's TypeScript has no DOM types.
    const marks = (await page.evaluate(`[...document.querySelectorAll('svg.chart')].map((svg) => {
      const boxes = [...svg.querySelectorAll('polyline.series, rect.bar, circle')].map((s) => s.getBBox());
      return { shapes: boxes.length, wide: boxes.filter((b) => b.width > 1 || b.height > 1).length };
    })`)) as { shapes: number; wide: number }[];
    marks.forEach((m, i) => assert.ok(m.shapes > 0 && m.wide > 0, `chart ${i} draws marks: ${JSON.stringify(m)}`));
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
    assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px too wide)`);
    const png = await page.screenshot({ fullPage: true });
    assert.ok(png.length > 20_000, 'the screenshot has content');
    if (process.env.REPORT_SCREENSHOT) writeFileSync(process.env.REPORT_SCREENSHOT, png);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
