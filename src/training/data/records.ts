// One JSON record → one PreferencePair, or the reason it was skipped. The shape is detected per
// record, so a file may mix them; readers never throw on a bad record, they count it.
import { looksLikeHHTranscript, parseHHPair, parseHHPrompt, stripHHResponse } from './hh.js';
import { pairId, promptKey } from './keys.js';
import type { ChatMessage, ChatRole, DropReason, PreferencePair, RecordFormat } from './types.js';

export type RecordResult = { pair: PreferencePair; format: RecordFormat } | { dropped: DropReason };

type Fields = Record<string, unknown>;
type Core = Pick<PreferencePair, 'prompt' | 'chosen' | 'rejected'>;

const ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];

function isObject(x: unknown): x is Fields {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function parseMessages(x: unknown): ChatMessage[] | null {
  if (!Array.isArray(x)) return null;
  const out: ChatMessage[] = [];
  for (const m of x) {
    if (!isObject(m) || typeof m.content !== 'string' || !ROLES.includes(m.role as ChatRole)) return null;
    out.push({ role: m.role as ChatRole, content: m.content });
  }
  return out;
}

// PandaLM stores six responses that were the text "True" as JSON booleans (a YAML round trip in
// its pipeline); judged responses are text, so scalars become the text the model wrote.
function responseText(x: unknown): string | null {
  if (typeof x === 'string') return x;
  if (typeof x === 'boolean') return x ? 'True' : 'False';
  if (typeof x === 'number' && Number.isFinite(x)) return String(x);
  return null;
}

function userPrompt(instruction: string, input: unknown): ChatMessage[] {
  const extra = typeof input === 'string' ? input : '';
  return [{ role: 'user', content: extra.length > 0 ? `${instruction}\n\n${extra}` : instruction }];
}

function startsWith(conversation: readonly ChatMessage[], prefix: readonly ChatMessage[]): boolean {
  return prefix.length <= conversation.length && prefix.every((m, i) => m.role === conversation[i]!.role && m.content === conversation[i]!.content);
}

// A response side is a string, or a message list whose last message is the assistant's answer
// and whose earlier messages are conversation context.
function responseSide(x: unknown): { context: ChatMessage[]; response: string } | null {
  if (typeof x === 'string') return { context: [], response: x };
  const messages = parseMessages(x);
  const last = messages?.at(-1);
  if (!messages || !last || last.role !== 'assistant') return null;
  return { context: messages.slice(0, -1), response: last.content };
}

// TRL and RewardBench conventions: `prompt` a string or message list (or absent when the
// chosen/rejected lists carry the whole conversation); chosen/rejected strings or lists.
// When a list carries context and a prompt is given too (UltraFeedback-binarized repeats the
// prompt inside `chosen`), the context wins if it already starts with the prompt.
function promptChosenRejected(r: Fields): Core | DropReason {
  const chosen = responseSide(r.chosen);
  const rejected = responseSide(r.rejected);
  if (!chosen || !rejected) return 'malformed';
  if (promptKey(chosen.context) !== promptKey(rejected.context)) return 'prompt_mismatch';

  let given: ChatMessage[] = [];
  let hhPrompt = false;
  if (typeof r.prompt === 'string') {
    const hh = parseHHPrompt(r.prompt);
    hhPrompt = hh !== null;
    given = hh ?? [{ role: 'user', content: r.prompt }];
  } else if (r.prompt !== undefined && r.prompt !== null) {
    const messages = parseMessages(r.prompt);
    if (!messages) return 'malformed';
    given = messages;
  }
  const context = chosen.context;
  const prompt = context.length > 0 && startsWith(context, given) ? context : [...given, ...context];
  if (prompt.length === 0 || prompt.every((m) => m.content.length === 0)) return 'missing_prompt';
  const fix = hhPrompt ? stripHHResponse : (s: string) => s;
  return { prompt, chosen: fix(chosen.response), rejected: fix(rejected.response) };
}

// AlpacaEval: preference 1 or 2 names the better output; anything else (ties as 0 or 1.5) is
// dropped.
function pairwiseJudgment(r: Fields): Core | DropReason {
  const out1 = responseText(r.output_1);
  const out2 = responseText(r.output_2);
  if (typeof r.instruction !== 'string' || out1 === null || out2 === null) return 'malformed';
  const preference = Number(r.preference);
  if (preference !== 1 && preference !== 2) return 'tie';
  const [chosen, rejected] = preference === 1 ? [out1, out2] : [out2, out1];
  return { prompt: userPrompt(r.instruction, r.input), chosen, rejected };
}

// PandaLM: each annotatorN says 0 (tie), 1 or 2, as an int or a string; the strict majority
// decides, and a majority for 0 or no majority is dropped.
function pandalm(r: Fields): Core | DropReason {
  const response1 = responseText(r.response1);
  const response2 = responseText(r.response2);
  if (typeof r.instruction !== 'string' || response1 === null || response2 === null) return 'malformed';
  const votes = Object.keys(r)
    .filter((k) => /^annotator\d+$/.test(k))
    .map((k) => Number(r[k]));
  if (votes.length === 0 || votes.some((v) => v !== 0 && v !== 1 && v !== 2)) return 'malformed';
  const winner = [0, 1, 2].find((choice) => votes.filter((v) => v === choice).length * 2 > votes.length);
  if (winner === undefined) return 'no_majority';
  if (winner === 0) return 'tie';
  const [chosen, rejected] = winner === 1 ? [response1, response2] : [response2, response1];
  return { prompt: userPrompt(r.instruction, r.input), chosen, rejected };
}

function detect(r: Fields): RecordFormat | null {
  if ('response1' in r && 'response2' in r && Object.keys(r).some((k) => /^annotator\d+$/.test(k))) return 'pandalm';
  if ('output_1' in r && 'output_2' in r && 'preference' in r) return 'pairwise_judgment';
  if (!('chosen' in r) || !('rejected' in r)) return null;
  if ((r.prompt === undefined || r.prompt === null) && typeof r.chosen === 'string' && typeof r.rejected === 'string') {
    return looksLikeHHTranscript(r.chosen) ? 'hh_rlhf' : 'prompt_chosen_rejected';
  }
  return Array.isArray(r.chosen) || Array.isArray(r.rejected) || Array.isArray(r.prompt) ? 'messages' : 'prompt_chosen_rejected';
}

export function recordToPair(record: unknown, source: string): RecordResult {
  if (!isObject(record)) return { dropped: 'not_an_object' };
  const format = detect(record);
  if (format === null) return { dropped: 'unknown_format' };

  let core: Core | DropReason;
  switch (format) {
    case 'hh_rlhf':
      core = typeof record.rejected === 'string' ? (parseHHPair(record.chosen as string, record.rejected) ?? 'hh_unparseable') : 'malformed';
      break;
    case 'pairwise_judgment':
      core = pairwiseJudgment(record);
      break;
    case 'pandalm':
      core = pandalm(record);
      break;
    default:
      core = promptChosenRejected(record);
  }
  if (typeof core === 'string') return { dropped: core };
  if (core.chosen === core.rejected) return { dropped: 'identical_responses' };

  const pair: PreferencePair = { ...core, source, id: pairId(core.prompt, core.chosen, core.rejected) };
  if (record.margin !== undefined && record.margin !== null) {
    if (typeof record.margin !== 'number' || !Number.isFinite(record.margin)) return { dropped: 'malformed' };
    pair.margin = record.margin;
  }
  if (record.objective !== undefined && record.objective !== null) {
    if (typeof record.objective !== 'string') return { dropped: 'malformed' };
    pair.objective = record.objective;
  }
  return { pair, format };
}
