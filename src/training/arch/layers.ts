// The pieces the Llama-family blocks share (llama.ts, qwen2.ts, qwen3.ts): linear layers in the
// trainer's [in, out] layout, RMSNorm, rotary position embeddings, grouped-query attention and
// the SwiGLU MLP. Each follows transformers' modeling_llama.py; where the graph computes the same
// numbers in another order, the comment says why.
//
// Shapes: B batch, T sequence, C d_model, H query heads, Hkv key/value heads, R = H/Hkv query
// heads per key/value head, D head width, F MLP width.
import type { DType, GraphBuilder, Value } from '../graph/builder.js';
import type { RopeScaling } from './types.js';

/** y = x·w (+ b), w [in, out] (transformers' nn.Linear stores [out, in]; the loader transposes). */
export function linear(b: GraphBuilder, x: Value, w: Value, bias?: Value): Value {
  const y = b.matmul(x, w);
  return bias ? b.add(y, bias) : y;
}

/** One of a block's linear layers by name: `name.w` and, when `bias`, `name.b` among the parameters. */
export type LinearLayer = (b: GraphBuilder, param: (name: string) => Value, x: Value, name: string, bias: boolean) => Value;

/** BlockContext.linear without adapters: x·`name.w` (+ `name.b`). */
export const denseLayer: LinearLayer = (b, param, x, name, bias) => linear(b, x, param(`${name}.w`), bias ? param(`${name}.b`) : undefined);

/**
 * RMSNorm over the last axis: x · (mean(x²) + ε)^(−½) · γ (LlamaRMSNorm). One
 * SimplifiedLayerNormalization node (graph/ops/nn.ts has its gradient rule); in float32 it is the
 * same arithmetic as transformers' float32 upcast, since the trainer's graphs are float32 throughout.
 */
export function rmsNorm(b: GraphBuilder, x: Value, g: Value, eps: number): Value {
  return b.op('SimplifiedLayerNormalization', [x, g], { axis: -1, epsilon: eps });
}

/**
 * RoPE inverse frequencies [D/2]: θ^(−2i/D) (transformers' _compute_default_rope_parameters), then
 * rewritten by the scaling. Computed in double and rounded once to float32; transformers computes
 * them in float32, a difference of an ulp or so (angles off by ~1e-7 relative).
 */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling?: RopeScaling): Float32Array {
  const half = headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / headDim));
  if (!scaling) return Float32Array.from(base);
  if (scaling.type === 'linear') return Float32Array.from(base, (f) => f / scaling.factor);
  // llama3 (_compute_llama3_parameters): wavelengths above original/low_freq_factor are slowed by
  // `factor`, those below original/high_freq_factor kept, and the band between blended smoothly.
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
  const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
  const highFreqWavelen = originalMaxPositions / highFreqFactor;
  return Float32Array.from(base, (f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

/**
 * cos and sin [T, D] of positions 0..T−1: emb = cat(freqs, freqs), freqs[t, i] = t · inv_freq[i]
 * (LlamaRotaryEmbedding.forward, in float32 as there). Positions are 0..T−1 for every row: the
 * batches are right-padded, so each row's real tokens sit at 0..n−1, as transformers' default
 * cache_position gives them. `T0` is the scalar int64 T, `Tdim` its symbolic name.
 */
export function ropeTables(b: GraphBuilder, T0: Value, Tdim: string | number, invFreq: Float32Array, dtype: DType): { cos: Value; sin: Value } {
  const positions = b.op('Range', [b.scalar('int64', 0), T0, b.scalar('int64', 1)], {}, { shape: [Tdim] }); // [T]
  const t = b.unsqueeze(b.cast(positions, dtype), [1]); //                                 [T,1]
  const inv = b.constant(dtype, [invFreq.length], dtype === 'float64' ? Float64Array.from(invFreq) : invFreq); // [D/2]
  const freqs = b.mul(t, inv); //                                                            [T,D/2]
  const emb = b.op('Concat', [freqs, freqs], { axis: -1 }, { shape: [Tdim, 2 * invFreq.length] }); // [T,D]
  return { cos: b.op('Cos', [emb]), sin: b.op('Sin', [emb]) };
}

/** x·cos + rotate_half(x)·sin over the last axis, rotate_half(x) = cat(−x₂, x₁) (x₁, x₂ the halves); x [..., T, D], cos/sin [T, D]. */
export function applyRope(b: GraphBuilder, x: Value, rope: { cos: Value; sin: Value }, D: number): Value {
  const [x1, x2] = b.opMulti('Split', [x, b.ints([D / 2, D / 2])], 2, { axis: -1 }) as [Value, Value]; // 2×[...,T,D/2]
  const rotated = b.op('Concat', [b.neg(x2), x1], { axis: -1 }); //                                      [...,T,D]
  return b.add(b.mul(x, rope.cos), b.mul(rotated, rope.sin));
}

/**
 * Heads of a projection, grouped by key/value head: [B,T,n·D] → [B,Hkv,n/Hkv,T,D]. Query heads
 * come out as [B,Hkv,R,T,D] and keys/values as [B,Hkv,1,T,D], so that the attention MatMuls
 * broadcast each key/value head over its R query heads: the same pairing as transformers'
 * repeat_kv (query head h reads key/value head ⌊h/R⌋), without materialising R copies of K and V.
 */
export function groupedHeads(b: GraphBuilder, x: Value, Hkv: number, perKv: number, D: number): Value {
  const split = b.reshape(x, [0, 0, Hkv, perKv, D]); //                                     [B,T,Hkv,n/Hkv,D]
  return b.transpose(split, [0, 2, 3, 1, 4]); //                                              [B,Hkv,n/Hkv,T,D]
}

/**
 * Causal grouped-query attention on heads already normed and rotated: q [B,Hkv,R,T,D],
 * k and v [B,Hkv,1,T,D] → y [B,T,H·D].
 * scores = q·kᵀ·D^(−½) + bias, softmax over keys, y = scores·v (eager_attention_forward; q is
 * scaled before the product, which is the same up to float32 rounding).
 */
export function groupedAttention(
  b: GraphBuilder, q: Value, k: Value, v: Value, attnBias: Value, sizes: { H: number; D: number; dtype: DType },
): Value {
  const { H, D, dtype } = sizes;
  const qs = b.mul(q, b.scalar(dtype, 1 / Math.sqrt(D))); //                               [B,Hkv,R,T,D]
  const kT = b.transpose(k, [0, 1, 2, 4, 3]); //                                            [B,Hkv,1,D,T]
  const att = b.softmax(b.add(b.matmul(qs, kT), attnBias), -1); //                          [B,Hkv,R,T,T]
  const y = b.matmul(att, v); //                                                            [B,Hkv,R,T,D]
  return b.reshape(b.transpose(y, [0, 3, 1, 2, 4]), [0, 0, H * D]); //                      [B,T,H·D]
}

/**
 * SwiGLU: down(silu(gate(x)) ⊙ up(x)), silu(u) = u·σ(u) (LlamaMLP with hidden_act silu).
 * `project` applies one of the three linear layers (BlockContext.linear, which may carry LoRA).
 */
export function swiglu(b: GraphBuilder, x: Value, project: (x: Value, layer: 'gate' | 'up' | 'down') => Value): Value {
  const g = project(x, 'gate'); //                                                          [B,T,F]
  const u = project(x, 'up'); //                                                            [B,T,F]
  const act = b.mul(g, b.op('Sigmoid', [g])); //                                            [B,T,F]
  return project(b.mul(act, u), 'down'); //                                                 [B,T,C]
}
