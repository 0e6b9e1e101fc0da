// The trainer's Llama, Qwen2, Qwen3 and GPT-2 decoders against PyTorch. Each folder under
// test/fixtures/train is a tiny random Hugging Face checkpoint written by
// scripts/make-train-fixtures.py (plain torch after transformers' modeling code) with PyTorch's
// float32 rewards, Bradley–Terry loss, per-parameter gradients of that loss and response log-probs
// for one fixed batch of three right-padded pairs. Here each is loaded through --init-from's
// loader (pretrainedStart: names, transposes, fp16/bf16 widening, shards, the score layer's
// columns) and the trainer's own graphs are run on the same batch:
//   rewards within 1e-4, loss within 1e-5, every gradient within 1e-4 of its tensor's largest
//   entry, log π within 1e-4 relative. (Measured: about 1e-6 everywhere, the float32 rounding
//   PyTorch itself shows against float64, reference.json's max_abs_float32_vs_float64.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { LogProbForward, RewardForward, weightsToTensors } from '../src/training/evaluate.js';
import { hfParamTable, pretrainedStart, type CheckpointModel } from '../src/training/hf-checkpoint.js';
import { hfGpt2ParamTable } from '../src/training/hf-gpt2.js';
import { lossConfig } from '../src/training/losses.js';
import { defaultModelConfig, initFromPretrained, parameterSpecs, type LlamaFamilyConfig, type RewardModelConfig } from '../src/training/model.js';
import { readSafetensors, type NamedTensor } from '../src/training/safetensors.js';
import { buildLossGradGraph } from '../src/training/step.js';

const FIXTURES = 'test/fixtures/train';
const MAX_LENGTH = 64;

interface Reference {
  hf_class: string;
  objectives: string[];
  batch: { input_ids: number[][]; attention_mask: number[][]; response_starts: number[]; objective: number[]; pad_id: number };
  float32: { rewards: number[][]; loss: number; logp: number[] | null };
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

interface Loaded {
  ref: Reference;
  refTensors: Record<string, NamedTensor>;
  config: RewardModelConfig;
  weights: Map<string, Float32Array>;
  /** the trainer's objectives (sorted, as runTraining orders them) and where each fixture label's column went */
  objectives: string[];
  column: (label: number) => number;
  /** our parameter → PyTorch's gradient of it in our layout */
  refGrad: (name: string) => Float32Array | undefined;
}

function load(name: string, needsLmHead: boolean): Loaded {
  const dir = join(FIXTURES, name);
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as Reference;
  const refTensors = readSafetensors(join(dir, 'reference.safetensors')).tensors;
  // runTraining sorts objective names: for the two-label Qwen2 fixture that is the reverse of
  // id2label, so the score layer's columns must be reordered by name.
  const objectives = [...ref.objectives].sort();
  const start = pretrainedStart(dir, { vocabSize: 300, maxLength: MAX_LENGTH, needsLmHead, objectives, head: 'linear', log: () => {} });
  const config = defaultModelConfig({ ...start.sizes, maxLength: MAX_LENGTH, numObjectives: objectives.length, head: 'linear' });
  const weights = initFromPretrained(config, start.params, 1);
  const C = config.dModel;
  const K = objectives.length;
  const column = (label: number): number => objectives.indexOf(ref.objectives[label]!);
  // A *ForCausalLM has no reward head of its own: use the one PyTorch used.
  const head = refTensors['reward_head.weight'];
  if (head) {
    const w = transpose(head.data as Float32Array, K, C); // [C, K] in the fixture's label order
    const ours = new Float32Array(C * K);
    for (let r = 0; r < C; r++) for (let k = 0; k < K; k++) ours[r * K + column(k)] = w[r * K + k]!;
    weights.set('head.out.w', ours);
  }

  const byOurName = new Map<string, { key: string; transpose: boolean; shape: number[] }>();
  if (config.arch === 'gpt2') {
    const g = { dModel: C, nLayers: config.nLayers, nHeads: config.nHeads, maxPositions: MAX_LENGTH, vocabSize: config.vocabSize, dFF: config.dMlp, layerNormEpsilon: 1e-5, activation: 'gelu_new' };
    for (const e of hfGpt2ParamTable(g)) byOurName.set(e.name, { key: `grad.transformer.${e.hfName}`, transpose: false, shape: e.shape });
  } else {
    for (const e of hfParamTable(start.sizes as CheckpointModel & { llama: LlamaFamilyConfig })) {
      byOurName.set(e.name, { key: e.name === 'lm_head' ? 'grad.lm_head.weight' : `grad.model.${e.hfName}`, transpose: e.transpose, shape: e.shape });
    }
  }
  const refGrad = (ours: string): Float32Array | undefined => {
    if (ours === 'head.out.w') {
      const t = refTensors['grad.score.weight'] ?? refTensors['grad.reward_head.weight'];
      const w = transpose(t!.data as Float32Array, K, C);
      const out = new Float32Array(C * K);
      for (let r = 0; r < C; r++) for (let k = 0; k < K; k++) out[r * K + column(k)] = w[r * K + k]!;
      return out;
    }
    const e = byOurName.get(ours);
    if (!e) return undefined;
    const t = refTensors[e.key];
    assert.ok(t, `reference has ${e.key}`);
    const data = t.data as Float32Array;
    return e.transpose ? transpose(data, e.shape[1]!, e.shape[0]!) : data;
  };
  return { ref, refTensors, config, weights, objectives, column, refGrad };
}

function rows(ref: Reference): number[][] {
  return ref.batch.input_ids.map((row, r) => row.slice(0, ref.batch.attention_mask[r]!.reduce((a, b) => a + b, 0)));
}

const NAMES = ['llama', 'llama-bias', 'qwen2', 'qwen3', 'gpt2'];

for (const name of NAMES) {
  test(`${name}: forward rewards, BT loss and every gradient match PyTorch`, async (t) => {
    const { ref, config, weights, objectives, column, refGrad } = load(name, false);
    const K = objectives.length;

    // ---- forward rewards, through the evaluation graph (what scorePairs and the export run)
    const forward = await RewardForward.create(config);
    const rewards = await forward.score(weightsToTensors(config, weights), rows(ref), ref.batch.pad_id);
    await forward.release();
    let rewardErr = 0;
    ref.float32.rewards.forEach((want, r) => want.forEach((v, k) => { rewardErr = Math.max(rewardErr, Math.abs(rewards[r]![column(k)]! - v)); }));
    assert.ok(rewardErr <= 1e-4, `rewards differ from PyTorch by ${rewardErr}`);

    // ---- the BT loss and its gradient, through the step's loss graph
    const session = await ort.InferenceSession.create(buildLossGradGraph(config, lossConfig({ method: 'bt', margin: false, centering: 0 }), 'float32'));
    const B = ref.batch.input_ids.length;
    const T = ref.batch.input_ids[0]!.length;
    const P = B / 2;
    const objective = new Float32Array(P * K);
    ref.batch.objective.forEach((label, i) => { objective[i * K + column(label)] = 1; });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ref.batch.input_ids.flat(), BigInt), [B, T]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(ref.batch.attention_mask.flat(), BigInt), [B, T]),
      margin: new ort.Tensor('float32', new Float32Array(P), [P]),
      objective: new ort.Tensor('float32', objective, [P, K]),
    };
    for (const [k, v] of weightsToTensors(config, weights)) feeds[k] = v;
    const out = await session.run(feeds);
    await session.release();
    const loss = (out.loss!.data as Float32Array)[0]!;
    const lossErr = Math.abs(loss - ref.float32.loss);
    assert.ok(lossErr <= 1e-5, `loss ${loss} vs PyTorch ${ref.float32.loss}`);

    let worst = { name: '', rel: 0 };
    let compared = 0;
    for (const spec of parameterSpecs(config)) {
      const want = refGrad(spec.name);
      assert.ok(want, `PyTorch has a gradient for ${spec.name}`);
      const got = out[`grad.${spec.name}`]!.data as Float32Array;
      assert.equal(got.length, want.length, `${spec.name}: gradient size`);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]!));
        diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
      }
      // GPT-2's ln_f.b cannot move a reward difference under a bias-free head (it shifts both
      // rewards alike): its gradient is 0 up to rounding on both sides, hence the 1e-7 floor.
      assert.ok(diff <= 1e-4 * scale + 1e-7, `${spec.name}: gradient differs from PyTorch by ${diff} (${(diff / scale).toExponential(2)} of its largest entry ${scale})`);
      if (scale > 1e-6 && diff / scale > worst.rel) worst = { name: spec.name, rel: diff / scale };
      compared++;
    }
    t.diagnostic(`${ref.hf_class}: rewards max |Δ| ${rewardErr.toExponential(2)}, loss |Δ| ${lossErr.toExponential(2)}, ` +
      `${compared} gradients, worst relative ${worst.rel.toExponential(2)} (${worst.name})`);
  });
}

for (const name of NAMES.filter((n) => n !== 'llama-bias')) {
  test(`${name}: response log-probs through the LM head match PyTorch`, async (t) => {
    const { ref, config, weights } = load(name, true);
    assert.ok(ref.float32.logp);
    const forward = await LogProbForward.create(config);
    const logp = await forward.logProbs(weightsToTensors(config, weights), rows(ref), ref.batch.response_starts, ref.batch.pad_id);
    await forward.release();
    let worst = 0;
    ref.float32.logp.forEach((v, r) => {
      const err = Math.abs(logp[r]! - v) / Math.max(1, Math.abs(v));
      worst = Math.max(worst, err);
      assert.ok(err <= 1e-4, `row ${r}: log π ${logp[r]} vs PyTorch ${v}`);
    });
    t.diagnostic(`${name} (${config.llama?.lmHead ?? 'tied'} LM head): log π worst relative ${worst.toExponential(2)}`);
  });
}
