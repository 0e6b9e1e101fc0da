// One error shape for every route: {"error": {"code", "message"}} with the right status.
// Registered on the root instance so it covers routes, body parsing and 404s; clientErrorHandler
// and frameworkErrors give the same shape to what Node's HTTP parser and fastify's router refuse
// before any route runs (malformed request line, headers too large, timeouts, bad URL encoding).
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ModelError } from '../model/errors.js';
import { TransformError } from '../transforms/errors.js';
import type { HttpLimits } from './limits.js';
import type { RequestAccounting } from './request-metrics.js';

const PARSER_ERRORS: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'invalid_json' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'invalid_request' },
};

export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | ModelError | TransformError | Error, request, reply) => {
    if (err instanceof ModelError) {
      if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.status(err.statusCode).send(errorBody(err.code, err.message));
    }
    // Checked in the routes before scoring (e.g. conjunction without lsc): keep the transform's code.
    if (err instanceof TransformError) return reply.status(err.statusCode).send(errorBody(err.code, err.message));
    const fastifyError = err as FastifyError;
    if (fastifyError.validation) {
      return reply.status(400).send(errorBody('invalid_request', err.message));
    }
    const parser = fastifyError.code ? PARSER_ERRORS[fastifyError.code] : undefined;
    if (parser) return reply.status(parser.status).send(errorBody(parser.code, err.message));
    const status = fastifyError.statusCode ?? 500;
    if (status >= 400 && status < 500) return reply.status(status).send(errorBody('bad_request', err.message));
    request.log.error({ err }, 'unhandled error');
    return reply.status(500).send(errorBody('internal', 'internal server error'));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(errorBody('not_found', `no route ${request.method} ${request.url}`)),
  );
}

/**
 * fastify's `frameworkErrors`: what its router refuses before a route is found. fastify runs no
 * hooks for these replies, so they are counted here.
 */
export function frameworkErrorHandler(accounting: RequestAccounting): (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, _request, reply) => {
    let refused: Refusal;
    if (error.code === 'FST_ERR_BAD_URL') refused = { status: 400, code: 'invalid_url', message: `${error.message}: bad percent-encoding` };
    else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') refused = { status: 414, code: 'uri_too_long', message: error.message };
    else refused = { status: 500, code: 'internal', message: error.message };
    accounting.countUnrouted(refused.status, refused.code);
    void reply.status(refused.status).send(errorBody(refused.code, refused.message));
  };
}

// How long a refused connection may keep sending before it is destroyed. Closing at once with
// unread bytes in the receive buffer makes the kernel send RST, which can discard the error reply
// before the client reads it; a short linger lets it arrive, and bounds what a hostile client holds.
const LINGER_MS = 1_000;

interface Refusal {
  status: number;
  code: string;
  message: string;
}

function refusal(err: ConnectionError, limits: HttpLimits, midRequest: boolean): Refusal {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return midRequest
      ? { status: 408, code: 'request_timeout', message: `the request body did not arrive within ${limits.requestTimeoutMs} ms (--request-timeout-ms)` }
      : { status: 408, code: 'request_timeout', message: `the request line and headers did not arrive within ${limits.headersTimeoutMs} ms (--headers-timeout-ms)` };
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return { status: 431, code: 'headers_too_large', message: `the request line and headers exceed ${limits.maxHeaderBytes} bytes (--max-header-bytes)` };
  }
  // Node's parser errors (HPE_*) carry the reason after "Parse Error: ".
  const reason = err.message.replace(/^Parse Error:\s*/, '');
  return { status: 400, code: 'malformed_request', message: `malformed HTTP request: ${reason} (${err.code})` };
}

/**
 * fastify's `clientErrorHandler`: Node's HTTP layer refused the connection's bytes (or timed them
 * out). Answers in the error shape with `Connection: close` unless a reply has already started on
 * the socket, and counts the request in rmserve_requests_total.
 */
export function clientErrorHandler(accounting: RequestAccounting, limits: HttpLimits): (err: ConnectionError, socket: Socket) => void {
  return (err, socket) => {
    // A reset, a client that hung up mid-request (EOF state), or a socket already closed or refused:
    // nobody is left to answer, and a request it carried counts as 499 (or its first refusal) when
    // its reply closes.
    if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || socket.destroyed || socket.writableEnded) {
      socket.destroy();
      return;
    }
    // A connection that never sent a byte carried no request: nothing to answer or count.
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && socket.bytesRead === 0) {
      socket.destroy();
      return;
    }
    const reply = accounting.current(socket);
    const midRequest = reply !== undefined && !reply.raw.writableFinished;
    const refused = refusal(err, limits, midRequest);
    if (midRequest) accounting.refuse(reply, refused.status, refused.code);
    else accounting.countUnrouted(refused.status, refused.code);
    // Bytes of an answer already on the wire: another status line would corrupt it.
    if (!socket.writable || (midRequest && reply.raw.headersSent)) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(errorBody(refused.code, refused.message));
    socket.end(
      `HTTP/1.1 ${refused.status} ${STATUS_CODES[refused.status] ?? ''}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
}
