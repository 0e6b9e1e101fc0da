// An AbortSignal that fires when the client goes away before its reply is written, so the
// scoring core can drop the request's queued items.
import type { FastifyReply, FastifyRequest } from 'fastify';

export function clientAbortSignal(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  request.raw.once('aborted', () => controller.abort());
  return controller.signal;
}
