// Trainer throughput and model FLOP utilisation (MFU) against onnxruntime-node's own MatMul,
// measured in the same process on the same machine:
//   node --import tsx bench/train-throughput.ts [--arch gpt2|llama|qwen2|qwen3 --d-model 256 --layers 4 --heads 4
//     --kv-heads H/4 --mlp F --seq 128 --pairs 16 --vocab 8192 --steps 7 --threads 0 --activation gelu_new|gelu]
// One Bradley–Terry step (forward on chosen + rejected, loss, backward, AdamW). Model FLOPs per step
// count the matrix products of forward + backward (3× forward):
//   6·N·tokens + 12·L·T·(H·D)·tokens (attention scores and weighted sum), N = the block weights + C·K head:
//   GPT-2:           N = L·(4C² attention + 8C² MLP of width 4C) + C·K  (= 12·L·C² + C·K, H·D = C)
//   Llama family:    N = L·(2·C·H·D for q and o + 2·C·Hkv·D for k and v (grouped-query: fewer k/v heads)
//                      + 3·C·F for SwiGLU's gate, up and down) + C·K
// The LM head is not counted: BT reads no log-probs, so the step has none (a Llama-family model is
// built with lmHead 'none'; GPT-2's tied head only exists as the token embedding). Embedding
// gathers, the norms, softmax, RoPE and the optimizer are not counted (they are not FLOP-bound).
import * as ort from 'onnxruntime-node';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { GraphBuilder } from '../src/training/graph/builder.js';
import { defaultModelConfig, initWeights, parameterCount, type Architecture, type RewardModelConfig } from '../src/training/model.js';
import { ARCHITECTURES } from '../src/training/arch/index.js';
import { DEFAULT_OPTIMIZER, makeStepBatch, type TrainExample } from '../src/training/loop.js';
import { weightsToTensors } from '../src/training/evaluate.js';
import { TrainStep, zeroMoments } from '../src/training/step.js';
import { seededRandom } from '../src/training/model.js';

const { values } = parseArgs({
  options: {
    'd-model': { type: 'string', default: '256' }, layers: { type: 'string', default: '4' }, heads: { type: 'string', default: '4' },
    seq: { type: 'string', default: '128' }, pairs: { type: 'string', default: '16' }, steps: { type: 'string', default: '7' },
    vocab: { type: 'string', default: '8192' }, threads: { type: 'string', default: '0' },
    activation: { type: 'string', default: 'gelu_new' },
    arch: { type: 'string', default: 'gpt2' }, 'kv-heads': { type: 'string' }, mlp: { type: 'string' },
  },
});
const loadAtStart = os.loadavg();
const arch = values.arch as Architecture;
if (!ARCHITECTURES.includes(arch)) throw new Error(`--arch ${values.arch}: one of ${ARCHITECTURES.join(', ')}`);
const llamaFamily = arch !== 'gpt2';
const C = Number(values['d-model']), L = Number(values.layers), H = Number(values.heads), T = Number(values.seq);
const P = Number(values.pairs), steps = Number(values.steps), V = Number(values.vocab), threads = Number(values.threads);
// Llama-style defaults: a quarter as many k/v heads as query heads (grouped-query attention) and
// Llama's SwiGLU width, 8C/3 rounded up to a multiple of 256 (1536 at C = 512); GPT-2's MLP is 4C.
const Hkv = Number(values['kv-heads'] ?? (llamaFamily && H % 4 === 0 ? H / 4 : H));
const F = Number(values.mlp ?? (llamaFamily ? 256 * Math.ceil((8 * C) / 3 / 256) : 4 * C));
const D = C / H;
const session: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', ...(threads ? { intraOpNumThreads: threads } : {}) };

// ---- MatMul reference: the model's own GEMM shapes (GPT-2: tokens × C → 4C, 4C → C, C → 3C;
// Llama family: C → F for gate and up, F → C for down, C → H·D for q), best of them
async function matmulSession(M: number, K: number, N: number): Promise<() => Promise<number>> {
  const b = new GraphBuilder('matmul');
  const x = b.input('a', 'float32', [M, K]);
  const w = b.input('b', 'float32', [K, N]);
  b.output(b.matmul(x, w), 'y');
  const s = await ort.InferenceSession.create(b.toModelProto(), session);
  const rand = seededRandom(1);
  const a = new ort.Tensor('float32', Float32Array.from({ length: M * K }, rand), [M, K]);
  const bb = new ort.Tensor('float32', Float32Array.from({ length: K * N }, rand), [K, N]);
  await s.run({ a, b: bb });
  // GFLOP/s of the faster of two runs
  return async () => {
    let best = Infinity;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      await s.run({ a, b: bb });
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return (2 * M * K * N) / best / 1e9;
  };
}

const tokens = 2 * P * T;
const activation = values.activation === 'gelu' ? 'gelu' as const : 'gelu_new' as const;
const config: RewardModelConfig = llamaFamily
  ? defaultModelConfig({
    arch, vocabSize: V, dModel: C, nLayers: L, nHeads: H, maxLength: T, dMlp: F,
    llama: { nKvHeads: Hkv, headDim: D, ropeTheta: 10000, lmHead: 'none', attentionBias: false, mlpBias: false },
  })
  : defaultModelConfig({ vocabSize: V, dModel: C, nLayers: L, nHeads: H, maxLength: T, activation, dMlp: F });
const step = await TrainStep.create({
  config, loss: { method: 'bt', margin: false, centering: 0, labelSmoothing: 0 },
  optimizer: { weightDecay: 0.01, maxGradNorm: 1 },
  schedule: { peakLr: 1e-4, warmupSteps: 0, totalSteps: 1000 },
}, session);
const params = weightsToTensors(config, initWeights(config, 1));
const state = { params, m: zeroMoments(params), v: zeroMoments(params), step: 0 };
const rand = seededRandom(2);
const row = (): number[] => Array.from({ length: T }, () => Math.floor(rand() * V));
const examples: TrainExample[] = Array.from({ length: P }, () => ({ chosen: row(), rejected: row(), truncated: false, margin: 0, objective: 0 }));
const batch = makeStepBatch(examples, 1, 0);
const matmuls = llamaFamily
  ? [await matmulSession(tokens, C, F), await matmulSession(tokens, F, C), await matmulSession(tokens, C, H * D)]
  : [await matmulSession(tokens, C, F), await matmulSession(tokens, F, C), await matmulSession(tokens, C, 3 * C)];
await step.run(state, batch); // warm-up
// Interleave: each round times one training step and then the MatMuls, so both see the same
// machine load; MFU is taken per round and the median round is reported.
const K = config.numObjectives;
const blockWeights = llamaFamily
  ? L * (2 * C * H * D + 2 * C * Hkv * D + 3 * C * F)
  : L * (4 * C * C + 2 * C * F);
const N = blockWeights + C * K;
const flops = 6 * N * tokens + 12 * L * T * H * D * tokens;
const rounds: { stepSec: number; matmul: number; mfu: number }[] = [];
for (let r = 0; r < steps; r++) {
  const t0 = performance.now();
  await step.run(state, batch);
  const stepSec = (performance.now() - t0) / 1000;
  let matmul = 0;
  for (const m of matmuls) matmul = Math.max(matmul, await m());
  rounds.push({ stepSec, matmul, mfu: flops / stepSec / 1e9 / matmul });
}
await step.release();
const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const stepSec = median(rounds.map((r) => r.stepSec));
const matmul = median(rounds.map((r) => r.matmul));
const achieved = flops / stepSec / 1e9;
const result = {
  config: {
    arch, d_model: C, layers: L, heads: H, ...(llamaFamily ? { kv_heads: Hkv, head_dim: D } : {}), mlp: F, seq: T, pairs: P, vocab: V,
    parameters: parameterCount(config), matmul_weights_counted: N, threads: threads || 'ort default',
    activation: llamaFamily ? 'silu (SwiGLU)' : activation, load_average_start: loadAtStart.map((x) => +x.toFixed(2)), load_average_end: os.loadavg().map((x) => +x.toFixed(2)),
  },
  step_seconds: +stepSec.toFixed(3),
  tokens_per_second: Math.round(tokens / stepSec),
  model_gflop_per_step: +(flops / 1e9).toFixed(1),
  model_gflops: +achieved.toFixed(1),
  matmul_gflops: +matmul.toFixed(1),
  mfu_vs_matmul: +median(rounds.map((r) => r.mfu)).toFixed(3),
  mfu_per_round: rounds.map((r) => +r.mfu.toFixed(3)),
};
console.log(JSON.stringify(result, null, 2));
