// Every training method of `rmserve train`, side by side on the same data, split, model size,
// step count and seeds (issue 4):
//
//   node --import tsx bench/methods.ts [--methods bt,pcrm,haf,grm,labelsmooth] [--seeds 1,2,3]
//     [--steps 300] [--jobs 2] [--task helpful|harmless] [--no-doc] [--reuse]
//
// Each (method, seed) is one `rmserve train` child process (one ORT thread), then two
// `rmserve eval` children score the exported folder the way the server does: the test split of
// the training file (in distribution) and, for `helpful`, PandaLM's human votes (out of
// distribution, never trained on). At most --jobs children run at once. The table (mean ± sample
// standard deviation over seeds, and every run) replaces the block between this task's markers in
// docs/training.md, section "Methods compared"; the prose around the markers is left alone.
// Methods the CLI does not offer yet are skipped and reported. Work files go to
// .rmserve-cache/bench-methods (git-ignored); the whole result also goes to <work>/<task>.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { EvalResult, ObjectiveEvaluation } from '../src/eval/index.js';
import { clock, CLI, lastJsonLine, readJson, reusedResult, runCli, saveResult } from './train-jobs.js';

const { values } = parseArgs({
  options: {
    task: { type: 'string', default: 'helpful' },
    methods: { type: 'string', default: 'bt,pcrm,haf,grm,labelsmooth' },
    seeds: { type: 'string', default: '1,2,3' },
    steps: { type: 'string', default: '300' },
    'batch-size': { type: 'string', default: '16' },
    'd-model': { type: 'string', default: '128' },
    layers: { type: 'string', default: '2' },
    heads: { type: 'string', default: '4' },
    'vocab-size': { type: 'string', default: '4096' },
    'max-length': { type: 'string', default: '256' },
    lr: { type: 'string', default: '5e-4' },
    warmup: { type: 'string', default: '30' },
    'eval-every': { type: 'string', default: '50' },
    // auto = steps × batch size: every run sees the same training pairs once, in its seed's order
    // (and HaF-RM's reference pass and the encoding cover only those)
    'max-train-pairs': { type: 'string', default: 'auto' },
    // extra `rmserve train` flags for one method, e.g. --method-args "grm=--head mlp" (repeatable)
    'method-args': { type: 'string', multiple: true, default: [] },
    jobs: { type: 'string', default: '2' },
    work: { type: 'string', default: '.rmserve-cache/bench-methods' },
    doc: { type: 'string', default: 'docs/training.md' },
    'no-doc': { type: 'boolean', default: false },
    // keep a run whose folder holds results of exactly the same train command (saves time when
    // only a new method was added); off by default so a table is one fresh run
    reuse: { type: 'boolean', default: false },
  },
});

interface Task {
  /** the model NAME the folders are written under, which is also the objective */
  name: string;
  data: string;
  /** out-of-distribution file, evaluated whole (split all) */
  ood?: { path: string; label: string };
  label: string;
}

const TASKS: Record<string, Task> = {
  helpful: {
    name: 'helpful',
    data: 'data/alpaca-eval/gpt4-judgments.jsonl.gz',
    ood: { path: 'data/pandalm/testset-v1.json', label: 'PandaLM human votes (ties dropped)' },
    label: 'AlpacaEval GPT-4 judgments',
  },
  harmless: { name: 'harmless', data: 'data/hh-rlhf/harmless-base-test.jsonl.gz', label: 'HH-RLHF harmless-base' },
};

/**
 * Flags each method needs beyond `--method NAME`. The methods' own hyperparameters stay at the
 * CLI's defaults, listed in docs/design.md, Training losses (PCRM β = (6, 0.001, 0) with TF-IDF similarity; HaF-RM
 * rm_ratio 1, dpo_ratio 0.2, β 0.1; GRM α 0.01, β 0.1; label smoothing ε 0.1).
 */
const METHOD_ARGS: Record<string, string[]> = {
  bt: [],
  labelsmooth: [],
  pcrm: [],
  haf: [],
  grm: [], // the CLI gives grm its MLP head (Dropout 0.1 → Linear → ReLU → Linear) by default
};

const task = TASKS[values.task];
if (!task) throw new Error(`--task must be one of ${Object.keys(TASKS).join(', ')}`);
const seeds = values.seeds.split(',').map((s) => Number(s.trim()));
const jobsAtOnce = Math.max(1, Number(values.jobs));
const work = values.work;
for (const spec of values['method-args']) {
  const eq = spec.indexOf('=');
  if (eq < 1) throw new Error(`--method-args expects METHOD=FLAGS, got "${spec}"`);
  METHOD_ARGS[spec.slice(0, eq)] = spec.slice(eq + 1).split(/\s+/).filter(Boolean);
}

/** The --method choices `rmserve train --help` lists right now (another change may add some). */
function availableMethods(): string[] {
  const help = spawnSync(process.execPath, [...CLI, 'train', '--help'], { encoding: 'utf8' }).stdout.replace(/\s+/g, ' ');
  const m = /--method <name>.*?\(choices: ([^)]*?)(?:, default|\))/.exec(help);
  if (!m) return ['bt'];
  return [...(m[1] as string).matchAll(/"([^"]+)"/g)].map((x) => x[1] as string);
}

const offered = availableMethods();
const wanted = values.methods.split(',').map((s) => s.trim()).filter(Boolean);
const methods = wanted.filter((m) => offered.includes(m));
const missing = wanted.filter((m) => !offered.includes(m));
if (missing.length) console.log(`skipping methods rmserve train does not offer: ${missing.join(', ')} (offered: ${offered.join(', ')})`);
if (methods.length === 0) throw new Error('no method to run');

const maxTrainPairs = values['max-train-pairs'] === 'auto'
  ? String(Number(values.steps) * Number(values['batch-size'])) : values['max-train-pairs'];
const sharedArgs = [
  '--data', task.data,
  '--vocab-size', values['vocab-size'], '--d-model', values['d-model'], '--layers', values.layers, '--heads', values.heads,
  '--max-length', values['max-length'], '--batch-size', values['batch-size'], '--steps', values.steps,
  '--lr', values.lr, '--warmup', values.warmup, '--eval-every', values['eval-every'],
  '--max-train-pairs', maxTrainPairs, '--threads', '1', '--no-progress',
];

interface Job {
  method: string;
  seed: number;
  id: string;
  dir: string;
  args: string[];
}

const jobs: Job[] = methods.flatMap((method) => seeds.map((seed) => {
  const id = `${method}-s${seed}`;
  const dir = join(work, task.name, 'runs', task.name, id);
  const args = [...sharedArgs, '--seed', String(seed), '--method', method, ...(METHOD_ARGS[method] ?? []),
    '--out', dir, '--checkpoint-dir', join(work, task.name, 'checkpoints', id)];
  return { method, seed, id, dir, args };
}));

// ---- running children, at most jobsAtOnce

interface RunResult {
  method: string;
  seed: number;
  /** best validation accuracy (the exported checkpoint's) */
  validation: number;
  bestStep: number;
  /** seconds in the training loop (steps + validation), from the manifest */
  trainSeconds: number;
  /** seconds of the whole `rmserve train` child (data, tokenizer, training, test, export) */
  wallSeconds: number;
  tokensPerSecond: number;
  id: EvalSummary;
  ood?: EvalSummary;
  bagOfWords?: number;
  reused: boolean;
}

interface EvalSummary {
  pairs: number;
  accuracy: number;
  lengthBaseline: number;
  rewardStd: number;
  medianAbsMargin: number;
  ece: number;
}

function summarise(result: EvalResult, objective: string): EvalSummary {
  const file = result.files[0];
  if (!file) throw new Error('eval wrote no file result');
  const o = file.objectives[objective] as ObjectiveEvaluation;
  return {
    pairs: file.pairs,
    accuracy: o.accuracy ?? NaN,
    lengthBaseline: file.length_baseline.accuracy ?? NaN,
    rewardStd: o.rewards.all.std,
    medianAbsMargin: o.margin.abs_median,
    ece: o.calibration.ece,
  };
}

async function runJob(job: Job): Promise<RunResult> {
  const previous = values.reuse ? reusedResult<RunResult>(job.dir, job.args) : undefined;
  if (previous !== undefined) return { ...previous, reused: true };
  rmSync(job.dir, { recursive: true, force: true });
  rmSync(join(work, task.name, 'checkpoints', job.id), { recursive: true, force: true });
  mkdirSync(job.dir, { recursive: true });
  const log = join(work, task.name, 'logs', `${job.id}.log`);
  mkdirSync(join(work, task.name, 'logs'), { recursive: true });
  writeFileSync(log, `$ node ${[...CLI, 'train', ...job.args].join(' ')}\n`);
  const t0 = performance.now();
  await runCli(['train', ...job.args], log);
  const wallSeconds = (performance.now() - t0) / 1000;

  const idJson = join(job.dir, 'eval-test.json');
  await runCli(['eval', '--model', job.dir, '--data', task.data, '--split', 'test', '--threads', '1', '--quiet', '--json', idJson], log);
  let ood: EvalSummary | undefined;
  if (task.ood) {
    const oodJson = join(job.dir, 'eval-ood.json');
    await runCli(['eval', '--model', job.dir, '--data', task.ood.path, '--split', 'all', '--threads', '1', '--quiet', '--json', oodJson], log);
    ood = summarise(readJson<EvalResult>(oodJson), task.name);
  }
  interface Manifest {
    metrics: {
      validation?: { accuracy: number };
      test?: { accuracy: number };
      baselines?: { bag_of_words?: number };
      train: { best_step: number; seconds: number; tokens_per_second: number };
    };
  }
  const manifest = readJson<Manifest>(join(job.dir, 'rmserve.json'));
  const id = summarise(readJson<EvalResult>(idJson), task.name);
  // The trainer scored the same test split with its own forward graph: the two must agree.
  const trainerTest = manifest.metrics.test?.accuracy;
  if (trainerTest !== undefined && Math.abs(trainerTest - id.accuracy) > 2e-3) {
    console.log(`  warning: ${job.id}: trainer test accuracy ${trainerTest.toFixed(4)} ≠ eval ${id.accuracy.toFixed(4)}`);
  }
  const result: RunResult = {
    method: job.method, seed: job.seed,
    validation: manifest.metrics.validation?.accuracy ?? NaN,
    bestStep: manifest.metrics.train.best_step,
    trainSeconds: manifest.metrics.train.seconds,
    wallSeconds: Math.round(wallSeconds),
    tokensPerSecond: manifest.metrics.train.tokens_per_second,
    id,
    ...(ood ? { ood } : {}),
    ...(manifest.metrics.baselines?.bag_of_words !== undefined ? { bagOfWords: manifest.metrics.baselines.bag_of_words } : {}),
    reused: false,
  };
  saveResult(job.dir, job.args, result);
  return result;
}

const started = performance.now();
const loadAtStart = loadavg()[0] as number;
console.log(`${task.name}: ${methods.length} methods × ${seeds.length} seeds = ${jobs.length} runs, ${jobsAtOnce} at a time, ${values.steps} steps each (logs: ${join(work, task.name, 'logs')})`);

const results: RunResult[] = [];
const failures: { id: string; error: string }[] = [];
const running = new Map<string, Job>();
const queue = [...jobs];
const ticker = setInterval(() => {
  const parts = [...running.values()].map((j) => {
    const last = lastJsonLine(join(j.dir, 'train-metrics.jsonl'));
    return `${j.id} ${last ? `step ${String(last.step)}/${values.steps}` : 'starting'}`;
  });
  console.log(`  [${clock((performance.now() - started) / 1000)}] ${results.length + failures.length}/${jobs.length} done; ${parts.join(', ') || 'evaluating'}`);
}, 30_000);

async function worker(): Promise<void> {
  for (let job = queue.shift(); job; job = queue.shift()) {
    running.set(job.id, job);
    try {
      const r = await runJob(job);
      results.push(r);
      console.log(`  [${clock((performance.now() - started) / 1000)}] ${job.id}${r.reused ? ' (reused)' : ''}: validation ${r.validation.toFixed(3)} (step ${r.bestStep}), ` +
        `test ${r.id.accuracy.toFixed(3)}` + (r.ood ? `, out of distribution ${r.ood.accuracy.toFixed(3)}` : '') + `, train ${r.trainSeconds} s`);
    } catch (error) {
      failures.push({ id: job.id, error: (error as Error).message });
      console.log(`  ${job.id} FAILED: ${(error as Error).message}`);
    } finally {
      running.delete(job.id);
    }
  }
}
await Promise.all(Array.from({ length: jobsAtOnce }, () => worker()));
clearInterval(ticker);
let totalSeconds = (performance.now() - started) / 1000;
let createdAt = new Date().toISOString();
let commit = gitCommit();
let loadAtEnd = loadavg()[0] as number;
let loadAtBegin = loadAtStart;
// Every run reused (a table rebuilt without training): the budget is the one that produced them.
const reusedAll = results.length > 0 && results.every((r) => r.reused);
const previousPath = join(work, `${task.name}.json`);
if (reusedAll && existsSync(previousPath)) {
  const previous = readJson<{ total_seconds: number; load_start?: number; load_end?: number; created_at?: string; commit?: string }>(previousPath);
  if (previous.created_at) createdAt = previous.created_at;
  if (previous.commit) commit = previous.commit;
  totalSeconds = previous.total_seconds;
  loadAtBegin = previous.load_start ?? NaN;
  loadAtEnd = previous.load_end ?? NaN;
}

// ---- table

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
/** sample standard deviation (n − 1); 0 for one value */
const sd = (xs: number[]): number => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};
const cell = (xs: number[], digits = 3): string => (xs.length === 0 || xs.some(Number.isNaN) ? '–' : `${mean(xs).toFixed(digits)} ± ${sd(xs).toFixed(digits)}`);

const byMethod = methods.map((method) => ({ method, runs: results.filter((r) => r.method === method).sort((a, b) => a.seed - b.seed) }))
  .filter((m) => m.runs.length > 0);
// By mean validation accuracy; an exact tie (validation accuracies are multiples of 1/pairs, so
// seeds' sums can coincide) goes to the smaller spread over seeds. Test sets never decide.
const ranking = [...byMethod].sort((a, b) => {
  const va = a.runs.map((r) => r.validation), vb = b.runs.map((r) => r.validation);
  const d = mean(vb) - mean(va);
  return Math.abs(d) > 1e-9 ? d : sd(va) - sd(vb);
});
const best = ranking[0]?.method;

const oodHead = task.ood ? ' out-of-distribution acc |' : '';
const oodRule = task.ood ? '--:|' : '';
const lines: string[] = [];
lines.push(`Generated by \`node --import tsx bench/methods.ts --task ${task.name} --methods ${wanted.join(',')} --seeds ${seeds.join(',')} --steps ${values.steps}\``);
lines.push(`on ${createdAt.slice(0, 16).replace('T', ' ')} UTC, commit ${commit}` + (reusedAll ? ' (the runs; the table was rebuilt from them with `--reuse`).' : '.'));
lines.push('');
lines.push(`- Data: ${task.label} (\`${task.data}\`), split 80/10/10 by SHA-256 of the prompt` +
  (results[0] ? ` (${results[0].id.pairs} test pairs)` : '') +
  (task.ood ? `; out of distribution: ${task.ood.label} (\`${task.ood.path}\`${results[0]?.ood ? `, ${results[0].ood.pairs} pairs` : ''})` : '') + '.');
lines.push(`- Model: d_model ${values['d-model']}, ${values.layers} layers, ${values.heads} heads, BPE vocabulary ${values['vocab-size']}, max length ${values['max-length']}; ` +
  `${values.steps} steps × ${values['batch-size']} pairs (${trainingPairsText()}), LR ${values.lr} (warmup ${values.warmup}, cosine), validation every ${values['eval-every']} steps ` +
  `and the best validation checkpoint exported. Seeds ${seeds.join(', ')} (initial weights and batch order; the split is fixed).`);
lines.push(`- Method flags beyond \`--method\`: ${methods.map((m) => `${m}: ${(METHOD_ARGS[m] ?? []).length ? `\`${(METHOD_ARGS[m] ?? []).join(' ')}\`` : 'none'}`).join('; ')}; every other hyperparameter is the CLI default.`);
lines.push(`- Budget: ${jobs.length} runs, ${jobsAtOnce} at a time with one ORT thread each, ${clock(totalSeconds)} (min:s) wall in all on ${cpus().length} cores ` +
  `(load average ${loadAtBegin.toFixed(1)} at the start, ${loadAtEnd.toFixed(1)} at the end: other jobs shared the machine, so times are indicative).` +
  (missing.length ? ` Not run (not offered by \`rmserve train\` at the time): ${missing.join(', ')}.` : '') +
  (failures.length ? ` Failed: ${failures.map((f) => f.id).join(', ')}.` : ''));
lines.push('');
lines.push(`| method | validation acc | test acc (in distribution) |${oodHead} reward std (test) | median \\|margin\\| (test) | training loop (s) | train command (s) |`);
lines.push(`|---|--:|--:|${oodRule}--:|--:|--:|--:|`);
for (const { method, runs } of byMethod) {
  const name = method === best ? `**${method}**` : method;
  lines.push(`| ${name} | ${cell(runs.map((r) => r.validation))} | ${cell(runs.map((r) => r.id.accuracy))} |` +
    (task.ood ? ` ${cell(runs.map((r) => r.ood?.accuracy ?? NaN))} |` : '') +
    ` ${cell(runs.map((r) => r.id.rewardStd), 2)} | ${cell(runs.map((r) => r.id.medianAbsMargin), 2)} | ${cell(runs.map((r) => r.trainSeconds), 0)} | ${cell(runs.map((r) => r.wallSeconds), 0)} |`);
}
if (results.length) {
  lines.push(`| prefer the longer response | – | ${cell(results.slice(0, 1).map((r) => r.id.lengthBaseline))} |` +
    (task.ood ? ` ${cell(results.slice(0, 1).map((r) => r.ood?.lengthBaseline ?? NaN))} |` : '') + ' – | – | – | – |');
  const bow = results.filter((r) => r.bagOfWords !== undefined);
  if (bow.length) lines.push(`| bag-of-words BT (trainer's baseline) | – | ${cell(bow.map((r) => r.bagOfWords as number))} |${task.ood ? ' – |' : ''} – | – | – | – |`);
}
lines.push('');
lines.push(`Mean ± sample standard deviation over ${seeds.length} seeds; bold: the best mean validation accuracy (an exact tie goes to the smaller spread). ` +
  'Accuracies are pairwise (ties count half), scored by `rmserve eval` through the server\'s tokenizer and formatter; ' +
  'reward std is over all test responses, margin = r(chosen) − r(rejected); the training loop is the optimizer steps and validation passes of one run; the train command adds reading, BPE, encoding, HaF-RM\'s and GRM-DPO\'s reference pass, the test scoring, export and report. ' +
  'The baselines use the responses\' token counts (the length baseline is the same for every run: the BPE is trained on the fixed training split).');
lines.push('');
lines.push('<details><summary>Every run</summary>');
lines.push('');
lines.push(`| method | seed | best step | validation | test |${task.ood ? ' out of distribution |' : ''} reward std | median \\|margin\\| | ECE (test) | loop s | command s | tokens/s |`);
lines.push(`|---|--:|--:|--:|--:|${task.ood ? '--:|' : ''}--:|--:|--:|--:|--:|--:|`);
for (const { runs } of byMethod) {
  for (const r of runs) {
    lines.push(`| ${r.method} | ${r.seed} | ${r.bestStep} | ${r.validation.toFixed(3)} | ${r.id.accuracy.toFixed(3)} |` +
      (task.ood ? ` ${r.ood ? r.ood.accuracy.toFixed(3) : '–'} |` : '') +
      ` ${r.id.rewardStd.toFixed(2)} | ${r.id.medianAbsMargin.toFixed(2)} | ${r.id.ece.toFixed(3)} | ${r.trainSeconds} | ${r.wallSeconds} | ${r.tokensPerSecond.toLocaleString('en')} |`);
  }
}
lines.push('');
lines.push('</details>');
const table = lines.join('\n');

console.log('\n' + table + '\n');
if (best) console.log(`best by mean validation accuracy: ${best} (${ranking.map((m) => `${m.method} ${mean(m.runs.map((r) => r.validation)).toFixed(4)}`).join(', ')})`);
for (const f of failures) console.log(`failed: ${f.id}: ${f.error}`);

mkdirSync(join(work), { recursive: true });
writeFileSync(join(work, `${task.name}.json`), JSON.stringify({
  task, methods, missing, seeds, options: values, total_seconds: Math.round(totalSeconds), load_start: loadAtBegin, load_end: loadAtEnd, created_at: createdAt, commit, best, results, failures,
}, null, 1));

if (!values['no-doc']) {
  writeMarkedBlock(values.doc, task.name, table);
  console.log(`wrote the table into ${values.doc} (section "Methods compared", task ${task.name})`);
}
if (failures.length) process.exitCode = 1;

/** How much of the training split the runs used, from the trainer's "split by prompt" log line. */
function trainingPairsText(): string {
  for (const j of jobs) {
    const log = join(work, task.name, 'logs', `${j.id}.log`);
    const m = existsSync(log) ? /split by prompt: (\d+) train \(using (\d+)\)/.exec(readFileSync(log, 'utf8')) : null;
    if (!m) continue;
    const splitTrain = Number(m[1]), used = Number(m[2]);
    const epochs = (Number(values.steps) * Number(values['batch-size'])) / used;
    return used < splitTrain
      ? `the first ${used.toLocaleString('en')} of ${splitTrain.toLocaleString('en')} training pairs, ${epochs.toFixed(1)} epochs`
      : `all ${splitTrain.toLocaleString('en')} training pairs, ${epochs.toFixed(1)} epochs`;
  }
  return `at most ${maxTrainPairs} training pairs`;
}

function gitCommit(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/**
 * Replace the block between `<!-- methods:TASK:start -->` and `<!-- methods:TASK:end -->` in the
 * "Methods compared" section, creating the section (at the end) or the block (at the section's
 * end) when missing. Everything outside the markers is hand-written and kept.
 */
function writeMarkedBlock(path: string, name: string, body: string): void {
  const start = `<!-- methods:${name}:start -->`;
  const end = `<!-- methods:${name}:end -->`;
  const block = `${start}\n${body}\n${end}`;
  let doc = readFileSync(path, 'utf8');
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) {
    doc = doc.slice(0, i) + block + doc.slice(j + end.length);
  } else {
    const heading = '## Methods compared';
    const h = doc.indexOf(`\n${heading}\n`);
    if (h < 0) {
      doc = doc.replace(/\n*$/, '\n') + `\n${heading}\n\n${block}\n`;
    } else {
      const next = doc.indexOf('\n## ', h + heading.length + 1);
      const at = next < 0 ? doc.length : next;
      doc = doc.slice(0, at).replace(/\n*$/, '\n') + `\n${block}\n` + (next < 0 ? '' : doc.slice(at));
    }
  }
  writeFileSync(path, doc);
}
