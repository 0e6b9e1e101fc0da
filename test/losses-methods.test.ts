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

// Expected values are worked out by hand, never by a helper that could share a bug with
// src/training/losses.ts: −log σ(x) = ln(1 + e^−x), and for negative x −log σ(−x) = −log σ(x) + x.
//   x            e^−x                   −log σ(x)
//   0.2          0.81873075307798186    0.59813886938159184   (−0.2: 0.79813886938159184)
//   0.3          0.74081822068171787    0.55435524446852712
//   0.8          0.44932896411722159    0.37110066594777773   (−0.8: 1.1711006659477777)
//   2            0.13533528323661269    0.1269280110429725    (−2:   2.1269280110429725)
//   2.5          0.082084998623898795   0.0788897342925496    (−2.5: 2.5788897342925496)
//   2.8          0.060810062625217965   0.059032826287971399
//   3            0.049787068367863943   0.048587351573742059
//   3.25         0.03877420783172201    0.038041371687783129
//   11.17604790… 1.4005675688372679e-5  1.4005577609812705e-5
//   0            1                      0.69314718055994531 (ln 2)
//   −0.5         1.6487212707001281     0.97407698418010668
//   −1           2.7182818284590452     1.3132616875182228
const close = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

// Δ = r_c − r_r = [0.8, −0.8, 3]; mean BT loss without margins:
// (0.37110066594777773 + 1.1711006659477777 + 0.048587351573742059) / 3 = 1.5907886834692975 / 3
const BT = 0.53026289448976584;

test('δ*(s) = β1/(s + β2) + β3 at the defaults and at the paper\'s (20, 0.001, −15)', () => {
  close(deltaStar(0.5), 11.976047904191617, 'defaults at s = 0.5: 6 / 0.501');
  close(deltaStar(1, 20, 0.001, -15), 4.98001998001998, 'paper at s = 1: 20 / 1.001 − 15 = 19.98001998… − 15');
  close(deltaStar(0), 6000, 's = 0 is bounded by β2: 6 / 0.001');
});

test('BT: mean −log σ(Δ − m)', async () => {
  const { loss } = await runLoss(lossConfig({ method: 'bt', margin: true }));
  // Δ − m = [0.3, −0.8, 3.25]: (0.55435524446852712 + 1.1711006659477777 + 0.038041371687783129) / 3
  // = 1.7634972821040879 / 3
  close(loss, 0.58783242736802932, 'bt with margin');
  const plain = await runLoss(lossConfig({ method: 'bt', margin: false }));
  close(plain.loss, BT, 'bt, no margin');
});

test('BT with centering adds c·mean((r_c + r_r)²)', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'bt', margin: false, centering: 0.01 }));
  // r_c + r_r = [1.2, −0.2, 1.0] → squares 1.44, 0.04, 1 → 0.01 · 2.48 / 3 = 0.0082666…
  close(terms.centering!, 0.0082666666666666667, 'centering');
  close(terms.bt!, BT, 'bt term');
  close(loss, 0.5385295611564325, 'total: 0.53026289448976584 + 0.0082666666666666667');
});

test('label smoothing: mean −(1−ε) log σ(Δ) − ε log σ(−Δ)', async () => {
  const { loss } = await runLoss(lossConfig({ method: 'labelsmooth', labelSmoothing: 0.1 }));
  // −log σ(−Δ) = −log σ(Δ) + Δ, so each pair's loss is −log σ(Δ) + ε·Δ and the mean is
  // BT + 0.1 · mean(Δ) = 0.53026289448976584 + 0.1 · (0.8 − 0.8 + 3) / 3
  close(loss, 0.63026289448976584, 'label smoothing');
});

test('PCRM: mean −log σ(Δ) − log σ(δ* − Δ) with δ* fed per pair (margins ignored)', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'pcrm' }));
  // δ* − Δ = [11.176047904191617, 2.8, −2.5]: the third pair's margin 3 exceeds its bound 0.5 and
  // is pulled back. (1.4005577609812705e-5 + 0.059032826287971399 + 2.5788897342925496) / 3
  // = 2.6379365661581308 / 3
  close(terms.bt!, BT, 'bt term (the data\'s margins play no part)');
  close(terms.prior!, 0.87931218871937695, 'prior term');
  close(loss, 1.4095750832091428, 'pcrm: 0.53026289448976584 + 0.87931218871937695');
});

test('HaF-RM: rm_ratio·L_BT + dpo_ratio·L_DPO, the DPO term against the reference log-probs', async () => {
  const { loss, terms } = await runLoss(lossConfig({ method: 'haf', margin: false }));
  // (log π − log π_ref)(y_c) − (…)(y_r): pair 1: (−10+11) − (−12+11) = 2; pair 2: (−20+19) − (−18+19) = −2;
  // pair 3: (−5+6) − (−5+4) = 2. With β = 0.1: −log σ of [0.2, −0.2, 0.2]
  // = (0.59813886938159184 + 0.79813886938159184 + 0.59813886938159184) / 3 = 1.9944166081447755 / 3
  close(terms.dpo!, 0.66480553604825851, 'dpo term');
  close(terms.rm!, BT, 'rm term');
  close(loss, 0.66322400169941754, 'haf at the defaults: 1 · 0.53026289448976584 + 0.2 · 0.66480553604825851');
  const custom = await runLoss(lossConfig({ method: 'haf', margin: false, haf: { rmRatio: 0.5, dpoRatio: 1, beta: 1 } }));
  // β = 1: −log σ of [2, −2, 2] = (0.1269280110429725 + 2.1269280110429725 + 0.1269280110429725) / 3
  // = 0.79359467770963916; 0.5 · 0.53026289448976584 + 0.79359467770963916
  close(custom.loss, 1.0587261249545221, 'haf with rm 0.5, dpo 1, β 1');
});

test('GRM: (1 − α)·L_BT + α·L_reg for each regulariser', async () => {
  // α = 0.01: 0.99 · 0.53026289448976584 = 0.52496026554486818, plus 0.01 · L_reg
  const grm = (reg: 'sft' | 'plain-sft' | 'dpo' | 'dpo-noref', alpha = 0.01, beta = 0.1) =>
    runLoss(lossConfig({ method: 'grm', margin: false, grm: { alpha, beta, reg } }));
  const sft = await grm('sft');
  // β log π(y_c) = [−1, −2, −0.5]: (1.3132616875182228 + 2.1269280110429725 + 0.97407698418010668) / 3
  // = 4.414266682741302 / 3
  close(sft.terms.reg!, 1.471422227580434, 'sft term');
  close(sft.loss, 0.53967448782067252, 'grm sft: 0.52496026554486818 + 0.01471422227580434');
  // −mean log π(y_c) = (10 + 20 + 5) / 3 = 11.666…
  close((await grm('plain-sft')).loss, 0.64162693221153485, 'plain sft: 0.52496026554486818 + 0.11666666666666667');
  // the DPO term of the HaF-RM test, 0.66480553604825851
  const dpo = await grm('dpo');
  close(dpo.loss, 0.53160832090535076, 'dpo with reference: 0.52496026554486818 + 0.0066480553604825851');
  // log π(y_c) − log π(y_r) = [2, −2, 0], β = 0.1: −log σ of [0.2, −0.2, 0]
  // = (0.59813886938159184 + 0.79813886938159184 + 0.69314718055994531) / 3 = 0.69647497310770966
  close((await grm('dpo-noref')).loss, 0.53192501527594528, 'dpo without reference: 0.52496026554486818 + 0.0069647497310770966');
  // α = 0.5, β = 1: 0.5 · 0.53026289448976584 + 0.5 · (0.1269280110429725 + 2.1269280110429725 + 0.69314718055994531) / 3
  // = 0.26513144724488292 + 0.5 · 0.98233440088196343
  close((await grm('dpo-noref', 0.5, 1)).loss, 0.75629864768586464, 'α 0.5, β 1');
});

test('each method asks for exactly the inputs it reads', () => {
  assert.deepEqual(lossNeeds(lossConfig({ method: 'bt' })), { deltaStar: false, logp: false, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'pcrm' })), { deltaStar: true, logp: false, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'haf' })), { deltaStar: false, logp: true, logpRejected: true, reference: true });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'grm' })), { deltaStar: false, logp: true, logpRejected: false, reference: false });
  assert.deepEqual(lossNeeds(lossConfig({ method: 'grm', grm: { alpha: 0.01, beta: 0.1, reg: 'dpo' } })), { deltaStar: false, logp: true, logpRejected: true, reference: true });
});
