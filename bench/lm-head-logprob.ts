// A HaF-RM training step (forward, loss, backward, AdamW) with the LM-head log-probs built two
// ways on the same model and batch: `fused`, the trainer's (TokenLogProb, graph/ops/token-logprob.ts),
// and `composition`, the MatMul → LogSoftmax → GatherElements chain it replaced
// (test/helpers/logprob-composition.ts). Each variant runs in its own child process, so that its
// peak RSS (getrusage's maxrss: the ORT arena and the graph's intermediate tensors) is its own;
// the children alternate (composition, fused, composition, fused, …) so both see the same load.
// With one ORT thread the process's CPU time per step (user + system) is also reported: on a
// machine other jobs share, it moves much less than the wall time does.
//   node --import tsx bench/lm-head-logprob.ts [--part step|lm-head --d-model 256 --layers 4 --heads 4 --seq 128 --pairs 16 --vocab 8192 --steps 5 --repeats 2 --threads 1]
// Every row's second half is its response: N = 2P·(T/2) tokens through the LM head. `--part lm-head`
// times the LM head alone: h [N,C], W [V,C] → Σ log π and its gradients for h and W, nothing else.
import * as ort from 'onnxruntime-node';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gradients } from '../src/training/graph/autodiff.js';
import { GraphBuilder, type Value } from '../src/training/graph/builder.js';
import { addOptimizerStep } from '../src/training/graph/optim.js';
import { lossConfig, lossNeeds } from '../src/training/losses.js';
import { makeStepBatch, type TrainExample } from '../src/training/loop.js';
import { weightsToTensors } from '../src/training/evaluate.js';
import { MODEL_OPSET, declareParamInputs, defaultModelConfig, initWeights, parameterCount, parameterSpecs, seededRandom } from '../src/training/model.js';
import { buildStepGraph, zeroMoments, type StepGraphOptions } from '../src/training/step.js';
import { compositionPairLoss } from '../test/helpers/logprob-composition.js';

const { values } = parseArgs({
  options: {
    'd-model': { type: 'string', default: '256' }, layers: { type: 'string', default: '4' }, heads: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' }, pairs: { type: 'string', default: '16' }, vocab: { type: 'string', default: '8192' },
    steps: { type: 'string', default: '5' }, repeats: { type: 'string', default: '2' }, threads: { type: 'string', default: '1' },
    variant: { type: 'string' }, part: { type: 'string', default: 'step' },
  },
});
const C = Number(values['d-model']), L = Number(values.layers), H = Number(values.heads), T = Number(values.seq);
const P = Number(values.pairs), V = Number(values.vocab), steps = Number(values.steps), threads = Number(values.threads);
type Variant = 'fused' | 'composition';

interface ChildResult { variant: Variant; step_seconds: number[]; cpu_seconds: number[]; max_rss_mb: number; rss_before_session_mb: number }

const config = defaultModelConfig({ vocabSize: V, dModel: C, nLayers: L, nHeads: H, maxLength: T });
const loss = lossConfig({ method: 'haf' });
const options: StepGraphOptions = {
  config, loss, optimizer: { weightDecay: 0.01, maxGradNorm: 1 }, schedule: { peakLr: 1e-4, warmupSteps: 0, totalSteps: 1000 },
};

/** buildStepGraph with the old log-probs: same inputs, loss, backward and AdamW otherwise. */
function compositionStepGraph(): Uint8Array {
  const b = new GraphBuilder('reward_train_step_composition', { opset: MODEL_OPSET });
  const params = declareParamInputs(b, config);
  const total = compositionPairLoss(b, config, params, loss, 'float32');
  const specs = parameterSpecs(config);
  const grads = gradients(b, total, specs.map((s) => params.get(s.name) as Value));
  addOptimizerStep(b, specs.map((s) => ({ value: params.get(s.name) as Value, decay: s.decay })), grads, { ...options.optimizer, schedule: options.schedule });
  b.output(total, 'loss');
  return b.toModelProto();
}

/** The LM head alone: Σ_n log π(y_n) of h [N,C] under W [V,C], and its gradients for h and W. */
function lmHeadGraph(variant: Variant): Uint8Array {
  const b = new GraphBuilder(`lm_head_${variant}`, { opset: MODEL_OPSET });
  const h = b.input('h', 'float32', ['lm_tokens', C]);
  const w = b.input('w', 'float32', [V, C]);
  const y = b.input('y', 'int64', ['lm_tokens']);
  const logp = variant === 'fused'
    ? b.op('TokenLogProb', [h, w, y])
    : b.squeeze(b.op('GatherElements', [b.logSoftmax(b.matmul(h, b.transpose(w, [1, 0]))), b.unsqueeze(y, [1])], { axis: 1 }), [1]);
  const total = b.reduceSum(logp, [0], false);
  const grads = gradients(b, total, [h, w]);
  b.output(total, 'logp');
  b.output(grads.get('h') as Value, 'grad.h');
  b.output(grads.get('w') as Value, 'grad.w');
  return b.toModelProto();
}

function lmHeadFeeds(): Record<string, ort.Tensor> {
  const rand = seededRandom(3);
  const N = 2 * P * (T - T / 2);
  return {
    h: new ort.Tensor('float32', Float32Array.from({ length: N * C }, () => rand() - 0.5), [N, C]),
    w: new ort.Tensor('float32', Float32Array.from({ length: V * C }, () => 0.1 * (rand() - 0.5)), [V, C]),
    y: new ort.Tensor('int64', BigInt64Array.from({ length: N }, () => BigInt(Math.floor(rand() * V))), [N]),
  };
}

async function child(variant: Variant): Promise<ChildResult> {
  if (values.part === 'lm-head') return measure(variant, lmHeadGraph(variant), lmHeadFeeds());
  const rand = seededRandom(2);
  const row = (): number[] => Array.from({ length: T }, () => Math.floor(rand() * V));
  const examples: TrainExample[] = Array.from({ length: P }, () => ({
    chosen: row(), rejected: row(), truncated: false, margin: 0, objective: 0,
    chosenStart: T / 2, rejectedStart: T / 2, refChosen: -600, refRejected: -600,
  }));
  const batch = makeStepBatch(examples, 1, 0, lossNeeds(loss));
  const params = weightsToTensors(config, initWeights(config, 1));
  const m = zeroMoments(params), v = zeroMoments(params);
  const feeds: Record<string, ort.Tensor> = {
    input_ids: batch.inputIds, attention_mask: batch.attentionMask, margin: batch.margin, objective: batch.objective,
    lm_positions: batch.lmPositions!, lm_targets: batch.lmTargets!, lm_segments: batch.lmSegments!, ref_logp: batch.refLogp!,
    step: new ort.Tensor('int64', BigInt64Array.of(1n), []),
  };
  for (const [name, t] of params) {
    feeds[name] = t;
    feeds[`adam_m.${name}`] = m.get(name)!;
    feeds[`adam_v.${name}`] = v.get(name)!;
  }
  return measure(variant, variant === 'fused' ? buildStepGraph(options) : compositionStepGraph(), feeds);
}

async function measure(variant: Variant, model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<ChildResult> {
  const rssBefore = process.memoryUsage().rss;
  const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', intraOpNumThreads: threads });
  await session.run(feeds); // warm-up: the arena grows to the step's plan here
  const times: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await session.run(feeds);
    const c = process.cpuUsage(c0);
    times.push((performance.now() - t0) / 1000);
    cpu.push((c.user + c.system) / 1e6);
  }
  await session.release();
  return {
    variant, step_seconds: times.map((t) => +t.toFixed(3)), cpu_seconds: cpu.map((t) => +t.toFixed(3)),
    max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), rss_before_session_mb: Math.round(rssBefore / 2 ** 20),
  };
}

if (values.variant === 'fused' || values.variant === 'composition') {
  console.log(JSON.stringify(await child(values.variant)));
} else {
  const self = fileURLToPath(import.meta.url);
  const passArgs = process.argv.slice(2);
  const runs: ChildResult[] = [];
  for (let r = 0; r < Number(values.repeats); r++) {
    for (const variant of ['composition', 'fused'] as const) {
      const out = execFileSync(process.execPath, [...process.execArgv, self, ...passArgs, '--variant', variant], { encoding: 'utf8' });
      runs.push(JSON.parse(out.trim().split('\n').pop()!) as ChildResult);
    }
  }
  const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = (variant: Variant) => {
    const mine = runs.filter((r) => r.variant === variant);
    return {
      step_seconds_median: median(mine.flatMap((r) => r.step_seconds)),
      cpu_seconds_median: median(mine.flatMap((r) => r.cpu_seconds)),
      max_rss_mb: mine.map((r) => r.max_rss_mb),
      rss_before_session_mb: mine.map((r) => r.rss_before_session_mb),
    };
  };
  console.log(JSON.stringify({
    part: values.part, config: { d_model: C, layers: L, heads: H, seq: T, pairs: P, vocab: V, parameters: parameterCount(config), lm_tokens: 2 * P * (T - T / 2), threads, steps_per_child: steps, repeats: Number(values.repeats) },
    composition: summary('composition'), fused: summary('fused'), runs,
  }, null, 2));
}
