import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { trainByteLevelBpe, writeTokenizerFiles } from '../src/training/tokenizer/index.js';
import { buildWordTable } from '../src/training/tokenizer/train-byte-level-bpe.js';
import { learnMerges } from '../src/training/tokenizer/learn-merges.js';

interface HhPair {
  chosen: string;
  rejected: string;
}
const pairs = gunzipSync(readFileSync('data/hh-rlhf/harmless-base-test.jsonl.gz'))
  .toString('utf8')
  .trim()
  .split('\n')
  .map((line) => JSON.parse(line) as HhPair);
// A small training slice keeps the test fast; round trips are checked on records never trained on.
const trainTexts = pairs.slice(0, 300).map((p) => p.chosen);
const heldOut = pairs.slice(1000, 1100).flatMap((p) => [p.chosen, p.rejected]);
const VOCAB = 1000;
const trained = trainByteLevelBpe(trainTexts, { vocabSize: VOCAB });
const tokenizer = new Tokenizer(trained.tokenizerJson, trained.tokenizerConfig);

const unicodeTexts = [
  'Emoji: 🤗👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷 and keycap 1️⃣',
  'Ünïcödé façade naïve — “quotes” ‘single’ … ½ ° €',
  '中文的句子，还有日本語のテキストと한국어 문장.',
  'العربية مع עברית and Ελληνικά, Русский текст.',
  'combining: e\u0301 a\u0308 o\u0303; zero-width: a\u200bb; BOM \ufeff here',
  '  leading spaces,\ttabs\t, trailing spaces   ',
  'Windows\r\nline endings\r\n\r\nand\n\n\nblank lines\n',
  "contractions: don't I'm you've they'll she'd it's we're DON'T",
  'numbers 3.14159 1,000,000 2024-06-01 0x1F +44 (0)20',
  'code: const f = (x) => x ** 2; // comment {}[]<>|\\',
  'text with <|endoftext|> inside and at the end<|endoftext|>',
  'x',
];

test('decode(encode(x)) === x on held-out dialogue and unicode text', () => {
  for (const text of [...heldOut, ...unicodeTexts]) {
    const { ids } = tokenizer.encode(text);
    assert.equal(tokenizer.decode(ids), text);
  }
});

test('merges fire at encode time: held-out text compresses well below one token per byte', () => {
  let bytes = 0;
  let tokens = 0;
  for (const text of heldOut) {
    bytes += Buffer.byteLength(text, 'utf8');
    tokens += tokenizer.encode(text).ids.length;
  }
  // With 743 merges on English dialogue a byte-level BPE gets ~3 bytes per token.
  assert.ok(bytes / tokens > 2.5, `only ${(bytes / tokens).toFixed(2)} bytes per token`);
});

test("the loader segments every training word exactly as the trainer's merges left it", () => {
  // If the written merges, their order or the pre-tokenizer disagreed with the trainer's view,
  // encode-time segmentation would drift from what was learned (and cost tokens) silently.
  const { table, texts, initialTokens } = buildWordTable(trainTexts, ['<|endoftext|>']);
  const { tokens } = learnMerges(table, initialTokens, VOCAB, 2);
  let differing = 0;
  texts.forEach((word, k) => {
    const ours = Array.from(table.words[k], (id) => tokens[id]);
    if (ours.join(' ') !== tokenizer.encode(word).tokens.join(' ')) differing++;
  });
  assert.ok(texts.length > 3000);
  assert.equal(differing, 0);
});

test('common words become single tokens', () => {
  for (const word of [' the', ' you', ' to', ' I', ' is', 'Human', 'Assistant']) {
    const { tokens } = tokenizer.encode(word);
    assert.equal(tokens.length, 1, `${JSON.stringify(word)} → ${JSON.stringify(tokens)}`);
  }
});

test('vocabulary size is honoured and ids are dense', () => {
  const vocab = trained.tokenizerJson.model.vocab;
  const ids = Object.values(vocab).sort((a, b) => a - b);
  assert.equal(ids.length, VOCAB);
  assert.deepEqual(ids, Array.from({ length: VOCAB }, (_, i) => i));
  assert.equal(trained.tokenizerJson.model.merges.length, VOCAB - 257);

  // A corpus too small to support the requested size stops early instead of inventing merges.
  const small = trainByteLevelBpe(['tiny tiny corpus'], { vocabSize: 5000 });
  assert.ok(Object.keys(small.tokenizerJson.model.vocab).length < 300);

  assert.throws(() => trainByteLevelBpe(trainTexts, { vocabSize: 256 }), /vocabSize must be an integer >= 257/);
});

test('training is deterministic', () => {
  const again = trainByteLevelBpe(trainTexts, { vocabSize: VOCAB });
  assert.equal(JSON.stringify(again.tokenizerJson), JSON.stringify(trained.tokenizerJson));
  assert.deepEqual(again.tokenizerConfig, trained.tokenizerConfig);
});

test('special tokens: fixed ids, never split, roles in tokenizer_config', () => {
  const special = trainByteLevelBpe(trainTexts.slice(0, 50), {
    vocabSize: 400,
    specialTokens: ['<|endoftext|>', '<|pad|>'],
    roles: { pad: '<|pad|>' },
    modelMaxLength: 512,
  });
  const tok = new Tokenizer(special.tokenizerJson, special.tokenizerConfig);
  assert.deepEqual(
    special.tokenizerJson.added_tokens.map((t) => [t.id, t.content, t.special]),
    [
      [0, '<|endoftext|>', true],
      [1, '<|pad|>', true],
    ],
  );
  const { ids } = tok.encode('hi<|endoftext|><|pad|>');
  assert.deepEqual(ids.slice(-2), [0, 1]);
  assert.equal(tok.decode(ids, { skip_special_tokens: true }), 'hi');
  const config = special.tokenizerConfig;
  assert.equal(config.eos_token, '<|endoftext|>');
  assert.equal(config.bos_token, '<|endoftext|>');
  assert.equal(config.pad_token, '<|pad|>');
  assert.equal(config.model_max_length, 512);
  assert.equal(config.padding_side, 'right');
  // The special token's characters were cut from the corpus, so no merge spells part of it.
  const corpusWithSpecials = trainTexts.slice(0, 50).map((t) => `${t}<|endoftext|>`);
  const merges = trainByteLevelBpe(corpusWithSpecials, { vocabSize: 600 }).tokenizerJson.model.merges;
  assert.ok(!merges.some((m) => m.includes('endoftext')), 'special token text leaked into merges');
});

test('structure matches GPT-2 tokenizer.json components', () => {
  const gpt2 = JSON.parse(readFileSync('data/tokenizers/gpt2/tokenizer.json', 'utf8')) as Record<string, unknown>;
  const ours = trained.tokenizerJson as unknown as Record<string, unknown>;
  for (const key of ['pre_tokenizer', 'post_processor', 'decoder', 'normalizer']) {
    assert.deepEqual(ours[key], gpt2[key], key);
  }
  // GPT-2's 256 byte tokens are our 256 byte tokens.
  const gpt2Vocab = (gpt2.model as { vocab: Record<string, number> }).vocab;
  const byteTokens = Object.keys(gpt2Vocab).filter((t) => gpt2Vocab[t] < 256);
  for (const t of byteTokens) assert.ok(t in trained.tokenizerJson.model.vocab, t);
});

test('maxTrainChars limits the corpus read', () => {
  const capped = trainByteLevelBpe(trainTexts, { vocabSize: VOCAB, maxTrainChars: 2000 });
  const full = trained.tokenizerJson.model.merges.length;
  assert.ok(capped.tokenizerJson.model.merges.length < full / 2);
});

test('tokenizer files written to a folder load back, keeping an existing chat template', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rmserve-bpe-'));
  try {
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{{ messages }}', padding_side: 'left' }));
    writeTokenizerFiles(dir, trained);
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object;
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config.chat_template, '{{ messages }}');
    assert.equal(config.padding_side, 'right', 'the trained config wins over stale keys');
    const loaded = new Tokenizer(json, config);
    const text = heldOut[0];
    assert.deepEqual(loaded.encode(text).ids, tokenizer.encode(text).ids);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
