// How many ONNX sessions a version gets, and how many ORT threads each: `--instances auto`.
//
// Why a rule and not one default: on a 2-core CPU two one-thread instances plus a two-thread
// session for lone batches (the "three-session layout") served up to 43% more pairs/s than one
// two-thread session under load on two different 2-core VMs. At concurrency 1 and 2 every batch
// has the model to itself and runs on the solo session, the single session's shape: level on
// average there, with a wide spread (docs/benchmarks.md, "The three-session layout as the
// default on 2-core CPUs"). It costs two more copies of the weights and two more threads.
// Elsewhere it is unmeasured (more cores, a GPU, where one session already batches well), and a
// large model's extra copies may not fit, so there the rule keeps one session.
import { readdirSync, statSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';

/** What `--instances`, `--intra-op-threads` and `--solo-threads` asked for. */
export interface LayoutRequest {
  instances: number | 'auto';
  /** 0: ORT's default (every core). */
  intraOpThreads: number;
  /** 0: no solo session. */
  soloThreads: number;
  device: string;
  /** Sessions on inference threads; several instances need them. */
  inferenceThread: boolean;
}

/** The machine the rule looks at; injectable so the rule is tested without one. */
export interface MachineFacts {
  cores: number;
  memoryBytes: number;
}

export interface SessionLayout {
  instances: number;
  /** ORT threads of each instance (0: ORT's default). */
  intraOpThreads: number;
  soloThreads: number;
  /** Why `auto` chose this; undefined where the flags gave the layout. */
  auto?: string;
}

/** The extra copies of the weights may take at most this share of the machine's memory. */
const AUTO_MEMORY_SHARE = 1 / 8;

export function thisMachine(): MachineFacts {
  // A container's memory limit, where Node can read one (cgroups); else the machine's.
  const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  const total = totalmem();
  return { cores: availableParallelism(), memoryBytes: constrained !== undefined && constrained > 0 ? Math.min(constrained, total) : total };
}

/** Bytes of the version's ONNX files (the graph and any external weights beside it). */
export function onnxBytes(dir: string): number {
  let bytes = 0;
  for (const name of readdirSync(dir)) if (name.startsWith('model.onnx')) bytes += statSync(join(dir, name)).size;
  return bytes;
}

export function sessionLayout(request: LayoutRequest, modelBytes: number, machine: MachineFacts = thisMachine()): SessionLayout {
  const { intraOpThreads, soloThreads } = request;
  if (request.instances !== 'auto') return { instances: request.instances, intraOpThreads, soloThreads };
  const one = (why: string): SessionLayout => ({ instances: 1, intraOpThreads, soloThreads, auto: why });
  if (request.device !== 'cpu') return one(`one session on ${request.device}`);
  if (!request.inferenceThread) return one('one session: --no-inference-thread runs one batch at a time');
  if (intraOpThreads !== 0 || soloThreads !== 0) return one('one session: --intra-op-threads or --solo-threads given');
  if (machine.cores !== 2) return one(`one session: ${machine.cores} cores (the split layout is measured on 2)`);
  const extra = 2 * modelBytes;
  if (extra > machine.memoryBytes * AUTO_MEMORY_SHARE) {
    return one(`one session: two more copies of the weights (${mib(extra)} MiB) exceed 1/8 of memory (${mib(machine.memoryBytes)} MiB)`);
  }
  return { instances: 2, intraOpThreads: 1, soloThreads: 2, auto: '2 one-thread instances and a 2-thread solo session on a 2-core CPU' };
}

const mib = (bytes: number): number => Math.round(bytes / 2 ** 20);
