// int64Of fills ORT's int64 feeds word by word instead of one BigInt per token; it must give
// exactly what BigInt64Array.from does for every int32, the signs and the extremes included.
// (The served rewards themselves are checked against PyTorch in hf-parity.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { int64Of } from '../src/model/onnx-session.js';

test('int64Of widens every int32 as BigInt would', () => {
  const edges = [0, 1, -1, 2, 50256, 151643, -2, 2 ** 31 - 1, -(2 ** 31), 2 ** 16, -(2 ** 16) - 7];
  const random = Array.from({ length: 1000 }, (_, i) => ((i * 2654435761) | 0) ^ (i << 7));
  const values = Int32Array.from([...edges, ...random]);
  const expected = BigInt64Array.from(values, (v) => BigInt(v));
  assert.deepEqual(int64Of(values), expected);
  assert.equal(int64Of(new Int32Array(0)).length, 0);
});
