// LoRA (Hu et al., 2021) with PEFT's semantics: a targeted linear layer y = x·W + b becomes
//
//   y = x·W + b + (α/r)·(x·A)·B        A [in, r], B [r, out]  (this trainer's [in, out] layout)
//
// which is PEFT's `base_layer(x) + lora_B(lora_A(x)) * scaling` with lora_A.weight = Aᵀ [r, in] and
// lora_B.weight = Bᵀ [out, r]. A starts kaiming-uniform as PEFT's reset_lora_parameters draws it
// (kaiming_uniform_(a=√5) on [r, in]: U(−1/√in, 1/√in)), B at zero, so step 0 scores exactly as the
// base model. The reward head stays fully trainable, as PEFT's `modules_to_save` keeps the `score`
// layer of a *ForSequenceClassification model; everything else is frozen.
//
// Frozen weights live inside the step graph as initializers (declareLoraParams): only the adapters,
// the head and their AdamW moments are graph inputs and outputs, so a step moves those few tensors
// between the host and ORT rather than the whole model, and autodiff emits no gradient for a frozen
// weight (it differentiates only towards graph inputs that are trained: backward through x·W
// computes dx = dy·Wᵀ, never the [in, out] dW). The export merges the adapters into W
// (mergeAdapters), so the exported model.onnx is a plain model the server loads.
//
// Shapes: in, out the layer's sizes, r the rank, B·T the batch's tokens.
import type { GraphBuilder, DType, Value } from './graph/builder.js';
import { denseLayer, type LinearLayer } from './arch/layers.js';
import { isLlamaFamily } from './arch/index.js';
import { archOf, parameterSpecs, seededRandom, type ModelWeights, type ParamSpec, type RewardModelConfig } from './model.js';

/** LoRA as the options give it (--lora-rank, --lora-alpha, --lora-targets); rank 0 = off. */
export interface LoraOptions {
  rank: number;
  /** default 2·rank */
  alpha?: number;
  /** default: PEFT's for the architecture (DEFAULT_TARGETS) */
  targets?: string[];
}

/** LoRA with every default filled in: what the graphs, the checkpoint check and the manifest record. */
export interface LoraSettings {
  rank: number;
  alpha: number;
  /** target names as given (or defaulted), e.g. ["q", "v"] */
  targets: string[];
}

/** What a LoRA graph needs beyond the settings: the frozen base weights it holds as initializers. */
export interface LoraGraph {
  settings: LoraSettings;
  /** every parameter of the model (the head's are not read: the head is trained) */
  base: ModelWeights;
}

/**
 * Target names per architecture family and the trainer's linear layers they adapt (the part of
 * `blocks.{i}.<layer>` after the block). PEFT matches a target against the end of a module's name:
 * GPT-2's `c_proj` is both the attention output and the MLP's down projection, `attn.c_proj` only
 * the first. The Llama family takes transformers' names with or without `_proj`. `all-linear`
 * is PEFT's shorthand for every linear layer but the output head.
 */
const TARGETS: Readonly<Record<'gpt2' | 'llama', Readonly<Record<string, readonly string[]>>>> = {
  gpt2: {
    c_attn: ['attn.qkv'], c_proj: ['attn.proj', 'mlp.proj'], 'attn.c_proj': ['attn.proj'], 'mlp.c_proj': ['mlp.proj'], c_fc: ['mlp.fc'],
    'all-linear': ['attn.qkv', 'attn.proj', 'mlp.fc', 'mlp.proj'],
  },
  llama: {
    q: ['attn.q'], k: ['attn.k'], v: ['attn.v'], o: ['attn.o'], gate: ['mlp.gate'], up: ['mlp.up'], down: ['mlp.down'],
    q_proj: ['attn.q'], k_proj: ['attn.k'], v_proj: ['attn.v'], o_proj: ['attn.o'], gate_proj: ['mlp.gate'], up_proj: ['mlp.up'], down_proj: ['mlp.down'],
    'all-linear': ['attn.q', 'attn.k', 'attn.v', 'attn.o', 'mlp.gate', 'mlp.up', 'mlp.down'],
  },
};

/** PEFT's defaults (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING): the query and value projections. */
export const DEFAULT_TARGETS: Readonly<Record<'gpt2' | 'llama', readonly string[]>> = { gpt2: ['c_attn'], llama: ['q', 'v'] };

function family(c: RewardModelConfig): 'gpt2' | 'llama' {
  return isLlamaFamily(archOf(c)) ? 'llama' : 'gpt2';
}

/** The settings of a run, or undefined when --lora-rank is 0; refuses alpha/targets without a rank and unknown targets. */
export function resolveLora(c: RewardModelConfig, o: LoraOptions | undefined): LoraSettings | undefined {
  if (o === undefined || o.rank === 0) {
    if (o?.alpha !== undefined || o?.targets !== undefined) throw new Error('--lora-alpha and --lora-targets need --lora-rank > 0');
    return undefined;
  }
  if (!Number.isInteger(o.rank) || o.rank < 1) throw new RangeError(`--lora-rank must be a non-negative integer, got ${o.rank}`);
  const fam = family(c);
  const targets = o.targets ?? [...DEFAULT_TARGETS[fam]];
  const known = TARGETS[fam];
  const unknown = targets.filter((t) => !Object.hasOwn(known, t));
  if (unknown.length > 0 || targets.length === 0) {
    throw new Error(`--lora-targets ${targets.join(',') || '(none)'}: a ${archOf(c)} model's linear layers are ${Object.keys(known).join(', ')}`);
  }
  return { rank: o.rank, alpha: o.alpha ?? 2 * o.rank, targets };
}

/** PEFT's scaling α/r (not rsLoRA's α/√r). */
export function loraScale(s: LoraSettings): number {
  return s.alpha / s.rank;
}

/** One adapted layer: `blocks.{i}.attn.q` and its sizes. */
export interface AdaptedLayer {
  name: string;
  nIn: number;
  nOut: number;
}

/** The layers the targets adapt, in the model's parameter order (so the adapters' order is fixed). */
export function adaptedLayers(c: RewardModelConfig, s: LoraSettings): AdaptedLayer[] {
  const suffixes = new Set(s.targets.flatMap((t) => TARGETS[family(c)][t] ?? []));
  return parameterSpecs(c).flatMap((spec) => {
    const m = /^(blocks\.\d+)\.(.+)\.w$/.exec(spec.name);
    if (m === null || !suffixes.has(m[2] as string)) return [];
    return [{ name: `${m[1]}.${m[2]}`, nIn: spec.shape[0] as number, nOut: spec.shape[1] as number }];
  });
}

/** The reward head: trained whole, like PEFT's modules_to_save = ["score"]. */
export function isHeadParam(name: string): boolean {
  return name.startsWith('head.');
}

/**
 * What a LoRA run trains, in the step graph's input order: per adapted layer `<layer>.lora_A`
 * [in, r] and `<layer>.lora_B` [r, out], then the head's parameters. Both adapter matrices are
 * decayed (rank 2), as transformers' Trainer decays every non-bias, non-norm parameter. `init`
 * only says what ParamSpec can say: initialAdapters draws A kaiming-uniform.
 */
export function trainableSpecs(c: RewardModelConfig, s: LoraSettings): ParamSpec[] {
  const adapters = adaptedLayers(c, s).flatMap((l): ParamSpec[] => [
    { name: `${l.name}.lora_A`, shape: [l.nIn, s.rank], init: 'normal', decay: true },
    { name: `${l.name}.lora_B`, shape: [s.rank, l.nOut], init: 'zeros', decay: true },
  ]);
  return [...adapters, ...parameterSpecs(c).filter((spec) => isHeadParam(spec.name))];
}

/**
 * The trained tensors at step 0: A ~ U(−1/√in, 1/√in) from a stream of its own (seeded from
 * `seed`, so the base's init and the batch order do not shift with LoRA), B = 0, and the head as
 * `init` has it (fresh, zero for HaF-RM, or a checkpoint's score layer).
 */
export function initialTrainable(c: RewardModelConfig, s: LoraSettings, init: ModelWeights, seed: number): ModelWeights {
  const rand = seededRandom((seed * 2654435761 + 0x4c6f5241) >>> 0); // 0x4c6f5241: "LoRA"
  const out: ModelWeights = new Map();
  for (const spec of trainableSpecs(c, s)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if (isHeadParam(spec.name)) {
      const head = init.get(spec.name);
      if (head === undefined) throw new Error(`initial weights lack ${spec.name}`);
      out.set(spec.name, head.slice());
    } else if (spec.name.endsWith('.lora_A')) {
      const bound = 1 / Math.sqrt(spec.shape[0] as number); // fan_in of lora_A.weight [r, in] is in
      out.set(spec.name, Float32Array.from({ length: n }, () => (2 * rand() - 1) * bound));
    } else {
      out.set(spec.name, new Float32Array(n));
    }
  }
  return out;
}

/**
 * BlockContext.linear of a LoRA graph: the frozen layer, plus (α/r)·(x·A)·B on the adapted ones.
 * The scale multiplies the rank-r intermediate [..., r] rather than the [..., out] result: the
 * same product, r/out as many multiplications.
 */
export function loraLinear(c: RewardModelConfig, s: LoraSettings): LinearLayer {
  const adapted = new Set(adaptedLayers(c, s).map((l) => l.name));
  const scale = loraScale(s);
  return (b, param, x, name, bias) => {
    const base = denseLayer(b, param, x, name, bias); //                    [..., out]  x·W + b, W frozen
    if (!adapted.has(name)) return base;
    const down = b.matmul(x, param(`${name}.lora_A`)); //                   [..., r]
    const up = b.matmul(b.mul(down, b.scalar(x.dtype, scale)), param(`${name}.lora_B`)); // [..., out]
    return b.add(base, up);
  };
}

/**
 * The parameters of a LoRA graph: the trained ones (trainableSpecs) as graph inputs, every other
 * parameter of the model as an initializer holding the base weight. Returns them by name and the
 * trained ones' specs (what gradients and AdamW run over).
 */
export function declareLoraParams(b: GraphBuilder, c: RewardModelConfig, lora: LoraGraph, dtype: DType): { params: Map<string, Value>; trainable: ParamSpec[] } {
  const trainable = trainableSpecs(c, lora.settings);
  const trained = new Set(trainable.map((s) => s.name));
  const params = new Map<string, Value>();
  for (const spec of parameterSpecs(c)) {
    if (trained.has(spec.name)) continue;
    const data = lora.base.get(spec.name);
    if (data === undefined) throw new Error(`base weights lack ${spec.name}`);
    params.set(spec.name, b.initializer(spec.name, dtype, spec.shape, dtype === 'float64' ? Float64Array.from(data) : data));
  }
  for (const spec of trainable) params.set(spec.name, b.input(spec.name, dtype, spec.shape));
  return { params, trainable };
}

/**
 * The plain model the adapters stand for: W' = W + (α/r)·A·B on every adapted layer (in float64,
 * rounded once to float32), the trained head, and every other weight the base's own array. What
 * the export writes and the evaluation after training scores.
 */
export function mergeAdapters(c: RewardModelConfig, s: LoraSettings, base: ModelWeights, trained: ModelWeights): ModelWeights {
  const scale = loraScale(s);
  const r = s.rank;
  const merged: ModelWeights = new Map();
  for (const spec of parameterSpecs(c)) {
    const source = isHeadParam(spec.name) ? trained : base;
    const data = source.get(spec.name);
    if (data === undefined) throw new Error(`${isHeadParam(spec.name) ? 'trained' : 'base'} weights lack ${spec.name}`);
    merged.set(spec.name, data);
  }
  for (const layer of adaptedLayers(c, s)) {
    const A = trained.get(`${layer.name}.lora_A`); //                        [in, r]
    const B = trained.get(`${layer.name}.lora_B`); //                        [r, out]
    const W = base.get(`${layer.name}.w`) as Float32Array; //                [in, out]
    if (A === undefined || B === undefined) throw new Error(`trained weights lack the adapters of ${layer.name}`);
    const out = new Float32Array(W.length);
    const row = new Float64Array(layer.nOut);
    for (let i = 0; i < layer.nIn; i++) {
      row.fill(0);
      for (let k = 0; k < r; k++) {
        const a = (A[i * r + k] as number) * scale;
        if (a === 0) continue;
        for (let j = 0; j < layer.nOut; j++) row[j] = (row[j] as number) + a * (B[k * layer.nOut + j] as number);
      }
      for (let j = 0; j < layer.nOut; j++) out[i * layer.nOut + j] = (W[i * layer.nOut + j] as number) + (row[j] as number);
    }
    merged.set(`${layer.name}.w`, out);
  }
  return merged;
}

/** Trained and total parameter counts, for the log line. */
export function loraSummary(c: RewardModelConfig, s: LoraSettings): string {
  const count = (specs: ParamSpec[]): number => specs.reduce((n, spec) => n + spec.shape.reduce((a, b) => a * b, 1), 0);
  const layers = adaptedLayers(c, s);
  const trained = count(trainableSpecs(c, s));
  const total = count(parameterSpecs(c));
  return `LoRA: rank ${s.rank}, alpha ${s.alpha} (scale ${loraScale(s)}) on ${s.targets.join(', ')} (${layers.length} layers); ` +
    `training ${trained.toLocaleString('en')} parameters (adapters and the reward head) of ${total.toLocaleString('en')}, the rest frozen in the step graph`;
}
