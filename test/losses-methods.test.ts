import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { GraphBuilder, type Value } from '../src/training/graph/builder.js';
import { lossConfig, lossFor, lossNeeds, type LossConfig } from '../src/training/losses.js';
import { deltaStar } from '../src/training/similarity.js';

// Each loss as a subgraph alone: rewards, margins, δ* and log-probs are graph inputs with fixed
// values, run through ORT in float64, and compared with values worked out by hand below.
const P = 3;
const inputs = {
  chosen: [1.0, -0.5, 2.0],
  rejected: [0.2, 0.3, -1.0],
  margin: [0.5, 0, -0.25],
  deltaStar: [11.976047904191617, 2, 0.5],
  logpChosen: [-10, -20, -5],
  logpRejected: [-12, -18, -5],
  refChosen: [-11, -19, -6],
  refRejected: [-11, -19, -4],
};

async function runLoss(config: LossConfig): Promise<{ loss: number; terms: Record<string, number> }> {
  const b = new GraphBuilder('loss_only', { opset: 20 });
  const vec = (name: string): Value => b.input(name, 'float64', [P]);
  const needs = lossNeeds(config);
  const out = lossFor(config)({
    b, chosen: vec('chosen'), rejected: vec('rejected'), margin: vec('margin'),
    ...(needs.deltaStar ? { deltaStar: vec('deltaStar') } : {}),
    ...(needs.logp ? { logp: { chosen: vec('logpChosen'), rejected: vec('logpRejected') } } : {}),
    ...(needs.reference ? { refLogp: { chosen: vec('refChosen'), rejected: vec('refRejected') } } : {}),
  });
  b.output(out.loss, 'loss');
  for (const [name, v] of Object.entries(out.terms)) if (v !== out.loss) b.output(v, `term.${name}`);
  const session = await ort.InferenceSession.create(b.toModelProto());
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) feeds[name] = new ort.Tensor('float64', Float64Array.from(inputs[name as keyof typeof inputs]), [P]);
  const res = await session.run(feeds);
  await session.release();
  const scalar = (t: ort.Tensor | undefined): number => (t!.data as Float64Array)[0]!;
  const terms: Record<string, number> = {};
  for (const name of session.outputNames) if (name.startsWith('term.')) terms[name.slice(5)] = scalar(res[name]);
  return { loss: scalar(res.loss), terms };
}

// −log σ(x) = log(1 + e^−x)
const nls = (x: number): number => Math.log1p(Math.exp(-x));
const close = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

// Δ = r_c − r_r = [0.8, −0.8, 3]
const DELTA = [0.8, -0.8, 3];

test('δ*(s) = β1/(s + β2) + β3 at the defaults and at the paper\'s (20, 0.001, −15)', () => {
  close(deltaStar(0.5), 6 / 0.501, 'defaults at s = 0.5');
  close(deltaStar(0.5), 11.976047904191617, 'by hand');
  close(deltaStar(1, 20, 0.001, -15), 20 / 1.001 - 15, 'paper at s = 1');
  close(deltaStar(0), 6000, 's = 0 is bounded by β2');
});

test('BT: mean −log σ(Δ − m), and −log σ(0) = ln 2', async () => {
  const { loss } = await runLoss(lossConfig({ method: 'bt', margin: true }));
  // Δ − m = [0.3, −0.8, 3.25]
  close(loss, (nls(0.3) + nls(-0.8) + nls(3.25)) / 3, 'bt with margin');
  close(nls(0), Math.LN2, 'ln 2');
  const plain = await runLoss(lossConfig({ method: 'bt', margin: false }));
  close(plain.loss, (0.3711006659477777 + 1.1711006659477778 + 0.04858735157374206) / 3, 'bt, no margin (values of log(1+e^−x) by hand)');
});

test('BT with centering adds c·mean((r_c + r_r)²)', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'bt', margin: false, centering: 0.01 }));
  // r_c + r_r = [1.2, −0.2, 1.0] → squares 1.44, 0.04, 1 → mean 0.8267
  close(terms.centering!, 0.01 * (1.44 + 0.04 + 1) / 3, 'centering');
  close(loss, DELTA.reduce((a, d) => a + nls(d), 0) / 3 + 0.01 * 2.48 / 3, 'total');
});

test('label smoothing: mean −(1−ε) log σ(Δ) − ε log σ(−Δ)', async () => {
  const { loss } = await runLoss(lossConfig({ method: 'labelsmooth', labelSmoothing: 0.1 }));
  close(loss, DELTA.reduce((a, d) => a + 0.9 * nls(d) + 0.1 * nls(-d), 0) / 3, 'label smoothing');
});

test('PCRM: mean −log σ(Δ) − log σ(δ* − Δ) with δ* fed per pair (margins ignored)', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'pcrm' }));
  // δ* − Δ = [11.1760…, 2.8, −2.5]: the third pair's margin 3 exceeds its bound 0.5 and is pulled back.
  const prior = (nls(inputs.deltaStar[0]! - 0.8) + nls(2.8) + nls(-2.5)) / 3;
  const bt = (nls(0.8) + nls(-0.8) + nls(3)) / 3;
  close(terms.bt!, bt, 'bt term');
  close(terms.prior!, prior, 'prior term');
  close(loss, bt + prior, 'pcrm');
  close(nls(-2.5), 2.5788897342925496, 'log(1 + e^2.5) by hand');
});

test('HaF-RM: rm_ratio·L_BT + dpo_ratio·L_DPO, the DPO term against the reference log-probs', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'haf', margin: false }));
  // (log π − log π_ref)(y_c) − (…)(y_r): pair 1: (−10+11) − (−12+11) = 2; pair 2: (−20+19) − (−18+19) = −2;
  // pair 3: (−5+6) − (−5+4) = 2. With β = 0.1: −log σ of [0.2, −0.2, 0.2].
  const dpo = (nls(0.2) + nls(-0.2) + nls(0.2)) / 3;
  close(dpo, (0.5981388693815918 + 0.7981388693815918 + 0.5981388693815918) / 3, 'dpo by hand');
  close(terms.dpo!, dpo, 'dpo term');
  const bt = DELTA.reduce((a, d) => a + nls(d), 0) / 3;
  close(loss, 1 * bt + 0.2 * dpo, 'haf at the defaults');
  const custom = await runLoss(lossConfig({ method: 'haf', margin: false, haf: { rmRatio: 0.5, dpoRatio: 1, beta: 1 } }));
  close(custom.loss, 0.5 * bt + (nls(2) + nls(-2) + nls(2)) / 3, 'haf with rm 0.5, dpo 1, β 1');
});

test('GRM: (1 − α)·L_BT + α·L_reg for each regulariser', async () => {
  const bt = DELTA.reduce((a, d) => a + nls(d), 0) / 3;
  const mix = (reg: number): number => 0.99 * bt + 0.01 * reg;
  const sft = await runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha: 0.01, beta: 0.1, reg: 'sft' } }));
  // β log π(y_c) = [−1, −2, −0.5]
  close(sft.terms.reg!, (nls(-1) + nls(-2) + nls(-0.5)) / 3, 'sft');
  close(sft.loss, mix((1.3132616875182228 + 2.1269280110429727 + 0.9740769841801067) / 3), 'grm sft by hand');
  const plain = await runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha: 0.01, beta: 0.1, reg: 'plain-sft' } }));
  close(plain.loss, mix((10 + 20 + 5) / 3), 'plain sft: −mean log π(y_c)');
  const dpo = await runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha: 0.01, beta: 0.1, reg: 'dpo' } }));
  close(dpo.loss, mix((nls(0.2) + nls(-0.2) + nls(0.2)) / 3), 'dpo with reference');
  const noref = await runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha: 0.01, beta: 0.1, reg: 'dpo-noref' } }));
  // log π(y_c) − log π(y_r) = [2, −2, 0]
  close(noref.loss, mix((nls(0.2) + nls(-0.2) + nls(0)) / 3), 'dpo without reference');
  const half = await runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha: 0.5, beta: 1, reg: 'dpo-noref' } }));
  close(half.loss, 0.5 * bt + 0.5 * (nls(2) + nls(-2) + nls(0)) / 3, 'α 0.5, β 1');
  assert.notEqual(dpo.loss, plain.loss);
});

test('each method asks for exactly the inputs it reads', () => {
  assert.deepEqual(lossNeeds(lossConfig({ method: 'bt' })), { deltaStar: false, logp: false, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'pcrm' })), { deltaStar: true, logp: false, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'haf' })), { deltaStar: false, logp: true, logpRejected: true, reference: true });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'grm' })), { deltaStar: false, logp: true, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'grm', grm: { alpha: 0.01, beta: 0.1, reg: 'dpo' } })), { deltaStar: false, logp: true, logpRejected: true, reference: true });
});
