// Server-side cost of a cache hit, read from the x-total-time header (issue 12's target: p50 under
// 0.5 ms for typical and long items): a real server on 127.0.0.1, the shipped models, one item
// scored once, then the same request again and again.
//   node --import tsx bench/cache-hit.ts [--models models] [--requests 2000]
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { createService } from '../src/service.js';

const { values } = parseArgs({ options: { models: { type: 'string', default: 'models' }, requests: { type: 'string', default: '2000' } } });
const service = await createService({ modelsRoot: values.models, watch: false });
await service.app.listen({ port: 0, host: '127.0.0.1' });
const origin = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
const agent = new Agent({ connections: 1 });
const n = Number(values.requests);

const items = {
  typical: { prompt: 'How do I make a good cup of coffee at home without any special equipment?', response: 'Heat water to just below boiling, pour it over medium-fine grounds, wait four minutes, then strain.' },
  long: { prompt: 'Tell me about the history of coffee. '.repeat(200), response: 'Coffee was first cultivated in Yemen and spread across the world from there. '.repeat(20) },
};
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;

console.log(`| item | characters | requests | server x-total-time p50 | p90 | p99 | client round trip p50 |`);
console.log(`|---|---|---|---|---|---|---|`);
for (const [name, item] of Object.entries(items)) {
  const body = JSON.stringify({ items: [item] });
  const send = async (): Promise<{ server: number; client: number; cached: boolean }> => {
    const t = performance.now();
    const res = await request(`${origin}/v1/score`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: agent });
    const json = (await res.body.json()) as { results: { cached: boolean }[] };
    return { server: Number(res.headers['x-total-time']), client: performance.now() - t, cached: json.results[0]?.cached === true };
  };
  await send(); // the miss that fills the cache
  for (let i = 0; i < 200; i++) await send(); // warm-up
  const server: number[] = [];
  const client: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await send();
    if (!r.cached) throw new Error('expected a cache hit');
    server.push(r.server);
    client.push(r.client);
  }
  server.sort((a, b) => a - b);
  client.sort((a, b) => a - b);
  const chars = item.prompt.length + item.response.length;
  console.log(`| ${name} | ${chars} | ${n} | ${quantile(server, 0.5).toFixed(3)} ms | ${quantile(server, 0.9).toFixed(3)} ms | ${quantile(server, 0.99).toFixed(3)} ms | ${quantile(client, 0.5).toFixed(3)} ms |`);
}
await agent.close();
await service.close();
