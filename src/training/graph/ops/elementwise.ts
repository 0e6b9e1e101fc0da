// Elementwise ops: arithmetic with numpy broadcasting, unary math, comparisons and logic, Where,
// Cast. Forward: Y takes the broadcast shape of the inputs (unary: X's shape). Backward: ḡ has Y's
// shape, and unbroadcast(ḡ) — "unb" below — sums it back down to each input's shape.
import type { Value } from '../builder.js';
import {
  boolOfInput, broadcastBool, broadcastInputs, broadcastShapes, dtypeFromOnnx, intAttr, needGrad, sameAsInput,
  scalarLike, shapePreserving as unary, unbroadcast, zerosLike,
} from './common.js';
import type { OpDefinition, OpTable } from './types.js';

/** Piecewise-constant: X [...] → Y [...]; zero gradient almost everywhere. */
const stepFunction: OpDefinition = { infer: sameAsInput, vjp: ({ b, x }) => [zerosLike(b, x[0]!)] };

/** Forward only: ops the trainer never differentiates through. */
const forwardOnly = (infer: OpDefinition['infer']): OpDefinition => ({ infer });

export const elementwiseOps: OpTable = {
  // Y = X: X̄ = ḡ
  Identity: unary(({ g }) => [g[0]!]),

  // A [a...], B [b...] → Y [broadcast(a, b)]
  // Y = A + B: Ā = unb(ḡ), B̄ = unb(ḡ)
  Add: {
    infer: broadcastInputs,
    vjp: (a) => {
      const { b, x, y, g } = a;
      return [needGrad(a, 0, () => unbroadcast(b, g[0]!, y[0]!.shape, x[0]!)),
        needGrad(a, 1, () => unbroadcast(b, g[0]!, y[0]!.shape, x[1]!))];
    },
  },

  // Y = A − B: Ā = unb(ḡ), B̄ = unb(−ḡ)
  Sub: {
    infer: broadcastInputs,
    vjp: (a) => {
      const { b, x, y, g } = a;
      return [needGrad(a, 0, () => unbroadcast(b, g[0]!, y[0]!.shape, x[0]!)),
        needGrad(a, 1, () => unbroadcast(b, b.neg(g[0]!), y[0]!.shape, x[1]!))];
    },
  },

  // Y = A ⊙ B: Ā = unb(ḡ ⊙ B), B̄ = unb(ḡ ⊙ A)
  Mul: {
    infer: broadcastInputs,
    vjp: (a) => {
      const { b, x, y, g } = a;
      return [needGrad(a, 0, () => unbroadcast(b, b.mul(g[0]!, x[1]!), y[0]!.shape, x[0]!)),
        needGrad(a, 1, () => unbroadcast(b, b.mul(g[0]!, x[0]!), y[0]!.shape, x[1]!))];
    },
  },

  // Y = A / B: Ā = unb(ḡ / B), B̄ = unb(−ḡ ⊙ Y / B)
  Div: {
    infer: broadcastInputs,
    vjp: (a) => {
      const { b, x, y, g } = a;
      return [needGrad(a, 0, () => unbroadcast(b, b.div(g[0]!, x[1]!), y[0]!.shape, x[0]!)),
        needGrad(a, 1, () => unbroadcast(b, b.neg(b.div(b.mul(g[0]!, y[0]!), x[1]!)), y[0]!.shape, x[1]!))];
    },
  },

  // X_1 [x1...], ..., X_n [xn...] → Y [broadcast(x1, ..., xn)]
  // Y = Σ_k X_k (variadic): X̄_k = unb(ḡ)
  Sum: {
    infer: broadcastInputs,
    vjp: (a) => a.x.map((v, k) => needGrad(a, k, () => unbroadcast(a.b, a.g[0]!, a.y[0]!.shape, v!))),
  },

  // A [a...] (base), B [b...] (exponent) → Y [broadcast(a, b)], dtype of A
  // Y = Aᴮ: Ā = unb(ḡ ⊙ B ⊙ A^(B−1)), B̄ = unb(ḡ ⊙ Y ⊙ log A)  (B̄ only defined for A > 0)
  Pow: {
    infer: broadcastInputs,
    vjp: (a) => {
      const { b, x, y, g } = a;
      const [base, exp] = [x[0]!, x[1]!];
      return [
        needGrad(a, 0, () => {
          const e1 = b.sub(exp, scalarLike(b, exp, 1));
          const dy = b.mul(b.cast(exp, base.dtype), b.op('Pow', [base, e1]));
          return unbroadcast(b, b.mul(g[0]!, dy), y[0]!.shape, base);
        }),
        needGrad(a, 1, () => unbroadcast(b, b.mul(g[0]!, b.mul(y[0]!, b.op('Log', [base]))), y[0]!.shape, exp)),
      ];
    },
  },

  Max: forwardOnly(broadcastInputs),
  Min: forwardOnly(broadcastInputs),
  Mean: forwardOnly(broadcastInputs),
  Mod: forwardOnly(broadcastInputs),
  BitShift: forwardOnly(broadcastInputs),

  // X [...] → Y [...] for every unary op below
  // Y = −X: X̄ = −ḡ
  Neg: unary(({ b, g }) => [b.neg(g[0]!)]),

  // Y = eˣ: X̄ = ḡ ⊙ Y
  Exp: unary(({ b, y, g }) => [b.mul(g[0]!, y[0]!)]),

  // Y = log X: X̄ = ḡ / X
  Log: unary(({ b, x, g }) => [b.div(g[0]!, x[0]!)]),

  // Y = √X: X̄ = ḡ / (2Y)
  Sqrt: unary(({ b, y, g }) => [b.div(g[0]!, b.mul(y[0]!, scalarLike(b, y[0]!, 2)))]),

  // Y = 1/X: X̄ = −ḡ ⊙ Y²
  Reciprocal: unary(({ b, y, g }) => [b.neg(b.mul(g[0]!, b.mul(y[0]!, y[0]!)))]),

  // Y = |X|: X̄ = ḡ ⊙ sign(X)
  Abs: unary(({ b, x, g }) => [b.mul(g[0]!, b.op('Sign', [x[0]!]))]),

  // Y = sin X: X̄ = ḡ ⊙ cos X
  Sin: unary(({ b, x, g }) => [b.mul(g[0]!, b.op('Cos', [x[0]!]))]),

  // Y = cos X: X̄ = −ḡ ⊙ sin X
  Cos: unary(({ b, x, g }) => [b.neg(b.mul(g[0]!, b.op('Sin', [x[0]!])))]),

  // Y = tanh X: X̄ = ḡ ⊙ (1 − Y²)
  Tanh: unary(({ b, y, g }) => [b.mul(g[0]!, b.sub(scalarLike(b, y[0]!, 1), b.mul(y[0]!, y[0]!)))]),

  // Y = erf X: X̄ = ḡ ⊙ (2/√π) e^(−X²)
  Erf: unary(({ b, x, g }) => {
    const X = x[0]!;
    const e = b.op('Exp', [b.neg(b.mul(X, X))]);
    return [b.mul(g[0]!, b.mul(e, scalarLike(b, X, 2 / Math.sqrt(Math.PI))))];
  }),

  Tan: unary(), Asin: unary(), Acos: unary(), Atan: unary(), Sinh: unary(), Cosh: unary(),

  // X [...], lo [], hi [] → Y [...]
  // Y = clip(X, lo, hi): X̄ = ḡ where lo ≤ X ≤ hi, else 0 (bounds get no gradient)
  Clip: unary(({ b, x, g }) => {
    const X = x[0]!;
    let inside: Value | null = null;
    if (x[1]) inside = b.op('GreaterOrEqual', [X, x[1]]);
    if (x[2]) {
      const le = b.op('LessOrEqual', [X, x[2]]);
      inside = inside ? b.op('And', [inside, le]) : le;
    }
    return [inside ? b.op('Where', [inside, g[0]!, scalarLike(b, X, 0)]) : g[0]!, null, null];
  }),

  // Y = floor/ceil/round/sign(X): X̄ = 0
  Floor: stepFunction,
  Ceil: stepFunction,
  Round: stepFunction,
  Sign: stepFunction,

  // A [a...], B [b...] → Y bool [broadcast(a, b)]; X [...] → Y bool [...]; no gradient
  Equal: forwardOnly(broadcastBool),
  Less: forwardOnly(broadcastBool),
  Greater: forwardOnly(broadcastBool),
  LessOrEqual: forwardOnly(broadcastBool),
  GreaterOrEqual: forwardOnly(broadcastBool),
  And: forwardOnly(broadcastBool),
  Or: forwardOnly(broadcastBool),
  Xor: forwardOnly(broadcastBool),
  Not: forwardOnly(boolOfInput),
  IsNaN: forwardOnly(boolOfInput),
  IsInf: forwardOnly(boolOfInput),

  // cond bool [c...], A [a...], B [b...] → Y [broadcast(c, a, b)], dtype of A
  // Y = cond ? A : B: Ā = unb(cond ? ḡ : 0), B̄ = unb(cond ? 0 : ḡ)
  Where: {
    infer: ({ x, same }) => same(broadcastShapes(x.map((v) => v?.shape)), x[1]!.dtype),
    vjp: (a) => {
      const { b, x, y, g } = a;
      const [cond, A, B] = [x[0]!, x[1]!, x[2]!];
      const zero = scalarLike(b, A, 0);
      return [null,
        needGrad(a, 1, () => unbroadcast(b, b.op('Where', [cond, g[0]!, zero]), y[0]!.shape, A)),
        needGrad(a, 2, () => unbroadcast(b, b.op('Where', [cond, zero, g[0]!]), y[0]!.shape, B))];
    },
  },

  // X [...] → Y [...] of dtype `to`
  // Y = Cast(X): X̄ = Cast(ḡ) back to X's dtype
  Cast: {
    infer: ({ x, attrs, same }) => same(x[0]?.shape, dtypeFromOnnx(intAttr(attrs, 'to', 1))),
    vjp: ({ b, x, g }) => [b.cast(g[0]!, x[0]!.dtype)],
  },
};
