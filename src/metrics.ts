// Prometheus metrics, one registry per server instance (tests run several servers in one process).
// Names follow docs/design.md (Metrics): everything is prefixed rmserve_. Whatever concerns one
// model is labelled {model, version} with the model's name and its version apart (never
// "name@version"), so per-version series join with per-model ones (model_loads, model_info) on
// `model`, and `sum by (model)` stays one series across a hot swap.
import { env as ortEnv } from 'onnxruntime-node';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RMSERVE_VERSION } from './version.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const TOKEN_BUCKETS = [16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
// Per item: chat turns are tens to thousands of tokens; the top buckets show what max_length cuts.
const INPUT_TOKEN_BUCKETS = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768];

/**
 * prom-client's default metrics that are gauges named `_total`, which promtool (and the
 * OpenMetrics rules it checks) reserve for counters. Each is the sum over `type` of the gauge of
 * the same name without `_total` (nodejs_active_handles{type}, ...), which stays: `sum()` of it
 * gives the same number.
 */
const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Labels of everything measured per loaded version. */
export interface VersionLabels {
  model: string;
  version: string;
}

export function versionLabels(model: { name: string; version: string }): VersionLabels {
  return { model: model.name, version: model.version };
}

// Every metric is declared in full (name, help, labels, buckets), as prom-client's own examples do,
// so one place tells what a series means; the declarations look alike for that reason.
export class RmserveMetrics {
  readonly registry = new Registry();

  readonly requestsTotal = new Counter({
    name: 'rmserve_requests_total',
    // Every request once: 499 (nginx's "client closed request") when the client went away before
    // its reply, 408/431/400 for requests refused at the HTTP layer (route "unmatched" when the
    // request line or headers never arrived whole).
    help: 'HTTP requests by route and status code (499: client went away before the reply)',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly requestFailures = new Counter({
    name: 'rmserve_request_failures_total',
    // The error code of the reply (overloaded, too_many_items, model_not_found, ...), or
    // client_closed for a 499: what status alone cannot tell apart (three 413s, two 503s).
    help: 'Requests answered with a status >= 400 (or 499), by route and reason (the reply\'s error code)',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });
  readonly openConnections = new Gauge({
    name: 'rmserve_open_connections',
    help: 'Open client connections (idle keep-alive ones included)',
    registers: [this.registry],
  });
  readonly connectionsDropped = new Counter({
    name: 'rmserve_connections_dropped_total',
    help: 'Connections closed on accept because --max-connections were open',
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'rmserve_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'rmserve_queue_wait_seconds',
    help: 'Time an item waited in the batch queue before its ONNX run started',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly inferenceDuration = new Histogram({
    name: 'rmserve_inference_duration_seconds',
    help: 'Duration of one ONNX run (one batch)',
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tokenizationDuration = new Histogram({
    name: 'rmserve_tokenization_duration_seconds',
    help: "Time to format and tokenize one request's cache misses for one model (inline or on the worker pool)",
    labelNames: ['model', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  // With prompt groups a prompt that several items of a request share is tokenized once: these
  // show how much text the tokenizer really saw, and how many items were stitched.
  readonly tokenizedCharacters = new Counter({
    name: 'rmserve_tokenized_characters_total',
    help: 'Characters handed to the tokenizer for cache misses (a prompt that several items of a request share counts once)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly promptGroupItems = new Counter({
    name: 'rmserve_prompt_group_items_total',
    help: "Items whose tokens were stitched from their prompt group's once-tokenized prompt",
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly inputTokens = new Histogram({
    name: 'rmserve_input_tokens',
    help: 'Tokens per scored item after truncation, special tokens included (cache hits too)',
    labelNames: ['model', 'version'] as const,
    buckets: INPUT_TOKEN_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'rmserve_batch_size',
    help: 'Rows per ONNX run (one observation per run)',
    labelNames: ['model', 'version'] as const,
    buckets: BATCH_SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly batchTokens = new Histogram({
    name: 'rmserve_batch_tokens',
    help: 'Padded tokens (rows x longest row) per ONNX run',
    labelNames: ['model', 'version'] as const,
    buckets: TOKEN_BUCKETS,
    registers: [this.registry],
  });
  readonly paddingRatio = new Histogram({
    name: 'rmserve_padding_ratio',
    help: 'Share of padded tokens that are padding, per ONNX run',
    labelNames: ['model', 'version'] as const,
    buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'rmserve_queue_depth',
    // The "waiting" gauge (vLLM's num_requests_waiting, in items); batches_running is "running".
    help: 'Items waiting in the batch queue for an ONNX run',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly batchesRunning = new Gauge({
    name: 'rmserve_batches_running',
    help: 'ONNX runs in progress',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly rowsRunning = new Gauge({
    name: 'rmserve_rows_running',
    help: 'Rows (distinct token sequences) in the ONNX runs in progress',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  // With --solo-threads: the share of batches that had the model to themselves tells how often
  // the server was latency-bound (solo) rather than loaded (the instances).
  readonly soloBatches = new Counter({
    name: 'rmserve_solo_batches_total',
    help: 'ONNX runs that had the model version to themselves and ran on its solo session (--solo-threads)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: 'rmserve_cache_hits_total',
    help: 'Items answered from the reward cache',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'rmserve_cache_misses_total',
    help: 'Items not found in the reward cache',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly tokensTotal = new Counter({
    name: 'rmserve_tokens_total',
    help: 'Real (unpadded) tokens run through a model',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly modelLoads = new Counter({
    name: 'rmserve_model_loads_total',
    // No version label: failed loads are of versions that never serve, so a series per version
    // would only ever grow; the refused version is in /v1/models' last_failure and the log.
    help: 'Model version loads by result',
    labelNames: ['model', 'result'] as const,
    registers: [this.registry],
  });
  readonly modelInfo = new Gauge({
    name: 'rmserve_model_info',
    help: '1 for the version that serves a model',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly buildInfo = new Gauge({
    name: 'rmserve_build_info',
    help: 'Always 1: the rmserve, Node.js and ONNX Runtime versions of this process',
    labelNames: ['version', 'node', 'onnxruntime'] as const,
    registers: [this.registry],
  });
  private readiness: () => boolean = () => false;
  readonly ready: Gauge = new Gauge({
    name: 'rmserve_ready',
    help: '1 while GET /ready answers 200 (every configured model serves and the server is not draining)',
    registers: [this.registry],
    // Read at scrape time, so it can never disagree with the probe.
    collect: (): void => this.ready.set(this.readiness() ? 1 : 0),
  });

  /** Loaded versions by `model\0version`: the same labels can belong to two loads (a version folder rewritten). */
  private readonly liveVersions = new Map<string, number>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      for (const name of MISNAMED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
    this.buildInfo.set({ version: RMSERVE_VERSION, node: process.versions.node, onnxruntime: ortEnv.versions.node ?? ortEnv.versions.common }, 1);
  }

  /** Where rmserve_ready reads readiness from (the server's registry). */
  setReadiness(readiness: () => boolean): void {
    this.readiness = readiness;
  }

  /** How long one request's cache misses took to format and tokenize for one model version. */
  observeTokenization(labels: VersionLabels, seconds: number): void {
    this.tokenizationDuration.observe(labels, seconds);
  }

  /** What tokenizing one request's cache misses for one model version handed to the tokenizer. */
  observeTokenizedText(labels: VersionLabels, stats: { tokenizedChars: number; groupedItems: number }): void {
    this.tokenizedCharacters.inc(labels, stats.tokenizedChars);
    this.promptGroupItems.inc(labels, stats.groupedItems);
  }

  /** The token count of each item a request had scored by one model version. */
  observeInputTokens(labels: VersionLabels, items: readonly { tokens: number }[]): void {
    for (const item of items) this.inputTokens.observe(labels, item.tokens);
  }

  /** Counts an ONNX run as running until the returned function is called. */
  batchStarted(labels: VersionLabels, rows: number): () => void {
    this.batchesRunning.inc(labels);
    this.rowsRunning.inc(labels, rows);
    return () => {
      this.batchesRunning.dec(labels);
      this.rowsRunning.dec(labels, rows);
    };
  }

  /** A version was loaded: its series stay until every load with these labels is released. */
  retainVersion(labels: VersionLabels): void {
    const key = `${labels.model}\u0000${labels.version}`;
    this.liveVersions.set(key, (this.liveVersions.get(key) ?? 0) + 1);
  }

  /**
   * A version retired (nothing queued or running on it): drops its series, unless another load
   * of the same name and version still serves, whose series they are too.
   */
  releaseVersion(labels: VersionLabels): void {
    const key = `${labels.model}\u0000${labels.version}`;
    const left = (this.liveVersions.get(key) ?? 1) - 1;
    if (left > 0) {
      this.liveVersions.set(key, left);
      return;
    }
    this.liveVersions.delete(key);
    for (const metric of this.perVersion()) metric.remove(labels);
  }

  private perVersion(): { remove(labels: VersionLabels): void }[] {
    return [
      this.queueWait,
      this.inferenceDuration,
      this.tokenizationDuration,
      this.tokenizedCharacters,
      this.promptGroupItems,
      this.inputTokens,
      this.batchSize,
      this.batchTokens,
      this.paddingRatio,
      this.queueDepth,
      this.batchesRunning,
      this.rowsRunning,
      this.soloBatches,
      this.cacheHits,
      this.cacheMisses,
      this.tokensTotal,
    ];
  }
}
