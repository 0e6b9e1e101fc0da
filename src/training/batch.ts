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

/** float32 [B, T]: 1 where token t of row b is a response token (starts[b] ≤ t < its length). */
export function responseMask(rows: readonly (readonly number[])[], starts: readonly number[], width: number): ort.Tensor {
  const mask = new Float32Array(rows.length * width);
  rows.forEach((row, b) => {
    const from = Math.max(0, starts[b] as number);
    for (let t = from; t < Math.min(row.length, width); t++) mask[b * width + t] = 1;
  });
  return new ort.Tensor('float32', mask, [rows.length, width]);
}
