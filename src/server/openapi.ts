// Completes the OpenAPI 3.0 document @fastify/swagger builds from the route schemas (served at
// /docs/json), in one place instead of in every route: what the schemas cannot say, or say in a
// form OpenAPI 3.0 refuses.
// - Tuples: TypeBox's Tuple is draft-07 JSON Schema (`items: [A, B]`, `additionalItems: false`),
//   which OpenAPI 3.0's Schema Object does not allow (its `items` is one schema). The document
//   gets `items` (A, or anyOf the distinct item schemas) with minItems = maxItems; request
//   validation still runs on the TypeBox schema, unchanged.
// - operationId: derived from the method and the path (`POST /v1/score` → postV1Score), so client
//   generators get stable names and no route has to remember to set one.
// - security: which routes take the bearer token depends on the server's flags (--api-key,
//   --admin-token), so it is set here from them, and the scheme is declared only when a route uses it.
// - Error statuses: every status a route can answer with, from the app's hooks (401, 503 while
//   draining), body parsing (413, 415), the scorer (404, 413, 429, 500) and the HTTP layer (4XX).
// All of this changes the document only: the routes' schemas (validation, serialization) are not touched.
import { ErrorSchema } from './schemas.js';

type JsonObject = { [key: string]: unknown };

const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

export interface OpenApiAccess {
  /** --api-key is set: every route but the open ones requires it as a bearer token. */
  apiKey: boolean;
  /** Routes (fastify URLs, `/v1/models/:name/load`) that check the admin token themselves. */
  adminRoutes: ReadonlySet<string>;
  /** Routes that need no token (besides /docs). */
  openRoutes: ReadonlySet<string>;
  /** Routes that keep answering while the server drains, instead of 503 shutting_down. */
  drainOpenRoutes: ReadonlySet<string>;
  /** What GET /metrics answers with. */
  metricsContentType: string;
}

/** What decides a route's statuses and security. */
interface RouteFacts {
  method: string;
  path: string;
  open: boolean;
  admin: boolean;
  secured: boolean;
  hasBody: boolean;
  /** Goes through the scorer: every POST route that is not model control. */
  scoring: boolean;
  drainOpen: boolean;
}

interface ErrorDoc {
  status: string;
  applies: (route: RouteFacts) => boolean;
  description: (route: RouteFacts) => string;
  headers?: JsonObject;
}

const retryAfter = { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 0 } } };

const ERRORS: ErrorDoc[] = [
  {
    status: '400',
    applies: () => true,
    description: (r) =>
      [
        r.hasBody ? 'invalid_json (the body is not JSON), invalid_request (the body or query string fails the schema)' : undefined,
        r.scoring ? 'invalid_item (an item the model cannot take, e.g. one that tokenizes to nothing)' : undefined,
        r.admin ? 'invalid_request, invalid_path, invalid_version' : undefined,
        'missing_host (an HTTP/1.1 request without Host), malformed_request (refused by the HTTP parser)',
      ]
        .filter((part) => part !== undefined)
        .join('; '),
  },
  {
    status: '401',
    applies: (r) => r.secured,
    description: (r) => `unauthorized: missing or wrong bearer token (${r.admin ? '--admin-token' : '--api-key'})`,
    headers: { 'WWW-Authenticate': { description: 'Bearer realm="…"', schema: { type: 'string' } } },
  },
  { status: '403', applies: (r) => r.admin && r.path.endsWith('/load'), description: () => 'path_outside_models_root: the path is outside the models root' },
  {
    status: '404',
    applies: (r) => r.scoring || r.admin || r.path.includes('{'),
    description: (r) => (r.admin ? 'model_not_found or version_not_found' : 'model_not_found: no model of that name is loaded'),
  },
  {
    status: '409',
    applies: (r) => r.admin && r.path.endsWith('/rollback'),
    description: () => 'no_previous_version: nothing to roll back to',
  },
  {
    status: '413',
    applies: (r) => r.hasBody,
    description: (r) =>
      r.scoring
        ? 'payload_too_large (over --body-limit), too_many_items (over --max-items), item_too_long (over --max-item-chars)'
        : 'payload_too_large (over --body-limit)',
  },
  { status: '415', applies: (r) => r.hasBody, description: () => 'unsupported_media_type: the body is not application/json' },
  {
    status: '422',
    applies: (r) => r.admin && !r.path.endsWith('/unload'),
    description: () => 'model_load_failed: the version was refused (files, graph or padding self-check)',
  },
  {
    status: '429',
    applies: (r) => r.scoring,
    description: () => 'overloaded: the scoring queue is full (--max-queue-items); retry after Retry-After seconds',
    headers: retryAfter,
  },
  {
    status: '500',
    applies: () => true,
    description: (r) => (r.scoring ? 'internal, inference_failed (the model failed on an input), non_finite_reward' : 'internal: an unexpected error'),
  },
  {
    status: '503',
    applies: (r) => !r.drainOpen || r.path === '/ready',
    description: (r) =>
      r.path === '/ready'
        ? 'not_ready: a configured model has no serving version yet, or the server is draining'
        : r.scoring
          ? 'shutting_down (the server is draining; retry on another replica) or unavailable (the version is being unloaded; Retry-After)'
          : 'shutting_down: the server is draining; retry on another replica',
    headers: retryAfter,
  },
  {
    status: '4XX',
    applies: () => true,
    description: () =>
      'Refused at the HTTP layer before the route ran, in the same error shape: 408 request_timeout, 414 uri_too_long, 431 headers_too_large',
  },
];

/** The 200 replies of the probes, whose routes have no response schema (a text reply for /metrics). */
function probeReply(path: string, metricsContentType: string): JsonObject | undefined {
  const json = (description: string, schema: JsonObject): JsonObject => ({ description, content: { 'application/json': { schema } } });
  if (path === '/health') return json('The process is up', { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } }, required: ['status'] });
  if (path === '/ready') {
    return json('Every configured model has a serving version', {
      type: 'object',
      properties: { status: { type: 'string', enum: ['ready'] }, models: { type: 'array', items: { type: 'string' } } },
      required: ['status', 'models'],
    });
  }
  if (path === '/metrics') {
    return { description: 'Prometheus text exposition format', content: { [metricsContentType.split(';')[0] as string]: { schema: { type: 'string' } } } };
  }
  return undefined;
}

/** `/v1/models/:name` → `/v1/models/{name}` (the document's form of a route's URL). */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** `post` + `/v1/models/{name}/load` → `postV1ModelsNameLoad`. */
export function operationIdOf(method: string, path: string): string {
  const words = path.split(/[^A-Za-z0-9]+/).filter((word) => word.length > 0);
  return method.toLowerCase() + words.map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join('');
}

/** Rewrites every draft-07 tuple in `node` (and below it) as an OpenAPI 3.0 array schema. */
function rewriteTuples(node: unknown): void {
  if (Array.isArray(node)) {
    for (const child of node) rewriteTuples(child);
    return;
  }
  if (!isObject(node)) return;
  for (const child of Object.values(node)) rewriteTuples(child);
  const positional = Array.isArray(node.items) ? node.items : Array.isArray(node.prefixItems) ? node.prefixItems : undefined;
  if (positional === undefined) return;
  // Items past the positional ones: draft-07's additionalItems (TypeBox: false), 2020-12's items.
  const rest = Array.isArray(node.items) ? node.additionalItems : node.items;
  const closed = rest === false;
  const schemas = isObject(rest) ? [...positional, rest] : positional;
  const distinct = [...new Map(schemas.map((schema) => [JSON.stringify(schema), schema])).values()];
  delete node.prefixItems;
  delete node.additionalItems;
  if (rest === true || rest === undefined) {
    // Anything may follow the positional items: the array's items are unconstrained.
    delete node.items;
  } else {
    node.items = distinct.length === 1 ? distinct[0] : { anyOf: distinct };
  }
  // Closed, as TypeBox's are: exactly the positional items, which min/maxItems now say.
  node.minItems ??= positional.length;
  if (closed) node.maxItems ??= positional.length;
}

/**
 * The document @fastify/swagger built, completed (see the top of this file). Works on a copy: the
 * document shares schema objects with the routes, whose TypeBox schemas are shared by every app
 * built in the process.
 */
export function completeOpenApi<T extends object>(document: T, access: OpenApiAccess): T {
  const copy = JSON.parse(JSON.stringify(document)) as T;
  const doc = copy as JsonObject;
  rewriteTuples(doc.paths);
  rewriteTuples(doc.components);
  const components = isObject(doc.components) ? doc.components : (doc.components = {});
  const schemas = isObject(components.schemas) ? components.schemas : (components.schemas = {});
  schemas.Error ??= JSON.parse(JSON.stringify(ErrorSchema)) as JsonObject;
  const errorContent = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } };

  const adminPaths = new Set([...access.adminRoutes].map(openApiPath));
  const openPaths = new Set([...access.openRoutes].map(openApiPath));
  const drainOpenPaths = new Set([...access.drainOpenRoutes].map(openApiPath));
  const operationIds = new Set<string>();
  let bearerUsed = false;
  const paths = isObject(doc.paths) ? doc.paths : {};
  for (const [path, item] of Object.entries(paths)) {
    if (!isObject(item)) continue;
    for (const method of HTTP_METHODS) {
      const operation = item[method];
      if (!isObject(operation)) continue;
      const open = openPaths.has(path) || path === '/docs' || path.startsWith('/docs/');
      const admin = adminPaths.has(path);
      const facts: RouteFacts = {
        method,
        path,
        open,
        admin,
        secured: admin || (access.apiKey && !open),
        hasBody: method !== 'get' && method !== 'head' && method !== 'delete' && method !== 'options',
        scoring: method === 'post' && !admin,
        drainOpen: drainOpenPaths.has(path),
      };

      if (typeof operation.operationId !== 'string') {
        let id = operationIdOf(method, path);
        for (let n = 2; operationIds.has(id); n++) id = `${operationIdOf(method, path)}${n}`;
        operation.operationId = id;
      }
      operationIds.add(operation.operationId as string);

      // An empty list says "no token" explicitly (a route without `security` would inherit a root one).
      operation.security ??= facts.secured ? [{ bearerAuth: [] }] : [];
      if (JSON.stringify(operation.security).includes('"bearerAuth"')) bearerUsed = true;

      const responses = isObject(operation.responses) ? operation.responses : (operation.responses = {});
      const ok = responses['200'];
      const probe = probeReply(path, access.metricsContentType);
      if (probe !== undefined && (!isObject(ok) || ok.content === undefined)) responses['200'] = probe;
      for (const error of ERRORS) {
        if (!error.applies(facts) || responses[error.status] !== undefined) continue;
        // A route that answers errors in its own shape (a peer's, on a compatibility route) says
        // so in its 4XX/5XX response: the specific statuses of that class share it.
        const range = responses[`${error.status.charAt(0)}XX`];
        const content = isObject(range) && range.content !== undefined ? range.content : errorContent;
        responses[error.status] = {
          description: error.description(facts),
          ...(error.headers === undefined ? {} : { headers: error.headers }),
          content,
        };
      }
    }
  }

  const schemes = isObject(components.securitySchemes) ? components.securitySchemes : {};
  if (bearerUsed) {
    schemes.bearerAuth = { type: 'http', scheme: 'bearer', description: '--api-key on the scoring routes, --admin-token on model control' };
    components.securitySchemes = schemes;
  } else {
    // An unused scheme is a lint error, and would tell clients a token exists when none does.
    delete schemes.bearerAuth;
    if (Object.keys(schemes).length === 0) delete components.securitySchemes;
  }
  // Relative to wherever the document was fetched from: the server cannot know its public URL.
  doc.servers ??= [{ url: '/', description: 'this rmserve' }];
  return copy;
}
