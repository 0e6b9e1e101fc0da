// The CPU session's default intra-op threads: ORT's count (physical cores), passed explicitly so
// ORT does not pin its pool threads to cores. Checked on the real thing: the threads of this
// process after a session ran, read from /proc, with ORT's own default as the control that pins.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { defaultIntraOpThreads, physicalCoresIn } from '../src/model/cpu-cores.js';
import { RewardSession } from '../src/model/onnx-session.js';
import { REPO_ROOT } from './helpers/model-fixtures.js';

const block = (processor: number, physical: number | undefined, core: number | undefined): string =>
  [`processor\t: ${processor}`, 'model name\t: Test CPU', ...(physical === undefined ? [] : [`physical id\t: ${physical}`]), ...(core === undefined ? [] : [`core id\t\t: ${core}`])].join('\n');

test('physical cores: distinct (physical id, core id) pairs, else the processors', () => {
  // Two sockets of two cores with hyperthreads: 8 processors, 4 cores.
  const ht = [0, 1, 2, 3, 4, 5, 6, 7].map((p) => block(p, p < 4 ? 0 : 1, p % 2)).join('\n\n');
  assert.equal(physicalCoresIn(ht), 4);
  // A VM without core ids counts its processors.
  assert.equal(physicalCoresIn([block(0, undefined, undefined), block(1, undefined, undefined)].join('\n\n')), 2);
  assert.equal(physicalCoresIn(''), undefined);
  if (existsSync('/proc/cpuinfo')) assert.ok((defaultIntraOpThreads() ?? 0) >= 1);
});

/** Each thread of this process that may not run on every CPU the process may use: its id and CPU list. */
function pinnedThreads(): string[] {
  const allowed = (status: string): string => /^Cpus_allowed_list:\s*(.*)$/m.exec(status)?.[1] ?? '';
  const all = allowed(readFileSync('/proc/self/status', 'utf8'));
  return readdirSync('/proc/self/task').flatMap((tid) => {
    const list = allowed(readFileSync(join('/proc/self/task', tid, 'status'), 'utf8'));
    return list === all ? [] : [`${tid}: ${list}`];
  });
}

const linuxMultiCore = existsSync('/proc/self/task') && (defaultIntraOpThreads() ?? 1) > 1;

test('a CPU RewardSession with default threads leaves its pool threads unpinned; ORT left to itself pins them', { skip: !linuxMultiCore && 'needs Linux /proc and 2+ physical cores' }, async () => {
  const model = join(REPO_ROOT, 'models/harmless/1/model.onnx');
  const ours = await RewardSession.create(model, 0, 'right', { device: 'cpu', allowSpinning: true });
  await ours.run([[1, 2, 3, 4, 5, 6, 7, 8]]);
  assert.deepEqual(pinnedThreads(), []);
  await ours.release();
  // The control: ORT's own default (no thread count) pins, so the check above can see pinning.
  const plain = await ort.InferenceSession.create(model, {});
  const ids = new ort.Tensor('int64', BigInt64Array.from([1n, 2n, 3n, 4n]), [1, 4]);
  const mask = new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n]), [1, 4]);
  await plain.run({ input_ids: ids, attention_mask: mask });
  assert.notDeepEqual(pinnedThreads(), [], 'ORT with its default thread count pins its pool threads');
  await plain.release();
});
