// Matrix products: MatMul (numpy matmul: batched, broadcasting batch axes, 1-D operands promoted)
// and Gemm (2-D, optional transposes, α, β and a broadcast C).
import type { Dim, GraphBuilder, Value } from '../builder.js';
import { broadcastShapes, intAttr, needGrad, rankOf, scalarLike, unbroadcast } from './common.js';
import type { OpTable } from './types.js';

/** Swaps the last two axes. */
function transposeLast2(b: GraphBuilder, v: Value): Value {
  const r = rankOf(v, 'MatMul');
  const perm = Array.from({ length: r }, (_, i) => i);
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return b.transpose(v, perm);
}

export const matmulOps: OpTable = {
  // A [..a, M, K], B [..b, K, N] → Y [broadcast(a, b), M, N];
  //   A [K] is taken as [1, K] and B [K] as [K, 1], the added axis dropped from Y
  // Y = A·B: Ā = unb(ḡ · Bᵀ),  B̄ = unb(Aᵀ · ḡ)
  // A [..., M, K] with a 2-D weight B [K, N] (every linear layer) folds the batch axes into rows
  // instead: B̄ = A₂ᵀ · ḡ₂ with A₂ = A as [rows, K], ḡ₂ = ḡ as [rows, N] — one GEMM, no ReduceSum.
  MatMul: {
    infer: ({ x, same }) => {
      const a = x[0]?.shape;
      const b = x[1]?.shape;
      if (!a || !b) return same(undefined);
      const a2 = a.length === 1 ? [1, a[0]!] : a;
      const b2 = b.length === 1 ? [b[0]!, 1] : b;
      const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)])!;
      const out = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
      if (b.length === 1) out.splice(out.length - 1, 1);
      if (a.length === 1) out.splice(out.length - (b.length === 1 ? 1 : 2), 1);
      return same(out);
    },
    vjp: (a) => {
      const { b, x, y, g } = a;
      const [A, B] = [x[0]!, x[1]!];
      const ra = rankOf(A, 'MatMul');
      const rb = rankOf(B, 'MatMul');
      const gy = g[0]!;
      const Bs = B.shape!;
      if (ra >= 3 && rb === 2 && typeof Bs[0] === 'number' && typeof Bs[1] === 'number') {
        return [
          needGrad(a, 0, () => b.op('MatMul', [gy, b.transpose(B, [1, 0])], {}, { shape: A.shape })),
          needGrad(a, 1, () => b.op('Gemm', [b.reshape(A, [-1, Bs[0] as number]), b.reshape(gy, [-1, Bs[1] as number])],
            { transA: 1 }, { shape: Bs })),
        ];
      }
      // promote 1-D operands: A [K] → [1, K], B [K] → [K, 1], and ḡ to match
      let g2 = gy;
      let gShape: Dim[] = y[0]!.shape ? y[0]!.shape.slice() : [];
      if (!y[0]!.shape) throw new Error('gradient of MatMul needs the output rank');
      if (rb === 1) { g2 = b.unsqueeze(g2, [-1]); gShape = [...gShape, 1]; }
      if (ra === 1) { g2 = b.unsqueeze(g2, [-2]); gShape = [...gShape.slice(0, -1), 1, gShape[gShape.length - 1]!]; }
      const A2 = ra === 1 ? b.unsqueeze(A, [0]) : A;
      const B2 = rb === 1 ? b.unsqueeze(B, [-1]) : B;
      const batch = gShape.slice(0, -2);
      return [
        needGrad(a, 0, () => {
          const ga = unbroadcast(b, b.matmul(g2, transposeLast2(b, B2)), [...batch, ...A2.shape!.slice(-2)], A2);
          return ra === 1 ? b.squeeze(ga, [0]) : ga;
        }),
        needGrad(a, 1, () => {
          const gb = unbroadcast(b, b.matmul(transposeLast2(b, A2), g2), [...batch, ...B2.shape!.slice(-2)], B2);
          return rb === 1 ? b.squeeze(gb, [-1]) : gb;
        }),
      ];
    },
  },

  // A [M, K] ([K, M] if transA), B [K, N] ([N, K] if transB), C broadcastable to [M, N] → Y [M, N]
  // Y = α·op(A)·op(B) + β·C, op = transpose when transA/transB:
  //   Ā = α·ḡ·op(B)ᵀ (transposed back if transA),  B̄ = α·op(A)ᵀ·ḡ (transposed back if transB),  C̄ = β·unb(ḡ)
  Gemm: {
    infer: ({ x, attrs, same }) => {
      const a = x[0]?.shape;
      const b = x[1]?.shape;
      if (!a || !b) return same(undefined);
      const m = intAttr(attrs, 'transA', 0) ? a[1]! : a[0]!;
      const n = intAttr(attrs, 'transB', 0) ? b[0]! : b[1]!;
      return same([m, n]);
    },
    vjp: (a) => {
      const { b, node, x, y, g } = a;
      const [A, B, C] = [x[0]!, x[1]!, x[2] ?? null];
      const ta = intAttr(node.attrs, 'transA', 0);
      const tb = intAttr(node.attrs, 'transB', 0);
      const alpha = typeof node.attrs['alpha'] === 'number' ? node.attrs['alpha'] : 1;
      const beta = typeof node.attrs['beta'] === 'number' ? node.attrs['beta'] : 1;
      const gy = g[0]!;
      return [
        needGrad(a, 0, () => (ta
          ? b.op('Gemm', [B, gy], { transA: tb, transB: 1, alpha: { float: alpha } }, { shape: A.shape })
          : b.op('Gemm', [gy, B], { transA: 0, transB: tb ? 0 : 1, alpha: { float: alpha } }, { shape: A.shape }))),
        needGrad(a, 1, () => (tb
          ? b.op('Gemm', [gy, A], { transA: 1, transB: ta, alpha: { float: alpha } }, { shape: B.shape })
          : b.op('Gemm', [A, gy], { transA: ta ? 0 : 1, transB: 0, alpha: { float: alpha } }, { shape: B.shape }))),
        C ? needGrad(a, 2, () => {
          const gc = unbroadcast(b, gy, y[0]!.shape, C);
          return beta === 1 ? gc : b.mul(gc, scalarLike(b, C, beta));
        }) : null,
      ];
    },
  },
};
