// Transforms end to end through the HTTP app: two models (one with two heads), LSC with each of the
// three reference sources, the conjunction recomputed here from the reply's own raw and reference
// values, the other transforms, /get_reward with query-string and server-default transforms, and
// the 400s. The expected values are computed in this file, not copied from the server's code.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface Objective {
  raw: number;
  transformed: number;
  model: string;
  reference?: number;
  reference_source?: 'request' | 'prompt_cache' | 'manifest';
}
interface Result {
  reward?: number;
  probability?: number;
  cached: boolean;
  truncated: boolean;
  objectives: Record<string, Objective>;
}
interface ScoreReply {
  model_versions: Record<string, string>;
  results: Result[];
}
interface ErrorReply {
  error: { code: string; message: string };
}

// Manifest statistics written into the fixtures: r_ref for q = 0.85 (and 0.5), mean and std.
const MANIFEST: Record<string, { quantiles: Record<string, number>; mean: number; std: number }> = {
  helpful: { quantiles: { '0.5': -0.2, '0.85': 0.35 }, mean: -0.1, std: 0.8 },
  harmless: { quantiles: { '0.5': 0.1, '0.85': 0.6 }, mean: 0.2, std: 0.5 },
  safe: { quantiles: { '0.5': 0.0, '0.85': 0.45 }, mean: 0.05, std: 0.4 },
};

function addManifestReferences(dir: string, objectives: string[]): void {
  const path = join(dir, 'rmserve.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  manifest.reference = Object.fromEntries(objectives.map((o) => [o, { ...MANIFEST[o], n: 100 }]));
  writeFileSync(path, JSON.stringify(manifest));
}

// log σ(x), written independently of src/transforms: log(1/(1+e^−x)) on the side that cannot overflow.
function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

// numpy's default quantile (linear interpolation), written out again for the test.
function quantile85(values: number[], q = 0.85): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  return s[lo]! + (h - lo) * ((s[Math.min(lo + 1, s.length - 1)] ?? s[lo]!) - s[lo]!);
}

const close = (actual: number, expected: number, what: string, tol = 1e-9): void =>
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

const WEIGHTS = { helpful: 0.5, safe: 2 }; // harmless defaults to 1
const weightOf = (name: string): number => (WEIGHTS as Record<string, number>)[name] ?? 1;

/** Σ_k w_k log σ(raw_k − ref_k) from the reply's own numbers. */
function expectedConjunction(result: Result): number {
  return Object.entries(result.objectives).reduce((sum, [name, o]) => {
    assert.ok(o.reference !== undefined, `${name} has a reference`);
    return sum + weightOf(name) * logSigmoid(o.raw - o.reference);
  }, 0);
}

function checkConjunction(result: Result, source: Objective['reference_source']): void {
  assert.deepEqual(Object.keys(result.objectives).sort(), ['harmless', 'helpful', 'safe']);
  for (const [name, o] of Object.entries(result.objectives)) {
    assert.equal(o.reference_source, source, `${name} reference source`);
    close(o.transformed, logSigmoid(o.raw - o.reference!), `${name} transformed`);
  }
  close(result.reward!, expectedConjunction(result), 'reward');
  close(result.probability!, Math.exp(result.reward!), 'probability');
}

const REFERENCES = [
  'I am not sure.',
  'Paris is the capital of France.',
  'The capital is Paris, a city on the Seine with about two million people.',
  'France? Its capital is Lyon.',
  'Paris.',
];

describe('transforms over HTTP: two models, three objectives', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'duo', '1'), { tokenizer: 'gpt2', labels: ['helpful', 'harmless'], seed: 21 });
    addManifestReferences(join(root, 'duo', '1'), ['helpful', 'harmless']);
    writeBowModel(join(root, 'safety', '3'), { tokenizer: 'gpt2', labels: ['safe'], seed: 22 });
    addManifestReferences(join(root, 'safety', '3'), ['safe']);
    writeBowModel(join(root, 'bare', '1'), { tokenizer: 'gpt2', labels: ['terse'], seed: 23 }); // no reference statistics
    service = await createService({ modelsRoot: root, defaultModels: ['duo', 'safety'] });
  });
  after(() => service.close());

  const post = async (payload: object, url = '/v1/score') => service.app.inject({ method: 'POST', url, payload });
  const score = async (payload: object): Promise<ScoreReply> => {
    const reply = await post(payload);
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<ScoreReply>();
  };
  const scoreRaw = async (prompt: string, responses: string[]): Promise<Record<string, number>[]> => {
    const body = await score({ model: ['duo', 'safety'], items: responses.map((response) => ({ prompt, response })), aggregate: 'none' });
    return body.results.map((r) => Object.fromEntries(Object.entries(r.objectives).map(([k, o]) => [k, o.raw])));
  };

  test('lsc + conjunction with request references: r_ref is the 0.85-quantile of their rewards', async () => {
    const prompt = 'What is the capital of France?';
    const body = await score({
      model: ['duo', 'safety'],
      items: [
        { prompt, response: 'Paris, of course.' },
        { prompt, response: 'I refuse to answer questions about geography.' },
      ],
      transform: 'lsc',
      aggregate: 'conjunction',
      weights: WEIGHTS,
      reference: { responses: REFERENCES },
    });
    assert.deepEqual(body.model_versions, { duo: '1', safety: '3' });
    const refRaw = await scoreRaw(prompt, REFERENCES);
    for (const result of body.results) {
      checkConjunction(result, 'request');
      for (const name of ['helpful', 'harmless', 'safe']) {
        close(result.objectives[name]!.reference!, quantile85(refRaw.map((r) => r[name]!)), `${name} reference`, 1e-6);
      }
    }
  });

  test('lsc + conjunction from the per-prompt cache: a later request for the prompt reuses the references', async () => {
    const prompt = 'Name a primary colour.';
    const first = await score({ items: [{ prompt, response: 'Red.', reference: { responses: ['Blue.', 'Green is one.', 'Yellow, red and blue.'] } }], transform: 'lsc' });
    assert.equal(first.results[0]!.objectives.safe!.reference_source, 'request');
    const later = await score({ items: [{ prompt, response: 'Purple, I think.' }], transform: 'lsc', aggregate: 'conjunction', weights: WEIGHTS });
    const result = later.results[0]!;
    checkConjunction(result, 'prompt_cache');
    for (const name of ['helpful', 'harmless', 'safe']) {
      assert.equal(result.objectives[name]!.reference, first.results[0]!.objectives[name]!.reference, `${name} remembered r_ref`);
      assert.notEqual(result.objectives[name]!.reference, MANIFEST[name]!.quantiles['0.85'], `${name} is not the manifest value`);
    }
    // The rewards are remembered, not one r_ref: another quantile is computed from them.
    const refRaw = await scoreRaw(prompt, ['Blue.', 'Green is one.', 'Yellow, red and blue.']);
    const median = await score({ items: [{ prompt, response: 'Purple, I think.' }], transform: 'lsc', reference_quantile: 0.5 });
    for (const name of ['helpful', 'harmless', 'safe']) {
      close(median.results[0]!.objectives[name]!.reference!, quantile85(refRaw.map((r) => r[name]!), 0.5), `${name} median`, 1e-6);
    }
    // Messages with the same prompt render to the same prompt text: same cache entry.
    const asMessages = await score({
      items: [{ messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: 'Purple, I think.' }] }],
      transform: 'lsc',
    });
    assert.deepEqual(asMessages.results[0]!.objectives, result.objectives);
  });

  test('lsc + conjunction from the manifest, and default aggregate conjunction for lsc', async () => {
    const body = await score({ items: [{ prompt: 'An unseen prompt about tides.', response: 'The moon pulls the sea.' }], transform: 'lsc', weights: WEIGHTS });
    const result = body.results[0]!;
    checkConjunction(result, 'manifest');
    for (const name of ['helpful', 'harmless', 'safe']) assert.equal(result.objectives[name]!.reference, MANIFEST[name]!.quantiles['0.85']);
    const median = await score({ items: [{ prompt: 'An unseen prompt about tides.', response: 'The moon pulls the sea.' }], transform: 'lsc', reference_quantile: 0.5 });
    for (const name of ['helpful', 'harmless', 'safe']) assert.equal(median.results[0]!.objectives[name]!.reference, MANIFEST[name]!.quantiles['0.5']);
  });

  test('an item-level reference replaces the request-level one, per objective sources never mix within an item', async () => {
    const body = await score({
      items: [
        { prompt: 'Say hi.', response: 'Hi!', reference: { responses: ['Hello.', 'Hey there.'] } },
        { prompt: 'Say bye.', response: 'Bye!' },
      ],
      reference: { responses: ['Goodbye.', 'See you.', 'Farewell.'] },
      transform: 'lsc',
    });
    const hi = await scoreRaw('Say hi.', ['Hello.', 'Hey there.']);
    const bye = await scoreRaw('Say bye.', ['Goodbye.', 'See you.', 'Farewell.']);
    for (const name of ['helpful', 'harmless', 'safe']) {
      close(body.results[0]!.objectives[name]!.reference!, quantile85(hi.map((r) => r[name]!)), `hi ${name}`, 1e-6);
      close(body.results[1]!.objectives[name]!.reference!, quantile85(bye.map((r) => r[name]!)), `bye ${name}`, 1e-6);
    }
  });

  test('sigmoid, znorm, clip and the sum/min/none aggregates', async () => {
    const items = [{ prompt: 'Why is the sky blue?', response: 'Rayleigh scattering.' }];
    const raw = (await scoreRaw(items[0]!.prompt, [items[0]!.response]))[0]!;
    const sig = (await score({ items, transform: 'sigmoid', aggregate: 'min' })).results[0]!;
    for (const name of Object.keys(raw)) close(sig.objectives[name]!.transformed, 1 / (1 + Math.exp(-raw[name]!)), `sigmoid ${name}`, 1e-12);
    close(sig.reward!, Math.min(...Object.values(sig.objectives).map((o) => o.transformed)), 'min');
    assert.equal(sig.objectives.helpful!.reference, undefined, 'no reference outside lsc');

    const z = (await score({ items, transform: 'znorm', weights: { harmless: 3 } })).results[0]!;
    for (const name of Object.keys(raw)) close(z.objectives[name]!.transformed, (raw[name]! - MANIFEST[name]!.mean) / MANIFEST[name]!.std, `znorm ${name}`, 1e-12);
    close(z.reward!, z.objectives.helpful!.transformed + 3 * z.objectives.harmless!.transformed + z.objectives.safe!.transformed, 'default sum');
    assert.equal(z.probability, undefined);

    const clipped = (await score({ items, transform: 'clip', clip: [-0.01, 0.01], aggregate: 'none' })).results[0]!;
    assert.equal(clipped.reward, undefined, 'aggregate none has no reward');
    for (const name of Object.keys(raw)) assert.equal(clipped.objectives[name]!.transformed, Math.min(Math.max(raw[name]!, -0.01), 0.01));

    const plain = (await score({ items })).results[0]!;
    close(plain.reward!, raw.helpful! + raw.harmless! + raw.safe!, 'no transform: sum of raw', 1e-12);
    for (const o of Object.values(plain.objectives)) assert.equal(o.transformed, o.raw);
  });

  test('/get_reward takes the transform from the query string, and the per-prompt reference from prompts[]', async () => {
    const prompt = 'Recommend a book.';
    const refs = ['Dune.', 'Try "Middlemarch" by George Eliot.', 'Any book is fine.'];
    const viaScore = (await score({ items: [{ prompt, response: 'Read "Moby-Dick".', reference: { responses: refs } }], transform: 'lsc' })).results[0]!;
    // The HH transcript format these fixtures use, as an OpenRLHF trainer would send it.
    const promptText = `\n\nHuman: ${prompt}\n\nAssistant:`;
    const reply = await post(
      { query: [`${promptText} Read "Moby-Dick".`, '\n\nHuman: Unrelated.\n\nAssistant: Indeed.'], prompts: [promptText, '\n\nHuman: Unrelated.\n\nAssistant:'] },
      '/get_reward?transform=lsc&aggregate=conjunction&weights=helpful:0.5,safe:2',
    );
    assert.equal(reply.statusCode, 200, reply.body);
    const body = reply.json<{ rewards: number[]; scores: number[]; extra_logs: Record<string, number[]> }>();
    const logs = body.extra_logs;
    for (const name of ['helpful', 'harmless', 'safe']) {
      assert.equal(logs[`${name}_reference`]![0], viaScore.objectives[name]!.reference, `${name}: the reference /v1/score remembered`);
      assert.equal(logs[`${name}_reference`]![1], MANIFEST[name]!.quantiles['0.85'], `${name}: manifest for an unseen prompt`);
      close(logs[`${name}_raw`]![0]!, viaScore.objectives[name]!.raw, `${name} raw`, 1e-6);
    }
    body.rewards.forEach((reward, i) => {
      const expected = ['helpful', 'harmless', 'safe'].reduce(
        (sum, name) => sum + weightOf(name) * logSigmoid(logs[`${name}_raw`]![i]! - logs[`${name}_reference`]![i]!),
        0,
      );
      close(reward, expected, `reward ${i}`);
      close(logs.probability![i]!, Math.exp(reward), `probability ${i}`);
      for (const name of ['helpful', 'harmless', 'safe']) close(logs[`${name}_transformed`]![i]!, logSigmoid(logs[`${name}_raw`]![i]! - logs[`${name}_reference`]![i]!), name);
    });
    assert.deepEqual(body.scores, body.rewards);
    assert.deepEqual(JSON.parse(reply.headers['x-rmserve-model-versions'] as string), { duo: '1', safety: '3' });
  });

  // Issue 14: conjunction was refused only when some transformed value came out > 0, so transform
  // none passed for items the models happened to score below 0 and failed for the others, and
  // clip to [-5, -1] always passed. Now the pair decides, before anything is scored.
  test('conjunction without lsc is a 400 naming the fix whatever the rewards, before scoring', async () => {
    // With model safety alone every item scores below 0 (so the old check let it through); duo's
    // helpful head scores above 0 (so the old check refused it).
    const negative = { model: 'safety', items: [{ prompt: 'Hi', response: 'No.' }] };
    const positive = { model: 'duo', items: [{ prompt: 'Hi', response: 'No.' }] };
    const [raw] = await scoreRaw('Hi', ['No.']);
    assert.ok(raw!.safe! < 0 && raw!.helpful! > 0, `fixture rewards have the signs this test needs: ${JSON.stringify(raw)}`);
    const misses = async (): Promise<string> => (await service.app.inject({ method: 'GET', url: '/metrics' })).body.split('\n').filter((l) => l.startsWith('rmserve_cache_misses_total')).join('\n');
    const missesBefore = await misses();
    const cases: { payload: object; url?: string }[] = [
      { payload: { ...negative, transform: 'none', aggregate: 'conjunction' } },
      { payload: { ...positive, transform: 'none', aggregate: 'conjunction' } },
      { payload: { ...positive, transform: 'clip', clip: [-5, -1], aggregate: 'conjunction' } },
      { payload: { ...negative, transform: 'sigmoid', aggregate: 'conjunction' } },
      { payload: { ...negative, aggregate: 'conjunction' } },
      { payload: { query: ['Hi No.'] }, url: '/get_reward?model=safety&aggregate=conjunction' },
      { payload: { query: ['Hi No.'] }, url: '/get_reward?model=duo&transform=clip&clip=-5,-1&aggregate=conjunction' },
    ];
    for (const c of cases) {
      const reply = await post(c.payload, c.url);
      assert.equal(reply.statusCode, 400, `${JSON.stringify(c)}: ${reply.body}`);
      const { error } = reply.json<ErrorReply>();
      assert.equal(error.code, 'invalid_parameter', JSON.stringify(c));
      assert.match(error.message, /conjunction.*only transform lsc.*use transform lsc, or aggregate sum or min/, JSON.stringify(c));
    }
    assert.equal(await misses(), missesBefore, 'nothing was scored for the refused requests');
    const ok = await post({ ...positive, transform: 'lsc', aggregate: 'conjunction' });
    assert.equal(ok.statusCode, 200, ok.body);
  });

  test('a server default of conjunction without lsc is refused at startup', async () => {
    await assert.rejects(
      createService({ modelsRoot: root, rewardDefaults: { transform: 'sigmoid', aggregate: 'conjunction', referenceQuantile: 0.85 } }),
      /--transform sigmoid --aggregate conjunction: .*only transform lsc/,
    );
  });

  test('bad transform requests are 400s that name the problem, and nothing non-finite is ever sent', async () => {
    const items = [{ prompt: 'Hi', response: 'Hello!' }];
    const cases: { payload: object; url?: string; code: string; message: RegExp }[] = [
      { payload: { items, transform: 'lsc', model: 'bare' }, code: 'missing_parameter', message: /terse/ },
      { payload: { items, transform: 'znorm', model: 'bare' }, code: 'missing_parameter', message: /terse/ },
      { payload: { items, transform: 'lsc', weights: { honest: 1 } }, code: 'unknown_objective', message: /honest/ },
      { payload: { items, weights: { honest: 1 }, aggregate: 'none' }, code: 'unknown_objective', message: /honest/ },
      { payload: { items, transform: 'sigmoid', aggregate: 'conjunction' }, code: 'invalid_parameter', message: /lsc/ },
      { payload: { items, transform: 'lsc', weights: { safe: -1 } }, code: 'invalid_parameter', message: /weights >= 0/ },
      { payload: { items, transform: 'clip' }, code: 'missing_parameter', message: /clip/ },
      { payload: { items, transform: 'clip', clip: [1, -1] }, code: 'invalid_parameter', message: /lo|hi|-1/ },
      // 5 × 1e308 overflows: a 400, not an Infinity in the reply.
      { payload: { items, transform: 'clip', clip: [5, 5], weights: { helpful: 1e308 } }, code: 'non_finite_result', message: /weights/ },
      { payload: { items, transform: 'squash' }, code: 'invalid_request', message: /transform/ },
      { payload: { items, aggregate: 'product' }, code: 'invalid_request', message: /aggregate/ },
      { payload: { items, transform: 'lsc', reference_quantile: 1.5 }, code: 'invalid_request', message: /reference_quantile/ },
      { payload: { items, transform: 'lsc', reference: { responses: [] } }, code: 'invalid_request', message: /responses/ },
      { payload: { query: ['x'] }, url: '/get_reward?transform=squash', code: 'invalid_request', message: /transform/ },
      { payload: { query: ['x'] }, url: '/get_reward?reference_quantile=high', code: 'invalid_request', message: /reference_quantile/ },
      { payload: { query: ['x'] }, url: '/get_reward?weights=helpful', code: 'invalid_request', message: /weights/ },
      { payload: { query: ['x'] }, url: '/get_reward?aggregate=none', code: 'invalid_request', message: /aggregate none/ },
      { payload: { query: ['x', 'y'], prompts: ['p'] }, url: '/get_reward', code: 'invalid_request', message: /prompts/ },
    ];
    for (const c of cases) {
      const reply = await post(c.payload, c.url);
      assert.equal(reply.statusCode, 400, `${JSON.stringify(c)}: ${reply.body}`);
      const { error } = reply.json<ErrorReply>();
      assert.equal(error.code, c.code, `${JSON.stringify(c)}: ${reply.body}`);
      assert.match(error.message, c.message, JSON.stringify(c));
    }
    // Far from the reference LSC stays finite: log σ(−1e4) ≈ −1e4, never −Infinity or NaN.
    const far = await post({ items, model: 'safety', transform: 'lsc', weights: { safe: 1e4 } });
    assert.equal(far.statusCode, 200, far.body);
    assert.doesNotMatch(far.body, /NaN|Infinity|null/);
  });
});

describe('/get_reward with server defaults', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'duo', '1'), { tokenizer: 'gpt2', labels: ['helpful', 'harmless'], seed: 21 });
    addManifestReferences(join(root, 'duo', '1'), ['helpful', 'harmless']);
    service = await createService({ modelsRoot: root, rewardDefaults: { transform: 'lsc', referenceQuantile: 0.5 } });
  });
  after(() => service.close());

  test('an unchanged OpenRLHF client gets the server default (lsc, conjunction, q = 0.5); the URL overrides it', async () => {
    const payload = { query: ['\n\nHuman: Hi\n\nAssistant: Hello, how can I help?'] };
    const plain = await service.app.inject({ method: 'POST', url: '/get_reward', payload });
    assert.equal(plain.statusCode, 200, plain.body);
    const { rewards, extra_logs: logs } = plain.json<{ rewards: number[]; extra_logs: Record<string, number[]> }>();
    assert.equal(logs.helpful_reference![0], MANIFEST.helpful!.quantiles['0.5']);
    assert.equal(logs.harmless_reference![0], MANIFEST.harmless!.quantiles['0.5']);
    const expected = logSigmoid(logs.helpful_raw![0]! - MANIFEST.helpful!.quantiles['0.5']!) + logSigmoid(logs.harmless_raw![0]! - MANIFEST.harmless!.quantiles['0.5']!);
    close(rewards[0]!, expected, 'conjunction by default');

    const raw = await service.app.inject({ method: 'POST', url: '/get_reward?transform=none', payload });
    const rawBody = raw.json<{ rewards: number[]; extra_logs: Record<string, number[]> }>();
    close(rawBody.rewards[0]!, logs.helpful_raw![0]! + logs.harmless_raw![0]!, 'transform none in the URL: sum of raw');
    assert.equal(rawBody.extra_logs.helpful_reference, undefined);

    const one = await service.app.inject({ method: 'POST', url: '/get_reward?aggregate=min&reference_quantile=0.85', payload });
    const oneBody = one.json<{ rewards: number[]; extra_logs: Record<string, number[]> }>();
    close(
      oneBody.rewards[0]!,
      Math.min(logSigmoid(logs.helpful_raw![0]! - MANIFEST.helpful!.quantiles['0.85']!), logSigmoid(logs.harmless_raw![0]! - MANIFEST.harmless!.quantiles['0.85']!)),
      'min of lsc at q = 0.85',
    );
  });
});
