// Drop-in routes of other servers, so clients written for them work unchanged (docs/integrations.md
// has a recipe per client). Each reply comes from one model (peer-common.ts oneModel): the peers
// serve one model per server, and a softmax across two models' heads would mean nothing.
//
//   TEI (tei.ts)      POST /predict, POST /rerank {query, texts}; TEI's error body and statuses
//   vLLM (vllm.ts)    POST /classify {input|messages}, /v1/classify, /pooling, /score,
//                     POST /rerank {query, documents}, /v1/rerank, /v2/rerank
//   SGLang (vllm.ts)  POST /classify {text} (native reward route), POST /v1/embeddings
//
// Where two peers use one path, the body decides (each peer's own field is unique to it):
// /classify with `text` is SGLang's native route, with `input`/`messages` vLLM's (SGLang's
// /v1/classify is vLLM's shape); /rerank with `texts` is TEI's, with `documents` vLLM's.
// vLLM's /v1/score stays rmserve's own scoring API: vLLM clients use /score, which vLLM serves too.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Scorer } from '../../scoring/scorer.js';
import { ErrorSchema } from '../schemas.js';
import { PredictBody, PredictReply, TeiErrorSchema, teiErrorBody, teiPredict, teiRerank, TeiRerankBody, TeiRerankReply } from './tei.js';
import {
  ClassifyBody,
  ClassifyReply,
  embeddings,
  EmbeddingsBody,
  EmbeddingsReply,
  PoolingBody,
  PoolingReply,
  ScoreBody,
  ScoreReply,
  sglangClassify,
  SglangClassifyReply,
  vllmClassify,
  VllmClassifyBody,
  vllmPooling,
  vllmRerank,
  VllmRerankBody,
  VllmRerankReply,
  vllmScore,
  type PeerContext,
} from './vllm.js';

export interface CompatRouteOptions {
  scorer: Scorer;
  /** Most inputs in one request (413 beyond), as /v1/score. */
  maxItems: number;
}

/** Errors in rmserve's shape (vLLM and SGLang clients read `error.message`, as OpenAI's SDK does). */
const errors = { '4xx': ErrorSchema, '5xx': ErrorSchema };
/**
 * TEI-form requests are answered in TEI's error body. The schema also takes rmserve's, which is
 * what the app's error handler serializes and the TEI onSend hook then converts (after the root
 * onSend hook has read rmserve's error code for the failure metrics); clients only see TEI's.
 */
const TeiOrRmserveError = Type.Union([TeiErrorSchema, ErrorSchema], {
  description: "TEI's {error, error_type} (rmserve's {error: {code, message}} only on the vLLM form of /rerank)",
});
const teiErrors = { '4xx': TeiOrRmserveError, '5xx': TeiOrRmserveError };

const hasField = (body: unknown, field: string): boolean => typeof body === 'object' && body !== null && field in body;

export const compatRoutes: FastifyPluginAsync<CompatRouteOptions> = async (app, { scorer, maxItems }) => {
  const ctx: PeerContext = { scorer, maxItems };

  // --- TEI. Its requests are answered in TEI's error shape, whatever refused them (the schema,
  // the scorer, the API key check, the drain), so this plugin scope gets its own onSend hook.
  await app.register(async (tei) => {
    const teiRequests = new WeakSet<FastifyRequest>();
    const isTei = (request: FastifyRequest): boolean => request.routeOptions.url === '/predict' || teiRequests.has(request);
    tei.addHook('onSend', teiErrorBody(isTei));
    // The body decides whose /rerank this is; known before validation, so TEI's errors cover its schema's too.
    tei.addHook('preValidation', async (request) => {
      if (request.routeOptions.url === '/rerank' && hasField(request.body, 'texts')) teiRequests.add(request);
    });

    tei.post('/predict', {
      schema: {
        summary: 'text-embeddings-inference: sequence classification of a text, a (prompt, response) pair or a batch',
        tags: ['TEI'],
        body: PredictBody,
        response: { 200: PredictReply, ...teiErrors },
      },
    }, (request, reply) => teiPredict(scorer, maxItems, request, reply));

    tei.post('/rerank', {
      schema: {
        summary: 'Rerank: TEI ({query, texts}) or vLLM/Jina ({query, documents}) form, by body',
        tags: ['TEI', 'vLLM'],
        body: Type.Union([TeiRerankBody, VllmRerankBody]),
        response: { 200: Type.Union([TeiRerankReply, VllmRerankReply]), ...teiErrors },
      },
    }, (request, reply) => (teiRequests.has(request) ? teiRerank(scorer, maxItems, request, reply) : vllmRerank(ctx, request, reply)));
  });

  // --- vLLM and SGLang
  app.post('/classify', {
    schema: {
      summary: "vLLM's classification API ({input} or {messages}), or SGLang's native reward route ({text})",
      tags: ['vLLM', 'SGLang'],
      body: ClassifyBody,
      response: { 200: Type.Union([ClassifyReply, SglangClassifyReply]), ...errors },
    },
  }, (request, reply) => (hasField(request.body, 'text') ? sglangClassify(ctx, request, reply) : vllmClassify(ctx, request, reply)));

  app.post('/v1/classify', {
    schema: { summary: "vLLM's classification API (SGLang's /v1/classify has its shape)", tags: ['vLLM', 'SGLang'], body: VllmClassifyBody, response: { 200: ClassifyReply, ...errors } },
  }, (request, reply) => vllmClassify(ctx, request, reply));

  app.post('/pooling', {
    schema: { summary: "vLLM's pooling API: each input's reward vector (task reward)", tags: ['vLLM'], body: PoolingBody, response: { 200: PoolingReply, ...errors } },
  }, (request, reply) => vllmPooling(ctx, request, reply));

  app.post('/score', {
    schema: { summary: "vLLM's score API: (text_1, text_2) pairs scored as (prompt, response)", tags: ['vLLM'], body: ScoreBody, response: { 200: ScoreReply, ...errors } },
  }, (request, reply) => vllmScore(ctx, request, reply));

  for (const url of ['/v1/rerank', '/v2/rerank']) {
    app.post(url, {
      schema: { summary: "vLLM's rerank API (Jina/Cohere form): documents ranked as responses to the query", tags: ['vLLM'], body: VllmRerankBody, response: { 200: VllmRerankReply, ...errors } },
    }, (request, reply) => vllmRerank(ctx, request, reply));
  }

  app.post('/v1/embeddings', {
    schema: {
      summary: "OpenAI's embeddings API as SGLang (and vLLM) answer it for a reward model: each input's raw reward vector",
      tags: ['SGLang', 'vLLM'],
      body: EmbeddingsBody,
      response: { 200: EmbeddingsReply, ...errors },
    },
  }, (request, reply) => embeddings(ctx, request, reply));
};
