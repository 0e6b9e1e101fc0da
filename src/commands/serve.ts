// `rmserve serve`: load every model under the models root and serve them over HTTP. The options
// are SERVE_OPTIONS (src/config/serve.ts); this file only runs the process around the service.
import { Command } from 'commander';
import { createService } from '../service.js';
import { addOptions, readOptions } from '../config/options.js';
import { SERVE_OPTIONS } from '../config/serve.js';

export function serveCommand(): Command {
  return addOptions(new Command('serve').description('serve the reward models under --models over HTTP'), SERVE_OPTIONS)
    .action(async (parsed: Record<string, unknown>) => {
      const { config, command: opts } = readOptions(SERVE_OPTIONS, parsed);
      // Known before anything loads: the deadline would cut the drain short on every SIGTERM.
      if (config.keepAliveTimeoutMs >= opts.shutdownTimeoutMs) {
        console.error(
          `[rmserve] warning: --keep-alive-timeout-ms (${config.keepAliveTimeoutMs}) is not below --shutdown-timeout-ms (${opts.shutdownTimeoutMs}): ` +
            'shutdown waits for idle keep-alive connections to time out, so it will hit the deadline and exit 1',
        );
      }
      const service = await createService(config, { logger: { level: opts.logLevel }, log: (m) => console.error(`[rmserve] ${m}`) });
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
