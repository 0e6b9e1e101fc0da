// Graceful shutdown of a real `rmserve serve` process: requests accepted and queued when SIGTERM
// arrives are all answered (200, from the serving version) before the process exits 0. Past
// --shutdown-timeout-ms the process exits 1 instead of hanging.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Pool, request } from 'undici';
import { metricValue } from './helpers/metrics-text.js';
import { REPO_ROOT, tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

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

/** Starts `rmserve serve` on a free port and resolves once it listens. */
async function startServer(extraArgs: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli.ts', 'serve', '--models', root, '--port', '0', '--no-watch', '--cache-size', '0', ...extraArgs],
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
  return metricValue(await res.body.text(), 'rmserve_queue_depth', { model: 'rm@1' }, 0);
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
