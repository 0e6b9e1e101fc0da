// Server-side timing headers on every score reply, as TEI sends them (milliseconds): where the
// request's time went, so a client can tell queueing from inference without server metrics.
// Inference is the ONNX run as timed on the inference thread; the hand-offs to that thread and
// back (~0.1–0.3 ms each way on a busy 2-core machine) are in the total only.
import type { FastifyReply } from 'fastify';
import type { RequestTiming } from '../scoring/scorer.js';

const ms = (seconds: number): string => (seconds * 1000).toFixed(3);

export function setTimingHeaders(reply: FastifyReply, timing: RequestTiming): void {
  void reply.headers({
    'x-tokenization-time': ms(timing.tokenizationSeconds),
    'x-queue-time': ms(timing.queueSeconds),
    'x-inference-time': ms(timing.inferenceSeconds),
    // From the request's arrival (fastify's clock) to now: parsing and scoring, not sending.
    'x-total-time': reply.elapsedTime.toFixed(3),
  });
}
