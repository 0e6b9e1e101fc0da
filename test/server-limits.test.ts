// Connection limits over real sockets (issue 14): a client that sends half a request is cut off at
// the headers or request timeout with a 408 in the error shape while everyone else is answered,
// idle keep-alive connections close at their advertised timeout, connections beyond
// --max-connections are closed on accept, the HTTP layer's own refusals (431, malformed request
// line, bad URL encoding, no Host) use the error shape too, and a client that goes away before
// its reply is counted in rmserve_requests_total as 499.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service, type ServiceConfig } from '../src/service.js';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';
import { assertErrorShape, RawClient, scoreRequest } from './helpers/raw-http.js';

const root = tempModelsRoot();
before(() => writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2' }));

const GOOD = JSON.stringify({ items: [{ prompt: 'Is the sky blue?', response: 'Yes, on a clear day.' }] });
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function listening(config: Partial<ServiceConfig>): Promise<{ service: Service; port: number; origin: string }> {
  const service = await createService({ modelsRoot: root, watch: false, ...config });
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (service.app.server.address() as AddressInfo).port;
  return { service, port, origin: `http://127.0.0.1:${port}` };
}

async function metrics(service: Service): Promise<string> {
  return (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
}

test('limits out of range stop the service before it loads anything, naming the flag', async () => {
  await assert.rejects(createService({ modelsRoot: root, headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 }), /--headers-timeout-ms \(5000\) must be between 1 and --request-timeout-ms \(1000\)/);
  await assert.rejects(createService({ modelsRoot: root, keepAliveTimeoutMs: 0 }), /--keep-alive-timeout-ms must be an integer >= 1, got 0/);
  await assert.rejects(createService({ modelsRoot: root, maxConnections: -1 }), /--max-connections must be an integer >= 0/);
  await assert.rejects(createService({ modelsRoot: root, maxHeaderBytes: 1.5 }), /--max-header-bytes must be an integer >= 1/);
});

describe('slow clients', () => {
  let service: Service;
  let port: number;
  let origin: string;
  before(async () => {
    ({ service, port, origin } = await listening({ requestTimeoutMs: 1_000, headersTimeoutMs: 400, keepAliveTimeoutMs: 1_000 }));
  });
  after(() => service.close());

  test('half-sent headers and bodies are cut off at their timeouts with a 408, and others are answered meanwhile', async () => {
    const started = performance.now();
    const silent = Array.from({ length: 5 }, () => new RawClient(port));
    const partialHeaders = Array.from({ length: 5 }, () => new RawClient(port));
    const partialBodies = Array.from({ length: 5 }, () => new RawClient(port));
    for (const c of partialHeaders) await c.send('POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: application/');
    // 7 MiB announced, 64 KiB sent: the shape that held sockets (and their buffered bodies) forever.
    for (const c of partialBodies) {
      await c.send(`POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: ${7 * 1024 * 1024}\r\n\r\n{"items": [{"prompt": "${'x'.repeat(64 * 1024)}`);
    }
    // The classic slowloris: one more header byte every 100 ms, never finishing.
    const trickle = new RawClient(port);
    let trickling = true;
    void (async () => {
      await trickle.send('GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ');
      while (trickling && trickle.closedAt === undefined) {
        await trickle.send('a').catch(() => {});
        await sleep(100);
      }
    })();

    // Meanwhile the server answers other clients at once.
    const answered: number[] = [];
    while (performance.now() - started < 1_500) {
      const t0 = performance.now();
      const res = await fetch(`${origin}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: GOOD });
      assert.equal(res.status, 200, await res.text());
      await res.arrayBuffer().catch(() => {});
      answered.push(performance.now() - t0);
      await sleep(100);
    }
    assert.ok(answered.length >= 8, `answered ${answered.length} requests while the slow clients held sockets`);

    try {
      for (const c of [...partialHeaders, trickle]) {
        const ms = await c.waitClosed(4_000);
        assert.ok(ms >= 300 && ms < 2_500, `headers cut off at ${ms.toFixed(0)} ms (headers timeout 400 ms)`);
        const [response] = await c.responses(1);
        assertErrorShape(response!, 408, 'request_timeout', /--headers-timeout-ms/);
        assert.equal(response!.headers.connection, 'close');
      }
      for (const c of partialBodies) {
        const ms = await c.waitClosed(5_000);
        assert.ok(ms >= 900 && ms < 3_500, `body cut off at ${ms.toFixed(0)} ms (request timeout 1000 ms)`);
        const [response] = await c.responses(1);
        assertErrorShape(response!, 408, 'request_timeout', /body did not arrive within 1000 ms \(--request-timeout-ms\)/);
      }
      // A connection that never sent a byte carried no request: closed without an answer, not counted.
      for (const c of silent) {
        await c.waitClosed(4_000);
        assert.equal(c.received, '');
      }
    } finally {
      trickling = false;
      for (const c of [...silent, ...partialHeaders, ...partialBodies, trickle]) c.destroy();
    }
    const text = await metrics(service);
    assert.equal(metricValue(text, 'rmserve_requests_total', { route: '/v1/score', status: '408' }), 5, 'body timeouts count under their route');
    assert.equal(metricValue(text, 'rmserve_requests_total', { route: 'unmatched', status: '408' }), 6, 'header timeouts count as unmatched');
  });

  test('an idle keep-alive connection closes at --keep-alive-timeout-ms, which its replies advertise', async () => {
    const client = new RawClient(port);
    await client.send('GET /health HTTP/1.1\r\nHost: test\r\n\r\n');
    const [response] = await client.responses(1);
    assert.equal(response!.status, 200);
    assert.equal(response!.headers['keep-alive'], 'timeout=1');
    const answeredAt = performance.now() - client.openedAt;
    const closedAt = await client.waitClosed(4_000);
    assert.ok(closedAt - answeredAt >= 800 && closedAt - answeredAt < 3_000, `closed ${(closedAt - answeredAt).toFixed(0)} ms after the reply`);
    assert.equal(client.error, undefined, 'closed, not reset');
  });
});

describe('connection limit', () => {
  let service: Service;
  let port: number;
  before(async () => {
    ({ service, port } = await listening({ maxConnections: 3 }));
  });
  after(() => service.close());

  test('connections beyond --max-connections are closed on accept and counted; the others keep working', async () => {
    const held = [new RawClient(port), new RawClient(port), new RawClient(port)];
    for (const c of held) await c.send('GET /health HTTP/1.1\r\nHost: test\r\n\r\n');
    for (const c of held) assert.equal((await c.responses(1))[0]!.status, 200);
    const extra = new RawClient(port);
    await extra.send('GET /health HTTP/1.1\r\nHost: test\r\n\r\n').catch(() => {});
    await extra.waitClosed(2_000);
    assert.equal(extra.received, '', 'no answer on a dropped connection');
    // The held connections still serve, on keep-alive.
    await held[0]!.send('GET /health HTTP/1.1\r\nHost: test\r\n\r\n');
    assert.equal((await held[0]!.responses(2))[1]!.status, 200);
    const text = await metrics(service);
    assert.equal(metricValue(text, 'rmserve_connections_dropped_total'), 1);
    assert.equal(metricValue(text, 'rmserve_open_connections'), 3);
    // Once one goes, a new connection is accepted.
    held[2]!.destroy();
    await held[2]!.waitClosed(1_000);
    await sleep(50);
    const next = new RawClient(port);
    await next.send('GET /health HTTP/1.1\r\nHost: test\r\n\r\n');
    assert.equal((await next.responses(1))[0]!.status, 200);
    for (const c of [...held, next]) c.destroy();
  });
});

describe('HTTP-layer errors in the error shape', () => {
  let service: Service;
  let port: number;
  before(async () => {
    ({ service, port } = await listening({ bodyLimit: 64 * 1024, maxHeaderBytes: 4_096 }));
  });
  after(() => service.close());

  const CASES: { name: string; bytes: string; status: number; code: string; message?: RegExp; route?: string }[] = [
    {
      name: 'headers over --max-header-bytes',
      bytes: `GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      status: 431,
      code: 'headers_too_large',
      message: /4096 bytes \(--max-header-bytes\)/,
    },
    { name: 'not HTTP at all', bytes: 'HELLO\r\n\r\n', status: 400, code: 'malformed_request', message: /HPE_/ },
    { name: 'a space in the URL', bytes: 'GET /a b HTTP/1.1\r\nHost: test\r\n\r\n', status: 400, code: 'malformed_request', message: /HPE_/ },
    { name: 'an unknown HTTP version', bytes: 'GET /health HTTP/9.1\r\nHost: test\r\n\r\n', status: 400, code: 'malformed_request' },
    { name: 'a header name with a space', bytes: 'GET /health HTTP/1.1\r\nHost: test\r\nBad Header: 1\r\n\r\n', status: 400, code: 'malformed_request' },
    {
      name: 'Content-Length and Transfer-Encoding together',
      bytes: 'POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
      status: 400,
      code: 'malformed_request',
    },
    { name: 'bad percent-encoding in a path parameter', bytes: 'GET /v1/models/%E0%A4%A HTTP/1.1\r\nHost: test\r\n\r\n', status: 400, code: 'invalid_url', message: /percent-encoding/ },
    { name: 'HTTP/1.1 without Host', bytes: 'GET /health HTTP/1.1\r\n\r\n', status: 400, code: 'missing_host', route: '/health' },
    {
      name: 'body over --body-limit',
      bytes: scoreRequest(JSON.stringify({ items: [{ prompt: 'x'.repeat(70_000), response: 'y' }] })),
      status: 413,
      code: 'payload_too_large',
      route: '/v1/score',
    },
    {
      name: 'text/plain body',
      bytes: 'POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nitems=1',
      status: 415,
      code: 'unsupported_media_type',
      route: '/v1/score',
    },
    { name: 'JSON cut short', bytes: scoreRequest('{"items": ['), status: 400, code: 'invalid_json', route: '/v1/score' },
    { name: 'unknown route', bytes: 'GET /v2/nothing HTTP/1.1\r\nHost: test\r\n\r\n', status: 404, code: 'not_found', route: 'unmatched' },
  ];

  test('each refusal is {"error": {code, message}} with its status, counted in rmserve_requests_total', async () => {
    const before = await metrics(service);
    // Every case runs, and the failures are reported together.
    const problems: string[] = [];
    for (const c of CASES) {
      const client = new RawClient(port);
      try {
        await client.send(c.bytes).catch(() => {});
        const [response] = await client.responses(1);
        assertErrorShape(response!, c.status, c.code, c.message);
      } catch (err) {
        problems.push(`${c.name}: ${(err as Error).message.split('\n')[0]}`);
      } finally {
        client.destroy();
      }
    }
    assert.deepEqual(problems, []);
    const after = await metrics(service);
    const counted = (route: string, status: number): number =>
      metricValue(after, 'rmserve_requests_total', { route, status: String(status) }, 0) - metricValue(before, 'rmserve_requests_total', { route, status: String(status) }, 0);
    const expected = new Map<string, number>();
    for (const c of CASES) {
      const key = `${c.route ?? 'unmatched'} ${c.status}`;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    for (const [key, n] of expected) {
      const [route, status] = key.split(' ');
      assert.equal(counted(route!, Number(status)), n, `rmserve_requests_total{route="${route}",status="${status}"}`);
    }
    // And the server still scores.
    const client = new RawClient(port);
    await client.send(scoreRequest(GOOD));
    assert.equal((await client.responses(1))[0]!.status, 200);
    client.destroy();
  });
});

describe('aborted requests', () => {
  let service: Service;
  let port: number;
  before(async () => {
    // Lone items wait 5 s for company, so a request is still waiting when its client leaves.
    ({ service, port } = await listening({ maxWaitMs: 5_000, cacheSize: 0 }));
  });
  after(() => service.close());

  test('a client that goes away before its reply counts as status 499, once', async () => {
    const batcher = service.registry.get('rm').batcher;
    const waiting = new RawClient(port);
    await waiting.send(scoreRequest(GOOD));
    for (let i = 0; i < 200 && batcher.depth === 0; i++) await sleep(10);
    assert.equal(batcher.depth, 1, 'the item is queued');
    waiting.destroy();
    // And one that leaves in the middle of its body.
    const halfway = new RawClient(port);
    await halfway.send(`POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"items": [`);
    await sleep(100);
    halfway.destroy();
    let text = '';
    for (let i = 0; i < 100; i++) {
      text = await metrics(service);
      if (metricValue(text, 'rmserve_requests_total', { route: '/v1/score', status: '499' }, 0) >= 2) break;
      await sleep(20);
    }
    await sleep(200); // nothing counts them a second time
    text = await metrics(service);
    assert.equal(metricValue(text, 'rmserve_requests_total', { route: '/v1/score', status: '499' }, 0), 2, text.split('\n').filter((l) => l.startsWith('rmserve_requests_total')).join('\n'));
    assert.equal(metricValue(text, 'rmserve_request_duration_seconds_count', { route: '/v1/score', status: '499' }, 0), 2);
  });
});

after(async () => {
  const { rmSync } = await import('node:fs');
  rmSync(root, { recursive: true, force: true });
});
