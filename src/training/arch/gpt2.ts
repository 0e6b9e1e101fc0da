// The GPT-2 block (pre-LN): x += proj(attn(LN₁(x))); x += proj(gelu(fc(LN₂(x)))), with learned
// position embeddings added to the token embeddings before the first block (model.ts).
// Parameter names and layouts are hf-gpt2.ts's: every weight [in, out], y = x·w + b, the layout
// of HF GPT-2's Conv1D, so its checkpoints load without transposes.
//
// Shapes: B batch, T sequence, C d_model, H heads, D = C/H.
import type { DType, GraphBuilder, Value } from '../graph/builder.js';
import type { BlockConfig, BlockContext, DecoderBlock, ParamInit, ParamSpec } from './types.js';

function params(c: BlockConfig, i: number): ParamSpec[] {
  const C = c.dModel;
  const p = `blocks.${i}`;
  const ln = (prefix: string): ParamSpec[] => [
    { name: `${prefix}.g`, shape: [C], init: 'ones', decay: false },
    { name: `${prefix}.b`, shape: [C], init: 'zeros', decay: false },
  ];
  const dense = (prefix: string, nIn: number, nOut: number, init: ParamInit): ParamSpec[] => [
    { name: `${prefix}.w`, shape: [nIn, nOut], init, decay: true },
    { name: `${prefix}.b`, shape: [nOut], init: 'zeros', decay: false },
  ];
  return [
    ...ln(`${p}.ln1`), //                           [C]
    ...dense(`${p}.attn.qkv`, C, 3 * C, 'normal'), // [C,3C]: q | k | v, head h owns columns h·D..(h+1)·D of each
    ...dense(`${p}.attn.proj`, C, C, 'residual'), //  [C,C]
    ...ln(`${p}.ln2`), //                           [C]
    ...dense(`${p}.mlp.fc`, C, c.dMlp, 'normal'), //  [C,F]
    ...dense(`${p}.mlp.proj`, c.dMlp, C, 'residual'), // [F,C]
  ];
}

function forward(ctx: BlockContext, i: number, x: Value): Value {
  const { b, c, param, dtype } = ctx;
  const L = `blocks.${i}`;
  const C = c.dModel;
  const H = c.nHeads;
  const D = C / H;
  // ---- causal self-attention
  const h = b.layerNorm(x, param(`${L}.ln1.g`), param(`${L}.ln1.b`), c.layerNormEps); // [B,T,C]
  const qkv = ctx.linear(h, `${L}.attn.qkv`, true); //                                   [B,T,3C]
  // One Split (its gradient is one Concat) rather than three Slices (three Pads and a Sum).
  const parts = b.opMulti('Split', [qkv, b.ints([C, C, C])], 3, { axis: 2 }).map((t) => b.reshape(t, [0, 0, H, D])); // 3×[B,T,H,D]
  const q = b.transpose(b.mul(parts[0] as Value, b.scalar(dtype, 1 / Math.sqrt(D))), [0, 2, 1, 3]); // [B,H,T,D]
  const kT = b.transpose(parts[1] as Value, [0, 2, 3, 1]); //              [B,H,D,T]
  const v = b.transpose(parts[2] as Value, [0, 2, 1, 3]); //               [B,H,T,D]
  const att = b.softmax(b.add(b.matmul(q, kT), ctx.attnBias), -1); //      [B,H,T,T]
  const y = b.reshape(b.transpose(b.matmul(att, v), [0, 2, 1, 3]), [0, 0, C]); // [B,T,C]
  x = b.add(x, ctx.linear(y, `${L}.attn.proj`, true));

  // ---- MLP
  const h2 = b.layerNorm(x, param(`${L}.ln2.g`), param(`${L}.ln2.b`), c.layerNormEps);
  const u = ctx.linear(h2, `${L}.mlp.fc`, true); //                        [B,T,4C]
  const g = gelu(b, u, c.activation === 'gelu' ? 'gelu' : 'gelu_new', dtype);
  return b.add(x, ctx.linear(g, `${L}.mlp.proj`, true));
}

export const gpt2Block: DecoderBlock = { params, forward };

/**
 * GELU in the form the config names. From opset 20 it is one Gelu node (approximate='tanh' for
 * gelu_new), whose gradient rule is a single chain of elementwise nodes; before that it is spelled
 * out. Autodiff differentiates exactly what is emitted here.
 */
function gelu(b: GraphBuilder, u: Value, form: 'gelu_new' | 'gelu', dtype: DType): Value {
  if (b.opset >= 20) return b.op('Gelu', [u], form === 'gelu_new' ? { approximate: 'tanh' } : {});
  const s = (x: number): Value => b.scalar(dtype, x);
  const half = b.mul(u, s(0.5));
  if (form === 'gelu') {
    // 0.5·u·(1 + erf(u/√2))
    return b.mul(half, b.add(s(1), b.op('Erf', [b.mul(u, s(Math.SQRT1_2))])));
  }
  // 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))
  const cube = b.mul(b.mul(u, u), u);
  const inner = b.mul(b.add(u, b.mul(cube, s(0.044715))), s(Math.sqrt(2 / Math.PI)));
  return b.mul(half, b.add(s(1), b.op('Tanh', [inner])));
}
