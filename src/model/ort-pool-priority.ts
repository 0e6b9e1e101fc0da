// ONNX Runtime's intra-op pool threads at a lower priority than the rest of the process (Linux).
//
// Why: on a small CPU the event loop (parsing, tokenizing, answering) and a run's ORT threads want
// the same cores. When both want one, the kernel shares it fairly, so the event loop waits its
// turn and a preempted pool thread holds up the run at the end of a parallel section. ORT's caller
// thread always runs and takes any part of a parallel section no pool thread has started, so
// when a pool thread yields its core to the event loop the run loses less than the event loop
// gains (measured: docs/benchmarks.md). Where a core is free the pool thread runs as before: nice
// decides only who waits.
//
// How: onnxruntime-node exposes no thread hooks (the C API's custom thread creation is not bound)
// and nothing on npm sets another thread's priority, so the pool threads are found in /proc. They
// are the threads that appear while the inference thread creates its session and then run while
// its first batches run. The second condition leaves out the one thread ORT starts for the whole
// process with its first session, which waits idle. Session creation is serialised in the process
// (session-thread.ts), so no other session's threads, and no other inference thread, appear in
// that window (libuv's pool, started on first use, is started before it); a thread something
// else starts meanwhile is lowered only if it also runs during those batches. os.setPriority on
// a thread id sets that thread's nice value (Linux keeps nice per thread), and raising it needs
// no privilege.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** Runs watched for pool threads: the self-check's first runs at load are enough. */
const RUNS_WATCHED = 4;

/** This process's thread ids, or undefined where /proc does not list them (not Linux). */
function processThreads(): Set<number> | undefined {
  try {
    return new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return undefined;
  }
}

/** The calling thread's id (/proc/thread-self links to `<pid>/task/<tid>`), or undefined off Linux. */
function currentThread(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) ? tid : undefined;
  } catch {
    return undefined;
  }
}

/** Nanoseconds a thread has run (schedstat's first field), or undefined once it has ended. */
function runNanos(tid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

/**
 * Sets the calling thread's nice value (Linux; elsewhere nothing). For an inference thread that is
 * its session's only ORT thread while other instances run beside it: then it is, like a pool
 * thread, ORT work competing with the event loop that feeds every instance (session-worker.ts).
 */
export function lowerThisThread(nice: number): void {
  const tid = nice > 0 ? currentThread() : undefined;
  if (tid === undefined) return;
  try {
    setPriority(tid, nice);
  } catch {
    // Not permitted here: the thread keeps its priority.
  }
}

/** Finds a session's pool threads as its first runs go by, and sets `nice` on each. */
export class PoolPriority {
  private watched = 0;

  private constructor(
    private readonly nice: number,
    /** Threads that appeared while the session was created, with their run time since. */
    private readonly candidates: Map<number, number>,
  ) {}

  /**
   * Creates the session (`create`) and notes the threads that appeared meanwhile, other than the
   * calling thread. With nice 0, or where threads cannot be listed, it only creates the session.
   */
  static async around<T>(nice: number, create: () => Promise<T>): Promise<{ value: T; priority: PoolPriority | undefined }> {
    const before = nice > 0 ? processThreads() : undefined;
    const value = await create();
    if (before === undefined) return { value, priority: undefined };
    const self = currentThread();
    const candidates = new Map<number, number>();
    for (const tid of processThreads() ?? []) {
      const ran = runNanos(tid);
      if (!before.has(tid) && tid !== self && ran !== undefined) candidates.set(tid, ran);
    }
    return { value, priority: new PoolPriority(nice, candidates) };
  }

  /** Call after each run: candidates that ran during it are the pool's, and get the nice value. */
  afterRun(): void {
    if (this.watched >= RUNS_WATCHED || this.candidates.size === 0) return;
    this.watched++;
    for (const [tid, before] of this.candidates) {
      const now = runNanos(tid);
      if (now === undefined || now <= before) continue;
      this.candidates.delete(tid);
      try {
        setPriority(tid, this.nice);
      } catch {
        // The thread ended between the read and the call.
      }
    }
  }
}
