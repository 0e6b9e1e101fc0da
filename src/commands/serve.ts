// `rmserve serve`: load every model under the models root and serve them over HTTP.
import { Command, Option } from 'commander';
import { DEFAULT_CONFIG, createService } from '../service.js';
import { AGGREGATE_NAMES, TRANSFORM_NAMES, type AggregateName, type TransformName } from '../transforms/index.js';

const int = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got "${value}"`);
  return n;
};

const unit = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new Error(`expected a number in [0, 1], got "${value}"`);
  return n;
};

const ratio = (value: string): number => {
  const r = Number(value);
  if (!(r >= 0 && r <= 1)) throw new Error(`expected a number in [0, 1], got "${value}"`);
  return r;
};

export function serveCommand(): Command {
  const d = DEFAULT_CONFIG;
  return new Command('serve')
    .description('serve the reward models under --models over HTTP')
    .addOption(new Option('--port <port>', 'TCP port').env('PORT').default(8000).argParser(int))
    .addOption(new Option('--host <host>', 'interface to listen on').env('HOST').default('127.0.0.1'))
    .addOption(new Option('--models <dir>', 'models root: <name>/<version>/').env('RMSERVE_MODELS').default(d.modelsRoot))
    .addOption(new Option('--device <device>', 'cpu, cuda or cuda:N').env('RMSERVE_DEVICE').default(d.device))
    .addOption(new Option('--intra-op-threads <n>', 'ORT threads per run (0 = ORT default)').env('RMSERVE_INTRA_OP_THREADS').default(d.intraOpThreads).argParser(int))
    .addOption(new Option('--inter-op-threads <n>', 'ORT inter-op threads (0 = ORT default)').env('RMSERVE_INTER_OP_THREADS').default(d.interOpThreads).argParser(int))
    .addOption(new Option('--ort-spinning', 'let ORT threads spin-wait between runs (ORT default; off here)').env('RMSERVE_ORT_SPINNING'))
    .addOption(new Option('--max-batch-size <n>', 'most rows per ONNX run').env('RMSERVE_MAX_BATCH_SIZE').default(d.maxBatchSize).argParser(int))
    .addOption(new Option('--max-batch-tokens <n>', 'most padded tokens per ONNX run').env('RMSERVE_MAX_BATCH_TOKENS').default(d.maxBatchTokens).argParser(int))
    .addOption(new Option('--max-wait-ms <ms>', 'longest an item waits for a fuller batch').env('RMSERVE_MAX_WAIT_MS').default(d.maxWaitMs).argParser(int))
    .addOption(new Option('--max-queue <n>', 'queued items per model before 429').env('RMSERVE_MAX_QUEUE').default(d.maxQueueItems).argParser(int))
    .addOption(new Option('--max-padding-ratio <r>', 'largest padding share of a batch; longer or shorter items wait for their own (1 = off; GPUs pad cheaply)').env('RMSERVE_MAX_PADDING_RATIO').default(d.maxPaddingRatio).argParser(ratio))
    .addOption(new Option('--cache-size <n>', 'cached reward vectors (0 = off)').env('RMSERVE_CACHE_SIZE').default(d.cacheSize).argParser(int))
    .addOption(new Option('--max-items <n>', 'most items per request (413 beyond)').env('RMSERVE_MAX_ITEMS').default(d.maxItems).argParser(int))
    .addOption(new Option('--body-limit <bytes>', 'largest request body (413 beyond)').env('RMSERVE_BODY_LIMIT').default(d.bodyLimit).argParser(int))
    .addOption(new Option('--request-timeout-ms <ms>', 'longest time to receive a whole request, headers and body (408 beyond; 0 = off)').env('RMSERVE_REQUEST_TIMEOUT_MS').default(d.requestTimeoutMs).argParser(int))
    .addOption(new Option('--headers-timeout-ms <ms>', 'longest time to receive the request line and headers (408 beyond; <= --request-timeout-ms)').env('RMSERVE_HEADERS_TIMEOUT_MS').default(d.headersTimeoutMs).argParser(int))
    .addOption(new Option('--keep-alive-timeout-ms <ms>', 'idle keep-alive connections close after this (keep below --shutdown-timeout-ms)').env('RMSERVE_KEEP_ALIVE_TIMEOUT_MS').default(d.keepAliveTimeoutMs).argParser(int))
    .addOption(new Option('--max-connections <n>', 'open connections beyond which new ones are closed on accept (0 = no limit)').env('RMSERVE_MAX_CONNECTIONS').default(d.maxConnections).argParser(int))
    .addOption(new Option('--max-header-bytes <bytes>', 'largest request line plus headers (431 beyond)').env('RMSERVE_MAX_HEADER_BYTES').default(d.maxHeaderBytes).argParser(int))
    .addOption(new Option('--default-model <names>', 'comma-separated models used when a request names none (default: all)').env('RMSERVE_DEFAULT_MODEL'))
    .addOption(new Option('--transform <name>', '/get_reward transform when its URL names none').env('RMSERVE_TRANSFORM').choices(TRANSFORM_NAMES).default(d.rewardDefaults.transform))
    .addOption(new Option('--aggregate <name>', '/get_reward aggregate when its URL names none (default: conjunction for lsc, else sum)').env('RMSERVE_AGGREGATE').choices(AGGREGATE_NAMES))
    .addOption(new Option('--reference-quantile <q>', 'quantile of reference rewards used as the LSC reference').env('RMSERVE_REFERENCE_QUANTILE').default(d.rewardDefaults.referenceQuantile).argParser(unit))
    .addOption(new Option('--tokenizer-threads <n>', 'worker threads tokenizing requests of 16+ items (0 = inline)').env('RMSERVE_TOKENIZER_THREADS').default(d.tokenizerThreads).argParser(int))
    .addOption(new Option('--reference-cache-size <n>', 'prompts whose LSC reference rewards are remembered (0 = off)').env('RMSERVE_REFERENCE_CACHE_SIZE').default(d.referenceCacheSize).argParser(int))
    .addOption(new Option('--pin <name=version...>', 'serve this version of a model instead of the newest (repeatable)').env('RMSERVE_PIN').argParser(collectPins))
    .addOption(new Option('--no-watch', 'do not watch the models root for new versions'))
    .addOption(new Option('--watch-settle-ms <ms>', 'how long a new version folder must stay unchanged before it loads').env('RMSERVE_WATCH_SETTLE_MS').default(d.watchSettleMs).argParser(int))
    .addOption(new Option('--watch-poll-ms <ms>', 'full rescan period of the models root').env('RMSERVE_WATCH_POLL_MS').default(d.watchPollMs).argParser(int))
    .addOption(new Option('--admin-token <token>', 'bearer token for POST /v1/models/:name/{load,unload,rollback} (off without one)').env('RMSERVE_ADMIN_TOKEN'))
    .addOption(new Option('--api-key <key>', 'bearer token required by the scoring routes (off without one)').env('RMSERVE_API_KEY'))
    .addOption(new Option('--shutdown-timeout-ms <ms>', 'on SIGTERM/SIGINT, longest wait for queued work before exiting anyway').env('RMSERVE_SHUTDOWN_TIMEOUT_MS').default(25_000).argParser(int))
    .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug').env('RMSERVE_LOG_LEVEL').default('info'))
    .action(async (opts: ServeOptions) => {
      // Known before anything loads: the deadline would cut the drain short on every SIGTERM.
      if (opts.keepAliveTimeoutMs >= opts.shutdownTimeoutMs) {
        console.error(
          `[rmserve] warning: --keep-alive-timeout-ms (${opts.keepAliveTimeoutMs}) is not below --shutdown-timeout-ms (${opts.shutdownTimeoutMs}): ` +
            'shutdown waits for idle keep-alive connections to time out, so it will hit the deadline and exit 1',
        );
      }
      const service = await createService(
        {
          modelsRoot: opts.models,
          device: opts.device,
          intraOpThreads: opts.intraOpThreads,
          interOpThreads: opts.interOpThreads,
          ortSpinning: opts.ortSpinning === true,
          maxBatchSize: opts.maxBatchSize,
          maxBatchTokens: opts.maxBatchTokens,
          maxWaitMs: opts.maxWaitMs,
          maxQueueItems: opts.maxQueue,
          maxPaddingRatio: opts.maxPaddingRatio,
          cacheSize: opts.cacheSize,
          maxItems: opts.maxItems,
          bodyLimit: opts.bodyLimit,
          defaultModels: opts.defaultModel?.split(',').map((s) => s.trim()).filter(Boolean),
          pins: opts.pin ?? {},
          watch: opts.watch,
          watchSettleMs: opts.watchSettleMs,
          watchPollMs: opts.watchPollMs,
          adminToken: opts.adminToken || undefined,
          apiKey: opts.apiKey || undefined,
          rewardDefaults: { transform: opts.transform, aggregate: opts.aggregate, referenceQuantile: opts.referenceQuantile },
          referenceCacheSize: opts.referenceCacheSize,
          tokenizerThreads: opts.tokenizerThreads,
          requestTimeoutMs: opts.requestTimeoutMs,
          headersTimeoutMs: opts.headersTimeoutMs,
          keepAliveTimeoutMs: opts.keepAliveTimeoutMs,
          maxConnections: opts.maxConnections,
          maxHeaderBytes: opts.maxHeaderBytes,
        },
        { logger: { level: opts.logLevel }, log: (m) => console.error(`[rmserve] ${m}`) },
      );
      // Graceful stop (SIGTERM from Kubernetes, Ctrl-C): /ready goes 503, the listener closes, requests
      // already accepted are answered (queued items still run), then sessions are released. Past the
      // deadline, or on a second signal, the process exits at once with status 1.
      let stopping = false;
      const shutdown = (signal: string): void => {
        if (stopping) {
          service.app.log.warn(`${signal} again: exiting without waiting`);
          process.exit(1);
        }
        stopping = true;
        service.app.log.info(`${signal}: draining (at most ${opts.shutdownTimeoutMs} ms) and shutting down`);
        setTimeout(() => {
          service.app.log.error(`shutdown deadline of ${opts.shutdownTimeoutMs} ms passed; exiting with work unfinished`);
          process.exit(1);
        }, opts.shutdownTimeoutMs).unref();
        service.close().then(
          () => process.exit(0),
          (err: Error) => {
            service.app.log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      await service.app.listen({ port: opts.port, host: opts.host });
    });
}

interface ServeOptions {
  port: number;
  host: string;
  models: string;
  device: string;
  intraOpThreads: number;
  interOpThreads: number;
  ortSpinning?: boolean;
  maxBatchSize: number;
  maxBatchTokens: number;
  maxWaitMs: number;
  maxQueue: number;
  maxPaddingRatio: number;
  cacheSize: number;
  maxItems: number;
  bodyLimit: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  maxHeaderBytes: number;
  defaultModel?: string;
  transform: TransformName;
  aggregate?: AggregateName;
  referenceQuantile: number;
  referenceCacheSize: number;
  tokenizerThreads: number;
  pin?: Record<string, string>;
  watch: boolean;
  watchSettleMs: number;
  watchPollMs: number;
  adminToken?: string;
  apiKey?: string;
  shutdownTimeoutMs: number;
  logLevel: string;
}

/** `--pin a=3 --pin b=7` (or RMSERVE_PIN="a=3,b=7") → { a: '3', b: '7' }. */
function collectPins(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const pins = { ...previous };
  for (const pair of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, version, ...rest] = pair.split('=');
    if (!name || !version || rest.length > 0) throw new Error(`expected name=version, got "${pair}"`);
    pins[name] = version;
  }
  return pins;
}
