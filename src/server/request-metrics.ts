// rmserve_requests_total and rmserve_request_duration_seconds count every request exactly once,
// whatever ends it: its reply (that status), the client going away before the reply was written
// (499, nginx's "client closed request", so dashboards built on nginx/ingress metrics read it the
// same way), or the HTTP layer answering for it (408 when the body stopped arriving). Requests
// refused before fastify saw them (bad request line, headers too large or too slow) count under
// route "unmatched", like unknown routes. rmserve_request_failures_total counts the same requests
// that end with a status >= 400 (or 499) once more, by the reply's error code, which the status
// alone does not tell (413 is too_many_items, item_too_long or payload_too_large).
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { RmserveMetrics } from '../metrics.js';

/** Status label of a request whose client went away before its reply was written. */
export const CLIENT_CLOSED_STATUS = 499;
/** Failure reason of those requests: no reply, so no error code. */
export const CLIENT_CLOSED_REASON = 'client_closed';

// A reason is a label value: only code-like strings, so no reply text can mint series.
const REASON = /^[a-z][a-z0-9_]{0,63}$/;
// Error bodies are small; a large one is not worth parsing for its code.
const MAX_PARSED_ERROR_BYTES = 64 * 1024;

/**
 * The error code of an error reply's body: rmserve's {"error": {"code"}}, or the shapes the
 * compatibility routes answer in (TEI's {"error", "error_type"}, OpenAI's {"error": {"type"}}).
 * `http_<status>` when the body says nothing usable.
 */
export function failureReason(payload: unknown, status: number): string {
  const fallback = `http_${status}`;
  const text = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
  if (text === undefined || text.length > MAX_PARSED_ERROR_BYTES) return fallback;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return fallback;
  }
  if (typeof body !== 'object' || body === null) return fallback;
  const { error, error_type: errorType } = body as { error?: unknown; error_type?: unknown };
  const nested = typeof error === 'object' && error !== null ? (error as { code?: unknown; type?: unknown }) : {};
  for (const candidate of [nested.code, nested.type, errorType]) {
    if (typeof candidate !== 'string') continue;
    const reason = candidate.toLowerCase();
    if (REASON.test(reason)) return reason;
  }
  return fallback;
}

export class RequestAccounting {
  // The latest request on each socket, so the HTTP layer's errors can be pinned on it.
  private readonly latest = new WeakMap<Socket, FastifyReply>();
  private readonly counted = new WeakSet<FastifyReply>();
  private readonly finished = new WeakSet<FastifyReply>();
  private readonly refused = new WeakMap<FastifyReply, { status: number; reason: string | undefined }>();
  private readonly reasons = new WeakMap<FastifyReply, string>();

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
    // Root-level, so it runs before any route plugin's own onSend and reads the code the error
    // handler wrote, whatever shape a compatibility route then gives the body.
    app.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode >= 400) this.reasons.set(reply, failureReason(payload, reply.statusCode));
      return payload;
    });
    // Also runs when writing the reply failed (fastify calls it on the response's 'error').
    app.addHook('onResponse', async (_request, reply) => this.count(reply));
  }

  /** The latest request seen on the socket (its reply may be finished). */
  current(socket: Socket): FastifyReply | undefined {
    return this.latest.get(socket);
  }

  /** The HTTP layer answered this request itself (408): count that status when its connection closes. */
  refuse(reply: FastifyReply, status: number, reason?: string): void {
    if (!this.refused.has(reply)) this.refused.set(reply, { status, reason });
  }

  /** A request refused before it reached fastify (`reason`: the error code it was answered with). */
  countUnrouted(status: number, reason?: string): void {
    this.metrics.requestsTotal.inc({ route: 'unmatched', status: String(status) });
    if (status >= 400) this.metrics.requestFailures.inc({ route: 'unmatched', reason: reason ?? `http_${status}` });
  }

  private count(reply: FastifyReply): void {
    if (this.counted.has(reply)) return;
    this.counted.add(reply);
    // A reply that never finished reached nobody: the status it would have had (often fastify's
    // 400 for a body cut short) is not what happened.
    const refused = this.refused.get(reply);
    const finished = this.finished.has(reply);
    const status = refused?.status ?? (finished ? reply.statusCode : CLIENT_CLOSED_STATUS);
    const route = reply.request.routeOptions.url ?? 'unmatched';
    const labels = { route, status: String(status) };
    this.metrics.requestsTotal.inc(labels);
    this.metrics.requestDuration.observe(labels, reply.elapsedTime / 1000);
    if (status < 400) return;
    const reason = refused !== undefined ? refused.reason : finished ? this.reasons.get(reply) : CLIENT_CLOSED_REASON;
    this.metrics.requestFailures.inc({ route, reason: reason ?? `http_${status}` });
  }
}
