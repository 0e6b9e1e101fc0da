// Errors the scoring core raises, each with the HTTP status and code the server answers with.
// The core knows nothing about HTTP beyond this mapping table.
import { ModelError } from '../model/errors.js';

export { invalidItem, modelLoadFailed, ModelError } from '../model/errors.js';

export class ScoringError extends ModelError {
  constructor(code: string, statusCode: number, message: string, retryAfterSeconds?: number) {
    super(code, statusCode, message, retryAfterSeconds);
    this.name = 'ScoringError';
  }
}

export const unknownModel = (name: string): ScoringError =>
  new ScoringError('model_not_found', 404, `model "${name}" is not loaded`);
export const queueFull = (retryAfterSeconds: number): ScoringError =>
  new ScoringError('overloaded', 429, 'the scoring queue is full; retry later', retryAfterSeconds);
export const cancelled = (message: string): ScoringError => new ScoringError('cancelled', 499, message);
export const unavailable = (message: string): ScoringError => new ScoringError('unavailable', 503, message, 1);
