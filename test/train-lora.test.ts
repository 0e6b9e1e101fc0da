// LoRA (src/training/lora.ts): a step trains only the adapters and the reward head, the frozen
// base stays bit for bit; the merged export scores as the unmerged adapters do; `rmserve train
// --init-from … --lora-rank 8` as a user runs it, served by the server, resumed and refused like
// other options; and the adapters' gradient against central differences in float64.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import { createService } from '../src/service.js';
import { readPreferenceFile } from '../src/training/data.js';
import { splitByPrompt } from '../src/training/split.js';
import { loadCheckpoint } from '../src/training/checkpoint.js';
import { PairEncoder, readTokenizerFiles } from '../src/training/encode.js';
import { RewardForward } from '../src/training/evaluate.js';
import { forwardModelProto } from '../src/training/export.js';
import { pretrainedStart } from '../src/training/hf-checkpoint.js';
import { lossConfig, type LossConfig } from '../src/training/losses.js';
import { adaptedLayers, initialTrainable, loraScale, mergeAdapters, resolveLora, trainableSpecs, type LoraSettings } from '../src/training/lora.js';
import { trainLoop, DEFAULT_OPTIMIZER, type TrainExample } from '../src/training/loop.js';
import { defaultModelConfig, initFromPretrained, initWeights, parameterSpecs, seededRandom, type ModelWeights, type RewardModelConfig } from '../src/training/model.js';
import { runTraining, DEFAULT_TRAIN_OPTIONS } from '../src/training/pipeline.js';
import { buildLossGradGraph, buildStepGraph } from '../src/training/step.js';
import { checkStepGradients, stepGradInputs } from './helpers/step-gradcheck.js';

const run = promisify(execFile);
const DATA = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const LLAMA = 'test/fixtures/train/llama';
const TOKENIZER = 'data/tokenizers/llama2/tokenizer.json';

const sizes = { vocabSize: 29, dModel: 16, nLayers: 2, nHeads: 4, dMlp: 24, maxLength: 16, numObjectives: 1 };
const llama = defaultModelConfig({
  ...sizes, arch: 'llama',
  llama: { nKvHeads: 2, headDim: 4, ropeTheta: 10000, lmHead: 'tied', attentionBias: true, mlpBias: true },
});
const gpt2 = defaultModelConfig({ ...sizes });

function examples(n: number, rand: () => number, vocab: number): TrainExample[] {
  const row = (): number[] => Array.from({ length: 3 + Math.floor(rand() * 8) }, () => 1 + Math.floor(rand() * (vocab - 1)));
  return Array.from({ length: n }, () => ({ chosen: row(), rejected: row(), truncated: false, margin: 0, objective: 0 }));
}

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Adapters and head with every B non-zero (at init B = 0 and the adapters do nothing). */
function randomTrained(c: RewardModelConfig, s: LoraSettings, init: ModelWeights, seed: number): ModelWeights {
  const rand = seededRandom(seed);
  const trained = initialTrainable(c, s, init, seed);
  for (const [name, data] of trained) if (name.endsWith('.lora_B')) data.forEach((_, i) => (data[i] = 0.3 * (2 * rand() - 1)));
  return trained;
}

test('a LoRA step changes only the adapters and the head: the base weights are bit-identical, the step graph takes none of them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-lora-step-'));
  try {
    const lora = resolveLora(llama, { rank: 4, targets: ['q', 'v', 'down'] })!;
    assert.deepEqual(lora, { rank: 4, alpha: 8, targets: ['q', 'v', 'down'] }, 'alpha defaults to 2·rank');
    const init = initWeights(llama, 3);
    const snapshot = new Map([...init].map(([name, data]) => [name, data.slice()]));
    const optimizer = { ...DEFAULT_OPTIMIZER, lr: 0.05, warmup: 0 };
    const result = await trainLoop({
      model: llama, loss: lossConfig({ method: 'bt' }), lora, optimizer, steps: 3, batchSize: 4, evalEvery: 0, seed: 1,
      checkpointDir: dir, progress: false, log: () => {},
    }, { train: examples(12, seededRandom(5), sizes.vocabSize), validation: [] }, init, 0);

    // The step graph's inputs and outputs: the batch, the adapters, the head and their moments; no base weight.
    const trained = trainableSpecs(llama, lora).map((s) => s.name);
    assert.equal(trained.length, 2 * 3 * 2 + 1, 'A and B for q, v and down of 2 blocks, and head.out.w');
    const session = await ort.InferenceSession.create(buildStepGraph({
      config: llama, loss: lossConfig({ method: 'bt' }), optimizer: {}, schedule: { peakLr: 1e-3, warmupSteps: 0, totalSteps: 3 }, lora: { settings: lora, base: init },
    }));
    const params = session.inputNames.filter((n) => !n.startsWith('adam_') && !['input_ids', 'attention_mask', 'margin', 'objective', 'step'].includes(n));
    assert.deepEqual(params.sort(), [...trained].sort());
    assert.deepEqual(session.outputNames.filter((n) => n.endsWith('.next') && !n.startsWith('adam_')).sort(), trained.map((n) => `${n}.next`).sort());
    await session.release();

    // The checkpoint holds the trained tensors and their moments alone.
    const ckpt = loadCheckpoint(join(dir, 'last.safetensors'));
    assert.equal(ckpt.step, 3);
    assert.deepEqual([...ckpt.params.keys()].sort(), [...trained].sort());
    assert.deepEqual([...ckpt.adam!.m.keys()].sort(), [...trained].sort());

    // The adapters and the head moved (A from its kaiming-uniform start once B ≠ 0, B from 0).
    const start = initialTrainable(llama, lora, init, 1);
    for (const name of trained) {
      assert.notDeepEqual(ckpt.params.get(name)!.data, start.get(name), `${name} changed`);
    }
    // Every weight of the merged model is the base's, bit for bit, except the adapted layers
    // (W + (α/r)·A·B) and the head; the initial weights themselves were not written to.
    const adapted = new Set(adaptedLayers(llama, lora).map((l) => `${l.name}.w`));
    const s = loraScale(lora);
    for (const spec of parameterSpecs(llama)) {
      assert.equal(bytes(init.get(spec.name)!).compare(bytes(snapshot.get(spec.name)!)), 0, `${spec.name}: the initial weights are untouched`);
      const merged = result.last.get(spec.name)!;
      if (spec.name.startsWith('head.')) {
        assert.equal(bytes(merged).compare(bytes(ckpt.params.get(spec.name)!.data)), 0);
      } else if (adapted.has(spec.name)) {
        const layer = spec.name.slice(0, -2);
        const A = ckpt.params.get(`${layer}.lora_A`)!.data;
        const B = ckpt.params.get(`${layer}.lora_B`)!.data;
        const [nIn, nOut] = spec.shape as [number, number];
        let worst = 0;
        let moved = 0;
        for (let i = 0; i < nIn; i++) {
          for (let j = 0; j < nOut; j++) {
            let ab = 0;
            for (let k = 0; k < lora.rank; k++) ab += A[i * lora.rank + k]! * B[k * nOut + j]!;
            const w = init.get(spec.name)![i * nOut + j]!;
            worst = Math.max(worst, Math.abs(merged[i * nOut + j]! - (w + s * ab)));
            moved = Math.max(moved, Math.abs(merged[i * nOut + j]! - w));
          }
        }
        assert.ok(worst < 1e-6, `${spec.name}: merged = W + (α/r)·A·B (worst ${worst})`);
        t.diagnostic(`${spec.name}: |merged − (W + (α/r)·A·B)| ≤ ${worst.toExponential(2)}, moved by up to ${moved.toExponential(2)}`);
        assert.ok(moved > 1e-4, `${spec.name}: the adapters changed the merged weight (${moved})`);
      } else {
        assert.equal(bytes(merged).compare(bytes(init.get(spec.name)!)), 0, `${spec.name} is the base's, bit for bit`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const [config, targets] of [[llama, ['all-linear']], [gpt2, ['c_attn', 'c_proj', 'c_fc']]] as const) {
  test(`${config.arch}: the merged export scores like the unmerged adapters (${targets.join(',')})`, async (t) => {
    const lora = resolveLora(config, { rank: 3, alpha: 5, targets: [...targets] })!;
    const base = initWeights(config, 7);
    const trained = randomTrained(config, lora, base, 8);
    const rows = [[1, 5, 9, 2], [3, 3, 8, 1, 7, 2, 6, 4, 11, 12], [20], [4, 9, 28, 14, 6, 2]];
    const forward = await RewardForward.create(config, {}, { settings: lora, base });
    const unmerged = await forward.score(new Map([...trained].map(([n, d]) => [n, new ort.Tensor('float32', d, trainableSpecs(config, lora).find((s) => s.name === n)!.shape)])), rows, 0);
    await forward.release();
    const exported = await ort.InferenceSession.create(forwardModelProto(config, mergeAdapters(config, lora, base, trained)));
    const plain = await ort.InferenceSession.create(forwardModelProto(config, new Map([...base, ['head.out.w', trained.get('head.out.w')!]])));
    let worst = 0;
    let effect = 0;
    for (const [i, row] of rows.entries()) {
      const feeds = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(row, BigInt), [1, row.length]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(row.length).fill(1n), [1, row.length]),
      };
      const got = ((await exported.run(feeds)).logits!.data as Float32Array)[0]!;
      const without = ((await plain.run(feeds)).logits!.data as Float32Array)[0]!;
      worst = Math.max(worst, Math.abs(got - unmerged[i]![0]!));
      effect = Math.max(effect, Math.abs(without - unmerged[i]![0]!));
    }
    await exported.release();
    await plain.release();
    t.diagnostic(`merged vs unmerged: max |Δreward| ${worst.toExponential(2)}; the adapters' effect ${effect.toFixed(3)}`);
    assert.ok(worst < 1e-4, `merged vs unmerged: ${worst}`);
    assert.ok(effect > 1e-2, `the adapters change the rewards (${effect}), so the comparison means something`);
  });
}

test('resolveLora refuses what PEFT would not build', () => {
  assert.equal(resolveLora(llama, { rank: 0 }), undefined);
  assert.throws(() => resolveLora(llama, { rank: 0, alpha: 4 }), /need --lora-rank > 0/);
  assert.throws(() => resolveLora(llama, { rank: 4, targets: ['c_attn'] }), /a llama model's linear layers are q, k, v, o, gate, up, down/);
  assert.deepEqual(resolveLora(gpt2, { rank: 2 })?.targets, ['c_attn'], 'PEFT\'s GPT-2 default');
  assert.deepEqual(adaptedLayers(gpt2, resolveLora(gpt2, { rank: 2, targets: ['c_proj'] })!).map((l) => l.name),
    ['blocks.0.attn.proj', 'blocks.0.mlp.proj', 'blocks.1.attn.proj', 'blocks.1.mlp.proj'], 'c_proj names both projections, as PEFT\'s suffix match does');
});

test('rmserve train --init-from the Llama fixture --lora-rank 8: trains, exports a merged model the server scores like the unmerged trainer; resume and its refusals', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'rmserve-lora-cli-'));
  try {
    const out = join(root, 'models', 'harmless', '1');
    const ckptDir = join(root, 'ckpt');
    const args = [
      '--data', DATA, '--init-from', LLAMA, '--tokenizer', TOKENIZER, '--lora-rank', '8', '--max-length', '64',
      '--batch-size', '4', '--steps', '4', '--max-train-pairs', '32', '--eval-every', '2', '--lr', '0.02', '--warmup', '0', '--threads', '1', '--no-report',
    ];
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'train', ...args, '--out', out, '--checkpoint-dir', ckptDir], { timeout: 60_000 });
    assert.match(stderr, /LoRA: rank 8, alpha 16 \(scale 2\) on q, v \(4 layers\)/);
    assert.equal((JSON.parse(stdout.trim().split('\n').at(-1)!) as { out: string }).out, out);
    const manifest = JSON.parse(readFileSync(join(out, 'rmserve.json'), 'utf8')) as {
      metrics: { test: { accuracy: number; reward_mean: number; pairs: number }; train: { best_step: number } };
      provenance: { lora: { rank: number; alpha: number; targets: string[]; merged: boolean }; config: RewardModelConfig };
    };
    assert.deepEqual(manifest.provenance.lora, { rank: 8, alpha: 16, targets: ['q', 'v'], merged: true });

    // The trainer's unmerged forward, with the kept adapters and head, on the fixture's own base.
    const config = manifest.provenance.config;
    const files = readTokenizerFiles(join(out, 'tokenizer.json'), 64);
    const encoder = new PairEncoder(files, 64);
    const start = pretrainedStart(LLAMA, { vocabSize: encoder.vocabSize, maxLength: 64, needsLmHead: false, objectives: ['harmless'], head: 'linear', log: () => {} });
    const base = initFromPretrained(config, start.params, 1);
    const best = loadCheckpoint(join(ckptDir, 'best.safetensors'));
    assert.equal(best.step, manifest.metrics.train.best_step);
    const lora = resolveLora(config, { rank: 8 })!;
    const forward = await RewardForward.create(config, {}, { settings: lora, base });
    const tensors = new Map([...best.params].map(([n, p]) => [n, new ort.Tensor('float32', p.data, p.shape)]));
    const test = splitByPrompt(readPreferenceFile(DATA), { train: 0.8, validation: 0.1, test: 0.1 }).test;
    assert.equal(test.length, manifest.metrics.test.pairs);
    const some = test.slice(0, 24);
    const encoded = some.map((p) => encoder.encode(p));
    const trainer = await forward.score(tensors, encoded.flatMap((e) => [e.chosen, e.rejected]), encoder.padId);
    await forward.release();

    const service = await createService({ modelsRoot: join(root, 'models') });
    try {
      const score = async (items: { prompt: (typeof test)[number]['prompt']; response: string }[]): Promise<number[]> => {
        const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'harmless', items } });
        assert.equal(reply.statusCode, 200, reply.body);
        return (reply.json() as { results: { reward: number }[] }).results.map((r) => r.reward);
      };
      const served = await score(some.flatMap((p) => [{ prompt: p.prompt, response: p.chosen }, { prompt: p.prompt, response: p.rejected }]));
      const worst = Math.max(...served.map((r, i) => Math.abs(r - trainer[i]![0]!)));
      t.diagnostic(`server vs the trainer's unmerged adapters on ${served.length} items: max |Δreward| ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `server vs the trainer's unmerged adapters: ${worst}`);
      // And the whole test split reproduces the manifest's test metrics (the trainer's evaluation of the merged weights).
      const chosen: number[] = [];
      const rejected: number[] = [];
      for (let i = 0; i < test.length; i += 200) {
        chosen.push(...await score(test.slice(i, i + 200).map((p) => ({ prompt: p.prompt, response: p.chosen }))));
        rejected.push(...await score(test.slice(i, i + 200).map((p) => ({ prompt: p.prompt, response: p.rejected }))));
      }
      const accuracy = chosen.reduce((n, c, i) => n + (c > rejected[i]! ? 1 : c === rejected[i]! ? 0.5 : 0), 0) / test.length;
      const mean = (chosen.reduce((a, b) => a + b, 0) + rejected.reduce((a, b) => a + b, 0)) / (2 * test.length);
      assert.equal(accuracy, manifest.metrics.test.accuracy);
      assert.ok(Math.abs(mean - manifest.metrics.test.reward_mean) < 1e-4, `server reward mean ${mean} vs trainer ${manifest.metrics.test.reward_mean}`);
      t.diagnostic(`test split: server accuracy ${accuracy} = manifest's; reward mean differs by ${Math.abs(mean - manifest.metrics.test.reward_mean).toExponential(2)}`);
    } finally {
      await service.close();
    }

    // Resume: interrupted at step 2 and resumed, the losses are the uninterrupted run's; other LoRA options are refused.
    const options = {
      ...DEFAULT_TRAIN_OPTIONS, data: [DATA], initFrom: LLAMA, tokenizer: TOKENIZER, maxLength: 64, batchSize: 4, steps: 4, maxTrainPairs: 32,
      evalEvery: 2, optimizer: { ...DEFAULT_TRAIN_OPTIONS.optimizer, lr: 0.02, warmup: 0 }, threads: 1, report: false, progress: false as const,
      lora: { rank: 8 }, log: () => {},
    };
    const uninterrupted = readFileSync(join(ckptDir, 'train-metrics.jsonl'), 'utf8').split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as { kind: string; loss: number }).filter((r) => r.kind === 'train').map((r) => r.loss);
    const resumeDir = join(root, 'ckpt-resume');
    await runTraining({ ...options, out: join(root, 'models', 'harmless', '2'), checkpointDir: resumeDir, stopAfter: 2 });
    const last = join(resumeDir, 'last.safetensors');
    const resumed = await runTraining({ ...options, out: join(root, 'models', 'harmless', '2'), checkpointDir: resumeDir, resume: last });
    const losses = resumed.loop.steps.map((s) => s.loss);
    assert.equal(losses.length, 2);
    losses.forEach((l, i) => assert.ok(Math.abs(l - uninterrupted[i + 2]!) < 1e-6, `step ${i + 3}: ${l} vs ${uninterrupted[i + 2]}`));
    t.diagnostic(`resumed losses ${losses.join(', ')}; uninterrupted ${uninterrupted.slice(2).join(', ')}`);
    await assert.rejects(runTraining({ ...options, out: join(root, 'models', 'harmless', '3'), checkpointDir: join(root, 'c3'), resume: last, lora: { rank: 8, alpha: 4 } }),
      /--lora-alpha 16 \(this run: 4\)/);
    await assert.rejects(runTraining({ ...options, out: join(root, 'models', 'harmless', '3'), checkpointDir: join(root, 'c3'), resume: last, lora: { rank: 0 } }),
      /--lora-rank 8 \(this run: 0\)/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/** Float64 base weights and trained tensors (B ≠ 0, else A's gradient is 0) at a scale where the loss is far from flat. */
function gradcheckSetup(c: RewardModelConfig, s: LoraSettings, seed: number): { base: ModelWeights; params: Map<string, Float64Array> } {
  const base = initWeights({ ...c, initStd: 0.2 }, seed);
  const trained = randomTrained(c, s, initWeights({ ...c, initStd: 0.2 }, seed + 1), seed + 2);
  return { base, params: new Map([...trained].map(([n, d]) => [n, Float64Array.from(d)])) };
}

// Two reward columns: stepGradInputs' pairs are about either.
const cases: [RewardModelConfig, string[], LossConfig][] = [
  [{ ...llama, numObjectives: 2 }, ['all-linear'], lossConfig({ method: 'bt', margin: true, centering: 0.01 })],
  // HaF-RM reads log-probs through the frozen tied LM head: the DPO term reaches the adapters too.
  [{ ...gpt2, numObjectives: 2 }, ['c_attn', 'c_proj'], lossConfig({ method: 'haf', haf: { rmRatio: 1, dpoRatio: 1, beta: 0.5 } })],
];
for (const [config, targets, loss] of cases) {
  test(`${config.arch}: the LoRA gradient (${targets.join(',')}, ${loss.method}) matches central differences in float64`, async (t) => {
    const lora = resolveLora(config, { rank: 2, alpha: 3, targets })!;
    const { base, params } = gradcheckSetup(config, lora, 11);
    const session = await ort.InferenceSession.create(buildLossGradGraph(config, loss, 'float64', undefined, { settings: lora, base }));
    const specs = trainableSpecs(config, lora);
    assert.deepEqual(session.inputNames.filter((n) => params.has(n)).sort(), specs.map((s) => s.name).sort(), 'only the trained tensors are inputs');
    const rand = seededRandom(12);
    const { fixed } = stepGradInputs(config, loss, rand);
    let reached = 0;
    const { checked } = await checkStepGradients(session, fixed, specs, params, rand, `${config.arch} LoRA`, (_, g, big) => {
      if (Math.abs(g[big]!) > 1e-8) reached++;
    });
    assert.equal(checked, 3 * specs.length);
    t.diagnostic(`${checked} coordinates of ${specs.length} tensors within 1e-6 + 1e-4·|g|`);
    assert.equal(reached, specs.length, 'every adapter and the head get a gradient');
    await session.release();
  });
}
