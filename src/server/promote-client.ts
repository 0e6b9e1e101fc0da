// Client side of POST /v1/models/:name/load, for `rmserve train … --promote URL` and scripts:
// asks a running server to load, validate and warm a version and switch to it. Resolves once the
// version serves; rejects with a PromoteError carrying the server's status and error code when
// the server refused it (the old version then keeps serving).
import type { ModelStatus } from '../scoring/registry.js';

export type PromoteTarget = { version: string; path?: never; pin?: boolean } | { path: string; version?: never; pin?: boolean };

export class PromoteError extends Error {
  constructor(
    /** HTTP status; 0 when the server could not be reached or did not answer in time. */
    readonly status: number,
    /** The server's error code (unauthorized, model_not_found, model_load_failed, ...), or the network error's. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PromoteError';
  }
}

export interface PromoteOptions {
  /** Longest wait for the load (big models take a while to validate and warm). Default 10 minutes. */
  timeoutMs?: number;
}

/**
 * Promotes `target` of model `name` on the server at `url` (e.g. http://127.0.0.1:8000).
 * A string target is a path when it contains a slash (a folder inside the server's models root,
 * relative to it or absolute), else a version folder name under <root>/<name>/.
 */
export async function promoteVersion(
  url: string,
  name: string,
  target: string | PromoteTarget,
  token: string,
  options: PromoteOptions = {},
): Promise<ModelStatus> {
  const body: PromoteTarget = typeof target !== 'string' ? target : /[/\\]/.test(target) ? { path: target } : { version: target };
  const endpoint = new URL(`v1/models/${encodeURIComponent(name)}/load`, url.endsWith('/') ? url : `${url}/`);
  let res: Response;
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 600_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    const code = cause?.code ?? (err as Error).name;
    throw new PromoteError(0, code, `cannot reach ${endpoint.origin}: ${(err as Error).message}${cause?.code ? ` (${cause.code})` : ''}`);
  }
  const text = await res.text();
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    reply = undefined;
  }
  if (!res.ok) {
    const error = (reply as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new PromoteError(res.status, error?.code ?? 'http_error', `promoting ${name} failed (${res.status}): ${error?.message ?? text.slice(0, 200)}`);
  }
  return reply as ModelStatus;
}
