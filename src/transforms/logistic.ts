// Numerically stable logistic functions. The naive forms overflow for |x| of a few hundred
// (exp(800) = Infinity) or lose everything to rounding (log(1 − 1e-20) = 0), and reward
// models routinely emit |r| in the thousands once a trainer drifts.

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^−|x|): the exponent is never positive.
export function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

// log σ(x) = −softplus(−x); never log(sigmoid(x)), which is −Infinity for x below about −745.
// `+ 0` turns −0 (from x = +large) into 0 so replies do not carry a signed zero.
export function logSigmoid(x: number): number {
  return -softplus(-x) + 0;
}

// σ(x), evaluated on the side where the exponent is ≤ 0 so it never overflows.
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}
