// A table of bad requests: each gets its 4xx and a clear message in {"error": {code, message}},
// and afterwards the server still scores exactly as before.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface BadCase {
  name: string;
  url?: string;
  method?: 'POST' | 'GET';
  payload?: string | object;
  contentType?: string;
  status: number;
  code: string;
  message?: RegExp;
}

const good = { prompt: 'Is the sky blue?', response: 'Yes, on a clear day.' };

const CASES: BadCase[] = [
  { name: 'malformed JSON', payload: '{"items": [', status: 400, code: 'invalid_json' },
  { name: 'empty JSON body', payload: '', status: 400, code: 'invalid_json' },
  { name: 'missing items', payload: {}, status: 400, code: 'invalid_request', message: /items/ },
  { name: 'items is not a list', payload: { items: 'x' }, status: 400, code: 'invalid_request' },
  { name: 'empty item list', payload: { items: [] }, status: 400, code: 'invalid_request', message: /fewer than 1|at least|NOT have fewer/i },
  { name: 'item without response', payload: { items: [{ prompt: 'hi' }] }, status: 400, code: 'invalid_request' },
  { name: 'response of the wrong type', payload: { items: [{ prompt: 'hi', response: 3 }] }, status: 400, code: 'invalid_request' },
  { name: 'unknown message role', payload: { items: [{ messages: [{ role: 'robot', content: 'x' }] }] }, status: 400, code: 'invalid_request' },
  {
    name: 'messages that do not end with the assistant',
    payload: { items: [{ messages: [{ role: 'user', content: 'hi' }] }] },
    status: 400,
    code: 'invalid_item',
    message: /end with the assistant/,
  },
  { name: 'unknown field', payload: { items: [good], temperature: 1 }, status: 400, code: 'invalid_request' },
  { name: 'bad truncation side', payload: { items: [good], truncation: 'middle' }, status: 400, code: 'invalid_request' },
  { name: 'model of the wrong type', payload: { items: [good], model: 5 }, status: 400, code: 'invalid_request' },
  { name: 'unknown model', payload: { items: [good], model: 'gpt-7' }, status: 404, code: 'model_not_found', message: /gpt-7/ },
  { name: 'too many items', payload: { items: Array.from({ length: 5 }, () => good) }, status: 413, code: 'too_many_items', message: /at most 4/ },
  { name: 'oversized body', payload: { items: [{ prompt: 'x'.repeat(70_000), response: 'y' }] }, status: 413, code: 'payload_too_large' },
  { name: 'wrong content type', payload: 'items=1', contentType: 'text/plain', status: 415, code: 'unsupported_media_type' },
  { name: 'unknown route', url: '/v2/score', payload: { items: [good] }, status: 404, code: 'not_found' },
  { name: 'get_reward without query', url: '/get_reward', payload: { prompts: ['x'] }, status: 400, code: 'invalid_request' },
  { name: 'get_reward with empty query list', url: '/get_reward', payload: { query: [] }, status: 400, code: 'invalid_request' },
  { name: 'get_reward with an empty string', url: '/get_reward', payload: { query: [''] }, status: 400, code: 'invalid_request' },
  {
    name: 'get_reward text that tokenizes to nothing',
    url: '/get_reward',
    payload: { query: ['   \n\t '] },
    status: 400,
    code: 'invalid_item',
    message: /no tokens/,
  },
];

describe('bad requests', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    // BERT's WordPiece drops whitespace entirely, so a blank text really tokenizes to nothing.
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'bert-base-uncased' });
    service = await createService({ modelsRoot: root, maxItems: 4, bodyLimit: 64 * 1024 });
  });
  after(() => service.close());

  const scoreGood = async (): Promise<number> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [good] } });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<{ results: { reward: number }[] }>().results[0]!.reward;
  };

  test('each is answered with its status, code and message, and scoring is unchanged after', async () => {
    const before = await scoreGood();
    for (const c of CASES) {
      const reply = await service.app.inject({
        method: c.method ?? 'POST',
        url: c.url ?? '/v1/score',
        headers: { 'content-type': c.contentType ?? 'application/json' },
        payload: typeof c.payload === 'string' ? c.payload : JSON.stringify(c.payload),
      });
      assert.equal(reply.statusCode, c.status, `${c.name}: ${reply.body}`);
      const body = reply.json<{ error: { code: string; message: string } }>();
      assert.equal(body.error.code, c.code, `${c.name}: ${reply.body}`);
      assert.ok(body.error.message.length > 0, `${c.name}: has a message`);
      if (c.message) assert.match(body.error.message, c.message, c.name);
    }
    assert.equal(await scoreGood(), before);
    const health = await service.app.inject({ method: 'GET', url: '/ready' });
    assert.equal(health.statusCode, 200);
  });

  test('a full queue answers 429 with Retry-After at once and admits nothing', async () => {
    const small = await createService({ modelsRoot: root, maxQueueItems: 2, cacheSize: 0, maxWaitMs: 2000 });
    try {
      const items = [0, 1, 2].map((i) => ({ prompt: `p${i}`, response: `r${i}` }));
      // Two items fill the queue while they wait out max-wait-ms; one more does not fit now.
      const filling = small.app.inject({ method: 'POST', url: '/v1/score', payload: { items: items.slice(0, 2) } });
      for (let i = 0; i < 200 && small.registry.get('rm').batcher.depth < 2; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal(small.registry.get('rm').batcher.depth, 2);
      const reply = await small.app.inject({ method: 'POST', url: '/v1/score', payload: { items: items.slice(2) } });
      assert.equal(reply.statusCode, 429, reply.body);
      assert.equal(reply.headers['retry-after'], '1');
      assert.equal(reply.json<{ error: { code: string } }>().error.code, 'overloaded');
      assert.equal(small.registry.get('rm').batcher.depth, 2, 'nothing more was queued');
      assert.equal((await filling).statusCode, 200);
      // A request larger than the whole queue could never fit: 413, not a 429 to retry forever.
      const never = await small.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });
      assert.equal(never.statusCode, 413, never.body);
      const ok = await small.app.inject({ method: 'POST', url: '/v1/score', payload: { items: items.slice(0, 2) } });
      assert.equal(ok.statusCode, 200, ok.body);
    } finally {
      await small.close();
    }
  });

  test('metrics count requests by route and status in Prometheus text format', async () => {
    const reply = await service.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(reply.statusCode, 200);
    assert.match(reply.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
    for (const name of [
      'rmserve_requests_total', 'rmserve_request_duration_seconds_bucket', 'rmserve_queue_wait_seconds_bucket',
      'rmserve_inference_duration_seconds_bucket', 'rmserve_batch_size_bucket', 'rmserve_batch_tokens_bucket',
      'rmserve_padding_ratio_bucket', 'rmserve_queue_depth', 'rmserve_cache_hits_total', 'rmserve_cache_misses_total',
      'rmserve_tokens_total', 'rmserve_model_loads_total', 'rmserve_model_info', 'process_cpu_user_seconds_total',
    ]) {
      assert.match(reply.body, new RegExp(`^${name}`, 'm'), name);
    }
    assert.match(reply.body, /^rmserve_requests_total\{route="\/v1\/score",status="413"\} 2$/m);
    assert.match(reply.body, /^rmserve_model_loads_total\{model="rm",result="success"\} 1$/m);
    assert.match(reply.body, /^rmserve_model_info\{model="rm",version="1"\} 1$/m);
  });
});
