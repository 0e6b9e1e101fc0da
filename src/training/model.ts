// GPT-2-style pre-LN decoder reward model, emitted as ONNX nodes through the GraphBuilder.
// One function builds the forward pass for both uses: the training step (parameters are graph
// inputs, so the step graph is built once and the weights stream through it) and the export
// (parameters are initializers). Same nodes in both, so the server scores what the trainer saw.
//
// Parameter names and layouts are the trainer's neutral ones from hf-gpt2.ts (tok_emb, pos_emb,
// blocks.{i}.attn.qkv.w, ...; every weight [in, out], y = x·w + b, the same layout as HF GPT-2's
// Conv1D), so loadHfGpt2() fills them directly and checkpoints use the same names.
//
// Shapes in comments: B batch, T sequence, C d_model, H heads, D = C/H, V vocab, K objectives.
import type { DType, GraphBuilder, Value } from './graph/builder.js';
import { mulberry32 } from './random.js';

export type HeadKind = 'linear' | 'mlp';

/** Opset of every graph the trainer builds (step, evaluation, export): 20 has the Gelu op. */
export const MODEL_OPSET = 20;
export type Activation = 'gelu_new' | 'gelu';

export interface RewardModelConfig {
  vocabSize: number;
  /** Learned position embeddings: the longest sequence the model takes (GPT-2's n_positions). */
  maxLength: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  /** MLP width; GPT-2 uses 4·d_model. */
  dMlp: number;
  /** K: one reward column per objective. */
  numObjectives: number;
  /** `linear`: Linear(C, K) without bias (HF's score head); `mlp`: GRM's Linear(C, H') → ReLU → Linear(H', K). */
  head: HeadKind;
  headHidden: number;
  /** GPT-2 uses the tanh approximation (`gelu_new`); `gelu` is the erf form. */
  activation: Activation;
  layerNormEps: number;
  initStd: number;
}

// maxLength has no default here: the trainer's is --max-length's (src/config/train.ts), and a
// second one (this used to say 512) could only disagree with it.
export function defaultModelConfig(overrides: Partial<RewardModelConfig> & Pick<RewardModelConfig, 'vocabSize' | 'maxLength'>): RewardModelConfig {
  const dModel = overrides.dModel ?? 256;
  return {
    dModel,
    nLayers: 4,
    nHeads: 4,
    dMlp: 4 * dModel,
    numObjectives: 1,
    head: 'linear',
    headHidden: 1024,
    activation: 'gelu_new',
    layerNormEps: 1e-5,
    initStd: 0.02,
    ...overrides,
  };
}

export function validateModelConfig(c: RewardModelConfig): void {
  const positive = ['vocabSize', 'maxLength', 'dModel', 'nLayers', 'nHeads', 'dMlp', 'numObjectives', 'headHidden'] as const;
  for (const key of positive) {
    if (!Number.isInteger(c[key]) || c[key] < 1) throw new RangeError(`model config ${key} must be a positive integer, got ${c[key]}`);
  }
  if (c.dModel % c.nHeads !== 0) throw new RangeError(`d_model ${c.dModel} is not divisible by heads ${c.nHeads}`);
}

export type ParamInit = 'normal' | 'residual' | 'zeros' | 'ones';

export interface ParamSpec {
  name: string;
  shape: number[];
  init: ParamInit;
  /** AdamW's decoupled weight decay applies (matrices only: not biases, LayerNorm or embeddings). */
  decay: boolean;
}

/** Every parameter, in a fixed order (the order of the step graph's inputs and of checkpoints). */
export function parameterSpecs(c: RewardModelConfig): ParamSpec[] {
  const C = c.dModel;
  const specs: ParamSpec[] = [
    { name: 'tok_emb', shape: [c.vocabSize, C], init: 'normal', decay: false },
    { name: 'pos_emb', shape: [c.maxLength, C], init: 'normal', decay: false },
  ];
  const ln = (prefix: string): ParamSpec[] => [
    { name: `${prefix}.g`, shape: [C], init: 'ones', decay: false },
    { name: `${prefix}.b`, shape: [C], init: 'zeros', decay: false },
  ];
  const dense = (prefix: string, nIn: number, nOut: number, init: ParamInit, bias = true): ParamSpec[] => [
    { name: `${prefix}.w`, shape: [nIn, nOut], init, decay: true },
    ...(bias ? [{ name: `${prefix}.b`, shape: [nOut], init: 'zeros' as const, decay: false }] : []),
  ];
  for (let i = 0; i < c.nLayers; i++) {
    const p = `blocks.${i}`;
    specs.push(
      ...ln(`${p}.ln1`),
      ...dense(`${p}.attn.qkv`, C, 3 * C, 'normal'),
      ...dense(`${p}.attn.proj`, C, C, 'residual'),
      ...ln(`${p}.ln2`),
      ...dense(`${p}.mlp.fc`, C, c.dMlp, 'normal'),
      ...dense(`${p}.mlp.proj`, c.dMlp, C, 'residual'),
    );
  }
  specs.push(...ln('ln_f'));
  if (c.head === 'linear') {
    // No bias: Bradley–Terry only sees reward differences (HF's score head has none either).
    specs.push(...dense('head.out', C, c.numObjectives, 'normal', false));
  } else {
    // GRM's head: Linear(C, H') → ReLU → Linear(H', K).
    specs.push(...dense('head.fc', C, c.headHidden, 'normal'), ...dense('head.out', c.headHidden, c.numObjectives, 'normal'));
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
 * Weights for `c` from a pretrained decoder (loadHfGpt2's params, same names and layouts): the
 * blocks are copied; position embeddings are cut to c.maxLength rows; the token table gets fresh
 * N(0, initStd) rows for token ids the checkpoint lacks (a tokenizer with added tokens); the
 * reward head, which no language model has, is initialised from the seed.
 */
export function initFromPretrained(
  c: RewardModelConfig, pretrained: ReadonlyMap<string, { shape: number[]; data: Float32Array }>, seed: number,
  options: { zeroHead?: boolean } = {},
): ModelWeights {
  const weights = initWeights(c, seed, options);
  for (const spec of parameterSpecs(c)) {
    if (spec.name.startsWith('head.')) continue;
    const p = pretrained.get(spec.name);
    if (p === undefined) throw new Error(`pretrained weights lack ${spec.name}`);
    const target = weights.get(spec.name) as Float32Array;
    const rowLength = spec.shape.slice(1).reduce((a, b) => a * b, 1);
    const sameTail = p.shape.length === spec.shape.length && p.shape.slice(1).every((d, i) => d === spec.shape[i + 1]);
    const rowsMayDiffer = spec.name === 'tok_emb' || spec.name === 'pos_emb';
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
  /** Also emit the tied LM head's logits over every position. */
  lmHead?: boolean;
  /**
   * Also emit the final-LayerNorm hidden states [B,T,C], from which responseLogProbs computes the
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
}

export interface ForwardResult {
  /** [B, K] reward of each sequence, read at its last real token. */
  rewards: Value;
  /** [B, T, V] next-token logits from the tied LM head, when asked for. */
  lmLogits?: Value;
  /** [B, T, C] hidden states after the final LayerNorm (the LM head's input), when asked for. */
  hidden?: Value;
}

/**
 * The forward pass. input_ids, attention_mask: int64 [B, T], right-padded (mask 1 on real tokens).
 * Rows never see padding: keys at padded positions get −1e4 before the softmax (never −inf, so
 * the padded query rows stay finite), and the reward is read at position sum(mask) − 1.
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
  const C = c.dModel;
  const H = c.nHeads;
  const D = C / H;
  const scalar = (x: number): Value => b.scalar(dtype, x);

  // Sizes known only at run time.
  const shape = b.shapeOf(inputIds); //                                   [2] = (B, T)
  // Symbolic names of B and T, so that build-time shapes stay exact where inference cannot see them.
  const Bdim = inputIds.shape?.[0] ?? 'batch';
  const Tdim = inputIds.shape?.[1] ?? 'seq';
  const B0 = b.op('Gather', [shape, b.scalar('int64', 0)], { axis: 0 }); //  scalar B
  const T0 = b.op('Gather', [shape, b.scalar('int64', 1)], { axis: 0 }); //  scalar T
  const T1 = b.unsqueeze(T0, [0]); //                                       [1] = (T)

  // ---- embeddings: x = tok_emb[ids] + pos_emb[0:T]
  const tok = b.gather(param('tok_emb'), inputIds); //                      [B,T,C]
  const positions = b.op('Range', [b.scalar('int64', 0), T0, b.scalar('int64', 1)], {}, { shape: [Tdim] }); // [T]
  const pos = b.gather(param('pos_emb'), positions); //                     [T,C]
  let x = b.add(tok, pos); //                                             [B,T,C]

  // ---- attention bias: causal (−1e4 above the diagonal) + padding (−1e4 on padded keys)
  const TT = b.op('Concat', [T1, T1], { axis: 0 }); //                     [2] = (T, T)
  const fill = b.op('ConstantOfShape', [TT], { value: { tensor: { dtype, dims: [1], data: dtypeArray(dtype, [-1e4]) } } }, { shape: [Tdim, Tdim] });
  const causal = b.op('Trilu', [fill, b.scalar('int64', 1)], { upper: 1 }, { shape: [Tdim, Tdim] }); // [T,T]
  const maskF = b.cast(attentionMask, dtype); //                           [B,T]
  const padBias = b.unsqueeze(b.mul(b.sub(scalar(1), maskF), scalar(-1e4)), [1, 2]); // [B,1,1,T]
  const attnBias = b.add(causal, padBias); //                              [B,1,T,T]

  const qScale = scalar(1 / Math.sqrt(D));
  for (let i = 0; i < c.nLayers; i++) {
    const L = `blocks.${i}`;
    // ---- causal self-attention
    const h = b.layerNorm(x, param(`${L}.ln1.g`), param(`${L}.ln1.b`), c.layerNormEps); // [B,T,C]
    const qkv = b.add(b.matmul(h, param(`${L}.attn.qkv.w`)), param(`${L}.attn.qkv.b`)); // [B,T,3C]
    // One Split (its gradient is one Concat) rather than three Slices (three Pads and a Sum).
    const parts = b.opMulti('Split', [qkv, b.ints([C, C, C])], 3, { axis: 2 }).map((t) => b.reshape(t, [0, 0, H, D])); // 3×[B,T,H,D]
    const q = b.transpose(b.mul(parts[0] as Value, qScale), [0, 2, 1, 3]); // [B,H,T,D]
    const kT = b.transpose(parts[1] as Value, [0, 2, 3, 1]); //              [B,H,D,T]
    const v = b.transpose(parts[2] as Value, [0, 2, 1, 3]); //               [B,H,T,D]
    const att = b.softmax(b.add(b.matmul(q, kT), attnBias), -1); //          [B,H,T,T]
    const y = b.reshape(b.transpose(b.matmul(att, v), [0, 2, 1, 3]), [0, 0, C]); // [B,T,C]
    x = b.add(x, b.add(b.matmul(y, param(`${L}.attn.proj.w`)), param(`${L}.attn.proj.b`)));

    // ---- MLP
    const h2 = b.layerNorm(x, param(`${L}.ln2.g`), param(`${L}.ln2.b`), c.layerNormEps);
    const u = b.add(b.matmul(h2, param(`${L}.mlp.fc.w`)), param(`${L}.mlp.fc.b`)); // [B,T,4C]
    const g = gelu(b, u, c.activation, dtype);
    x = b.add(x, b.add(b.matmul(g, param(`${L}.mlp.proj.w`)), param(`${L}.mlp.proj.b`)));
  }

  // ---- pool the last real token: flat index b·T + (Σ mask_b − 1) into x viewed as [B·T, C]
  const lastIndex = b.sub(b.reduceSum(attentionMask, [1], false), b.scalar('int64', 1)); // [B]
  const rowStart = b.mul(b.op('Range', [b.scalar('int64', 0), B0, b.scalar('int64', 1)], {}, { shape: [Bdim] }), T0); // [B]
  const flatIndex = b.add(rowStart, lastIndex); //                         [B]

  const lnF = (t: Value): Value => b.layerNorm(t, param('ln_f.g'), param('ln_f.b'), c.layerNormEps);
  let pooled: Value; //                                                    [B,C]
  let lmLogits: Value | undefined;
  let hidden: Value | undefined;
  if (options.lmHead || options.lmHidden) {
    const hf = lnF(x); //                                                  [B,T,C]
    if (options.lmHidden) hidden = hf;
    if (options.lmHead) lmLogits = b.matmul(hf, b.transpose(param('tok_emb'), [1, 0])); // [B,T,V]
    pooled = b.gather(b.reshape(hf, [-1, C]), flatIndex);
  } else {
    // LayerNorm is per token, so normalising only the pooled rows gives the same numbers.
    pooled = lnF(b.gather(b.reshape(x, [-1, C]), flatIndex));
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
 * log π(y|x) per row: the sum of the log-probs the tied LM head gives each response token.
 * hidden [B,T,C] (after the final LayerNorm); returns [R].
 *
 * The head runs only at the N positions that predict a response token, packed into one [N, C]
 * matrix (not at every position of every row: prompts and padding are most of a batch, and the
 * [·,V] logits and their LogSoftmax are the costliest part of the step); the per-row sums are one
 * MatMul with the 0/1 segment matrix.
 * Backward: MatMul's and LogSoftmax's rules, GatherElements' and Gather's scatter-adds back into
 * [B·T, C]; tok_emb gets this use's gradient added to the embedding's.
 */
export function responseLogProbs(b: GraphBuilder, hidden: Value, tokEmb: Value, tokens: ResponseTokenInputs): Value {
  const C = tokEmb.shape?.[1] as number;
  const h = b.gather(b.reshape(hidden, [-1, C]), tokens.positions); //                       [N,C]
  const logits = b.matmul(h, b.transpose(tokEmb, [1, 0])); //                                 [N,V]
  const target = b.unsqueeze(tokens.targets, [1]); //                                          [N,1]
  const tokenLogp = b.op('GatherElements', [b.logSoftmax(logits, -1), target], { axis: 1 }); // [N,1]
  return b.squeeze(b.matmul(tokens.segments, tokenLogp), [1]); //                              [R]
}

/**
 * GELU in the form the config names. From opset 20 it is one Gelu node (approximate='tanh' for
 * gelu_new), whose gradient rule is a single chain of elementwise nodes; before that it is spelled
 * out. Autodiff differentiates exactly what is emitted here.
 */
function gelu(b: GraphBuilder, u: Value, form: Activation, dtype: DType): Value {
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

function dtypeArray(dtype: DType, values: number[]): Float32Array | Float64Array {
  return dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
}
