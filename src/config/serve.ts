// `rmserve serve`'s options: the one place each is declared. The key is the ServiceConfig field
// (createService's config, also what tests and bench/ pass); entries of scope `command` are the
// process's own (listen address, shutdown, logging). Order = --help order = README order.
// Defaults owned by the module that uses them (HTTP limits, watch timing, reward defaults, the
// reference cache, the item size limit) are read from it, so no value is written twice.
import { DEFAULT_REFERENCE_CACHE_SIZE } from '../scoring/references.js';
import { DEFAULT_REWARD_DEFAULTS } from '../scoring/scorer.js';
import { DEFAULT_MAX_ITEM_CHARS } from '../scoring/tokenizer-pool.js';
import { DEFAULT_WATCH_OPTIONS } from '../scoring/watcher.js';
import { DEFAULT_HTTP_LIMITS } from '../server/limits.js';
import { AGGREGATE_NAMES, TRANSFORM_NAMES } from '../transforms/index.js';
import type { ConfigOf, OptionTable } from './options.js';
import { commaList, instanceCount, niceValue, nonNegativeInt, pins, positiveInt, ratio, tcpPort, unitInterval } from './parsers.js';

export const SERVE_OPTIONS = {
  port: { flags: '--port <port>', env: 'PORT', help: 'TCP port (0 = any free port)', default: 8000, parse: tcpPort, scope: 'command' },
  host: { flags: '--host <host>', env: 'HOST', help: 'interface to listen on', default: '127.0.0.1', scope: 'command' },
  modelsRoot: { flags: '--models <dir>', env: 'RMSERVE_MODELS', help: 'models root: <name>/<version>/', default: './models' },
  device: { flags: '--device <device>', env: 'RMSERVE_DEVICE', help: 'cpu, cuda or cuda:N', default: 'cpu' },
  intraOpThreads: {
    flags: '--intra-op-threads <n>', env: 'RMSERVE_INTRA_OP_THREADS', help: 'ORT threads per run (0 = ORT default)', default: 0, parse: nonNegativeInt,
  },
  interOpThreads: {
    flags: '--inter-op-threads <n>', env: 'RMSERVE_INTER_OP_THREADS', help: 'ORT inter-op threads (0 = ORT default)', default: 0, parse: nonNegativeInt,
  },
  // On, as ORT's default: with the session on its own thread, spinning is faster at every
  // concurrency measured and no longer costs the event loop its p99 (docs/benchmarks.md).
  ortSpinning: {
    flags: '--no-ort-spinning', env: 'RMSERVE_NO_ORT_SPINNING',
    help: "make ORT's pool threads sleep between parallel sections and runs instead of spin-waiting (ORT's default), leaving the cores to other processes",
    docs: { default: 'spin', see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  // Lower than the event loop: on a small CPU the two want the same cores, and a pool thread that
  // yields costs the run less than the wait costs the event loop (src/model/ort-pool-priority.ts).
  ortPoolNice: {
    flags: '--ort-pool-nice <n>', env: 'RMSERVE_ORT_POOL_NICE', default: 10, parse: niceValue,
    help: "nice value (0-19) for ORT's intra-op pool threads on each inference thread (Linux), and for the inference threads of several one-thread instances, so the event loop gets a core first when both want one (0 = leave them at the process's)",
    docs: { see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  // Own thread: onnxruntime-node runs a batch synchronously on the thread that calls it.
  inferenceThread: {
    flags: '--no-inference-thread', env: 'RMSERVE_NO_INFERENCE_THREAD',
    help: 'run ONNX on the main thread (the event loop then waits out every batch) instead of a thread per model version',
    docs: { default: 'a thread per version', see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  // Triton's instance count. `auto`: on a 2-core CPU two single-threaded sessions and a solo
  // session outrun one two-threaded session under load and match it on average alone; elsewhere one session
  // (src/scoring/session-layout.ts, docs/operations.md#threads).
  instances: {
    flags: '--instances <n>', env: 'RMSERVE_INSTANCES', default: 'auto' as number | 'auto', parse: instanceCount,
    help: 'ONNX sessions per model version, each on its own thread, running batches side by side; on a CPU pair with --intra-op-threads (instances × threads ≈ cores). auto: 2 one-thread instances and a 2-thread solo session on a 2-core CPU when two more copies of the weights take under 1/8 of memory and no thread flag is given, else 1',
    docs: { see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  // With narrow instances, the session a lone request gets: every core for one run.
  soloThreads: {
    flags: '--solo-threads <n>', env: 'RMSERVE_SOLO_THREADS', default: 0, parse: nonNegativeInt,
    help: 'one more session with this many ORT threads, for batches that have the model to themselves (nothing else queued or running); with --instances N --intra-op-threads 1, keeps a lone request fast (0 = none)',
    docs: { see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  // On the main thread a lone batch skips the hand-off to an inference thread and back (~0.3 ms
  // on a 2-core CPU, a third of a small model's run), but the event loop waits out the run; so
  // only short ones go there (docs/benchmarks.md, "The solo session on the main thread, for
  // short runs").
  soloInlineMs: {
    flags: '--solo-inline-ms <ms>', env: 'RMSERVE_SOLO_INLINE_MS', default: 20, parse: nonNegativeInt,
    help: 'open the solo session on the main thread when a one-thread instance runs a 128-token row within this many ms (timed at load), and run there the lone batches expected to take at most this long; longer ones are shared over the instances (0 = the solo session gets its own thread)',
    docs: { see: '[docs/operations.md](docs/operations.md#threads)' },
  },
  maxBatchSize: { flags: '--max-batch-size <n>', env: 'RMSERVE_MAX_BATCH_SIZE', help: 'most rows per ONNX run', default: 64, parse: nonNegativeInt },
  maxBatchTokens: {
    flags: '--max-batch-tokens <n>', env: 'RMSERVE_MAX_BATCH_TOKENS', help: 'most padded tokens per ONNX run', default: 32768, parse: nonNegativeInt,
  },
  // 0: an idle model runs what is queued at once (as TEI does); what arrives during a run forms
  // the next batch. Waiting only pays where a fuller batch is much cheaper per row (GPUs).
  maxWaitMs: {
    flags: '--max-wait-ms <ms>', env: 'RMSERVE_MAX_WAIT_MS', help: 'longest an idle model waits for a fuller batch (0 = run at once)', default: 0, parse: nonNegativeInt,
  },
  calibrateBatching: {
    flags: '--no-calibrate-batching', env: 'RMSERVE_NO_CALIBRATE_BATCHING',
    help: 'batch up to --max-batch-size/--max-batch-tokens as given instead of the limits timed at load (cost per row)',
    docs: { default: 'calibrate', see: '[docs/operations.md](docs/operations.md#how-a-version-goes-live)' },
  },
  maxQueueItems: { flags: '--max-queue <n>', env: 'RMSERVE_MAX_QUEUE', help: 'queued items per model before 429', default: 4096, parse: nonNegativeInt },
  maxPaddingRatio: {
    flags: '--max-padding-ratio <r>', env: 'RMSERVE_MAX_PADDING_RATIO',
    help: 'largest padding share of a batch; longer or shorter items wait for their own (1 = off; GPUs pad cheaply)', default: 0.1, parse: ratio,
  },
  cacheSize: { flags: '--cache-size <n>', env: 'RMSERVE_CACHE_SIZE', help: 'cached reward vectors (0 = off)', default: 100_000, parse: nonNegativeInt },
  maxItems: { flags: '--max-items <n>', env: 'RMSERVE_MAX_ITEMS', help: 'most items per request (413 beyond)', default: 256, parse: nonNegativeInt },
  // The body limit bounds a request's bytes, not one item's text: 256 items of 30 KiB fit 8 MiB,
  // one 8 MiB item would tokenize for seconds. src/scoring/tokenizer-pool.ts refuses it first.
  maxItemChars: {
    flags: '--max-item-chars <n>', env: 'RMSERVE_MAX_ITEM_CHARS', help: 'longest item, in characters of its texts together (413 beyond)',
    default: DEFAULT_MAX_ITEM_CHARS, parse: positiveInt, docs: { default: '1048576 (2²⁰)' },
  },
  bodyLimit: {
    flags: '--body-limit <bytes>', env: 'RMSERVE_BODY_LIMIT', help: 'largest request body (413 beyond)', default: 8 * 1024 * 1024, parse: nonNegativeInt,
    docs: { default: '8388608 (8 MiB)' },
  },
  requestTimeoutMs: {
    flags: '--request-timeout-ms <ms>', env: 'RMSERVE_REQUEST_TIMEOUT_MS',
    help: 'longest time to receive a whole request, headers and body (408 beyond; 0 = off)', default: DEFAULT_HTTP_LIMITS.requestTimeoutMs, parse: nonNegativeInt,
    docs: { see: '[docs/operations.md](docs/operations.md#limits)' },
  },
  headersTimeoutMs: {
    flags: '--headers-timeout-ms <ms>', env: 'RMSERVE_HEADERS_TIMEOUT_MS',
    help: 'longest time to receive the request line and headers (408 beyond; <= --request-timeout-ms)', default: DEFAULT_HTTP_LIMITS.headersTimeoutMs,
    parse: nonNegativeInt,
  },
  keepAliveTimeoutMs: {
    flags: '--keep-alive-timeout-ms <ms>', env: 'RMSERVE_KEEP_ALIVE_TIMEOUT_MS',
    help: 'idle keep-alive connections close after this (keep below --shutdown-timeout-ms)', default: DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs, parse: nonNegativeInt,
  },
  maxConnections: {
    flags: '--max-connections <n>', env: 'RMSERVE_MAX_CONNECTIONS',
    help: 'open connections beyond which new ones are closed on accept (0 = no limit)', default: DEFAULT_HTTP_LIMITS.maxConnections, parse: nonNegativeInt,
  },
  maxHeaderBytes: {
    flags: '--max-header-bytes <bytes>', env: 'RMSERVE_MAX_HEADER_BYTES', help: 'largest request line plus headers (431 beyond)',
    default: DEFAULT_HTTP_LIMITS.maxHeaderBytes, parse: nonNegativeInt,
  },
  defaultModels: {
    flags: '--default-model <names>', env: 'RMSERVE_DEFAULT_MODEL', help: 'comma-separated models used when a request names none (default: all)',
    parse: commaList, docs: { default: 'all models' },
  },
  rewardDefaults: {
    transform: {
      flags: '--transform <name>', env: 'RMSERVE_TRANSFORM', help: '/get_reward transform when its URL names none', choices: TRANSFORM_NAMES,
      default: DEFAULT_REWARD_DEFAULTS.transform, docs: { see: '[docs/api.md](docs/api.md)' },
    },
    aggregate: {
      flags: '--aggregate <name>', env: 'RMSERVE_AGGREGATE', help: '/get_reward aggregate when its URL names none (default: conjunction for lsc, else sum)',
      choices: AGGREGATE_NAMES, docs: { default: 'by transform' },
    },
    referenceQuantile: {
      flags: '--reference-quantile <q>', env: 'RMSERVE_REFERENCE_QUANTILE', help: 'quantile of reference rewards used as the LSC reference',
      default: DEFAULT_REWARD_DEFAULTS.referenceQuantile, parse: unitInterval,
    },
  },
  tokenizerThreads: {
    flags: '--tokenizer-threads <n>', env: 'RMSERVE_TOKENIZER_THREADS', help: 'worker threads tokenizing requests of 16+ items (0 = inline)',
    default: 1, parse: nonNegativeInt,
  },
  // On: a GRPO request's responses to one prompt tokenize it once. Off only to compare (bench/prompt-group.ts).
  promptGroups: {
    flags: '--no-prompt-groups', env: 'RMSERVE_NO_PROMPT_GROUPS',
    help: 'tokenize every item whole, even when items of a request share a prompt (same tokens, more work)',
    docs: { default: 'on', see: '[docs/api.md](docs/api.md#prompt-groups)' },
  },
  referenceCacheSize: {
    flags: '--reference-cache-size <n>', env: 'RMSERVE_REFERENCE_CACHE_SIZE', help: 'prompts whose LSC reference rewards are remembered (0 = off)',
    default: DEFAULT_REFERENCE_CACHE_SIZE, parse: nonNegativeInt,
  },
  pins: {
    flags: '--pin <name=version...>', env: 'RMSERVE_PIN', help: 'serve this version of a model instead of the newest (repeatable)', parse: pins, fallback: {},
    docs: { default: 'newest', see: '[docs/operations.md](docs/operations.md)' },
  },
  watch: { flags: '--no-watch', env: 'RMSERVE_NO_WATCH', help: 'do not watch the models root for new versions', docs: { default: 'watch on' } },
  watchSettleMs: {
    flags: '--watch-settle-ms <ms>', env: 'RMSERVE_WATCH_SETTLE_MS', help: 'how long a new version folder must stay unchanged before it loads',
    default: DEFAULT_WATCH_OPTIONS.settleMs, parse: nonNegativeInt,
  },
  watchPollMs: {
    flags: '--watch-poll-ms <ms>', env: 'RMSERVE_WATCH_POLL_MS', help: 'full rescan period of the models root', default: DEFAULT_WATCH_OPTIONS.pollMs,
    parse: nonNegativeInt,
  },
  adminToken: {
    flags: '--admin-token <token>', env: 'RMSERVE_ADMIN_TOKEN', help: 'bearer token for POST /v1/models/:name/{load,unload,rollback} (off without one)',
    empty: 'unset', docs: { default: 'unset' },
  },
  apiKey: {
    flags: '--api-key <key>', env: 'RMSERVE_API_KEY', help: 'bearer token required by the scoring routes (off without one)', empty: 'unset',
    docs: { default: 'unset' },
  },
  shutdownTimeoutMs: {
    flags: '--shutdown-timeout-ms <ms>', env: 'RMSERVE_SHUTDOWN_TIMEOUT_MS', help: 'on SIGTERM/SIGINT, longest wait for queued work before exiting anyway',
    default: 25_000, parse: nonNegativeInt, scope: 'command',
  },
  logLevel: { flags: '--log-level <level>', env: 'RMSERVE_LOG_LEVEL', help: 'fatal, error, warn, info, debug', default: 'info', scope: 'command' },
  // Off by default: a log line per request cost 5–30% of throughput at concurrency 1.
  accessLog: { flags: '--access-log', env: 'RMSERVE_ACCESS_LOG', help: 'log every request and reply (fastify request logging)', fallback: false },
} as const satisfies OptionTable;

/** createService's config: one field per non-command entry of SERVE_OPTIONS. */
export type ServeConfig = ConfigOf<typeof SERVE_OPTIONS>;
