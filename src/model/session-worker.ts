// The inference thread's side of ThreadedRewardSession (session-thread.ts): one RewardSession,
// created from workerData, that runs each batch the main thread sends and answers with its
// rewards. A run blocks this thread, not the event loop that serves HTTP.
import { parentPort, workerData } from 'node:worker_threads';
import { ModelError } from './errors.js';
import { RewardSession } from './onnx-session.js';
import { lowerThisThread, PoolPriority } from './ort-pool-priority.js';
import type { SessionThreadData, ThreadReply, ThreadRequest } from './session-thread.js';

const port = parentPort;
if (port === null) throw new Error('session-worker.ts runs as a worker thread (ThreadedRewardSession)');
const data = workerData as SessionThreadData;

function failure(err: unknown): { message: string; modelError: boolean } {
  return { message: err instanceof Error ? err.message : String(err), modelError: err instanceof ModelError };
}

/** Rows back from the flat transfer: row i is ids[offsets[i] .. offsets[i + 1]). */
function unflatten(ids: Int32Array, offsets: Int32Array): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i + 1 < offsets.length; i++) rows.push(Array.from(ids.subarray(offsets[i] as number, offsets[i + 1] as number)));
  return rows;
}

let session: RewardSession | undefined;
/** ORT's pool threads of this session, lowered as the first runs show which they are (--ort-pool-nice). */
let poolPriority: PoolPriority | undefined;
try {
  const created = await PoolPriority.around(data.poolNice, () => RewardSession.create(data.model, data.padId, data.paddingSide, data.options, data.hints));
  session = created.value;
  poolPriority = created.priority;
  // After the session exists: threads ORT starts inherit their creator's nice value.
  lowerThisThread(data.threadNice);
  port.postMessage({ type: 'ready', inputNames: [...session.inputNames], outputType: session.outputType } satisfies ThreadReply);
} catch (err) {
  port.postMessage({ type: 'failed', ...failure(err) } satisfies ThreadReply);
}

// Messages are handled one at a time in arrival order, each run after the one before has
// answered: the batcher sends one batch per session at a time, and the chain keeps that true of
// this thread whatever a caller sends.
let previous: Promise<void> = Promise.resolve();
port.on('message', (request: ThreadRequest) => {
  previous = previous.then(() => handle(request));
});

async function handle(request: ThreadRequest): Promise<void> {
  if (request.type === 'release') {
    await session?.release();
    session = undefined;
    port?.postMessage({ type: 'released' } satisfies ThreadReply);
    port?.close();
    return;
  }
  if (session === undefined) {
    port?.postMessage({ type: 'error', id: request.id, message: 'the session is released', modelError: false } satisfies ThreadReply);
    return;
  }
  try {
    const started = performance.now();
    const { rewards, paddedTokens } = await session.run(unflatten(request.ids, request.offsets));
    const runMs = performance.now() - started;
    poolPriority?.afterRun();
    const k = rewards[0]?.length ?? 0;
    const flat = new Float32Array(rewards.length * k);
    rewards.forEach((r, i) => flat.set(r, i * k));
    port?.postMessage({ type: 'result', id: request.id, rewards: flat, k, paddedTokens, runMs } satisfies ThreadReply, [flat.buffer]);
  } catch (err) {
    port?.postMessage({ type: 'error', id: request.id, ...failure(err) } satisfies ThreadReply);
  }
}
