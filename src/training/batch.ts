// Right-padded int64 batches for the trainer's graphs (the layout the server feeds, too).
import * as ort from 'onnxruntime-node';

export interface PaddedBatch {
  inputIds: ort.Tensor; //       int64 [B, T]
  attentionMask: ort.Tensor; //  int64 [B, T]
  /** Real (unpadded) tokens in the batch. */
  tokens: number;
}

/** Pads rows on the right to the longest row (or `width`) with `padId`; mask 1 on real tokens. */
export function padBatch(rows: readonly (readonly number[])[], padId: number, width?: number): PaddedBatch {
  const B = rows.length;
  const T = width ?? Math.max(1, ...rows.map((r) => r.length));
  const ids = new BigInt64Array(B * T).fill(BigInt(padId));
  const mask = new BigInt64Array(B * T);
  let tokens = 0;
  rows.forEach((row, b) => {
    if (row.length > T) throw new RangeError(`row ${b} has ${row.length} tokens, more than the batch width ${T}`);
    for (let t = 0; t < row.length; t++) {
      ids[b * T + t] = BigInt(row[t] as number);
      mask[b * T + t] = 1n;
    }
    tokens += row.length;
  });
  return {
    inputIds: new ort.Tensor('int64', ids, [B, T]),
    attentionMask: new ort.Tensor('int64', mask, [B, T]),
    tokens,
  };
}

/** The packed response tokens of a padded batch, as responseLogProbs takes them. */
export interface ResponseTokens {
  positions: ort.Tensor; // int64 [N]
  targets: ort.Tensor; //   int64 [N]
  segments: ort.Tensor; //  float32 [R, N]
  /** N: response tokens counted */
  count: number;
}

/**
 * For rows 0..R−1 of a batch padded to `width`: every response token t (starts[r] ≤ t < length,
 * t ≥ 1 since nothing predicts token 0) as the flat position r·width + t − 1 of the logits that
 * predict it, its id, and a 0/1 row-membership matrix. A batch without response tokens gets one
 * placeholder with segment weight 0, so no tensor is empty.
 */
export function responseTokens(rows: readonly (readonly number[])[], starts: readonly number[], width: number, R = rows.length): ResponseTokens {
  const positions: bigint[] = [];
  const targets: bigint[] = [];
  const owner: number[] = [];
  for (let r = 0; r < R; r++) {
    const row = rows[r] as readonly number[];
    for (let t = Math.max(1, starts[r] as number); t < Math.min(row.length, width); t++) {
      positions.push(BigInt(r * width + t - 1));
      targets.push(BigInt(row[t] as number));
      owner.push(r);
    }
  }
  const count = positions.length;
  if (count === 0) {
    positions.push(0n);
    targets.push(BigInt((rows[0] as readonly number[])[0] ?? 0));
  }
  const N = positions.length;
  const segments = new Float32Array(R * N);
  owner.forEach((r, n) => (segments[r * N + n] = 1));
  return {
    positions: new ort.Tensor('int64', BigInt64Array.from(positions), [N]),
    targets: new ort.Tensor('int64', BigInt64Array.from(targets), [N]),
    segments: new ort.Tensor('float32', segments, [R, N]),
    count,
  };
}
