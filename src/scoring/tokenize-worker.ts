// Piscina worker: formats and tokenizes a request's items off the main thread. A 256-item
// request of HH-RLHF dialogues costs ~110 ms of GPT-2 tokenization (measured, see
// docs/benchmarks.md), long enough to stall every other request on the event loop.
import { readModelFolder, type ModelSpec } from '../model/model-folder.js';
import type { ScoreItem } from '../model/format.js';
import type { TruncationSide } from '../model/tokenize.js';

export interface TokenizeTask {
  dir: string;
  items: ScoreItem[];
  side: TruncationSide;
}

export type TokenizeResult =
  | { ok: true; ids: number[][]; truncated: boolean[] }
  | { ok: false; index: number; message: string };

// Version folders are immutable once complete, so a folder's spec can be cached by its path.
const specs = new Map<string, ModelSpec>();

export default function tokenize(task: TokenizeTask): TokenizeResult {
  let spec = specs.get(task.dir);
  if (spec === undefined) {
    spec = readModelFolder(task.dir);
    specs.set(task.dir, spec);
  }
  const ids: number[][] = [];
  const truncated: boolean[] = [];
  for (const [index, item] of task.items.entries()) {
    try {
      const t = spec.tokenizer.encode(spec.formatter.render(item), task.side);
      ids.push(t.ids);
      truncated.push(t.truncated);
    } catch (err) {
      return { ok: false, index, message: (err as Error).message };
    }
  }
  return { ok: true, ids, truncated };
}
