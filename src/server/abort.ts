// An AbortSignal that fires when the client goes away before its reply is written, so the
// scoring core can drop the request's queued items.
import { setMaxListeners } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';

export function clientAbortSignal(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  // Each queued item listens for the abort; a request may queue up to --max-items of them.
  setMaxListeners(0, controller.signal);
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  request.raw.once('aborted', () => controller.abort());
  return controller.signal;
}
