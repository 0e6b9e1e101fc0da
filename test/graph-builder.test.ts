import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { GraphBuilder, onnxType } from '../src/training/graph/builder.js';
import { mulberry32 } from '../src/training/random.js';

/** Uniform in [−0.5, 0.5). */
function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() - 0.5;
}

test('embedding lookup + MatMul with an initializer, dynamic batch/seq axes, int64 ids', async () => {
  const V = 7, C = 4, D = 3;
  const rand = rng(1);
  const wte = Float32Array.from({ length: V * C }, rand);
  const w = Float32Array.from({ length: C * D }, rand);
  const b = new GraphBuilder('embed_proj');
  const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
  const table = b.initializer('wte', 'float32', [V, C], wte);
  const proj = b.initializer('w', 'float32', [C, D], w);
  const h = b.gather(table, ids);
  assert.deepEqual(h.shape, ['batch', 'seq', C]);
  const y = b.matmul(h, proj);
  assert.deepEqual(y.shape, ['batch', 'seq', D]);
  assert.equal(y.dtype, 'float32');
  const total = b.reduceSum(y, [1, 2], false);
  assert.deepEqual(total.shape, ['batch']);
  b.output(y, 'y');
  b.output(total, 'total');

  const session = await ort.InferenceSession.create(b.toModelProto());
  assert.deepEqual(session.inputNames, ['input_ids']);
  assert.deepEqual(session.outputNames, ['y', 'total']);
  for (const [B, T] of [[2, 3], [1, 5]] as const) {
    const tok = Array.from({ length: B * T }, (_, i) => (i * 3 + B) % V);
    const out = await session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(tok.map(BigInt)), [B, T]) });
    const yt = out['y']!;
    assert.deepEqual(yt.dims, [B, T, D]);
    const got = yt.data as Float32Array;
    for (let p = 0; p < B * T; p++) {
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += wte[tok[p]! * C + c]! * w[c * D + d]!;
        assert.ok(Math.abs(got[p * D + d]! - s) < 1e-5, `y[${p},${d}] ${got[p * D + d]} vs ${s}`);
      }
    }
    const tot = out['total']!.data as Float32Array;
    for (let bi = 0; bi < B; bi++) {
      let s = 0;
      for (let i = bi * T * D; i < (bi + 1) * T * D; i++) s += got[i]!;
      assert.ok(Math.abs(tot[bi]! - s) < 1e-4);
    }
  }
});

test('constants, attributes of every kind, Cast, broadcasting and shape inference', async () => {
  const b = new GraphBuilder('misc');
  const x = b.input('x', 'float64', ['batch', 3]);
  const bias = b.constant('float64', [1, 3], [1, 2, 3]);
  const xb = b.add(x, bias);
  assert.deepEqual(xb.shape, ['batch', 3]);
  // LayerNormalization: epsilon must go out as FLOAT even though 1 would look like an int.
  const ln = b.op('LayerNormalization', [xb, b.constant('float64', [3], [1, 1, 1]), null], { axis: -1, epsilon: 1 });
  const gelu32 = b.op('Cast', [ln], { to: onnxType('float32') });
  assert.equal(gelu32.dtype, 'float32');
  const t = b.transpose(b.unsqueeze(xb, [0]), [1, 2, 0]);
  assert.deepEqual(t.shape, ['batch', 3, 1]);
  const cat = b.op('Concat', [x, xb], { axis: 1 });
  assert.deepEqual(cat.shape, ['batch', 6]);
  const sl = b.op('Slice', [cat, b.ints([1]), b.ints([-1]), b.ints([1])]);
  assert.deepEqual(sl.shape, ['batch', 4]);
  const mask = b.op('Greater', [x, b.scalar('float64', 0)]);
  assert.equal(mask.dtype, 'bool');
  const w = b.op('Where', [mask, x, b.scalar('float64', -1)]);
  b.output(ln, 'ln');
  b.output(gelu32, 'ln32');
  b.output(t, 't');
  b.output(sl, 'sl');
  b.output(w, 'w');
  b.output(x, 'x_copy'); // an input as an output needs an Identity

  const session = await ort.InferenceSession.create(b.toModelProto());
  const xs = [0.5, -2, 4, 1, 1, -3];
  const out = await session.run({ x: new ort.Tensor('float64', Float64Array.from(xs), [2, 3]) });
  const lnv = out['ln']!.data as Float64Array;
  for (let r = 0; r < 2; r++) {
    const row = [0, 1, 2].map((j) => xs[r * 3 + j]! + j + 1);
    const mu = row.reduce((p, v) => p + v, 0) / 3;
    const varr = row.reduce((p, v) => p + (v - mu) ** 2, 0) / 3;
    for (let j = 0; j < 3; j++) {
      assert.ok(Math.abs(lnv[r * 3 + j]! - (row[j]! - mu) / Math.sqrt(varr + 1)) < 1e-12);
    }
  }
  assert.equal(out['ln32']!.type, 'float32');
  assert.deepEqual(out['t']!.dims, [2, 3, 1]);
  assert.deepEqual(Array.from(out['sl']!.data as Float64Array), [-2, 4, 1.5, 0, 1, -3, 2, 3]);
  assert.deepEqual(Array.from(out['w']!.data as Float64Array), [0.5, -1, 4, 1, 1, -1]);
  assert.deepEqual(Array.from(out['x_copy']!.data as Float64Array), xs);
});

test('opset 20 Gelu and opset-dependent ReduceMean', async () => {
  for (const opset of [17, 20]) {
    const b = new GraphBuilder('gelu', { opset });
    const x = b.input('x', 'float32', ['n']);
    const m = b.reduceMean(b.unsqueeze(x, [0]), [1], false);
    b.output(m, 'mean');
    if (opset >= 20) b.output(b.op('Gelu', [x], { approximate: 'tanh' }), 'gelu');
    const session = await ort.InferenceSession.create(b.toModelProto());
    const xs = [-1, 0.5, 2];
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(xs), [3]) });
    assert.ok(Math.abs((out['mean']!.data as Float32Array)[0]! - 0.5) < 1e-6);
    if (opset >= 20) {
      const g = out['gelu']!.data as Float32Array;
      xs.forEach((v, i) => {
        const ref = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
        assert.ok(Math.abs(g[i]! - ref) < 1e-6);
      });
    }
  }
});

test('names are unique and inputs must belong to the graph', () => {
  const b = new GraphBuilder('names');
  b.input('x', 'float32', [2]);
  assert.throws(() => b.input('x', 'float32', [2]), /already used/);
  const other = new GraphBuilder('other').input('y', 'float32', [2]);
  assert.throws(() => b.op('Neg', [other]), /not in graph/);
  assert.throws(() => b.toModelProto(), /no outputs/);
});
