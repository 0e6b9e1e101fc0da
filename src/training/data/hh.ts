// Anthropic HH-RLHF transcripts: `chosen` and `rejected` are whole dialogues of
// "\n\nHuman: …" / "\n\nAssistant: …" turns that share everything up to the final
// "\n\nAssistant:". Parsing and rendering are inverses: renderHHTranscript(prompt, response)
// reproduces the original transcript byte for byte (each marker is followed by one space,
// which the parser removes and the renderer puts back).
import type { ChatMessage } from './types.js';

const HUMAN = '\n\nHuman:';
const ASSISTANT = '\n\nAssistant:';
const TURN = /\n\n(Human|Assistant):/g;

function stripOneSpace(text: string): string {
  return text.startsWith(' ') ? text.slice(1) : text;
}

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

// "\n\nHuman: a\n\nAssistant: b" → [{user, a}, {assistant, b}]; null if there is text before
// the first turn or no turn at all.
export function parseHHTurns(text: string): ChatMessage[] | null {
  const turns: ChatMessage[] = [];
  let last: { role: ChatMessage['role']; start: number } | null = null;
  for (const m of text.matchAll(TURN)) {
    if (last === null) {
      if (m.index !== 0) return null;
    } else {
      turns.push({ role: last.role, content: stripOneSpace(text.slice(last.start, m.index)) });
    }
    last = { role: m[1] === 'Human' ? 'user' : 'assistant', start: m.index + m[0].length };
  }
  if (last === null) return null;
  turns.push({ role: last.role, content: stripOneSpace(text.slice(last.start)) });
  return turns;
}

export interface HHSplit {
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
}

// The responses start after the last "\n\nAssistant:" that lies wholly inside the text both
// transcripts share. Taking the last marker of each transcript instead would be wrong for the
// few responses that themselves contain "\n\nAssistant:" (5 of the 2,312 harmless test pairs).
export function parseHHPair(chosen: string, rejected: string): HHSplit | null {
  const shared = commonPrefixLength(chosen, rejected);
  if (shared < ASSISTANT.length) return null;
  const cut = chosen.lastIndexOf(ASSISTANT, shared - ASSISTANT.length);
  if (cut <= 0) return null;
  const prompt = parseHHTurns(chosen.slice(0, cut));
  if (prompt === null) return null;
  return {
    prompt,
    chosen: stripOneSpace(chosen.slice(cut + ASSISTANT.length)),
    rejected: stripOneSpace(rejected.slice(cut + ASSISTANT.length)),
  };
}

// The prompt as an HH transcript ending in an open "\n\nAssistant:" turn, plus the response
// when given. System messages have no HH marker; they go first as plain text, as Anthropic's
// format places a system prompt before the first Human turn.
export function renderHHTranscript(prompt: readonly ChatMessage[], response?: string): string {
  let out = '';
  for (const m of prompt) {
    if (m.role === 'system') out += m.content;
    else out += `${m.role === 'user' ? HUMAN : ASSISTANT} ${m.content}`;
  }
  return response === undefined ? `${out}${ASSISTANT}` : `${out}${ASSISTANT} ${response}`;
}

export function looksLikeHHTranscript(text: string): boolean {
  return text.startsWith(HUMAN) && text.includes(ASSISTANT);
}

// A prompt written as an open HH transcript ("\n\nHuman: …\n\nAssistant:"), as the
// prompt/chosen/rejected re-packagings of HH-RLHF store it; the responses then carry the
// marker's space, which stripHHResponse removes.
export function parseHHPrompt(text: string): ChatMessage[] | null {
  if (!text.startsWith(HUMAN) || !text.endsWith(ASSISTANT)) return null;
  return parseHHTurns(text.slice(0, -ASSISTANT.length));
}

export const stripHHResponse = stripOneSpace;
