// Errors raised while reading a model folder or preparing an item for it. Each carries the HTTP
// status and code a server answers with; src/scoring's ScoringError extends it for queueing and
// routing failures, so one check (`instanceof ModelError`) covers both.
export class ModelError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ModelError';
  }
}

export const invalidItem = (message: string): ModelError => new ModelError('invalid_item', 400, message);
export const modelLoadFailed = (message: string): ModelError => new ModelError('model_load_failed', 422, message);
