// Property-based fuzzing of every route through app.inject() (issue 14): a bounded, seeded run
// for CI. The generators and the property live in test/helpers/route-fuzz.ts; scripts/fuzz.ts
// runs the same property for many more cases (docs/reliability.md has its counts).
//
// FUZZ_SEED and FUZZ_RUNS override the seed and the cases per route, e.g. to replay a failure
// that fast-check printed: FUZZ_SEED=<seed> node --import tsx --test test/fuzz-routes.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { FUZZED_ROUTES, FUZZ_TARGETS, RouteFuzzer, describeRequest, routeArbitraries, startFuzzService, type FuzzService } from './helpers/route-fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? 14);
// ~14 routes × 120 cases × (case + known-good check) keeps this file near 20 s on 2 cores.
const RUNS = Number(process.env.FUZZ_RUNS ?? 120);

describe('fuzzed requests on every route', () => {
  let fuzz: FuzzService;
  let fuzzer: RouteFuzzer;
  before(async () => {
    fuzz = await startFuzzService();
    fuzzer = new RouteFuzzer(fuzz);
    await fuzzer.init();
  });
  after(() => fuzz.close());

  test('the fuzzer has a generator for every registered route', () => {
    // printRoutes draws a tree of path pieces with each route's methods; rebuild the full paths.
    // HEAD twins of GET routes come with them and are covered by the method fuzzing.
    const registered = new Set<string>();
    const tree = fuzz.app.printRoutes({ commonPrefix: false });
    const stack: string[] = [];
    for (const line of tree.split('\n')) {
      const match = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?/.exec(line);
      if (match === null) continue;
      const depth = (match[1] as string).length / 4;
      stack.length = depth;
      stack.push(match[2] as string);
      for (const method of (match[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean)) {
        if (method !== 'HEAD') registered.add(`${method} ${stack.join('')}`);
      }
    }
    const docs = [...registered].filter((r) => r.startsWith('GET /docs'));
    assert.ok(docs.length > 0, tree);
    const missing = [...registered].filter((r) => !r.startsWith('GET /docs') && !FUZZED_ROUTES.includes(r));
    assert.deepEqual(missing, [], `routes without a fuzz generator:\n${tree}`);
  });

  for (const route of FUZZ_TARGETS) {
    test(`${route}: 2xx with its shape or 4xx in the error shape, never 5xx; the known-good score is unchanged`, async () => {
      // The generators need the models root (admin load paths), which exists only once before() ran.
      const arbitrary = routeArbitraries(fuzz.root).get(route);
      assert.ok(arbitrary, route);
      await fc.assert(
        fc.asyncProperty(arbitrary, async (request) => {
          const problem = await fuzzer.run(request);
          assert.equal(problem, undefined, `${problem}\nrequest: ${describeRequest(request)}`);
        }),
        { numRuns: RUNS, seed: SEED, includeErrorInReport: true },
      );
    });
  }

  test('every case reached its route and the known-good item was really rescored now and then', () => {
    const s = fuzzer.stats;
    assert.equal(s.fiveXx, 0);
    assert.equal(s.crashes, 0);
    assert.ok(s.knownGoodRecomputed > 0, `the known-good item was always a cache hit (${s.knownGoodChecks} checks)`);
    assert.ok(s.oracleChecks > 0, 'some rm raw scores were checked against the JS model');
    const scored = s.statuses['POST /v1/score'] ?? {};
    assert.ok((scored['200'] ?? 0) > RUNS / 10, `few valid /v1/score cases reached the scorer: ${JSON.stringify(scored)}`);
  });
});
