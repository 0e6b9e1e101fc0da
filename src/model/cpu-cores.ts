// How many intra-op threads a CPU session gets when none are asked for. ORT's own default (0) is
// one thread per physical core, and with it ORT pins its pool threads to cores ("leaving at default
// also enables some affinitization", ORT's threading docs). On the 2-core VM that pinned the pool
// thread, which spins between runs, to core 1, and the event loop, the inference thread and the
// client were left to share core 0 at every hand-off: single items at c = 1 served 0.76 / 0.89 of
// the per-request peer pinned and 0.92 / 0.94 with the same two threads unpinned
// (docs/benchmarks.md). Passing the same count explicitly keeps ORT's choice of threads and
// leaves their placement to the OS scheduler.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/**
 * Physical cores in a /proc/cpuinfo text: distinct (physical id, core id) pairs, or the number of
 * processors where the file names no cores (some VMs and ARM kernels). undefined if it lists none.
 */
export function physicalCoresIn(cpuinfo: string): number | undefined {
  const cores = new Set<string>();
  let processors = 0;
  for (const block of cpuinfo.split(/\n\s*\n/)) {
    const field = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
    if (field('processor') === undefined) continue;
    processors++;
    const core = field('core id');
    if (core !== undefined) cores.add(`${field('physical id') ?? '0'}:${core}`);
  }
  if (processors === 0) return undefined;
  return cores.size > 0 ? cores.size : processors;
}

let cached: number | undefined | null = null;

/**
 * ORT's default intra-op thread count on this machine (physical cores, at most the CPUs this
 * process may use), or undefined where /proc/cpuinfo cannot tell, and ORT then decides itself.
 */
export function defaultIntraOpThreads(): number | undefined {
  if (cached !== null) return cached;
  let physical: number | undefined;
  try {
    physical = physicalCoresIn(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    physical = undefined;
  }
  cached = physical === undefined ? undefined : Math.max(1, Math.min(physical, availableParallelism()));
  return cached;
}
