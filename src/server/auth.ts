// Bearer-token checks: the optional API key on the scoring routes (--api-key) and the admin token
// on the model-control routes (--admin-token). Tokens are compared as SHA-256 digests with
// timingSafeEqual, so neither the token's content nor its length leaks through response timing.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorBody } from './errors.js';

/** Routes anyone may call: probes, metrics and the API docs. */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics']);

export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    if (token.length === 0) throw new Error('a bearer token must not be empty');
    this.digest = sha256(token);
  }

  /** Whether the request's `Authorization: Bearer <token>` header carries this token. */
  matches(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    if (typeof header !== 'string') return false;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match === null) return false;
    return timingSafeEqual(sha256(match[1] as string), this.digest);
  }
}

export function unauthorized(reply: FastifyReply, realm: string): FastifyReply {
  return reply
    .status(401)
    .header('www-authenticate', `Bearer realm="${realm}"`)
    .send(errorBody('unauthorized', 'missing or wrong bearer token'));
}

/**
 * Requires `Authorization: Bearer <apiKey>` on every route except /health, /ready, /metrics,
 * /docs and the routes listed in `exempt` (the admin routes, which check their own token).
 */
export function requireApiKey(app: FastifyInstance, apiKey: string, exempt: ReadonlySet<string>): void {
  const token = new BearerToken(apiKey);
  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== undefined && (OPEN_ROUTES.has(route) || exempt.has(route) || route === '/docs' || route.startsWith('/docs/'))) return;
    if (!token.matches(request)) return unauthorized(reply, 'rmserve');
  });
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
