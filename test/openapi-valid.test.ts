// The OpenAPI document at /docs/json is valid for the validators clients' tooling runs
// (swagger-parser, and redocly's recommended ruleset with 0 errors), with and without the bearer
// tokens configured: operationIds, the security scheme only where used, tuples in OpenAPI 3.0's
// form, and every error status documented. The document's rewrites leave request validation as
// strict as the TypeBox schemas say.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { createService, type Service } from '../src/service.js';
import { operationIdOf } from '../src/server/openapi.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface Operation {
  operationId?: string;
  security?: Record<string, string[]>[];
  responses: Record<string, { description: string; headers?: Record<string, unknown> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components?: { securitySchemes?: Record<string, unknown> };
}

const root = tempModelsRoot();
writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2' });

function operations(doc: Document): { method: string; path: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method, path, op })));
}

async function validate(doc: Document): Promise<void> {
  // From a file, as a client's tooling would read it (swagger-parser also dereferences objects in place).
  const file = join(mkdtempSync(join(tmpdir(), 'rmserve-openapi-')), 'openapi.json');
  writeFileSync(file, JSON.stringify(doc));
  await SwaggerParser.validate(file);
  const config = await createConfig({ extends: ['recommended'] });
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: 'rmserve-openapi.json', config });
  const errors = problems.filter((p) => p.severity === 'error');
  const shown = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? '?'}`).join('\n');
  assert.equal(errors.length, 0, `redocly found errors:\n${shown}`);
  // Warnings are not errors, but there are none today; say which if one appears.
  assert.equal(problems.length, 0, `redocly warnings:\n${shown}`);
}

for (const tokens of [false, true]) {
  describe(`OpenAPI document ${tokens ? 'with --api-key and --admin-token' : 'without tokens'}`, () => {
    let service: Service;
    let doc: Document;
    before(async () => {
      service = await createService({ modelsRoot: root, ...(tokens ? { apiKey: 'api-key', adminToken: 'admin-token' } : {}) });
      const reply = await service.app.inject({ method: 'GET', url: '/docs/json' });
      assert.equal(reply.statusCode, 200, reply.body);
      doc = reply.json<Document>();
    });
    after(() => service.close());

    test('swagger-parser and redocly (recommended) accept it', async () => {
      assert.equal(doc.openapi, '3.0.3');
      await validate(doc);
    });

    test('every operation has a unique operationId derived from its method and path', () => {
      const ids = operations(doc).map(({ method, path, op }) => {
        assert.equal(op.operationId, operationIdOf(method, path), `${method} ${path}`);
        return op.operationId;
      });
      assert.equal(new Set(ids).size, ids.length);
      assert.ok(ids.includes('postV1Score') && ids.includes('getReady'), ids.join(', '));
    });

    test('the bearer scheme is declared exactly when a route uses it', () => {
      const secured = operations(doc).filter(({ op }) => (op.security ?? []).some((s) => 'bearerAuth' in s));
      for (const { op } of operations(doc)) assert.ok(Array.isArray(op.security), 'every operation says whether it needs a token');
      assert.equal(doc.components?.securitySchemes?.bearerAuth !== undefined, secured.length > 0);
      const paths = new Set(secured.map(({ path }) => path));
      assert.equal(paths.has('/v1/score'), tokens, '--api-key guards scoring');
      assert.equal(paths.has('/health') || paths.has('/ready') || paths.has('/metrics'), false, 'probes and metrics stay open');
      if (tokens) {
        assert.ok(paths.has('/v1/models/{name}/load'), 'admin routes take the admin token');
        assert.ok('401' in (doc.paths['/v1/score']?.post?.responses ?? {}));
      }
    });

    test('error statuses are documented: 503 on /ready, 413/415/429/503 on scoring routes', () => {
      const ready = doc.paths['/ready']?.get;
      assert.ok(ready !== undefined);
      assert.match(ready.responses['503']?.description ?? '', /not_ready/);
      for (const path of ['/v1/score', '/get_reward']) {
        const responses = doc.paths[path]?.post?.responses ?? {};
        for (const status of ['200', '400', '404', '413', '415', '429', '500', '503', '4XX']) assert.ok(status in responses, `${path} ${status}`);
        assert.ok(responses['429']?.headers?.['Retry-After'] !== undefined, 'a 429 says when to retry');
      }
      for (const { method, path, op } of operations(doc)) {
        assert.ok('500' in op.responses && '4XX' in op.responses, `${method} ${path}`);
      }
    });
  });
}

describe('tuples: written for OpenAPI 3.0 in the document, validated as tuples', () => {
  let service: Service;
  before(async () => {
    service = await createService({ modelsRoot: root });
  });
  after(() => service.close());

  test('clip is an array of exactly two numbers in the document, and a 1- or 3-item clip is still a 400', async () => {
    const doc = (await service.app.inject({ method: 'GET', url: '/docs/json' })).json<{
      paths: { '/v1/score': { post: { requestBody: { content: { 'application/json': { schema: { properties: { clip: unknown } } } } } } } };
    }>();
    const clip = doc.paths['/v1/score'].post.requestBody.content['application/json'].schema.properties.clip;
    assert.deepEqual(clip, { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 });

    const item = { prompt: 'Is the sky blue?', response: 'Yes.' };
    for (const [bad, status] of [[[1], 400], [[1, 2, 3], 400], ['1,2', 400], [[-1, 1], 200]] as const) {
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item], transform: 'none', clip: bad } });
      assert.equal(reply.statusCode, status, `clip ${JSON.stringify(bad)}: ${reply.body}`);
    }
  });
});
