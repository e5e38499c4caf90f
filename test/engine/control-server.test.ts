import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ControlServer, ControlSocketInUseError } from '../../src/engine/control-server.js';
import { decodeControlReply, encodeControlReply } from '../../src/engine/control-protocol.js';
import { encodePacket, PacketDecoder } from '../../src/engine/hast-proto.js';
import { sendControlRequest } from '../../src/engine/hastctl-client.js';
import { Nv } from '../../src/engine/nv.js';
import { configuredStatus, FakeTarget, socketDir } from '../fixtures/control-target.js';
import { memoryLogger } from '../fixtures/memory-log.js';

async function start(t: Test, names = ['one', 'two'], requestTimeoutMs?: number) {
  const dir = socketDir(t);
  const path = join(dir, 'hastctl.sock');
  const target = new FakeTarget(names);
  const memory = memoryLogger();
  const server = await ControlServer.listen(path, target, memory.log, { requestTimeoutMs });
  t.teardown(() => server.close());
  return { path, address: `uds://${path}`, target, server, ...memory };
}

// Sends raw bytes (then half-closes unless told not to) and collects everything until the server closes.
function exchange(path: string, bytes: Buffer, end = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('connect', () => (end ? socket.end(bytes) : socket.write(bytes)));
  });
}

function frame(nv: Nv): Buffer {
  return Buffer.concat(encodePacket(nv));
}

// The one packet a reply must be; anything else fails the test.
function onePacket(bytes: Buffer): Nv {
  const packets = new PacketDecoder().push(bytes);
  if (packets.length !== 1) throw new Error(`expected one packet, got ${packets.length} in ${bytes.length} bytes`);
  return packets[0]!.nv;
}

t.test('STATUS: named, all and unknown resources', async (t) => {
  const { address, path } = await start(t);
  t.same(await sendControlRequest(address, { cmd: 'status', resources: ['two'] }), {
    cmd: 'status',
    error: 0,
    resources: [configuredStatus('two', 'init')],
  });
  const all = await sendControlRequest(address, { cmd: 'status', resources: ['all', 'ignored'] });
  t.same(
    all.resources.map((r) => r.name),
    ['one', 'two'],
    'all means every resource in configuration order; later names are ignored',
  );
  t.same((await sendControlRequest(address, { cmd: 'status', resources: ['nope', 'one'] })).resources, [
    { name: 'nope', error: 1 },
    configuredStatus('one', 'init'),
  ]);
  const raw = await exchange(path, frame(new Nv().addUint8('cmd', 2).addString('resource0', 'nope')));
  t.same(raw, frame(new Nv().addString('resource0', 'nope').addInt16('error0', 1)), 'unknown: resource0 and error0 only');
});

t.test('SETROLE: previous roles back, all applies to every resource, unknown gets error 1', async (t) => {
  const { address, path, target, messages } = await start(t, ['one', 'two', 'three']);
  t.same(await sendControlRequest(address, { cmd: 'setrole', role: 'primary', resources: ['two', 'nope'] }), {
    cmd: 'setrole',
    error: 0,
    resources: [
      { name: 'two', previousRole: 'init' },
      { name: 'nope', error: 1 },
    ],
  });
  t.same(await sendControlRequest(address, { cmd: 'setrole', role: 'secondary', resources: ['all'] }), {
    cmd: 'setrole',
    error: 0,
    resources: [
      { name: 'one', previousRole: 'init' },
      { name: 'two', previousRole: 'primary' },
      { name: 'three', previousRole: 'init' },
    ],
  });
  t.same(target.calls, ['two:primary', 'one:secondary', 'two:secondary', 'three:secondary']);
  const raw = await exchange(path, frame(new Nv().addUint8('cmd', 1).addUint8('role', 1).addString('resource0', 'nope')));
  t.same(raw, frame(new Nv().addString('resource0', 'nope').addInt16('error0', 1)), 'no role0 for an unknown name');
  t.same(messages(), []);
});

t.test('role changes run one at a time, across connections', async (t) => {
  const { address, target } = await start(t, ['a', 'b', 'c']);
  target.delayMs = 20;
  const replies = await Promise.all([
    sendControlRequest(address, { cmd: 'setrole', role: 'primary', resources: ['all'] }),
    sendControlRequest(address, { cmd: 'setrole', role: 'secondary', resources: ['b'] }),
    sendControlRequest(address, { cmd: 'setrole', role: 'init', resources: ['c', 'a'] }),
  ]);
  t.equal(target.maxActive, 1);
  t.same(target.calls, ['a:primary', 'b:primary', 'c:primary', 'b:secondary', 'c:init', 'a:init']);
  t.same(
    replies.map((r) => r.resources),
    [
      [
        { name: 'a', previousRole: 'init' },
        { name: 'b', previousRole: 'init' },
        { name: 'c', previousRole: 'init' },
      ],
      [{ name: 'b', previousRole: 'primary' }],
      [
        { name: 'c', previousRole: 'primary' },
        { name: 'a', previousRole: 'primary' },
      ],
    ],
  );
});

t.test('a failing target gets errno EIO for that resource, and the rest carry on', async (t) => {
  const { address, target, messages } = await start(t, ['a', 'b']);
  target.failOn = 'a';
  t.same((await sendControlRequest(address, { cmd: 'setrole', role: 'primary', resources: ['all'] })).resources, [
    { name: 'a', error: 5 },
    { name: 'b', previousRole: 'init' },
  ]);
  t.same((await sendControlRequest(address, { cmd: 'status', resources: ['a', 'b'] })).resources, [
    { name: 'a', error: 5 },
    configuredStatus('b', 'primary'),
  ]);
  t.same(messages(), [
    '[a] Unable to change role to primary: worker would not start',
    '[a] Unable to obtain status: worker did not answer',
  ]);
  target.failOn = undefined;
  t.same((await sendControlRequest(address, { cmd: 'setrole', role: 'primary', resources: ['a'] })).resources, [
    { name: 'a', previousRole: 'init' },
  ], 'later role changes still run');
});

t.test('bad requests: global errors 2 and 4, or no answer without cmd', async (t) => {
  const { path, messages } = await start(t);
  const cases: [Nv, Buffer, string][] = [
    [new Nv().addUint8('cmd', 7).addString('resource0', 'one'), frame(new Nv().addInt16('error', 4)), 'Invalid command received (7).'],
    [new Nv().addUint8('cmd', 2), frame(new Nv().addInt16('error', 2)), "Control header is missing 'resource0' field."],
    [new Nv().addUint8('cmd', 1).addUint8('role', 0).addString('resource0', 'one'), frame(new Nv().addInt16('error', 2)), 'Invalid role received (0).'],
    [new Nv().addString('resource0', 'one'), Buffer.alloc(0), "Control header is missing 'cmd' field."],
  ];
  for (const [request, reply, logged] of cases) {
    t.same(await exchange(path, frame(request)), reply, logged);
    t.equal(messages().at(-1), logged);
  }
  t.equal(messages().length, cases.length, 'one log line each');
});

t.test('garbage, oversized and truncated frames close the connection with one log line', async (t) => {
  const { path, address, messages } = await start(t);
  const oversized = Buffer.from([2, 0, 0, 0x10, 0]); // announces 1 MiB of nv
  const cases: [Buffer, string][] = [
    [Buffer.from('GET / HTTP/1.0\r\n\r\n'), 'Dropping control connection: Unsupported protocol version 71 in packet header.'],
    [oversized, 'Dropping control connection: Packet header announces 1048576 bytes of nv data (limit 262144).'],
    [Buffer.concat([Buffer.from([2, 8, 0, 0, 0]), Buffer.alloc(8, 0xff)]), 'Dropping control connection: Invalid nv data in packet: nv record at byte 0: type 0xff is in host byte order, not little-endian.'],
    [frame(new Nv().addUint8('cmd', 2).addUint32('size', 10)), 'Dropping control connection: Packet announces a 10-byte payload (limit 0).'],
    [frame(new Nv().addUint8('cmd', 2)).subarray(0, 12), 'Dropping control connection: closed before sending a whole request.'],
  ];
  for (const [bytes, logged] of cases) {
    t.equal((await exchange(path, bytes)).length, 0, logged);
    t.equal(messages().at(-1), logged);
  }
  t.equal(messages().length, cases.length);
  t.equal((await sendControlRequest(address, { cmd: 'status', resources: ['one'] })).resources.length, 1, 'still serving');
});

t.test('a client that sends nothing is dropped after the request timeout', async (t) => {
  const { path, messages } = await start(t, ['one'], 100);
  const started = Date.now();
  t.equal((await exchange(path, Buffer.from([2, 0]), false)).length, 0);
  t.ok(Date.now() - started >= 90, 'not before the timeout');
  t.same(messages(), ['Dropping control connection: no request within 0.1 s.']);
});

t.test('the socket is mode 0600 and close() removes it', async (t) => {
  const { path, server } = await start(t);
  t.equal(statSync(path).mode & 0o777, 0o600);
  await server.close();
  t.equal(existsSync(path), false);
  await t.rejects(sendControlRequest(`uds://${path}`, { cmd: 'status', resources: ['all'] }), {
    message: `Unable to connect to hastd via uds://${path}: No such file or directory.`,
    exitCode: 71,
  });
});

t.test('a stale socket file is replaced; a live one or another file is refused', async (t) => {
  const dir = socketDir(t);
  const path = join(dir, 'ctl');
  const { log } = memoryLogger();
  const target = new FakeTarget(['one']);
  // A daemon killed with SIGKILL leaves its socket file behind.
  const script = `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`;
  await promisify(execFile)(process.execPath, ['-e', script]).catch(() => undefined);
  t.equal(statSync(path).isSocket(), true, 'stale socket left behind');
  const server = await ControlServer.listen(path, target, log);
  t.equal((await sendControlRequest(`uds://${path}`, { cmd: 'status', resources: ['one'] })).resources.length, 1);

  await t.rejects(ControlServer.listen(path, target, log), new ControlSocketInUseError(path));
  t.equal((await sendControlRequest(`uds://${path}`, { cmd: 'status', resources: ['one'] })).error, 0, 'the live one still serves');
  await server.close();

  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'keep me');
  await t.rejects(ControlServer.listen(file, target, log), { message: `listening on control socket ${file}`, cause: { code: 'EADDRINUSE' } });
  t.equal(readFileSync(file, 'utf8'), 'keep me');
});

// Frames to throw at the server: random bytes, a good header over random bytes, random nv lists built
// from the protocol's own field names (some valid requests among them), and truncations of all of these.
const fieldName = fc.oneof(
  fc.constantFrom('cmd', 'role', 'resource0', 'resource1', 'resource2', 'size', 'error'),
  fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.includes('\0')),
);
const field = fc.tuple(
  fieldName,
  fc.oneof(
    fc.nat({ max: 4 }).map((v) => (nv: Nv, n: string) => nv.addUint8(n, v)),
    fc.nat({ max: 0xffff }).map((v) => (nv: Nv, n: string) => nv.addUint16(n, v)),
    fc.constantFrom('all', 'one', 'two', 'nope').map((v) => (nv: Nv, n: string) => nv.addString(n, v)),
  ),
);
function nvFrame(fields: [string, (nv: Nv, n: string) => Nv][]): Buffer {
  const nv = new Nv();
  for (const [n, add] of fields) add(nv, n);
  const body = nv.encode();
  const header = Buffer.from([2, 0, 0, 0, 0]);
  header.writeUInt32LE(body.length, 1);
  return Buffer.concat([header, body]);
}
const randomNv = fc.array(field, { maxLength: 6 }).map(nvFrame);
// Mostly requests: cmd, maybe a role, some names, maybe stray fields.
const requestNv = fc
  .tuple(
    fc.nat({ max: 4 }),
    fc.option(fc.nat({ max: 4 })),
    fc.array(fc.constantFrom('all', 'one', 'two', 'nope'), { maxLength: 3 }),
    fc.array(field, { maxLength: 2 }),
  )
  .map(([cmd, role, names, extra]) => {
    const fields: [string, (nv: Nv, n: string) => Nv][] = [['cmd', (nv, n) => nv.addUint8(n, cmd)]];
    if (role !== null) fields.push(['role', (nv, n) => nv.addUint8(n, role)]);
    names.forEach((value, i) => fields.push([`resource${i}`, (nv, n) => nv.addString(n, value)]));
    return nvFrame([...fields, ...extra]);
  });
const anyFrame = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.nat({ max: 80 }), fc.uint8Array({ maxLength: 80 })).map(([size, body]) => {
    const header = Buffer.from([2, 0, 0, 0, 0]);
    header.writeUInt32LE(size, 1);
    return Buffer.concat([header, body]);
  }),
  randomNv,
  { arbitrary: requestNv, weight: 3 },
  fc.oneof(randomNv, requestNv).chain((f) => fc.nat({ max: f.length }).map((cut) => f.subarray(0, cut))),
);

t.test('thousands of random frames: each connection is dropped or answered, and the server lives on', async (t) => {
  const { path, address, target } = await start(t, ['one', 'two']);
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(anyFrame, async (bytes) => {
      const reply = await exchange(path, bytes);
      if (reply.length === 0) return;
      // Any reply is a well-formed one: it re-encodes to the same bytes from its decoded form.
      const cmd = onePacket(bytes).getUint8('cmd') === 1 ? 'setrole' : 'status';
      const decoded = decodeControlReply(onePacket(reply), cmd);
      if (!frame(encodeControlReply(decoded)).equals(reply)) throw new Error(`odd reply ${reply.toString('hex')}`);
      answered++;
    }),
    { numRuns: 3000 },
  );
  t.ok(answered > 500, `some frames were valid requests and got answers (${answered})`);
  t.same((await sendControlRequest(address, { cmd: 'status', resources: ['two'] })).resources, [target.describe('two')]);
});
