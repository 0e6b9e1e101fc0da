// The Qwen2 block (transformers' Qwen2DecoderLayer): the Llama block (llama.ts) with biases on
// the q, k and v projections, always, and none on o or the MLP. Qwen2's sliding-window attention
// is off in its released configs (use_sliding_window false); the loader refuses a window shorter
// than --max-length rather than attend past it.
//
// Its forward repeats llama.ts's first attention lines on purpose (duplicates lists them): each
// architecture reads whole in its own file, as transformers' modeling files do, rather than
// through a shared block with switches.
//
//   x += o(attn(rope(q(n₁) + b_q), rope(k(n₁) + b_k), v(n₁) + b_v)),  n₁ = RMSNorm₁(x)
//   x += down(silu(gate(n₂)) ⊙ up(n₂)),                               n₂ = RMSNorm₂(x)
//
// Shapes: B batch, T sequence, C d_model, H query heads, Hkv key/value heads, R = H/Hkv,
// D head width, F MLP width.
import type { Value } from '../graph/builder.js';
import { applyRope, groupedAttention, groupedHeads, rmsNorm } from './layers.js';
import { attentionParams, family, mlpParams, mlpResidual, norm } from './llama.js';
import type { BlockConfig, BlockContext, DecoderBlock, ParamSpec } from './types.js';

function params(c: BlockConfig, i: number): ParamSpec[] {
  const p = `blocks.${i}`;
  return [
    norm(`${p}.attn_norm`, c.dModel), //                          input_layernorm                 [C]
    ...attentionParams(c, p, { qkv: true, o: false }), //         q/k/v with bias [C,·] + [·], o [H·D,C]
    norm(`${p}.mlp_norm`, c.dModel), //                           post_attention_layernorm        [C]
    ...mlpParams(c, p, false), //                                 gate, up [C,F], down [F,C]
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

  // ---- causal self-attention
  const n1 = rmsNorm(b, x, param(`${L}.attn_norm.g`), c.layerNormEps); //                [B,T,C]
  const q = ctx.linear(n1, `${L}.attn.q`, true); //                       [B,T,H·D]
  const k = ctx.linear(n1, `${L}.attn.k`, true); //                       [B,T,Hkv·D]
  const v = ctx.linear(n1, `${L}.attn.v`, true); //                       [B,T,Hkv·D]
  const qh = applyRope(b, groupedHeads(b, q, Hkv, H / Hkv, D), rope, D); //             [B,Hkv,R,T,D]
  const kh = applyRope(b, groupedHeads(b, k, Hkv, 1, D), rope, D); //                   [B,Hkv,1,T,D]
  const vh = groupedHeads(b, v, Hkv, 1, D); //                                           [B,Hkv,1,T,D]
  const y = groupedAttention(b, qh, kh, vh, ctx.attnBias, { H, D, dtype }); //           [B,T,H·D]
  x = b.add(x, ctx.linear(y, `${L}.attn.o`, false)); //                                  [B,T,C]

  // ---- MLP
  return mlpResidual(ctx, L, x, false); //                                               [B,T,C]
}

export const qwen2Block: DecoderBlock = { params, forward };
