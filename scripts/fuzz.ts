// Large fuzz runs of every route (issue 14): the property of test/fuzz-routes.test.ts, for as many
// cases as asked, on one in-process service (app.inject(), no sockets). Unlike the test it does not
// stop at the first failure: it counts every 5xx, crash and property violation, keeps the first
// few inputs that broke it, and prints a table (docs/reliability.md has a large run's).
//
//   node --import tsx scripts/fuzz.ts --runs 20000 --seed 1 [--route "POST /v1/score"] [--json out.json] [--codes]
//
// --runs is the total; it is split over the routes in proportion to ROUTE_WEIGHTS (the scoring
// routes, which reach the scorer, get the most). Exit status 1 when anything broke the property.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { FUZZ_TARGETS, RouteFuzzer, describeRequest, routeArbitraries, startFuzzService, type FuzzRequest } from '../test/helpers/route-fuzz.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20000' },
    seed: { type: 'string', default: '1' },
    route: { type: 'string', multiple: true },
    json: { type: 'string' },
    // Also tally error codes per route and kind (to see which inputs reach the scorer).
    codes: { type: 'boolean', default: false },
  },
});

const totalRuns = Number(values.runs);
const seed = Number(values.seed);
if (!Number.isInteger(totalRuns) || totalRuns <= 0 || !Number.isInteger(seed)) throw new Error('--runs and --seed must be integers');

// The scoring routes have the largest input space and reach the most code, so they get more cases.
const ROUTE_WEIGHTS: Record<string, number> = {
  'POST /v1/score': 4,
  'POST /get_reward': 3,
  'POST /predict': 2,
  'POST /classify': 2,
};
const targets = values.route ?? [...FUZZ_TARGETS];
for (const t of targets) if (!FUZZ_TARGETS.includes(t)) throw new Error(`unknown route "${t}"; one of: ${FUZZ_TARGETS.join(', ')}`);
const weightOf = (t: string): number => ROUTE_WEIGHTS[t] ?? 1;
const totalWeight = targets.reduce((sum, t) => sum + weightOf(t), 0);

// A crash is anything thrown outside a request's own promise chain.
let uncaught = 0;
process.on('uncaughtException', (err) => {
  uncaught++;
  console.error('uncaught exception:', err);
});
process.on('unhandledRejection', (err) => {
  uncaught++;
  console.error('unhandled rejection:', err);
});

const fuzz = await startFuzzService();
const fuzzer = new RouteFuzzer(fuzz);
await fuzzer.init();
const codes: Record<string, Record<string, number>> = {};
const started = performance.now();

for (const [index, target] of targets.entries()) {
  const runs = Math.max(1, Math.round((totalRuns * weightOf(target)) / totalWeight));
  const arbitrary = routeArbitraries(fuzz.root).get(target) as fc.Arbitrary<FuzzRequest>;
  const t0 = performance.now();
  // The property always holds here: failures are counted by the fuzzer, so every case runs.
  await fc.check(
    fc.asyncProperty(arbitrary, async (request) => {
      const problem = await fuzzer.run(request);
      if (values.codes) {
        const key = `${request.route} [${request.kind}]`;
        const tally = (codes[key] ??= {});
        const code = problem === undefined ? fuzzer.lastOutcome : `PROBLEM ${problem.slice(0, 60)}`;
        tally[code] = (tally[code] ?? 0) + 1;
      }
      return true;
    }),
    { numRuns: runs, seed: seed + index },
  );
  const s = fuzzer.stats;
  console.log(
    `${target}: ${runs} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s; statuses ${JSON.stringify(s.statuses[target] ?? {})}; ` +
      `5xx so far ${s.fiveXx}, crashes ${s.crashes + uncaught}, violations ${s.violations}`,
  );
}

const s = fuzzer.stats;
const seconds = (performance.now() - started) / 1000;
const total = Object.values(s.cases).reduce((a, b) => a + b, 0);
console.log(`\n${total} cases in ${seconds.toFixed(0)} s, seed ${seed}`);
console.log('| route | cases | 2xx | 4xx | 5xx |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const target of targets) {
  const statuses = s.statuses[target] ?? {};
  const sum = (lo: number, hi: number): number =>
    Object.entries(statuses).filter(([code]) => Number(code) >= lo && Number(code) < hi).reduce((a, [, n]) => a + n, 0);
  console.log(`| ${target} | ${s.cases[target] ?? 0} | ${sum(200, 300)} | ${sum(400, 500)} | ${sum(500, 600)} |`);
}
console.log(`\nby kind of input: ${JSON.stringify(s.kinds)}`);
console.log(`5xx: ${s.fiveXx}; crashes: ${s.crashes + uncaught}; other property violations: ${s.violations}`);
console.log(`known-good checks: ${s.knownGoodChecks} (${s.knownGoodRecomputed} recomputed, not cached); rm raw scores checked against the JS model: ${s.oracleChecks}`);
if (values.codes) for (const [key, tally] of Object.entries(codes).sort()) console.log(`${key}: ${JSON.stringify(tally)}`);
for (const f of s.failures.slice(0, 10)) console.log(`\nFAILURE ${f.route} [${f.kind}]: ${f.problem}\n  ${describeRequest(f.request)}`);
if (values.json) {
  writeFileSync(values.json, JSON.stringify({ seed, runs: totalRuns, seconds, ...s, crashes: s.crashes + uncaught, failures: s.failures.map((f) => ({ ...f, request: describeRequest(f.request) })) }, null, 2));
}
await fuzz.close();
process.exit(s.fiveXx + s.crashes + uncaught + s.violations > 0 ? 1 : 0);
