// Stable keys: the split and the pair ids must not change between runs, machines or Node
// versions, so they hash a canonical JSON text with sha256 (never Math.random or object order).
import { createHash } from 'node:crypto';
import type { ChatMessage } from './types.js';

// A text key that is equal exactly when two prompts have the same roles and contents in order.
export function promptKey(prompt: readonly ChatMessage[]): string {
  return JSON.stringify(prompt.map((m) => [m.role, m.content]));
}

export function pairId(prompt: readonly ChatMessage[], chosen: string, rejected: string): string {
  return createHash('sha256').update(JSON.stringify([promptKey(prompt), chosen, rejected])).digest('hex').slice(0, 16);
}
