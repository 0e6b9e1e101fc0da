// A RewardSession on a thread of its own. onnxruntime-node 1.30 runs `session.run` synchronously
// on the calling thread (after a setImmediate, its dist/backend.js), so on the main thread every
// ONNX run stalls HTTP parsing, tokenization and replies for its whole length (measured: a 318 ms
// run let a 1 ms timer fire once, docs/benchmarks.md). Here the session lives on a worker thread
// and the main thread only hands it padded-batch rows and receives rewards: the event loop keeps
// accepting, tokenizing and answering while a batch runs.
//
// Raw worker_threads, not piscina (which runs the stateless tokenizer pool): this is one
// long-lived thread owning one native session, with a load → run* → release lifecycle, and the
// batcher already keeps at most one batch in flight per version, so there is nothing to schedule.
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { modelLoadFailed } from './errors.js';
import { RewardSession, type CacheShapeHints, type PaddingSide, type SessionOptions } from './onnx-session.js';

/** What the scorer needs of a session, on this thread or on its own. */
export interface RewardRunner {
  readonly inputNames: readonly string[];
  /** The declared element type of the reward output (float16 for fp16 exports). */
  readonly outputType: string;
  run(rows: readonly (readonly number[])[]): Promise<RunOutput>;
  release(): Promise<void>;
}

/** One run's rewards (one vector per row) and what it cost. */
export interface RunOutput {
  rewards: Float32Array[];
  paddedTokens: number;
  /** Seconds the run took on the inference thread, the hand-offs either way not included. */
  runSeconds?: number;
}

/** workerData of session-worker.ts. */
export interface SessionThreadData {
  model: string | Uint8Array;
  padId: number;
  paddingSide: PaddingSide;
  options: SessionOptions;
  hints: CacheShapeHints;
  /** Nice value for ORT's pool threads of this session (ort-pool-priority.ts); 0 leaves them. */
  poolNice: number;
  /** Nice value for the inference thread itself, set once its session exists; 0 leaves it. */
  threadNice: number;
}

/** Main thread → inference thread. Rows go flat (row i = ids[offsets[i] .. offsets[i+1])), transferred, not copied. */
export type ThreadRequest = { type: 'run'; id: number; ids: Int32Array; offsets: Int32Array } | { type: 'release' };

/** Inference thread → main thread. `rewards` is [rows × k], transferred. */
export type ThreadReply =
  | { type: 'ready'; inputNames: string[]; outputType: string }
  | { type: 'failed'; message: string; modelError: boolean }
  | { type: 'result'; id: number; rewards: Float32Array; k: number; paddedTokens: number; runMs: number }
  | { type: 'error'; id: number; message: string; modelError: boolean }
  | { type: 'released' };

interface Pending {
  resolve: (out: RunOutput) => void;
  reject: (err: Error) => void;
}

const ENTRY = new URL('./session-worker-entry.mjs', import.meta.url);

/**
 * Sessions are created one at a time in the process: an inference thread tells its ORT pool
 * threads from the others partly by which threads appear while it creates its session
 * (ort-pool-priority.ts), so no other session (or inference thread) may start meanwhile.
 */
let creating: Promise<unknown> = Promise.resolve();

/** Errors keep their kind across the thread: a ModelError (bad graph or output) stays one. */
function rebuild(message: string, modelError: boolean): Error {
  return modelError ? modelLoadFailed(message) : new Error(message);
}

export class ThreadedRewardSession implements RewardRunner {
  private readonly pending = new Map<number, Pending>();
  private readonly inflight = new Set<Promise<unknown>>();
  private nextId = 0;
  /** Set once the thread is gone (released, or died): every later run fails with it. */
  private gone: Error | undefined;
  private releasing: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: readonly string[],
    readonly outputType: string,
  ) {
    worker.on('message', (reply: ThreadReply) => {
      if (reply.type !== 'result' && reply.type !== 'error') return;
      const waiter = this.pending.get(reply.id);
      if (waiter === undefined) return;
      this.pending.delete(reply.id);
      if (reply.type === 'error') {
        waiter.reject(rebuild(reply.message, reply.modelError));
        return;
      }
      const { rewards, k, paddedTokens, runMs } = reply;
      const rows = Array.from({ length: k === 0 ? 0 : rewards.length / k }, (_, i) => rewards.subarray(i * k, (i + 1) * k));
      waiter.resolve({ rewards: rows, paddedTokens, runSeconds: runMs / 1000 });
    });
    // A thread that dies (an exception outside a run, or terminate) fails what was waiting on it
    // and every later run, instead of leaving requests hanging.
    worker.on('error', (err) => this.fail(new Error(`the inference thread failed: ${err.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`the inference thread exited (code ${code})`)));
  }

  static async create(
    model: string | Uint8Array,
    padId: number,
    paddingSide: PaddingSide,
    options: SessionOptions,
    hints: CacheShapeHints = {},
    poolNice = 0,
    threadNice = 0,
  ): Promise<ThreadedRewardSession> {
    const turn = creating.then(() => ThreadedRewardSession.start({ model, padId, paddingSide, options, hints, poolNice, threadNice }));
    creating = turn.catch(() => undefined);
    return turn;
  }

  private static async start(data: SessionThreadData): Promise<ThreadedRewardSession> {
    // libuv starts its thread pool on its first use, which could otherwise fall inside the
    // session's creation window; one pool call first keeps those threads out of it.
    await access(fileURLToPath(ENTRY));
    const worker = new Worker(ENTRY, { workerData: data });
    const listeners: { message?: (reply: ThreadReply) => void; error?: (err: Error) => void; exit?: (code: number) => void } = {};
    const ready = await new Promise<{ inputNames: string[]; outputType: string }>((resolve, reject) => {
      listeners.message = (reply) => {
        if (reply.type === 'ready') resolve(reply);
        else if (reply.type === 'failed') reject(rebuild(reply.message, reply.modelError));
      };
      listeners.error = (err) => reject(modelLoadFailed(`the inference thread failed to start: ${err.message}`));
      listeners.exit = (code) => reject(modelLoadFailed(`the inference thread exited during the load (code ${code})`));
      worker.on('message', listeners.message).on('error', listeners.error).on('exit', listeners.exit);
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    }).finally(() => {
      if (listeners.message) worker.off('message', listeners.message);
      if (listeners.error) worker.off('error', listeners.error);
      if (listeners.exit) worker.off('exit', listeners.exit);
    });
    worker.unref();
    return new ThreadedRewardSession(worker, ready.inputNames, ready.outputType);
  }

  run(rows: readonly (readonly number[])[]): Promise<RunOutput> {
    if (this.gone !== undefined) return Promise.reject(this.gone);
    const offsets = new Int32Array(rows.length + 1);
    rows.forEach((row, i) => (offsets[i + 1] = (offsets[i] as number) + row.length));
    const ids = new Int32Array(offsets[rows.length] as number);
    rows.forEach((row, i) => ids.set(row, offsets[i] as number));
    const id = this.nextId++;
    const answer = new Promise<RunOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'run', id, ids, offsets } satisfies ThreadRequest, [ids.buffer, offsets.buffer]);
    });
    // A run in flight keeps the process alive; an idle session does not (as an idle socket).
    if (this.inflight.size === 0) this.worker.ref();
    this.inflight.add(answer);
    const settled = (): void => {
      this.inflight.delete(answer);
      if (this.inflight.size === 0) this.worker.unref();
    };
    answer.then(settled, settled);
    return answer;
  }

  /** Frees the session and ends the thread, after the runs already sent have answered. Idempotent. */
  release(): Promise<void> {
    this.releasing ??= this.shutdown();
    return this.releasing;
  }

  private async shutdown(): Promise<void> {
    if (this.gone !== undefined) return;
    await Promise.allSettled([...this.inflight]);
    if (this.gone !== undefined) return;
    const released = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.ref();
    this.worker.postMessage({ type: 'release' } satisfies ThreadRequest);
    await released;
  }

  private fail(err: Error): void {
    this.gone ??= err;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }
}

/**
 * A serving session's options: ORT's, whether it gets a thread of its own (default yes), and the
 * nice value for ORT's pool threads on that thread (default 0: left as ORT starts them).
 */
export type ServingSessionOptions = SessionOptions & {
  thread?: boolean;
  poolNice?: number;
  /** Nice value of the inference thread (0: unchanged): for one-thread instances beside others. */
  threadNice?: number;
};

/**
 * The session the server scores with: on its own thread unless `options.thread` is false (then on
 * the calling thread, as the trainer's evaluation and the benchmarks' limit use RewardSession).
 */
export function openRewardSession(
  model: string | Uint8Array,
  padId: number,
  paddingSide: PaddingSide,
  options: ServingSessionOptions,
  hints: CacheShapeHints = {},
): Promise<RewardRunner> {
  const { thread = true, poolNice = 0, threadNice = 0, ...sessionOptions } = options;
  if (thread) return ThreadedRewardSession.create(model, padId, paddingSide, sessionOptions, hints, poolNice, threadNice);
  // In the creation queue too: ORT pool threads that start inside an inference thread's creation
  // window would be taken for that thread's own and lowered (a solo session on the main thread,
  // opened while another model's version loads).
  const turn = creating.then(() => RewardSession.create(model, padId, paddingSide, sessionOptions, hints));
  creating = turn.catch(() => undefined);
  return turn;
}
