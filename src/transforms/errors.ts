// The one error type the transforms throw. Every cause is a bad request (the client sent a
// non-finite number, an unknown name, or a missing parameter), so `statusCode` is 400 and
// fastify's default error handler maps it without a lookup table; `code` names the cause for
// the `{"error": {"code", "message"}}` reply.
export type TransformErrorCode =
  | 'non_finite_input'
  | 'non_finite_result'
  | 'unknown_transform'
  | 'unknown_aggregate'
  | 'unknown_objective'
  | 'missing_parameter'
  | 'invalid_parameter';

export class TransformError extends Error {
  readonly statusCode = 400;
  constructor(
    readonly code: TransformErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TransformError';
  }
}

// `what` names the value in the message ("raw reward of harmless") so a client can find it.
export function assertFinite(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new TransformError('non_finite_input', `${what} must be a finite number, got ${String(value)}`);
  }
  return value;
}
