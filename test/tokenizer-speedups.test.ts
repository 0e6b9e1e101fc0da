// src/model/tokenizer-speedups.ts replaces two internals of @huggingface/tokenizers (the BPE word
// cache and the byte-level mapping) for speed. They must not change a single id: every id of
// real HH-RLHF text, plus texts with non-ASCII, whitespace runs and special tokens, is compared
// with an untouched tokenizer of the same files, for the tokenizers the server is tested with.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { speedUpTokenizer } from '../src/model/tokenizer-speedups.js';
import { REPO_ROOT, tokenizerPaths, type FixtureTokenizer } from './helpers/model-fixtures.js';

const lines = gunzipSync(readFileSync(join(REPO_ROOT, 'data', 'hh-rlhf', 'harmless-base-test.jsonl.gz'))).toString('utf8').trim().split('\n');
const texts = lines.slice(0, 120).flatMap((line) => {
  const pair = JSON.parse(line) as { chosen: string; rejected: string };
  return [pair.chosen, pair.rejected];
});
const ODD = ['   \n\n  \t x', '我们今天去公园散步，天气很好。', '😀🎉👍🏽 emoji', 'naïve café – “quotes” ½', 'x'.repeat(300), '<|endoftext|>hello</s><s> [CLS]', "it's we're they'll I'd"];

function load(name: FixtureTokenizer | 'shipped'): () => Tokenizer {
  const [tokenizerPath, configPath] =
    name === 'shipped'
      ? [join(REPO_ROOT, 'models/harmless/1/tokenizer.json'), join(REPO_ROOT, 'models/harmless/1/tokenizer_config.json')]
      : [tokenizerPaths(name).tokenizer, tokenizerPaths(name).config];
  const json = JSON.parse(readFileSync(tokenizerPath, 'utf8')) as Record<string, unknown>;
  const config = configPath === undefined ? {} : (JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>);
  return () => new Tokenizer(json, config);
}

// Which mends apply: byte-level BPE gets both; SentencePiece-style BPE (Llama 2) the word cache;
// WordPiece (BERT) neither. A library update that renames what is patched shows up here.
const EXPECTED: Record<FixtureTokenizer | 'shipped', { bpeCache: boolean; byteLevel: number }> = {
  gpt2: { bpeCache: true, byteLevel: 1 },
  qwen3: { bpeCache: true, byteLevel: 1 },
  shipped: { bpeCache: true, byteLevel: 1 },
  llama2: { bpeCache: true, byteLevel: 0 },
  llama3: { bpeCache: true, byteLevel: 1 },
  'bert-base-uncased': { bpeCache: false, byteLevel: 0 },
};

describe('tokenizer speed-ups change no id', () => {
  for (const name of Object.keys(EXPECTED) as (keyof typeof EXPECTED)[]) {
    test(`${name}: ${texts.length + 2 * ODD.length} texts, with and without special tokens`, () => {
      const make = load(name);
      const plain = make();
      const fast = make();
      assert.deepEqual(speedUpTokenizer(fast), EXPECTED[name]);
      // Twice over: the second pass is served from the replaced caches.
      for (const pass of [1, 2]) {
        for (const [i, text] of [...texts, ...ODD, ...ODD.map((t) => texts[0] + t)].entries()) {
          for (const add_special_tokens of [true, false]) {
            assert.deepEqual(fast.encode(text, { add_special_tokens }).ids, plain.encode(text, { add_special_tokens }).ids, `pass ${pass}, text ${i}`);
          }
        }
      }
    });
  }
});
