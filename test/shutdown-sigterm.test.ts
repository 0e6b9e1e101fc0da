// Graceful shutdown of a real `rmserve serve` process: requests accepted and queued when SIGTERM
// arrives are all answered (200, from the serving version) before the process exits 0. Past
// --shutdown-timeout-ms the process exits 1 instead of hanging. A request that arrives on an idle
// keep-alive connection after the signal is answered 503 with `Connection: close`, never reset.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { AddressInfo } from 'node:net';
import { Client, Pool, request } from 'undici';
import { createService } from '../src/service.js';
import { metricValue } from './helpers/metrics-text.js';
import { REPO_ROOT, tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';
import { assertErrorShape, RawClient, scoreRequest } from './helpers/raw-http.js';

const QUEUED = 64;
const root = tempModelsRoot();

before(() => {
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Server {
  child: ChildProcess;
  origin: string;
  exited: Promise<number | null>;
  output: () => string;
}

/**
 * Starts `rmserve serve` on a free port and resolves once it listens. Batch limits as given, not
 * calibrated: the tests rely on --max-batch-size to keep every item queued until the signal.
 */
async function startServer(extraArgs: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'serve', '--models', root, '--port', '0', '--no-watch', '--cache-size', '0', '--no-calibrate-batching', ...extraArgs],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (let i = 0; i < 600; i++) {
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
    if (match) return { child, origin: match[1]!, exited, output: () => output };
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`server did not start:\n${output}`);
}

async function queueDepth(origin: string): Promise<number> {
  const res = await request(`${origin}/metrics`);
  return metricValue(await res.body.text(), 'rmserve_queue_depth', { model: 'rm', version: '1' }, 0);
}

/** Sends QUEUED single-item requests that sit in the batcher (max-wait-ms is long) and waits until all are queued. */
async function fillQueue(server: Server, pool: Pool): Promise<Promise<{ status: number; body: string }>[]> {
  const pending = Array.from({ length: QUEUED }, async (_, i) => {
    const res = await pool.request({
      method: 'POST',
      path: '/v1/score',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ items: [{ prompt: `question ${i}`, response: `answer ${i}` }] }),
    });
    return { status: res.statusCode, body: await res.body.text() };
  });
  for (let i = 0; i < 400 && (await queueDepth(server.origin)) < QUEUED; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  assert.equal(await queueDepth(server.origin), QUEUED, 'every request is queued before SIGTERM');
  return pending;
}

test('SIGTERM with a full queue: every accepted request is answered, then exit 0', async () => {
  // Items wait up to 4 s for company, so all of them are still queued when the signal lands.
  const server = await startServer(['--max-wait-ms', '4000', '--max-batch-size', '256']);
  const pool = new Pool(server.origin, { connections: QUEUED });
  try {
    const answered = Promise.all(await fillQueue(server, pool));
    answered.catch(() => {}); // a failure is reported by the await below, not as an unhandled rejection
    server.child.kill('SIGTERM');
    const replies = await answered;
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 200, `request ${i}: ${reply.body}`);
      assert.deepEqual((JSON.parse(reply.body) as { model_versions: object }).model_versions, { rm: '1' });
    }
    assert.equal(await server.exited, 0, server.output().split("\n").filter((l) => !/request completed|incoming request/.test(l)).join("\n"));
    assert.match(server.output(), /SIGTERM: draining/);
  } finally {
    server.child.kill('SIGKILL');
    await pool.destroy();
  }
});

test('SIGTERM past the shutdown deadline: exit 1 instead of hanging', async () => {
  const server = await startServer(['--max-wait-ms', '60000', '--max-batch-size', '256', '--shutdown-timeout-ms', '300']);
  const pool = new Pool(server.origin, { connections: QUEUED });
  try {
    const settling = Promise.allSettled(await fillQueue(server, pool));
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 1, server.output());
    assert.match(server.output(), /deadline of 300 ms passed/);
    const settled = await settling;
    assert.ok(settled.every((s) => s.status === 'rejected'), 'work still queued at the deadline is dropped with the connection');
  } finally {
    server.child.kill('SIGKILL');
    await pool.destroy();
  }
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const ITEM = JSON.stringify({ items: [{ prompt: 'Is the sky blue?', response: 'Yes.' }] });

test('SIGTERM with idle keep-alive connections: requests on them get 503 + Connection: close, never a reset; exit 0', async () => {
  const server = await startServer(['--keep-alive-timeout-ms', '3000']);
  // One undici Client per connection, so each request below goes out on a connection that was
  // idle when the signal landed (a Pool would reconnect its emptied client and be refused).
  const delays = [0, 100, 300];
  const clients = [...delays, 'idle'].map(() => new Client(server.origin, { pipelining: 1 }));
  const post = (client: Client) =>
    client.request({ method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' }, body: ITEM });
  try {
    for (const client of clients) {
      const res = await post(client);
      const body = await res.body.text();
      assert.equal(res.statusCode, 200, body);
    }
    server.child.kill('SIGTERM');
    for (let i = 0; i < 200 && !/SIGTERM: draining/.test(server.output()); i++) await sleep(10);
    assert.match(server.output(), /SIGTERM: draining/);
    for (const [i, delay] of delays.entries()) {
      await sleep(delay);
      const res = await post(clients[i]!);
      const body = await res.body.text();
      assert.equal(res.statusCode, 503, `${delay} ms after SIGTERM: ${body}`);
      assert.equal(res.headers.connection, 'close');
      assert.deepEqual(JSON.parse(body), { error: { code: 'shutting_down', message: 'the server is shutting down; retry on another replica' } });
    }
    // The last connection stays idle and closes at its keep-alive timeout; then the process is done.
    assert.equal(await server.exited, 0, server.output());
  } finally {
    server.child.kill('SIGKILL');
    await Promise.all(clients.map((c) => c.destroy()));
  }
});

test('draining in process: a request on an idle keep-alive socket is answered at any moment of the drain', async () => {
  const service = await createService({ modelsRoot: root, watch: false, keepAliveTimeoutMs: 1_500 });
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (service.app.server.address() as AddressInfo).port;
  const delays = [0, 20, 50, 120, 250, 500];
  const clients = delays.map(() => new RawClient(port));
  const ready = new RawClient(port);
  for (const c of [...clients, ready]) {
    await c.send(scoreRequest(ITEM));
    assert.equal((await c.responses(1))[0]!.status, 200);
  }
  const started = performance.now();
  const closing = service.close();
  await Promise.all([
    ...clients.map(async (c, i) => {
      await sleep(delays[i]!);
      await c.send(scoreRequest(ITEM));
      const [, response] = await c.responses(2);
      assertErrorShape(response!, 503, 'shutting_down');
      assert.equal(response!.headers.connection, 'close');
      await c.waitClosed(2_000);
      assert.equal(c.error, undefined, `${delays[i]} ms into the drain: closed cleanly, not reset`);
    }),
    (async () => {
      // Probes still answer while draining: /ready says why it is not ready.
      await ready.send('GET /ready HTTP/1.1\r\nHost: test\r\n\r\n');
      const [, response] = await ready.responses(2);
      assertErrorShape(response!, 503, 'not_ready');
      assert.equal(response!.headers.connection, 'close');
    })(),
  ]);
  await closing;
  assert.ok(performance.now() - started < 1_500 + 2_000, 'close() returns once the connections are gone');
});
