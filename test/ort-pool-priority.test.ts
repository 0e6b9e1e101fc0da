// --ort-pool-nice: ORT's intra-op pool threads of each inference thread (and the inference threads
// of several one-thread instances) run at a lower priority
// than the rest of the process, so on a small CPU the event loop gets a core first. Checked on the
// real process: every thread's nice value read back from the kernel (os.getPriority on a thread
// id, Linux), after a service loads a real transformer model, with the pool sizes ORT is given.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createService, type ServiceConfig } from '../src/service.js';
import { tempModelsRoot, writeTransformerModel } from './helpers/model-fixtures.js';

/** Nice value of every thread of this process, by thread id. */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task').map(Number)) {
    try {
      nices.set(tid, getPriority(tid));
    } catch {
      // ended meanwhile
    }
  }
  return nices;
}

async function nicesWhileServing(config: Partial<ServiceConfig>): Promise<{ lowered: number[]; others: number[] }> {
  const root = tempModelsRoot();
  writeTransformerModel(join(root, 'rm', '1'), 64, 64);
  const service = await createService({ modelsRoot: root, watch: false, calibrateBatching: false, tokenizerThreads: 0, ...config });
  try {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'Is the sea cold?', response: 'In winter, yes.' }] } });
    assert.equal(reply.statusCode, 200, reply.body);
    const nices = [...threadNices()];
    return { lowered: nices.filter(([, n]) => n > 0).map(([, n]) => n), others: nices.filter(([, n]) => n <= 0).map(([tid]) => tid) };
  } finally {
    await service.close();
  }
}

describe('ORT pool threads at a lower priority', { skip: !existsSync('/proc/self/task') && 'needs Linux /proc' }, () => {
  test('three intra-op threads: the session\'s two pool threads at nice 10, the main and inference threads unchanged', async () => {
    const { lowered, others } = await nicesWhileServing({ intraOpThreads: 3, ortPoolNice: 10 });
    assert.deepEqual(lowered, [10, 10]);
    assert.ok(others.includes(process.pid), 'the main thread keeps its priority');
  });

  test('two instances of two threads: one pool thread each, at the nice asked for', async () => {
    const { lowered } = await nicesWhileServing({ instances: 2, intraOpThreads: 2, ortPoolNice: 19 });
    assert.deepEqual(lowered, [19, 19]);
  });

  test('two one-thread instances and a solo session: each instance\'s inference thread and the solo session\'s pool thread lowered', async () => {
    const narrow = { instances: 2, intraOpThreads: 1, soloThreads: 2 } as const;
    assert.deepEqual((await nicesWhileServing({ ...narrow, ortPoolNice: 10 })).lowered, [10, 10, 10]);
    assert.deepEqual((await nicesWhileServing({ ...narrow, ortPoolNice: 0 })).lowered, []);
    // One one-thread instance runs alone beside the event loop: its thread keeps its priority.
    assert.deepEqual((await nicesWhileServing({ instances: 1, intraOpThreads: 1, soloThreads: 2, ortPoolNice: 10 })).lowered, [10]);
  });

  test('one intra-op thread has no pool; nice 0 leaves the pool as ORT starts it', async () => {
    assert.deepEqual((await nicesWhileServing({ intraOpThreads: 1, ortPoolNice: 10 })).lowered, []);
    assert.deepEqual((await nicesWhileServing({ intraOpThreads: 3, ortPoolNice: 0 })).lowered, []);
  });

  test('the calibration probe\'s threads end with it, so only the serving session\'s remain lowered', async () => {
    const { lowered } = await nicesWhileServing({ intraOpThreads: 2, ortPoolNice: 10, calibrateBatching: true });
    assert.deepEqual(lowered, [10]);
  });
});
