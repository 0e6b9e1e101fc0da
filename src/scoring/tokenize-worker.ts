// Piscina worker: formats and tokenizes a request's items off the main thread. A 256-item
// request of HH-RLHF dialogues costs ~110 ms of GPT-2 tokenization (measured, see
// docs/benchmarks.md), long enough to stall every other request on the event loop.
import { LRUCache } from 'lru-cache';
import { ModelError } from '../model/errors.js';
import { specFromFiles, type ModelFiles, type ModelSpec } from '../model/model-folder.js';
import type { ScoreItem } from '../model/format.js';
import type { TruncationSide } from '../model/tokenize.js';

export interface TokenizeTask {
  /** The loaded version's unique key (ModelVersion.key). */
  model: string;
  /** Sent when the worker does not know `model` yet; shown in messages. */
  files?: ModelFiles;
  dir: string;
  items: ScoreItem[];
  side: TruncationSide;
}

export type TokenizeResult =
  | { ok: true; ids: number[][]; truncated: boolean[] }
  | { ok: false; index: number; message: string; /** the item's fault (a 400), not the worker's */ itemFault: boolean }
  | { ok: false; unknownModel: true };

// Specs by load key, built from the files the main thread read at load: never from the folder,
// which may be gone or hold other weights by now. Bounded, since retired versions never return.
const specs = new LRUCache<string, ModelSpec>({ max: 16 });

export default function tokenize(task: TokenizeTask): TokenizeResult {
  let spec = specs.get(task.model);
  if (spec === undefined) {
    if (task.files === undefined) return { ok: false, unknownModel: true };
    spec = specFromFiles(task.dir, task.files);
    specs.set(task.model, spec);
  }
  const ids: number[][] = [];
  const truncated: boolean[] = [];
  for (const [index, item] of task.items.entries()) {
    try {
      const t = spec.tokenizer.encode(spec.formatter.render(item), task.side);
      ids.push(t.ids);
      truncated.push(t.truncated);
    } catch (err) {
      return { ok: false, index, message: (err as Error).message, itemFault: err instanceof ModelError };
    }
  }
  return { ok: true, ids, truncated };
}
