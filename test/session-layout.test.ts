// --instances auto: the rule that picks a version's sessions (src/scoring/session-layout.ts), on
// machines described to it, and the bytes of weights it weighs the extra copies by.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { onnxBytes, sessionLayout, type LayoutRequest } from '../src/scoring/session-layout.js';

const GiB = 2 ** 30;
const twoCores = { cores: 2, memoryBytes: 24 * GiB };
const auto: LayoutRequest = { instances: 'auto', intraOpThreads: 0, soloThreads: 0, device: 'cpu', inferenceThread: true };
const shape = (l: { instances: number; intraOpThreads: number; soloThreads: number }) => [l.instances, l.intraOpThreads, l.soloThreads];

describe('sessionLayout', () => {
  test('auto on a 2-core CPU: two one-thread instances and a two-thread solo session, with the reason', () => {
    const layout = sessionLayout(auto, 50e6, twoCores);
    assert.deepEqual(shape(layout), [2, 1, 2]);
    assert.match(layout.auto ?? '', /2-core CPU/);
  });

  test('auto keeps one session, saying why: other core counts, a GPU, thread flags, no inference thread', () => {
    const cases: [LayoutRequest, { cores: number; memoryBytes: number }, RegExp][] = [
      [auto, { cores: 1, memoryBytes: 24 * GiB }, /1 cores/],
      [auto, { cores: 16, memoryBytes: 64 * GiB }, /16 cores/],
      [{ ...auto, device: 'cuda:0' }, twoCores, /one session on cuda:0/],
      [{ ...auto, intraOpThreads: 2 }, twoCores, /--intra-op-threads or --solo-threads given/],
      [{ ...auto, soloThreads: 2 }, twoCores, /--intra-op-threads or --solo-threads given/],
      [{ ...auto, inferenceThread: false }, twoCores, /--no-inference-thread/],
    ];
    for (const [request, machine, why] of cases) {
      const layout = sessionLayout(request, 50e6, machine);
      assert.equal(layout.instances, 1, JSON.stringify(request));
      assert.deepEqual([layout.intraOpThreads, layout.soloThreads], [request.intraOpThreads, request.soloThreads], 'the flags given stand');
      assert.match(layout.auto ?? '', why);
    }
  });

  test('auto keeps one session when two more copies of the weights exceed 1/8 of memory', () => {
    // 24 GiB: two more copies may take 3 GiB, so up to 1.5 GiB of weights.
    assert.equal(sessionLayout(auto, 1.5 * GiB, twoCores).instances, 2);
    const big = sessionLayout(auto, 1.5 * GiB + 1, twoCores);
    assert.equal(big.instances, 1);
    assert.match(big.auto ?? '', /two more copies of the weights \(3072 MiB\) exceed 1\/8 of memory \(24576 MiB\)/);
  });

  test('a count given is used as given, whatever the machine', () => {
    const given = sessionLayout({ ...auto, instances: 3, intraOpThreads: 1 }, 50e6, { cores: 16, memoryBytes: GiB });
    assert.deepEqual(shape(given), [3, 1, 0]);
    assert.equal(given.auto, undefined);
  });
});

test('onnxBytes counts the graph and its external weights, not the tokenizer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-layout-'));
  writeFileSync(join(dir, 'model.onnx'), Buffer.alloc(1000));
  writeFileSync(join(dir, 'model.onnx_data'), Buffer.alloc(5000));
  writeFileSync(join(dir, 'tokenizer.json'), Buffer.alloc(700));
  assert.equal(onnxBytes(dir), 6000);
});
