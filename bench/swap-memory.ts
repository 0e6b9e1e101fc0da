// Memory across hot swaps: does RSS stay flat when versions are swapped many times under traffic,
// i.e. are old sessions, batchers and their metric series really released? Swaps alternate between
// two version folders (every swap builds a fresh session), with scoring requests between swaps.
// For scale it also measures what one extra session of the same model costs, so the growth can be
// read as "how many sessions' worth leaked". Figures go in docs/operations.md.
//
//   node --expose-gc --import tsx bench/swap-memory.ts [--swaps 50] [--heads 16] [--from DIR]
//        [--max-growth-mb 48] [--json out.json]
//
// --from DIR swaps copies of a model folder you give (e.g. models/harmless/0) instead of the
// built-in bag-of-words model with a GPT-2 vocabulary and --heads reward heads (16 heads = 3.2 MB
// of weights per session). Exits 1 when RSS after the last swap exceeds RSS after the first 10
// swaps by more than --max-growth-mb.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ModelVersion, type LoadOptions } from '../src/scoring/model-version.js';
import { DEFAULT_CONFIG, createService, type Service } from '../src/service.js';
import { buildBowRewardGraph, randomBowWeights } from '../src/training/bow-model.js';

const { values: args } = parseArgs({
  options: {
    swaps: { type: 'string', default: '50' },
    heads: { type: 'string', default: '16' },
    from: { type: 'string' },
    'max-growth-mb': { type: 'string', default: '48' },
    'requests-per-swap': { type: 'string', default: '64' },
    json: { type: 'string' },
  },
});
const SWAPS = Number(args.swaps);
const HEADS = Number(args.heads);
const MAX_GROWTH_MB = Number(args['max-growth-mb']);
const REQUESTS_PER_SWAP = Number(args['requests-per-swap']);
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (message: string): void => console.error(`[swap-memory] ${message}`);

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) log('warning: run with node --expose-gc for steadier figures');

const mb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

/** RSS after a full GC and a moment for ORT's released arenas to go back to the allocator. */
async function settledRss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return process.memoryUsage().rss;
}

function writeVersion(dir: string, seed: number): void {
  if (args.from !== undefined) {
    cpSync(args.from, dir, { recursive: true });
    writeFileSync(join(dir, 'READY'), '');
    return;
  }
  mkdirSync(dir, { recursive: true });
  const tokenizerPath = join(REPO, 'data', 'tokenizers', 'gpt2', 'tokenizer.json');
  const vocab = Object.keys((JSON.parse(readFileSync(tokenizerPath, 'utf8')) as { model: { vocab: object } }).model.vocab).length;
  writeFileSync(join(dir, 'model.onnx'), buildBowRewardGraph(randomBowWeights(vocab, HEADS, 256, seed)));
  copyFileSync(tokenizerPath, join(dir, 'tokenizer.json'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 256 }));
  writeFileSync(join(dir, 'rmserve.json'), JSON.stringify({ format_version: 1, max_length: 256 }));
}

async function traffic(service: Service, round: number): Promise<void> {
  const replies = await Promise.all(
    Array.from({ length: REQUESTS_PER_SWAP }, (_, i) =>
      service.app.inject({
        method: 'POST',
        url: '/v1/score',
        payload: { items: [{ prompt: `round ${round} question ${i} about something`, response: `answer ${i} `.repeat(1 + (i % 7)) }] },
      }),
    ),
  );
  const failed = replies.filter((r) => r.statusCode !== 200);
  if (failed.length > 0) throw new Error(`${failed.length} requests failed: ${failed[0]!.body}`);
}

const root = mkdtempSync(join(tmpdir(), 'rmserve-swap-memory-'));
try {
  writeVersion(join(root, 'rm', '1'), 1);
  writeVersion(join(root, 'rm', '2'), 2);
  const service = await createService({ modelsRoot: root, cacheSize: 0 });
  await traffic(service, 0);
  const samples: { swaps: number; rssMb: number; heapMb: number }[] = [];
  const sample = async (swaps: number): Promise<number> => {
    const rss = await settledRss();
    samples.push({ swaps, rssMb: mb(rss), heapMb: mb(process.memoryUsage().heapUsed) });
    log(`after ${swaps} swaps: rss ${mb(rss)} MB, heap ${mb(process.memoryUsage().heapUsed)} MB`);
    return rss;
  };
  const start = await sample(0);
  let afterTen = start;
  const started = performance.now();
  for (let s = 1; s <= SWAPS; s++) {
    await service.registry.load('rm', s % 2 === 0 ? '1' : '2', { pin: true });
    await traffic(service, s);
    if (s % 10 === 0 || s === SWAPS) {
      // Let the replaced versions' linger windows pass so they are released before measuring.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const rss = await sample(s);
      if (s === 10) afterTen = rss;
    }
  }
  const swapSeconds = (performance.now() - started) / 1000;
  const end = samples.at(-1)!.rssMb * 2 ** 20;

  // Scale: what holding 5 more sessions of this model (never released) would cost.
  const held: ModelVersion[] = [];
  const d = DEFAULT_CONFIG;
  const options: LoadOptions = {
    metrics: service.metrics,
    session: { device: d.device },
    batcher: { maxBatchSize: d.maxBatchSize, maxBatchTokens: d.maxBatchTokens, maxWaitMs: d.maxWaitMs, maxQueueItems: d.maxQueueItems },
  };
  const beforeHeld = await settledRss();
  for (let i = 0; i < 5; i++) held.push(await ModelVersion.load('rm', `held-${i}`, join(root, 'rm', i % 2 === 0 ? '1' : '2'), options));
  const perSessionMb = mb(((await settledRss()) - beforeHeld) / 5);
  for (const version of held) await version.release(0);
  await service.close();

  const growthMb = mb(end - afterTen);
  const result = {
    node: process.version,
    model: args.from ?? `bag-of-words, GPT-2 vocabulary, ${HEADS} heads`,
    swaps: SWAPS,
    requestsPerSwap: REQUESTS_PER_SWAP,
    secondsPerSwapWithTraffic: Math.round((swapSeconds / SWAPS) * 1000) / 1000,
    rssStartMb: mb(start),
    rssAfter10Mb: mb(afterTen),
    rssEndMb: mb(end),
    growthAfter10Mb: growthMb,
    perExtraSessionMb: perSessionMb,
    maxGrowthMb: MAX_GROWTH_MB,
    samples,
  };
  console.log(JSON.stringify(result, null, 2));
  if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
  if (growthMb > MAX_GROWTH_MB) {
    log(`FAIL: RSS grew ${growthMb} MB between swap 10 and swap ${SWAPS} (bound ${MAX_GROWTH_MB} MB)`);
    process.exitCode = 1;
  } else {
    log(`ok: RSS grew ${growthMb} MB between swap 10 and swap ${SWAPS} (bound ${MAX_GROWTH_MB} MB; one extra session costs ${perSessionMb} MB)`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
