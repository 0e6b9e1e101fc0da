// Would a SharedArrayBuffer hand-off make the inference thread's hop cheaper than postMessage?
// A batch of one 150-token row run back to back three ways, with ORT spinning on (the server's
// default): on this thread (RewardSession, as --no-inference-thread serves); on the server's
// inference thread (ThreadedRewardSession: a postMessage each way); and on a thread of this file
// that blocks in Atomics.wait for the next row in shared memory and answers with Atomics.notify,
// which this thread awaits with Atomics.waitAsync. No HTTP, no tokenization. The three are
// interleaved round by round, in a rotating order, so a change in the machine's load falls on all
// of them (docs/benchmarks.md, "ORT spinning and the thread hop at c = 1").
//   node --import tsx bench/hop-transport.ts [--model models/harmless/1/model.onnx] [--runs 1000] [--rounds 8] [--length 150]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { isMainThread, Worker, workerData, parentPort } from 'node:worker_threads';
import { RewardSession } from '../src/model/onnx-session.js';
import { ThreadedRewardSession, type RewardRunner } from '../src/model/session-thread.js';

const OPTIONS = { device: 'cpu', allowSpinning: true } as const;
/** Shared memory: a request counter, a reply counter, then the row's length and ids, then the reward. */
const CONTROL_BYTES = 16;
const MAX_LENGTH = 4096;

/** What the timing loop needs of each of the three ways. */
type Runner = Pick<RewardRunner, 'run'>;

interface SharedLayout {
  control: Int32Array; // [0] requests sent, [1] requests answered
  row: Int32Array; // [0] length, then the ids
  reward: Float32Array;
}

/** Atomics.waitAsync (Node 16+), which the ES2023 lib this repo compiles against does not declare. */
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;

function layout(buffer: SharedArrayBuffer): SharedLayout {
  return {
    control: new Int32Array(buffer, 0, 4),
    row: new Int32Array(buffer, CONTROL_BYTES, MAX_LENGTH + 1),
    reward: new Float32Array(buffer, CONTROL_BYTES + 4 * (MAX_LENGTH + 1), 1),
  };
}

if (!isMainThread) {
  // The Atomics thread: wait for request n, run it, publish the reward, count it answered.
  const { model, buffer } = workerData as { model: string; buffer: SharedArrayBuffer };
  const shared = layout(buffer);
  const session = await RewardSession.create(model, 0, 'right', OPTIONS);
  parentPort?.postMessage('ready');
  for (let seen = 0; ; ) {
    Atomics.wait(shared.control, 0, seen);
    seen = Atomics.load(shared.control, 0);
    if (seen < 0) break;
    const row = Array.from(shared.row.subarray(1, 1 + (shared.row[0] as number)));
    const { rewards } = await session.run([row]);
    shared.reward[0] = rewards[0]?.[0] ?? Number.NaN;
    Atomics.store(shared.control, 1, seen);
    Atomics.notify(shared.control, 1);
  }
  await session.release();
} else {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/harmless/1/model.onnx' },
      runs: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '8' },
      length: { type: 'string', default: '150' },
    },
  });
  const model = values.model as string;
  const runs = Number(values.runs);
  const rounds = Number(values.rounds);
  const length = Number(values.length);
  if (!(length >= 1 && length <= MAX_LENGTH)) throw new Error(`--length must be 1..${MAX_LENGTH} (the shared row's size)`);
  const rows = [Array.from({ length }, (_, i) => 5 + (i % 300))];

  /** The Atomics thread as a runner, so all three are timed by the same loop. */
  async function atomicsRunner(): Promise<{ runner: Runner; stop: () => Promise<void> }> {
    const buffer = new SharedArrayBuffer(CONTROL_BYTES + 4 * (MAX_LENGTH + 2));
    const shared = layout(buffer);
    // This file is the worker too, loaded as the server's own workers load theirs (tsx's loader
    // is not inherited by a worker; src/worker-module.mjs registers it where it is needed).
    const workerModule = new URL('../src/worker-module.mjs', import.meta.url).href;
    const load = `import(${JSON.stringify(workerModule)}).then((m) => m.loadWorkerModule(${JSON.stringify(import.meta.url)}, 'hop-transport'))`;
    const worker = new Worker(load, { eval: true, workerData: { model, buffer } });
    await new Promise((resolve) => worker.once('message', resolve));
    let sent = 0;
    const run = async (batch: readonly (readonly number[])[]): Promise<{ rewards: Float32Array[]; paddedTokens: number }> => {
      const row = batch[0] ?? [];
      shared.row[0] = row.length;
      shared.row.set(row, 1);
      const answered = Atomics.load(shared.control, 1);
      Atomics.store(shared.control, 0, ++sent);
      Atomics.notify(shared.control, 0);
      const wait = waitAsync(shared.control, 1, answered);
      if (wait.async) await wait.value;
      return { rewards: [Float32Array.of(shared.reward[0] as number)], paddedTokens: row.length };
    };
    const stop = async (): Promise<void> => {
      Atomics.store(shared.control, 0, -1);
      Atomics.notify(shared.control, 0);
      await new Promise((resolve) => worker.once('exit', resolve));
    };
    return { runner: { run }, stop };
  }

  /** Mean milliseconds per run. */
  async function msPerRun(runner: Runner, count: number): Promise<number> {
    const t = performance.now();
    for (let i = 0; i < count; i++) await runner.run(rows);
    return (performance.now() - t) / count;
  }

  const inline = await RewardSession.create(model, 0, 'right', OPTIONS);
  const threaded = await ThreadedRewardSession.create(model, 0, 'right', OPTIONS);
  const atomics = await atomicsRunner();
  const ways: [string, Runner][] = [['inline', inline], ['postMessage', threaded], ['Atomics', atomics.runner]];
  for (const [, runner] of ways) await msPerRun(runner, 100);

  console.log(`${model}, one row of ${length} tokens, ${runs} runs per cell, ORT spinning on; load average ${loadavg()[0]?.toFixed(2)}\n`);
  console.log('| round | inline ms | postMessage thread ms | Atomics thread ms | postMessage − inline | Atomics − inline |');
  console.log('|---|---|---|---|---|---|');
  const sums = { postMessage: 0, Atomics: 0 };
  for (let round = 1; round <= rounds; round++) {
    const ms = new Map<string, number>();
    for (let k = 0; k < ways.length; k++) {
      const [name, runner] = ways[(k + round) % ways.length] as [string, Runner];
      ms.set(name, await msPerRun(runner, runs));
    }
    const [a, b, c] = [ms.get('inline') ?? 0, ms.get('postMessage') ?? 0, ms.get('Atomics') ?? 0];
    sums.postMessage += b - a;
    sums.Atomics += c - a;
    console.log(`| ${round} | ${a.toFixed(3)} | ${b.toFixed(3)} | ${c.toFixed(3)} | ${(b - a).toFixed(3)} | ${(c - a).toFixed(3)} |`);
  }
  console.log(`| mean | | | | ${(sums.postMessage / rounds).toFixed(3)} | ${(sums.Atomics / rounds).toFixed(3)} |`);
  await atomics.stop();
  await threaded.release();
  await inline.release();
}
