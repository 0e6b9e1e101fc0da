// /ready and the registry's lifecycle: probes read a cached view of the disk (rescanned at most
// once per READY_RESCAN_MS), a model folder that appears is still noticed, an unloaded model is
// not waited for, and serving → draining → closed only moves forward.
import assert from 'node:assert/strict';
import fs, { rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { READY_RESCAN_MS } from '../src/scoring/registry.js';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const root = tempModelsRoot();
let service: Service;

before(async () => {
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
  service = await createService({ modelsRoot: root, cacheSize: 0, adminToken: 't' });
});
after(async () => {
  await service.close();
  rmSync(root, { recursive: true, force: true });
});

const probe = async (): Promise<number> => (await service.app.inject({ method: 'GET', url: '/ready' })).statusCode;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Counts readdirSync calls made while `run` runs (the ESM bindings follow the patched module). */
async function countListings(run: () => Promise<void>): Promise<number> {
  const original = fs.readdirSync;
  let calls = 0;
  fs.readdirSync = ((...args: Parameters<typeof original>) => {
    calls++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    await run();
  } finally {
    fs.readdirSync = original;
    syncBuiltinESMExports();
  }
  return calls;
}

test('probes in quick succession do not list the models root each time', async () => {
  assert.equal(await probe(), 200);
  const started = performance.now();
  const calls = await countListings(async () => {
    for (let i = 0; i < 20; i++) assert.equal(await probe(), 200);
  });
  // Only meaningful when the probes ran inside one rescan window (a very slow machine may not).
  if (performance.now() - started < READY_RESCAN_MS) assert.equal(calls, 0);
  await sleep(READY_RESCAN_MS + 20);
  assert.ok((await countListings(async () => void (await probe()))) > 0, 'a stale view is rescanned');
});

test('a model that appears with a complete version makes /ready wait for it; an unloaded one does not', async () => {
  writeBowModel(join(root, 'other', '1'), { tokenizer: 'gpt2', seed: 2 });
  await sleep(READY_RESCAN_MS + 20);
  assert.equal(await probe(), 503, 'other has a complete version but does not serve');
  await service.registry.load('other');
  assert.equal(await probe(), 200);
  await service.registry.unload('other');
  assert.equal(await probe(), 200, 'unloaded through the API: not needed for /ready');
  assert.equal(service.registry.statusOf('other').unloaded, true);
});

test('the lifecycle moves serving → draining → closed and never back', async () => {
  const { registry } = service;
  assert.equal(registry.lifecycle, 'serving');
  assert.equal(registry.draining, false);
  registry.beginShutdown();
  assert.equal(registry.lifecycle, 'draining');
  assert.equal(registry.draining, true);
  assert.equal(registry.ready, false);
  assert.equal(registry.follows('rm'), true, 'draining still follows the newest version');
  await registry.close();
  assert.equal(registry.lifecycle, 'closed');
  assert.equal(registry.follows('rm'), false);
  registry.beginShutdown();
  assert.equal(registry.lifecycle, 'closed');
});
