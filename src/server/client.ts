// What the scoring core learns about a request's client: a signal that fires when the client goes
// away before its reply is written (its queued items are then dropped), and the connection the
// request came on (the batcher counts the open ones to tell one waiting client from several).
import { setMaxListeners } from 'node:events';
import { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ClientConnection } from '../scoring/batcher.js';

export interface RequestClient {
  signal: AbortSignal;
  /** Absent for app.inject() requests, which come on no connection (a mock socket per request). */
  connection?: ClientConnection;
}

export function requestClient(request: FastifyRequest, reply: FastifyReply): RequestClient {
  const controller = new AbortController();
  // Each queued item listens for the abort; a request may queue up to --max-items of them.
  setMaxListeners(0, controller.signal);
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  request.raw.once('aborted', () => controller.abort());
  const { socket } = request.raw;
  return socket instanceof Socket ? { signal: controller.signal, connection: socket } : { signal: controller.signal };
}
