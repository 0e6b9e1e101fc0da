import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createService } from '../src/service.js';
import { readPreferenceFile } from '../src/training/data.js';
import { completeTokenizerConfig, PairEncoder } from '../src/training/encode.js';
import { RewardForward, weightsToTensors } from '../src/training/evaluate.js';
import { exportRewardModel } from '../src/training/export.js';
import { defaultModelConfig, initWeights } from '../src/training/model.js';
import { trainByteLevelBpe } from '../src/training/tokenizer/index.js';

test('an exported random model scores through the server exactly as the trainer scores it', async () => {
  const pairs = readPreferenceFile('data/hh-rlhf/harmless-base-test.jsonl.gz').slice(0, 40);
  const texts = pairs.flatMap((p) => [...p.prompt.map((m) => m.content), p.chosen, p.rejected]);
  const maxLength = 48;
  const bpe = trainByteLevelBpe(texts, { vocabSize: 400 });
  const tokenizer = {
    tokenizerJson: bpe.tokenizerJson as unknown as Record<string, unknown>,
    tokenizerConfig: completeTokenizerConfig(bpe.tokenizerJson as unknown as Record<string, unknown>, { ...bpe.tokenizerConfig }, maxLength),
  };
  const encoder = new PairEncoder(tokenizer, maxLength);
  const config = defaultModelConfig({ vocabSize: encoder.vocabSize, dModel: 32, nLayers: 2, nHeads: 4, maxLength, numObjectives: 2 });
  // A large init scale so rewards differ visibly between items.
  const weights = initWeights({ ...config, initStd: 0.3 }, 7);

  const root = mkdtempSync(join(tmpdir(), 'rmserve-export-'));
  try {
    const manifest = exportRewardModel({
      outDir: join(root, 'tiny', '1'), config, weights, tokenizer, objectives: ['harmless', 'helpful'],
      provenance: { seed: 7 },
    });
    assert.deepEqual(manifest.objectives, ['harmless', 'helpful']);

    const items = pairs.slice(0, 12).map((p, i) => ({ prompt: p.prompt, response: i % 2 ? p.chosen : p.rejected }));
    const forward = await RewardForward.create(config);
    const rows = items.map((it) => encoder.encodeResponse(it.prompt, it.response));
    assert.ok(rows.some((r) => r.truncated), 'some items exceed max_length, so truncation is exercised');
    const mine = await forward.scoreAll(weightsToTensors(config, weights), rows.map((r) => r.ids), encoder.padId);
    await forward.release();

    const service = await createService({ modelsRoot: root });
    try {
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { model: 'tiny', items, aggregate: 'none' } });
      assert.equal(reply.statusCode, 200, reply.body);
      const body = reply.json() as { model_versions: Record<string, string>; results: { truncated: boolean; objectives: Record<string, { raw: number }> }[] };
      assert.equal(body.model_versions.tiny, '1');
      let spread = 0;
      body.results.forEach((r, i) => {
        assert.equal(r.truncated, rows[i]!.truncated);
        ['harmless', 'helpful'].forEach((name, k) => {
          const server = r.objectives[name]!.raw;
          const trainer = mine[i]![k]!;
          assert.ok(Math.abs(server - trainer) < 1e-4, `item ${i} ${name}: server ${server} vs trainer ${trainer}`);
          spread = Math.max(spread, Math.abs(trainer - mine[0]![k]!));
        });
      });
      assert.ok(spread > 1e-3, 'rewards differ between items (the comparison is not vacuous)');
    } finally {
      await service.close();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
