// Server throughput and latency with single-item requests at concurrency 1, 16 and 64, next to the
// same model and items run directly through onnxruntime-node in well-packed batches, in one run.
//
//   npm run bench -- [--model DIR] [--requests 1000] [--d-model 256 --layers 4 --max-length 256]
//
// Without --model it exports a GPT-2-style transformer reward model (random weights: speed does
// not depend on their values) with the real GPT-2 tokenizer into a temporary models root.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { readModelFolder } from '../src/model/model-folder.js';
import { RewardSession } from '../src/model/onnx-session.js';
import { readPreferenceFile } from '../src/training/data.js';
import { readTokenizerFiles } from '../src/training/encode.js';
import { forwardModelProto } from '../src/training/export.js';
import { defaultModelConfig, initWeights } from '../src/training/model.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    requests: { type: 'string', default: '1000' },
    'd-model': { type: 'string', default: '256' },
    layers: { type: 'string', default: '4' },
    'max-length': { type: 'string', default: '256' },
    port: { type: 'string', default: '8789' },
    'max-batch-size': { type: 'string', default: '64' },
    'max-batch-tokens': { type: 'string', default: '32768' },
    'max-wait-ms': { type: 'string', default: '2' },
    'max-padding-ratio': { type: 'string', default: '0.1' },
  },
});
const REQUESTS = Number(args.requests);
const MAX_LENGTH = Number(args['max-length']);
const log = (message: string): void => console.error(`[bench] ${message}`);

function exportBenchModel(root: string): string {
  const dir = join(root, 'bench-rm', '1');
  const tokenizerPath = 'data/tokenizers/gpt2/tokenizer.json';
  const files = readTokenizerFiles(tokenizerPath, MAX_LENGTH);
  let vocabSize = 0;
  for (const t of (files.tokenizerJson.added_tokens as { id: number }[] | undefined) ?? []) vocabSize = Math.max(vocabSize, t.id + 1);
  vocabSize = Math.max(vocabSize, Object.keys((files.tokenizerJson.model as { vocab: object }).vocab).length);
  const config = defaultModelConfig({ vocabSize, dModel: Number(args['d-model']), nLayers: Number(args.layers), nHeads: 4, maxLength: MAX_LENGTH });
  cpSync('data/tokenizers/gpt2', dir, { recursive: true });
  writeFileSync(join(dir, 'model.onnx'), forwardModelProto(config, initWeights(config, 0)));
  copyFileSync(tokenizerPath, join(dir, 'tokenizer.json'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
  writeFileSync(join(dir, 'rmserve.json'), JSON.stringify({ format_version: 1, objectives: ['reward'], max_length: MAX_LENGTH }));
  log(`exported a d_model ${config.dModel}, ${config.nLayers}-layer transformer RM (max length ${MAX_LENGTH}) to ${dir}`);
  return dir;
}

interface Item { prompt: { role: 'user' | 'assistant' | 'system'; content: string }[]; response: string }

function benchItems(n: number): Item[] {
  const pairs = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz');
  const items: Item[] = [];
  for (let i = 0; items.length < n; i++) {
    const p = pairs[i % pairs.length]!;
    items.push({ prompt: p.prompt, response: i % 2 === 0 ? p.chosen : p.rejected });
  }
  return items;
}

async function directOrt(modelDir: string, items: Item[], maxBatch: number): Promise<{ pairsPerSecond: number; paddedShare: number }> {
  const spec = readModelFolder(modelDir);
  const session = await RewardSession.create(join(modelDir, 'model.onnx'), spec.padId, spec.paddingSide, { device: 'cpu' });
  const rows = items.map((item) => spec.tokenizer.encode(spec.formatter.render(item), spec.truncationSide).ids).sort((a, b) => a.length - b.length);
  await session.run(rows.slice(0, 8)); // warm-up
  let padded = 0;
  let real = 0;
  const started = performance.now();
  for (let i = 0; i < rows.length; i += maxBatch) {
    const { paddedTokens } = await session.run(rows.slice(i, i + maxBatch));
    padded += paddedTokens;
    real += rows.slice(i, i + maxBatch).reduce((n, r) => n + r.length, 0);
  }
  const seconds = (performance.now() - started) / 1000;
  await session.release();
  return { pairsPerSecond: rows.length / seconds, paddedShare: 1 - real / padded };
}

async function startServer(root: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'serve', '--models', root, '--port', String(port), '--cache-size', '0', '--log-level', 'warn', '--max-batch-size', String(args['max-batch-size']), '--max-batch-tokens', String(args['max-batch-tokens']), '--max-wait-ms', String(args['max-wait-ms']), '--max-padding-ratio', String(args['max-padding-ratio']), '--no-watch'],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  for (let i = 0; i < 600; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/ready`);
      if (res.status === 200) return child;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill();
  throw new Error('server did not become ready');
}

async function load(port: number, items: Item[], concurrency: number): Promise<{ pairsPerSecond: number; p50: number; p99: number }> {
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      const t0 = performance.now();
      const res = await pool.request({ method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [item] }) });
      const body = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body}`);
      latencies.push(performance.now() - t0);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { pairsPerSecond: items.length / seconds, p50: at(0.5), p99: at(0.99) };
}

/** Cumulative ONNX runs, rows and padding-ratio sum of the server, from its /metrics. */
async function batchStats(port: number): Promise<{ runs: number; rows: number; padding: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const sum = (name: string): number =>
    text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((a, l) => a + Number(l.split(' ').at(-1)), 0);
  return { runs: sum('rmserve_batch_size_count'), rows: sum('rmserve_batch_size_sum'), padding: sum('rmserve_padding_ratio_sum') };
}

const root = mkdtempSync(join(tmpdir(), 'rmserve-bench-'));
const modelDir = args.model ?? exportBenchModel(root);
const modelsRoot = args.model ? join(root, 'models') : root;
if (args.model) cpSync(args.model, join(modelsRoot, 'bench-rm', '1'), { recursive: true });
const items = benchItems(REQUESTS);
const port = Number(args.port);

log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown cpu'}; ${REQUESTS} HH-RLHF items per level`);
log('direct onnxruntime-node, batches of 64 sorted by length ...');
const direct = await directOrt(args.model ? join(modelsRoot, 'bench-rm', '1') : modelDir, items, 64);
log(`direct: ${direct.pairsPerSecond.toFixed(1)} pairs/s (padding ${(direct.paddedShare * 100).toFixed(1)}%)`);

const server = await startServer(modelsRoot, port);
const rows: string[] = [];
try {
  await load(port, items.slice(0, 32), 8); // warm-up
  for (const concurrency of [1, 16, 64]) {
    const n = concurrency === 1 ? Math.min(200, REQUESTS) : REQUESTS;
    log(`server, concurrency ${concurrency}, ${n} single-item requests ...`);
    const before = await batchStats(port);
    const r = await load(port, items.slice(0, n), concurrency);
    const after = await batchStats(port);
    const runs = after.runs - before.runs;
    const rowsPerRun = (after.rows - before.rows) / runs;
    const padding = (after.padding - before.padding) / runs;
    log(`  ${r.pairsPerSecond.toFixed(1)} pairs/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms; ${runs} ONNX runs, ${rowsPerRun.toFixed(1)} rows/run, padding ${(padding * 100).toFixed(1)}%`);
    rows.push(`| server, concurrency ${concurrency} | ${n} | ${r.pairsPerSecond.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${rowsPerRun.toFixed(1)} | ${(padding * 100).toFixed(1)}% | ${(r.pairsPerSecond / direct.pairsPerSecond).toFixed(2)} |`);
  }
} finally {
  server.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
}
console.log('| setup | items | pairs/s | p50 ms | p99 ms | rows/run | padding | vs direct ORT |');
console.log('|---|---|---|---|---|---|---|---|');
console.log(`| direct onnxruntime-node, batches of 64 by length | ${REQUESTS} | ${direct.pairsPerSecond.toFixed(1)} | – | – | 64 | ${(direct.paddedShare * 100).toFixed(1)}% | 1.00 |`);
for (const row of rows) console.log(row);
