// Shared finite-difference checker for the graph tests (not a test file itself).
// A case builds Y from its params; the checked loss is L = Σ Y ⊙ R with R a fixed, seed-dependent
// pattern computed in the graph from Y's shape (so no extra input and any Y shape works), which
// avoids symmetric sums such as Σ softmax = 1 hiding wrong gradients.
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { GraphBuilder, type Dim, type Value } from '../src/training/graph/builder.js';
import { gradients } from '../src/training/graph/autodiff.js';

import { mulberry32 as rng } from '../src/training/random.js';

export { rng };

export interface ParamSpec {
  name: string;
  /** concrete shape fed at run time */
  shape: number[];
  /** declared shape (symbolic dims allowed); defaults to `shape` */
  declared?: Dim[];
  /** draw values in [0.5, 1.5] instead of [-1, 1] (Log, Sqrt, divisors) */
  positive?: boolean;
}

export interface GradCase {
  name: string;
  params: ParamSpec[];
  build(b: GraphBuilder, p: Value[], rand: () => number): Value;
  opset?: number;
  /** 'float64' (default), or 'float32' for ops ORT runs only in float: params are cast to float32 */
  precision?: 'float64' | 'float32';
  /** params the loss must not reach (their gradient must be exactly zero) */
  unreached?: string[];
}

const SEEDS = [11, 29];
const COORDS = 4;

export async function checkCase(c: GradCase): Promise<void> {
  const f32 = c.precision === 'float32';
  // float64: truncation ~h², round-off ~1e-16/h; float32 ops in the middle: round-off ~6e-8/h.
  const h = f32 ? 1e-3 : 1e-5;
  const rtol = f32 ? 3e-3 : 1e-5;
  const atol = f32 ? 3e-4 : 1e-7;
  for (const seed of SEEDS) {
    const rand = rng(seed);
    const b = new GraphBuilder(c.name.replace(/\W+/g, '_'), { opset: c.opset ?? 17 });
    const params = c.params.map((p) => b.input(p.name, 'float64', p.declared ?? p.shape));
    const inner = f32 ? params.map((p) => b.cast(p, 'float32')) : params;
    const y = b.cast(c.build(b, inner, rand), 'float64');
    const size = b.op('Size', [y]);
    const idx = b.cast(b.op('Reshape', [b.op('Range', [b.scalar('int64', 0), size, b.scalar('int64', 1)]), b.shapeOf(y)]), 'float64');
    const r = b.op('Sin', [b.add(b.mul(idx, b.scalar('float64', 0.7 + rand())), b.scalar('float64', 3 * rand()))]);
    const loss = b.op('ReduceSum', [b.mul(y, r)], { keepdims: 0 });
    const grads = gradients(b, loss, params);
    b.output(loss, 'loss');
    params.forEach((p) => b.output(grads.get(p.name)!, `grad_${p.name}`));
    const session = await ort.InferenceSession.create(b.toModelProto());

    const data = c.params.map((p) => Float64Array.from({ length: p.shape.reduce((x, d) => x * d, 1) },
      () => (p.positive ? 0.5 + rand() : 2 * rand() - 1)));
    const lossAt = async (): Promise<number> => {
      const feeds: Record<string, ort.Tensor> = {};
      c.params.forEach((p, i) => { feeds[p.name] = new ort.Tensor('float64', data[i]!, p.shape); });
      const out = await session.run(feeds, ['loss']);
      return (out['loss']!.data as Float64Array)[0]!;
    };
    const feeds: Record<string, ort.Tensor> = {};
    c.params.forEach((p, i) => { feeds[p.name] = new ort.Tensor('float64', data[i]!, p.shape); });
    const out = await session.run(feeds);
    for (const [i, p] of c.params.entries()) {
      const g = out[`grad_${p.name}`]!;
      assert.deepEqual(g.dims, p.shape, `${c.name}: grad_${p.name} shape`);
      const an = g.data as Float64Array;
      if (c.unreached?.includes(p.name)) {
        assert.ok(an.every((v) => v === 0), `${c.name}: ${p.name} is not reached, its gradient must be 0`);
        continue;
      }
      const n = an.length;
      const coords = n <= COORDS ? Array.from({ length: n }, (_, k) => k)
        : Array.from({ length: COORDS }, () => Math.floor(rand() * n));
      for (const k of coords) {
        const x0 = data[i]![k]!;
        data[i]![k] = x0 + h;
        const up = await lossAt();
        data[i]![k] = x0 - h;
        const down = await lossAt();
        data[i]![k] = x0;
        const fd = (up - down) / (2 * h);
        const err = Math.abs(fd - an[k]!);
        assert.ok(err <= atol + rtol * Math.max(Math.abs(fd), Math.abs(an[k]!)),
          `${c.name} seed ${seed}: d/d${p.name}[${k}] analytic ${an[k]} vs finite difference ${fd}`);
      }
    }
  }
}
