// The supervisor's control socket: one JSON request line, one JSON reply line, over a root-only unix socket.
// `carp-hast status`, `carp-hast switch`, `carp-hast-switch` and `carp-hast recover` are its clients.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { z } from 'zod';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { listenPrivate } from '../common/unix-socket.js';

// A request line is a few hundred bytes; anything longer is not one of ours.
const MAX_REQUEST_BYTES = 64 * 1024;
// A client that connects and says nothing is dropped after this long.
const REQUEST_TIMEOUT_MS = 10_000;

const requestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('status') }),
  z.strictObject({
    op: z.literal('switch'),
    role: z.enum(['primary', 'secondary']),
    operator: z.boolean(),
    wait: z.boolean(),
  }),
  z.strictObject({ op: z.literal('recover'), resource: z.string().min(1), keep: z.enum(['peer', 'local']) }),
]);

// What a client asks of the supervisor.
export type SupervisorRequest = z.infer<typeof requestSchema>;

// Every reply: ok with a message and data, or not ok with the reason.
export interface SupervisorReply {
  ok: boolean;
  message: string;
  data?: unknown;
}

// A request line that is not JSON or not one of the requests above.
export class ControlRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlRequestError';
  }
}

// Reads one request line into a typed request.
export function parseSupervisorRequest(line: string): SupervisorRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ControlRequestError(`the request is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const parsed = requestSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw new ControlRequestError(`invalid request: ${where}${issue?.message ?? 'unknown shape'}`);
  }
  return parsed.data;
}

// The supervisor's answer to each request.
export type RequestHandler = (request: SupervisorRequest) => Promise<SupervisorReply>;

// The listening control socket.
export class SupervisorControlServer {
  private readonly connections = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly handler: RequestHandler,
    private readonly log: Logger,
    private readonly requestTimeoutMs: number,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  // Listens on `path` with mode 0600 (the supervisor runs as root; so must its clients). A client that has
  // not sent its request after `requestTimeoutMs` (default 10 s) is dropped.
  static async listen(
    path: string,
    handler: RequestHandler,
    log: Logger,
    options: { requestTimeoutMs?: number } = {},
  ): Promise<SupervisorControlServer> {
    const server = createServer({ allowHalfOpen: true });
    const control = new SupervisorControlServer(server, handler, log, options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);
    await listenPrivate(server, path, 'control socket', () => new Error(`another supervisor answers on ${path}`));
    server.on('error', (error) => log.error(`Control socket ${path}: ${describeError(error)}.`));
    return control;
  }

  // Stops listening and drops open connections (a waiting switch request gets no answer; its client says so).
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    let buffered = Buffer.alloc(0);
    let received = false;
    const timer = setTimeout(() => {
      this.log.warn('Dropping a control connection that sent no request.');
      socket.destroy();
    }, this.requestTimeoutMs);
    const receive = (line: string | undefined) => {
      received = true;
      clearTimeout(timer);
      void this.answer(socket, line);
    };
    socket.on('close', () => {
      clearTimeout(timer);
      this.connections.delete(socket);
    });
    socket.on('error', (error) => {
      this.log.debug(`Control connection: ${describeError(error)}.`);
      socket.destroy();
    });
    // Bytes, not text, so the limit counts what was sent and a character split between chunks stays whole.
    socket.on('data', (chunk: Buffer) => {
      if (received) return;
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(0x0a);
      if ((newline < 0 ? buffered.length : newline) > MAX_REQUEST_BYTES) receive(undefined);
      else if (newline >= 0) receive(buffered.subarray(0, newline).toString('utf8'));
    });
    // A client that half-closes has sent all it will (`printf '{"op":"status"}' | nc -U`): its request needs
    // no newline. One that connects and leaves without a word (a liveness probe) gets no answer.
    socket.on('end', () => {
      if (received) return;
      if (buffered.length === 0) socket.end();
      else receive(buffered.toString('utf8'));
    });
  }

  private async answer(socket: Socket, line: string | undefined): Promise<void> {
    let reply: SupervisorReply;
    try {
      if (line === undefined) throw new ControlRequestError(`the request is longer than ${MAX_REQUEST_BYTES} bytes`);
      reply = await this.handler(parseSupervisorRequest(line));
    } catch (error) {
      if (error instanceof ControlRequestError) this.log.warn(`Refusing a control request: ${error.message}.`);
      else this.log.error({ err: describeError(error) }, 'A control request failed.');
      reply = { ok: false, message: describeError(error) };
    }
    if (!socket.destroyed) socket.end(`${JSON.stringify(reply)}\n`);
  }
}

// The supervisor does not answer on its socket (not running, or not reachable by this user).
export class SupervisorUnavailableError extends Error {
  constructor(path: string, options?: ErrorOptions) {
    super(`no supervisor answers on ${path}`, options);
    this.name = 'SupervisorUnavailableError';
  }
}

// Sends one request and resolves to the reply; `timeoutMs` bounds the whole exchange.
export async function sendSupervisorRequest(path: string, request: SupervisorRequest, timeoutMs: number): Promise<SupervisorReply> {
  return new Promise<SupervisorReply>((resolve, reject) => {
    const socket = createConnection(path);
    let text = '';
    let connected = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the supervisor on ${path} did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(connected ? new Error(`talking to the supervisor on ${path}`, { cause: error }) : new SupervisorUnavailableError(path, { cause: error }));
    });
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text) as SupervisorReply);
      } catch {
        reject(new Error(`the supervisor on ${path} closed the connection without an answer`));
      }
    });
  });
}
