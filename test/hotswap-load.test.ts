// Hot-swap under load over a real socket: 32 clients send ≥ 2,000 requests while the model is
// swapped ≥ 10 times, alternately through the admin API and the watch. Zero failures; every
// request gets exactly one reply, whose score is its own text's score under the version the reply
// names; that version served at some time during the request; and a request that started after a
// switch never gets an older version.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import type { SwapEvent } from '../src/scoring/registry.js';
import { createService, type Service } from '../src/service.js';
import { bowScore, type BowModelWeights } from '../src/training/bow-model.js';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const CLIENTS = 32;
const MIN_REQUESTS = 2000;
const SWAPS = 12; // versions 2..13: even ones through the API, odd ones through the watch
const REPLIES_BETWEEN_SWAPS = 40;
const TOKEN = 'swap-admin';

interface Reply {
  text: string;
  start: number;
  end: number;
  status: number;
  version: string;
  raw: number;
}

const root = tempModelsRoot();
const weights = new Map<string, BowModelWeights>();
let service: Service;
let pool: Pool;

before(async () => {
  weights.set('1', writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 }));
  service = await createService({
    modelsRoot: root,
    cacheSize: 0,
    adminToken: TOKEN,
    watch: true,
    watchSettleMs: 60,
    watchPollMs: 50,
  });
  await service.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = service.app.server.address() as AddressInfo;
  pool = new Pool(`http://127.0.0.1:${port}`, { connections: CLIENTS });
});
after(async () => {
  await pool.close();
  await service.close();
  rmSync(root, { recursive: true, force: true });
});

test(`${CLIENTS} clients, ≥ ${MIN_REQUESTS} requests, ${SWAPS} swaps through the API and the watch: nothing lost or mixed up`, async (t) => {
  const swaps: SwapEvent[] = [];
  service.registry.onSwap((event) => swaps.push(event));
  const replies: Reply[] = [];
  const errors: string[] = [];
  let sent = 0;
  let swapping = true;

  const client = async (c: number): Promise<void> => {
    while (swapping || sent < MIN_REQUESTS) {
      const n = sent++;
      const text = `client ${c} request ${n}: is this answer helpful?`;
      const start = performance.now();
      try {
        const res = await pool.request({
          method: 'POST',
          path: '/v1/score',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ items: [{ prompt: text, response: `Reply number ${n % 17}.` }] }),
        });
        const body = (await res.body.json()) as { model_versions?: { rm: string }; results?: { objectives: { rm: { raw: number } } }[] };
        const end = performance.now();
        replies.push({
          text,
          start,
          end,
          status: res.statusCode,
          version: body.model_versions?.rm ?? '?',
          raw: body.results?.[0]?.objectives.rm.raw ?? Number.NaN,
        });
      } catch (err) {
        errors.push(`request ${n}: ${(err as Error).message}`);
      }
    }
  };

  const repliesFrom = (version: string): number => replies.filter((r) => r.version === version).length;
  const waitFor = async (what: string, done: () => boolean): Promise<void> => {
    const deadline = Date.now() + 60_000; // a guard against hanging, not a speed requirement
    while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    if (!done()) throw new Error(`gave up waiting for ${what}`);
  };

  const swapper = async (): Promise<void> => {
    try {
      await waitFor('the first replies', () => repliesFrom('1') >= REPLIES_BETWEEN_SWAPS);
      for (let v = 2; v < 2 + SWAPS; v++) {
        const version = String(v);
        weights.set(version, writeBowModel(join(root, 'rm', version), { tokenizer: 'gpt2', seed: v }));
        if (v % 2 === 0) {
          const res = await pool.request({
            method: 'POST',
            path: '/v1/models/rm/load',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
            body: JSON.stringify({ version, pin: false }),
          });
          const body = await res.body.text();
          assert.equal(res.statusCode, 200, body);
        }
        await waitFor(`version ${version} to serve`, () => swaps.some((s) => s.version === version));
        await waitFor(`replies from ${version}`, () => repliesFrom(version) >= REPLIES_BETWEEN_SWAPS);
      }
    } finally {
      swapping = false;
    }
  };

  await Promise.all([swapper(), ...Array.from({ length: CLIENTS }, (_, c) => client(c))]);

  // Every request answered exactly once, and every answer a success.
  t.diagnostic(`${sent} requests, ${swaps.length} swaps (api ${swaps.filter((s) => s.source === "api").length}), replies per version: ${JSON.stringify(Object.fromEntries([...new Set(replies.map((r) => r.version))].map((v) => [v, replies.filter((r) => r.version === v).length])))}`);
  assert.deepEqual(errors, []);
  assert.ok(sent >= MIN_REQUESTS, `${sent} requests`);
  assert.equal(replies.length, sent, 'one reply per request');
  assert.equal(new Set(replies.map((r) => r.text)).size, sent, 'no reply twice');
  assert.deepEqual(replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.version}`), []);

  // The swaps: versions in order, through both sources. When the watch beat an API call to its
  // version, the API call reloads it (a fresh session of the same version): the version stays.
  const bySource = (source: string): number => swaps.filter((s) => s.source === source).length;
  const order = ['1', ...swaps.map((s) => s.version as string)].filter((v, i, all) => v !== all[i - 1]);
  assert.deepEqual(order, Array.from({ length: SWAPS + 1 }, (_, i) => String(i + 1)), 'each version served once, in order');
  assert.ok(bySource('api') >= SWAPS / 2 && bySource('watch') >= SWAPS / 2, `api ${bySource('api')}, watch ${bySource('watch')}`);

  // When each version served: [first switched in, switched out to another version).
  const from = new Map<string, number>([['1', -Infinity]]);
  const until = new Map<string, number>();
  for (const s of swaps) {
    if (!from.has(s.version as string)) from.set(s.version as string, s.at);
    if (s.previous !== s.version) until.set(s.previous as string, s.at);
  }
  const servingAt = (t: number): string => order.filter((v) => (from.get(v) as number) <= t).at(-1) as string;
  const spec = service.registry.get('rm').spec;
  for (const r of replies) {
    const served = from.get(r.version);
    assert.ok(served !== undefined, `unknown version ${r.version}`);
    assert.ok(served <= r.end && (until.get(r.version) ?? Infinity) >= r.start, `${r.text}: ${r.version} did not serve during the request`);
    assert.ok(Number(r.version) >= Number(servingAt(r.start)), `${r.text}: got ${r.version} though ${servingAt(r.start)} served when it started`);
    const n = Number(/request (\d+)/.exec(r.text)![1]);
    const ids = spec.tokenizer.encode(spec.formatter.render({ prompt: r.text, response: `Reply number ${n % 17}.` }), spec.truncationSide).ids;
    const expected = bowScore(weights.get(r.version)!, ids)[0]!;
    assert.ok(Math.abs(r.raw - expected) < 1e-4, `${r.text}: ${r.raw} is not version ${r.version}'s score ${expected}`);
  }

  // model_info flipped to the last version; older series are gone, old sessions released.
  const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  const last = String(SWAPS + 1);
  assert.equal(metricValue(metrics, 'rmserve_model_info', { model: 'rm', version: last }), 1);
  assert.equal(metricValue(metrics, 'rmserve_model_info', { model: 'rm', version: String(SWAPS) }), 0);
  assert.equal(metricValue(metrics, 'rmserve_model_info', { model: 'rm', version: '1' }, -1), -1);
  assert.equal(metricValue(metrics, 'rmserve_model_loads_total', { model: 'rm', result: 'failure' }, 0), 0);
});
