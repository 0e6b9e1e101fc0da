// Why a request's tokenization costs more in the server than in a loop: what runs between two
// requests (at c = 1, an ONNX run on the inference thread) pushes the tokenizer's maps and code
// out of the core's caches. Each HH item is tokenized as the scorer does (tokenizeItems: render,
// encode, truncate), with one of these before it, and only the tokenization is timed:
//
//   loop      nothing: items back to back, the tokenizer's data stays cached
//   sleep     2 ms asleep: the thread gives up its core, as an idle server's event loop does
//   sweep N   a walk over an N MB buffer, one write per 64-byte line: evicts N MB of cache
//   run       a batch-1 run of the model on the inference thread (the default serving session)
//
// Every mode gets items never tokenized before in this process (disjoint slices of the HH test
// items), so BPE's word cache is as warm for each; the mode order rotates between rounds.
//   node --import tsx bench/tokenize-between-runs.ts [--model models/harmless/1] [--rounds 2] [--sweep-mb 1,4,16]
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { tokenizeItems } from '../src/model/group-tokenize.js';
import { readModelFolder } from '../src/model/model-folder.js';
import { openRewardSession } from '../src/model/session-thread.js';
import { readPreferenceFile } from '../src/training/data.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/harmless/1' },
    rounds: { type: 'string', default: '2' },
    'sweep-mb': { type: 'string', default: '1,4,16' },
  },
});
const dir = values.model as string;
const spec = readModelFolder(dir);
const items = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz').flatMap((p) => [
  { prompt: p.prompt, response: p.chosen },
  { prompt: p.prompt, response: p.rejected },
]);
const session = await openRewardSession(join(dir, 'model.onnx'), spec.padId, spec.paddingSide, { device: 'cpu', allowSpinning: true });

interface Mode {
  name: string;
  /** Runs before each item; gets the previous item's tokens (the run scores them, as the server would). */
  before(previous: number[]): Promise<void> | void;
}
const sweeps = (values['sweep-mb'] as string).split(',').map(Number);
const buffers = new Map(sweeps.map((mb) => [mb, new Float64Array((mb << 20) / 8)]));
const modes: Mode[] = [
  { name: 'loop', before: () => undefined },
  { name: 'sleep 2 ms', before: () => sleep(2) },
  ...sweeps.map((mb): Mode => ({
    name: `sweep ${mb} MB`,
    before: () => {
      const buffer = buffers.get(mb) as Float64Array;
      for (let i = 0; i < buffer.length; i += 8) buffer[i] = (buffer[i] as number) + 1;
    },
  })),
  { name: 'batch-1 ONNX run', before: async (previous) => void (await session.run([previous])) },
];

const rounds = Number(values.rounds);
const perMode = Math.floor(items.length / (modes.length * rounds));
const quantile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))] as number;

console.log(`${dir}, ${perMode} fresh HH items per cell, timed around tokenizeItems only; load average ${loadavg()[0]?.toFixed(2)}\n`);
console.log('| round | before each item | p50 µs | mean µs | p90 µs |');
console.log('|---|---|---|---|---|');
let offset = 0;
for (let round = 1; round <= rounds; round++) {
  const order = modes.map((_, i) => modes[(i + round - 1) % modes.length] as Mode);
  for (const mode of order) {
    const slice = items.slice(offset, offset + perMode);
    offset += perMode;
    const micros: number[] = [];
    let previous = [1, 2, 3];
    for (const item of slice) {
      await mode.before(previous);
      const started = performance.now();
      const { items: tokenized } = tokenizeItems(spec, [item], spec.truncationSide, true);
      micros.push((performance.now() - started) * 1000);
      previous = tokenized[0]?.ids ?? previous;
    }
    const mean = micros.reduce((a, b) => a + b, 0) / micros.length;
    console.log(`| ${round} | ${mode.name} | ${quantile(micros, 0.5).toFixed(0)} | ${mean.toFixed(0)} | ${quantile(micros, 0.9).toFixed(0)} |`);
  }
}
await session.release();
