// HaF-RM and GRM (--grm-reg dpo) on the helpful data, from scratch with and without the SFT phase
// (issue 11): does a frozen reference that is a language model rather than a random network
// change accuracy, and how often does the DPO term's implicit reward just prefer the longer response?
//
//   node --import tsx bench/sft-reference.ts [--seeds 1,2,3] [--steps 200] [--sft-steps 200] [--jobs 2]
//     [--reuse] [--no-doc] [--out bench/results/sft-reference]
//
// Per seed: one `rmserve train --method sft` (the LM phase, seed s), then four reward runs — haf
// and grm from scratch (reference: the seed's random network) and haf and grm with --init-from the
// SFT folder (reference: the SFT model) — each an `rmserve train` child with one ORT thread, at
// most --jobs at once. Every reward run's manifest gives the test-split accuracy (the trainer's
// forward graph, which the server reproduces: test/train-cli.test.ts) and metrics.implicit_reward
// (src/training/reference.ts: β·(log π − log π_ref) on the test split, its sign against "prefer
// the longer response"); `rmserve eval` scores PandaLM's human votes, never trained on. The model
// size is bench/methods.ts's and models/helpful/1's (d_model 128, 2 layers, BPE 4096, 256 tokens).
// Writes <out>.md and <out>.json and the block between the sft-reference markers of
// docs/training.md. Work files: .rmserve-cache/bench-sft-reference (git-ignored).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { EvalResult } from '../src/eval/index.js';
import type { ImplicitRewardMetrics } from '../src/training/reference.js';
import { clock, CLI, lastJsonLine, readJson, reusedResult, runCli, saveResult } from './train-jobs.js';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    steps: { type: 'string', default: '200' },
    'sft-steps': { type: 'string', default: '200' },
    'sft-lr': { type: 'string', default: '1e-3' },
    lr: { type: 'string', default: '5e-4' },
    warmup: { type: 'string', default: '30' },
    'batch-size': { type: 'string', default: '16' },
    'eval-every': { type: 'string', default: '100' },
    jobs: { type: 'string', default: '2' },
    work: { type: 'string', default: '.rmserve-cache/bench-sft-reference' },
    out: { type: 'string', default: 'bench/results/sft-reference' },
    doc: { type: 'string', default: 'docs/training.md' },
    'no-doc': { type: 'boolean', default: false },
    // keep a run whose folder holds the result of exactly the same command (an interrupted bench goes on)
    reuse: { type: 'boolean', default: false },
  },
});

const DATA = 'data/alpaca-eval/gpt4-judgments.jsonl.gz';
const OOD = 'data/pandalm/testset-v1.json';
const seeds = values.seeds.split(',').map((s) => Number(s.trim()));
// Every run (the SFT phase included) reads the same first steps × batch training pairs, so the
// BPE trained on them — the scratch runs' own, the SFT folder's for the others — is one tokenizer.
const pairs = String(Number(values.steps) * Number(values['batch-size']));
const SIZE = ['--vocab-size', '4096', '--d-model', '128', '--layers', '2', '--heads', '4', '--max-length', '256'];
const COMMON = ['--data', DATA, '--batch-size', values['batch-size'], '--max-train-pairs', pairs, '--threads', '1', '--no-progress'];

type Kind = 'sft' | 'haf' | 'grm';
interface Job {
  id: string;
  kind: Kind;
  seed: number;
  /** the SFT phase this run starts from; undefined: from scratch (or the SFT phase itself) */
  from?: string;
  dir: string;
  checkpoints: string;
  args: string[];
}

const work = values.work;
const sftDir = (seed: number): string => join(work, 'sft', `s${seed}`);
const jobs: Job[] = [];
for (const seed of seeds) {
  const dir = sftDir(seed);
  jobs.push({
    id: `sft-s${seed}`, kind: 'sft', seed, dir, checkpoints: join(work, 'checkpoints', `sft-s${seed}`),
    args: ['--method', 'sft', ...SIZE, '--steps', values['sft-steps'], '--lr', values['sft-lr'], '--warmup', values.warmup, '--eval-every', values['eval-every']],
  });
}
for (const start of ['sft', 'scratch'] as const) {
  for (const seed of seeds) {
    for (const kind of ['haf', 'grm'] as const) {
      const id = `${kind}-${start}-s${seed}`;
      const method = kind === 'haf' ? ['--method', 'haf'] : ['--method', 'grm', '--grm-reg', 'dpo'];
      const init = start === 'sft' ? ['--init-from', sftDir(seed), '--max-length', '256'] : SIZE;
      jobs.push({
        id, kind, seed, ...(start === 'sft' ? { from: `sft-s${seed}` } : {}),
        dir: join(work, 'models', 'helpful', id), checkpoints: join(work, 'checkpoints', id),
        args: [...method, ...init, '--steps', values.steps, '--lr', values.lr, '--warmup', values.warmup, '--eval-every', values['eval-every'], '--no-report'],
      });
    }
  }
}
for (const j of jobs) j.args = [...COMMON, ...j.args, '--seed', String(j.seed), '--out', j.dir, '--checkpoint-dir', j.checkpoints];

// ---- children

interface SftResult {
  kind: 'sft';
  id: string;
  seed: number;
  initialNll: number;
  nll: number;
  bestStep: number;
  seconds: number;
}

interface RewardResult {
  kind: 'haf' | 'grm';
  id: string;
  seed: number;
  start: 'sft' | 'scratch';
  validation: number;
  test: number;
  lengthBaseline: number;
  ood: number;
  oodLengthBaseline: number;
  implicit: ImplicitRewardMetrics;
  bestStep: number;
  seconds: number;
}

type Result = SftResult | RewardResult;

async function runJob(job: Job): Promise<Result> {
  const previous = values.reuse ? reusedResult<Result>(job.dir, job.args) : undefined;
  if (previous !== undefined) return previous;
  rmSync(job.dir, { recursive: true, force: true });
  rmSync(job.checkpoints, { recursive: true, force: true });
  mkdirSync(join(work, 'logs'), { recursive: true });
  const log = join(work, 'logs', `${job.id}.log`);
  writeFileSync(log, `$ node ${[...CLI, 'train', ...job.args].join(' ')}\n`);
  const t0 = performance.now();
  await runCli(['train', ...job.args], log);
  const seconds = Math.round((performance.now() - t0) / 1000);
  let result: Result;
  if (job.kind === 'sft') {
    const info = readJson<{ metrics: { validation_initial: { nll_per_token: number }; validation: { nll_per_token: number }; best_step: number } }>(join(job.dir, 'rmserve-sft.json'));
    result = {
      kind: 'sft', id: job.id, seed: job.seed, initialNll: info.metrics.validation_initial.nll_per_token, nll: info.metrics.validation.nll_per_token,
      bestStep: info.metrics.best_step, seconds,
    };
  } else {
    const oodJson = join(job.dir, 'eval-ood.json');
    await runCli(['eval', '--model', job.dir, '--data', OOD, '--split', 'all', '--threads', '1', '--quiet', '--json', oodJson], log);
    const ood = readJson<EvalResult>(oodJson).files[0];
    const m = readJson<{ metrics: {
      test: { accuracy: number }; validation: { accuracy: number }; baselines: { length: number }; implicit_reward: ImplicitRewardMetrics; train: { best_step: number };
    } }>(join(job.dir, 'rmserve.json')).metrics;
    if (!ood) throw new Error(`${job.id}: rmserve eval wrote no result for ${OOD}`);
    result = {
      kind: job.kind, id: job.id, seed: job.seed, start: job.from ? 'sft' : 'scratch',
      validation: m.validation.accuracy, test: m.test.accuracy, lengthBaseline: m.baselines.length,
      ood: ood.objectives.helpful?.accuracy ?? NaN, oodLengthBaseline: ood.length_baseline.accuracy ?? NaN,
      implicit: m.implicit_reward, bestStep: m.train.best_step, seconds,
    };
  }
  saveResult(job.dir, job.args, result);
  return result;
}

const started = performance.now();
const loadStart = loadavg()[0] as number;
console.log(`sft-reference: ${jobs.length} runs (${seeds.length} SFT phases, ${jobs.length - seeds.length} reward runs), ${values.jobs} at a time; logs in ${join(work, 'logs')}`);

const results: Result[] = [];
const failed: { id: string; error: string }[] = [];
const done = new Set<string>();
const running = new Map<string, Job>();
const queue = [...jobs];
const ticker = setInterval(() => {
  const parts = [...running.values()].map((j) => {
    const last = lastJsonLine(join(j.checkpoints, 'train-metrics.jsonl'));
    const total = j.kind === 'sft' ? values['sft-steps'] : values.steps;
    return `${j.id} ${last ? `step ${String(last.step)}/${total}` : 'preparing'}`;
  });
  console.log(`  [${clock((performance.now() - started) / 1000)}] ${done.size}/${jobs.length} done; ${parts.join(', ') || 'evaluating'}`);
}, 30_000);

/** The next job whose SFT phase is done (a failed phase fails its runs). */
function nextJob(): Job | undefined {
  for (let i = 0; i < queue.length; i++) {
    const job = queue[i] as Job;
    if (job.from === undefined || done.has(job.from) || failed.some((f) => f.id === job.from)) return queue.splice(i, 1)[0];
  }
  return undefined;
}

async function worker(): Promise<void> {
  while (queue.length > 0) {
    const job = nextJob();
    if (!job) {
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    running.set(job.id, job);
    try {
      if (job.from && failed.some((f) => f.id === job.from)) throw new Error(`its SFT phase ${job.from} failed`);
      const r = await runJob(job);
      results.push(r);
      const t = clock((performance.now() - started) / 1000);
      console.log(r.kind === 'sft'
        ? `  [${t}] ${r.id}: validation NLL ${r.initialNll.toFixed(3)} → ${r.nll.toFixed(3)} nats/token (${r.seconds} s)`
        : `  [${t}] ${r.id}: test ${r.test.toFixed(3)}, PandaLM ${r.ood.toFixed(3)}, implicit reward agrees with length ${(100 * r.implicit.longer_agreement).toFixed(1)}% (${r.seconds} s)`);
    } catch (error) {
      failed.push({ id: job.id, error: (error as Error).message });
      console.log(`  ${job.id} FAILED: ${(error as Error).message}`);
    } finally {
      running.delete(job.id);
      done.add(job.id);
    }
  }
}
await Promise.all(Array.from({ length: Math.max(1, Number(values.jobs)) }, () => worker()));
clearInterval(ticker);
const totalSeconds = (performance.now() - started) / 1000;

// ---- table

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]): number => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1)));
const cell = (xs: number[], digits = 3): string => (xs.length === 0 || xs.some(Number.isNaN) ? '–' : `${mean(xs).toFixed(digits)} ± ${sd(xs).toFixed(digits)}`);
const pct = (xs: number[]): string => (xs.length === 0 ? '–' : `${(100 * mean(xs)).toFixed(1)} ± ${(100 * sd(xs)).toFixed(1)} %`);
const reward = results.filter((r): r is RewardResult => r.kind !== 'sft').sort((a, b) => a.seed - b.seed);
const sft = results.filter((r): r is SftResult => r.kind === 'sft').sort((a, b) => a.seed - b.seed);
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() || 'unknown';
const command = ['node --import tsx bench/sft-reference.ts', ...process.argv.slice(2)].join(' ');

const lines: string[] = [];
lines.push(`Generated by \`${command}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${commit}.`);
lines.push('');
lines.push(`- Data: AlpacaEval GPT-4 judgments (\`${DATA}\`, models/helpful/1's data), split 80/10/10 by SHA-256 of the prompt; every run uses the first ${Number(pairs).toLocaleString('en')} training pairs ` +
  `(the same BPE of 4,096 tokens); test split ${reward[0]?.implicit.pairs ?? '?'} pairs; PandaLM human votes, ties dropped (\`${OOD}\`), scored with \`rmserve eval\`.`);
lines.push(`- Model: d_model 128, 2 layers, 4 heads, max length 256 (0.95 M parameters, helpful/1's size). SFT phase: ${values['sft-steps']} steps × ${values['batch-size']} chosen responses, ` +
  `LR ${values['sft-lr']}; reward runs: ${values.steps} steps × ${values['batch-size']} pairs, LR ${values.lr}; warmup ${values.warmup}, cosine; ${values['eval-every'] === '0' ? 'validation at the end only (`--eval-every 0`). ' : `validation every ${values['eval-every']} steps, the best kept. `}` +
  `HaF-RM and GRM at the CLI defaults (HaF rm 1 / dpo 0.2 / β 0.1, zero head; GRM α 0.01 / β 0.1 with \`--grm-reg dpo\`, MLP head, dropout 0.1). Seeds ${seeds.join(', ')}: seed s's runs start from seed s's SFT phase.`);
lines.push(`- Budget: ${jobs.length} runs, ${values.jobs} at a time with one ORT thread each, ${clock(totalSeconds)} (min:s) wall on ${cpus().length} cores ` +
  `(load average ${loadStart.toFixed(1)} at the start, ${(loadavg()[0] as number).toFixed(1)} at the end: the machine is shared).` + (failed.length ? ` Failed: ${failed.map((f) => f.id).join(', ')}.` : ''));
lines.push('');
lines.push('| method | reference | validation acc | test acc | PandaLM acc | implicit reward acc (test) | implicit reward agrees with "longer" | reward head agrees with "longer" | π_ref NLL/token (test) |');
lines.push('|---|---|--:|--:|--:|--:|--:|--:|--:|');
for (const kind of ['haf', 'grm'] as const) {
  for (const start of ['scratch', 'sft'] as const) {
    const rs = reward.filter((r) => r.kind === kind && r.start === start);
    if (rs.length === 0) continue;
    lines.push(`| ${kind === 'haf' ? 'HaF-RM' : 'GRM (dpo)'} | ${start === 'sft' ? 'SFT phase' : 'random init'} | ${cell(rs.map((r) => r.validation))} | ${cell(rs.map((r) => r.test))} | ` +
      `${cell(rs.map((r) => r.ood))} | ${cell(rs.map((r) => r.implicit.accuracy))} | ${pct(rs.map((r) => r.implicit.longer_agreement))} | ` +
      `${pct(rs.map((r) => r.implicit.reward_longer_agreement))} | ${cell(rs.map((r) => r.implicit.reference_nll_per_token), 2)} |`);
  }
}
if (reward[0]) lines.push(`| prefer the longer response | – | – | ${reward[0].lengthBaseline.toFixed(3)} | ${reward[0].oodLengthBaseline.toFixed(3)} | – | 100 % | – | – |`);
lines.push('');
lines.push(`Mean ± sample standard deviation over ${seeds.length} seeds. "Agrees with longer": on the test pairs whose responses differ in token count (untruncated), the share where the margin's sign ` +
  'is "the longer response wins" (a zero margin counts half); the implicit reward is β·[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)] with the exported weights\' LM head ' +
  '(`metrics.implicit_reward` in each manifest). Test accuracy is the trainer\'s scoring of the exported weights (the server\'s, `test/train-cli.test.ts`).' +
  (sft.length ? ` SFT phase, validation NLL per token: ${sft.map((r) => `seed ${r.seed} ${r.initialNll.toFixed(2)} → ${r.nll.toFixed(2)} (best step ${r.bestStep}, ${r.seconds} s)`).join('; ')}; uniform over 4,096 tokens is ${Math.log(4096).toFixed(2)}.` : ''));
lines.push('');
lines.push('<details><summary>Every run</summary>');
lines.push('');
lines.push('| run | best step | validation | test | PandaLM | implicit acc | implicit agrees with longer | reward agrees with longer | π_ref NLL | π NLL | command s |');
lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
for (const r of reward.sort((a, b) => a.id.localeCompare(b.id))) {
  lines.push(`| ${r.id} | ${r.bestStep} | ${r.validation.toFixed(3)} | ${r.test.toFixed(3)} | ${r.ood.toFixed(3)} | ${r.implicit.accuracy.toFixed(3)} | ` +
    `${(100 * r.implicit.longer_agreement).toFixed(1)} % | ${(100 * r.implicit.reward_longer_agreement).toFixed(1)} % | ${r.implicit.reference_nll_per_token.toFixed(2)} | ${r.implicit.policy_nll_per_token.toFixed(2)} | ${r.seconds} |`);
}
lines.push('');
lines.push('</details>');
const table = lines.join('\n');
console.log('\n' + table + '\n');
for (const f of failed) console.log(`failed: ${f.id}: ${f.error}`);

mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(`${values.out}.md`, `# HaF-RM and GRM with and without the SFT phase\n\n${table}\n`);
writeFileSync(`${values.out}.json`, JSON.stringify({
  command, commit, created_at: new Date().toISOString(), options: values, total_seconds: Math.round(totalSeconds), load_start: loadStart, results, failed,
}, null, 1) + '\n');
console.log(`wrote ${values.out}.md and ${values.out}.json`);
if (!values['no-doc']) {
  const start = '<!-- sft-reference:start -->';
  const end = '<!-- sft-reference:end -->';
  const doc = readFileSync(values.doc, 'utf8');
  const i = doc.indexOf(start), j = doc.indexOf(end);
  if (i >= 0 && j > i) {
    writeFileSync(values.doc, doc.slice(0, i) + `${start}\n${table}\n${end}` + doc.slice(j + end.length));
    console.log(`wrote the table into ${values.doc}`);
  } else {
    console.log(`${values.doc} has no ${start} … ${end} block: the table is only in ${values.out}.md`);
  }
}
if (failed.length) process.exitCode = 1;
