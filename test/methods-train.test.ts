import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { readPreferenceFile } from '../src/training/data.js';
import { completeTokenizerConfig, PairEncoder } from '../src/training/encode.js';
import { LogProbForward, weightsToTensors } from '../src/training/evaluate.js';
import { GraphBuilder } from '../src/training/graph/builder.js';
import { lossConfig, lossNeeds } from '../src/training/losses.js';
import { makeStepBatch } from '../src/training/loop.js';
import { buildLossGradGraph } from '../src/training/step.js';
import { responseTokens } from '../src/training/batch.js';
import { MODEL_OPSET, buildForward, declareParamInputs, defaultModelConfig, initWeights } from '../src/training/model.js';
import { DEFAULT_TRAIN_OPTIONS, REFERENCE_QUANTILES, pcrmPriors, runTraining, type TrainRunOptions } from '../src/training/pipeline.js';
import { TfidfModel } from '../src/training/similarity.js';
import { SimilarityEncoder } from '../src/training/similarity-encoder.js';
import { parseManifest } from '../src/model/manifest.js';
import { createService } from '../src/service.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

const DATA = 'data/hh-rlhf/harmless-base-test.jsonl.gz';
const pairs = readPreferenceFile(DATA).slice(0, 60);

function encoderFor(maxLength: number): PairEncoder {
  const bpe = trainByteLevelBpe(pairs.flatMap((p) => [...p.prompt.map((m) => m.content), p.chosen, p.rejected]), { vocabSize: 400 });
  const json = bpe.tokenizerJson as unknown as Record<string, unknown>;
  return new PairEncoder({ tokenizerJson: json, tokenizerConfig: completeTokenizerConfig(json, { ...bpe.tokenizerConfig }, maxLength) }, maxLength);
}

test('the response start found by the encoder marks exactly the response tokens, truncated or not', () => {
  for (const maxLength of [1024, 48]) {
    const encoder = encoderFor(maxLength);
    let truncated = 0;
    for (const p of pairs) {
      for (const response of [p.chosen, p.rejected]) {
        const e = encoder.encodeWithStart(p.prompt, response);
        assert.deepEqual(e.ids, encoder.encodeResponse(p.prompt, response).ids, 'same ids as the server path');
        const own = encoder.tokenizer.encode(response, { add_special_tokens: false }).ids;
        const tail = e.ids.slice(e.start);
        if (e.truncated) truncated++;
        if (own.length < maxLength) {
          // The whole response, and nothing of the prompt: it decodes to the response text.
          assert.equal(encoder.tokenizer.decode(tail, { skip_special_tokens: true }).trim(), response.trim());
        } else {
          assert.equal(e.start, 1, 'a response longer than the model keeps fills it (token 0 is never predicted)');
        }
      }
    }
    if (maxLength === 48) assert.ok(truncated > 10, 'truncation is exercised');
  }
});

test('LogProbForward sums the LM head\'s log-probs of the response tokens only', async () => {
  const encoder = encoderFor(512);
  const c = defaultModelConfig({ vocabSize: encoder.vocabSize, dModel: 16, nLayers: 1, nHeads: 2, maxLength: 512 });
  const weights = initWeights({ ...c, initStd: 0.3 }, 3);
  const rows = pairs.slice(0, 12).map((p) => encoder.encodeWithStart(p.prompt, p.chosen)).filter((r) => !r.truncated).slice(0, 5);
  assert.equal(rows.length, 5);
  const forward = await LogProbForward.create(c);
  const logp = await forward.logProbs(weightsToTensors(c, weights), rows.map((r) => r.ids), rows.map((r) => r.start), encoder.padId);
  await forward.release();

  // The same from the LM logits, one row at a time, in plain JS.
  const b = new GraphBuilder('lm', { opset: MODEL_OPSET });
  const params = declareParamInputs(b, c);
  const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
  b.output(buildForward(b, c, params, ids, mask, { lmHead: true }).lmLogits!, 'lm');
  const session = await ort.InferenceSession.create(b.toModelProto());
  for (const [i, row] of rows.entries()) {
    const T = row.ids.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(row.ids.map(BigInt)), [1, T]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    };
    for (const [name, t] of weightsToTensors(c, weights)) feeds[name] = t;
    const lm = (await session.run(feeds)).lm!.data as Float32Array;
    const V = c.vocabSize;
    let sum = 0;
    for (let t = row.start; t < T; t++) {
      const logits = lm.subarray((t - 1) * V, t * V);
      const max = Math.max(...logits);
      const lse = max + Math.log(logits.reduce((a, x) => a + Math.exp(x - max), 0));
      sum += (logits[row.ids[t]!] as number) - lse;
    }
    assert.ok(row.start > 1 && row.start < T, 'the row has prompt and response tokens');
    assert.ok(Math.abs(logp[i]! - sum) < 1e-3 * Math.max(1, Math.abs(sum)), `row ${i}: graph ${logp[i]} vs JS ${sum}`);
  }
  await session.release();

  // The step graph reads the same log π: GRM with α = 1 and plain SFT is −mean log π(y_c), from
  // the LM head run on the chosen rows only; with DPO-noref on both.
  const chosen = rows.slice(0, 2);
  const rejected = rows.slice(2, 4);
  const lossOf = async (reg: 'plain-sft' | 'dpo-noref'): Promise<number> => {
    const loss = lossConfig({ method: 'grm', grm: { alpha: 1, beta: 1, reg } });
    const batch = makeStepBatch(
      chosen.map((r, i) => ({ chosen: r.ids, rejected: rejected[i]!.ids, chosenStart: r.start, rejectedStart: rejected[i]!.start, truncated: false, margin: 0, objective: 0 })),
      1, encoder.padId, lossNeeds(loss),
    );
    assert.equal(batch.lmSegments!.dims[0], reg === 'plain-sft' ? 2 : 4, 'the LM head runs on the rows the regulariser reads');
    const step = await ort.InferenceSession.create(buildLossGradGraph(c, loss, 'float32'));
    const feeds: Record<string, ort.Tensor> = {
      input_ids: batch.inputIds, attention_mask: batch.attentionMask, margin: batch.margin, objective: batch.objective,
      lm_positions: batch.lmPositions!, lm_targets: batch.lmTargets!, lm_segments: batch.lmSegments!,
    };
    for (const [name, t] of weightsToTensors(c, weights)) feeds[name] = t;
    const out = await step.run(feeds, ['loss']);
    await step.release();
    return (out.loss!.data as Float32Array)[0]!;
  };
  const sft = await lossOf('plain-sft');
  const expected = -(logp[0]! + logp[1]!) / 2;
  assert.ok(Math.abs(sft - expected) < 1e-3 * Math.abs(expected), `plain-sft ${sft} vs −mean log π(y_c) ${expected}`);
  const noref = await lossOf('dpo-noref');
  const nls = (x: number): number => Math.log1p(Math.exp(-x));
  const expectedDpo = (nls(logp[0]! - logp[2]!) + nls(logp[1]! - logp[3]!)) / 2;
  assert.ok(Math.abs(noref - expectedDpo) < 1e-3 * Math.max(1, expectedDpo), `dpo-noref ${noref} vs ${expectedDpo}`);
});

function tinyRun(dir: string, overrides: Partial<TrainRunOptions>): TrainRunOptions {
  return {
    ...DEFAULT_TRAIN_OPTIONS,
    data: [DATA], out: join(dir, 'models', 'tiny', '1'), checkpointDir: join(dir, 'ckpt'),
    vocabSize: 384, dModel: 32, layers: 1, heads: 2, maxLength: 64, batchSize: 16, maxTrainPairs: 64,
    optimizer: { ...DEFAULT_TRAIN_OPTIONS.optimizer, lr: 3e-3, warmup: 2 }, steps: 8, threads: 1,
    evalEvery: 0, log: () => {}, progress: false,
    ...overrides,
  };
}

test('each method trains and exports a model whose manifest carries the LSC reference statistics, with report.html beside it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-methods-'));
  try {
    const runs: [string, Partial<TrainRunOptions>][] = [
      ['pcrm', { loss: lossConfig({ method: 'pcrm', pcrm: { beta1: 0.5, beta2: 0.001, beta3: 0, similarity: 'length' } }) }],
      ['haf', { loss: lossConfig({ method: 'haf' }) }],
      ['grm', { loss: lossConfig({ method: 'grm', grm: { alpha: 0.1, beta: 0.1, reg: 'dpo' } }), head: 'mlp', headHidden: 16, headDropout: 0.1 }],
    ];
    for (const [method, overrides] of runs) {
      const r = await runTraining(tinyRun(join(dir, method), overrides));
      const raw = JSON.parse(readFileSync(join(r.outDir, 'rmserve.json'), 'utf8')) as unknown;
      const manifest = parseManifest(raw);
      const ref = manifest.reference?.reward;
      assert.ok(ref, `${method}: reference statistics for the objective`);
      const validation = (manifest.metrics as { splits: { validation: number } }).splits.validation;
      assert.equal(ref.n, 2 * validation, 'chosen and rejected of every validation pair');
      assert.deepEqual(Object.keys(ref.quantiles), REFERENCE_QUANTILES.map(String));
      const q = REFERENCE_QUANTILES.map((k) => ref.quantiles[String(k)]!);
      q.slice(1).forEach((v, i) => assert.ok(v >= q[i]!, `${method}: quantiles rise`));
      assert.ok(ref.std > 0 && q[0]! <= ref.mean && ref.mean <= q[5]!, `${method}: mean ${ref.mean} within the quantiles, std ${ref.std}`);
      assert.equal((manifest.provenance as { method: string }).method, method);
      const terms = Object.keys(r.loop.steps[0]!.terms);
      assert.ok(terms.includes(method === 'pcrm' ? 'prior' : method === 'haf' ? 'dpo' : 'reg'), `${method}: its own loss term is logged (${terms})`);
      const report = join(r.outDir, 'report.html');
      assert.ok(existsSync(report), `${method}: report.html`);
      const html = readFileSync(report, 'utf8');
      assert.match(html, /<svg/);
      assert.ok(html.includes(method));
      assert.match(html, /<h2>Evaluation<\/h2>/, `${method}: the report evaluates the exported model on the test split`);
      assert.match(html, /<h2>Training<\/h2>/);

      // The server's LSC transform takes r_ref from these statistics (quantile 0.85 by default).
      const service = await createService({ modelsRoot: join(dir, method, 'models') });
      try {
        const p = pairs[0]!;
        const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'tiny', items: [{ prompt: p.prompt, response: p.chosen }], transform: 'lsc' } });
        assert.equal(reply.statusCode, 200, reply.body);
        const o = (reply.json() as { results: { objectives: Record<string, { raw: number; transformed: number; reference: number; reference_source: string }> }[] }).results[0]!.objectives.reward!;
        assert.equal(o.reference_source, 'manifest');
        assert.equal(o.reference, ref.quantiles['0.85']);
        assert.ok(Math.abs(o.transformed - -Math.log1p(Math.exp(o.reference - o.raw))) < 1e-6, `lsc = log σ(r − r_ref): ${o.transformed}`);
      } finally {
        await service.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PCRM priors: δ* from the length ratio, TF-IDF fitted on the training pairs, or an ONNX encoder', async () => {
  const few = pairs.slice(0, 6);
  const tokenizer = encoderFor(256).tokenizer;
  const beta = { beta1: 2, beta2: 0.5, beta3: -1 };
  const count = (t: string): number => tokenizer.encode(t, { add_special_tokens: false }).ids.length;

  const length = await pcrmPriors(few, lossConfig({ method: 'pcrm', pcrm: { ...beta, similarity: 'length' } }), tokenizer);
  few.forEach((p, i) => {
    const [a, b] = [count(p.chosen), count(p.rejected)];
    const s = Math.min(a, b) / Math.max(a, b);
    assert.ok(Math.abs(length.similarity[i]! - s) < 1e-12);
    assert.ok(Math.abs(length.deltaStar[i]! - (2 / (s + 0.5) - 1)) < 1e-12, 'δ* = β1/(s + β2) + β3');
  });

  const tfidf = await pcrmPriors(few, lossConfig({ method: 'pcrm', pcrm: { ...beta, similarity: 'tfidf' } }), tokenizer);
  const model = TfidfModel.fit(few.flatMap((p) => [p.chosen, p.rejected]));
  few.forEach((p, i) => assert.equal(tfidf.similarity[i], model.similarity(p.chosen, p.rejected)));
  assert.ok(tfidf.similarity.every((s) => s >= 0.5 && s <= 1), 'angular similarity of clamped cosines lies in [0.5, 1]');

  // An "encoder" whose mean-pooled embedding is [1, mean(ids)/1000] (as in similarity-encoder.test.ts).
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-pcrm-encoder-'));
  try {
    const b = new GraphBuilder('tiny_encoder');
    const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
    const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
    const m = b.unsqueeze(b.cast(mask, 'float32'), [2]);
    const x = b.unsqueeze(b.cast(ids, 'float32'), [2]);
    b.output(b.mul(b.add(b.mul(x, b.constant('float32', [1, 1, 2], [0, 0.001])), b.constant('float32', [1, 1, 2], [1, 0])), m), 'last_hidden_state');
    writeFileSync(join(dir, 'model.onnx'), b.toModelProto());
    copyFileSync('data/tokenizers/bert-base-uncased/tokenizer.json', join(dir, 'tokenizer.json'));
    const enc = await pcrmPriors(few, lossConfig({ method: 'pcrm', pcrm: { ...beta, similarity: 'encoder', encoder: join(dir, 'model.onnx') } }), tokenizer);
    const encoder = await SimilarityEncoder.create(join(dir, 'model.onnx'));
    const direct = await encoder.similarities(few);
    await encoder.release();
    assert.deepEqual([...enc.similarity], [...direct]);
    enc.similarity.forEach((s, i) => assert.ok(Math.abs(enc.deltaStar[i]! - (2 / (s + 0.5) - 1)) < 1e-12));
    assert.notDeepEqual([...enc.similarity], [...length.similarity]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GRM with head dropout: the masks come from the seed and step, so a resumed run continues the same trajectory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-grm-resume-'));
  try {
    const grm = { loss: lossConfig({ method: 'grm', grm: { alpha: 0.1, beta: 0.1, reg: 'sft' } }), head: 'mlp' as const, headHidden: 16, steps: 8, report: false };
    const straight = await runTraining(tinyRun(join(dir, 'a'), { ...grm, headDropout: 0.5 }));
    await runTraining(tinyRun(join(dir, 'b'), { ...grm, headDropout: 0.5, stopAfter: 4 }));
    const resumed = await runTraining(tinyRun(join(dir, 'b'), { ...grm, headDropout: 0.5, resume: join(dir, 'b', 'ckpt', 'last.safetensors') }));
    assert.deepEqual(resumed.loop.steps.map((s) => s.step), [5, 6, 7, 8]);
    resumed.loop.steps.forEach((s, i) => {
      const ref = straight.loop.steps[4 + i]!;
      assert.ok(Math.abs(s.loss - ref.loss) <= 1e-6 * Math.max(1, Math.abs(ref.loss)), `step ${s.step}: resumed ${s.loss} vs ${ref.loss}`);
    });
    const noDropout = await runTraining(tinyRun(join(dir, 'c'), { ...grm, headDropout: 0 }));
    assert.notEqual(noDropout.loop.steps[0]!.loss, straight.loop.steps[0]!.loss, 'dropout changes the training loss');
    assert.ok(!existsSync(join(straight.outDir, 'report.html')), 'report: false writes no report');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('responseTokens packs the response tokens of the first R rows: the position predicting each, its id, its row', () => {
  // Row 0: tokens [5, 6, 7, 8], response from 2; row 1: [9, 10], response from 0 (token 0 is never
  // predicted, so only token 1 counts); row 2 is past R. Width 5.
  const t = responseTokens([[5, 6, 7, 8], [9, 10], [11, 12, 13]], [2, 0, 1], 5, 2);
  assert.deepEqual([...(t.positions.data as BigInt64Array)].map(Number), [1, 2, 5]); // 0·5+2−1, 0·5+3−1, 1·5+1−1
  assert.deepEqual([...(t.targets.data as BigInt64Array)].map(Number), [7, 8, 10]);
  assert.deepEqual(t.segments.dims, [2, 3]);
  assert.deepEqual([...(t.segments.data as Float32Array)], [1, 1, 0, 0, 0, 1]);
  assert.equal(t.count, 3);
  const none = responseTokens([[1, 2]], [2], 2);
  assert.equal(none.count, 0);
  assert.deepEqual([...(none.segments.data as Float32Array)], [0], 'a placeholder that adds nothing');
});
