// Prometheus metrics, one registry per server instance (tests run several servers in one process).
// Names follow docs/design.md (Metrics): everything is prefixed rmserve_.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const TOKEN_BUCKETS = [16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

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
    labelNames: ['model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly inferenceDuration = new Histogram({
    name: 'rmserve_inference_duration_seconds',
    help: 'Duration of one ONNX run (one batch)',
    labelNames: ['model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'rmserve_batch_size',
    help: 'Rows per ONNX run (one observation per run)',
    labelNames: ['model'] as const,
    buckets: BATCH_SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly batchTokens = new Histogram({
    name: 'rmserve_batch_tokens',
    help: 'Padded tokens (rows x longest row) per ONNX run',
    labelNames: ['model'] as const,
    buckets: TOKEN_BUCKETS,
    registers: [this.registry],
  });
  readonly paddingRatio = new Histogram({
    name: 'rmserve_padding_ratio',
    help: 'Share of padded tokens that are padding, per ONNX run',
    labelNames: ['model'] as const,
    buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'rmserve_queue_depth',
    help: 'Items waiting in the batch queue',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: 'rmserve_cache_hits_total',
    help: 'Items answered from the reward cache',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'rmserve_cache_misses_total',
    help: 'Items not found in the reward cache',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly tokensTotal = new Counter({
    name: 'rmserve_tokens_total',
    help: 'Real (unpadded) tokens run through a model',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly modelLoads = new Counter({
    name: 'rmserve_model_loads_total',
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

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}
