// What the inference thread and ORT's spinning cost one small run: a batch of one 150-token row
// run back to back through RewardSession on this thread (as --no-inference-thread serves) and
// through ThreadedRewardSession (the default), with ORT's thread spinning off (the default) and
// on (--ort-spinning). No HTTP, no tokenization: the per-run overhead a single-item request at
// concurrency 1 pays on top of the model (docs/benchmarks.md, "Why").
//   node --import tsx bench/session-hop.ts [--model models/harmless/1/model.onnx] [--runs 300] [--rounds 3] [--length 150] [--intra-op-threads 0]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { RewardSession } from '../src/model/onnx-session.js';
import { ThreadedRewardSession, type RewardRunner } from '../src/model/session-thread.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/harmless/1/model.onnx' },
    runs: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '3' },
    length: { type: 'string', default: '150' },
    // ORT's intra-op threads (0: ORT's default, one per core)
    'intra-op-threads': { type: 'string', default: '0' },
  },
});
const runs = Number(values.runs);
const rows = [Array.from({ length: Number(values.length) }, (_, i) => 5 + (i % 300))];

/** Mean milliseconds per run, after 50 warm-up runs. */
async function msPerRun(session: RewardRunner): Promise<number> {
  for (let i = 0; i < 50; i++) await session.run(rows);
  const t = performance.now();
  for (let i = 0; i < runs; i++) await session.run(rows);
  return (performance.now() - t) / runs;
}

console.log(`${values.model}, one row of ${values.length} tokens, ${runs} runs per cell, intra-op threads ${values['intra-op-threads'] === '0' ? 'ORT default' : values['intra-op-threads']}; load average ${loadavg()[0]?.toFixed(2)}\n`);
console.log('| ORT spinning | round | on this thread ms | on the inference thread ms | thread − inline ms |');
console.log('|---|---|---|---|---|');
for (const allowSpinning of [false, true]) {
  const options = { device: 'cpu' as const, allowSpinning, intraOpThreads: Number(values['intra-op-threads']) };
  const inline = await RewardSession.create(values.model as string, 0, 'right', options);
  const threaded = await ThreadedRewardSession.create(values.model as string, 0, 'right', options);
  for (let round = 1; round <= Number(values.rounds); round++) {
    // Alternate which goes first, so a change in the machine's load falls on both.
    let inlineMs: number;
    let threadMs: number;
    if (round % 2 === 1) {
      inlineMs = await msPerRun(inline);
      threadMs = await msPerRun(threaded);
    } else {
      threadMs = await msPerRun(threaded);
      inlineMs = await msPerRun(inline);
    }
    console.log(`| ${allowSpinning ? 'on' : 'off'} | ${round} | ${inlineMs.toFixed(3)} | ${threadMs.toFixed(3)} | ${(threadMs - inlineMs).toFixed(3)} |`);
  }
  await threaded.release();
  await inline.release();
}
