import { readSafetensors, toFloat32, writeSafetensors, type NamedTensor } from './safetensors.js';

/**
 * Trainer checkpoints as one safetensors file, so the weights inside can be read by any
 * safetensors tool and a resumed run continues bit-for-bit (float32 is stored exactly).
 *
 * Tensor names:  <param>              the parameter itself, under the model's own name
 *                adam_m.<param>       AdamW first moment (same shape)
 *                adam_v.<param>       AdamW second moment
 * Metadata:      format = "rmserve-checkpoint/1", step = optimizer steps taken,
 *                state = JSON of everything else a resume needs (model config, RNG state,
 *                data cursor, best validation metric ...), chosen by the trainer.
 */

export interface Param {
  shape: number[];
  data: Float32Array;
}

export interface TrainingCheckpoint {
  params: Map<string, Param>;
  /** AdamW moments by parameter name; absent for a weights-only checkpoint */
  adam?: { m: Map<string, Param>; v: Map<string, Param> };
  step: number;
  state: Record<string, unknown>;
}

const FORMAT = 'rmserve-checkpoint/1';
const M_PREFIX = 'adam_m.';
const V_PREFIX = 'adam_v.';

function asTensor(name: string, p: Param): NamedTensor {
  const n = p.shape.reduce((a, b) => a * b, 1);
  if (p.data.length !== n) throw new Error(`checkpoint: ${name} has shape ${JSON.stringify(p.shape)} but ${p.data.length} values`);
  return { dtype: 'F32', shape: p.shape, data: p.data };
}

export function saveCheckpoint(path: string, checkpoint: TrainingCheckpoint): void {
  if (!Number.isSafeInteger(checkpoint.step) || checkpoint.step < 0) throw new Error(`checkpoint: step must be a non-negative integer`);
  const tensors: Record<string, NamedTensor> = {};
  for (const [name, p] of checkpoint.params) {
    if (name.startsWith(M_PREFIX) || name.startsWith(V_PREFIX)) throw new Error(`checkpoint: parameter name ${name} clashes with the moment prefixes`);
    tensors[name] = asTensor(name, p);
  }
  if (checkpoint.adam !== undefined) {
    const { m, v } = checkpoint.adam;
    if (m.size !== checkpoint.params.size || v.size !== checkpoint.params.size) {
      throw new Error(`checkpoint: optimizer moments cover ${m.size}/${v.size} of ${checkpoint.params.size} parameters`);
    }
    for (const [kind, moments, prefix] of [['m', checkpoint.adam.m, M_PREFIX], ['v', checkpoint.adam.v, V_PREFIX]] as const) {
      for (const [name, p] of moments) {
        const param = checkpoint.params.get(name);
        if (param === undefined) throw new Error(`checkpoint: moment ${kind} for unknown parameter ${name}`);
        if (param.shape.join() !== p.shape.join()) throw new Error(`checkpoint: moment ${kind} of ${name} has shape ${JSON.stringify(p.shape)}, parameter ${JSON.stringify(param.shape)}`);
        tensors[prefix + name] = asTensor(prefix + name, p);
      }
    }
  }
  writeSafetensors(path, tensors, {
    format: FORMAT,
    step: String(checkpoint.step),
    state: JSON.stringify(checkpoint.state),
  });
}

/**
 * Reads a checkpoint written by saveCheckpoint. A plain safetensors file of weights (no rmserve
 * metadata) also loads, as step 0 with no moments, converted to float32 whatever its dtype.
 */
export function loadCheckpoint(path: string): TrainingCheckpoint {
  const { tensors, metadata } = readSafetensors(path);
  const params = new Map<string, Param>();
  const m = new Map<string, Param>();
  const v = new Map<string, Param>();
  for (const [name, t] of Object.entries(tensors)) {
    const p = { shape: t.shape, data: toFloat32(t) };
    if (name.startsWith(M_PREFIX)) m.set(name.slice(M_PREFIX.length), p);
    else if (name.startsWith(V_PREFIX)) v.set(name.slice(V_PREFIX.length), p);
    else params.set(name, p);
  }
  // Other writers' formats ("pt", "tf", ...) are plain weights; only a future version of ours is refused.
  if (metadata.format?.startsWith('rmserve-checkpoint/') && metadata.format !== FORMAT) {
    throw new Error(`${path}: checkpoint format ${metadata.format} is not ${FORMAT}`);
  }
  const step = metadata.step === undefined ? 0 : Number(metadata.step);
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`${path}: bad step ${JSON.stringify(metadata.step)} in metadata`);
  let state: Record<string, unknown> = {};
  if (metadata.state !== undefined) {
    const parsed: unknown = JSON.parse(metadata.state);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${path}: metadata state is not a JSON object`);
    state = parsed as Record<string, unknown>;
  }
  for (const [kind, moments] of [['m', m], ['v', v]] as const) {
    for (const name of moments.keys()) {
      if (!params.has(name)) throw new Error(`${path}: moment ${kind} for unknown parameter ${name}`);
    }
  }
  const hasMoments = m.size > 0 || v.size > 0;
  if (hasMoments && (m.size !== params.size || v.size !== params.size)) {
    throw new Error(`${path}: optimizer moments cover ${m.size}/${v.size} of ${params.size} parameters`);
  }
  return hasMoments ? { params, adam: { m, v }, step, state } : { params, step, state };
}
