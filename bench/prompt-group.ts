// Prompt groups (GRPO): 16 responses to one prompt per request, scored with prompt groups on and
// off (`--no-prompt-groups`). Two servers in this process on 127.0.0.1, the same model folder,
// the reward cache off so every item is tokenized and run; the two are measured in alternating
// rounds, so a change in the machine's load falls on both. Per setting: server-side tokenization
// time per request (the x-tokenization-time header), request latency and pairs/s; and, in this
// process, what rendering (jinja) and tokenizing a request cost on their own.
//   node --import tsx bench/prompt-group.ts [--models models] [--model harmless] [--requests 60] [--rounds 3] [--concurrency 1,8]
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import type { ScoreItem } from '../src/model/format.js';
import { tokenizeItems } from '../src/model/group-tokenize.js';
import { createService, type Service } from '../src/service.js';
import { parseHHPair, renderHHTranscript } from '../src/training/data/hh.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'harmless' },
    requests: { type: 'string', default: '60' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '1,8' },
  },
});
const perRound = Number(values.requests);
const rounds = Number(values.rounds);
const levels = (values.concurrency as string).split(',').map(Number);

const pairs = gunzipSync(readFileSync(join('data', 'hh-rlhf', 'harmless-base-test.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .flatMap((line) => {
    const { chosen, rejected } = JSON.parse(line) as { chosen: string; rejected: string };
    const pair = parseHHPair(chosen, rejected);
    return pair === null ? [] : [pair];
  });

/** One GRPO request: a HH prompt with 16 responses, its own chosen and rejected and those of the next 7 pairs. */
function requestFor(p: number): ScoreItem[] {
  const own = pairs[p % pairs.length]!;
  const others = Array.from({ length: 7 }, (_, r) => pairs[(p + 1 + r) % pairs.length]!);
  return [own, ...others].flatMap((o) => [{ prompt: own.prompt, response: o.chosen }, { prompt: own.prompt, response: o.rejected }]);
}

// Two sets of prompts: every HH prompt in order (median 351 characters), and the multi-turn ones
// of at least 1,000 characters (the longer prompts GRPO's reasoning tasks send).
const all = pairs.map((_, p) => p);
const long = all.filter((p) => renderHHTranscript(pairs[p]!.prompt).length >= 1000);
const sets: { name: string; prompts: number[] }[] = [
  { name: 'all HH prompts', prompts: all },
  { name: 'HH prompts ≥ 1,000 chars', prompts: long },
];

const services: Record<'on' | 'off', Service> = {
  on: await createService({ modelsRoot: values.models, watch: false, cacheSize: 0, defaultModels: [values.model as string] }),
  off: await createService({ modelsRoot: values.models, watch: false, cacheSize: 0, defaultModels: [values.model as string], promptGroups: false }),
};
const origins: Record<string, string> = {};
for (const [name, service] of Object.entries(services)) {
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  origins[name] = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
}
const agent = new Agent({ connections: Math.max(...levels) });

interface Sample {
  tokenizationMs: number;
  latencyMs: number;
}

async function send(setting: 'on' | 'off', items: ScoreItem[]): Promise<Sample> {
  const t = performance.now();
  const res = await request(`${origins[setting]}/v1/score`, {
    method: 'POST',
    body: JSON.stringify({ items }),
    headers: { 'content-type': 'application/json' },
    dispatcher: agent,
  });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode}: ${await res.body.text()}`);
  await res.body.json();
  return { tokenizationMs: Number(res.headers['x-tokenization-time']), latencyMs: performance.now() - t };
}

/** `n` requests from `prompts` (starting at `from`) at concurrency `c`: samples and wall seconds. */
async function run(setting: 'on' | 'off', prompts: number[], from: number, n: number, c: number): Promise<{ samples: Sample[]; seconds: number }> {
  const samples: Sample[] = [];
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < n) {
        const i = next++;
        samples.push(await send(setting, requestFor(prompts[(from + i) % prompts.length]!)));
      }
    }),
  );
  return { samples, seconds: (performance.now() - t) / 1000 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

// In this process, no HTTP: rendering alone, and rendering + tokenizing with and without groups.
const spec = services.on.registry.get(values.model as string).spec;
function inProcess(prompts: number[]): { renderMs: number; onMs: number; offMs: number; charsOn: number; charsOff: number; grouped: number } {
  const requests = prompts.slice(0, 100).map(requestFor);
  const time = (f: () => void): number => {
    f(); // warm
    const t = performance.now();
    for (let k = 0; k < 3; k++) f();
    return (performance.now() - t) / 3 / requests.length;
  };
  let charsOn = 0;
  let charsOff = 0;
  let grouped = 0;
  const renderMs = time(() => requests.forEach((items) => items.forEach((item) => spec.formatter.render(item))));
  const onMs = time(() => requests.forEach((items) => tokenizeItems(spec, items, spec.truncationSide, true)));
  const offMs = time(() => requests.forEach((items) => tokenizeItems(spec, items, spec.truncationSide, false)));
  for (const items of requests) {
    const on = tokenizeItems(spec, items, spec.truncationSide, true);
    charsOn += on.stats.tokenizedChars;
    grouped += on.stats.groupedItems;
    charsOff += tokenizeItems(spec, items, spec.truncationSide, false).stats.tokenizedChars;
  }
  return { renderMs, onMs, offMs, charsOn, charsOff, grouped: grouped / (16 * requests.length) };
}

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(', ');
console.log(`model ${values.model} (max length ${spec.maxLength}), ${perRound} requests × ${rounds} rounds per setting and level, 16 items each; load average at start ${load()}`);

console.log('\nIn process (100 requests, per request of 16 items):\n');
console.log('| prompts | render (jinja) ms | render + tokenize, groups off ms | groups on ms | on / off | characters tokenized off → on | items stitched |');
console.log('|---|---|---|---|---|---|---|');
for (const set of sets) {
  const r = inProcess(set.prompts);
  console.log(
    `| ${set.name} | ${r.renderMs.toFixed(2)} | ${r.offMs.toFixed(2)} | ${r.onMs.toFixed(2)} | ${(r.onMs / r.offMs).toFixed(2)} | ${r.charsOff} → ${r.charsOn} | ${(100 * r.grouped).toFixed(0)}% |`,
  );
}

console.log('\nThrough HTTP (server-side x-tokenization-time, client latency, pairs/s):\n');
console.log('| prompts | c | groups | requests | tokenization ms p50 / mean | latency ms p50 | pairs/s | on / off pairs/s | load average |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const set of sets) {
  for (const c of levels) {
    await run('on', set.prompts, 0, 2 * c, c); // warm both
    await run('off', set.prompts, 0, 2 * c, c);
    const acc: Record<'on' | 'off', { samples: Sample[]; seconds: number }> = { on: { samples: [], seconds: 0 }, off: { samples: [], seconds: 0 } };
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first, and give both the same prompts.
      const order: ('on' | 'off')[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      for (const setting of order) {
        const r = await run(setting, set.prompts, round * perRound, perRound, c);
        acc[setting].samples.push(...r.samples);
        acc[setting].seconds += r.seconds;
        process.stderr.write(`  ${set.name} c=${c} round ${round + 1}/${rounds} ${setting}: ${((perRound * 16) / r.seconds).toFixed(1)} pairs/s\n`);
      }
    }
    const rate = (s: 'on' | 'off'): number => (acc[s].samples.length * 16) / acc[s].seconds;
    for (const setting of ['on', 'off'] as const) {
      const tok = acc[setting].samples.map((s) => s.tokenizationMs);
      console.log(
        `| ${set.name} | ${c} | ${setting} | ${acc[setting].samples.length} | ${median(tok).toFixed(2)} / ${mean(tok).toFixed(2)} | ${median(acc[setting].samples.map((s) => s.latencyMs)).toFixed(1)} | ${rate(setting).toFixed(1)} | ${setting === 'on' ? (rate('on') / rate('off')).toFixed(2) : ''} | ${load()} |`,
      );
    }
  }
}
await agent.close();
await Promise.all(Object.values(services).map((s) => s.close()));
