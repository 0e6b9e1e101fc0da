// A client that goes away frees its queued items: over a real socket, the request's items leave
// the batch queue when the connection closes, before any ONNX run takes them.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { metricValue } from './helpers/metrics-text.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

describe('client disconnect', () => {
  const root = tempModelsRoot();
  let service: Service;
  let port: number;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2' });
    // A long max wait keeps lone items queued long enough to watch them leave.
    service = await createService({ modelsRoot: root, cacheSize: 0, maxWaitMs: 5_000 });
    await service.app.listen({ port: 0, host: '127.0.0.1' });
    port = (service.app.server.address() as AddressInfo).port;
  });
  after(() => service.close());

  const waitFor = async (condition: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(condition(), what);
  };

  test('queued items are dropped when the connection closes', async () => {
    const batcher = service.registry.get('rm').batcher;
    const items = [0, 1, 2].map((i) => ({ prompt: `question ${i}`, response: `answer ${i}` }));
    const req = request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/score', headers: { 'content-type': 'application/json' } });
    req.on('error', () => {}); // the socket is destroyed on purpose
    req.end(JSON.stringify({ items }));
    await waitFor(() => batcher.depth === 3, 'the three items are queued');
    req.destroy();
    await waitFor(() => batcher.depth === 0, 'the queue is empty after the client left');
    const idle = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(idle, /^# TYPE rmserve_batch_size histogram$/m, 'the batch-size histogram is exported');
    assert.equal(metricValue(idle, 'rmserve_batch_size_count', { model: 'rm', version: '1' }, 0), 0, 'no ONNX run took them');
    // Control: a batch that does run is counted under that very name and label. 64 identical items
    // fill a batch (max batch size 64) at once, so it runs without waiting out the 5 s, as one row.
    const full = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: Array(64).fill(items[0]) } });
    assert.equal(full.statusCode, 200, full.body);
    const ran = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(metricValue(ran, 'rmserve_batch_size_count', { model: 'rm', version: '1' }), 1, 'one ONNX run, counted');
  });
});
