// --instances: a model version with N ONNX sessions, each on its own inference thread, runs up
// to N batches at once (Triton's instance count); --solo-threads adds a session for batches that
// have the model to themselves. The batcher is checked with a gated runner (a second batch starts
// while the first is held only when two are allowed; a solo batch holds everything else back);
// the server through app.inject, where the sum of the batches' run times (timed on the inference
// threads) can exceed the wall time only if runs overlapped, with one instance as the control that
// cannot. The model is a transformer, so that the runs and not HTTP take most of the time.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Client } from 'undici';
import { DynamicBatcher } from '../src/scoring/batcher.js';
import { tokenKey } from '../src/scoring/reward-cache.js';
import { onnxBytes, sessionLayout } from '../src/scoring/session-layout.js';
import { createService } from '../src/service.js';
import { tempModelsRoot, writeTransformerModel } from './helpers/model-fixtures.js';

function gatedBatcher(maxInFlight: number | undefined, soloRuns = false) {
  let running = 0;
  let most = 0;
  const gates: (() => void)[] = [];
  const solos: boolean[] = [];
  const batcher = new DynamicBatcher(
    async (rows, solo) => {
      solos.push(solo);
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => gates.push(resolve));
      running--;
      return { rewards: rows.map((r) => Float32Array.of(r.length)) };
    },
    { maxBatchSize: 1, maxBatchTokens: 1000, maxWaitMs: 0, maxQueueItems: 100, soloRuns, ...(maxInFlight === undefined ? {} : { maxInFlight }) },
  );
  return { batcher, solos, started: () => gates.length, openAll: () => gates.splice(0).forEach((open) => open()), most: () => most };
}

/** /v1/models' solo_placement. */
interface SoloPlacementReply { main_thread: boolean; max_tokens?: number; reason: string }

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('the batcher with several instances', () => {
  for (const [allowed, expected] of [[undefined, 1], [2, 2], [3, 3]] as const) {
    test(`maxInFlight ${allowed ?? 'unset'}: ${expected} batch(es) start before any finishes`, async () => {
      const { batcher, started, openAll, most } = gatedBatcher(allowed);
      const results = [1, 2, 3, 4].map((n) => batcher.submit(Array.from({ length: n }, (_, i) => i + 1), tokenKey([n]), undefined));
      await tick();
      assert.equal(started(), expected);
      // Each finished batch frees its instance for the next, until every item has run.
      while ((await Promise.race([Promise.all(results).then(() => true), tick().then(() => false)])) === false) openAll();
      assert.deepEqual((await Promise.all(results)).map((r) => r[0]), [1, 2, 3, 4]);
      assert.equal(most(), expected);
    });
  }
});

test('soloRuns: a lone batch runs solo and holds the instances back; batches under load do not', async () => {
  const { batcher, solos, started, openAll } = gatedBatcher(2, true);
  const submit = (n: number): Promise<Float32Array> => batcher.submit(Array.from({ length: n }, (_, i) => i + 1), tokenKey([n]), undefined);
  const lone = submit(1);
  await tick();
  assert.deepEqual(solos, [true]);
  // Three more arrive while it runs: the second instance is free, but nothing starts beside a solo run.
  const rest = [2, 3, 4].map(submit);
  await tick();
  assert.equal(started(), 1);
  openAll();
  assert.equal((await lone)[0], 1);
  await tick();
  // Now there is a queue: two batches at once, neither solo.
  assert.equal(started(), 2);
  while ((await Promise.race([Promise.all(rest).then(() => true), tick().then(() => false)])) === false) openAll();
  assert.deepEqual((await Promise.all(rest)).map((r) => r[0]), [2, 3, 4]);
  assert.deepEqual(solos, [true, false, false, false]);
});

/** Two instances and soloRuns, batches of up to 8 rows; records each batch's row lengths and whether it ran solo. */
function recordingBatcher(soloMaxTokens?: number) {
  const rows: number[][] = [];
  const solos: boolean[] = [];
  const batcher = new DynamicBatcher(
    async (batch, solo) => {
      solos.push(solo);
      rows.push(batch.map((r) => r.length));
      return { rewards: batch.map((r) => Float32Array.of(r.length)) };
    },
    { maxBatchSize: 8, maxBatchTokens: 1000, maxWaitMs: 0, maxQueueItems: 100, maxInFlight: 2, soloRuns: true, ...(soloMaxTokens === undefined ? {} : { soloMaxTokens }) },
  );
  return { batcher, rows, solos };
}

test('soloMaxTokens: a lone batch over it is shared over the instances, not run solo', async () => {
  const { batcher, rows, solos } = recordingBatcher(40);
  let distinct = 0;
  const submit = (n: number): Promise<Float32Array> => {
    const ids = Array.from({ length: n }, (_, i) => ++distinct * 1000 + i);
    return batcher.submit(ids, tokenKey(ids), undefined);
  };
  // Within the limit: taken whole, solo (4 rows × 10 tokens = 40).
  await Promise.all([10, 10, 9, 8].map(submit));
  // Over it (4 × 12 = 48 padded tokens): even shares of the queue for the instances, none solo.
  await Promise.all([12, 12, 11, 11].map(submit));
  // One row over it alone: an instance runs it.
  assert.equal((await submit(41))[0], 41);
  assert.deepEqual(rows[0], [10, 10, 9, 8]);
  assert.deepEqual(solos, [true, ...rows.slice(1).map(() => false)]);
  assert.ok(rows.length > 3, `shared over several batches: ${JSON.stringify(rows)}`);
  assert.deepEqual(rows.slice(1).flat().sort((a, b) => a - b), [11, 11, 12, 12, 41]);
});

test('soloRuns: not while requests come from several open connections, though each is alone in the queue', async () => {
  const { batcher, solos, openAll } = gatedBatcher(2, true);
  const runAlone = async (n: number, connection?: { destroyed: boolean }): Promise<void> => {
    const reward = batcher.submit([n], tokenKey([n]), undefined, undefined, connection);
    await tick();
    openAll();
    assert.equal((await reward)[0], 1);
  };
  const [a, b, c] = [{ destroyed: false }, { destroyed: false }, { destroyed: false }];
  await runAlone(1, a);
  await runAlone(2, a);
  // Two open connections seen: their clients overlap, whatever the queue shows now.
  await runAlone(3, b);
  await runAlone(4, a);
  // b closed: one client again. An item with no connection (app.inject) counts no client.
  b.destroyed = true;
  await runAlone(5, a);
  await runAlone(6);
  assert.deepEqual(solos, [true, true, false, false, true, true]);
  // A connection quiet for over a second no longer counts.
  await runAlone(7, c);
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await runAlone(8, c);
  assert.deepEqual(solos.slice(6), [false, true]);
});

test('soloRuns with several clients: a lone request that one solo batch would hold is shared over the instances', async () => {
  const { batcher, rows, solos } = recordingBatcher();
  const request = (connection: { destroyed: boolean }, base: number): Promise<Float32Array[]> =>
    Promise.all([10, 10, 10, 10].map((n, i) => {
      const ids = Array.from({ length: n }, (_, j) => (base + i) * 1000 + j);
      return batcher.submit(ids, tokenKey(ids), undefined, undefined, connection);
    }));
  const [a, b] = [{ destroyed: false }, { destroyed: false }];
  await request(a, 0);
  await request(b, 10);
  // One client: taken whole, solo. Two: even shares of the queue, none solo, as under load.
  assert.deepEqual(rows[0], [10, 10, 10, 10]);
  assert.ok(rows.length > 2, `shared over several batches: ${JSON.stringify(rows)}`);
  assert.deepEqual(rows.slice(1).flat(), [10, 10, 10, 10]);
  assert.deepEqual(solos, [true, ...rows.slice(1).map(() => false)]);
});

describe('rmserve serve --instances', () => {
  const items = Array.from({ length: 48 }, (_, i) => ({ prompt: `How do I keep question ${i} short?`, response: `${'briefly, and then at length. '.repeat(10 + 5 * (i % 7))}That is answer ${i}.` }));

  async function serve(instances: number, soloThreads = 0, soloInlineMs = 0) {
    const root = tempModelsRoot();
    writeTransformerModel(join(root, 'rm', '1'), 256);
    return createService({ modelsRoot: root, cacheSize: 0, watch: false, instances, soloThreads, soloInlineMs, intraOpThreads: 1, calibrateBatching: false, maxBatchSize: 4 });
  }

  const counter = (metrics: string, name: string): number =>
    Number(metrics.split('\n').find((l) => l.startsWith(name))?.split(' ').pop() ?? 0);

  /** Scores the items as concurrent single-item requests; the rewards and how much the runs overlapped. */
  async function scoreConcurrently(
    instances: number,
    soloThreads = 0,
    soloInlineMs = 0,
  ): Promise<{ rewards: number[]; runSeconds: number; wallSeconds: number; reported: unknown; placement: SoloPlacementReply | undefined; soloBatches: number; loneSolo: number }> {
    const service = await serve(instances, soloThreads, soloInlineMs);
    try {
      const models = (await service.app.inject({ method: 'GET', url: '/v1/models' })).json() as { models: { serving: { instances: number; solo_threads: number; solo_placement?: SoloPlacementReply } }[] };
      // One request on an idle server: with a solo session, its batch runs there.
      const first = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'rm', items: [{ prompt: 'Hi?', response: 'Hello.' }] } });
      assert.equal(first.statusCode, 200, first.body);
      const loneSolo = counter((await service.app.inject({ method: 'GET', url: '/metrics' })).body, 'rmserve_solo_batches_total');
      const before = counter((await service.app.inject({ method: 'GET', url: '/metrics' })).body, 'rmserve_inference_duration_seconds_sum');
      const started = performance.now();
      const replies = await Promise.all(items.map((item) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'rm', items: [item] } })));
      const wallSeconds = (performance.now() - started) / 1000;
      for (const reply of replies) assert.equal(reply.statusCode, 200, reply.body);
      const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.ok(metrics.includes('rmserve_inference_duration_seconds_sum'), 'rmserve_inference_duration_seconds_sum is exposed');
      return {
        rewards: replies.map((r) => (r.json() as { results: { reward: number }[] }).results[0]!.reward),
        runSeconds: counter(metrics, 'rmserve_inference_duration_seconds_sum') - before,
        wallSeconds,
        reported: [models.models[0]?.serving.instances, models.models[0]?.serving.solo_threads],
        placement: models.models[0]?.serving.solo_placement,
        soloBatches: counter(metrics, 'rmserve_solo_batches_total') - loneSolo,
        loneSolo,
      };
    } finally {
      await service.close();
    }
  }

  test('two instances run batches side by side and score as one does', async () => {
    const one = await scoreConcurrently(1);
    const two = await scoreConcurrently(2);
    assert.deepEqual(one.reported, [1, 0]);
    assert.deepEqual(two.reported, [2, 0]);
    assert.equal(two.loneSolo + two.soloBatches, 0);
    // One session runs one batch at a time: its runs fit in the wall time. Two overlap.
    assert.ok(one.runSeconds <= one.wallSeconds, `1 instance: ${one.runSeconds} s of runs in ${one.wallSeconds} s`);
    assert.ok(two.runSeconds > two.wallSeconds, `2 instances: ${two.runSeconds} s of runs in ${two.wallSeconds} s`);
    for (const [i, reward] of two.rewards.entries()) assert.ok(Math.abs(reward - (one.rewards[i] as number)) < 1e-4, `item ${i}: ${reward} vs ${one.rewards[i]}`);
  });

  test('a solo session takes the lone request, the instances the load', async () => {
    const one = await scoreConcurrently(1);
    const hybrid = await scoreConcurrently(2, 2);
    assert.deepEqual(hybrid.reported, [2, 2]);
    assert.equal(hybrid.loneSolo, 1, 'the lone request ran on the solo session');
    // Under 48 concurrent requests the two instances ran side by side (a solo run never overlaps another).
    assert.ok(hybrid.runSeconds > hybrid.wallSeconds, `${hybrid.runSeconds} s of runs in ${hybrid.wallSeconds} s (${hybrid.soloBatches} solo)`);
    for (const [i, reward] of hybrid.rewards.entries()) assert.ok(Math.abs(reward - (one.rewards[i] as number)) < 1e-4, `item ${i}: ${reward} vs ${one.rewards[i]}`);
  });

  test('--solo-inline-ms: the solo session on the main thread takes the lone request, the instances the load, with the same rewards', async () => {
    const threaded = await scoreConcurrently(2, 2, 0);
    // A limit no 128-token row of this model comes near: the placement does not hang on the machine's speed.
    const inline = await scoreConcurrently(2, 2, 60_000);
    assert.equal(threaded.placement?.main_thread, false);
    assert.equal(threaded.placement?.max_tokens, undefined);
    assert.equal(inline.placement?.main_thread, true, JSON.stringify(inline.placement));
    assert.ok((inline.placement?.max_tokens ?? 0) > 128 * 1000, JSON.stringify(inline.placement));
    assert.equal(inline.loneSolo, 1, 'the lone request ran on the solo session');
    // A run on the main thread holds the event loop, so solo runs never overlap; the instances' do.
    assert.ok(inline.runSeconds > inline.wallSeconds, `${inline.runSeconds} s of runs in ${inline.wallSeconds} s (${inline.soloBatches} solo)`);
    for (const [i, reward] of inline.rewards.entries()) assert.ok(Math.abs(reward - (threaded.rewards[i] as number)) < 1e-4, `item ${i}: ${reward} vs ${threaded.rewards[i]}`);
  });

  test('over real sockets: the requests of one connection run solo, those of two taking turns on the instances, and a closed one stops counting', async () => {
    const service = await serve(2, 2, 60_000);
    const clients: Client[] = [];
    try {
      const address = await service.app.listen({ host: '127.0.0.1', port: 0 });
      const connect = (): Client => {
        const client = new Client(address);
        clients.push(client);
        return client;
      };
      const soloBatches = async (): Promise<number> => counter((await service.app.inject({ method: 'GET', url: '/metrics' })).body, 'rmserve_solo_batches_total');
      const post = async (client: Client, i: number): Promise<void> => {
        const reply = await client.request({ method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'rm', items: [items[i]] }) });
        assert.equal(reply.statusCode, 200, await reply.body.text());
        await reply.body.dump();
      };
      const one = connect();
      for (let i = 0; i < 4; i++) await post(one, i);
      assert.equal(await soloBatches(), 4, 'one keep-alive connection: every request ran solo');
      // Each request is alone in the queue, but the two clients overlap: the instances serve them.
      const other = connect();
      for (let i = 0; i < 6; i++) await post(i % 2 === 0 ? other : one, i);
      assert.equal(await soloBatches(), 4, 'two connections taking turns: none ran solo');
      // The other client goes away: once the server has seen the close, one client again.
      await other.close();
      let again = 0;
      for (let i = 0; i < 50 && again === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        await post(one, i % items.length);
        again = (await soloBatches()) - 4;
      }
      assert.ok(again > 0, 'solo again after the other connection closed');
      // A new connection per request, each closed before the next (Python's requests.post without a Session).
      const before = await soloBatches();
      await one.close();
      for (let i = 0; i < 4; i++) {
        const once = connect();
        await post(once, i);
        await once.close();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal((await soloBatches()) - before, 4, 'a connection per request: one client, solo');
    } finally {
      await Promise.all(clients.filter((client) => !client.closed).map((client) => client.close()));
      await service.close();
    }
  });

  test('--solo-inline-ms below what an instance takes for a 128-token row: the solo session keeps its own thread', async () => {
    // This model's 128-token row takes several ms on one thread (~5–10 ms on the 2-core CI VM), so 1 ms is never met.
    const slow = await scoreConcurrently(2, 2, 1);
    assert.equal(slow.placement?.main_thread, false, JSON.stringify(slow.placement));
    assert.equal(slow.placement?.max_tokens, undefined);
    assert.match(slow.placement?.reason ?? '', /128-token row took [\d.]+ ms on an instance, over --solo-inline-ms 1/);
    assert.equal(slow.loneSolo, 1, 'the lone request still ran on the solo session');
  });

  test('--instances auto: the version gets the layout the rule picks for this machine, and scores as one session does', async () => {
    const root = tempModelsRoot();
    const dir = join(root, 'rm', '1');
    writeTransformerModel(dir, 256);
    const expected = sessionLayout({ instances: 'auto', intraOpThreads: 0, soloThreads: 0, device: 'cpu', inferenceThread: true }, onnxBytes(dir));
    const logged: string[] = [];
    const service = await createService({ modelsRoot: root, cacheSize: 0, watch: false, instances: 'auto', calibrateBatching: false, maxBatchSize: 4 }, { log: (m) => logged.push(m) });
    const one = await createService({ modelsRoot: root, cacheSize: 0, watch: false, instances: 1, calibrateBatching: false, maxBatchSize: 4 });
    try {
      const serving = ((await service.app.inject({ method: 'GET', url: '/v1/models' })).json() as { models: { serving: Record<string, unknown> }[] }).models[0]?.serving;
      assert.deepEqual(
        [serving?.instances, serving?.intra_op_threads, serving?.solo_threads, serving?.layout_rule],
        [expected.instances, expected.intraOpThreads, expected.soloThreads, expected.auto],
      );
      // The 2-core machines this project runs on (CI among them) get the split layout.
      if (availableParallelism() === 2) assert.deepEqual([serving?.instances, serving?.intra_op_threads, serving?.solo_threads], [2, 1, 2]);
      assert.ok(logged.some((m) => m.includes(`rm@1: --instances auto: ${expected.auto}`)), logged.join('\n'));
      const score = async (s: typeof service) => (await Promise.all(items.slice(0, 12).map((item) => s.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'rm', items: [item] } }))))
        .map((r) => { assert.equal(r.statusCode, 200, r.body); return (r.json() as { results: { reward: number }[] }).results[0]!.reward; });
      const [a, b] = [await score(service), await score(one)];
      for (const [i, reward] of a.entries()) assert.ok(Math.abs(reward - (b[i] as number)) < 1e-4, `item ${i}: ${reward} vs ${b[i]}`);
    } finally {
      await Promise.all([service.close(), one.close()]);
    }
  });

  test('more than one instance needs the inference threads', async () => {
    const root = tempModelsRoot();
    await assert.rejects(createService({ modelsRoot: root, instances: 2, inferenceThread: false }), /--instances 2 needs the inference threads/);
    await assert.rejects(createService({ modelsRoot: root, soloThreads: 2, inferenceThread: false }), /--solo-threads 2 needs the inference threads/);
  });
});
