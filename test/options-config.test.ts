// Options declared once (src/config/): the commands' tables give the same config the commands
// used to build by hand, read env vars and flags alike, fill training defaults in one place for
// the command and runTraining, and --max-item-chars reaches the tokenizer pool.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import { serveCommand } from '../src/commands/serve.js';
import { trainCommand } from '../src/commands/train.js';
import { optionEntries, readOptions } from '../src/config/options.js';
import { SERVE_OPTIONS } from '../src/config/serve.js';
import { DEFAULT_TRAIN_CONFIG, METHOD_DEFAULTS, TRAIN_OPTIONS, resolveTrainConfig } from '../src/config/train.js';
import { DEFAULT_CONFIG, createService, type Service } from '../src/service.js';
import { DEFAULT_TRAIN_OPTIONS } from '../src/training/pipeline.js';
import { DEFAULT_OPTIMIZER } from '../src/training/loop.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

/** Parses `args` (and the environment `env`) with a command whose action is replaced, so nothing runs. */
async function parse(make: () => Command, args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const command = make().exitOverride().configureOutput({ writeErr: () => {} }).action(() => {});
    await command.parseAsync(args, { from: 'user' });
    return command.opts();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

// The developer's own RMSERVE_* settings must not leak into what the defaults are compared with.
for (const { spec } of optionEntries(SERVE_OPTIONS)) if (spec.env !== undefined) delete process.env[spec.env];

describe('serve', () => {
  test('no flags: the config the command built by hand before, and DEFAULT_CONFIG but for watching, calibrating, the instance count and the solo placement', async () => {
    const { config, command } = readOptions(SERVE_OPTIONS, await parse(serveCommand, []));
    const expected = {
      modelsRoot: './models', device: 'cpu', intraOpThreads: 0, interOpThreads: 0, ortSpinning: true, ortPoolNice: 10, inferenceThread: true, instances: 'auto', soloThreads: 0, soloInlineMs: 20,
      maxBatchSize: 64, maxBatchTokens: 32768, maxWaitMs: 0, calibrateBatching: true, maxQueueItems: 4096, maxPaddingRatio: 0.1,
      cacheSize: 100_000, maxItems: 256, maxItemChars: 1 << 20, bodyLimit: 8 * 1024 * 1024,
      requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000, maxConnections: 1024, maxHeaderBytes: 16_384,
      rewardDefaults: { transform: 'none', referenceQuantile: 0.85 },
      tokenizerThreads: 1, promptGroups: true, referenceCacheSize: 10_000, pins: {}, watch: true, watchSettleMs: 1000, watchPollMs: 2000, accessLog: false,
    };
    assert.deepEqual(config, expected);
    assert.deepEqual(command, { port: 8000, host: '127.0.0.1', shutdownTimeoutMs: 25_000, logLevel: 'info' });
    assert.deepEqual(DEFAULT_CONFIG, { ...expected, watch: false, calibrateBatching: false, instances: 1, soloInlineMs: 0 });
  });

  test('environment variables set what their flags set; a flag beats its variable', async () => {
    const env = { RMSERVE_MAX_QUEUE: '7', RMSERVE_PIN: 'a=3, b=7', RMSERVE_API_KEY: '', RMSERVE_NO_WATCH: '1', RMSERVE_TRANSFORM: 'lsc', RMSERVE_MAX_ITEM_CHARS: '99' };
    const fromEnv = readOptions(SERVE_OPTIONS, await parse(serveCommand, [], env)).config;
    assert.equal(fromEnv.maxQueueItems, 7);
    assert.deepEqual(fromEnv.pins, { a: '3', b: '7' });
    assert.equal('apiKey' in fromEnv, false, 'an empty secret is none');
    assert.equal(fromEnv.watch, false);
    assert.equal(fromEnv.rewardDefaults.transform, 'lsc');
    assert.equal(fromEnv.maxItemChars, 99);
    const flags = readOptions(SERVE_OPTIONS, await parse(serveCommand, ['--max-queue', '9', '--pin', 'c=1', '--pin', 'd=2', '--default-model', 'x, y'], env)).config;
    assert.equal(flags.maxQueueItems, 9);
    assert.deepEqual(flags.pins, { c: '1', d: '2' });
    assert.deepEqual(flags.defaultModels, ['x', 'y']);
  });

  test('a bad value is refused with the parser\'s message', async () => {
    await assert.rejects(parse(serveCommand, ['--max-queue', '-1']), /expected a non-negative integer, got "-1"/);
    await assert.rejects(parse(serveCommand, ['--max-item-chars', '0']), /expected a positive integer, got "0"/);
    await assert.rejects(parse(serveCommand, ['--transform', 'nope']), /Allowed choices are none, lsc, sigmoid, znorm, clip/);
    await assert.rejects(parse(serveCommand, ['--instances', '0']), /expected a positive integer or auto, got "0"/);
    await assert.rejects(parse(serveCommand, ['--instances', 'two']), /expected a positive integer or auto, got "two"/);
    assert.equal(readOptions(SERVE_OPTIONS, await parse(serveCommand, ['--instances', '3'])).config.instances, 3);
    assert.equal(readOptions(SERVE_OPTIONS, await parse(serveCommand, [], { RMSERVE_INSTANCES: '1' })).config.instances, 1);
  });
});

describe('--max-item-chars reaches the tokenizer', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2' });
    service = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 0, maxItemChars: 50 });
  });
  after(() => service.close());

  test('an item of more characters is 413 naming the limit; one at the limit scores', async () => {
    const over = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'p'.repeat(40), response: 'r'.repeat(11) }] } });
    assert.equal(over.statusCode, 413, over.body);
    assert.match(over.json<{ error: { message: string } }>().error.message, /items\[0\] has 51 characters; at most 50 per item \(--max-item-chars\)/);
    const at = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'p'.repeat(40), response: 'r'.repeat(10) }] } });
    assert.equal(at.statusCode, 200, at.body);
  });
});

describe('train', () => {
  const base = ['--data', 'a.jsonl', '--out', 'models/helpful/3'];
  const cli = async (...args: string[]) => resolveTrainConfig(readOptions(TRAIN_OPTIONS, await parse(trainCommand, [...base, ...args])).config);

  test('the command and runTraining fill the same defaults, from DEFAULT_TRAIN_CONFIG', async () => {
    const fromCli = await cli();
    assert.deepEqual(fromCli, resolveTrainConfig({ data: ['a.jsonl'], out: 'models/helpful/3' }));
    assert.equal(fromCli.maxLength, 256);
    assert.equal(fromCli.objective, 'helpful', 'the reward column is named after the model');
    assert.equal(fromCli.checkpointDir, join('.rmserve-cache', 'checkpoints', 'helpful', '3'));
    assert.deepEqual(fromCli.split, { train: 0.8, validation: 0.1, test: 0.1 });
    // AdamW's ε has no flag but is in every exported manifest, in DEFAULT_OPTIMIZER's key order.
    assert.deepEqual(Object.keys(fromCli.optimizer), Object.keys(DEFAULT_OPTIMIZER));
    assert.deepEqual(fromCli.optimizer, DEFAULT_OPTIMIZER);
    assert.deepEqual(DEFAULT_TRAIN_CONFIG.optimizer, DEFAULT_OPTIMIZER);
    assert.equal(DEFAULT_TRAIN_OPTIONS.objective, 'reward', 'callers spreading DEFAULT_TRAIN_OPTIONS keep their column name');
  });

  test('method defaults: GRM\'s MLP head and 0.1 dropout, HaF-RM\'s zero head, PCRM\'s similarity, the same from both callers', async () => {
    const grm = await cli('--method', 'grm');
    assert.deepEqual([grm.head, grm.headDropout, grm.zeroHead], ['mlp', 0.1, false]);
    const lib = resolveTrainConfig({ data: ['a.jsonl'], out: 'models/helpful/3', loss: { ...DEFAULT_TRAIN_CONFIG.loss, method: 'grm' } });
    assert.deepEqual([lib.head, lib.headDropout], ['mlp', 0.1], 'runTraining gets GRM\'s defaults too (it used to get a linear head, no dropout)');
    assert.deepEqual([(await cli('--method', 'grm', '--head', 'linear', '--head-dropout', '0')).head, grm.loss.method], ['linear', 'grm']);
    const haf = await cli('--method', 'haf');
    assert.deepEqual([haf.head, haf.headDropout, haf.zeroHead], ['linear', 0, true]);
    assert.equal((await cli('--method', 'pcrm')).loss.pcrm.similarity, 'tfidf');
    assert.deepEqual((await cli('--method', 'pcrm', '--similarity-encoder', 'e.onnx')).loss.pcrm, { beta1: 6, beta2: 0.001, beta3: 0, similarity: 'encoder', encoder: 'e.onnx' });
    assert.equal((await cli('--method', 'pcrm', '--similarity-encoder', 'e.onnx', '--pcrm-similarity', 'length')).loss.pcrm.similarity, 'length');
    for (const [method, d] of Object.entries(METHOD_DEFAULTS)) {
      assert.equal((await cli('--method', method)).headDropout, d.headDropout, method);
    }
  });

  test('the loss the command builds is the one it built by hand before', async () => {
    const c = await cli('--no-margin', '--centering', '0.01', '--grm-reg', 'dpo', '--split', '0.7,0.2,0.1', '--lr', '0.001');
    assert.deepEqual(c.loss, {
      method: 'bt', margin: false, centering: 0.01, labelSmoothing: 0.1,
      pcrm: { beta1: 6, beta2: 0.001, beta3: 0, similarity: 'tfidf' },
      haf: { rmRatio: 1, dpoRatio: 0.2, beta: 0.1 },
      grm: { alpha: 0.01, beta: 0.1, reg: 'dpo' },
    });
    assert.deepEqual(c.split, { train: 0.7, validation: 0.2, test: 0.1 });
    assert.deepEqual(c.optimizer, { ...DEFAULT_OPTIMIZER, lr: 0.001 });
    assert.equal(c.report, true);
    assert.equal((await cli('--no-report')).report, false);
  });
});
