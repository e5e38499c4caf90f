import fc from 'fast-check';
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { runCommand } from '../../src/common/run-command.js';
import {
  ControlRequestError,
  parseSupervisorRequest,
  sendSupervisorRequest,
  SupervisorControlServer,
  SupervisorUnavailableError,
  type RequestHandler,
  type SupervisorReply,
  type SupervisorRequest,
} from '../../src/supervisor/control-socket.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const LIMIT = 64 * 1024;
const QUICK = { timeoutMs: 10_000, killAfterMs: 1_000 } as const;

t.test('parseSupervisorRequest reads every request', async (t) => {
  t.same(parseSupervisorRequest('{"op":"status"}'), { op: 'status' });
  t.same(parseSupervisorRequest('{"op":"switch","role":"primary","operator":true,"wait":true}'), {
    op: 'switch',
    role: 'primary',
    operator: true,
    wait: true,
  });
  t.same(parseSupervisorRequest('{"wait":false,"operator":false,"role":"secondary","op":"switch"}'), {
    op: 'switch',
    role: 'secondary',
    operator: false,
    wait: false,
  });
  t.same(parseSupervisorRequest('{"op":"recover","resource":"test","keep":"peer"}'), { op: 'recover', resource: 'test', keep: 'peer' });
  t.same(parseSupervisorRequest('{"op":"recover","resource":"test","keep":"local"}'), { op: 'recover', resource: 'test', keep: 'local' });
  t.same(parseSupervisorRequest(' {"op":"status"}\r'), { op: 'status' }, 'whitespace and a CR (nc -C) are fine');
});

t.test('parseSupervisorRequest names what is wrong', async (t) => {
  const cases: [string, string][] = [
    ['', 'the request is not JSON: ""'],
    ['status', 'the request is not JSON: "status"'],
    ['{"op":', 'the request is not JSON: "{\\"op\\":"'],
    ['x'.repeat(200), `the request is not JSON: "${'x'.repeat(80)}"`],
    ['null', 'invalid request: Invalid input: expected object, received null'],
    ['"status"', 'invalid request: Invalid input: expected object, received string'],
    ['[{"op":"status"}]', 'invalid request: Invalid input: expected object, received array'],
    ['{}', "invalid request: op: Invalid discriminator value. Expected 'status' | 'switch' | 'recover'"],
    ['{"op":"reboot"}', "invalid request: op: Invalid discriminator value. Expected 'status' | 'switch' | 'recover'"],
    ['{"op":1}', "invalid request: op: Invalid discriminator value. Expected 'status' | 'switch' | 'recover'"],
    [
      '{"op":"switch","role":"master","operator":true,"wait":true}',
      'invalid request: role: Invalid option: expected one of "primary"|"secondary"',
    ],
    [
      '{"op":"switch","role":"primary","operator":"yes","wait":true}',
      'invalid request: operator: Invalid input: expected boolean, received string',
    ],
    ['{"op":"switch","role":"primary","wait":true}', 'invalid request: operator: Invalid input: expected boolean, received undefined'],
    ['{"op":"recover","resource":"","keep":"peer"}', 'invalid request: resource: Too small: expected string to have >=1 characters'],
    ['{"op":"recover","resource":5,"keep":"peer"}', 'invalid request: resource: Invalid input: expected string, received number'],
    ['{"op":"status","extra":1}', 'invalid request: Unrecognized key: "extra"'],
    ['{"op":"status","a":1,"b":2}', 'invalid request: Unrecognized keys: "a", "b"'],
    ['{"op":"recover","resource":"test","keep":"peer","force":true}', 'invalid request: Unrecognized key: "force"'],
  ];
  for (const [line, message] of cases) {
    t.throws(() => parseSupervisorRequest(line), { name: 'ControlRequestError', message }, line.slice(0, 60));
  }
  t.type(catchError(() => parseSupervisorRequest('{}')), ControlRequestError);
});

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return undefined;
}

// Unix socket paths are short (104 bytes on FreeBSD), too short for tap's fixture directories.
function socketDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'control-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Answers every request with what it asked, so a round trip shows the request arrived intact.
const echo: RequestHandler = async (request) => {
  switch (request.op) {
    case 'status':
      return { ok: true, message: 'status', data: { node: 'a', resources: ['test'] } };
    case 'switch':
      return { ok: true, message: `switch ${request.role} operator=${request.operator} wait=${request.wait}` };
    case 'recover':
      return { ok: false, message: `recover ${request.resource}` };
  }
};

interface Served {
  path: string;
  server: SupervisorControlServer;
  requests: SupervisorRequest[];
  messages: () => string[];
}

async function serve(t: Test, options: { handler?: RequestHandler; requestTimeoutMs?: number } = {}): Promise<Served> {
  const path = join(socketDir(t), 'supervisor.sock');
  const { log, messages } = memoryLogger();
  const requests: SupervisorRequest[] = [];
  const handler = options.handler ?? echo;
  const server = await SupervisorControlServer.listen(
    path,
    (request) => {
      requests.push(request);
      return handler(request);
    },
    log,
    options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs },
  );
  t.teardown(() => server.close());
  return { path, server, requests, messages };
}

// What a raw client gets back for `bytes`: the reply text, and how the connection ended.
async function exchange(path: string, bytes: Buffer | string, options: { end?: boolean } = {}): Promise<{ text: string; ended: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = createConnection(path);
    let text = '';
    let ended = 'end';
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(bytes);
      if (options.end === true) socket.end();
    });
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (ended = error.code ?? error.message));
    socket.on('close', () => resolve({ text, ended, ms: performance.now() - started }));
  });
}

// The one reply line a raw client received.
function reply(text: string): SupervisorReply {
  if (!/^[^\n]+\n$/.test(text)) throw new Error(`not one reply line: ${JSON.stringify(text)}`);
  return JSON.parse(text) as SupervisorReply;
}

t.test('status, switch and recover round trips', async (t) => {
  const { path, requests } = await serve(t);
  t.same(await sendSupervisorRequest(path, { op: 'status' }, 5_000), {
    ok: true,
    message: 'status',
    data: { node: 'a', resources: ['test'] },
  });
  t.same(await sendSupervisorRequest(path, { op: 'switch', role: 'secondary', operator: false, wait: true }, 5_000), {
    ok: true,
    message: 'switch secondary operator=false wait=true',
  });
  t.same(await sendSupervisorRequest(path, { op: 'recover', resource: 'test', keep: 'peer' }, 5_000), { ok: false, message: 'recover test' });
  t.same(requests, [
    { op: 'status' },
    { op: 'switch', role: 'secondary', operator: false, wait: true },
    { op: 'recover', resource: 'test', keep: 'peer' },
  ]);
});

t.test('the socket is root-only; a stale file is replaced, a live socket refused', async (t) => {
  const { path } = await serve(t);
  t.equal(statSync(path).mode & 0o777, 0o600);
  const { log } = memoryLogger();
  await t.rejects(SupervisorControlServer.listen(path, echo, log), { message: `another supervisor answers on ${path}` });
  t.same(await sendSupervisorRequest(path, { op: 'status' }, 5_000), { ok: true, message: 'status', data: { node: 'a', resources: ['test'] } });

  const stale = join(socketDir(t), 'stale.sock');
  // Closing a listener removes its file; a process that exits without closing leaves it behind.
  const leaveSocket = "require('net').createServer().listen(process.argv[1], () => process.exit(0))";
  await runCommand([process.execPath, '-e', leaveSocket, stale], QUICK);
  t.equal(statSync(stale).isSocket(), true);
  const server = await SupervisorControlServer.listen(stale, echo, log);
  t.teardown(() => server.close());
  t.equal(statSync(stale).mode & 0o777, 0o600);
  t.same(await sendSupervisorRequest(stale, { op: 'recover', resource: 'r', keep: 'peer' }, 5_000), { ok: false, message: 'recover r' });

  const missing = join(socketDir(t), 'no', 'such', 'dir', 'supervisor.sock');
  await t.rejects(SupervisorControlServer.listen(missing, echo, log), { message: `listening on control socket ${missing}`, cause: { syscall: 'listen' } });
});

t.test('a handler that throws gives ok:false with the reason', async (t) => {
  const { path, messages } = await serve(t, {
    handler: async () => {
      throw new Error('recovering test', { cause: new Error('the engine does not answer') });
    },
  });
  t.same(await sendSupervisorRequest(path, { op: 'recover', resource: 'test', keep: 'peer' }, 5_000), {
    ok: false,
    message: 'recovering test: the engine does not answer',
  });
  t.same(messages(), ['A control request failed.']);
});

t.test('a request that is not one gets ok:false and a warning; the handler never sees it', async (t) => {
  const { path, requests, messages } = await serve(t);
  const answer = await exchange(path, '{"op":"status","verbose":true}\n');
  t.same(reply(answer.text), { ok: false, message: 'invalid request: Unrecognized key: "verbose"' });
  t.equal(answer.ended, 'end');
  t.same(requests, []);
  t.same(messages(), ['Refusing a control request: invalid request: Unrecognized key: "verbose".']);
  t.same(reply((await exchange(path, 'hello\nworld\n')).text), { ok: false, message: 'the request is not JSON: "hello"' }, 'only the first line counts');
});

t.test('a request sent in pieces is read up to its newline; what follows is ignored', async (t) => {
  const { path, requests } = await serve(t);
  const text = await new Promise<string>((resolve) => {
    const socket = createConnection(path);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('close', () => resolve(received));
    socket.on('connect', () => {
      socket.write('{"op":"swi');
      setTimeout(() => socket.write('tch","role":"primary","operator":true,"wait":false}\n{"op":"status"}\n'), 50);
    });
  });
  t.same(reply(text), { ok: true, message: 'switch primary operator=true wait=false' });
  t.same(requests, [{ op: 'switch', role: 'primary', operator: true, wait: false }]);
});

t.test('a client that half-closes after its request needs no newline', async (t) => {
  const { path, messages } = await serve(t);
  const answer = await exchange(path, '{"op":"recover","resource":"test","keep":"peer"}', { end: true });
  t.same(reply(answer.text), { ok: false, message: 'recover test' });
  const silent = await exchange(path, '', { end: true });
  t.same(silent, { text: '', ended: 'end', ms: silent.ms }, 'nothing sent, nothing answered');
  t.same(messages(), []);
});

t.test('a client that sends nothing is dropped after the request timeout', async (t) => {
  const { path, messages } = await serve(t, { requestTimeoutMs: 200 });
  const silent = await exchange(path, '');
  t.equal(silent.text, '');
  t.ok(silent.ms >= 190 && silent.ms < 2_000, `dropped after ${Math.round(silent.ms)} ms`);
  const partial = await exchange(path, '{"op":"sta');
  t.equal(partial.text, '', 'half a request is not answered either');
  t.ok(partial.ms >= 190 && partial.ms < 2_000, `dropped after ${Math.round(partial.ms)} ms`);
  t.same(messages(), ['Dropping a control connection that sent no request.', 'Dropping a control connection that sent no request.']);
  t.same(reply((await exchange(path, '{"op":"status"}\n')).text).ok, true, 'a prompt client is still answered');
});

t.test('a request longer than 64 KiB gets an error reply', async (t) => {
  const { path, requests } = await serve(t);
  const tooLong = `the request is longer than ${LIMIT} bytes`;
  // The largest request that fits: exactly LIMIT bytes before the newline.
  const padding = LIMIT - '{"op":"recover","resource":"","keep":"peer"}'.length;
  const largest = `{"op":"recover","resource":"${'r'.repeat(padding)}","keep":"peer"}`;
  t.equal(Buffer.byteLength(largest), LIMIT);
  t.same(reply((await exchange(path, `${largest}\n`)).text), { ok: false, message: `recover ${'r'.repeat(padding)}` });

  t.same(reply((await exchange(path, 'x'.repeat(LIMIT + 1))).text), { ok: false, message: tooLong }, 'no newline within the limit');
  const oneByteOver = `{"op":"recover","resource":"${'r'.repeat(padding + 1)}","keep":"peer"}\n`;
  t.same(reply((await exchange(path, oneByteOver)).text), { ok: false, message: tooLong }, 'the newline comes one byte late');
  const long = `{"op":"recover","resource":"${'r'.repeat(3 * LIMIT)}","keep":"peer"}\n`;
  t.same(reply((await exchange(path, long)).text), { ok: false, message: tooLong }, 'a newline far past the limit');
  // 40000 two-byte characters: under the limit in characters, over it in bytes.
  const wide = `{"op":"recover","resource":"${'é'.repeat(40_000)}","keep":"peer"}\n`;
  t.same(reply((await exchange(path, wide)).text), { ok: false, message: tooLong }, 'the limit counts bytes');
  t.equal(requests.length, 1, 'only the largest fitting request reached the handler');
});

t.test('close() drops open connections; their clients are told there was no answer', async (t) => {
  let arrived: () => void = () => undefined;
  const waiting = new Promise<void>((resolve) => (arrived = resolve));
  const { path, server } = await serve(t, {
    handler: () => {
      arrived();
      return new Promise<SupervisorReply>(() => undefined);
    },
  });
  const pending = sendSupervisorRequest(path, { op: 'switch', role: 'primary', operator: true, wait: true }, 5_000);
  await waiting;
  await server.close();
  await t.rejects(pending, { message: `the supervisor on ${path} closed the connection without an answer` });
  await t.rejects(sendSupervisorRequest(path, { op: 'status' }, 5_000), SupervisorUnavailableError);
});

t.test('sendSupervisorRequest: nobody listening, a silent server', async (t) => {
  const dir = socketDir(t);
  const missing = join(dir, 'missing.sock');
  const error = await t.rejects(sendSupervisorRequest(missing, { op: 'status' }, 5_000), {
    name: 'SupervisorUnavailableError',
    message: `no supervisor answers on ${missing}`,
    cause: { code: 'ENOENT' },
  });
  t.type(error, SupervisorUnavailableError);

  const stale = join(dir, 'stale.sock');
  const leaveSocket = "require('net').createServer().listen(process.argv[1], () => process.exit(0))";
  await runCommand([process.execPath, '-e', leaveSocket, stale], QUICK);
  await t.rejects(sendSupervisorRequest(stale, { op: 'status' }, 5_000), {
    name: 'SupervisorUnavailableError',
    message: `no supervisor answers on ${stale}`,
    cause: { code: 'ECONNREFUSED' },
  });

  const mute = join(dir, 'mute.sock');
  const squatter = createServer(() => undefined);
  await new Promise<void>((resolve) => squatter.listen(mute, resolve));
  t.teardown(() => {
    squatter.close();
  });
  await t.rejects(sendSupervisorRequest(mute, { op: 'status' }, 300), { message: `the supervisor on ${mute} did not answer within 0.3 s` });
});

t.test('fuzz: random bytes are refused or dropped, never crash the server', async (t) => {
  const { path, messages } = await serve(t);
  const requestLike = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    fc.json().map((text) => Buffer.from(text)),
    fc
      .record(
        { op: fc.constantFrom('status', 'switch', 'recover', 'x'), role: fc.string(), resource: fc.anything(), wait: fc.boolean() },
        { requiredKeys: [] },
      )
      .map((value) => Buffer.from(JSON.stringify(value))),
  );
  // How the client finishes: a newline, a half-close, or going away without waiting for an answer.
  const ending = fc.constantFrom('newline', 'end', 'abandon');
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(requestLike, ending, async (bytes, how) => {
      if (how === 'abandon') {
        await abandon(path, bytes);
        return true;
      }
      const sent = how === 'newline' ? Buffer.concat([bytes, Buffer.from('\n')]) : bytes;
      const answer = await exchange(path, sent, { end: how === 'end' });
      if (sent.length === 0) return answer.text === '' && answer.ended === 'end';
      const newline = sent.indexOf(0x0a);
      const line = (newline < 0 ? sent : sent.subarray(0, newline)).toString('utf8');
      let expected: SupervisorReply;
      try {
        expected = await echo(parseSupervisorRequest(line));
      } catch (error) {
        expected = { ok: false, message: (error as Error).message };
      }
      answered++;
      return /^[^\n]+\n$/.test(answer.text) && isDeepStrictEqual(JSON.parse(answer.text), expected);
    }),
    { numRuns: 2_000 },
  );
  t.ok(answered > 1_000, `${answered} of 2000 were answered`);
  t.notOk(messages().includes('A control request failed.'), 'no request reached the handler and failed');
  t.same(await sendSupervisorRequest(path, { op: 'status' }, 5_000), { ok: true, message: 'status', data: { node: 'a', resources: ['test'] } });
});

// Sends `bytes` and closes the connection at once, without reading an answer.
async function abandon(path: string, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve) => {
    const socket = createConnection(path);
    socket.on('connect', () => socket.write(bytes, () => socket.destroy()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
  });
}
