// The SFT phase and the reference it gives HaF-RM: `rmserve train --method sft` run as a user runs
// it, its folder as --init-from of a haf run, the manifest's record of that reference, and the
// haf run's reference log-probs against the SFT model's own, computed here from the exported folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeCausalLmFolder } from '../src/training/causal-lm-export.js';
import { readPreferenceFile } from '../src/training/data.js';
import { PairEncoder } from '../src/training/encode.js';
import { LogProbForward, weightsToTensors } from '../src/training/evaluate.js';
import { loadHfCheckpoint, readFolderTokenizer } from '../src/training/hf-checkpoint.js';
import { defaultModelConfig, initFromPretrained, initWeights, parameterSpecs, type RewardModelConfig } from '../src/training/model.js';
import { splitByPrompt } from '../src/training/split.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

const run = promisify(execFile);
const DATA = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const PAIRS = 160;
const MAX_LENGTH = 64;
const SMALL = ['--max-length', String(MAX_LENGTH), '--batch-size', '8', '--max-train-pairs', String(PAIRS), '--lr', '0.003', '--warmup', '2', '--threads', '1', '--no-progress'];
const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
  run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'train', ...args], { timeout: 60_000 });
const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

interface TrainLogp { responses: number; tokens: number; chosen_sum: number; rejected_sum: number; mean_per_token: number }
interface HafManifest {
  provenance: {
    init: { from?: string; random_init?: boolean; sha256?: Record<string, string>; sft?: { sha256: string; steps: number } };
    reference: { policy: string; from?: string; random_init?: boolean; sha256?: Record<string, string>; train_logp: TrainLogp };
  };
  metrics: { implicit_reward: { pairs: number; longer_agreement: number; reference_nll_per_token: number } };
}

test('rmserve train --method sft trains an LM, and a haf run from it takes it as the reference', async () => {
  const root = mkdtempSync(join(tmpdir(), 'rmserve-sft-'));
  try {
    const sftDir = join(root, 'sft');
    const sft = await cli(['--method', 'sft', '--data', DATA, '--out', sftDir, '--checkpoint-dir', join(root, 'ck-sft'),
      '--vocab-size', '384', '--d-model', '32', '--layers', '1', '--heads', '2', '--steps', '30', '--eval-every', '10', ...SMALL]);
    const summary = JSON.parse(sft.stdout.trim().split('\n').at(-1)!) as { validation_nll_per_token: number; initial_validation_nll_per_token: number };
    assert.ok(summary.validation_nll_per_token < summary.initial_validation_nll_per_token - 0.3,
      `validation NLL falls: ${summary.initial_validation_nll_per_token} → ${summary.validation_nll_per_token}`);
    const steps = readFileSync(join(sftDir, 'train-metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; loss?: number })
      .filter((r) => r.kind === 'train').map((r) => r.loss as number);
    assert.equal(steps.length, 30);
    // A random network starts near ln 384 = 5.95 nats per token.
    assert.ok(Math.abs(steps[0]! - Math.log(384)) < 0.1, `first loss ${steps[0]}`);
    assert.ok(steps.at(-1)! < steps[0]! - 0.5, `training loss falls: ${steps[0]} → ${steps.at(-1)}`);
    assert.deepEqual(JSON.parse(readFileSync(join(sftDir, 'config.json'), 'utf8')).architectures, ['GPT2LMHeadModel']);

    // haf from the SFT folder: its tokenizer, its weights, its reference.
    const hafOut = join(root, 'models', 'harmless', '1');
    const haf = await cli(['--method', 'haf', '--init-from', sftDir, '--data', DATA, '--out', hafOut, '--checkpoint-dir', join(root, 'ck-haf'),
      '--steps', '4', '--eval-every', '0', '--no-report', ...SMALL]);
    assert.doesNotMatch(haf.stderr, /warning:/);
    const manifest = JSON.parse(readFileSync(join(hafOut, 'rmserve.json'), 'utf8')) as HafManifest;
    const { init, reference } = manifest.provenance;
    assert.equal(init.from, sftDir);
    assert.equal(reference.from, sftDir);
    assert.equal(reference.sha256?.['model.safetensors'], sha256(join(sftDir, 'model.safetensors')));
    assert.equal(init.sft?.sha256, sha256(join(sftDir, 'rmserve-sft.json')));
    assert.equal(init.sft?.steps, 30);
    assert.match(reference.policy, /--method sft/);
    assert.ok(manifest.metrics.implicit_reward.pairs > 0);

    // The SFT model's log-probs of the haf run's training responses, from the exported folder alone.
    const checkpoint = loadHfCheckpoint(sftDir, { maxLength: MAX_LENGTH, needsLmHead: true });
    const config = defaultModelConfig({ ...checkpoint.model, maxLength: MAX_LENGTH });
    const weights = initFromPretrained(config, checkpoint.params, 1);
    const encoder = new PairEncoder(readFolderTokenizer(join(sftDir, 'tokenizer.json'), MAX_LENGTH), MAX_LENGTH);
    const train = splitByPrompt(readPreferenceFile(DATA), { train: 0.8, validation: 0.1, test: 0.1 }).train.slice(0, PAIRS)
      .map((p) => encoder.encode(p, { responseStart: true }));
    const forward = await LogProbForward.create(config);
    const sum = async (rows: number[][], starts: number[]): Promise<number> =>
      (await forward.logProbs(weightsToTensors(config, weights), rows, starts, encoder.padId)).reduce((a, v) => a + v, 0);
    const chosen = await sum(train.map((e) => e.chosen), train.map((e) => e.chosenStart!));
    const rejected = await sum(train.map((e) => e.rejected), train.map((e) => e.rejectedStart!));
    await forward.release();
    const logp = reference.train_logp;
    assert.equal(logp.responses, 2 * PAIRS);
    assert.ok(Math.abs(logp.chosen_sum - chosen) < 1e-5 * Math.abs(chosen), `reference Σ log π(chosen) ${logp.chosen_sum} vs the SFT model's ${chosen}`);
    assert.ok(Math.abs(logp.rejected_sum - rejected) < 1e-5 * Math.abs(rejected), `reference Σ log π(rejected) ${logp.rejected_sum} vs the SFT model's ${rejected}`);
    assert.ok(logp.mean_per_token > -Math.log(384) + 0.5, `the SFT reference beats uniform: ${logp.mean_per_token} nats per token`);

    // From scratch: a warning that points at --method sft, and the manifest says the reference was random.
    const scratchOut = join(root, 'models', 'harmless', '2');
    const scratch = await cli(['--method', 'haf', '--data', DATA, '--out', scratchOut, '--checkpoint-dir', join(root, 'ck-scratch'),
      '--vocab-size', '384', '--d-model', '32', '--layers', '1', '--heads', '2', '--steps', '2', '--eval-every', '0', '--no-report', ...SMALL]);
    assert.match(scratch.stderr, /warning: --method haf without --init-from: the DPO term's frozen reference is the random initial network[^\n]*--method sft/);
    const scratchManifest = JSON.parse(readFileSync(join(scratchOut, 'rmserve.json'), 'utf8')) as HafManifest;
    assert.equal(scratchManifest.provenance.reference.random_init, true);
    assert.match(scratchManifest.provenance.reference.policy, /^random init/);
    assert.ok(Math.abs(scratchManifest.provenance.reference.train_logp.mean_per_token + Math.log(384)) < 0.05,
      `a random reference is about uniform: ${scratchManifest.provenance.reference.train_logp.mean_per_token}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the causal-LM export loads back through --init-from\'s loader with every decoder weight unchanged', () => {
  const root = mkdtempSync(join(tmpdir(), 'rmserve-lm-export-'));
  try {
    const bpe = trainByteLevelBpe(['some text to learn a few merges from', 'and a little more'], { vocabSize: 300 });
    const tokenizer = { tokenizerJson: bpe.tokenizerJson as unknown as Record<string, unknown>, tokenizerConfig: { ...bpe.tokenizerConfig } };
    const configs: RewardModelConfig[] = [
      defaultModelConfig({ vocabSize: 300, maxLength: 16, dModel: 16, nLayers: 2, nHeads: 2 }),
      defaultModelConfig({
        arch: 'llama', vocabSize: 300, maxLength: 16, dModel: 16, nLayers: 1, nHeads: 4, dMlp: 24,
        llama: { nKvHeads: 2, headDim: 4, ropeTheta: 10000, lmHead: 'untied', attentionBias: true, mlpBias: false },
      }),
      defaultModelConfig({
        arch: 'qwen3', vocabSize: 300, maxLength: 16, dModel: 16, nLayers: 1, nHeads: 4, dMlp: 24,
        llama: { nKvHeads: 2, headDim: 8, ropeTheta: 1e6, lmHead: 'tied', attentionBias: false, mlpBias: false },
      }),
    ];
    for (const config of configs) {
      const dir = join(root, config.arch);
      const weights = initWeights(config, 3);
      writeCausalLmFolder(dir, { config, weights, tokenizer, info: { format: 'test' } });
      const loaded = loadHfCheckpoint(dir, { maxLength: 16, needsLmHead: true });
      assert.equal(loaded.task, 'causal-lm', config.arch);
      assert.equal(loaded.model.dModel, config.dModel);
      assert.deepEqual(loaded.model.llama, config.llama);
      for (const spec of parameterSpecs(config).filter((s) => !s.name.startsWith('head.'))) {
        const p = loaded.params.get(spec.name);
        assert.ok(p, `${config.arch}: ${spec.name} loaded`);
        assert.deepEqual(p.shape, spec.shape, `${config.arch}: ${spec.name} shape`);
        assert.deepEqual(Array.from(p.data), Array.from(weights.get(spec.name)!), `${config.arch}: ${spec.name} values`);
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
