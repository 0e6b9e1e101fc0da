// One error shape for every route: {"error": {"code", "message"}} with the right status.
// Registered on the root instance so it covers routes, body parsing and 404s.
import type { FastifyError, FastifyInstance } from 'fastify';
import { ModelError } from '../model/errors.js';

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
  app.setErrorHandler((err: FastifyError | ModelError | Error, request, reply) => {
    if (err instanceof ModelError) {
      if (err.retryAfterSeconds !== undefined) void reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.status(err.statusCode).send(errorBody(err.code, err.message));
    }
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
