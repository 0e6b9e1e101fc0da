// Cross-request dynamic batching, one batcher per loaded model version (TEI's queue + batching
// task in one class). Trainers send one sample per request; this is where they meet.
import { cancelled, queueFull, ScoringError, unavailable } from './errors.js';
export interface BatcherOptions {
  /** Most rows in one ONNX run. */
  maxBatchSize: number;
  /** Most padded tokens (rows × longest row) in one ONNX run. */
  maxBatchTokens: number;
  /** Longest an item waits for company before its batch runs anyway. */
  maxWaitMs: number;
  /** Items allowed to wait; beyond it submit() fails fast with a 429 ScoringError. */
  maxQueueItems: number;
  /**
   * Largest share of padding a batch may carry: an item that would push it higher waits for a
   * batch of its own length. On CPU a padded token costs as much as a real one, so this is what
   * keeps cross-request batches as cheap as length-sorted offline ones; 1 turns it off.
   */
  maxPaddingRatio?: number;
  /**
   * Batches run at once (the version's session instances, --instances); 1 by default. Each
   * instance takes the next batch as soon as it is free.
   */
  maxInFlight?: number;
  /**
   * A batch taken with nothing else running and nothing left queued runs alone: the runner is
   * told (`solo`), and nothing else starts until it is done. The version then runs it on a
   * session with every core (--solo-threads), while batches under load go to the instances.
   * Not while requests come from several open connections (ACTIVE_CONNECTION_MS): their
   * clients overlap even when the queue looks empty, and the instances side by side serve two
   * of them faster than solo runs one after the other (docs/benchmarks.md).
   */
  soloRuns?: boolean;
  /**
   * With soloRuns, the most padded tokens (rows × longest row) a solo batch may have; a lone
   * batch above it runs as batches under load do, shared over the instances. The version sets it
   * when its solo session runs on the event loop's thread, whose run holds the loop (model-version.ts).
   * Unset: no limit.
   */
  soloMaxTokens?: number;
}

export interface BatchStats {
  rows: number;
  items: number;
  paddedTokens: number;
  realTokens: number;
  runSeconds: number;
  queueWaitSeconds: number[];
  /** Whether the batch ran alone (soloRuns). */
  solo: boolean;
}

/**
 * Runs one batch of token-id rows and returns one reward vector per row; `solo`: see soloRuns.
 * `runSeconds`: the run as timed where it ran (an inference thread: without the hand-offs to it
 * and back); otherwise the run is timed around the call.
 */
export type BatchRunner = (rows: readonly (readonly number[])[], solo: boolean) => Promise<{ rewards: Float32Array[]; runSeconds?: number }>;


/**
 * The connection a request came on (an HTTP/1.1 socket). Requests on one connection come one
 * after the other, so one open connection seen lately is one client waiting on each reply, and
 * several are clients whose requests overlap, though the next may not have been read yet: with
 * the solo session on the event loop's thread, nothing is read while it runs.
 */
export interface ClientConnection {
  readonly destroyed: boolean;
}

/** How long a connection counts as one of the clients after its last submit. */
const ACTIVE_CONNECTION_MS = 1000;

/** Whether a connection last seen at `seen` still counts as a client at `now`. */
function isActive(connection: ClientConnection, seen: number, now: number): boolean {
  return !connection.destroyed && now - seen <= ACTIVE_CONNECTION_MS;
}

interface QueuedItem {
  ids: readonly number[];
  key: string;
  enqueuedAt: number;
  /** Items submitted in one synchronous run (one request's items) share a burst number. */
  burst: number;
  resolve: (reward: Float32Array) => void;
  reject: (err: Error) => void;
  detach: () => void;
  timing: ItemTiming | undefined;
}

/** Filled in before an item's promise resolves: where its time went (the reply's timing headers). */
export interface ItemTiming {
  queueSeconds?: number;
  inferenceSeconds?: number;
}

/** What a request whose item the model failed on gets: a 500 that says so and why. */
function inferenceFailed(err: unknown): ScoringError {
  if (err instanceof ScoringError) return err;
  return new ScoringError('inference_failed', 500, `the model failed on this input: ${(err as Error).message}`);
}

export class DynamicBatcher {
  private queue: QueuedItem[] = [];
  /** Slots held for items still being tokenized, so admission is decided before that work. */
  private reserved = 0;
  private inFlight = 0;
  /** A solo batch is running: nothing else may start. */
  private soloRunning = false;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private burst = 0;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** Each connection's last submit, least recent first. */
  private readonly recentConnections = new Map<ClientConnection, number>();

  constructor(
    private readonly runBatch: BatchRunner,
    private readonly options: BatcherOptions,
    private readonly onBatch: (stats: BatchStats) => void = () => {},
    private readonly onDepth: (depth: number) => void = () => {},
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  /** Whether n more items fit in the queue; callers check a whole request at once. */
  hasRoomFor(n: number): boolean {
    return this.queue.length + this.reserved + n <= this.options.maxQueueItems;
  }

  /**
   * Holds `n` queue slots while a request's items are tokenized; returns the release function.
   * Refused (429) when they do not fit now, and 413 when they never could: a request larger
   * than the whole queue would otherwise be told to retry forever.
   */
  reserve(n: number): () => void {
    if (n > this.options.maxQueueItems) {
      throw new ScoringError(
        'too_many_items',
        413,
        `${n} items exceed the scoring queue of ${this.options.maxQueueItems} items (--max-queue); split the request`,
      );
    }
    if (!this.hasRoomFor(n)) throw queueFull(this.retryAfterSeconds());
    this.reserved += n;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.reserved -= n;
    };
  }

  /**
   * Queues one tokenized item. `key` identifies identical inputs (they share a row).
   * Aborting `signal` before the item's batch starts removes it from the queue. `connection`:
   * the one the request came on, counted for soloRuns; an item without one is not counted.
   */
  submit(ids: readonly number[], key: string, signal?: AbortSignal, timing?: ItemTiming, connection?: ClientConnection): Promise<Float32Array> {
    // Retryable: the client's retry lands on the version that replaced this one.
    if (this.closed) return Promise.reject(unavailable('model version is unloading; retry'));
    if (!this.hasRoomFor(1)) return Promise.reject(queueFull(this.retryAfterSeconds()));
    if (signal?.aborted) return Promise.reject(cancelled('request cancelled'));
    return new Promise<Float32Array>((resolve, reject) => {
      const item: QueuedItem = { ids, key, enqueuedAt: performance.now(), burst: this.burst, resolve, reject, detach: () => {}, timing };
      if (signal) {
        const onAbort = (): void => {
          const at = this.queue.indexOf(item);
          if (at < 0) return; // already running: the result is simply dropped
          this.queue.splice(at, 1);
          this.onDepth(this.queue.length);
          reject(cancelled('request cancelled'));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        item.detach = () => signal.removeEventListener('abort', onAbort);
      }
      if (connection !== undefined) this.sawConnection(connection, item.enqueuedAt);
      this.queue.push(item);
      this.onDepth(this.queue.length);
      this.scheduleSoon();
    });
  }

  /** Resolves once nothing is queued or running (used before releasing a session). */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses new items; queued ones still run. */
  close(): void {
    this.closed = true;
  }

  /**
   * Schedules after the current synchronous code: a request's items are submitted in one loop,
   * and on a loaded machine max-wait-ms can pass between two of them, which would split one
   * request over two runs. A microtask runs once they are all queued.
   */
  private scheduleSoon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.burst++;
      this.schedule();
    });
  }

  // The batching loop: run when a batch is full or its oldest item has waited max-wait-ms, one
  // batch per free session instance (one by default: ORT already uses every core for one run).
  private schedule(): void {
    if (this.soloRunning || this.inFlight >= (this.options.maxInFlight ?? 1) || this.queue.length === 0) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const oldest = this.queue[0] as QueuedItem;
    const waited = performance.now() - oldest.enqueuedAt;
    // A free instance: with max-wait-ms 0 the queue goes at once, as TEI's does; items that arrive
    // meanwhile form the next batch.
    if (!this.batchIsFull() && waited < this.options.maxWaitMs) {
      this.timer = setTimeout(() => this.schedule(), this.options.maxWaitMs - waited);
      return;
    }
    const batch = this.takeBatch();
    // Solo only if nothing else runs and the batch took everything: with items left over, the
    // instances share the load.
    const solo = this.options.soloRuns === true && this.inFlight === 0 && this.queue.length === 0 && this.withinSoloTokens(batch) && !this.severalClients();
    this.inFlight++;
    this.soloRunning = solo;
    void this.execute(batch, solo).finally(() => {
      this.inFlight--;
      this.soloRunning = false;
      if (this.queue.length > 0) this.schedule();
      else if (this.inFlight === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
    });
    // Another free instance takes what the batch left, without waiting for this one to finish.
    if (this.queue.length > 0) this.schedule();
  }

  /** Moves the connection to the back (most recent) and forgets those gone or quiet at the front. */
  private sawConnection(connection: ClientConnection, now: number): void {
    this.recentConnections.delete(connection);
    this.recentConnections.set(connection, now);
    for (const [first, seen] of this.recentConnections) {
      if (isActive(first, seen, now)) break;
      this.recentConnections.delete(first);
    }
  }

  /** Whether more than one open connection submitted in the last ACTIVE_CONNECTION_MS. */
  private severalClients(): boolean {
    const now = performance.now();
    let open = 0;
    for (const [connection, seen] of this.recentConnections) {
      if (!isActive(connection, seen, now)) this.recentConnections.delete(connection);
      else if (++open > 1) return true;
    }
    return false;
  }

  private withinSoloTokens(rows: readonly QueuedItem[][]): boolean {
    return paddedTokens(rows.map((group) => (group[0] as QueuedItem).ids)) <= (this.options.soloMaxTokens ?? Infinity);
  }

  private batchIsFull(): boolean {
    if (this.queue.length >= this.options.maxBatchSize) return true;
    return this.queuedTokens().longest * this.queue.length >= this.options.maxBatchTokens;
  }

  /** The queue's tokens in all and its longest item. */
  private queuedTokens(): { total: number; longest: number } {
    let total = 0;
    let longest = 0;
    for (const item of this.queue) {
      total += item.ids.length;
      longest = Math.max(longest, item.ids.length);
    }
    return { total, longest };
  }

  /**
   * The anchor (anchorIndex: the oldest item, or with several instances the longest of the oldest
   * burst) always goes, so nothing starves; the rest are picked by closeness of length to it,
   * which cuts padding, until the row or padded-token budget is spent. Identical items share a row.
   */
  private takeBatch(): QueuedItem[][] {
    const anchorAt = this.anchorIndex();
    const anchor = this.queue[anchorAt] as QueuedItem;
    const byCloseness = this.queue
      .map((item, index) => ({ item, index, distance: Math.abs(item.ids.length - anchor.ids.length) }))
      .filter(({ index }) => index !== anchorAt)
      .sort((a, b) => a.distance - b.distance || a.index - b.index);
    const rows = new Map<string, QueuedItem[]>([[anchor.key, [anchor]]]);
    const maxPadding = this.options.maxPaddingRatio ?? 1;
    const maxTokens = this.tokenBudget();
    let longest = anchor.ids.length;
    let real = anchor.ids.length;
    for (const { item } of byCloseness) {
      const shared = rows.get(item.key);
      if (shared) {
        shared.push(item);
        continue;
      }
      const width = Math.max(longest, item.ids.length);
      const padded = width * (rows.size + 1);
      if (rows.size + 1 > this.options.maxBatchSize || padded > maxTokens) continue;
      if (1 - (real + item.ids.length) / padded > maxPadding) continue;
      rows.set(item.key, [item]);
      longest = width;
      real += item.ids.length;
    }
    const taken = new Set([...rows.values()].flat());
    this.queue = this.queue.filter((item) => !taken.has(item));
    this.onDepth(this.queue.length);
    return [...rows.values()];
  }

  /**
   * One instance: the oldest item. Several: the longest item submitted together with the oldest
   * (one request's items are one burst). Longest first is the classic rule for sharing jobs over
   * parallel machines: a 32-item request split over two single-threaded instances otherwise
   * often ended on its dearest batch with the other instance idle (docs/benchmarks.md). Still
   * starvation-free: the anchor is from the oldest burst. One instance runs the same work in
   * any order, so its batches are formed as before.
   */
  private anchorIndex(): number {
    if ((this.options.maxInFlight ?? 1) <= 1) return 0;
    const { burst } = this.queue[0] as QueuedItem;
    let best = 0;
    for (let i = 1; i < this.queue.length && (this.queue[i] as QueuedItem).burst === burst; i++) {
      if ((this.queue[i] as QueuedItem).ids.length > (this.queue[best] as QueuedItem).ids.length) best = i;
    }
    return best;
  }

  /**
   * The padded-token budget of the next batch. With several instances, and more queued than one
   * batch holds, at most an even share of what is queued: one batch holding most of a request
   * kept one single-threaded instance busy while the others had nothing left to take. A queue
   * that fits one solo batch with nothing running is still taken whole (to run solo, on every
   * core), unless several clients are about (then nothing runs solo, and their lone requests
   * are shared as load is), and under load the share exceeds the limit and the limit holds.
   */
  private tokenBudget(): number {
    const { maxBatchTokens, maxBatchSize } = this.options;
    const instances = this.options.maxInFlight ?? 1;
    if (instances <= 1) return maxBatchTokens;
    const { total: queued, longest } = this.queuedTokens();
    const padded = longest * this.queue.length;
    const fitsOneBatch = this.queue.length <= maxBatchSize && padded <= Math.min(maxBatchTokens, this.options.soloMaxTokens ?? Infinity);
    if (this.inFlight === 0 && fitsOneBatch && !this.severalClients()) return maxBatchTokens;
    return Math.min(maxBatchTokens, Math.ceil(queued / instances));
  }

  private async execute(rows: QueuedItem[][], solo: boolean): Promise<void> {
    const started = performance.now();
    for (const group of rows) for (const item of group) item.detach();
    const inputs = rows.map((group) => (group[0] as QueuedItem).ids);
    try {
      const { rewards, runSeconds = (performance.now() - started) / 1000 } = await this.runBatch(inputs, solo);
      for (const item of rows.flat()) {
        if (item.timing !== undefined) {
          item.timing.queueSeconds = (started - item.enqueuedAt) / 1000;
          item.timing.inferenceSeconds = runSeconds;
        }
      }
      rows.forEach((group, i) => group.forEach((item) => item.resolve(rewards[i] as Float32Array)));
      this.onBatch({
        rows: rows.length,
        items: rows.reduce((n, group) => n + group.length, 0),
        paddedTokens: paddedTokens(inputs),
        realTokens: inputs.reduce((n, ids) => n + ids.length, 0),
        runSeconds,
        queueWaitSeconds: rows.flat().map((item) => (started - item.enqueuedAt) / 1000),
        solo,
      });
    } catch (err) {
      if (rows.length === 1) {
        for (const item of rows[0] as QueuedItem[]) item.reject(inferenceFailed(err));
        return;
      }
      await this.retryAlone(rows, solo);
    }
  }

  /**
   * A failed batch is run again row by row, once, so one input the model cannot take (a shape
   * it rejects, a kernel that throws) fails only its own requests and not its neighbours'.
   */
  private async retryAlone(rows: QueuedItem[][], solo: boolean): Promise<void> {
    for (const group of rows) {
      try {
        const [reward] = (await this.runBatch([(group[0] as QueuedItem).ids], solo)).rewards;
        for (const item of group) item.resolve(reward as Float32Array);
      } catch (err) {
        for (const item of group) item.reject(inferenceFailed(err));
      }
    }
  }

  private retryAfterSeconds(): number {
    return 1;
  }
}

/** Rows × the longest row: what a batch costs once padded. */
function paddedTokens(rows: readonly (readonly number[])[]): number {
  return rows.length * Math.max(...rows.map((ids) => ids.length));
}
