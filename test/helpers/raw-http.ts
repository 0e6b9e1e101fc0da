// Raw HTTP/1.1 over net.Socket, for tests about what happens below fastify: partial requests,
// malformed bytes, connection limits and keep-alive sockets.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A socket that records what it receives and when it closes. */
export class RawClient {
  readonly socket: Socket;
  received = '';
  closedAt: number | undefined;
  error: string | undefined;
  readonly openedAt = performance.now();
  private readonly closed: Promise<void>;
  private readonly connected: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.connected = new Promise((resolve) => this.socket.once('connect', () => resolve()));
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk: string) => (this.received += chunk));
    this.socket.on('error', (err: NodeJS.ErrnoException) => (this.error = err.code ?? err.message));
    this.closed = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.closedAt = performance.now();
        resolve();
      }),
    );
  }

  async send(bytes: string): Promise<void> {
    await this.connected;
    await new Promise<void>((resolve, reject) => this.socket.write(bytes, 'latin1', (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves once the server closed the socket, or rejects after `ms`. */
  async waitClosed(ms: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`socket still open after ${ms} ms; received ${JSON.stringify(this.received.slice(0, 200))}`)), ms);
    });
    try {
      await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return (this.closedAt as number) - this.openedAt;
  }

  /** Waits until `count` complete responses have arrived (Content-Length framed) and returns them. */
  async responses(count: number, ms = 5_000): Promise<RawResponse[]> {
    const deadline = performance.now() + ms;
    for (;;) {
      const parsed = parseResponses(this.received);
      if (parsed.length >= count) return parsed;
      if (this.closedAt !== undefined || performance.now() > deadline) {
        throw new Error(`expected ${count} responses, got ${parsed.length} (closed: ${this.closedAt !== undefined}, error: ${this.error}); received ${JSON.stringify(this.received.slice(0, 300))}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return out;
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    const bodyBytes = Buffer.from(rest.slice(end + 4), 'latin1');
    if (bodyBytes.length < length) return out;
    out.push({ status, headers, body: bodyBytes.subarray(0, length).toString('utf8') });
    rest = bodyBytes.subarray(length).toString('latin1');
  }
}

/** Asserts the project's error shape: exactly {"error": {"code", "message"}}, JSON content type. */
export function assertErrorShape(response: RawResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(response.status, status, JSON.stringify(response));
  assert.match(response.headers['content-type'] ?? '', /^application\/json/, JSON.stringify(response));
  const body = JSON.parse(response.body) as { error: { code: string; message: string } };
  assert.deepEqual(Object.keys(body), ['error'], response.body);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message'], response.body);
  assert.equal(body.error.code, code, response.body);
  assert.ok(body.error.message.length > 0, response.body);
  if (message) assert.match(body.error.message, message, response.body);
}

export function scoreRequest(body: string, extraHeaders = ''): string {
  return `POST /v1/score HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extraHeaders}\r\n${body}`;
}
