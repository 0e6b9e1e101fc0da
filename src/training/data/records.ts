// One JSON record → one PreferencePair, or the reason it was skipped and, for a record that is
// not a preference record at all, the field at fault. The shape is detected per record, so a file
// may mix them. recordToPair never throws; the file reader decides which reasons are fatal.
import { looksLikeHHTranscript, parseHHPair, parseHHPrompt, stripHHResponse } from './hh.js';
import { pairId, promptKey } from './keys.js';
import type { ChatMessage, ChatRole, DropReason, PreferencePair, RecordFormat } from './types.js';

export interface Dropped {
  dropped: DropReason;
  /** the field at fault, when there is one */
  field?: string;
  /** one line for the user: what is wrong with the field */
  detail?: string;
}

export type RecordResult = { pair: PreferencePair; format: RecordFormat } | Dropped;

type Fields = Record<string, unknown>;
type Core = Pick<PreferencePair, 'prompt' | 'chosen' | 'rejected'>;

const ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];
const RESPONSE = 'a string or a list of {role, content} messages ending with the assistant\'s answer';

function isObject(x: unknown): x is Fields {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  if (x === undefined) return 'missing';
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'an object';
  return typeof x === 'number' ? `a number (${x})` : typeof x === 'string' ? 'a string' : typeof x === 'boolean' ? `a boolean (${x})` : `a ${typeof x}`;
}

function malformed(field: string, detail: string): Dropped {
  return { dropped: 'malformed', field, detail: `field "${field}" ${detail}` };
}

function isDrop(x: unknown): x is Dropped {
  return typeof x === 'object' && x !== null && 'dropped' in x;
}

function parseMessages(x: unknown, field: string): ChatMessage[] | Dropped {
  if (!Array.isArray(x)) return malformed(field, `is ${describe(x)}; expected a list of {role, content} messages`);
  const out: ChatMessage[] = [];
  for (const [i, m] of x.entries()) {
    if (!isObject(m)) return malformed(`${field}[${i}]`, `is ${describe(m)}; expected a {role, content} message`);
    if (!ROLES.includes(m.role as ChatRole)) return malformed(`${field}[${i}].role`, `is ${typeof m.role === 'string' ? JSON.stringify(m.role) : describe(m.role)}; expected "system", "user" or "assistant"`);
    if (typeof m.content !== 'string') return malformed(`${field}[${i}].content`, `is ${describe(m.content)}; expected a string`);
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

function textField(r: Fields, field: string): string | Dropped {
  const text = responseText(r[field]);
  return text ?? malformed(field, `is ${describe(r[field])}; expected a string`);
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
function responseSide(x: unknown, field: string): { context: ChatMessage[]; response: string } | Dropped {
  if (typeof x === 'string') return { context: [], response: x };
  if (!Array.isArray(x)) return malformed(field, `is ${describe(x)}; expected ${RESPONSE}`);
  const messages = parseMessages(x, field);
  if (isDrop(messages)) return messages;
  const last = messages.at(-1);
  if (!last) return malformed(field, `is an empty list; expected ${RESPONSE}`);
  if (last.role !== 'assistant') return malformed(field, `ends with a "${last.role}" message; expected the assistant's answer last`);
  return { context: messages.slice(0, -1), response: last.content };
}

// TRL and RewardBench conventions: `prompt` a string or message list (or absent when the
// chosen/rejected lists carry the whole conversation); chosen/rejected strings or lists.
// When a list carries context and a prompt is given too (UltraFeedback-binarized repeats the
// prompt inside `chosen`), the context wins if it already starts with the prompt.
function promptChosenRejected(r: Fields): Core | Dropped {
  const chosen = responseSide(r.chosen, 'chosen');
  if (isDrop(chosen)) return chosen;
  const rejected = responseSide(r.rejected, 'rejected');
  if (isDrop(rejected)) return rejected;
  if (promptKey(chosen.context) !== promptKey(rejected.context)) {
    return { dropped: 'prompt_mismatch', field: 'rejected', detail: 'the conversations in "chosen" and "rejected" differ before the answers' };
  }

  let given: ChatMessage[] = [];
  let hhPrompt = false;
  if (typeof r.prompt === 'string') {
    const hh = parseHHPrompt(r.prompt);
    hhPrompt = hh !== null;
    given = hh ?? [{ role: 'user', content: r.prompt }];
  } else if (r.prompt !== undefined && r.prompt !== null) {
    const messages = parseMessages(r.prompt, 'prompt');
    if (isDrop(messages)) return messages;
    given = messages;
  }
  const context = chosen.context;
  const prompt = context.length > 0 && startsWith(context, given) ? context : [...given, ...context];
  if (prompt.length === 0 || prompt.every((m) => m.content.length === 0)) {
    const detail = r.prompt === undefined || r.prompt === null
      ? 'field "prompt" is missing, and "chosen"/"rejected" are plain answers with no conversation to take it from'
      : 'field "prompt" is empty';
    return { dropped: 'missing_prompt', field: 'prompt', detail };
  }
  const fix = hhPrompt ? stripHHResponse : (s: string) => s;
  return { prompt, chosen: fix(chosen.response), rejected: fix(rejected.response) };
}

// AlpacaEval: preference 1 or 2 names the better output; anything else (ties as 0 or 1.5) is
// dropped.
function pairwiseJudgment(r: Fields): Core | Dropped {
  if (typeof r.instruction !== 'string') return malformed('instruction', `is ${describe(r.instruction)}; expected a string`);
  const out1 = textField(r, 'output_1');
  if (isDrop(out1)) return out1;
  const out2 = textField(r, 'output_2');
  if (isDrop(out2)) return out2;
  const preference = Number(r.preference);
  if (preference !== 1 && preference !== 2) return { dropped: 'tie' };
  const [chosen, rejected] = preference === 1 ? [out1, out2] : [out2, out1];
  return { prompt: userPrompt(r.instruction, r.input), chosen, rejected };
}

// PandaLM: each annotatorN says 0 (tie), 1 or 2, as an int or a string; the strict majority
// decides, and a majority for 0 or no majority is dropped.
function pandalm(r: Fields): Core | Dropped {
  if (typeof r.instruction !== 'string') return malformed('instruction', `is ${describe(r.instruction)}; expected a string`);
  const response1 = textField(r, 'response1');
  if (isDrop(response1)) return response1;
  const response2 = textField(r, 'response2');
  if (isDrop(response2)) return response2;
  const annotators = Object.keys(r).filter((k) => /^annotator\d+$/.test(k));
  const votes = annotators.map((k) => Number(r[k]));
  const bad = votes.findIndex((v) => v !== 0 && v !== 1 && v !== 2);
  if (bad >= 0) {
    const k = annotators[bad] as string;
    return malformed(k, `is ${typeof r[k] === 'string' ? JSON.stringify(r[k]) : describe(r[k])}; expected 0 (tie), 1 or 2`);
  }
  const winner = [0, 1, 2].find((choice) => votes.filter((v) => v === choice).length * 2 > votes.length);
  if (winner === undefined) return { dropped: 'no_majority' };
  if (winner === 0) return { dropped: 'tie' };
  const [chosen, rejected] = winner === 1 ? [response1, response2] : [response2, response1];
  return { prompt: userPrompt(r.instruction, r.input), chosen, rejected };
}

function keyList(r: Fields): string {
  const keys = Object.keys(r);
  if (keys.length === 0) return 'the record is an empty object';
  const shown = keys.slice(0, 8).map((k) => JSON.stringify(k)).join(', ');
  return `the record has ${shown}${keys.length > 8 ? `, … (${keys.length} fields)` : ''}`;
}

// The field a record of no known shape lacks: the one whose partner is there (a misspelt
// "choosen" next to "rejected" is a missing "chosen"), else the usual pair.
function unknownFormat(r: Fields): Dropped {
  const groups: readonly (readonly string[])[] = [['chosen', 'rejected'], ['output_1', 'output_2', 'preference'], ['response1', 'response2']];
  for (const group of groups) {
    const missing = group.filter((k) => !(k in r));
    if (missing.length > 0 && missing.length < group.length) {
      return { dropped: 'unknown_format', field: missing[0], detail: `missing field "${missing[0]}" (${keyList(r)})` };
    }
  }
  if ('response1' in r && 'response2' in r) return { dropped: 'unknown_format', field: 'annotator1', detail: `missing PandaLM votes "annotator1".. (${keyList(r)})` };
  return {
    dropped: 'unknown_format', field: 'chosen',
    detail: `missing fields "chosen" and "rejected" (or AlpacaEval's output_1/output_2/preference, or PandaLM's response1/response2/annotatorN); ${keyList(r)}`,
  };
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
  if (!isObject(record)) return { dropped: 'not_an_object', detail: `the record is ${describe(record)}; expected a JSON object with "chosen" and "rejected"` };
  const format = detect(record);
  if (format === null) return unknownFormat(record);

  let core: Core | Dropped;
  switch (format) {
    case 'hh_rlhf':
      core = parseHHPair(record.chosen as string, record.rejected as string)
        ?? { dropped: 'hh_unparseable', field: 'chosen', detail: 'the transcripts in "chosen" and "rejected" do not share a "\\n\\nHuman: … \\n\\nAssistant:" conversation' };
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
  if (isDrop(core)) return core;
  if (core.chosen === core.rejected) return { dropped: 'identical_responses' };

  const pair: PreferencePair = { ...core, source, id: pairId(core.prompt, core.chosen, core.rejected) };
  if (record.margin !== undefined && record.margin !== null) {
    if (typeof record.margin !== 'number' || !Number.isFinite(record.margin)) return malformed('margin', `is ${describe(record.margin)}; expected a finite number`);
    pair.margin = record.margin;
  }
  if (record.objective !== undefined && record.objective !== null) {
    if (typeof record.objective !== 'string') return malformed('objective', `is ${describe(record.objective)}; expected a string`);
    pair.objective = record.objective;
  }
  return { pair, format };
}
