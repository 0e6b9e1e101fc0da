// Where a lone single-item request's time goes: the per-request peer, rmserve as it ships and
// rmserve with --no-inference-thread, one at a time on this machine, each sent the same HH items
// it has never seen (after a warm-up on others), one connection. Reports requests/s and the main
// thread's CPU per request (utime and stime of /proc/<pid>/task/<pid>/stat): the default's main
// thread runs no ONNX, the other two run it there (docs/benchmarks.md, "A main-thread session").
//   node --import tsx bench/c1-cpu.ts [--model models/harmless/1] [--requests 2000] [--warmup 300] [--rounds 1]
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { readPreferenceFile } from '../src/training/data.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/harmless/1' },
    requests: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '1' },
  },
});
const modelDir = resolve(REPO_ROOT, values.model);
const requests = Number(values.requests);
const warmup = Number(values.warmup);
const PORT = 18931;

// Chosen and rejected responses of every pair: more distinct items than a run sends, so the
// measured ones were never tokenized before (the tokenizers' word caches start cold for them).
const pairs = readPreferenceFile(join(REPO_ROOT, 'data/hh-rlhf/harmless-base-test.jsonl.gz'));
const items = pairs.flatMap((p) => [{ prompt: p.prompt, response: p.chosen }, { prompt: p.prompt, response: p.rejected }]);
if (items.length < requests + warmup) throw new Error(`${items.length} items for ${requests} + ${warmup} requests`);

const root = mkdtempSync(join(tmpdir(), 'rmserve-c1-'));
cpSync(modelDir, join(root, basename(dirname(modelDir)), basename(modelDir)), { recursive: true });

const contenders: { name: string; argv: string[] }[] = [
  { name: 'peer', argv: ['bench/per-request-peer.ts', '--model', modelDir, '--port', String(PORT)] },
  ...[[], ['--no-inference-thread']].map((flags) => ({
    name: ['rmserve', ...flags].join(' '),
    argv: ['src/cli.ts', 'serve', '--models', root, '--port', String(PORT), '--log-level', 'warn', '--cache-size', '0', '--no-watch', ...flags],
  })),
];

/** Main-thread CPU milliseconds (user, system) of a process. */
function mainThreadCpu(pid: number): [number, number] {
  const fields = (readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1] as string).split(' ');
  return [Number(fields[11]) * 10, Number(fields[12]) * 10];
}

async function send(pool: Pool, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const res = await pool.request({ method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [items[i]] }) });
    const body = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}: ${body.slice(0, 200)}`);
  }
}

async function measure(argv: string[]): Promise<{ perSecond: number; userMs: number; sysMs: number }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ...argv], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    for (let i = 0; ; i++) {
      if (i === 600) throw new Error(`${argv.join(' ')} did not start`);
      try {
        if ((await fetch(`http://127.0.0.1:${PORT}/health`)).ok) break;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const pool = new Pool(`http://127.0.0.1:${PORT}`, { connections: 1 });
    await send(pool, requests, warmup);
    const [user0, sys0] = mainThreadCpu(child.pid as number);
    const started = performance.now();
    await send(pool, 0, requests);
    const seconds = (performance.now() - started) / 1000;
    const [user1, sys1] = mainThreadCpu(child.pid as number);
    await pool.close();
    return { perSecond: requests / seconds, userMs: (user1 - user0) / requests, sysMs: (sys1 - sys0) / requests };
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

console.log(`${values.model}: ${requests} single-item requests at c = 1 after ${warmup} warm-up ones\n`);
console.log('| round | server | requests/s | main thread user ms / request | main thread sys ms / request |');
console.log('|---|---|---|---|---|');
try {
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const { name, argv } of contenders) {
      const m = await measure(argv);
      console.log(`| ${round} | ${name} | ${m.perSecond.toFixed(1)} | ${m.userMs.toFixed(3)} | ${m.sysMs.toFixed(3)} |`);
    }
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
