// Best-of-n selection with the served models: per prompt, pick the candidate with the highest
// raw-reward sum, z-normalised sum, or LSC conjunction, and count how often the pick is rated below
// its reference by some objective — the failure the conjunction is meant to avoid (LSC paper §3).
// Everything goes through POST /v1/score in-process (app.inject), as a client would send it.
//
//   node --import tsx bench/best-of-n.ts [--models ./models] [--split test|all] [--json out.json]
//
// Data (results in docs/experiments/best-of-n.md):
// - AlpacaEval: per instruction, the outputs of the 16 judged systems and text-davinci-003. The three
//   oldest systems (text-davinci-003, text-davinci-001, alpaca-farm-ppo-human) play the reference
//   policy: their outputs are the `reference.responses`; the other 14 are the candidates. GPT-4's
//   judgment of each candidate against text-davinci-003 gives an outside measure of the pick.
// - HH-RLHF harmless: per prompt the chosen and the rejected response (n = 2), manifest references.
// --split test keeps prompts the shipped models held out (sha256 split, as scripts/build-bow-models.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { createService, type Service } from '../src/service.js';
import type { ChatMessage } from '../src/model/format.js';
import { readPreferenceFile } from '../src/training/data.js';
import { promptUnit } from '../src/training/split.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: './models' },
    split: { type: 'string', default: 'test' },
    json: { type: 'string' },
  },
});
const TEST_ONLY = args.split === 'test';
const REFERENCE_SYSTEMS = new Set(['text_davinci_003', 'text_davinci_001', 'alpaca-farm-ppo-human']);
const log = (message: string): void => console.error(`[best-of-n] ${message}`);

interface Candidate {
  response: string;
  /** AlpacaEval: GPT-4 preferred this over text-davinci-003. */
  beatsBaseline?: boolean;
}
interface PromptSet {
  prompt: ChatMessage[];
  candidates: Candidate[];
  references?: string[];
}

function alpacaEval(): PromptSet[] {
  const lines = gunzipSync(readFileSync('data/alpaca-eval/gpt4-judgments.jsonl.gz')).toString('utf8').split('\n').filter(Boolean);
  const byInstruction = new Map<string, { baseline: string; outputs: Map<string, Candidate>; references: Map<string, string> }>();
  for (const line of lines) {
    const r = JSON.parse(line) as { instruction: string; output_1: string; output_2: string; generator_2: string; preference: number };
    let entry = byInstruction.get(r.instruction);
    if (entry === undefined) {
      entry = { baseline: r.output_1, outputs: new Map(), references: new Map() };
      byInstruction.set(r.instruction, entry);
    }
    if (REFERENCE_SYSTEMS.has(r.generator_2)) entry.references.set(r.generator_2, r.output_2);
    else entry.outputs.set(r.generator_2, { response: r.output_2, beatsBaseline: r.preference === 2 });
  }
  return [...byInstruction.entries()]
    .map(([instruction, e]) => ({
      prompt: [{ role: 'user' as const, content: instruction }],
      candidates: [...e.outputs.values()],
      references: [e.baseline, ...e.references.values()],
    }))
    .filter((s) => s.candidates.length >= 2 && (!TEST_ONLY || promptUnit(s.prompt) >= 0.9));
}

function hhHarmless(): PromptSet[] {
  return readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz')
    .map((p) => ({ prompt: p.prompt, candidates: [{ response: p.chosen }, { response: p.rejected }] }))
    .filter((s) => !TEST_ONLY || promptUnit(s.prompt) >= 0.9);
}

interface Objective {
  raw: number;
  transformed: number;
  reference?: number;
  reference_source?: string;
}
interface Result {
  reward?: number;
  objectives: Record<string, Objective>;
}

async function score(service: Service, payload: object): Promise<{ results: Result[]; model_versions: Record<string, string> }> {
  const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload });
  if (reply.statusCode !== 200) throw new Error(`score: ${reply.statusCode} ${reply.body}`);
  return reply.json();
}

const argmax = (xs: number[]): number => xs.reduce((best, x, i) => (x > xs[best]! ? i : best), 0);

// lsc_min (the worst objective's LSC value) is the hard "and" beside the conjunction's soft one.
type Rule = 'raw_sum' | 'znorm_sum' | 'lsc_conjunction' | 'lsc_min';
const RULES: Rule[] = ['raw_sum', 'znorm_sum', 'lsc_conjunction', 'lsc_min'];

interface Tally {
  prompts: number;
  candidates: number;
  /** Prompts where some candidate is at or above its reference in every objective. */
  avoidable: number;
  below: Record<Rule, number>;
  belowWhenAvoidable: Record<Rule, number>;
  belowByObjective: Record<Rule, Record<string, number>>;
  meanRaw: Record<Rule, Record<string, number>>;
  beatsBaseline: Record<Rule, number>;
  agreeWithConjunction: Record<Rule, number>;
  /** Σ over prompts of min_k (raw_k − r_ref,k) of the pick: how far below (or above) the worst objective is. */
  worstMargin: Record<Rule, number>;
  /** Prompts where this rule's pick is below in some objective and the conjunction's is not, and the reverse. */
  belowOnlyHere: Record<Rule, number>;
  belowOnlyConjunction: Record<Rule, number>;
}

async function run(service: Service, name: string, sets: PromptSet[], source: 'request' | 'manifest', q: number): Promise<Tally> {
  const zero = (): Record<Rule, number> => ({ raw_sum: 0, znorm_sum: 0, lsc_conjunction: 0, lsc_min: 0 });
  const perObjective = (): Record<Rule, Record<string, number>> => ({ raw_sum: {}, znorm_sum: {}, lsc_conjunction: {}, lsc_min: {} });
  const t: Tally = {
    prompts: 0, candidates: 0, avoidable: 0, below: zero(), belowWhenAvoidable: zero(), belowByObjective: perObjective(),
    meanRaw: perObjective(), beatsBaseline: zero(), agreeWithConjunction: zero(), worstMargin: zero(),
    belowOnlyHere: zero(), belowOnlyConjunction: zero(),
  };
  for (const [i, set] of sets.entries()) {
    const items = set.candidates.map((c) => ({ prompt: set.prompt, response: c.response }));
    const reference = source === 'request' && set.references !== undefined ? { responses: set.references } : undefined;
    // The LSC request scores the candidates (and references) once; the other two are cache hits.
    const lsc = await score(service, { items, transform: 'lsc', aggregate: 'conjunction', reference_quantile: q, ...(reference ? { reference } : {}) });
    for (const o of Object.values(lsc.results[0]!.objectives)) {
      if (o.reference_source !== source) throw new Error(`${name}: expected references from ${source}, got ${o.reference_source}`);
    }
    const lscMin = await score(service, { items, transform: 'lsc', aggregate: 'min', reference_quantile: q, ...(reference ? { reference } : {}) });
    const raw = await score(service, { items, transform: 'none', aggregate: 'sum' });
    const z = await score(service, { items, transform: 'znorm', aggregate: 'sum' });
    const picks: Record<Rule, number> = {
      raw_sum: argmax(raw.results.map((r) => r.reward!)),
      znorm_sum: argmax(z.results.map((r) => r.reward!)),
      lsc_conjunction: argmax(lsc.results.map((r) => r.reward!)),
      lsc_min: argmax(lscMin.results.map((r) => r.reward!)),
    };
    const belowIn = (k: number): string[] =>
      Object.entries(lsc.results[k]!.objectives).filter(([, o]) => o.raw < o.reference!).map(([objective]) => objective);
    const avoidable = lsc.results.some((_, k) => belowIn(k).length === 0);
    t.prompts++;
    t.candidates += items.length;
    if (avoidable) t.avoidable++;
    const conjunctionBelow = belowIn(picks.lsc_conjunction).length > 0;
    for (const rule of RULES) {
      const k = picks[rule];
      const below = belowIn(k);
      if (below.length > 0 && !conjunctionBelow) t.belowOnlyHere[rule]++;
      if (below.length === 0 && conjunctionBelow) t.belowOnlyConjunction[rule]++;
      if (below.length > 0) {
        t.below[rule]++;
        if (avoidable) t.belowWhenAvoidable[rule]++;
      }
      for (const objective of below) t.belowByObjective[rule][objective] = (t.belowByObjective[rule][objective] ?? 0) + 1;
      for (const [objective, o] of Object.entries(lsc.results[k]!.objectives)) t.meanRaw[rule][objective] = (t.meanRaw[rule][objective] ?? 0) + o.raw;
      if (set.candidates[k]!.beatsBaseline) t.beatsBaseline[rule]++;
      if (k === picks.lsc_conjunction) t.agreeWithConjunction[rule]++;
      t.worstMargin[rule] += Math.min(...Object.values(lsc.results[k]!.objectives).map((o) => o.raw - o.reference!));
    }
    if ((i + 1) % 100 === 0) log(`${name}: ${i + 1}/${sets.length} prompts`);
  }
  for (const rule of RULES) {
    for (const o of Object.keys(t.meanRaw[rule])) t.meanRaw[rule][o]! /= t.prompts;
    t.worstMargin[rule] /= t.prompts;
  }
  return t;
}

const pct = (n: number, d: number): string => (d === 0 ? '—' : `${((100 * n) / d).toFixed(1)}%`);

function table(name: string, t: Tally, withBaseline: boolean): string {
  const objectives = Object.keys(t.meanRaw.raw_sum).sort();
  const head = ['pick by', 'pick below its reference in ≥1 objective', 'same, where avoidable', ...objectives.map((o) => `below in ${o}`), 'mean worst margin min_k(r_k − r_ref,k)', ...objectives.map((o) => `mean raw ${o}`), 'same pick as LSC conjunction', 'prompts below only with this rule / only with the conjunction', ...(withBaseline ? ['GPT-4 prefers pick over text-davinci-003'] : [])];
  const rows = RULES.map((rule) => [
    rule,
    pct(t.below[rule], t.prompts),
    pct(t.belowWhenAvoidable[rule], t.avoidable),
    ...objectives.map((o) => pct(t.belowByObjective[rule][o] ?? 0, t.prompts)),
    t.worstMargin[rule].toFixed(3),
    ...objectives.map((o) => t.meanRaw[rule][o]!.toFixed(3)),
    pct(t.agreeWithConjunction[rule], t.prompts),
    `${t.belowOnlyHere[rule]} / ${t.belowOnlyConjunction[rule]}`,
    ...(withBaseline ? [pct(t.beatsBaseline[rule], t.prompts)] : []),
  ]);
  return [
    `### ${name}`,
    '',
    `${t.prompts} prompts, ${(t.candidates / t.prompts).toFixed(1)} candidates each; a candidate at or above its reference in every objective exists for ${t.avoidable} (${pct(t.avoidable, t.prompts)}).`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
  ].join('\n');
}

const started = performance.now();
const service = await createService({ modelsRoot: args.models, watch: false, maxItems: 256, cacheSize: 200_000 }, { log });
try {
  const versions = (await score(service, { items: [{ prompt: 'Hi', response: 'Hello.' }] })).model_versions;
  log(`models ${JSON.stringify(versions)}, split ${args.split}`);
  const alpaca = alpacaEval();
  const hh = hhHarmless();
  // Manifest scenarios first: once a prompt's references were sent, later requests for it get the
  // per-prompt cache instead of the manifest (the run checks every reply's reference_source).
  const scenarios = [
    { title: "AlpacaEval — r_ref = rmserve.json 0.85-quantile", sets: alpaca, source: 'manifest', q: 0.85, baseline: true },
    { title: 'AlpacaEval — r_ref = 0.85-quantile of the 4 reference responses in the request', sets: alpaca, source: 'request', q: 0.85, baseline: true },
    { title: 'AlpacaEval — r_ref = median of the 4 reference responses in the request', sets: alpaca, source: 'request', q: 0.5, baseline: true },
    { title: 'HH-RLHF harmless, chosen vs rejected — r_ref = rmserve.json median', sets: hh, source: 'manifest', q: 0.5, baseline: false },
  ] as const;
  const tallies: { title: string; tally: Tally }[] = [];
  for (const s of scenarios) tallies.push({ title: s.title, tally: await run(service, s.title, [...s.sets], s.source, s.q) });
  const out = [
    `models: ${Object.entries(versions).map(([n, v]) => `${n}@${v}`).join(', ')}; split: ${args.split}`,
    '',
    ...scenarios.map((s, i) => table(s.title, tallies[i]!.tally, s.baseline)),
    `(${((performance.now() - started) / 1000).toFixed(1)} s)`,
  ].join('\n');
  console.log(out);
  if (args.json) writeFileSync(args.json, JSON.stringify({ versions, split: args.split, scenarios: tallies }, null, 2));
} finally {
  await service.close();
}
