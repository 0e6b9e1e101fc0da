// The watch and pins: a version pinned by config, by the API or by a rollback stays while newer
// versions appear; `load latest` unpins and the watch follows the newest again; an unloaded model
// is left alone until the next load.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const SETTLE_MS = 40;
const root = tempModelsRoot();
let service: Service;

before(async () => {
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
  writeBowModel(join(root, 'rm', '2'), { tokenizer: 'gpt2', seed: 2 });
  service = await createService({ modelsRoot: root, cacheSize: 0, pins: { rm: '1' }, adminToken: 't', watch: true, watchSettleMs: SETTLE_MS, watchPollMs: 50 });
});
after(async () => {
  await service.close();
  rmSync(root, { recursive: true, force: true });
});

const serving = (): string => service.registry.get('rm').version;
const admin = async (action: string, payload?: object): Promise<void> => {
  const reply = await service.app.inject({ method: 'POST', url: `/v1/models/rm/${action}`, headers: { authorization: 'Bearer t' }, ...(payload ? { payload } : {}) });
  assert.equal(reply.statusCode, 200, reply.body);
};

/** Writes a new version and gives the watch time to act on it (several settle periods, then a scan). */
async function publish(version: string): Promise<void> {
  writeBowModel(join(root, 'rm', version), { tokenizer: 'gpt2', seed: Number(version) });
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS * 4));
  await service.watcher!.scan();
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS * 2));
  await service.watcher!.scan();
}

test('pins hold against the watch; load latest hands control back to it', async () => {
  assert.equal(serving(), '1', '--pin rm=1 beats the newer version 2 at startup');
  await publish('3');
  assert.equal(serving(), '1', 'pinned by config: the watch leaves it');

  await admin('load', { version: 'latest' });
  assert.equal(serving(), '3');
  await publish('4');
  assert.equal(serving(), '4', 'unpinned: the watch follows the newest');

  await admin('rollback');
  assert.equal(serving(), '3');
  await publish('5');
  assert.equal(serving(), '3', 'a rollback pins');

  await admin('load', { version: '5', pin: false });
  await admin('unload');
  await publish('6');
  assert.throws(() => service.registry.get('rm'), /not loaded/, 'an unloaded model stays unloaded');
  assert.equal((await service.app.inject({ method: 'GET', url: '/ready' })).statusCode, 503, 'nothing serves at all');

  await admin('load', {});
  assert.equal(serving(), '6');
});
