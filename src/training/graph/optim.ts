// AdamW inside the step graph: global-norm gradient clipping, decoupled weight decay, bias
// corrections from the step input, and an optional warmup + cosine learning-rate schedule also
// computed in the graph. Parameters and moments come in as graph inputs and go out as outputs, so
// one session.run does forward, backward and update.
//
// Per parameter (PyTorch torch.optim.AdamW semantics, t = 1 on the first step):
//   g ← g · min(1, max_norm / (‖g‖₂,global + 1e-6))          (clip, when max_norm > 0)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − lr·( m̂ / (√v̂ + ε) + wd·p ),  m̂ = m/(1 − β1ᵗ),  v̂ = v/(1 − β2ᵗ)   (wd = 0 where decay is off)
import type { DType, GraphBuilder, Value } from './builder.js';

export interface AdamWOptions {
  /** default 0.9 */
  beta1?: number;
  /** default 0.999 */
  beta2?: number;
  /** default 1e-8 */
  eps?: number;
  /** decoupled weight decay, applied to params whose `decay` flag is set; default 0.01 */
  weightDecay?: number;
  /** clip the gradients to this global L2 norm first; 0 or undefined = no clipping */
  maxGradNorm?: number;
}

export interface ParamState {
  /** current parameter value [any shape] */
  param: Value;
  /** its gradient, same shape */
  grad: Value;
  /** first moment in, same shape */
  m: Value;
  /** second moment in, same shape */
  v: Value;
  /** apply weight decay (by convention off for biases, LayerNorm and embeddings) */
  decay: boolean;
}

export interface ParamUpdate {
  param: Value;
  m: Value;
  v: Value;
}

export interface AdamWResult {
  /** updated values, in the order of the states passed in */
  updates: ParamUpdate[];
  /** global L2 norm of the gradients before clipping, scalar */
  gradNorm: Value;
}

/**
 * Emits one AdamW update for every param. `lr` is a scalar of the params' dtype; `step` is the
 * 1-based step number as a scalar (int64 or float).
 */
export function adamW(b: GraphBuilder, states: ParamState[], lr: Value, step: Value, options: AdamWOptions = {}): AdamWResult {
  if (states.length === 0) throw new Error('adamW: no parameters');
  const beta1 = options.beta1 ?? 0.9;
  const beta2 = options.beta2 ?? 0.999;
  const eps = options.eps ?? 1e-8;
  const wd = options.weightDecay ?? 0.01;
  const dtype = states[0]!.param.dtype;
  const c = (v: number): Value => b.scalar(dtype, v);

  // ‖g‖ over every parameter: √Σ_p Σ g_p²
  const squares = states.map((s) => b.op('ReduceSumSquare', [s.grad], { keepdims: 0 }, { shape: [] }));
  const gradNorm = b.op('Sqrt', [squares.length === 1 ? squares[0]! : b.op('Sum', squares, {}, { shape: [] })]);
  let clip: Value | null = null;
  if (options.maxGradNorm && options.maxGradNorm > 0) {
    clip = b.op('Min', [c(1), b.div(c(options.maxGradNorm), b.add(gradNorm, c(1e-6)))]);
  }

  // scalars shared by every param: lr/(1 − β1ᵗ), 1 − β2ᵗ, 1 − lr·wd
  const t = b.cast(step, dtype);
  const bc1 = b.sub(c(1), b.op('Pow', [c(beta1), t]));
  const bc2 = b.sub(c(1), b.op('Pow', [c(beta2), t]));
  const stepSize = b.div(lr, bc1);
  const keep = b.sub(c(1), b.mul(lr, c(wd)));

  const updates = states.map((s): ParamUpdate => {
    if (s.param.dtype !== dtype) throw new Error(`adamW: ${s.param.name} is ${s.param.dtype}, others ${dtype}`);
    const g = clip ? b.mul(s.grad, clip) : s.grad;
    const m = b.add(b.mul(s.m, c(beta1)), b.mul(g, c(1 - beta1)));
    const v = b.add(b.mul(s.v, c(beta2)), b.mul(b.mul(g, g), c(1 - beta2)));
    const denom = b.add(b.op('Sqrt', [b.div(v, bc2)]), c(eps));
    const delta = b.mul(b.div(m, denom), stepSize);
    const decayed = s.decay && wd !== 0 ? b.mul(s.param, keep) : s.param;
    return { param: b.sub(decayed, delta), m, v };
  });
  return { updates, gradNorm };
}

export interface LrSchedule {
  peakLr: number;
  /** linear warmup over this many steps (0 = none) */
  warmupSteps: number;
  /** cosine decay ends here; lr stays at minLr after */
  totalSteps: number;
  /** default 0 */
  minLr?: number;
}

/**
 * Learning rate at 1-based step t: peak·t/warmup while t < warmup, then cosine from peak to minLr
 * over the remaining steps, minLr after totalSteps.
 */
export function lrAt(t: number, s: LrSchedule): number {
  const minLr = s.minLr ?? 0;
  if (t < s.warmupSteps) return (s.peakLr * t) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, Math.max(0, (t - s.warmupSteps) / span));
  return minLr + 0.5 * (s.peakLr - minLr) * (1 + Math.cos(Math.PI * progress));
}

/** lrAt() as graph nodes, from the step input; a scalar of `dtype`. */
export function lrScheduleNode(b: GraphBuilder, step: Value, s: LrSchedule, dtype: DType = 'float32'): Value {
  const c = (v: number): Value => b.scalar(dtype, v);
  const minLr = s.minLr ?? 0;
  const t = b.cast(step, dtype);
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = b.op('Clip', [b.div(b.sub(t, c(s.warmupSteps)), c(span)), c(0), c(1)]);
  const cosine = b.add(c(minLr), b.mul(c(0.5 * (s.peakLr - minLr)), b.add(c(1), b.op('Cos', [b.mul(progress, c(Math.PI))]))));
  if (s.warmupSteps <= 0) return cosine;
  const warm = b.mul(t, c(s.peakLr / s.warmupSteps));
  return b.op('Where', [b.op('Less', [t, c(s.warmupSteps)]), warm, cosine]);
}

/** The usual no-decay rule: biases and LayerNorm gains (rank < 2) and embedding tables. */
export function decayByConvention(name: string, rank: number): boolean {
  return rank >= 2 && !/(^|[._])(wte|wpe|embed|embedding|embeddings)([._]|$)/i.test(name);
}

export interface OptimizerStepOptions extends AdamWOptions {
  /** compute lr from the step in the graph; otherwise lr is a graph input named `lr` */
  schedule?: LrSchedule;
}

export interface OptimizerStepIO {
  /** int64 scalar input `step` (1-based) */
  step: Value;
  /** the lr used this step (the `lr` input, or the schedule's value); also a graph output `lr` */
  lr: Value;
  /** input names per param: moments `adam_m.<name>`, `adam_v.<name>` */
  moments: Map<string, { m: Value; v: Value }>;
  /** output names per param: `<name>.next`, `adam_m.<name>.next`, `adam_v.<name>.next` */
  next: Map<string, ParamUpdate>;
  /** graph output `grad_norm` (before clipping) */
  gradNorm: Value;
}

/**
 * Wires a whole optimizer step into `b`: creates the `step` (and `lr`) inputs and the moment
 * inputs, runs adamW, and declares every updated tensor as a graph output with the names in
 * OptimizerStepIO. `params` are graph inputs; `grads` as returned by gradients().
 */
export function addOptimizerStep(
  b: GraphBuilder, params: { value: Value; decay: boolean }[], grads: Map<string, Value>,
  options: OptimizerStepOptions = {},
): OptimizerStepIO {
  const dtype = params[0]?.value.dtype ?? 'float32';
  const step = b.input('step', 'int64', []);
  const lrIn = options.schedule ? lrScheduleNode(b, step, options.schedule, dtype) : b.input('lr', dtype, []);
  const moments = new Map<string, { m: Value; v: Value }>();
  const states = params.map(({ value, decay }): ParamState => {
    const shape = value.shape;
    if (!shape) throw new Error(`addOptimizerStep: ${value.name} needs a known shape`);
    const m = b.input(`adam_m.${value.name}`, value.dtype, shape);
    const v = b.input(`adam_v.${value.name}`, value.dtype, shape);
    moments.set(value.name, { m, v });
    const grad = grads.get(value.name);
    if (!grad) throw new Error(`addOptimizerStep: no gradient for ${value.name}`);
    return { param: value, grad, m, v, decay };
  });
  const { updates, gradNorm } = adamW(b, states, lrIn, step, options);
  const next = new Map<string, ParamUpdate>();
  params.forEach(({ value }, i) => {
    const u = updates[i]!;
    b.output(u.param, `${value.name}.next`);
    b.output(u.m, `adam_m.${value.name}.next`);
    b.output(u.v, `adam_v.${value.name}.next`);
    next.set(value.name, u);
  });
  b.output(gradNorm, 'grad_norm');
  b.output(lrIn, 'lr_used');
  return { step, lr: lrIn, moments, next, gradNorm };
}
