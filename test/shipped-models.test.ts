// The models `npm start` serves: they load, the newest version serves, and their manifests carry
// what issue 4 asks (command, data hashes, method, test accuracy, LSC statistics) — with the
// accuracy also stated in the README.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { REPO_ROOT } from './helpers/model-fixtures.js';

interface Manifest {
  objectives: string[];
  metrics: { test: { accuracy: number; pairs: number } };
  reference: Record<string, { quantiles: Record<string, number> }>;
  provenance: { command: string; method: string; data: { path: string; sha256: string }[] };
}

const SHIPPED = ['harmless', 'helpful'];

describe('shipped default models', () => {
  let service: Service;
  before(async () => {
    service = await createService({ modelsRoot: join(REPO_ROOT, 'models') });
  });
  after(() => service.close());

  for (const name of SHIPPED) {
    test(`${name}: the newest version serves and its manifest says how it was made`, async () => {
      const version = service.registry.newest(name);
      assert.ok(version !== undefined);
      assert.equal(service.registry.get(name).version, version);
      const dir = join(REPO_ROOT, 'models', name, version);
      const manifest = JSON.parse(readFileSync(join(dir, 'rmserve.json'), 'utf8')) as Manifest;
      assert.deepEqual(manifest.objectives, [name]);
      assert.match(manifest.provenance.command, /\S/);
      assert.match(manifest.provenance.method, /^(bt|pcrm|haf|grm|labelsmooth)$/);
      for (const file of manifest.provenance.data) {
        const actual = createHash('sha256').update(readFileSync(join(REPO_ROOT, file.path))).digest('hex');
        assert.equal(file.sha256, actual, `${file.path} hash`);
      }
      assert.ok(manifest.metrics.test.accuracy > 0.5 && manifest.metrics.test.pairs > 100);
      assert.ok(Number.isFinite(manifest.reference[name]?.quantiles['0.85']));
      assert.ok(existsSync(join(dir, 'report.html')), 'report.html beside the model');
      const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
      assert.ok(readme.includes(manifest.metrics.test.accuracy.toFixed(3)), 'README states the test accuracy');

      const reply = await service.app.inject({
        method: 'POST',
        url: '/v1/score',
        payload: { model: name, transform: 'lsc', items: [{ prompt: 'How do I make tea?', response: 'Boil water and steep the leaves for three minutes.' }] },
      });
      assert.equal(reply.statusCode, 200, reply.body);
      const result = reply.json<{ results: { objectives: Record<string, { raw: number; reference_source: string }> }[] }>().results[0]!;
      assert.ok(Number.isFinite(result.objectives[name]!.raw));
      assert.equal(result.objectives[name]!.reference_source, 'manifest');
    });
  }
});
