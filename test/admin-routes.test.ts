// Admin routes: bearer token required (401 without or with a wrong one), paths outside the models
// root refused (../, absolute, symlinks out), 404 for unknown models and versions, and
// load/rollback/unload doing what they say. Also the optional API key on the scoring routes.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const TOKEN = 'admin-secret-7f3a';
const API_KEY = 'scoring-key-91c2';
const ITEM = { prompt: 'Is the sky blue?', response: 'Yes.' };

interface Status {
  serving: { version: string } | null;
  pinned: string | null;
  previous: string | null;
  unloaded: boolean;
}

describe('admin routes', () => {
  const root = tempModelsRoot();
  const outside = tempModelsRoot();
  let service: Service;

  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(join(root, 'rm', '2'), { tokenizer: 'gpt2', seed: 2 });
    writeBowModel(join(root, 'staging', 'candidate'), { tokenizer: 'gpt2', seed: 3, manifest: false });
    // A complete model folder outside the root, and links to it from inside.
    writeBowModel(join(outside, 'evil'), { tokenizer: 'gpt2', seed: 4 });
    service = await createService({ modelsRoot: root, cacheSize: 0, adminToken: TOKEN, apiKey: API_KEY });
    symlinkSync(join(outside, 'evil'), join(root, 'rm', '9'));
    mkdirSync(join(root, 'links'));
    symlinkSync(join(outside, 'evil'), join(root, 'links', 'evil'));
    symlinkSync(outside, join(root, 'links', 'up'));
  });
  after(async () => {
    await service.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  /** `authorization` null sends no header. */
  const admin = (url: string, payload?: object, authorization: string | null = `Bearer ${TOKEN}`) =>
    service.app.inject({
      method: 'POST',
      url,
      headers: authorization === null ? {} : { authorization },
      ...(payload === undefined ? {} : { payload }),
    });
  const status = async (): Promise<Status> =>
    (await service.app.inject({ method: 'GET', url: '/v1/models/rm', headers: { authorization: `Bearer ${API_KEY}` } })).json<Status>();

  test('401 without a token or with a wrong one, and nothing changes', async () => {
    const wrong = [null, '', 'Bearer', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN, `Bearer ${API_KEY}`];
    for (const url of ['/v1/models/rm/load', '/v1/models/rm/unload', '/v1/models/rm/rollback']) {
      for (const authorization of wrong) {
        const reply = await admin(url, { version: '1' }, authorization);
        assert.equal(reply.statusCode, 401, `${url} with ${JSON.stringify(authorization)}: ${reply.body}`);
        assert.equal(reply.json<{ error: { code: string } }>().error.code, 'unauthorized');
        assert.match(String(reply.headers['www-authenticate']), /^Bearer/);
      }
    }
    const s = await status();
    assert.equal(s.serving?.version, '2');
    assert.equal(s.unloaded, false);
  });

  test('404 for unknown models and versions', async () => {
    for (const url of ['/v1/models/nope/load', '/v1/models/nope/unload', '/v1/models/nope/rollback', '/v1/models/..%2Frm/load']) {
      const reply = await admin(url, {});
      assert.equal(reply.statusCode, 404, `${url}: ${reply.body}`);
      assert.equal(reply.json<{ error: { code: string } }>().error.code, 'model_not_found');
    }
    const reply = await admin('/v1/models/rm/load', { version: '77' });
    assert.equal(reply.statusCode, 404, reply.body);
    assert.equal(reply.json<{ error: { code: string } }>().error.code, 'version_not_found');
  });

  test('paths outside the models root are refused: ../, absolute, symlinks out', async () => {
    const refused: { body: object; status: number; code: string }[] = [
      { body: { path: '../' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: `../${outside.split('/').at(-1)}/evil` }, status: 403, code: 'path_outside_models_root' },
      { body: { path: 'rm/../../' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: join(outside, 'evil') }, status: 403, code: 'path_outside_models_root' },
      { body: { path: '/etc' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: '/' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: '.' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: 'links/evil' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: 'links/up/evil' }, status: 403, code: 'path_outside_models_root' },
      { body: { path: join(root, 'links', 'evil') }, status: 403, code: 'path_outside_models_root' },
      { body: { version: '9' }, status: 403, code: 'path_outside_models_root' },
      { body: { version: '../staging' }, status: 400, code: 'invalid_version' },
      { body: { version: '..' }, status: 400, code: 'invalid_version' },
      { body: { version: '1', path: 'rm/1' }, status: 400, code: 'invalid_request' },
      { body: { path: 'rm/missing' }, status: 404, code: 'version_not_found' },
    ];
    for (const c of refused) {
      const reply = await admin('/v1/models/rm/load', c.body);
      assert.equal(reply.statusCode, c.status, `${JSON.stringify(c.body)}: ${reply.body}`);
      assert.equal(reply.json<{ error: { code: string } }>().error.code, c.code, JSON.stringify(c.body));
    }
    assert.equal((await status()).serving?.version, '2', 'nothing was loaded');
  });

  test('load by version pins it, rollback goes back, load latest unpins, unload stops serving', async () => {
    let reply = await admin('/v1/models/rm/load', { version: '1' });
    assert.equal(reply.statusCode, 200, reply.body);
    assert.deepEqual(
      (({ serving, pinned, previous }) => ({ version: serving?.version, pinned, previous }))(reply.json<Status>()),
      { version: '1', pinned: '1', previous: '2' },
    );
    reply = await admin('/v1/models/rm/rollback');
    assert.equal(reply.statusCode, 200, reply.body);
    assert.equal(reply.json<Status>().serving?.version, '2');
    assert.equal(reply.json<Status>().pinned, '2');
    assert.equal(reply.json<Status>().previous, '1');

    // A folder inside the root named by path (relative or absolute) serves under its path.
    reply = await admin('/v1/models/rm/load', { path: 'staging/candidate' });
    assert.equal(reply.statusCode, 200, reply.body);
    assert.equal(reply.json<Status>().serving?.version, 'staging/candidate');
    reply = await admin('/v1/models/rm/load', { path: join(root, 'rm', '1') });
    assert.equal(reply.json<Status>().serving?.version, '1');

    reply = await admin('/v1/models/rm/load', {});
    assert.equal(reply.statusCode, 200, reply.body);
    assert.equal(reply.json<Status>().serving?.version, '2');
    assert.equal(reply.json<Status>().pinned, null);

    reply = await admin('/v1/models/rm/unload');
    assert.equal(reply.statusCode, 200, reply.body);
    assert.equal(reply.json<Status>().serving, null);
    assert.equal(reply.json<Status>().unloaded, true);
    const score = await service.app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${API_KEY}` }, payload: { items: [ITEM] } });
    assert.equal(score.statusCode, 404, score.body);

    reply = await admin('/v1/models/rm/rollback');
    assert.equal(reply.json<Status>().serving?.version, '2', 'rollback after unload brings the unloaded version back');
  });

  test('the API key guards scoring and model listing; probes and metrics stay open', async () => {
    const payload = { items: [ITEM] };
    for (const authorization of [undefined, 'Bearer nope', `Bearer ${TOKEN}`]) {
      const headers = authorization === undefined ? {} : { authorization };
      for (const [method, url] of [['POST', '/v1/score'], ['POST', '/get_reward'], ['GET', '/v1/models'], ['GET', '/v1/models/rm']] as const) {
        const reply = await service.app.inject({ method, url, headers, ...(method === 'POST' ? { payload: url === '/get_reward' ? { query: ['hi'] } : payload } : {}) });
        assert.equal(reply.statusCode, 401, `${url} with ${authorization}: ${reply.body}`);
      }
    }
    const ok = await service.app.inject({ method: 'POST', url: '/v1/score', headers: { authorization: `Bearer ${API_KEY}` }, payload });
    assert.equal(ok.statusCode, 200, ok.body);
    for (const url of ['/health', '/ready', '/metrics', '/docs/json']) {
      assert.equal((await service.app.inject({ method: 'GET', url })).statusCode, 200, url);
    }
  });
});

test('admin routes are off without an admin token', async () => {
  const root = tempModelsRoot();
  writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
  const service = await createService({ modelsRoot: root });
  try {
    for (const url of ['/v1/models/rm/load', '/v1/models/rm/unload', '/v1/models/rm/rollback']) {
      const reply = await service.app.inject({ method: 'POST', url, headers: { authorization: 'Bearer anything' }, payload: {} });
      assert.equal(reply.statusCode, 404, `${url}: ${reply.body}`);
    }
    assert.equal((await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [ITEM] } })).statusCode, 200, 'no API key: scoring is open');
  } finally {
    await service.close();
    rmSync(root, { recursive: true, force: true });
  }
});
