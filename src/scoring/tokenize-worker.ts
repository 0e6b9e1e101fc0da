// Piscina worker: formats and tokenizes a request's items off the main thread. A 256-item
// request of HH-RLHF dialogues costs ~110 ms of GPT-2 tokenization (measured, see
// docs/benchmarks.md), long enough to stall every other request on the event loop.
import { LRUCache } from 'lru-cache';
import { ItemTokenizeError, tokenizeItems, type TokenizeStats } from '../model/group-tokenize.js';
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
  /** Tokenize a prompt that several items share once (src/model/group-tokenize.ts). */
  promptGroups: boolean;
}

export type TokenizeResult =
  | { ok: true; ids: number[][]; truncated: boolean[]; stats: TokenizeStats }
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
  try {
    const { items, stats } = tokenizeItems(spec, task.items, task.side, task.promptGroups);
    return { ok: true, ids: items.map((t) => t.ids), truncated: items.map((t) => t.truncated), stats };
  } catch (err) {
    if (!(err instanceof ItemTokenizeError)) throw err;
    return { ok: false, index: err.index, message: err.message, itemFault: err.itemFault };
  }
}
