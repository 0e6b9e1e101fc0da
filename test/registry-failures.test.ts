// Refused loads: a corrupt model.onnx, a missing tokenizer, NaN outputs and half-copied folders are
// each refused, through the admin API and through the watch, while the old version keeps serving
// (same version, same scores), and each failure shows on /v1/models and /metrics.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, rmSync, truncateSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { bowScore, buildBowRewardGraph, type BowModelWeights } from '../src/training/bow-model.js';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

const ADMIN = { authorization: 'Bearer admin-secret' };
const ITEM = { prompt: 'Is the sky blue?', response: 'Yes, on a clear day it is.' };

interface Status {
  serving: { version: string } | null;
  pinned: string | null;
  last_error: string | null;
  last_failure: { version: string; message: string; source: string } | null;
}

/** Each way a new version can be broken, written at `dir` next to a good copy at `good`. */
const BROKEN: { name: string; message: RegExp; write: (dir: string, good: string) => void }[] = [
  {
    name: 'corrupt model.onnx',
    message: /cannot load ONNX model/,
    write: (dir, good) => {
      cpSync(good, dir, { recursive: true });
      writeFileSync(join(dir, 'model.onnx'), 'this is not an ONNX protobuf, it is a text file');
    },
  },
  {
    name: 'missing tokenizer',
    message: /tokenizer\.json is missing/,
    write: (dir, good) => {
      cpSync(good, dir, { recursive: true });
      rmSync(join(dir, 'tokenizer.json'));
    },
  },
  {
    name: 'NaN outputs',
    message: /non-finite/,
    write: (dir) => {
      const weights = writeBowModel(dir, { tokenizer: 'gpt2', seed: 99 });
      const nan: BowModelWeights = { ...weights, bias: Float32Array.of(Number.NaN) };
      writeFileSync(join(dir, 'model.onnx'), buildBowRewardGraph(nan));
    },
  },
  {
    name: 'half-copied folder (marker present, model.onnx cut short)',
    message: /cannot load ONNX model/,
    write: (dir, good) => {
      cpSync(good, dir, { recursive: true });
      truncateSync(join(dir, 'model.onnx'), Math.floor(statSync(join(good, 'model.onnx')).size / 2));
    },
  },
];

async function status(service: Service): Promise<Status> {
  const reply = await service.app.inject({ method: 'GET', url: '/v1/models/rm' });
  assert.equal(reply.statusCode, 200, reply.body);
  return reply.json<Status>();
}

async function failures(service: Service): Promise<number> {
  const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  return metricValue(text, 'rmserve_model_loads_total', { model: 'rm', result: 'failure' }, 0);
}

/** Scores ITEM and checks it came from version `version` with weights `weights`. */
async function assertServes(service: Service, version: string, weights: BowModelWeights): Promise<void> {
  const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [ITEM] } });
  assert.equal(reply.statusCode, 200, reply.body);
  const body = reply.json<{ model_versions: Record<string, string>; results: { objectives: { rm: { raw: number } } }[] }>();
  assert.deepEqual(body.model_versions, { rm: version });
  const spec = service.registry.get('rm').spec;
  const ids = spec.tokenizer.encode(spec.formatter.render(ITEM), spec.truncationSide).ids;
  const expected = bowScore(weights, ids)[0]!;
  assert.ok(Math.abs(body.results[0]!.objectives.rm.raw - expected) < 1e-4, `score of ${version}: ${body.results[0]!.objectives.rm.raw} vs ${expected}`);
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('refused loads through the admin API', () => {
  const root = tempModelsRoot();
  const good = join(root, '.good');
  let v1: BowModelWeights;
  let service: Service;
  before(async () => {
    v1 = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(good, { tokenizer: 'gpt2', seed: 2 });
    service = await createService({ modelsRoot: root, cacheSize: 0, adminToken: 'admin-secret' });
  });
  after(async () => {
    await service.close();
    rmSync(root, { recursive: true, force: true });
  });

  BROKEN.forEach((broken, i) => {
    test(`${broken.name}: 422, v1 keeps serving, failure on /v1/models and /metrics`, async () => {
      const version = String(10 + i);
      broken.write(join(root, 'rm', version), good);
      const before = await failures(service);
      const reply = await service.app.inject({ method: 'POST', url: '/v1/models/rm/load', headers: ADMIN, payload: { version } });
      assert.equal(reply.statusCode, 422, reply.body);
      assert.equal(reply.json<{ error: { code: string } }>().error.code, 'model_load_failed');
      assert.match(reply.json<{ error: { message: string } }>().error.message, broken.message);
      const s = await status(service);
      assert.equal(s.serving?.version, '1');
      assert.equal(s.last_failure?.version, version);
      assert.equal(s.last_failure?.source, 'api');
      assert.match(s.last_error ?? '', broken.message);
      assert.equal(await failures(service), before + 1);
      await assertServes(service, '1', v1);
    });
  });

  test('half-copied folder without its marker: refused as incomplete', async () => {
    const dir = join(root, 'rm', '20');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.onnx'), readFileSync(join(good, 'model.onnx')));
    const before = await failures(service);
    const reply = await service.app.inject({ method: 'POST', url: '/v1/models/rm/load', headers: ADMIN, payload: { version: '20' } });
    assert.equal(reply.statusCode, 422, reply.body);
    assert.match(reply.json<{ error: { message: string } }>().error.message, /not complete/);
    assert.equal((await status(service)).last_failure?.version, '20');
    assert.equal(await failures(service), before + 1);
    await assertServes(service, '1', v1);
    assert.equal(metricValue((await service.app.inject({ method: 'GET', url: '/metrics' })).body, 'rmserve_model_info', { model: 'rm', version: '1' }), 1);
  });
});

describe('refused loads through the watch', () => {
  const root = tempModelsRoot();
  const good = join(root, '.good');
  let v1: BowModelWeights;
  let service: Service;
  before(async () => {
    v1 = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(good, { tokenizer: 'gpt2', seed: 2 });
    service = await createService({ modelsRoot: root, cacheSize: 0, watch: true, watchSettleMs: 40, watchPollMs: 50 });
  });
  after(async () => {
    await service.close();
    rmSync(root, { recursive: true, force: true });
  });

  BROKEN.forEach((broken, i) => {
    test(`${broken.name}: refused once, v1 keeps serving`, async () => {
      const version = String(10 + i);
      const before = await failures(service);
      // Built aside and renamed in, as a careful deployer would; the failure must come from the contents.
      const staging = join(root, `.staging-${version}`);
      broken.write(staging, good);
      cpSync(staging, join(root, 'rm', version), { recursive: true });
      await until(`the watch to try ${version}`, async () => (await status(service)).last_failure?.version === version);
      const s = await status(service);
      assert.equal(s.serving?.version, '1');
      assert.equal(s.last_failure?.source, 'watch');
      assert.match(s.last_error ?? '', broken.message);
      assert.equal(await failures(service), before + 1);
      await assertServes(service, '1', v1);
    });
  });

  test('a folder still being written (no marker yet) is not loaded; once complete it is', async () => {
    const before = await failures(service);
    const dir = join(root, 'rm', '30');
    const weights = writeBowModel(dir, { tokenizer: 'gpt2', seed: 30, manifest: false });
    await new Promise((resolve) => setTimeout(resolve, 200)); // several settle periods and polls
    await service.watcher!.scan();
    assert.equal((await status(service)).serving?.version, '1');
    assert.equal(await failures(service), before, 'an incomplete folder is not even tried');
    // The last step of a copy made by hand (cp -r, then touch READY): not rmserve's writer.
    writeFileSync(join(dir, 'READY'), '');
    await until('the watch to load 30', async () => (await status(service)).serving?.version === '30');
    const s = await status(service);
    assert.equal(s.last_error, null, 'a successful load clears the last error');
    assert.equal(s.pinned, null, 'the watch does not pin');
    await assertServes(service, '30', weights);
    const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(metricValue(metrics, 'rmserve_model_info', { model: 'rm', version: '30' }), 1);
    assert.equal(metricValue(metrics, 'rmserve_model_info', { model: 'rm', version: '1' }), 0);
  });
});

test('at startup a broken newest version falls back to the newest that loads, and says so', async () => {
  const root = tempModelsRoot();
  try {
    const v1 = writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(join(root, 'rm', '2'), { tokenizer: 'gpt2', seed: 2 });
    writeFileSync(join(root, 'rm', '2', 'model.onnx'), 'garbage');
    const service = await createService({ modelsRoot: root, cacheSize: 0 });
    try {
      const s = await status(service);
      assert.equal(s.serving?.version, '1');
      assert.equal(s.last_failure?.version, '2');
      assert.equal(s.last_failure?.source, 'startup');
      assert.equal(await failures(service), 1);
      assert.equal((await service.app.inject({ method: 'GET', url: '/ready' })).statusCode, 200);
      await assertServes(service, '1', v1);
    } finally {
      await service.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
