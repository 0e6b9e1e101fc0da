// Connection-level limits against slow and hostile clients, and the HTTP server that applies them.
// docs/operations.md#limits lists each one with its flag, default and what a client sees.
import { Server, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http';
import type { RmserveMetrics } from '../metrics.js';

export interface HttpLimits {
  /** Longest time to receive a whole request, headers and body (408 beyond; 0 = off). */
  requestTimeoutMs: number;
  /** Longest time to receive a request's headers (408 beyond; 0 = off; at most requestTimeoutMs). */
  headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open after its last reply (advertised in `Keep-Alive: timeout=`). */
  keepAliveTimeoutMs: number;
  /** Open connections beyond which new ones are closed on accept (0 = no limit). */
  maxConnections: number;
  /** Largest request line plus headers in bytes (431 beyond). */
  maxHeaderBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  // An 8 MiB body at 1 MB/s takes 8 s; 30 s leaves room for slow links and frees a stalled
  // client's buffered body long before it could pile up (Node's own default is 300 s).
  requestTimeoutMs: 30_000,
  // Headers are a few hundred bytes: anything slower than 10 s is a slowloris, not a network.
  headersTimeoutMs: 10_000,
  // Node's default. Shutdown waits for idle keep-alive connections to reach it (they are never
  // reset), so it must stay below --shutdown-timeout-ms.
  keepAliveTimeoutMs: 5_000,
  // Room for a trainer with hundreds of workers; bounds buffered bodies to max-connections × body-limit.
  maxConnections: 1024,
  // Node's default; real clients send well under 2 KiB.
  maxHeaderBytes: 16_384,
};

/** Throws an Error naming the flag when a limit is out of range, so `rmserve serve` refuses to start. */
export function validateHttpLimits(limits: HttpLimits): void {
  const checks: [keyof HttpLimits, string, number][] = [
    ['requestTimeoutMs', '--request-timeout-ms', 0],
    ['headersTimeoutMs', '--headers-timeout-ms', 0],
    ['keepAliveTimeoutMs', '--keep-alive-timeout-ms', 1],
    ['maxConnections', '--max-connections', 0],
    ['maxHeaderBytes', '--max-header-bytes', 1],
  ];
  for (const [key, flag, min] of checks) {
    const value = limits[key];
    if (!Number.isInteger(value) || value < min) throw new Error(`${flag} must be an integer >= ${min}, got ${value}`);
  }
  const { requestTimeoutMs: request, headersTimeoutMs: headers } = limits;
  // Node refuses this combination too, with a message that names neither flag.
  if (request > 0 && (headers === 0 || headers > request)) {
    throw new Error(`--headers-timeout-ms (${headers}) must be between 1 and --request-timeout-ms (${request})`);
  }
}

/**
 * Node's server.close() destroys every idle keep-alive connection at once, which resets a client
 * that has just sent a request on one (ECONNRESET instead of an answer). This server leaves them
 * open while it drains: a request that arrives gets 503 with `Connection: close` (see app.ts),
 * and a connection that stays idle closes at the keep-alive timeout it advertised, which clients
 * that honour `Keep-Alive: timeout=` (undici, browsers) never race.
 */
export class DrainingHttpServer extends Server {
  override closeIdleConnections(): void {}
}

/** The fastify `serverFactory`: an HTTP/1.1 server with the limits applied. */
export function httpServerFactory(limits: HttpLimits, metrics: RmserveMetrics) {
  return (handler: RequestListener<typeof IncomingMessage, typeof ServerResponse>): DrainingHttpServer => {
    const smallest = Math.min(...[limits.requestTimeoutMs, limits.headersTimeoutMs].filter((t) => t > 0));
    const server = new DrainingHttpServer(
      {
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout: limits.headersTimeoutMs,
        maxHeaderSize: limits.maxHeaderBytes,
        // app.ts refuses a Host-less HTTP/1.1 request in the error shape; Node's refusal has no body.
        requireHostHeader: false,
        // Node checks the two timeouts on this period (30 s by default, which would let a 1 s
        // timeout run for 31 s): a tenth of the smallest, between 50 ms and 1 s.
        connectionsCheckingInterval: Number.isFinite(smallest) ? Math.min(1000, Math.max(50, Math.floor(smallest / 10))) : 1000,
      },
      handler,
    );
    // No socket inactivity timeout (fastify's connectionTimeout): a client waiting for a long
    // queue sends and receives nothing, and must not be cut off; the timeouts above cover slow senders.
    server.setTimeout(0);
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;
    server.on('drop', () => metrics.connectionsDropped.inc());
    server.on('connection', (socket) => {
      metrics.openConnections.inc();
      socket.once('close', () => metrics.openConnections.dec());
    });
    return server;
  };
}
