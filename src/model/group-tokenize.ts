// Prompt groups: GRPO-style trainers (TRL's GRPOTrainer, verl, OpenRLHF) score many responses to
// one prompt in one request. Tokenized item by item, the prompt — usually the longer part — is
// tokenized once per response. Here the items of a request that share a prompt tokenize it once;
// each item then tokenizes only a short window (the prompt's last characters from a whitespace
// cut, its response and the template's trailer), and its tokens are the prompt's tokens joined
// to the window's at a seam both tokenizations agree on. The result is ItemTokenizer.encode's,
// truncation included; where that cannot be checked, the item is encoded whole.
import { ModelError } from './errors.js';
import { splitItem, type RenderedItem, type ScoreItem } from './format.js';
import { WINDOW_MARGIN_TOKENS, type ItemTokenizer, type TokenizedItem, type TruncationSide } from './tokenize.js';

const MARGIN = WINDOW_MARGIN_TOKENS;

/** What tokenizeItems needs of a model: its formatter and tokenizer (a ModelSpec has both). */
export interface ItemEncoder {
  formatter: { render(item: ScoreItem, renderedPrompt?: string): RenderedItem; renderPrompt(item: ScoreItem): string | undefined };
  tokenizer: ItemTokenizer;
}

export interface TokenizeStats {
  /** Characters handed to the tokenizer (a prompt group's prompt counts once). */
  tokenizedChars: number;
  /** Items whose tokens were stitched from their prompt group's tokens. */
  groupedItems: number;
}

/** An item's rendering or tokenization failed: `error` is what was thrown, `index` the item's position. */
export class ItemTokenizeError extends Error {
  constructor(
    readonly index: number,
    readonly error: unknown,
  ) {
    super(error instanceof Error ? error.message : String(error));
  }

  /** Whether the item is at fault (a 400), as opposed to the server (a 500). */
  get itemFault(): boolean {
    return this.error instanceof ModelError;
  }
}

/**
 * A prompt's tokens, computed once, and the seam where each of its responses joins them.
 *
 * Why the join is exact. Let P be the rendered prompt (the text before responseStart), c a cut
 * before a whitespace character that a word follows, near P's end, and W = P[c:] the seam text.
 * The windowed tokenizer's premise (tokenize.ts, checked on real data for five tokenizers) is
 * that tokenizing a text from such a cut changes at most MARGIN tokens after it, and that text
 * added after a point changes at most MARGIN tokens before it. So for an item P + S:
 *   - its first tokens are P's own, except the last MARGIN of P (S may change those);
 *   - its tokens from the cut on, past the first MARGIN, are those of W + S on its own.
 * Both are checked rather than assumed where they meet: build() checks that tokens(W) past its
 * first MARGIN equal the last tokens of tokens(P), which fixes where W's tokens sit in P's; and
 * stitch() checks that tokens(W + S) begin with tokens(W) up to MARGIN tokens from P's end, so
 * S changed nothing there. The item's tokens are then tokens(P) up to the seam followed by
 * tokens(W + S) from the seam; the seam lies between the two margins, where all three
 * tokenizations agree.
 */
export class PromptTokens {
  private constructor(
    private readonly tokenizer: ItemTokenizer,
    /** The rendered prompt: every item of the group must render exactly this before its response. */
    readonly prompt: string,
    /** The prompt's tokens without special tokens, as encodeWhole's truncation takes them. */
    private readonly promptIds: number[],
    /** P[c:]: what each item tokenizes of the prompt, before its response. */
    private readonly seamText: string,
    private readonly seamIds: number[],
    /** Index in promptIds of seamIds[MARGIN]: where the item's tokens switch from P's to its window's. */
    private readonly join: number,
  ) {}

  /**
   * The prompt's tokens and seam, or undefined when stitching cannot be checked: a prompt no
   * longer than the seam window, no whitespace cut near its end, or a seam whose tokens do not
   * line up with the prompt's.
   */
  static build(tokenizer: ItemTokenizer, prompt: string): PromptTokens | undefined {
    const seam = tokenizer.seamWindow(prompt);
    if (seam === undefined) return undefined;
    const promptIds = tokenizer.encodePlain(prompt);
    const offset = promptIds.length - seam.ids.length;
    if (offset < 0) return undefined;
    for (let j = MARGIN; j < seam.ids.length; j++) if (promptIds[offset + j] !== seam.ids[j]) return undefined;
    return new PromptTokens(tokenizer, prompt, promptIds, seam.text, seam.ids, offset + MARGIN);
  }

  /**
   * encode(item, side) for an item of this prompt, or undefined when it must be encoded whole: it
   * renders another prompt text (a template that varies the prompt with the response), it is long
   * enough for encode's windowed path, or its response changed the seam's tokens.
   */
  stitch(item: RenderedItem, side: TruncationSide): TokenizedItem | undefined {
    if (item.responseStart !== this.prompt.length || !item.text.startsWith(this.prompt)) return undefined;
    if (item.text.length > this.tokenizer.wholeTextChars) return undefined;
    const window = this.tokenizer.encodePlain(this.seamText + item.text.slice(this.prompt.length));
    const checked = this.seamIds.length - MARGIN;
    if (window.length < checked) return undefined;
    for (let j = 0; j < checked; j++) if (window[j] !== this.seamIds[j]) return undefined;
    const body = [...this.promptIds.slice(0, this.join), ...window.slice(MARGIN)];
    // encodeWhole's own truncation decides on the stitched tokens; for left truncation it takes
    // the prompt's tokens on their own, which are promptIds exactly (the same encodePlain call).
    return this.tokenizer.cutWhole(item, side, this.tokenizer.withSpecials(body), () => body, () => this.promptIds);
  }
}

/**
 * The key items share when they have the same prompt: its messages' JSON, every field included
 * (a template may read more than role and content), so a prompt string and the same single user
 * turn as a message list (or as `messages` before the response) group together. Undefined for
 * pre-formatted `text` items, and for items splitItem refuses (their rendering fails with the
 * item's own message).
 */
export function promptGroupKey(item: ScoreItem): string | undefined {
  if ('text' in item) return undefined;
  try {
    return JSON.stringify(splitItem(item).prompt);
  } catch {
    return undefined;
  }
}

/**
 * Renders and tokenizes a request's items in order, exactly as encoder.tokenizer.encode would
 * item by item; items that share a prompt (two or more) go through their group's PromptTokens
 * when `promptGroups` is on. A group's prompt is rendered once too (equal messages render
 * equally), but every item's full conversation is still rendered on its own: that is the text
 * scored, and stitch() checks it begins with the group's prompt. Jinja is a large share of the
 * cost (docs/benchmarks.md#prompt-groups-grpo). Throws ItemTokenizeError naming the first item
 * that fails.
 */
export function tokenizeItems(
  encoder: ItemEncoder,
  items: readonly ScoreItem[],
  side: TruncationSide,
  promptGroups: boolean,
): { items: TokenizedItem[]; stats: TokenizeStats } {
  const { formatter, tokenizer } = encoder;
  const charsBefore = tokenizer.tokenizedChars;
  const keys = promptGroups ? items.map(promptGroupKey) : [];
  const members = new Map<string, number>();
  for (const key of keys) if (key !== undefined) members.set(key, (members.get(key) ?? 0) + 1);
  // Per shared prompt: its tokens once built, or null where building failed (its items are encoded whole).
  const groups = new Map<string, PromptTokens | null>();
  const prompts = new Map<string, string | undefined>();
  let groupedItems = 0;

  const tokenized = items.map((item, index): TokenizedItem => {
    try {
      const key = keys[index];
      if (key === undefined || (members.get(key) ?? 0) < 2) return tokenizer.encode(formatter.render(item), side);
      if (!prompts.has(key)) prompts.set(key, formatter.renderPrompt(item));
      const rendered = formatter.render(item, prompts.get(key));
      if (rendered.responseStart === undefined) return tokenizer.encode(rendered, side);
      let group = groups.get(key);
      // Built from the first member short enough to be stitched: a prompt longer than
      // wholeTextChars leaves every member on encode's window, whose cost max length bounds.
      if (group === undefined && rendered.text.length <= tokenizer.wholeTextChars) {
        group = PromptTokens.build(tokenizer, rendered.text.slice(0, rendered.responseStart)) ?? null;
        groups.set(key, group);
      }
      const stitched = group?.stitch(rendered, side);
      if (stitched === undefined) return tokenizer.encode(rendered, side);
      groupedItems++;
      return stitched;
    } catch (err) {
      throw new ItemTokenizeError(index, err);
    }
  });
  return { items: tokenized, stats: { tokenizedChars: tokenizer.tokenizedChars - charsBefore, groupedItems } };
}
