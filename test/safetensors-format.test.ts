import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  serializeSafetensors,
  toFloat32,
  writeSafetensors,
  type NamedTensor,
} from '../src/training/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'rmserve-safetensors-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function bytesOf(t: NamedTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Builds a file by hand: header JSON exactly as given, padded or not, then the data bytes. */
function handBuilt(header: string, data: Uint8Array, pad = true): Buffer {
  let json = Buffer.from(header, 'utf8');
  if (pad && json.length % 8 !== 0) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

const everyDtype: Record<string, NamedTensor> = {
  f32: { dtype: 'F32', shape: [2, 3], data: Float32Array.of(1.5, -0, Number.NaN, Infinity, -3.4e38, 1e-45) },
  f64: { dtype: 'F64', shape: [3], data: Float64Array.of(Math.PI, -Number.MAX_VALUE, Number.MIN_VALUE) },
  i64: { dtype: 'I64', shape: [2], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n) },
  i32: { dtype: 'I32', shape: [1, 2, 2], data: Int32Array.of(-2147483648, 2147483647, 0, 7) },
  f16: { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0xfbff, 0x0001) },
  bf16: { dtype: 'BF16', shape: [1], data: Uint16Array.of(0xbf80) },
  scalar: { dtype: 'F32', shape: [], data: Float32Array.of(42) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
};

test('every dtype round-trips bit-exactly through a file, with metadata', () => {
  const path = join(dir, 'all.safetensors');
  writeSafetensors(path, everyDtype, { format: 'pt', note: 'ünïcode ✓' });
  const { tensors, metadata } = readSafetensors(path);
  assert.deepEqual(metadata, { format: 'pt', note: 'ünïcode ✓' });
  assert.deepEqual(Object.keys(tensors).sort(), Object.keys(everyDtype).sort());
  for (const [name, want] of Object.entries(everyDtype)) {
    const got = tensors[name];
    assert.equal(got.dtype, want.dtype, name);
    assert.deepEqual(got.shape, want.shape, name);
    assert.equal(got.data.constructor, want.data.constructor, name);
    assert.ok(bytesOf(got).equals(bytesOf(want)), `${name} bytes differ`);
  }
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'temp file left behind');
});

test('header is space-padded to 8 bytes and tensors are laid out widest-first, aligned', () => {
  const bytes = serializeSafetensors(everyDtype, { format: 'pt' });
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const headerText = bytes.subarray(8, 8 + n).toString('utf8');
  const trimmed = headerText.trimEnd();
  assert.ok(/^ *$/.test(headerText.slice(trimmed.length)), 'padding must be spaces');
  assert.ok(headerText.length - trimmed.length < 8);
  const header = JSON.parse(headerText) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const sizes: Record<string, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2 };
  const laidOut = Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let previousSize = Infinity;
  for (const [name, entry] of laidOut) {
    const size = sizes[entry.dtype];
    assert.ok(size <= previousSize, `${name} out of alignment order`);
    assert.equal((8 + n + entry.data_offsets[0]) % size, 0, `${name} misaligned`);
    previousSize = size;
  }
  assert.equal(bytes.length, 8 + n + laidOut[laidOut.length - 1][1].data_offsets[1]);
});

test('a hand-built file parses to the values written into it', () => {
  const data = Buffer.alloc(8 + 4 + 2);
  data.writeFloatLE(1.5, 0);
  data.writeFloatLE(-2, 4);
  data.writeInt32LE(-7, 8);
  data.writeUInt16LE(0x4000, 12); // 2.0 as F16
  const header =
    '{"__metadata__":{"format":"pt"},"b":{"dtype":"I32","shape":[1,1],"data_offsets":[8,12]},' +
    '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[1],"data_offsets":[12,14]}}';
  for (const pad of [true, false]) {
    const { tensors, metadata } = parseSafetensors(handBuilt(header, data, pad));
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual(Array.from(tensors.a.data as Float32Array), [1.5, -2]);
    assert.deepEqual(tensors.b.shape, [1, 1]);
    assert.deepEqual(Array.from(tensors.b.data as Int32Array), [-7]);
    assert.deepEqual(Array.from(toFloat32(tensors.h)), [2]);
  }
  const path = join(dir, 'hand.safetensors');
  writeFileSync(path, handBuilt(header, data));
  const { entries } = readSafetensorsHeader(path);
  assert.deepEqual([...entries.keys()].sort(), ['a', 'b', 'h']);
  assert.deepEqual(entries.get('a')?.data_offsets, [0, 8]);
});

test('corrupt files are rejected with a reason', () => {
  const ok = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const eight = new Uint8Array(8);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['too short', new Uint8Array(5), /too short/],
    ['header length past end', (() => { const b = handBuilt(ok, eight); b.writeBigUInt64LE(10_000n); return b; })(), /runs past the end/],
    ['absurd header length', (() => { const b = handBuilt(ok, eight); b.writeBigUInt64LE(2n ** 60n); return b; })(), /exceeds/],
    ['not JSON', handBuilt('{"a": nope}', eight), /not UTF-8 JSON/],
    ['not an object', handBuilt('[1,2,3]', eight), /does not start with/],
    ['offsets out of range', handBuilt('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', eight), /run past the 8-byte data section/],
    ['offsets backwards', handBuilt('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', eight), /backwards/],
    ['size mismatch', handBuilt('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', eight), /needs 12 bytes/],
    ['gap', handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight), /expected 0 \(gap\)/],
    ['overlap', handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight), /overlap/],
    ['trailing bytes', handBuilt(ok, new Uint8Array(12)), /cover 8 bytes but the data section holds 12/],
    ['unknown dtype', handBuilt('{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}', eight), /unsupported dtype "Q4"/],
    ['bad shape', handBuilt('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', eight), /shape/],
    ['bad metadata', handBuilt('{"__metadata__":{"n":3},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', eight), /__metadata__.n is not a string/],
  ];
  for (const [label, bytes, reason] of cases) {
    assert.throws(() => parseSafetensors(bytes, 'x.safetensors'), (e: Error) => {
      assert.match(e.message, /^x\.safetensors: not a valid safetensors file: /, label);
      assert.match(e.message, reason, label);
      return true;
    });
  }
  const path = join(dir, 'corrupt.safetensors');
  writeFileSync(path, cases[1][1]);
  assert.throws(() => readSafetensors(path), /corrupt\.safetensors: .*runs past the end/);
  assert.throws(() => readSafetensorsHeader(path), /runs past the end/);
});

test('the writer refuses tensors that disagree with their shape or dtype', () => {
  assert.throws(
    () => serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    /shape \[3\] has 3 elements, data has 2/,
  );
  assert.throws(
    () => serializeSafetensors({ a: { dtype: 'F64', shape: [2], data: new Float32Array(2) } }),
    /needs a Float64Array/,
  );
  assert.throws(() => serializeSafetensors({ __metadata__: everyDtype.f32 }), /invalid tensor name/);
});

test('toFloat32 widens F16 and BF16 exactly and converts the rest', () => {
  const f16 = toFloat32({
    dtype: 'F16',
    shape: [9],
    data: Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x7e00),
  });
  assert.deepEqual(Array.from(f16.subarray(0, 8)), [1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, -0]);
  assert.ok(Number.isNaN(f16[8]));
  const bf16 = toFloat32({ dtype: 'BF16', shape: [4], data: Uint16Array.of(0x3f80, 0xc040, 0x7f80, 0x3e20) });
  assert.deepEqual(Array.from(bf16), [1, -3, Infinity, 0.15625]);
  assert.deepEqual(Array.from(toFloat32({ dtype: 'F64', shape: [2], data: Float64Array.of(0.5, -1e300) })), [0.5, -Infinity]);
  assert.deepEqual(Array.from(toFloat32({ dtype: 'I64', shape: [2], data: BigInt64Array.of(-5n, 1n << 40n) })), [-5, 2 ** 40]);
  assert.deepEqual(Array.from(toFloat32({ dtype: 'I32', shape: [1], data: Int32Array.of(-9) })), [-9]);
  const f32 = Float32Array.of(1, 2);
  assert.equal(toFloat32({ dtype: 'F32', shape: [2], data: f32 }), f32);
});

test('round trip of a written file read back from disk matches its bytes', () => {
  const path = join(dir, 'bytes.safetensors');
  writeSafetensors(path, everyDtype);
  assert.ok(readFileSync(path).equals(serializeSafetensors(everyDtype)));
  const { metadata } = readSafetensors(path);
  assert.deepEqual(metadata, {});
});
