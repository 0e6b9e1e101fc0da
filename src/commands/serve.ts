// `rmserve serve`: load every model under the models root and serve them over HTTP.
import { Command, Option } from 'commander';
import { DEFAULT_CONFIG, createService } from '../service.js';

const int = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got "${value}"`);
  return n;
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
    .addOption(new Option('--max-batch-size <n>', 'most rows per ONNX run').env('RMSERVE_MAX_BATCH_SIZE').default(d.maxBatchSize).argParser(int))
    .addOption(new Option('--max-batch-tokens <n>', 'most padded tokens per ONNX run').env('RMSERVE_MAX_BATCH_TOKENS').default(d.maxBatchTokens).argParser(int))
    .addOption(new Option('--max-wait-ms <ms>', 'longest an item waits for a fuller batch').env('RMSERVE_MAX_WAIT_MS').default(d.maxWaitMs).argParser(int))
    .addOption(new Option('--max-queue <n>', 'queued items per model before 429').env('RMSERVE_MAX_QUEUE').default(d.maxQueueItems).argParser(int))
    .addOption(new Option('--cache-size <n>', 'cached reward vectors (0 = off)').env('RMSERVE_CACHE_SIZE').default(d.cacheSize).argParser(int))
    .addOption(new Option('--max-items <n>', 'most items per request (413 beyond)').env('RMSERVE_MAX_ITEMS').default(d.maxItems).argParser(int))
    .addOption(new Option('--body-limit <bytes>', 'largest request body (413 beyond)').env('RMSERVE_BODY_LIMIT').default(d.bodyLimit).argParser(int))
    .addOption(new Option('--default-model <names>', 'comma-separated models used when a request names none (default: all)').env('RMSERVE_DEFAULT_MODEL'))
    .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug').env('RMSERVE_LOG_LEVEL').default('info'))
    .action(async (opts: ServeOptions) => {
      const service = await createService(
        {
          modelsRoot: opts.models,
          device: opts.device,
          intraOpThreads: opts.intraOpThreads,
          interOpThreads: opts.interOpThreads,
          maxBatchSize: opts.maxBatchSize,
          maxBatchTokens: opts.maxBatchTokens,
          maxWaitMs: opts.maxWaitMs,
          maxQueueItems: opts.maxQueue,
          cacheSize: opts.cacheSize,
          maxItems: opts.maxItems,
          bodyLimit: opts.bodyLimit,
          defaultModels: opts.defaultModel?.split(',').map((s) => s.trim()).filter(Boolean),
        },
        { logger: { level: opts.logLevel }, log: (m) => console.error(`[rmserve] ${m}`) },
      );
      const shutdown = async (signal: string): Promise<void> => {
        service.app.log.info(`${signal}: draining and shutting down`);
        await service.close();
        process.exit(0);
      };
      process.once('SIGTERM', () => void shutdown('SIGTERM'));
      process.once('SIGINT', () => void shutdown('SIGINT'));
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
  maxBatchSize: number;
  maxBatchTokens: number;
  maxWaitMs: number;
  maxQueue: number;
  cacheSize: number;
  maxItems: number;
  bodyLimit: number;
  defaultModel?: string;
  logLevel: string;
}
