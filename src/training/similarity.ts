// PCRM's prior similarity s of a preference pair and the margin bound δ*(s) it sets (docs/design.md,
// Training losses): `−log σ(Δ) − log σ(δ* − Δ)`, δ* = β1/(s + β2) + β3. Pairs whose responses are
// alike (s → 1) get a small bound on r_c − r_r; pairs that differ a lot may be separated further.
//
// Three similarities, all in [0, 1]:
// - length ratio: shorter/longer response length in tokens;
// - TF-IDF: angular similarity of the TF-IDF vectors of the two responses, IDF fitted on the
//   training corpus (sklearn TfidfVectorizer's defaults, so values can be checked against it);
// - encoder: angular similarity of mean-pooled embeddings (similarity-encoder.ts).
// Pure functions, no ONNX: they run once per pair before training.

/** docs/design.md's PCRM defaults (Training losses); the paper's runs used e.g. (20, 0.001, −15). */
export const PCRM_DEFAULTS = { beta1: 6, beta2: 0.001, beta3: 0 } as const;

/** δ*(s) = β1/(s + β2) + β3: the upper bound PCRM puts on the reward margin of a pair. */
export function deltaStar(s: number, beta1: number = PCRM_DEFAULTS.beta1, beta2: number = PCRM_DEFAULTS.beta2, beta3: number = PCRM_DEFAULTS.beta3): number {
  if (!Number.isFinite(s) || s < 0) throw new RangeError(`similarity must be a finite number >= 0, got ${s}`);
  if (s + beta2 <= 0) throw new RangeError(`s + β2 must be > 0, got ${s} + ${beta2}`);
  return beta1 / (s + beta2) + beta3;
}

/** Shorter over longer length; two empty responses are identical in length (1). */
export function lengthRatio(a: number, b: number): number {
  if (!(a >= 0 && b >= 0)) throw new RangeError(`lengths must be >= 0, got ${a} and ${b}`);
  const longer = Math.max(a, b);
  return longer === 0 ? 1 : Math.min(a, b) / longer;
}

/**
 * Angular similarity (π − arccos(clamp(cos, 0, 1)))/π. Negative cosines are clamped to 0, so
 * s ∈ [0.5, 1]: orthogonal texts give 0.5, identical ones 1.
 */
export function angularSimilarity(cos: number): number {
  if (Number.isNaN(cos)) throw new RangeError('cosine is NaN');
  const c = Math.min(1, Math.max(0, cos));
  return (Math.PI - Math.acos(c)) / Math.PI;
}

/** Cosine of two dense vectors; 0 when either is all zeros (nothing to compare). */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`vectors differ in length: ${a.length} vs ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

// sklearn's default token_pattern `(?u)\b\w\w+\b` after lowercasing: words of two or more
// letters, digits or underscores. One-letter words ("a", "I") carry no topic and are dropped.
const WORD = /[\p{L}\p{N}_]{2,}/gu;

export function wordTokens(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

/** A TF-IDF vector: term → weight, L2-normalised. */
export type SparseVector = ReadonlyMap<string, number>;

/**
 * TF-IDF with sklearn TfidfVectorizer's defaults: raw term counts, smooth IDF
 * idf(t) = ln((1 + n)/(1 + df(t))) + 1, L2 normalisation. A term never seen in the corpus gets
 * the IDF of df = 0 (the rarest possible), so unseen words still count.
 */
export class TfidfModel {
  private constructor(
    private readonly idfByTerm: ReadonlyMap<string, number>,
    readonly documents: number,
  ) {}

  /** Fits the IDF on a corpus: for PCRM, every chosen and rejected response of the training split. */
  static fit(corpus: Iterable<string>): TfidfModel {
    const df = new Map<string, number>();
    let n = 0;
    for (const doc of corpus) {
      n++;
      for (const term of new Set(wordTokens(doc))) df.set(term, (df.get(term) ?? 0) + 1);
    }
    const idf = new Map<string, number>();
    for (const [term, count] of df) idf.set(term, Math.log((1 + n) / (1 + count)) + 1);
    return new TfidfModel(idf, n);
  }

  idf(term: string): number {
    return this.idfByTerm.get(term) ?? Math.log(1 + this.documents) + 1;
  }

  vector(text: string): SparseVector {
    const counts = new Map<string, number>();
    for (const term of wordTokens(text)) counts.set(term, (counts.get(term) ?? 0) + 1);
    let norm = 0;
    const weights = new Map<string, number>();
    for (const [term, count] of counts) {
      const w = count * this.idf(term);
      weights.set(term, w);
      norm += w * w;
    }
    norm = Math.sqrt(norm);
    for (const [term, w] of weights) weights.set(term, w / norm);
    return weights;
  }

  /** Cosine of the TF-IDF vectors of two texts; 0 when either has no words. */
  cosine(a: string, b: string): number {
    return sparseCosine(this.vector(a), this.vector(b));
  }

  /** PCRM's s for a pair: angular similarity of the two responses' TF-IDF vectors. */
  similarity(a: string, b: string): number {
    return angularSimilarity(this.cosine(a, b));
  }
}

/** Dot product of two L2-normalised sparse vectors (an empty one gives 0). */
export function sparseCosine(a: SparseVector, b: SparseVector): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let dot = 0;
  for (const [term, w] of small) dot += w * (large.get(term) ?? 0);
  return dot;
}

export type SimilarityKind = 'length' | 'tfidf' | 'encoder';

export interface ResponsePair {
  chosen: string;
  rejected: string;
}

/**
 * s for every pair by TF-IDF, IDF fitted on `corpus` (default: the pairs' own responses).
 * Pass the training split's responses as the corpus when scoring validation pairs.
 */
export function tfidfSimilarities(pairs: readonly ResponsePair[], corpus?: Iterable<string>): Float64Array {
  const model = TfidfModel.fit(corpus ?? pairs.flatMap((p) => [p.chosen, p.rejected]));
  return Float64Array.from(pairs, (p) => model.similarity(p.chosen, p.rejected));
}

/** s for every pair by response length in tokens. */
export function lengthSimilarities(chosenLengths: ArrayLike<number>, rejectedLengths: ArrayLike<number>): Float64Array {
  if (chosenLengths.length !== rejectedLengths.length) throw new RangeError('chosen and rejected length lists differ in size');
  return Float64Array.from({ length: chosenLengths.length }, (_, i) => lengthRatio(chosenLengths[i] as number, rejectedLengths[i] as number));
}
