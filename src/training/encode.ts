// Turns preference pairs into token ids with exactly the server's code path: the same
// PromptFormatter (chat template) and ItemTokenizer (left truncation that keeps the response),
// built from the same tokenizer.json / tokenizer_config.json the export writes. A pair's
// training score is therefore the score the server gives the exported model for that item.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { speedUpTokenizer } from '../model/tokenizer-speedups.js';
import { HH_CHAT_TEMPLATE, PromptFormatter } from '../model/format.js';
import { tokenizerSettings } from '../model/model-folder.js';
import { ItemTokenizer } from '../model/tokenize.js';
import type { ChatMessage, PreferencePair } from './data.js';

type Json = Record<string, unknown>;

/** The two tokenizer files of a model folder, as JSON objects. */
export interface TokenizerFiles {
  tokenizerJson: Json;
  tokenizerConfig: Json;
}

/**
 * Reads a user's tokenizer.json (and the tokenizer_config.json beside it, if any) and completes
 * the config the way the export will write it.
 */
export function readTokenizerFiles(tokenizerPath: string, maxLength: number): TokenizerFiles {
  const tokenizerJson = JSON.parse(readFileSync(tokenizerPath, 'utf8')) as Json;
  const configPath = join(dirname(tokenizerPath), 'tokenizer_config.json');
  const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as Json) : {};
  return { tokenizerJson, tokenizerConfig: completeTokenizerConfig(tokenizerJson, config, maxLength) };
}

/**
 * What rmserve writes into tokenizer_config.json: the user's chat template if there is one, else
 * the HH-RLHF transcript template the trainer formats every data set with; right padding (the
 * reward is read at the last real token); the model's max length; and a pad/eos token (the first
 * special token) when none is named.
 */
export function completeTokenizerConfig(tokenizerJson: Json, config: Json, maxLength: number): Json {
  const out: Json = { ...config };
  if (out.chat_template === undefined) out.chat_template = HH_CHAT_TEMPLATE;
  out.padding_side = 'right';
  out.truncation_side = 'left';
  out.model_max_length = maxLength;
  const added = Array.isArray(tokenizerJson.added_tokens) ? (tokenizerJson.added_tokens as Json[]) : [];
  const firstSpecial = added.find((t) => t.special === true && typeof t.content === 'string')?.content as string | undefined;
  if (firstSpecial !== undefined) {
    if (out.eos_token === undefined || out.eos_token === null) out.eos_token = firstSpecial;
    if (out.pad_token === undefined || out.pad_token === null) out.pad_token = out.eos_token;
  }
  return out;
}

export interface EncodedPair {
  chosen: number[];
  rejected: number[];
  truncated: boolean;
  /**
   * Token index where each response begins in `chosen` / `rejected` (encode(pair, {responseStart:
   * true}) only): the losses that read log π(y|x) count tokens from here to the end.
   */
  chosenStart?: number;
  rejectedStart?: number;
}

export interface EncodedResponse {
  ids: number[];
  truncated: boolean;
}

export class PairEncoder {
  readonly tokenizer: Tokenizer;
  readonly items: ItemTokenizer;
  readonly formatter: PromptFormatter;
  readonly padId: number;
  /** Tokens add_special_tokens puts before / after every sequence (as ItemTokenizer finds them). */
  private readonly specialBefore: number;
  private readonly specialAfter: number;
  private lastPrefix: { text: string; tokens: number } | undefined;

  constructor(files: TokenizerFiles, readonly maxLength: number) {
    const config = files.tokenizerConfig;
    this.tokenizer = new Tokenizer(files.tokenizerJson, config);
    speedUpTokenizer(this.tokenizer);
    // The same special-token map, template choice and pad id as the server's readModelFolder.
    const { specialTokens, chatTemplate, padId } = tokenizerSettings(this.tokenizer, config);
    this.formatter = new PromptFormatter(chatTemplate, undefined, specialTokens);
    this.items = new ItemTokenizer(this.tokenizer, maxLength);
    this.padId = padId;
    this.specialBefore = this.items.prefix.length;
    this.specialAfter = this.items.suffix.length;
  }

  /** Rows the embedding table needs: the largest token id + 1 (added tokens included). */
  get vocabSize(): number {
    let max = -1;
    for (const id of this.tokenizer.get_vocab(true).values()) if (id > max) max = id;
    return max + 1;
  }

  encodeResponse(prompt: ChatMessage[], response: string): { ids: number[]; truncated: boolean } {
    return this.items.encode(this.formatter.render({ prompt, response }), 'left');
  }

  /**
   * The ids of a {prompt, response} item and the index of its first response token.
   *
   * ItemTokenizer encodes the rendered text in one piece (prompt and response apart only when it
   * truncates), so the boundary is found by counting tokens of the parts: untruncated, the
   * response starts after the special prefix and the tokens of the rendered prompt prefix;
   * truncated, the response is the last min(tokens of the response text, budget) tokens before
   * the special suffix, exactly as ItemTokenizer lays them out. The untruncated count is an
   * approximation where a BPE merge crosses the prompt/response boundary (byte-level BPE
   * pre-splits at spaces and punctuation, so with the HH template "Assistant:" | " text" it is
   * exact in practice). Templates that do not render the prompt as a prefix of the conversation
   * fall back to the response text's own token count. The suffix (e.g. an EOS the post-processor
   * adds) counts as part of the response. Never below 1: nothing predicts token 0.
   */
  encodeWithStart(prompt: ChatMessage[], response: string): EncodedResponse & { start: number } {
    const rendered = this.formatter.render({ prompt, response });
    const enc = this.items.encode(rendered, 'left');
    const count = (text: string): number => this.tokenizer.encode(text, { add_special_tokens: false }).ids.length;
    const n = enc.ids.length;
    let start: number;
    if (!enc.truncated && rendered.responseStart !== undefined) {
      // The chosen and rejected responses of a pair share their prompt: count it once.
      const prefix = rendered.text.slice(0, rendered.responseStart);
      if (this.lastPrefix?.text !== prefix) this.lastPrefix = { text: prefix, tokens: count(prefix) };
      start = this.specialBefore + this.lastPrefix.tokens;
    } else {
      const responseTokens = count(rendered.responseStart !== undefined ? rendered.text.slice(rendered.responseStart) : response);
      const body = n - this.specialBefore - this.specialAfter;
      start = n - this.specialAfter - Math.min(responseTokens, body);
    }
    return { ...enc, start: Math.min(Math.max(1, start), n) };
  }

  encode(pair: PreferencePair, options: { responseStart?: boolean } = {}): EncodedPair {
    if (options.responseStart) {
      const c = this.encodeWithStart(pair.prompt, pair.chosen);
      const r = this.encodeWithStart(pair.prompt, pair.rejected);
      return { chosen: c.ids, rejected: r.ids, truncated: c.truncated || r.truncated, chosenStart: c.start, rejectedStart: r.start };
    }
    const c = this.encodeResponse(pair.prompt, pair.chosen);
    const r = this.encodeResponse(pair.prompt, pair.rejected);
    return { chosen: c.ids, rejected: r.ids, truncated: c.truncated || r.truncated };
  }
}

