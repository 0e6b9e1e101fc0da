// The per-request Node peer of issue 12: the simple server a user would write instead of rmserve,
// kept as the baseline rmserve must beat. node:http; each request's items formatted as HH-RLHF
// transcripts, tokenized with the model folder's tokenizer.json (@huggingface/tokenizers), cut to
// the model's max length from the left, padded right and run through onnxruntime-node as one
// batch of their own. No cross-request batching, no cache, no worker threads, ORT's default
// session options: whatever rmserve adds has to pay for itself against this.
//
//   node --import tsx bench/per-request-peer.ts --model models/harmless/1 [--port 8790]
//
// POST /v1/score {"items":[{"prompt": string | [{role, content}…], "response": string}]}
//   → {"rewards": [number…]} (the first reward column); GET /health → 200 once loaded.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' }, port: { type: 'string', default: '8790' }, host: { type: 'string', default: '127.0.0.1' },
    // ORT lets its pool threads spin between runs unless told not to; rmserve turns it off.
    'ort-spinning': { type: 'string', default: 'on' },
  },
});
if (args.model === undefined) throw new Error('--model <folder> is required');
const dir = args.model;

interface Message { role: string; content: string }
interface Item { prompt: string | Message[]; response: string }
type Json = Record<string, unknown>;

const readJson = (name: string): Json => JSON.parse(readFileSync(join(dir, name), 'utf8')) as Json;
const tokenizerConfig = readJson('tokenizer_config.json');
const tokenizer = new Tokenizer(readJson('tokenizer.json'), tokenizerConfig);
const maxLength = Number(tokenizerConfig.model_max_length ?? 512);
// The pad token's id (the rows are masked, so its value does not change the reward).
const padToken = typeof tokenizerConfig.pad_token === 'string' ? tokenizerConfig.pad_token : undefined;
const padId = padToken === undefined ? 0 : (tokenizer.encode(padToken, { add_special_tokens: false }).ids[0] ?? 0);
const session = await ort.InferenceSession.create(
  join(dir, 'model.onnx'),
  args['ort-spinning'] === 'off' ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {},
);
const outputName = session.outputNames.includes('logits') ? 'logits' : (session.outputNames[0] as string);

/** Both bench models were trained on HH-RLHF transcripts (their chat templates render exactly this). */
function render(item: Item): string {
  const turns = typeof item.prompt === 'string' ? [{ role: 'user', content: item.prompt }] : item.prompt;
  const text = turns.map((m) => (m.role === 'user' ? `\n\nHuman: ${m.content}` : m.role === 'assistant' ? `\n\nAssistant: ${m.content}` : m.content));
  return `${text.join('')}\n\nAssistant: ${item.response}`;
}

async function score(items: Item[]): Promise<number[]> {
  // Left truncation keeps the end of the dialogue, where the scored response is.
  const rows: number[][] = items.map((item) => tokenizer.encode(render(item)).ids.slice(-maxLength));
  const width = Math.max(...rows.map((r) => r.length));
  const ids = new BigInt64Array(rows.length * width).fill(BigInt(padId));
  const mask = new BigInt64Array(rows.length * width);
  rows.forEach((row, b) => {
    row.forEach((id, t) => {
      ids[b * width + t] = BigInt(id);
      mask[b * width + t] = 1n;
    });
  });
  const dims = [rows.length, width];
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, dims), attention_mask: new ort.Tensor('int64', mask, dims) };
  if (session.inputNames.includes('position_ids')) {
    const positions = new BigInt64Array(rows.length * width).fill(1n);
    rows.forEach((row, b) => row.forEach((_, t) => (positions[b * width + t] = BigInt(t))));
    feeds.position_ids = new ort.Tensor('int64', positions, dims);
  }
  const out = (await session.run(feeds))[outputName] as ort.Tensor;
  const data = out.data as Float32Array;
  const k = data.length / rows.length;
  return rows.map((_, b) => data[b * k] as number);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'GET' && req.url === '/health') return send(res, 200, { status: 'ok' });
  if (req.method !== 'POST' || req.url !== '/v1/score') return send(res, 404, { error: 'not found' });
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  let items: Item[];
  try {
    items = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: Item[] }).items;
    if (!Array.isArray(items) || items.length === 0) throw new Error('items must be a non-empty array');
  } catch (err) {
    return send(res, 400, { error: (err as Error).message });
  }
  send(res, 200, { rewards: await score(items) });
}

const server = createServer((req, res) => {
  handle(req, res).catch((err: unknown) => send(res, 500, { error: (err as Error).message }));
});
// Node's 60 s headers / 300 s request timeouts answered 408 to requests queued behind 64 others
// of 32 items on a busy machine: measure the wait instead.
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(Number(args.port), args.host, () => console.error(`[peer] ${dir} on http://${args.host}:${args.port}`));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
