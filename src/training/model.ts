// Decoder reward models, emitted as ONNX nodes through the GraphBuilder: GPT-2 (learned positions,
// LayerNorm, GELU, tied LM head) and the Llama family — Llama, Qwen2, Qwen3 (RoPE, RMSNorm,
// SwiGLU, grouped-query attention, tied or untied LM head) — each block in its own file under
// arch/. This file holds what they share: the config, the parameter list and its init, the token
// embedding, the final norm, the last-token pooling and the reward head.
//
// One function builds the forward pass for both uses: the training step (parameters are graph
// inputs, so the step graph is built once and the weights stream through it) and the export
// (parameters are initializers). Same nodes in both, so the server scores what the trainer saw.
//
// Parameter names and layouts are the trainer's neutral ones (tok_emb, blocks.{i}.…; every
// weight [in, out], y = x·w + b). GPT-2's are hf-gpt2.ts's, the layout of HF GPT-2's Conv1D;
// the Llama family's are hf-checkpoint.ts's, which transposes nn.Linear's [out, in].
//
// Shapes in comments: B batch, T sequence, C d_model, H heads, D head width, V vocab, K objectives.
import { BLOCKS, isLlamaFamily, type Architecture, type BlockContext, type LlamaFamilyConfig, type ParamSpec } from './arch/index.js';
import { denseLayer, ropeInverseFrequencies, ropeTables, rmsNorm, type LinearLayer } from './arch/layers.js';
import type { DType, GraphBuilder, Value } from './graph/builder.js';
import { mulberry32 } from './random.js';

export type { Architecture, LlamaFamilyConfig, LmHead, ParamInit, ParamSpec, RopeScaling } from './arch/index.js';

export type HeadKind = 'linear' | 'mlp';

/** Opset of every graph the trainer builds (step, evaluation, export): 20 has the Gelu op. */
export const MODEL_OPSET = 20;
/** GPT-2's GELU forms; the Llama family's SwiGLU gate is silu. */
export type Activation = 'gelu_new' | 'gelu' | 'silu';

export interface RewardModelConfig {
  /** The decoder block (arch/): absent in configs saved before there was a choice, which are GPT-2. */
  arch: Architecture;
  vocabSize: number;
  /** The longest sequence the model takes (GPT-2: rows of the learned position embedding). */
  maxLength: number;
  dModel: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** MLP width; GPT-2 uses 4·d_model. */
  dMlp: number;
  /** K: one reward column per objective. */
  numObjectives: number;
  /** `linear`: Linear(C, K) without bias (HF's score head); `mlp`: GRM's Linear(C, H') → ReLU → Linear(H', K). */
  head: HeadKind;
  headHidden: number;
  /** GPT-2 uses the tanh approximation (`gelu_new`); `gelu` is the erf form; the Llama family `silu`. */
  activation: Activation;
  /** ε of every LayerNorm (GPT-2) or RMSNorm (Llama family: rms_norm_eps, also for Qwen3's q/k norms). */
  layerNormEps: number;
  initStd: number;
  /** Llama, Qwen2, Qwen3: grouped-query attention, RoPE and the LM head's source. Absent for GPT-2. */
  llama?: LlamaFamilyConfig;
}

/**
 * A full config from the sizes given. GPT-2 unless `arch` says otherwise; a Llama-family arch
 * without `llama` settings gets full multi-head attention (nKvHeads = nHeads), D = C/H, θ 10000,
 * a tied LM head and no biases.
 * maxLength has no default here: the trainer's is --max-length's (src/config/train.ts), and a
 * second one (this used to say 512) could only disagree with it.
 */
export function defaultModelConfig(overrides: Partial<RewardModelConfig> & Pick<RewardModelConfig, 'vocabSize' | 'maxLength'>): RewardModelConfig {
  const dModel = overrides.dModel ?? 256;
  const nHeads = overrides.nHeads ?? 4;
  const arch = overrides.arch ?? 'gpt2';
  const llamaFamily = isLlamaFamily(arch);
  return {
    dModel,
    nLayers: 4,
    nHeads,
    dMlp: 4 * dModel,
    numObjectives: 1,
    head: 'linear',
    headHidden: 1024,
    activation: llamaFamily ? 'silu' : 'gelu_new',
    layerNormEps: llamaFamily ? 1e-6 : 1e-5,
    initStd: 0.02,
    ...(llamaFamily
      ? { llama: { nKvHeads: nHeads, headDim: dModel / nHeads, ropeTheta: 10000, lmHead: 'tied' as const, attentionBias: false, mlpBias: false } }
      : {}),
    ...overrides,
    arch,
  };
}

/** The architecture of a config, also of one saved before `arch` existed (GPT-2). */
export function archOf(c: Pick<RewardModelConfig, 'arch'>): Architecture {
  return (c.arch as Architecture | undefined) ?? 'gpt2';
}

export function validateModelConfig(c: RewardModelConfig): void {
  const positive = ['vocabSize', 'maxLength', 'dModel', 'nLayers', 'nHeads', 'dMlp', 'numObjectives', 'headHidden'] as const;
  for (const key of positive) {
    if (!Number.isInteger(c[key]) || c[key] < 1) throw new RangeError(`model config ${key} must be a positive integer, got ${c[key]}`);
  }
  const arch = archOf(c);
  if (!Object.hasOwn(BLOCKS, arch)) throw new RangeError(`model config arch ${JSON.stringify(arch)} is not one of ${Object.keys(BLOCKS).join(', ')}`);
  if (!isLlamaFamily(arch)) {
    if (c.dModel % c.nHeads !== 0) throw new RangeError(`d_model ${c.dModel} is not divisible by heads ${c.nHeads}`);
    if (c.activation === 'silu') throw new RangeError('a GPT-2 model takes activation gelu_new or gelu, not silu');
    return;
  }
  const f = c.llama;
  if (!f) throw new RangeError(`a ${arch} model config needs its llama settings`);
  for (const key of ['nKvHeads', 'headDim'] as const) {
    if (!Number.isInteger(f[key]) || f[key] < 1) throw new RangeError(`model config llama.${key} must be a positive integer, got ${f[key]}`);
  }
  if (c.nHeads % f.nKvHeads !== 0) throw new RangeError(`heads ${c.nHeads} is not a multiple of key/value heads ${f.nKvHeads}`);
  if (f.headDim % 2 !== 0) throw new RangeError(`RoPE needs an even head width, got ${f.headDim}`);
  if (!(f.ropeTheta > 0)) throw new RangeError(`RoPE θ must be positive, got ${f.ropeTheta}`);
  if (c.activation !== 'silu') throw new RangeError(`a ${arch} model's MLP is SwiGLU (activation silu), not ${c.activation}`);
}

/** Where the LM head's weight [V, C] comes from (GPT-2: always the token embedding). */
export function lmHeadSource(c: RewardModelConfig): 'tied' | 'untied' | 'none' {
  return isLlamaFamily(archOf(c)) ? (c.llama as LlamaFamilyConfig).lmHead : 'tied';
}

/**
 * Every parameter, in a fixed order (the order of the step graph's inputs and of checkpoints):
 *   tok_emb [V,C], pos_emb [maxLength,C] (GPT-2), blocks.{i}.… (arch/<arch>.ts),
 *   ln_f.g/.b [C] (GPT-2) or norm_f.g [C] (Llama family), lm_head [V,C] (untied only: the same
 *   row-per-token layout as tok_emb, so tied and untied heads compute logits alike), head.…
 */
export function parameterSpecs(c: RewardModelConfig): ParamSpec[] {
  const C = c.dModel;
  const arch = archOf(c);
  const gpt2 = !isLlamaFamily(arch);
  const specs: ParamSpec[] = [{ name: 'tok_emb', shape: [c.vocabSize, C], init: 'normal', decay: false }];
  if (gpt2) specs.push({ name: 'pos_emb', shape: [c.maxLength, C], init: 'normal', decay: false });
  const block = BLOCKS[arch];
  const blockConfig = { ...c, arch };
  for (let i = 0; i < c.nLayers; i++) specs.push(...block.params(blockConfig, i));
  const dense = (prefix: string, nIn: number, nOut: number, bias = true): ParamSpec[] => [
    { name: `${prefix}.w`, shape: [nIn, nOut], init: 'normal', decay: true },
    ...(bias ? [{ name: `${prefix}.b`, shape: [nOut], init: 'zeros' as const, decay: false }] : []),
  ];
  if (gpt2) {
    specs.push({ name: 'ln_f.g', shape: [C], init: 'ones', decay: false }, { name: 'ln_f.b', shape: [C], init: 'zeros', decay: false });
  } else {
    specs.push({ name: 'norm_f.g', shape: [C], init: 'ones', decay: false });
    // Not decayed, like the embedding it stands in for when untied.
    if (lmHeadSource(c) === 'untied') specs.push({ name: 'lm_head', shape: [c.vocabSize, C], init: 'normal', decay: false });
  }
  if (c.head === 'linear') {
    // No bias: Bradley–Terry only sees reward differences (HF's score head has none either).
    specs.push(...dense('head.out', C, c.numObjectives, false));
  } else {
    // GRM's head: Linear(C, H') → ReLU → Linear(H', K).
    specs.push(...dense('head.fc', C, c.headHidden), ...dense('head.out', c.headHidden, c.numObjectives));
  }
  return specs;
}

export function parameterCount(c: RewardModelConfig): number {
  return parameterSpecs(c).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

export type ModelWeights = Map<string, Float32Array>;

/** The project's seeded stream (src/training/random.ts), under the name the trainer uses. */
export const seededRandom = mulberry32;

/**
 * GPT-2's init: N(0, 0.02) for matrices and embeddings, N(0, 0.02/√(2L)) for the projections that
 * write into the residual stream, zeros for biases, ones for LayerNorm gains.
 * `zeroHead` zero-initialises the reward head's last layer (HaF-RM).
 */
export function initWeights(c: RewardModelConfig, seed: number, options: { zeroHead?: boolean } = {}): ModelWeights {
  const rand = seededRandom(seed);
  const gauss = (): number => {
    // Box–Muller; 1 − u keeps log away from 0.
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const weights: ModelWeights = new Map();
  for (const spec of parameterSpecs(c)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const headOut = spec.name.startsWith('head.out.');
    if (spec.init === 'ones') data.fill(1);
    else if ((spec.init === 'normal' || spec.init === 'residual') && !(options.zeroHead && headOut)) {
      const std = spec.init === 'residual' ? c.initStd / Math.sqrt(2 * c.nLayers) : c.initStd;
      for (let i = 0; i < n; i++) data[i] = std * gauss();
    }
    weights.set(spec.name, data);
  }
  return weights;
}

/**
 * Weights for `c` from a pretrained decoder (loadHfGpt2's or loadHfCheckpoint's params, same names
 * and layouts): the blocks are copied; position embeddings are cut to c.maxLength rows; the token
 * table and an untied LM head get fresh N(0, initStd) rows for token ids the checkpoint lacks (a
 * tokenizer with added tokens); the reward head is copied when the checkpoint has one (a
 * *ForSequenceClassification score layer, `head.out.w`) and otherwise initialised from the seed
 * (zeroHead applies to a fresh head only: a kept one already scores).
 */
export function initFromPretrained(
  c: RewardModelConfig, pretrained: ReadonlyMap<string, { shape: number[]; data: Float32Array }>, seed: number,
  options: { zeroHead?: boolean } = {},
): ModelWeights {
  const weights = initWeights(c, seed, options);
  for (const spec of parameterSpecs(c)) {
    const p = pretrained.get(spec.name);
    if (spec.name.startsWith('head.') && p === undefined) continue;
    if (p === undefined) throw new Error(`pretrained weights lack ${spec.name}`);
    const target = weights.get(spec.name) as Float32Array;
    const rowLength = spec.shape.slice(1).reduce((a, b) => a * b, 1);
    const sameTail = p.shape.length === spec.shape.length && p.shape.slice(1).every((d, i) => d === spec.shape[i + 1]);
    const rowsMayDiffer = spec.name === 'tok_emb' || spec.name === 'pos_emb' || spec.name === 'lm_head';
    if (!sameTail || (!rowsMayDiffer && p.shape[0] !== spec.shape[0])) {
      throw new Error(`pretrained ${spec.name} has shape [${p.shape}], the model needs [${spec.shape}]`);
    }
    if (spec.name === 'pos_emb' && (p.shape[0] as number) < (spec.shape[0] as number)) {
      throw new Error(`pretrained model has ${p.shape[0]} positions; --max-length ${spec.shape[0]} is longer`);
    }
    const rows = Math.min(p.shape[0] as number, spec.shape[0] as number);
    target.set(p.data.subarray(0, rows * rowLength));
  }
  return weights;
}

/** Parameters as graph values, by name (graph inputs when training, initializers when exporting). */
export type ParamValues = ReadonlyMap<string, Value>;

export function declareParamInputs(b: GraphBuilder, c: RewardModelConfig, dtype: DType = 'float32'): Map<string, Value> {
  return new Map(parameterSpecs(c).map((s) => [s.name, b.input(s.name, dtype, s.shape)]));
}

export function declareParamInitializers(b: GraphBuilder, c: RewardModelConfig, weights: ModelWeights): Map<string, Value> {
  return new Map(
    parameterSpecs(c).map((s) => {
      const data = weights.get(s.name);
      if (data === undefined) throw new Error(`weights are missing ${s.name}`);
      return [s.name, b.initializer(s.name, 'float32', s.shape, data)];
    }),
  );
}

export interface ForwardOptions {
  /** Also emit the LM head's logits over every position. */
  lmHead?: boolean;
  /**
   * Also emit the final-norm hidden states [B,T,C], from which responseLogProbs computes the
   * LM head only at the response tokens (GRM/HaF-RM regularisers).
   */
  lmHidden?: boolean;
  /**
   * GRM's Dropout(p) before the reward head, in training graphs only: [B, C] inverted-dropout
   * mask (0 or 1/(1 − p)) multiplied into the pooled hidden state. The loop draws it from the
   * seed and the step (dropoutMask), so a resumed run drops the same units as an uninterrupted
   * one, which ORT's Dropout with its per-session generator would not. The evaluation and export
   * graphs leave it out: inverted dropout is the identity at inference.
   */
  headMask?: Value;
  /**
   * The blocks' linear layers (BlockContext.linear); default denseLayer, x·w + b. LoRA's training
   * and evaluation graphs pass lora.ts's, which adds the adapters' path to the layers it targets.
   */
  linear?: LinearLayer;
}

export interface ForwardResult {
  /** [B, K] reward of each sequence, read at its last real token. */
  rewards: Value;
  /** [B, T, V] next-token logits from the LM head, when asked for. */
  lmLogits?: Value;
  /** [B, T, C] hidden states after the final LayerNorm (the LM head's input), when asked for. */
  hidden?: Value;
}

/**
 * The LM head's weight [V, C] among the parameters: the token embedding when tied (GPT-2 always),
 * `lm_head` when untied. A model built without one (lmHead `none`) cannot give log-probs.
 */
export function lmHeadWeight(c: RewardModelConfig, p: ParamValues): Value {
  const source = lmHeadSource(c);
  if (source === 'none') {
    throw new Error('this model has no LM head (a *ForSequenceClassification checkpoint without tied embeddings): ' +
      'the losses that read log-probs (HaF-RM, GRM) need one; start from the *ForCausalLM checkpoint');
  }
  const v = p.get(source === 'tied' ? 'tok_emb' : 'lm_head');
  if (v === undefined) throw new Error(`parameter ${source === 'tied' ? 'tok_emb' : 'lm_head'} is not declared`);
  return v;
}

/**
 * The forward pass. input_ids, attention_mask: int64 [B, T], right-padded (mask 1 on real tokens).
 * Rows never see padding: keys at padded positions get −1e4 before the softmax (never −inf, so
 * the padded query rows stay finite), and the reward is read at position sum(mask) − 1. With
 * right padding a row's real tokens sit at positions 0..n−1, which is what GPT-2's position
 * embedding and the Llama family's RoPE both read (transformers' default position ids).
 *
 * Kept whole (~85 lines), nanoGPT style: the model's forward pass from ids to rewards reads top
 * to bottom in one place, each tensor's shape beside it.
 */
export function buildForward(
  b: GraphBuilder, c: RewardModelConfig, p: ParamValues, inputIds: Value, attentionMask: Value,
  options: ForwardOptions = {},
): ForwardResult {
  const dtype = (p.get('tok_emb') as Value).dtype;
  const param = (name: string): Value => {
    const v = p.get(name);
    if (v === undefined) throw new Error(`parameter ${name} is not declared`);
    return v;
  };
  const arch = archOf(c);
  const llamaFamily = isLlamaFamily(arch);
  const C = c.dModel;
  const scalar = (x: number): Value => b.scalar(dtype, x);

  // Sizes known only at run time.
  const shape = b.shapeOf(inputIds); //                                   [2] = (B, T)
  // Symbolic names of B and T, so that build-time shapes stay exact where inference cannot see them.
  const Bdim = inputIds.shape?.[0] ?? 'batch';
  const Tdim = inputIds.shape?.[1] ?? 'seq';
  const B0 = b.op('Gather', [shape, b.scalar('int64', 0)], { axis: 0 }); //  scalar B
  const T0 = b.op('Gather', [shape, b.scalar('int64', 1)], { axis: 0 }); //  scalar T
  const T1 = b.unsqueeze(T0, [0]); //                                       [1] = (T)

  // ---- embeddings: x = tok_emb[ids] (+ pos_emb[0:T] for GPT-2)
  let x = b.gather(param('tok_emb'), inputIds); //                          [B,T,C]
  if (!llamaFamily) {
    const positions = b.op('Range', [b.scalar('int64', 0), T0, b.scalar('int64', 1)], {}, { shape: [Tdim] }); // [T]
    x = b.add(x, b.gather(param('pos_emb'), positions)); //                 [B,T,C]
  }

  // ---- attention bias: causal (−1e4 above the diagonal) + padding (−1e4 on padded keys)
  const TT = b.op('Concat', [T1, T1], { axis: 0 }); //                     [2] = (T, T)
  const fill = b.op('ConstantOfShape', [TT], { value: { tensor: { dtype, dims: [1], data: dtypeArray(dtype, [-1e4]) } } }, { shape: [Tdim, Tdim] });
  const causal = b.op('Trilu', [fill, b.scalar('int64', 1)], { upper: 1 }, { shape: [Tdim, Tdim] }); // [T,T]
  const maskF = b.cast(attentionMask, dtype); //                           [B,T]
  const padBias = b.unsqueeze(b.mul(b.sub(scalar(1), maskF), scalar(-1e4)), [1, 2]); // [B,1,1,T]
  const attnBias = b.add(causal, padBias); //                              [B,1,T,T]

  // ---- the blocks
  const linear = options.linear ?? denseLayer;
  const ctx: BlockContext = {
    b, c: { ...c, arch }, dtype, param,
    linear: (x, name, bias) => linear(b, param, x, name, bias),
    // The Llama family's grouped scores are [B,Hkv,R,T,T]: one more broadcast axis.
    attnBias: llamaFamily ? b.unsqueeze(attnBias, [2]) : attnBias, //        [B,1,1,T,T] or [B,1,T,T]
  };
  if (llamaFamily) {
    const f = c.llama as LlamaFamilyConfig;
    ctx.rope = ropeTables(b, T0, Tdim, ropeInverseFrequencies(f.headDim, f.ropeTheta, f.ropeScaling), dtype); // 2×[T,D]
  }
  const block = BLOCKS[arch];
  for (let i = 0; i < c.nLayers; i++) x = block.forward(ctx, i, x); //        [B,T,C]

  // ---- pool the last real token: flat index b·T + (Σ mask_b − 1) into x viewed as [B·T, C]
  const lastIndex = b.sub(b.reduceSum(attentionMask, [1], false), b.scalar('int64', 1)); // [B]
  const rowStart = b.mul(b.op('Range', [b.scalar('int64', 0), B0, b.scalar('int64', 1)], {}, { shape: [Bdim] }), T0); // [B]
  const flatIndex = b.add(rowStart, lastIndex); //                         [B]

  const finalNorm = (t: Value): Value => (llamaFamily
    ? rmsNorm(b, t, param('norm_f.g'), c.layerNormEps)
    : b.layerNorm(t, param('ln_f.g'), param('ln_f.b'), c.layerNormEps));
  let pooled: Value; //                                                    [B,C]
  let lmLogits: Value | undefined;
  let hidden: Value | undefined;
  if (options.lmHead || options.lmHidden) {
    const hf = finalNorm(x); //                                            [B,T,C]
    if (options.lmHidden) hidden = hf;
    if (options.lmHead) lmLogits = b.matmul(hf, b.transpose(lmHeadWeight(c, p), [1, 0])); // [B,T,V]
    pooled = b.gather(b.reshape(hf, [-1, C]), flatIndex);
  } else {
    // Both norms act per token, so normalising only the pooled rows gives the same numbers.
    pooled = finalNorm(b.gather(b.reshape(x, [-1, C]), flatIndex));
  }

  // ---- reward head
  if (options.headMask) pooled = b.mul(pooled, options.headMask); //            [B,C]
  let rewards: Value; //                                                   [B,K]
  if (c.head === 'linear') {
    rewards = b.matmul(pooled, param('head.out.w'));
  } else {
    const hidden = b.op('Relu', [b.add(b.matmul(pooled, param('head.fc.w')), param('head.fc.b'))]); // [B,H']
    rewards = b.add(b.matmul(hidden, param('head.out.w')), param('head.out.b'));
  }
  return { rewards, ...(lmLogits ? { lmLogits } : {}), ...(hidden ? { hidden } : {}) };
}

/** An inverted-dropout mask [rows, width]: 0 with probability p, else 1/(1 − p); a pure function of the seed and step. */
export function dropoutMask(rows: number, width: number, p: number, seed: number, step: number): Float32Array {
  const rand = seededRandom((seed * 2654435761 + step * 40503 + 17) >>> 0);
  const keep = 1 / (1 - p);
  return Float32Array.from({ length: rows * width }, () => (rand() < p ? 0 : keep));
}

/** Where the response tokens of a batch are, for responseLogProbs (batch.ts's responseTokens builds them). */
export interface ResponseTokenInputs {
  /** int64 [N]: flat index b·T + t − 1 of the position whose logits predict response token t of row b */
  positions: Value;
  /** int64 [N]: that token's id */
  targets: Value;
  /** [R, N]: 1 where token n belongs to row r (the rows whose log π is wanted), else 0 */
  segments: Value;
}

/**
 * log π(y|x) per row: the sum of the log-probs the LM head gives each response token.
 * hidden [B,T,C] (after the final norm); lmWeight [V,C] (lmHeadWeight: tok_emb when tied);
 * returns [R].
 *
 * The head runs only at the N positions that predict a response token, packed into one [N, C]
 * matrix (not at every position of every row: prompts and padding are most of a batch, and the
 * [·,V] logits are the costliest part of the step); the per-row sums are one MatMul with the 0/1
 * segment matrix. The log-softmax at the targets is one TokenLogProb op (graph/ops/token-logprob.ts):
 * logits and a log-sum-exp forward, its own backward from them, instead of LogSoftmax and
 * GatherElements differentiated node by node.
 * Backward: TokenLogProb's rule, then Gather's scatter-add back into [B·T, C]; a tied tok_emb gets
 * this use's gradient added to the embedding's.
 */
export function responseLogProbs(b: GraphBuilder, hidden: Value, lmWeight: Value, tokens: ResponseTokenInputs): Value {
  const C = lmWeight.shape?.[1] as number;
  const h = b.gather(b.reshape(hidden, [-1, C]), tokens.positions); //                       [N,C]
  const tokenLogp = b.op('TokenLogProb', [h, lmWeight, tokens.targets]); //                    [N]
  return b.squeeze(b.matmul(tokens.segments, b.unsqueeze(tokenLogp, [1])), [1]); //              [R]
}

function dtypeArray(dtype: DType, values: number[]): Float32Array | Float64Array {
  return dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
}
