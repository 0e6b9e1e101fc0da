// Turns a scoring item into the exact text the reward model was trained on, and knows where the
// response starts so truncation can keep it. One formatter per model folder.
import { Template } from '@huggingface/jinja';
import { invalidItem } from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What a client can ask to score. `text` is pre-formatted (OpenRLHF's /get_reward). */
export type ScoreItem =
  | { prompt: string | ChatMessage[]; response: string }
  | { messages: ChatMessage[] }
  | { text: string };

export interface RenderedItem {
  text: string;
  /** Character offset where the response begins; undefined when the text came pre-formatted. */
  responseStart: number | undefined;
}

/**
 * Anthropic HH-RLHF's transcript format as a chat template. Models without a chat template
 * and without a manifest `prompt_format` are assumed to be trained on it (rmserve's own
 * trainer uses it for every data set, see docs/model-format.md).
 */
export const HH_CHAT_TEMPLATE =
  "{% for message in messages %}" +
  "{% if message['role'] == 'user' %}{{ '\\n\\nHuman: ' + message['content'] }}" +
  "{% elif message['role'] == 'assistant' %}{{ '\\n\\nAssistant: ' + message['content'] }}" +
  "{% else %}{{ message['content'] }}{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}";


export class PromptFormatter {
  private readonly template: Template | undefined;
  /**
   * Text the template appends whatever the messages and add_generation_prompt say: Meta's first
   * Llama-3-Instruct template ends every render with an empty assistant header. Scored after the
   * response, it changes the reward (-1.86 vs -1.23 on one item), so it is cut off.
   */
  private readonly trailer: string;
  /** Whether the template ends an assistant turn with the EOS token (Llama 2, Mistral, …). */
  private readonly turnEndsWithEos: boolean;

  /**
   * @param chatTemplate a Jinja chat template (tokenizer_config.json's), or undefined
   * @param promptFormat a `{prompt}…{response}` string (rmserve.json's), used when there is no template
   * @param specialTokens bos_token / eos_token etc., passed to the template like transformers does
   */
  constructor(
    chatTemplate: string | undefined,
    private readonly promptFormat: string | undefined,
    private readonly specialTokens: Record<string, string> = {},
  ) {
    const source = chatTemplate ?? (promptFormat === undefined ? HH_CHAT_TEMPLATE : undefined);
    this.template = source === undefined ? undefined : new Template(source);
    this.trailer = this.template === undefined ? '' : this.unconditionalTrailer();
    const eos = specialTokens.eos_token;
    this.turnEndsWithEos =
      this.template !== undefined && eos !== undefined && eos !== '' && this.render({ prompt: 'a', response: 'b' }).text.trimEnd().endsWith(eos);
  }

  /**
   * @param renderedPrompt renderPrompt(item), when the caller has it already: the items of a
   *   prompt group (src/model/group-tokenize.ts) share one prompt, and rendering it is half of a
   *   render's jinja work
   */
  render(item: ScoreItem, renderedPrompt?: string): RenderedItem {
    if ('text' in item) return { text: this.stripTrailingSpecials(item.text), responseStart: undefined };
    const { prompt, response } = splitItem(item);
    if (this.template === undefined) return this.renderPromptFormat(prompt, response);

    const promptText = renderedPrompt ?? this.renderTemplate(prompt, true);
    let fullText = this.renderTemplate([...prompt, { role: 'assistant', content: response }], false);
    if (this.trailer !== '' && fullText.endsWith(this.trailer)) fullText = fullText.slice(0, fullText.length - this.trailer.length);
    // Templates that render the prompt as a prefix of the full conversation let truncation keep
    // the response whole; for the rest (rare) the boundary is unknown and truncation is plain.
    const responseStart = fullText.startsWith(promptText) ? promptText.length : undefined;
    return { text: fullText, responseStart };
  }

  /**
   * The template's rendering of the item's prompt with the generation prompt, which render()
   * looks for at the start of the full text; undefined where render() renders none (pre-formatted
   * text, a prompt_format).
   */
  renderPrompt(item: ScoreItem): string | undefined {
    if ('text' in item || this.template === undefined) return undefined;
    return this.renderTemplate(splitItem(item).prompt, true);
  }

  /**
   * A pre-formatted text (OpenRLHF's /get_reward queries) often ends with the EOS or pad tokens
   * the policy generated; OpenRLHF's serve_rm strips them before scoring, and so does this, so a
   * query scores like the same pair sent to /v1/score.
   */
  private stripTrailingSpecials(text: string): string {
    const tails = [this.specialTokens.eos_token, this.specialTokens.pad_token].filter((t): t is string => t !== undefined && t !== '');
    let end = text.length;
    for (let changed = true; changed; ) {
      changed = false;
      for (const tail of tails) {
        if (end >= tail.length && text.startsWith(tail, end - tail.length)) {
          end -= tail.length;
          changed = true;
        }
      }
    }
    if (end === text.length) return text;
    // A template that closes the assistant's turn with EOS renders /v1/score's pairs ending in
    // one EOS: keep one, so the same pair scores the same on both routes (serve_rm also appends one).
    return text.slice(0, end) + (this.turnEndsWithEos ? (this.specialTokens.eos_token as string) : '');
  }

  /** What every render ends with: the render of no messages, if every conversation ends with it too. */
  private unconditionalTrailer(): string {
    try {
      const empty = this.renderTemplate([], false);
      if (empty.trim() === '') return '';
      const user: ChatMessage = { role: 'user', content: 'a' };
      const turns = [this.renderTemplate([user], false), this.renderTemplate([user, { role: 'assistant', content: 'b' }], false)];
      return turns.every((t) => t.endsWith(empty)) ? empty : '';
    } catch {
      return ''; // templates that refuse an empty conversation have no such trailer to find
    }
  }

  private renderTemplate(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return (this.template as Template).render({
        ...this.specialTokens,
        messages,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (err) {
      throw invalidItem(`chat template failed: ${(err as Error).message}`);
    }
  }

  private renderPromptFormat(prompt: ChatMessage[], response: string): RenderedItem {
    const format = this.promptFormat as string;
    if (prompt.length !== 1 || prompt[0]?.role !== 'user') {
      throw invalidItem('this model formats single-turn prompts only: give one user message or a prompt string');
    }
    const head = format.slice(0, format.lastIndexOf('{response}')).replaceAll('{prompt}', prompt[0].content);
    return { text: head + response, responseStart: head.length };
  }
}

/** Normalises the three item shapes into (prompt messages, response). */
export function splitItem(item: Exclude<ScoreItem, { text: string }>): { prompt: ChatMessage[]; response: string } {
  if ('messages' in item) {
    const last = item.messages.at(-1);
    if (last === undefined || last.role !== 'assistant') {
      throw invalidItem('messages must end with the assistant response to score');
    }
    return { prompt: item.messages.slice(0, -1), response: last.content };
  }
  const prompt: ChatMessage[] =
    typeof item.prompt === 'string' ? [{ role: 'user', content: item.prompt }] : item.prompt;
  return { prompt, response: item.response };
}
