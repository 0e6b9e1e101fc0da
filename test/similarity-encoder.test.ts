import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { GraphBuilder } from '../src/training/graph/builder.js';
import { SimilarityEncoder } from '../src/training/similarity-encoder.js';

// A tiny "encoder" whose hidden state at token t is [1, id_t/1000] (zeroed at padding), so the
// mean-pooled embedding of a text is [1, mean(ids)/1000]: computable by hand from the token ids.
function tinyEncoder(): Uint8Array {
  const b = new GraphBuilder('tiny_encoder');
  const ids = b.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = b.input('attention_mask', 'int64', ['batch', 'seq']);
  const x = b.unsqueeze(b.cast(ids, 'float32'), [2]); // [B,T,1]
  const m = b.unsqueeze(b.cast(mask, 'float32'), [2]); // [B,T,1]
  const scale = b.constant('float32', [1, 1, 2], [0, 0.001]);
  const bias = b.constant('float32', [1, 1, 2], [1, 0]);
  const hidden = b.mul(b.add(b.mul(x, scale), bias), m); // [B,T,2]
  b.output(hidden, 'last_hidden_state');
  return b.toModelProto();
}

test('encoder similarity: masked mean pooling of last_hidden_state, angular cosine, batched with padding', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-encoder-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), tinyEncoder());
    copyFileSync('data/tokenizers/bert-base-uncased/tokenizer.json', join(dir, 'tokenizer.json'));
    const encoder = await SimilarityEncoder.create(join(dir, 'model.onnx'), { batchSize: 3 });
    const texts = ['hello', 'the quick brown fox jumps over the lazy dog', 'zebra', 'a much longer sentence about reward models and their margins'];

    const tokenizer = new Tokenizer(JSON.parse(readFileSync('data/tokenizers/bert-base-uncased/tokenizer.json', 'utf8')) as Record<string, unknown>, {});
    const expected = texts.map((t) => {
      const ids = tokenizer.encode(t, { add_special_tokens: true }).ids; // [CLS] … [SEP]
      return [1, ids.reduce((s: number, v: number) => s + v, 0) / ids.length / 1000];
    });
    assert.ok(new Set(texts.map((t) => tokenizer.encode(t).ids.length)).size > 2, 'texts differ in length, so batches are padded');

    const embeddings = await encoder.embed(texts);
    embeddings.forEach((e, i) => {
      assert.equal(e.length, 2);
      assert.ok(Math.abs((e[0] as number) - 1) < 1e-6, `text ${i}: pads must not count in the mean`);
      assert.ok(Math.abs((e[1] as number) - (expected[i]![1] as number)) < 1e-5, `text ${i}: ${e[1]} vs ${expected[i]![1]}`);
    });

    const [s] = await encoder.similarities([{ chosen: texts[0]!, rejected: texts[1]! }]);
    const [u, v] = [expected[0]!, expected[1]!];
    const cos = (u[0]! * v[0]! + u[1]! * v[1]!) / (Math.hypot(u[0]!, u[1]!) * Math.hypot(v[0]!, v[1]!));
    assert.ok(Math.abs((s as number) - (Math.PI - Math.acos(cos)) / Math.PI) < 1e-6);
    assert.ok((s as number) > 0.5 && (s as number) < 1);
    await encoder.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('encoder without a tokenizer.json is refused with a message that says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-encoder-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), tinyEncoder());
    await assert.rejects(SimilarityEncoder.create(join(dir, 'model.onnx')), /tokenizer\.json is missing/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
