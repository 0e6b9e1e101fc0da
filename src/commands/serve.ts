// `rmserve serve`: load every model under the models root and serve them over HTTP. The options
// are SERVE_OPTIONS (src/config/serve.ts); this file only runs the process around the service.
// Startup order: options (commander refuses a bad value in one line), then the models root and
// the listen address (serve-preflight.ts), then the models load, then the listener opens. Every
// failure on that path is one `error: …` line and exit status 1, never a stack trace.
import { Command } from 'commander';
import { createService, type Service } from '../service.js';
import { addOptions, readOptions } from '../config/options.js';
import { SERVE_OPTIONS } from '../config/serve.js';
import { checkListen, checkModelsRoot, listenProblem } from './serve-preflight.js';

export function serveCommand(): Command {
  return addOptions(new Command('serve').description('serve the reward models under --models over HTTP'), SERVE_OPTIONS)
    .action(async function (this: Command, parsed: Record<string, unknown>) {
      const { config, command: opts } = readOptions(SERVE_OPTIONS, parsed);
      // commander's error(): the message on stderr and exit 1, as for its own option errors.
      const fail = (message: string): never => this.error(`error: ${message}`, { exitCode: 1 });
      try {
        for (const warning of checkModelsRoot(config.modelsRoot, config.watch)) console.error(`[rmserve] warning: ${warning}`);
        await checkListen(opts.host, opts.port);
      } catch (err) {
        fail((err as Error).message);
      }
      // Known before anything loads: the deadline would cut the drain short on every SIGTERM.
      if (config.keepAliveTimeoutMs >= opts.shutdownTimeoutMs) {
        console.error(
          `[rmserve] warning: --keep-alive-timeout-ms (${config.keepAliveTimeoutMs}) is not below --shutdown-timeout-ms (${opts.shutdownTimeoutMs}): ` +
            'shutdown waits for idle keep-alive connections to time out, so it will hit the deadline and exit 1',
        );
      }
      let service: Service;
      try {
        service = await createService(config, { logger: { level: opts.logLevel }, log: (m) => console.error(`[rmserve] ${m}`) });
      } catch (err) {
        // Settings that only conflict together (limits, transform and aggregate) are refused here, before any load.
        return fail((err as Error).message);
      }
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
      try {
        await service.app.listen({ port: opts.port, host: opts.host });
      } catch (err) {
        // Free at the check but taken while the models loaded: still one line, after releasing the sessions.
        await service.close().catch(() => {});
        fail(listenProblem(err as NodeJS.ErrnoException, opts.host, opts.port));
      }
    });
}
