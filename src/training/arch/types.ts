// What a decoder block is to the model (model.ts): its parameters, and a function that takes the
// residual stream x [B,T,C] to the next one. One file per architecture (gpt2.ts, llama.ts,
// qwen2.ts, qwen3.ts) defines both; model.ts wraps them in embeddings, the final norm, the
// last-token pooling and the reward head, which are the same for all.
import type { DType, GraphBuilder, Value } from '../graph/builder.js';

export type Architecture = 'gpt2' | 'llama' | 'qwen2' | 'qwen3';

export type ParamInit = 'normal' | 'residual' | 'zeros' | 'ones';

export interface ParamSpec {
  name: string;
  shape: number[];
  init: ParamInit;
  /** AdamW's decoupled weight decay applies (matrices only: not biases, norms or embeddings). */
  decay: boolean;
}

/**
 * RoPE frequency scalings that are a fixed rewrite of the inverse frequencies (transformers'
 * rope_type `linear` and `llama3`); the others (dynamic, yarn, longrope) are refused at load.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/** Where the LM head's weight [V, C] comes from: the token embedding, its own table, or nowhere. */
export type LmHead = 'tied' | 'untied' | 'none';

/** What Llama, Qwen2 and Qwen3 add to the shared model config (RewardModelConfig.llama). */
export interface LlamaFamilyConfig {
  /** key/value heads of grouped-query attention; nHeads is a multiple of it */
  nKvHeads: number;
  /** D, the width of one head (Qwen3 sets it apart from C/H; H·D need not be C) */
  headDim: number;
  /** RoPE base θ: inverse frequencies θ^(−2i/D) */
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  /** `none`: no LM head in the graph (a *ForSequenceClassification checkpoint, or a loss that reads no log-probs) */
  lmHead: LmHead;
  /** transformers' attention_bias (Llama, Qwen3): biases on q, k, v and o. Qwen2 ignores it: it always has q/k/v biases and none on o. */
  attentionBias: boolean;
  /** transformers' mlp_bias (Llama): biases on gate, up and down */
  mlpBias: boolean;
}

/** Sizes every block reads (a subset of RewardModelConfig, so the arch files need not import model.ts). */
export interface BlockConfig {
  arch: Architecture;
  dModel: number;
  nHeads: number;
  nLayers: number;
  dMlp: number;
  activation: 'gelu_new' | 'gelu' | 'silu';
  layerNormEps: number;
  llama?: LlamaFamilyConfig;
}

/** What the model hands every block of one forward pass. */
export interface BlockContext {
  b: GraphBuilder;
  c: BlockConfig;
  dtype: DType;
  param(name: string): Value;
  /**
   * The linear layer `name`: x·`name.w` (+ `name.b` when `bias`), w [in, out]. Every block's
   * projections go through it, so that LoRA (lora.ts) can add its low-rank path to the layers it
   * targets without the blocks knowing; without adapters it is linear() of layers.ts.
   */
  linear(x: Value, name: string, bias: boolean): Value;
  /**
   * Additive attention bias, 0 where query t may see key s (s ≤ t, s not padding) and −1e4
   * elsewhere: [B,1,T,T] for GPT-2's [B,H,T,T] scores, [B,1,1,T,T] for the Llama family's
   * grouped [B,Hkv,R,T,T] scores.
   */
  attnBias: Value;
  /** RoPE tables cos, sin [T, D] (Llama family only) */
  rope?: { cos: Value; sin: Value };
}

export interface DecoderBlock {
  /** Block i's parameters, named blocks.{i}.… */
  params(c: BlockConfig, i: number): ParamSpec[];
  /** x [B,T,C] → x [B,T,C] */
  forward(ctx: BlockContext, i: number, x: Value): Value;
}
