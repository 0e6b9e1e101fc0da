// The one seeded random stream of the project (weight init, data order, fixtures).
// mulberry32: small, fast, and the same numbers on every platform and Node version, which
// Math.random and crypto streams do not promise.
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
