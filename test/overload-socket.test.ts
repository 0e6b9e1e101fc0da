// Issue 14, overload over real sockets: many more concurrent clients than the queue holds. Every
// reply is a 200 or a 429 with Retry-After (never a 5xx, never a reset), what is admitted is
// bounded by the queue, and once the flood is over the server answers normally again.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const CLIENTS = 256;
const ITEMS = 16;
const QUEUE = 64;
const root = tempModelsRoot();
let service: Service;
let origin: string;
const agent = new Agent({ connections: CLIENTS });

before(async () => {
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 5 });
  service = await createService({ modelsRoot: root, watch: false, cacheSize: 0, maxQueueItems: QUEUE, tokenizerThreads: 1 });
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  origin = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
});
after(async () => {
  await agent.close();
  await service.close();
});

const body = (client: number): string =>
  JSON.stringify({ items: Array.from({ length: ITEMS }, (_, i) => ({ prompt: `Client ${client} asks question ${i}?`, response: `Answer ${i} for ${client}.` })) });

test(`${CLIENTS} clients × ${ITEMS} items against a ${QUEUE}-item queue: 200 or 429 + Retry-After, bounded admission, normal service after`, async () => {
  let maxDepth = 0;
  const sampler = setInterval(() => (maxDepth = Math.max(maxDepth, service.registry.get('rm').batcher.depth)), 1);
  const replies = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const res = await request(`${origin}/v1/score`, { method: 'POST', body: body(c), headers: { 'content-type': 'application/json' }, dispatcher: agent });
      const text = await res.body.text();
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], text };
    }),
  );
  clearInterval(sampler);
  const byStatus = new Map<number, number>();
  for (const r of replies) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
  assert.deepEqual([...byStatus.keys()].filter((s) => s !== 200 && s !== 429), [], `statuses: ${JSON.stringify([...byStatus])}`);
  const refused = replies.filter((r) => r.status === 429);
  assert.ok(refused.length > CLIENTS / 2, `${refused.length} of ${CLIENTS} were refused`);
  for (const r of refused) {
    assert.equal(r.retryAfter, '1');
    assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, 'overloaded');
  }
  assert.ok(maxDepth <= QUEUE, `the queue held ${maxDepth} items at most`);

  // After the flood: a normal request is served at once and the queue is empty.
  const calm = await request(`${origin}/v1/score`, { method: 'POST', body: body(0), headers: { 'content-type': 'application/json' }, dispatcher: agent });
  assert.equal(calm.statusCode, 200, await calm.body.text());
  assert.equal(service.registry.get('rm').batcher.depth, 0);
});
