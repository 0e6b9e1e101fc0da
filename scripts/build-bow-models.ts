// Builds the interim default models in models/: a bag-of-words Bradley–Terry reward model per
// objective (src/training/baselines.ts), exported as an ONNX graph (src/training/bow-model.ts)
// beside the real GPT-2 tokenizer. They stand in until the transformer trainer's models replace
// them (issue 4). Run: npm run build:default-models
import { createHash } from 'node:crypto';
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lengthBaseline, pairwiseAccuracy, trainBagOfWords, type TokenPair } from '../src/training/baselines.js';
import { buildBowRewardGraph } from '../src/training/bow-model.js';
import { writeModelFolder } from '../src/model/write-folder.js';
import { readPreferenceFile, type PreferencePair } from '../src/training/data.js';
import { PairEncoder, readTokenizerFiles } from '../src/training/encode.js';
import { splitByPrompt } from '../src/training/split.js';
import { quantile } from '../src/transforms/index.js';

const MAX_LENGTH = 512;
const VERSION = '0';
const TOKENIZER = 'data/tokenizers/gpt2/tokenizer.json';
const QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.85, 0.95];

interface ObjectiveSpec {
  name: string;
  train: string;
  outOfDistribution?: string;
}

const OBJECTIVES: ObjectiveSpec[] = [
  { name: 'harmless', train: 'data/hh-rlhf/harmless-base-test.jsonl.gz' },
  { name: 'helpful', train: 'data/alpaca-eval/gpt4-judgments.jsonl.gz', outOfDistribution: 'data/pandalm/testset-v1.json' },
];

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const round = (x: number): number => Math.round(x * 1e4) / 1e4;

function build(spec: ObjectiveSpec): void {
  const started = Date.now();
  const files = readTokenizerFiles(TOKENIZER, MAX_LENGTH);
  const encoder = new PairEncoder(files, MAX_LENGTH);
  const encode = (pairs: PreferencePair[]): TokenPair[] => pairs.map((p) => encoder.encode(p));
  const split = splitByPrompt(readPreferenceFile(spec.train), { train: 0.8, validation: 0.1, test: 0.1 });
  const [train, validation, test] = [encode(split.train), encode(split.validation), encode(split.test)];
  const model = trainBagOfWords(train, { vocabSize: encoder.vocabSize, epochs: 8, seed: 0 });

  const accuracy = (pairs: TokenPair[]) => {
    const a = pairwiseAccuracy(model.score, pairs);
    return { accuracy: round(a.accuracy), n: a.n, length_baseline: round(lengthBaseline(pairs).accuracy) };
  };
  const metrics: Record<string, unknown> = {
    train_pairs: train.length,
    validation: accuracy(validation),
    test: accuracy(test),
  };
  if (spec.outOfDistribution) metrics.out_of_distribution = { file: spec.outOfDistribution, ...accuracy(encode(readPreferenceFile(spec.outOfDistribution))) };

  // LSC reference statistics: rewards of the validation responses stand in for reference samples.
  const rewards = validation.flatMap((p) => [model.score(p.chosen), model.score(p.rejected)]);
  const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
  const std = Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / rewards.length);

  const dir = join('models', spec.name, VERSION);
  const vocab = encoder.vocabSize;
  const manifest = {
    format_version: 1,
    name: spec.name,
    version: VERSION,
    objectives: [spec.name],
    max_length: MAX_LENGTH,
    truncation_side: 'left',
    padding_side: 'right',
    reference: {
      [spec.name]: { quantiles: Object.fromEntries(QUANTILES.map((q) => [String(q), round(quantile(rewards, q))])), mean: round(mean), std: round(std), n: rewards.length, source: 'validation split responses (chosen and rejected)' },
    },
    metrics,
    provenance: {
      method: 'bag-of-words Bradley-Terry logistic regression (interim default model)',
      command: 'npm run build:default-models',
      data: [spec.train, ...(spec.outOfDistribution ? [spec.outOfDistribution] : [])].map((path) => ({ path, sha256: sha256(path) })),
      split: 'sha256 of prompt, 80/10/10',
      tokenizer: { path: TOKENIZER, sha256: sha256(TOKENIZER) },
      config: { epochs: 8, seed: 0, max_length: MAX_LENGTH },
      commit: execSync('git rev-parse HEAD').toString().trim(),
      seconds: Math.round((Date.now() - started) / 1000),
    },
  };
  writeModelFolder(dir, {
    onnx: buildBowRewardGraph({ vocabSize: vocab, numOutputs: 1, tokenWeights: model.weights, positionWeights: new Float32Array(MAX_LENGTH).fill(1), bias: new Float32Array(1) }),
    tokenizerJson: JSON.parse(readFileSync(TOKENIZER, 'utf8')),
    tokenizerConfig: files.tokenizerConfig,
    config: { architectures: ['BagOfWordsRewardModel'], id2label: { 0: spec.name }, vocab_size: vocab },
    manifest,
  });
  console.log(`${spec.name}: ${JSON.stringify(metrics)}`);
}

for (const spec of OBJECTIVES) build(spec);
