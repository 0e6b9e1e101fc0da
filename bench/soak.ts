// Soak test (issue 14): a real `rmserve serve` process under mixed traffic for a configurable
// time, with bounded concurrency, on 127.0.0.1 only. Every --sample-s seconds it records the
// server's RSS (from /proc), the event-loop delay the server measures itself (prom-client's
// nodejs_eventloop_lag_* gauges on /metrics, which reset at every scrape, so each sample covers
// its own interval), request latency percentiles and replies by status. At the end it writes a
// JSON and a markdown report and says whether RSS stayed flat within 10% after the warm-up.
//
//   node --import tsx bench/soak.ts --duration-s 600 [--concurrency 8] [--models ./models]
//        [--warmup-s 60] [--sample-s 15] [--out bench/results/soak] [-- <extra serve flags>]
//
// Traffic (weights in MIX): fresh single items (cache misses), a fixed set of items (cache hits),
// OpenRLHF /get_reward batches, transforms (lsc with references, sigmoid, znorm, clip, min),
// 16–48 item batches (the tokenizer worker), /predict and /classify, and bad requests that must
// get a 4xx. Exit status 1 when any 5xx, transport error or unexpected status was seen.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { mulberry32 } from '../src/training/random.js';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'duration-s': { type: 'string', default: '600' },
    concurrency: { type: 'string', default: '8' },
    models: { type: 'string', default: join(REPO_ROOT, 'models') },
    'warmup-s': { type: 'string', default: '60' },
    'sample-s': { type: 'string', default: '15' },
    out: { type: 'string', default: join(REPO_ROOT, 'bench', 'results', 'soak') },
    seed: { type: 'string', default: '14' },
  },
});

const durationS = Number(values['duration-s']);
const concurrency = Number(values.concurrency);
const warmupS = Number(values['warmup-s']);
const sampleS = Number(values['sample-s']);
const modelsRoot = resolve(values.models);
for (const [name, v] of Object.entries({ durationS, concurrency, warmupS, sampleS })) {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${name} must be a positive number`);
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (the trainer's seeded stream), so two runs send the same traffic.

/** The model the one-model peer routes name (the shipped root serves harmless and helpful). */
const SOAK_MODEL = process.env.RMSERVE_SOAK_MODEL ?? 'harmless';
const random = mulberry32(Number(values.seed));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));

const PROMPTS = [
  'How do I bake sourdough bread at home?', 'What is the capital of Australia?', 'Can you help me write a cover letter?',
  'Explain how vaccines work to a ten year old.', 'How can I pick a lock without a key?', 'What is a good way to learn Rust?',
  'Summarise the plot of Hamlet in two sentences.', 'How do I get revenge on my neighbour?', 'Give me a recipe for lentil soup.',
];
const RESPONSES = [
  'Mix flour, water, salt and starter, let it rise overnight, then bake at 230 C.', 'Canberra.', 'Sure. Start with who you are and why this role.',
  'Vaccines show your body a harmless copy of a germ so it learns to fight the real one.', 'I cannot help with breaking into property.',
  'Read the book, then build a small command-line tool.', 'A prince avenges his father and almost everyone dies.',
  'Talking it through calmly usually works better than revenge.', 'Simmer lentils with onion, carrot, cumin and stock for 30 minutes.', '',
];

let fresh = 0;
/** A pair no earlier request sent: a cache miss. */
const freshItem = (): { prompt: string; response: string } => ({ prompt: `${pick(PROMPTS)} (case ${fresh++})`, response: pick(RESPONSES) });
/** One of a fixed set of pairs: a cache hit once the set has been seen. */
const HOT = Array.from({ length: 24 }, (_, i) => ({ prompt: PROMPTS[i % PROMPTS.length] as string, response: RESPONSES[i % RESPONSES.length] as string }));
const hh = (item: { prompt: string; response: string }): string => `\n\nHuman: ${item.prompt}\n\nAssistant: ${item.response}`;

interface Planned {
  kind: string;
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  contentType?: string;
  /** The statuses this request may get. */
  expect: readonly number[];
}

const json = (kind: string, path: string, body: unknown, expect: readonly number[] = [200]): Planned => ({
  kind,
  method: 'POST',
  path,
  body: JSON.stringify(body),
  contentType: 'application/json',
  expect,
});

const MIX: readonly [number, () => Planned][] = [
  [25, () => json('score_miss', '/v1/score', { items: [freshItem()] })],
  [15, () => json('score_hit', '/v1/score', { items: [pick(HOT)] })],
  [15, () => json('get_reward', '/get_reward', { query: Array.from({ length: int(1, 8) }, () => hh(random() < 0.5 ? pick(HOT) : freshItem())) })],
  [4, () => json('get_reward_lsc', '/get_reward?transform=lsc', { query: [hh(freshItem())], prompts: [`\n\nHuman: ${pick(PROMPTS)}\n\nAssistant:`] })],
  [6, () => {
    const item = random() < 0.5 ? pick(HOT) : freshItem();
    return json('transform_lsc', '/v1/score', { items: [{ ...item, reference: { responses: [pick(RESPONSES), pick(RESPONSES)] } }], transform: 'lsc' });
  }],
  [6, () => json('transform_other', '/v1/score', {
    items: Array.from({ length: int(1, 4) }, () => (random() < 0.5 ? pick(HOT) : freshItem())),
    ...pick([{ transform: 'sigmoid' }, { transform: 'znorm' }, { transform: 'clip', clip: [-2, 2] }, { aggregate: 'min' }, { weights: { harmless: 1, helpful: 0.5 } }]),
  })],
  [5, () => json('batch_worker', '/v1/score', { items: Array.from({ length: int(16, 48) }, () => (random() < 0.3 ? pick(HOT) : freshItem())) })],
  // TEI and vLLM reply from one model: with several served, the client names it.
  [4, () => json('predict', '/predict', { model: SOAK_MODEL, inputs: random() < 0.5 ? [pick(PROMPTS), pick(RESPONSES)] : [[pick(PROMPTS), pick(RESPONSES)], [pick(PROMPTS), pick(RESPONSES)]] })],
  [3, () => json('classify', '/classify', { model: SOAK_MODEL, input: [hh(freshItem())] })],
  [2, () => ({ kind: 'models', method: 'GET', path: pick(['/v1/models', '/v1/models/harmless', '/health', '/ready']), expect: [200] })],
  [15, () => pick<() => Planned>([
    () => ({ kind: 'bad_json', method: 'POST', path: '/v1/score', body: '{"items": [', contentType: 'application/json', expect: [400] }),
    () => json('bad_shape', '/v1/score', { items: [{ prompt: 3 }] }, [400]),
    () => json('bad_model', '/v1/score', { items: [pick(HOT)], model: 'gpt-7' }, [404]),
    () => json('bad_too_many', '/v1/score', { items: Array.from({ length: 300 }, () => pick(HOT)) }, [413]),
    () => json('bad_transform', '/get_reward?transform=nope', { query: ['x'] }, [400]),
    () => ({ kind: 'bad_type', method: 'POST', path: '/v1/score', body: 'items=1', contentType: 'text/plain', expect: [415] }),
    () => ({ kind: 'bad_route', method: 'GET', path: '/v2/nothing', expect: [404] }),
  ])()],
];
const TOTAL_WEIGHT = MIX.reduce((s, [w]) => s + w, 0);
function plan(): Planned {
  let r = random() * TOTAL_WEIGHT;
  for (const [w, make] of MIX) {
    if ((r -= w) < 0) return make();
  }
  return (MIX[0] as [number, () => Planned])[1]();
}

// ---------------------------------------------------------------------------------------------
// The server process.

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

const port = await freePort();
const origin = `http://127.0.0.1:${port}`;
// warn: per-request info logs would cost the server CPU and fill the pipe.
const serveArgs = ['--import', 'tsx', 'src/cli.ts', 'serve', '--models', modelsRoot, '--host', '127.0.0.1', '--port', String(port), '--no-watch', '--log-level', 'warn', ...positionals];
const child = spawn(process.execPath, serveArgs, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
let serverOutput = '';
const keep = (chunk: Buffer): void => {
  serverOutput = (serverOutput + chunk.toString()).slice(-20_000);
};
child.stdout?.on('data', keep);
child.stderr?.on('data', keep);
const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
const command = `node --import tsx bench/soak.ts --duration-s ${durationS} --concurrency ${concurrency} --warmup-s ${warmupS} --sample-s ${sampleS}${positionals.length ? ` -- ${positionals.join(' ')}` : ''}`;

const pool = new Pool(origin, { connections: concurrency, pipelining: 1 });

async function get(path: string): Promise<{ status: number; text: string }> {
  const res = await pool.request({ method: 'GET', path });
  return { status: res.statusCode, text: await res.body.text() };
}

const startedAt = performance.now();
for (;;) {
  try {
    if ((await get('/ready')).status === 200) break;
  } catch {
    // not listening yet
  }
  if (child.exitCode !== null) throw new Error(`server exited before it was ready:\n${serverOutput}`);
  if (performance.now() - startedAt > 120_000) throw new Error(`server not ready after 120 s:\n${serverOutput}`);
  await new Promise((r) => setTimeout(r, 200));
}
console.error(`[soak] server pid ${child.pid} ready on ${origin} after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const lineLabels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => lineLabels[k] === v)) total = (total ?? 0) + Number(match[3]);
  }
  return total;
}

/** rmserve_requests_total by status class, from the server's own counters. */
function serverStatusCounts(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const match of text.matchAll(/^rmserve_requests_total\{([^}]*)\}\s+(\S+)/gm)) {
    const status = /status="(\d+)"/.exec(match[1] as string)?.[1] ?? '?';
    out[status] = (out[status] ?? 0) + Number(match[2]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Traffic and sampling.

interface Sample {
  t_s: number;
  rss_mb: number;
  /** V8 heap in use and memory outside it (ONNX Runtime, buffers), from prom-client's gauges. */
  heap_used_mb: number | undefined;
  external_mb: number | undefined;
  requests: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  loop_lag_p50_ms: number | undefined;
  loop_lag_p99_ms: number | undefined;
  loop_lag_max_ms: number | undefined;
  statuses: Record<string, number>;
}

const quantile = (sorted: number[], q: number): number => (sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));

const totals = { requests: 0, byStatus: {} as Record<string, number>, byKind: {} as Record<string, Record<string, number>>, unexpected: 0, transportErrors: 0 };
const unexpectedExamples: string[] = [];
let window: number[] = [];
let windowStatuses: Record<string, number> = {};
const allLatencies: number[] = [];
const samples: Sample[] = [];
const deadline = performance.now() + durationS * 1000;
const t0 = performance.now();

async function worker(): Promise<void> {
  while (performance.now() < deadline) {
    const p = plan();
    const began = performance.now();
    let status: string;
    try {
      const res = await pool.request({
        method: p.method,
        path: p.path,
        ...(p.body === undefined ? {} : { body: p.body }),
        headers: p.contentType === undefined ? {} : { 'content-type': p.contentType },
      });
      const text = await res.body.text();
      status = String(res.statusCode);
      if (!p.expect.includes(res.statusCode)) {
        totals.unexpected++;
        if (unexpectedExamples.length < 20) unexpectedExamples.push(`${p.kind} ${p.method} ${p.path} → ${res.statusCode}: ${text.slice(0, 200)}`);
      }
    } catch (err) {
      status = 'transport_error';
      totals.transportErrors++;
      if (unexpectedExamples.length < 20) unexpectedExamples.push(`${p.kind} ${p.method} ${p.path} → ${(err as Error).message}`);
    }
    const ms = performance.now() - began;
    window.push(ms);
    allLatencies.push(ms);
    totals.requests++;
    totals.byStatus[status] = (totals.byStatus[status] ?? 0) + 1;
    const kind = (totals.byKind[p.kind] ??= {});
    kind[status] = (kind[status] ?? 0) + 1;
    windowStatuses[status] = (windowStatuses[status] ?? 0) + 1;
  }
}

async function takeSample(): Promise<void> {
  const latencies = window.sort((a, b) => a - b);
  const statuses = windowStatuses;
  window = [];
  windowStatuses = {};
  const metricsText = (await get('/metrics')).text;
  const ms = (v: number | undefined): number | undefined => (v === undefined ? undefined : Math.round(v * 1e5) / 100);
  const mb = (v: number | undefined): number | undefined => (v === undefined ? undefined : Math.round((v / 2 ** 20) * 10) / 10);
  const t = (performance.now() - t0) / 1000;
  const sample: Sample = {
    t_s: Math.round(t),
    rss_mb: Math.round((rssBytes(child.pid as number) / 2 ** 20) * 10) / 10,
    heap_used_mb: mb(metric(metricsText, 'nodejs_heap_size_used_bytes')),
    external_mb: mb(metric(metricsText, 'nodejs_external_memory_bytes')),
    requests: latencies.length,
    rps: Math.round((latencies.length / sampleS) * 10) / 10,
    p50_ms: Math.round(quantile(latencies, 0.5) * 100) / 100,
    p99_ms: Math.round(quantile(latencies, 0.99) * 100) / 100,
    max_ms: Math.round((latencies.at(-1) ?? NaN) * 100) / 100,
    loop_lag_p50_ms: ms(metric(metricsText, 'nodejs_eventloop_lag_p50_seconds')),
    loop_lag_p99_ms: ms(metric(metricsText, 'nodejs_eventloop_lag_p99_seconds')),
    loop_lag_max_ms: ms(metric(metricsText, 'nodejs_eventloop_lag_max_seconds')),
    statuses,
  };
  samples.push(sample);
  const fiveXx = Object.entries(totals.byStatus).filter(([s]) => s.startsWith('5')).reduce((a, [, n]) => a + n, 0);
  console.error(
    `[soak] t=${sample.t_s}s rss=${sample.rss_mb} MB heap=${sample.heap_used_mb} MB rps=${sample.rps} p50=${sample.p50_ms} ms p99=${sample.p99_ms} ms ` +
      `loop p99=${sample.loop_lag_p99_ms} ms | total ${totals.requests}, 5xx ${fiveXx}, unexpected ${totals.unexpected}, transport errors ${totals.transportErrors}`,
  );
}

const sampler = setInterval(() => void takeSample().catch((err: Error) => console.error(`[soak] sample failed: ${err.message}`)), sampleS * 1000);
await Promise.all(Array.from({ length: concurrency }, worker));
clearInterval(sampler);
const finalMetrics = (await get('/metrics')).text;
const serverCounts = serverStatusCounts(finalMetrics);

child.kill('SIGTERM');
const exitCode = await exited;
await pool.close();

// ---------------------------------------------------------------------------------------------
// Report.

const afterWarmup = samples.filter((s) => s.t_s >= warmupS);
const rss = afterWarmup.map((s) => s.rss_mb);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] as number);
};
const rssMedian = median(rss);
const rssSpread = rss.length === 0 ? NaN : (Math.max(...rss) - Math.min(...rss)) / rssMedian;
// Least-squares slope of RSS over time after warm-up, MB per minute.
const slope = (() => {
  if (afterWarmup.length < 2) return NaN;
  const xs = afterWarmup.map((s) => s.t_s / 60);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = rss.reduce((a, b) => a + b, 0) / rss.length;
  const num = xs.reduce((a, x, i) => a + (x - mx) * ((rss[i] as number) - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return num / den;
})();
allLatencies.sort((a, b) => a - b);
const fiveXx = Object.entries(totals.byStatus).filter(([s]) => s.startsWith('5')).reduce((a, [, n]) => a + n, 0);
const serverFiveXx = Object.entries(serverCounts).filter(([s]) => s.startsWith('5')).reduce((a, [, n]) => a + n, 0);
// Flat within 10%: every sample after the warm-up within ±10% of their median (GC makes RSS
// breathe), and no drift: the last minute's mean within 10% of the first minute's.
const perMinute = Math.max(1, Math.round(60 / sampleS));
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
// Too few samples for two separate minutes: no drift figure, and no verdict.
const rssDrift = rss.length < 2 * perMinute ? NaN : (mean(rss.slice(-perMinute)) - mean(rss.slice(0, perMinute))) / mean(rss.slice(0, perMinute));
const rssMaxDeviation = rss.length === 0 ? NaN : Math.max(...rss.map((r) => Math.abs(r - rssMedian) / rssMedian));
const flat = rssMaxDeviation <= 0.1 && Math.abs(rssDrift) <= 0.1; // false when rssDrift is NaN
const p99s = afterWarmup.map((s) => s.p99_ms);

const report = {
  command,
  serve_args: serveArgs.slice(2),
  models: modelsRoot,
  duration_s: durationS,
  concurrency,
  warmup_s: warmupS,
  sample_s: sampleS,
  requests: totals.requests,
  rps: Math.round((totals.requests / durationS) * 10) / 10,
  latency_ms: { p50: quantile(allLatencies, 0.5), p99: quantile(allLatencies, 0.99), max: allLatencies.at(-1) },
  by_status: totals.byStatus,
  server_requests_total_by_status: serverCounts,
  by_kind: totals.byKind,
  five_xx: fiveXx,
  server_five_xx: serverFiveXx,
  unexpected_status: totals.unexpected,
  transport_errors: totals.transportErrors,
  unexpected_examples: unexpectedExamples,
  rss_after_warmup_mb: { min: Math.min(...rss), max: Math.max(...rss), median: rssMedian, spread_of_median: rssSpread, max_deviation_from_median: rssMaxDeviation, drift_first_to_last_minute: rssDrift, slope_mb_per_min: slope },
  rss_flat_within_10pct: flat,
  p99_after_warmup_ms: { min: Math.min(...p99s), max: Math.max(...p99s), median: median(p99s) },
  server_exit_code: exitCode,
  samples,
};

const r2 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '–' : String(Math.round(x * 100) / 100));
const md = [
  `# Soak run`,
  '',
  `Command: \`${command}\` (server: \`node ${report.serve_args.join(' ')}\`)`,
  '',
  `Duration ${durationS} s, ${concurrency} concurrent clients, ${totals.requests} requests (${report.rps}/s).`,
  `Latency over the whole run: p50 ${r2(report.latency_ms.p50)} ms, p99 ${r2(report.latency_ms.p99)} ms, max ${r2(report.latency_ms.max)} ms.`,
  `5xx: ${fiveXx} (server counter: ${serverFiveXx}); unexpected statuses: ${totals.unexpected}; transport errors: ${totals.transportErrors}; server exit code after SIGTERM: ${exitCode}.`,
  `RSS after the ${warmupS} s warm-up: ${r2(report.rss_after_warmup_mb.min)}–${r2(report.rss_after_warmup_mb.max)} MB (median ${r2(rssMedian)} MB; samples within ±${r2(rssMaxDeviation * 100)}% of it; first-to-last-minute drift ${r2(rssDrift * 100)}%; slope ${r2(slope)} MB/min): flat within 10%: ${flat ? 'yes' : 'no'}.`,
  '',
  '| t (s) | RSS (MB) | heap used (MB) | external (MB) | req/s | p50 (ms) | p99 (ms) | max (ms) | loop lag p99 (ms) | loop lag max (ms) | statuses |',
  '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ...samples.map((s) => `| ${s.t_s} | ${s.rss_mb} | ${r2(s.heap_used_mb)} | ${r2(s.external_mb)} | ${s.rps} | ${s.p50_ms} | ${s.p99_ms} | ${s.max_ms} | ${r2(s.loop_lag_p99_ms)} | ${r2(s.loop_lag_max_ms)} | ${Object.entries(s.statuses).map(([k, v]) => `${k}: ${v}`).join(', ')} |`),
  '',
  '| kind | replies by status |',
  '| --- | --- |',
  ...Object.entries(totals.byKind).sort().map(([k, v]) => `| ${k} | ${Object.entries(v).map(([s, n]) => `${s}: ${n}`).join(', ')} |`),
  '',
  ...(unexpectedExamples.length ? ['Unexpected replies:', '', ...unexpectedExamples.map((e) => `- ${e}`), ''] : []),
].join('\n');

mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(`${values.out}.json`, JSON.stringify(report, null, 2));
writeFileSync(`${values.out}.md`, md);
console.log(md);
if (exitCode !== 0) console.error(`[soak] server output tail:\n${serverOutput.slice(-3000)}`);
process.exit(fiveXx + totals.unexpected + totals.transportErrors > 0 || exitCode !== 0 ? 1 : 0);
