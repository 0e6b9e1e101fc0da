// GET /metrics: model and version are two labels on every per-version series (so they join with
// the per-model ones and a hot swap changes `version`, not `model`), request failures are
// counted by reason, tokenization time, input length, waiting/running gauges, build info and
// readiness are exported, and promtool (Debian's prometheus package) finds nothing to lint.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { env as ortEnv } from 'onnxruntime-node';
import { RmserveMetrics } from '../src/metrics.js';
import { createService, type Service } from '../src/service.js';
import { failureReason } from '../src/server/request-metrics.js';
import { metricValue } from './helpers/metrics-text.js';
import { REPO_ROOT, tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

/** Metric families that are per loaded version: each series carries both labels. */
const PER_VERSION = [
  'rmserve_queue_wait_seconds',
  'rmserve_inference_duration_seconds',
  'rmserve_tokenization_duration_seconds',
  'rmserve_tokenized_characters_total',
  'rmserve_prompt_group_items_total',
  'rmserve_input_tokens',
  'rmserve_batch_size',
  'rmserve_batch_tokens',
  'rmserve_padding_ratio',
  'rmserve_queue_depth',
  'rmserve_batches_running',
  'rmserve_rows_running',
  'rmserve_cache_hits_total',
  'rmserve_cache_misses_total',
  'rmserve_tokens_total',
  'rmserve_model_info',
];

const item = (i: number): { prompt: string; response: string } => ({ prompt: `Question number ${i}?`, response: `Answer ${i}, in a few words.` });

/** Every sample line's name and labels. */
function samples(text: string): { name: string; labels: Record<string, string> }[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s/.exec(line);
      assert.ok(match, line);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] as string, m[2] as string]));
      return { name: match[1] as string, labels };
    });
}

const familyOf = (name: string): string => name.replace(/_(bucket|sum|count)$/, '');

describe('metrics exposition', () => {
  const root = tempModelsRoot();
  let service: Service;
  const scrape = async (): Promise<string> => (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  const score = (items: object[]) => service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });

  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', seed: 1 });
    writeBowModel(join(root, 'rm', '2'), { tokenizer: 'gpt2', seed: 2 });
    service = await createService({ modelsRoot: root, maxItems: 4, pins: { rm: '1' } });
    assert.equal((await score([item(0), item(1), item(2)])).statusCode, 200);
    assert.equal((await score([item(0)])).statusCode, 200, 'a cache hit');
    assert.equal((await score([item(0), item(1), item(2), item(3), item(4)])).statusCode, 413);
    assert.equal((await score([{ prompt: 'x' }])).statusCode, 400);
    assert.equal((await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item(0)], model: 'nope' } })).statusCode, 404);
    assert.equal((await service.app.inject({ method: 'GET', url: '/no/such/route' })).statusCode, 404);
  });
  after(() => service.close());

  test('per-version series carry model (the name) and version apart; nothing is labelled name@version', async () => {
    const text = await scrape();
    const all = samples(text);
    for (const { name, labels } of all) {
      if (labels.model !== undefined) assert.ok(!labels.model.includes('@'), `${name} model="${labels.model}"`);
      if (PER_VERSION.includes(familyOf(name))) {
        assert.equal(labels.model, 'rm', name);
        assert.equal(labels.version, '1', name);
      }
    }
    for (const family of PER_VERSION) assert.ok(all.some((s) => familyOf(s.name) === family), `${family} has a series`);
    assert.equal(metricValue(text, 'rmserve_cache_hits_total', { model: 'rm', version: '1' }), 1);
    assert.equal(metricValue(text, 'rmserve_cache_misses_total', { model: 'rm', version: '1' }), 3);
  });

  test('failures are counted by route and reason (the error code), next to requests by status', async () => {
    const text = await scrape();
    const failures = (route: string, reason: string): number => metricValue(text, 'rmserve_request_failures_total', { route, reason }, 0);
    assert.equal(failures('/v1/score', 'too_many_items'), 1);
    assert.equal(failures('/v1/score', 'invalid_request'), 1);
    assert.equal(failures('/v1/score', 'model_not_found'), 1);
    assert.equal(failures('unmatched', 'not_found'), 1);
    assert.equal(metricValue(text, 'rmserve_request_failures_total', { route: '/v1/score' }), metricValue(text, 'rmserve_requests_total', { route: '/v1/score', status: '413' }) + 2);
  });

  test('tokenization time per request and input length per item are histograms', async () => {
    const text = await scrape();
    const labels = { model: 'rm', version: '1' };
    // The cache hit was not tokenized again; the 413, 400 and 404 never reached the tokenizer.
    assert.equal(metricValue(text, 'rmserve_tokenization_duration_seconds_count', labels), 1);
    assert.ok(metricValue(text, 'rmserve_tokenization_duration_seconds_sum', labels) > 0);
    // Input length counts every scored item, the cache hit too.
    assert.equal(metricValue(text, 'rmserve_input_tokens_count', labels), 4);
    const tokens = metricValue(text, 'rmserve_input_tokens_sum', labels);
    assert.ok(tokens >= 4 * 5 && tokens <= 4 * 256, `${tokens} tokens`);
    assert.equal(metricValue(text, 'rmserve_input_tokens_bucket', { ...labels, le: '+Inf' }), 4);
  });

  test('waiting and running gauges are 0 at rest; build info and readiness are exported', async () => {
    const text = await scrape();
    assert.equal(metricValue(text, 'rmserve_queue_depth', { model: 'rm', version: '1' }), 0);
    assert.equal(metricValue(text, 'rmserve_batches_running', { model: 'rm', version: '1' }), 0);
    assert.equal(metricValue(text, 'rmserve_rows_running', { model: 'rm', version: '1' }), 0);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(metricValue(text, 'rmserve_build_info', { version: pkg.version, node: process.versions.node, onnxruntime: ortEnv.versions.common }), 1);
    assert.equal(metricValue(text, 'rmserve_ready'), 1);
  });

  test('promtool check metrics finds nothing (skipped without promtool)', async (t) => {
    if (spawnSync('promtool', ['--version']).error !== undefined) {
      t.skip('promtool is not installed (Debian: apt-get install prometheus)');
      return;
    }
    const run = spawnSync('promtool', ['check', 'metrics'], { input: await scrape(), encoding: 'utf8' });
    assert.equal(run.status, 0, `promtool: ${run.stdout}${run.stderr}`);
    assert.equal(`${run.stdout}${run.stderr}`.trim(), '');
  });

  test('a hot swap changes the version label, not the model label, and drops the old version series', async () => {
    await service.registry.load('rm', '2', { pin: true });
    assert.equal((await score([item(7)])).statusCode, 200);
    // The old version retires once its queue has drained and its grace window passed.
    const deadline = Date.now() + 10_000;
    let text = await scrape();
    while (samples(text).some((s) => familyOf(s.name) === 'rmserve_batch_size' && s.labels.version === '1') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      text = await scrape();
    }
    for (const { name, labels } of samples(text)) {
      if (PER_VERSION.includes(familyOf(name)) && name !== 'rmserve_model_info') assert.equal(labels.version, '2', `${name} ${JSON.stringify(labels)}`);
    }
    assert.equal(metricValue(text, 'rmserve_batch_size_count', { model: 'rm' }), 1, 'one run on version 2');
    assert.equal(metricValue(text, 'rmserve_model_info', { model: 'rm', version: '2' }), 1);
    assert.equal(metricValue(text, 'rmserve_model_info', { model: 'rm', version: '1' }), 0);
  });

  test('readiness turns to 0 when the server drains', async () => {
    service.registry.beginShutdown();
    assert.equal(metricValue(await scrape(), 'rmserve_ready'), 0);
  });
});

describe('RmserveMetrics', () => {
  test('the running gauges count a run until it finishes', async () => {
    const metrics = new RmserveMetrics({ defaultMetrics: false });
    const labels = { model: 'rm', version: '1' };
    const first = metrics.batchStarted(labels, 8);
    const second = metrics.batchStarted(labels, 3);
    const value = async (name: string): Promise<number> => metricValue(await metrics.registry.metrics(), name, labels);
    assert.equal(await value('rmserve_batches_running'), 2);
    assert.equal(await value('rmserve_rows_running'), 11);
    first();
    second();
    assert.equal(await value('rmserve_batches_running'), 0);
    assert.equal(await value('rmserve_rows_running'), 0);
  });

  test('series of a version stay while another load with the same labels is live', async () => {
    // A version folder rewritten under the same name is a second load of "rm"/"1": retiring the
    // first must not wipe the second's series.
    const metrics = new RmserveMetrics({ defaultMetrics: false });
    const labels = { model: 'rm', version: '1' };
    metrics.retainVersion(labels);
    metrics.retainVersion(labels);
    metrics.tokensTotal.inc(labels, 5);
    metrics.releaseVersion(labels);
    assert.equal(metricValue(await metrics.registry.metrics(), 'rmserve_tokens_total', labels), 5);
    metrics.releaseVersion(labels);
    assert.equal(metricValue(await metrics.registry.metrics(), 'rmserve_tokens_total', labels, -1), -1);
  });

  test('a failure reason is the error code of any shape a route answers in, never free text', () => {
    assert.equal(failureReason(JSON.stringify({ error: { code: 'overloaded', message: 'full' } }), 429), 'overloaded');
    assert.equal(failureReason(Buffer.from(JSON.stringify({ error: 'too big', error_type: 'Validation' })), 413), 'validation');
    assert.equal(failureReason(JSON.stringify({ error: { message: 'x', type: 'BadRequestError', code: 400 } }), 400), 'badrequesterror');
    assert.equal(failureReason(JSON.stringify({ error: { code: 'not a code, a sentence' } }), 400), 'http_400');
    assert.equal(failureReason('<html>', 502), 'http_502');
    assert.equal(failureReason(undefined, 500), 'http_500');
  });
});
