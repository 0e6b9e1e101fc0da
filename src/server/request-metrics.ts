// rmserve_requests_total and rmserve_request_duration_seconds count every request exactly once,
// whatever ends it: its reply (that status), the client going away before the reply was written
// (499, nginx's "client closed request", so dashboards built on nginx/ingress metrics read it the
// same way), or the HTTP layer answering for it (408 when the body stopped arriving). Requests
// refused before fastify saw them (bad request line, headers too large or too slow) count under
// route "unmatched", like unknown routes.
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { RmserveMetrics } from '../metrics.js';

/** Status label of a request whose client went away before its reply was written. */
export const CLIENT_CLOSED_STATUS = 499;

export class RequestAccounting {
  // The latest request on each socket, so the HTTP layer's errors can be pinned on it.
  private readonly latest = new WeakMap<Socket, FastifyReply>();
  private readonly counted = new WeakSet<FastifyReply>();
  private readonly finished = new WeakSet<FastifyReply>();
  private readonly refused = new WeakMap<FastifyReply, number>();

  constructor(private readonly metrics: RmserveMetrics) {}

  /** Adds the hooks; must be the first onRequest hook so early replies (401, 503) still count. */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      this.latest.set(request.raw.socket, reply);
      // Ahead of fastify's own 'finish' listener, which runs the onResponse hooks.
      reply.raw.prependOnceListener('finish', () => this.finished.add(reply));
      // 'close' without 'finish': the connection ended before the reply was written in full.
      reply.raw.once('close', () => this.count(reply));
    });
    // Also runs when writing the reply failed (fastify calls it on the response's 'error').
    app.addHook('onResponse', async (_request, reply) => this.count(reply));
  }

  /** The latest request seen on the socket (its reply may be finished). */
  current(socket: Socket): FastifyReply | undefined {
    return this.latest.get(socket);
  }

  /** The HTTP layer answered this request itself (408): count that status when its connection closes. */
  refuse(reply: FastifyReply, status: number): void {
    if (!this.refused.has(reply)) this.refused.set(reply, status);
  }

  /** A request refused before it reached fastify. */
  countUnrouted(status: number): void {
    this.metrics.requestsTotal.inc({ route: 'unmatched', status: String(status) });
  }

  private count(reply: FastifyReply): void {
    if (this.counted.has(reply)) return;
    this.counted.add(reply);
    // A reply that never finished reached nobody: the status it would have had (often fastify's
    // 400 for a body cut short) is not what happened.
    const status = this.refused.get(reply) ?? (this.finished.has(reply) ? reply.statusCode : CLIENT_CLOSED_STATUS);
    const labels = { route: reply.request.routeOptions.url ?? 'unmatched', status: String(status) };
    this.metrics.requestsTotal.inc(labels);
    this.metrics.requestDuration.observe(labels, reply.elapsedTime / 1000);
  }
}
