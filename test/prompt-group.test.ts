// Issue 12, prompt groups: a GRPO request scores many responses to one prompt, and the prompt is
// tokenized once for all of them (src/model/group-tokenize.ts). The stitched tokens must be
// exactly ItemTokenizer.encode's for every item, truncation included, on real HH-RLHF prompts
// and responses and every tokenizer test/tokenize-window.test.ts uses; joining the prompt's and
// the response's tokens without the seam's margin and checks is shown to be wrong.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { ChatMessage, ScoreItem } from '../src/model/format.js';
import { PromptTokens, promptGroupKey, tokenizeItems } from '../src/model/group-tokenize.js';
import { readModelFiles, specFromFiles, type ModelSpec } from '../src/model/model-folder.js';
import { whitespaceCut, type TruncationSide } from '../src/model/tokenize.js';
import { parseHHPair, renderHHTranscript } from '../src/training/data/hh.js';
import { createService, type Service } from '../src/service.js';
import { metricValue } from './helpers/metrics-text.js';
import { REPO_ROOT, tempModelsRoot, tokenizerPaths, writeBowModel, type FixtureTokenizer } from './helpers/model-fixtures.js';

const pairs = gunzipSync(readFileSync(join(REPO_ROOT, 'data', 'hh-rlhf', 'harmless-base-test.jsonl.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .slice(0, 400)
  .flatMap((line) => {
    const { chosen, rejected } = JSON.parse(line) as { chosen: string; rejected: string };
    const pair = parseHHPair(chosen, rejected);
    return pair === null ? [] : [pair];
  });

/**
 * Real prompts, each with 8 real responses: its own chosen and rejected and those of the next
 * three pairs (GRPO's samples are other responses to the same prompt, of the same kind). Every
 * seventh prompt is sent as a string (its last user turn), the rest as message lists.
 */
function grpoItems(prompts: number, from: number): ScoreItem[] {
  const items: ScoreItem[] = [];
  for (let p = from; p < from + prompts; p++) {
    const pair = pairs[p % pairs.length]!;
    const prompt: string | ChatMessage[] = p % 7 === 0 ? pair.prompt.at(-1)!.content : pair.prompt;
    for (let r = 0; r < 4; r++) {
      const other = pairs[(p + r) % pairs.length]!;
      items.push({ prompt, response: other.chosen }, { prompt, response: other.rejected });
    }
  }
  return items;
}

/** A spec for a fixture tokenizer with this max length (its chat template where it ships one, else HH's). */
const specs = new Map<string, ModelSpec>();
function specFor(name: FixtureTokenizer | 'shipped', maxLength: number, promptFormat?: string): ModelSpec {
  const key = `${name} ${maxLength} ${promptFormat}`;
  const spec = specs.get(key) ?? buildSpec(name, maxLength, promptFormat);
  specs.set(key, spec);
  return spec;
}

function buildSpec(name: FixtureTokenizer | 'shipped', maxLength: number, promptFormat: string | undefined): ModelSpec {
  if (name === 'shipped') {
    const dir = join(REPO_ROOT, 'models', 'harmless', '1');
    const files = readModelFiles(dir);
    return specFromFiles(dir, { ...files, manifest: { ...files.manifest, max_length: maxLength } });
  }
  const paths = tokenizerPaths(name);
  const tokenizerConfig = paths.config === undefined ? {} : (JSON.parse(readFileSync(paths.config, 'utf8')) as Record<string, unknown>);
  const tokenizerJson = JSON.parse(readFileSync(paths.tokenizer, 'utf8')) as Record<string, unknown>;
  return specFromFiles(name, { tokenizerJson, tokenizerConfig, config: {}, manifest: { format_version: 1, max_length: maxLength, ...(promptFormat === undefined ? {} : { prompt_format: promptFormat }) } });
}

const TOKENIZERS = ['gpt2', 'llama2', 'bert-base-uncased', 'qwen3', 'shipped'] as const;

describe('prompt groups tokenize exactly like encode', () => {
  for (const name of TOKENIZERS) {
    test(`${name}: 16 HH prompts × 8 responses, long and short max length, both sides`, () => {
      const items = grpoItems(16, name.length * 13);
      const stitched: number[] = [];
      for (const [maxLength, side] of [[1024, 'left'], [128, 'left'], [128, 'right']] as [number, TruncationSide][]) {
        const spec = specFor(name, maxLength);
        const expected = items.map((item) => spec.tokenizer.encode(spec.formatter.render(item), side));
        const grouped = tokenizeItems(spec, items, side, true);
        grouped.items.forEach((got, i) => assert.deepEqual(got, expected[i], `${name} max ${maxLength} ${side} item ${i}`));
        stitched.push(grouped.stats.groupedItems);
        if (maxLength === 128) assert.ok(expected.filter((e) => e.truncated).length > items.length / 4, 'many items are truncated');
        // Off, nothing is grouped and the tokens are the same.
        const plain = tokenizeItems(spec, items, side, false);
        assert.equal(plain.stats.groupedItems, 0);
        assert.deepEqual(plain.items, expected);
        assert.ok(grouped.stats.tokenizedChars < plain.stats.tokenizedChars, `${grouped.stats.tokenizedChars} vs ${plain.stats.tokenizedChars} characters tokenized`);
      }
      // The checks must have passed for many items, or this would only test the fallback.
      assert.ok(stitched[0]! > 0.5 * items.length, `${name}: stitched ${stitched.join(', ')} of ${items.length}`);
    });
  }

  test('a prompt string, the same user turn as a message list, and as messages share a group; pre-formatted text does not', () => {
    const key = promptGroupKey({ prompt: 'Hi there', response: 'a' });
    assert.equal(promptGroupKey({ prompt: [{ role: 'user', content: 'Hi there' }], response: 'b' }), key);
    assert.equal(promptGroupKey({ messages: [{ role: 'user', content: 'Hi there' }, { role: 'assistant', content: 'c' }] }), key);
    assert.notEqual(promptGroupKey({ prompt: 'Hi there!', response: 'a' }), key);
    assert.equal(promptGroupKey({ text: 'Hi there' }), undefined);
  });

  test('a template that renders the prompt differently per response, or a short prompt, falls back to whole encoding', () => {
    const spec = specFor('gpt2', 1024);
    const long = pairs.find((p) => p.prompt.length === 1 && p.prompt[0]!.content.length > 400)!;
    const group = PromptTokens.build(spec.tokenizer, spec.formatter.render({ prompt: long.prompt, response: 'x' }).text.slice(0, -1));
    assert.ok(group !== undefined);
    // An item whose text does not begin with the group's prompt is not stitched.
    const other = spec.formatter.render({ prompt: long.prompt[0]!.content + '.', response: 'x' });
    assert.equal(group.stitch(other, 'left'), undefined);
    assert.equal(group.stitch({ text: other.text, responseStart: undefined }, 'left'), undefined);
    assert.equal(PromptTokens.build(spec.tokenizer, '\n\nHuman: Hello?\n\nAssistant:'), undefined, 'shorter than the seam window');
    assert.equal(PromptTokens.build(spec.tokenizer, 'x'.repeat(2000)), undefined, 'no whitespace cut');
  });
});

describe('the seam needs its margin and checks', () => {
  // A prompt_format whose prompt ends in a space: the whole text tokenizes " Sure" as one token
  // where the prompt alone ends in " " (byte-level BPE), so the prompt's last tokens are not the
  // item's; the seam's end margin is what keeps them out.
  const ANSWER_FORMAT = 'Question: {prompt}\nAnswer: {response}';
  // The whole HH dialogue as one prompt string (a prompt_format formats single-turn prompts only).
  const single = (prompts: number): ScoreItem[] =>
    grpoItems(prompts, 200).map((item) => ({ prompt: renderHHTranscript(promptMessages(item)), response: (item as { response: string }).response }));

  test('joining tokens(prompt) + tokens(response), or cutting at whitespace without a margin, gives other ids than encode; the stitched ids do not', () => {
    const mismatches: Record<string, { separate: number; cutNoMargin: number; stitched: number }> = {};
    const cases: [string, ModelSpec, ScoreItem[]][] = [
      ...TOKENIZERS.map((name): [string, ModelSpec, ScoreItem[]] => [name, specFor(name, 1024), grpoItems(8, 100)]),
      ['gpt2 + prompt_format', specFor('gpt2', 1024, ANSWER_FORMAT), single(8)],
    ];
    for (const [name, spec, items] of cases) {
      const tok = spec.tokenizer;
      let separate = 0;
      let cutNoMargin = 0;
      const expected = items.map((item) => tok.encode(spec.formatter.render(item), 'left'));
      const grouped = tokenizeItems(spec, items, 'left', true);
      assert.deepEqual(grouped.items, expected, name);
      items.forEach((item, i) => {
        const rendered = spec.formatter.render(item);
        const start = rendered.responseStart!;
        const ids = expected[i]!.ids;
        const prompt = rendered.text.slice(0, start);
        // Naive 1: the prompt's and the response's tokens side by side.
        if (!sameIds(tok.withSpecials([...tok.encodePlain(prompt), ...tok.encodePlain(rendered.text.slice(start))]), ids)) separate++;
        // Naive 2: the seam's cut, but no margin dropped and nothing checked.
        const cut = whitespaceCut(prompt, prompt.length - 144);
        if (cut !== undefined && !sameIds(tok.withSpecials([...tok.encodePlain(prompt.slice(0, cut)), ...tok.encodePlain(rendered.text.slice(cut))]), ids)) cutNoMargin++;
      });
      mismatches[name] = { separate, cutNoMargin, stitched: grouped.stats.groupedItems };
    }
    const report = JSON.stringify(mismatches);
    // SentencePiece (llama2) puts a dummy prefix at each piece's start: both naive joins break.
    assert.ok(mismatches.llama2!.separate > 0 && mismatches.llama2!.cutNoMargin > 0 && mismatches.llama2!.stitched > 0, report);
    // The prompt ending in a space breaks the separate join on byte-level BPE; the seam's end margin covers it.
    const answer = mismatches['gpt2 + prompt_format']!;
    assert.ok(answer.separate > 0 && answer.stitched > 0, report);
  });
});

function promptMessages(item: ScoreItem): ChatMessage[] {
  if (!('prompt' in item)) throw new Error('expected a {prompt, response} item');
  return typeof item.prompt === 'string' ? [{ role: 'user', content: item.prompt }] : item.prompt;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

describe('a 16-response request over HTTP', () => {
  const root = tempModelsRoot();
  let pooled: Service;
  let inline: Service;
  let ungrouped: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2', maxLength: 1024, seed: 5 });
    // 16 items reach the worker pool (POOL_MIN_ITEMS); the other two tokenize inline.
    pooled = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 1 });
    inline = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 0, cacheSize: 0 });
    ungrouped = await createService({ modelsRoot: root, watch: false, tokenizerThreads: 1, cacheSize: 0, promptGroups: false });
  });
  after(async () => {
    await Promise.all([pooled.close(), inline.close(), ungrouped.close()]);
  });

  // The longest of the first HH prompts that still fits the model whole, with 16 real responses.
  const pair = pairs.filter((p) => renderHHTranscript(p.prompt).length < 4000).reduce((a, b) => (renderHHTranscript(b.prompt).length > renderHHTranscript(a.prompt).length ? b : a));
  const responses = pairs.slice(40, 48).flatMap((p) => [p.chosen, p.rejected]);
  const items = responses.map((response) => ({ prompt: pair.prompt, response }));
  type Reply = { results: { reward: number; cached: boolean; truncated: boolean }[] };
  const score = async (service: Service, body: object[]): Promise<Reply> => {
    const reply = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items: body } });
    assert.equal(reply.statusCode, 200, reply.body);
    return reply.json<Reply>();
  };
  const counters = async (service: Service): Promise<{ chars: number; grouped: number }> => {
    const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    const labels = { model: 'rm', version: '1' };
    return { chars: metricValue(text, 'rmserve_tokenized_characters_total', labels, 0), grouped: metricValue(text, 'rmserve_prompt_group_items_total', labels, 0) };
  };

  test('gives the rewards of 16 single-item requests, on the worker pool and inline, and tokenizes the prompt once', async () => {
    const prompt = renderHHTranscript(pair.prompt);
    assert.ok(prompt.length > 1500, `${prompt.length} characters`);
    const singles: number[] = [];
    for (const item of items) singles.push((await score(inline, [item])).results[0]!.reward);
    const singleChars = (await counters(inline)).chars;

    const grouped = (await score(pooled, items)).results.map((r) => r.reward);
    // One padded batch sums in another order than 16 runs of one row: float32 rounding apart.
    grouped.forEach((reward, i) => assert.ok(Math.abs(reward - singles[i]!) < 1e-5, `item ${i}: ${reward} vs ${singles[i]}`));
    // The same request with grouping off, or inline, runs the same batch of the same ids: bit for bit.
    assert.deepEqual((await score(inline, items)).results.map((r) => r.reward), grouped);
    assert.deepEqual((await score(ungrouped, items)).results.map((r) => r.reward), grouped);

    const on = await counters(pooled);
    assert.equal(on.grouped, 16, 'every item stitched from the group');
    assert.equal((await counters(ungrouped)).grouped, 0);
    // Grouped: the prompt once, plus per item its response and a seam of a few hundred characters.
    const responseChars = responses.reduce((n, r) => n + r.length, 0);
    assert.ok(on.chars < 2 * prompt.length + responseChars + 16 * 400, `${on.chars} characters tokenized grouped`);
    assert.ok((await counters(ungrouped)).chars >= 16 * prompt.length, 'ungrouped, the prompt 16 times');
    assert.ok(singleChars >= 16 * prompt.length);
  });

  test('the reward cache still answers repeated items before tokenization', async () => {
    const before = await counters(pooled);
    const again = await score(pooled, items);
    assert.ok(again.results.every((r) => r.cached));
    const single = await score(pooled, [items[3]!]);
    assert.equal(single.results[0]!.cached, true);
    assert.equal(single.results[0]!.reward, again.results[3]!.reward);
    assert.deepEqual(await counters(pooled), before, 'hits tokenize nothing');
  });
});
