// Errors the scoring core raises, each with the HTTP status and code the server answers with.
// The core knows nothing about HTTP beyond this mapping table.
export class ScoringError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ScoringError';
  }
}

export const invalidItem = (message: string): ScoringError => new ScoringError('invalid_item', 400, message);
export const unknownModel = (name: string): ScoringError =>
  new ScoringError('model_not_found', 404, `model "${name}" is not loaded`);
export const queueFull = (retryAfterSeconds: number): ScoringError =>
  new ScoringError('overloaded', 429, 'the scoring queue is full; retry later', retryAfterSeconds);
export const cancelled = (message: string): ScoringError => new ScoringError('cancelled', 499, message);
export const modelLoadFailed = (message: string): ScoringError => new ScoringError('model_load_failed', 422, message);
export const unavailable = (message: string): ScoringError => new ScoringError('unavailable', 503, message, 1);
