// promoteVersion() against a real server over a socket: a version by name or a folder by path
// goes live; a wrong token, an unknown model, a broken version and an unreachable server each
// reject with a PromoteError that says why, and the old version keeps serving.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PromoteError, promoteVersion } from '../src/server/promote-client.js';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const TOKEN = 'promote-token';
const root = tempModelsRoot();
let service: Service;
let url: string;

before(async () => {
  for (const v of ['1', '2', '3']) writeBowModel(join(root, 'rm', v), { tokenizer: 'gpt2', seed: Number(v) });
  writeFileSync(join(root, 'rm', '3', 'model.onnx'), 'broken');
  writeBowModel(join(root, 'exports', 'run-42'), { tokenizer: 'gpt2', seed: 42, manifest: false });
  service = await createService({ modelsRoot: root, cacheSize: 0, adminToken: TOKEN, pins: { rm: '1' } });
  await service.app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
});
after(async () => {
  await service.close();
  rmSync(root, { recursive: true, force: true });
});

async function rejectsWith(promise: Promise<unknown>, status: number, code: string): Promise<PromoteError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PromoteError, String(err));
    assert.equal(err.status, status, err.message);
    assert.equal(err.code, code, err.message);
    return err;
  }
  throw new Error('expected a rejection');
}

test('a version by name, then a folder by path, goes live', async () => {
  assert.equal(service.registry.get('rm').version, '1', '--pin rm=1 served the pinned version at startup');
  const status = await promoteVersion(url, 'rm', { version: '2', pin: false }, TOKEN);
  assert.equal(status.serving?.version, '2');
  assert.equal(status.pinned, null);
  assert.equal(service.registry.get('rm').version, '2');
  const byPath = await promoteVersion(`${url}/`, 'rm', 'exports/run-42', TOKEN);
  assert.equal(byPath.serving?.version, 'exports/run-42');
  assert.equal(byPath.pinned, 'exports/run-42');
  assert.equal((await promoteVersion(url, 'rm', join(root, 'rm', '2'), TOKEN)).serving?.version, '2');
});

test('refusals reject with the server status and code; the old version keeps serving', async () => {
  await rejectsWith(promoteVersion(url, 'rm', '1', 'wrong-token'), 401, 'unauthorized');
  await rejectsWith(promoteVersion(url, 'nope', '1', TOKEN), 404, 'model_not_found');
  await rejectsWith(promoteVersion(url, 'rm', '../..', TOKEN), 403, 'path_outside_models_root');
  const broken = await rejectsWith(promoteVersion(url, 'rm', '3', TOKEN), 422, 'model_load_failed');
  assert.match(broken.message, /cannot load ONNX model/);
  assert.equal(service.registry.get('rm').version, '2');
});

test('an unreachable server rejects with status 0', async () => {
  // A port that was free a moment ago: nothing listens there.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  const err = await rejectsWith(promoteVersion(`http://127.0.0.1:${port}`, 'rm', '2', TOKEN), 0, 'ECONNREFUSED');
  assert.match(err.message, /cannot reach/);
});
