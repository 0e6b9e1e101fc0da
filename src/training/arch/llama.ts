// The Llama block (transformers' LlamaDecoderLayer): pre-norm with RMSNorm, grouped-query
// attention with rotary position embeddings, SwiGLU MLP; no position embeddings, so model.ts
// builds the RoPE tables once per forward and hands them to every block.
//
//   x += o(attn(rope(q(n₁)), rope(k(n₁)), v(n₁))),  n₁ = RMSNorm₁(x)
//   x += down(silu(gate(n₂)) ⊙ up(n₂)),             n₂ = RMSNorm₂(x)
//
// attention_bias puts biases on q, k, v and o; mlp_bias on gate, up and down (both off in every
// released Llama). Weights are [in, out] (the loader transposes nn.Linear's [out, in]).
//
// Shapes: B batch, T sequence, C d_model, H query heads, Hkv key/value heads, R = H/Hkv,
// D head width, F MLP width.
import type { Value } from '../graph/builder.js';
import { applyRope, groupedAttention, groupedHeads, rmsNorm, swiglu } from './layers.js';
import type { BlockConfig, BlockContext, DecoderBlock, LlamaFamilyConfig, ParamSpec } from './types.js';

export function family(c: BlockConfig): LlamaFamilyConfig {
  if (!c.llama) throw new Error(`a ${c.arch} model needs its llama-family settings (RewardModelConfig.llama)`);
  return c.llama;
}

/** A weight [nIn, nOut] and, when `bias`, its bias [nOut]. */
export function dense(name: string, nIn: number, nOut: number, bias: boolean): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [nIn, nOut], init: 'normal', decay: true },
    ...(bias ? [{ name: `${name}.b`, shape: [nOut], init: 'zeros' as const, decay: false }] : []),
  ];
}

export function norm(name: string, width: number): ParamSpec {
  return { name: `${name}.g`, shape: [width], init: 'ones', decay: false };
}

/** The attention projections: q [C, H·D], k and v [C, Hkv·D], o [H·D, C]. */
export function attentionParams(c: BlockConfig, p: string, bias: { qkv: boolean; o: boolean }): ParamSpec[] {
  const { nKvHeads, headDim: D } = family(c);
  return [
    ...dense(`${p}.attn.q`, c.dModel, c.nHeads * D, bias.qkv),
    ...dense(`${p}.attn.k`, c.dModel, nKvHeads * D, bias.qkv),
    ...dense(`${p}.attn.v`, c.dModel, nKvHeads * D, bias.qkv),
    ...dense(`${p}.attn.o`, c.nHeads * D, c.dModel, bias.o),
  ];
}

/** The SwiGLU MLP: gate and up [C, F], down [F, C]. */
export function mlpParams(c: BlockConfig, p: string, bias: boolean): ParamSpec[] {
  return [
    ...dense(`${p}.mlp.gate`, c.dModel, c.dMlp, bias),
    ...dense(`${p}.mlp.up`, c.dModel, c.dMlp, bias),
    ...dense(`${p}.mlp.down`, c.dMlp, c.dModel, bias),
  ];
}

/** The SwiGLU half of a block: x + down(silu(gate(n₂)) ⊙ up(n₂)), n₂ = RMSNorm₂(x). */
export function mlpResidual(ctx: BlockContext, L: string, x: Value, bias: boolean): Value {
  const { b, c, param } = ctx;
  const n2 = rmsNorm(b, x, param(`${L}.mlp_norm.g`), c.layerNormEps); //                  [B,T,C]
  return b.add(x, swiglu(b, n2, (h, layer) => ctx.linear(h, `${L}.mlp.${layer}`, bias)));
}

function params(c: BlockConfig, i: number): ParamSpec[] {
  const f = family(c);
  const p = `blocks.${i}`;
  return [
    norm(`${p}.attn_norm`, c.dModel), //                                 input_layernorm            [C]
    ...attentionParams(c, p, { qkv: f.attentionBias, o: f.attentionBias }), // self_attn.{q,k,v,o}_proj
    norm(`${p}.mlp_norm`, c.dModel), //                                  post_attention_layernorm   [C]
    ...mlpParams(c, p, f.mlpBias), //                                    mlp.{gate,up,down}_proj
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
  const qh = applyRope(b, groupedHeads(b, q, Hkv, H / Hkv, D), rope, D); //               [B,Hkv,R,T,D]
  const kh = applyRope(b, groupedHeads(b, k, Hkv, 1, D), rope, D); //                     [B,Hkv,1,T,D]
  const vh = groupedHeads(b, v, Hkv, 1, D); //                                             [B,Hkv,1,T,D]
  const y = groupedAttention(b, qh, kh, vh, ctx.attnBias, { H, D, dtype }); //             [B,T,H·D]
  x = b.add(x, ctx.linear(y, `${L}.attn.o`, bias)); //                         [B,T,C]

  // ---- MLP
  return mlpResidual(ctx, L, x, f.mlpBias); //                                             [B,T,C]
}

export const llamaBlock: DecoderBlock = { params, forward };
