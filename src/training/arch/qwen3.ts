// The Qwen3 block (transformers' Qwen3DecoderLayer): the Llama block (llama.ts) with an RMSNorm
// over each head's D values of q and of k (q_norm, k_norm: one γ [D] shared by all heads), applied
// after the projections and before RoPE. The head width D is config.head_dim, which need not be
// C/H (Qwen3-0.6B: C 1024, H 16, D 128), so q is [C, H·D] and o [H·D, C]. attention_bias, as in
// Llama, puts biases on q, k, v and o (off in the released models); no MLP biases.
//
// Its forward repeats llama.ts's first attention lines on purpose (duplicates lists them): each
// architecture reads whole in its own file, as transformers' modeling files do, rather than
// through a shared block with switches.
//
//   x += o(attn(rope(qn(q(n₁))), rope(kn(k(n₁))), v(n₁))),  n₁ = RMSNorm₁(x)
//   x += down(silu(gate(n₂)) ⊙ up(n₂)),                     n₂ = RMSNorm₂(x)
//
// Shapes: B batch, T sequence, C d_model, H query heads, Hkv key/value heads, R = H/Hkv,
// D head width, F MLP width.
import type { Value } from '../graph/builder.js';
import { applyRope, groupedAttention, groupedHeads, rmsNorm } from './layers.js';
import { attentionParams, family, mlpParams, mlpResidual, norm } from './llama.js';
import type { BlockConfig, BlockContext, DecoderBlock, ParamSpec } from './types.js';

function params(c: BlockConfig, i: number): ParamSpec[] {
  const f = family(c);
  const p = `blocks.${i}`;
  return [
    norm(`${p}.attn_norm`, c.dModel), //                                    input_layernorm       [C]
    ...attentionParams(c, p, { qkv: f.attentionBias, o: f.attentionBias }), // q [C,H·D], k/v [C,Hkv·D], o [H·D,C]
    norm(`${p}.attn.q_norm`, f.headDim), //                                 self_attn.q_norm      [D]
    norm(`${p}.attn.k_norm`, f.headDim), //                                 self_attn.k_norm      [D]
    norm(`${p}.mlp_norm`, c.dModel), //                                     post_attention_layernorm [C]
    ...mlpParams(c, p, false), //                                           gate, up [C,F], down [F,C]
  ];
}

function forward(ctx: BlockContext, i: number, x: Value): Value {
  const { b, c, param, dtype } = ctx;
  const f = family(c);
  const L = `blocks.${i}`;
  const H = c.nHeads;
  const Hkv = f.nKvHeads;
  const D = f.headDim;
  const rope = ctx.rope as { cos: Value; sin: Value };
  const bias = f.attentionBias;

  // ---- causal self-attention
  const n1 = rmsNorm(b, x, param(`${L}.attn_norm.g`), c.layerNormEps); //                  [B,T,C]
  const q = ctx.linear(n1, `${L}.attn.q`, bias); //                       [B,T,H·D]
  const k = ctx.linear(n1, `${L}.attn.k`, bias); //                       [B,T,Hkv·D]
  const v = ctx.linear(n1, `${L}.attn.v`, bias); //                       [B,T,Hkv·D]
  // The per-head norms act on the last axis (D), so they can run on the grouped layout directly.
  const qn = rmsNorm(b, groupedHeads(b, q, Hkv, H / Hkv, D), param(`${L}.attn.q_norm.g`), c.layerNormEps); // [B,Hkv,R,T,D]
  const kn = rmsNorm(b, groupedHeads(b, k, Hkv, 1, D), param(`${L}.attn.k_norm.g`), c.layerNormEps); //     [B,Hkv,1,T,D]
  const qh = applyRope(b, qn, rope, D); //                                                 [B,Hkv,R,T,D]
  const kh = applyRope(b, kn, rope, D); //                                                 [B,Hkv,1,T,D]
  const vh = groupedHeads(b, v, Hkv, 1, D); //                                             [B,Hkv,1,T,D]
  const y = groupedAttention(b, qh, kh, vh, ctx.attnBias, { H, D, dtype }); //             [B,T,H·D]
  x = b.add(x, ctx.linear(y, `${L}.attn.o`, bias)); //                         [B,T,C]

  // ---- MLP
  return mlpResidual(ctx, L, x, false); //                                                 [B,T,C]
}

export const qwen3Block: DecoderBlock = { params, forward };
