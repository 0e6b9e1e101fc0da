// Long texts are tokenized through a window at the end that is kept (issue 14, item 1: a 1 MiB
// prompt was tokenized whole before being cut, holding the event loop for seconds). The window
// must give exactly the tokens of whole-text tokenization, on real data and real tokenizers, and
// the work must not grow with the text.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import { ItemTokenizer, SEAM_TOKENS, WINDOW_CHARS_PER_TOKEN, type TruncationSide } from '../src/model/tokenize.js';
import { createService, type Service } from '../src/service.js';
import { REPO_ROOT, tempModelsRoot, tokenizerPaths, writeBowModel, type FixtureTokenizer } from './helpers/model-fixtures.js';
import { mulberry32 } from '../src/training/random.js';

const dialogues: string[] = gunzipSync(readFileSync(join(REPO_ROOT, 'data', 'hh-rlhf', 'harmless-base-test.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .slice(0, 400)
  .map((line) => (JSON.parse(line) as { chosen: string }).chosen);

function loadTokenizer(name: FixtureTokenizer | 'shipped'): Tokenizer {
  if (name === 'shipped') {
    const dir = join(REPO_ROOT, 'models', 'harmless', '1');
    return new Tokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')));
  }
  const paths = tokenizerPaths(name);
  const config = paths.config === undefined ? {} : (JSON.parse(readFileSync(paths.config, 'utf8')) as Record<string, unknown>);
  return new Tokenizer(JSON.parse(readFileSync(paths.tokenizer, 'utf8')), config);
}

/** Texts that make cuts hard: whitespace runs, newlines, CJK without spaces, emoji (surrogate pairs), a long unbroken run. */
const ODD_PIECES = ['   \n\n  \t ', '\n\n\n', '我们今天去公园散步，天气很好，阳光明媚。'.repeat(40), '😀🎉👍🏽'.repeat(60), 'x'.repeat(700), ' '.repeat(300), 'ab\u0000cd'];

function longText(random: () => number, minChars: number): string {
  let text = '';
  while (text.length < minChars) {
    text += random() < 0.15 ? (ODD_PIECES[Math.floor(random() * ODD_PIECES.length)] as string) : (dialogues[Math.floor(random() * dialogues.length)] as string);
  }
  return text;
}

describe('windowed tokenization equals whole-text tokenization', () => {
  for (const name of ['gpt2', 'llama2', 'bert-base-uncased', 'qwen3', 'shipped'] as const) {
    test(`${name}: 120 long items, both sides, with and without a response boundary`, () => {
      const tokenizer = loadTokenizer(name);
      const random = mulberry32(name.length * 7919);
      for (const maxLength of [32, 100, 256]) {
        const items = new ItemTokenizer(tokenizer, maxLength);
        for (let n = 0; n < 40; n++) {
          const prompt = longText(random, items.wholeTextChars * (0.5 + 3 * random()));
          const response = random() < 0.3 ? longText(random, items.wholeTextChars * 2 * random()) : ' ' + (dialogues[n] as string).slice(0, 400);
          const text = prompt + response;
          const rendered = random() < 0.5 ? { text, responseStart: prompt.length } : { text, responseStart: undefined };
          const side: TruncationSide = random() < 0.75 ? 'left' : 'right';
          const windowed = items.encode(rendered, side);
          const whole = items.encodeWhole(rendered, side);
          assert.deepEqual(windowed, whole, `${name} maxLength ${maxLength} item ${n} (${text.length} chars, ${side})`);
        }
      }
    });
  }
});

describe('a truncated item reads its prompt tokens off the whole text instead of tokenizing the prompt again', () => {
  // HH dialogues split before their last assistant turn, as the chat templates render them: the
  // prompt ends in "Assistant:", the response begins with its space.
  const items = dialogues.flatMap((dialogue) => {
    const at = dialogue.lastIndexOf('\n\nAssistant:') + '\n\nAssistant:'.length;
    return at > 20 ? [{ text: dialogue, responseStart: at }] : [];
  });
  for (const name of ['gpt2', 'llama2', 'bert-base-uncased', 'qwen3', 'llama3', 'shipped'] as const) {
    test(`${name}: the same tokens as tokenizing the prompt on its own, on ${items.length} HH dialogues at three max lengths`, () => {
      const tokenizer = loadTokenizer(name);
      let truncated = 0;
      let derived = 0;
      for (const maxLength of [32, 100, 256]) {
        const fast = new ItemTokenizer(tokenizer, maxLength);
        // The reference: the same tokenizer with the derivation turned off, so every truncated
        // item tokenizes its prompt on its own (the behaviour before the derivation).
        const reference = new ItemTokenizer(tokenizer, maxLength);
        (reference as unknown as { promptOfWhole: () => undefined }).promptOfWhole = () => undefined;
        for (const [n, item] of items.entries()) {
          const before = { fast: fast.tokenizedChars, reference: reference.tokenizedChars };
          const got = fast.encodeWhole(item, 'left');
          assert.deepEqual(got, reference.encodeWhole(item, 'left'), `${name} maxLength ${maxLength} dialogue ${n}`);
          // A prompt shorter than a seam window is tokenized again: that costs little.
          if (!got.truncated || item.responseStart <= SEAM_TOKENS * WINDOW_CHARS_PER_TOKEN) continue;
          truncated++;
          // Derived: the tokenizer was handed less than the reference's prompt-again.
          if (fast.tokenizedChars - before.fast < reference.tokenizedChars - before.reference) derived++;
        }
      }
      assert.ok(truncated > 300, `${truncated} truncated items with prompts longer than a seam window`);
      assert.ok(derived >= 0.95 * truncated, `prompt tokens derived for ${derived} of ${truncated} truncated items`);
    });
  }
});

describe('a megabyte prompt costs what its kept part costs', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 256 });
    service = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 0 });
  });
  after(() => service.close());

  test('scoring a megabyte prompt hands the tokenizer a few kilobytes, and the reply equals whole-text tokenization', async () => {
    const spec = service.registry.get('rm').spec;
    const tokenizer = spec.tokenizer.tokenizer;
    const seen: number[] = [];
    const encode = tokenizer.encode.bind(tokenizer);
    tokenizer.encode = ((text: string, options?: Parameters<Tokenizer['encode']>[1]) => {
      seen.push(text.length);
      return encode(text, options);
    }) as Tokenizer['encode'];
    try {
      const prompt = longText(mulberry32(3), 1_000_000); // just under the default --max-item-chars (1 MiB)
      const item = { prompt, response: 'I would rather not help with that.' };
      const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [item] } });
      assert.equal(reply.statusCode, 200, reply.body);
      assert.ok(Math.max(...seen) < 8 * spec.tokenizer.wholeTextChars, `largest text given to the tokenizer: ${Math.max(...seen)} chars`);
      assert.ok(seen.reduce((a, b) => a + b, 0) < 16 * spec.tokenizer.wholeTextChars, 'total characters tokenized');

      const expected = spec.tokenizer.encodeWhole(spec.formatter.render(item), 'left');
      const result = reply.json<{ results: { truncated: boolean }[] }>().results[0];
      assert.equal(result?.truncated, true);
      seen.length = 0;
      const again = spec.tokenizer.encode(spec.formatter.render(item), 'left');
      assert.deepEqual(again, expected);
    } finally {
      tokenizer.encode = encode;
    }
  });

  test('an item over --max-item-chars is 413 naming the item and the limit, and changes nothing', async () => {
    const item = { prompt: 'x '.repeat(600_000), response: 'ok' };
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: [{ prompt: 'fine', response: 'fine' }, item] } });
    assert.equal(reply.statusCode, 413, reply.body);
    assert.match(reply.json<{ error: { message: string } }>().error.message, /items\[1\] has 1200002 characters; at most 1048576/);
  });
});
