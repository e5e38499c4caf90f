import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { connect } from 'node:net';
import { encodePacket } from '../../src/engine/hast-proto.js';
import { openingMessage, helloMessage, tokenMessage } from '../../src/engine/handshake.js';
import { Nv } from '../../src/engine/nv.js';
import { PeerListener, isKnownPeer, isRemote, normalizeIp } from '../../src/engine/peer-listener.js';
import { PrimaryWorker } from '../../src/engine/primary.js';
import { closedByPeer, dial, fakeHandshake } from '../fixtures/fake-primary.js';
import { memoryLogger } from '../fixtures/memory-log.js';
import {
  KiB,
  SecondaryNode,
  createComponentFile,
  dataOf,
  hastResource,
  pattern,
  recordingContext,
  scratchDir,
  waitFor,
} from '../fixtures/replication-pair.js';
import { freePort } from '../fixtures/free-port.js';

const VIRGIN = { resuid: 1234n, localcnt: 0n, remotecnt: 0n, virgin: true };

async function listeningNode(t: Test, options: { handshakeTimeoutMs?: number; knownPeersOnly?: boolean } = {}) {
  const dir = await scratchDir(t, { memory: true });
  const path = await createComponentFile(dir, 'secondary');
  const node = new SecondaryNode(hastResource({ local: path, remote: 'tcp4://127.0.0.1:9999' }));
  const port = await node.listen(undefined, { handshakeTimeoutMs: options.handshakeTimeoutMs });
  t.teardown(() => node.stop());
  return { node, port, dir, path, messages: node.listenerLog.messages };
}

// The first packet from `from`, and what the listener answered before closing (undefined: closed silently).
async function firstAnswer(port: number, nv: Nv, from = '127.0.0.1'): Promise<Nv | undefined> {
  const connection = await dial(port, from);
  connection.send(nv, undefined, 1);
  try {
    return (await connection.receive(5000)).nv;
  } catch {
    return undefined;
  } finally {
    connection.close();
  }
}

// Raw bytes on a fresh connection; resolves when the listener has closed it.
async function sendRaw(port: number, bytes: Buffer): Promise<void> {
  const connection = await dial(port);
  connection.socket.write(bytes);
  await closedByPeer(connection);
}

t.test('a client that is no resource remote is closed with one log line', async (t) => {
  const { port, messages } = await listeningNode(t);
  t.equal(await firstAnswer(port, openingMessage('shared'), '127.0.0.3'), undefined, 'no answer');
  t.same(messages(), ["Client 127.0.0.3 isn't known."]);
});

t.test('without peerAllowed, a stranger is refused per resource', async (t) => {
  const { node } = await listeningNode(t);
  const logger = memoryLogger();
  const listener = new PeerListener({ log: logger.log, lookup: () => node });
  const port = await freePort();
  await listener.listen(`tcp4://127.0.0.2:${port}`);
  t.teardown(() => listener.close());
  const answer = await firstAnswer(port, openingMessage('shared'), '127.0.0.3');
  t.equal(answer?.getString('errmsg'), 'No access to the resource.');
  t.same(logger.messages(), ['Client 127.0.0.3 has no access to the resource.']);
});

t.test('refusals carry hastd errmsg texts', async (t) => {
  const { node, port, messages } = await listeningNode(t);
  t.equal((await firstAnswer(port, openingMessage('nope')))?.getString('errmsg'), 'Resource not configured.');
  node.role = 'primary';
  let answer = await firstAnswer(port, openingMessage('shared'));
  t.equal(answer?.getString('errmsg'), 'Remote node acts as primary for the resource and not as secondary.');
  t.equal(answer?.getUint8('wait'), 1, 'a primary asks the other primary to wait');
  node.role = 'init';
  answer = await firstAnswer(port, openingMessage('shared'));
  t.equal(answer?.getString('errmsg'), 'Remote node acts as init for the resource and not as secondary.');
  t.equal(answer?.getUint8('wait'), undefined);
  node.role = 'secondary';
  const stray = new Nv().addString('resource', 'shared').addUint8Array('token', new Uint8Array(16));
  t.equal((await firstAnswer(port, stray))?.getString('errmsg'), "Token doesn't match.", 'a token without a first connection');
  t.same(messages(), [
    "No resource 'nope' as requested by 127.0.0.1.",
    'We act as primary for the resource and not as secondary as requested by 127.0.0.1.',
    'We act as init for the resource and not as secondary as requested by 127.0.0.1.',
    "Token received from 127.0.0.1 doesn't match.",
  ]);
});

t.test('the first connection gets a version and a token; only that token completes the pair', async (t) => {
  const { node, port, messages } = await listeningNode(t);
  const first = await dial(port);
  first.send(new Nv().addString('resource', 'shared').addUint8('version', 7), undefined, 1);
  const reply = (await first.receive(5000)).nv;
  t.equal(reply.getUint8('version'), 2, 'a newer peer gets version 2');
  const token = Buffer.from(reply.getUint8Array('token')!);
  t.equal(token.length, 16);
  const wrong = Buffer.from(token);
  wrong[0] = wrong[0]! ^ 1;
  t.equal((await firstAnswer(port, helloMessage('shared', wrong, VIRGIN)))?.getString('errmsg'), "Token doesn't match.");
  const second = await dial(port);
  second.send(helloMessage('shared', token, VIRGIN));
  const answer = (await first.receive(5000)).nv;
  t.equal(answer.getInt8('virgin'), 1, 'the secondary answers on the first connection');
  await waitFor('the adopted worker', () => node.worker !== undefined);
  t.same(messages(), ["Token received from 127.0.0.1 doesn't match."]);
  first.close();
  second.close();
});

t.test('a new first connection replaces a half-open one and stops the running session', async (t) => {
  const { node, port } = await listeningNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  await waitFor('the session', () => node.worker !== undefined);
  const running = node.worker!;
  const halfOpen = await dial(port);
  halfOpen.send(openingMessage('shared'), undefined, 1);
  await halfOpen.receive(5000);
  await running.done;
  await closedByPeer(session.replies);
  t.pass('the running session ended');
  const next = await dial(port);
  next.send(openingMessage('shared'), undefined, 1);
  await next.receive(5000);
  await closedByPeer(halfOpen);
  t.pass('the half-open connection was closed');
  next.close();
});

t.test('half-open connections and silent clients time out', async (t) => {
  const { port, messages } = await listeningNode(t, { handshakeTimeoutMs: 200 });
  const halfOpen = await dial(port);
  halfOpen.send(openingMessage('shared'), undefined, 1);
  await halfOpen.receive(5000);
  const silent = await dial(port);
  await Promise.all([closedByPeer(halfOpen), closedByPeer(silent)]);
  t.same(messages().sort(), ['No second connection from 127.0.0.1 within 0.2 s.', 'Unable to receive header from 127.0.0.1: No packet received within 0.2 s.']);
});

t.test('malformed first packets drop the connection with one log line each', async (t) => {
  const { port, messages } = await listeningNode(t);
  const header = (version: number, size: number): Buffer => {
    const buffer = Buffer.alloc(5);
    buffer.writeUInt8(version, 0);
    buffer.writeUInt32LE(size, 1);
    return buffer;
  };
  await sendRaw(port, Buffer.concat([header(2, 8), Buffer.alloc(8, 0xff)]));
  await sendRaw(port, header(2, 0xffffffff));
  await sendRaw(port, header(9, 10));
  await sendRaw(port, Buffer.concat(encodePacket(new Nv().addString('resource', 'shared'), Buffer.alloc(2 * 1024 * 1024))));
  await sendRaw(port, Buffer.concat(encodePacket(new Nv().addUint8('version', 2))));
  await sendRaw(port, Buffer.concat(encodePacket(new Nv().addString('resource', 'shared').addUint8Array('token', new Uint8Array(3)))));
  t.same(messages(), [
    'Unable to receive header from 127.0.0.1: Invalid nv data in packet: nv record at byte 0: type 0xff is in host byte order, not little-endian.',
    'Unable to receive header from 127.0.0.1: Packet header announces 4294967295 bytes of nv data (limit 4096).',
    'Unable to receive header from 127.0.0.1: Unsupported protocol version 9 in packet header.',
    'Unable to receive header from 127.0.0.1: Packet announces a 2097152-byte payload (limit 131072).',
    "No 'resource' field in the header received from 127.0.0.1.",
    'Received token of invalid size from 127.0.0.1 (expected 16, got 3).',
  ]);
});

// A first packet a peer could send: random fields, sometimes the right resource or a token, or raw bytes.
const opening = fc.oneof(
  fc
    .record({
      resource: fc.option(fc.constantFrom('shared', 'nope', ''), { nil: undefined }),
      version: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
      token: fc.option(fc.uint8Array({ minLength: 0, maxLength: 20 }), { nil: undefined }),
      counters: fc.boolean(),
    })
    .map(({ resource, version, token, counters }) => {
      const nv = new Nv();
      if (resource !== undefined && resource !== '') nv.addString('resource', resource);
      if (version !== undefined) nv.addUint8('version', version);
      if (token !== undefined && token.length > 0) nv.addUint8Array('token', token);
      if (counters) nv.addUint64('resuid', 1n).addUint64('localcnt', 0n);
      return Buffer.concat(encodePacket(nv, undefined, 1));
    }),
  fc.uint8Array({ minLength: 1, maxLength: 80 }).map((bytes) => Buffer.from(bytes)),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.concat(encodePacket(tokenMessage(2, Buffer.alloc(16)), Buffer.from(bytes)))),
);

t.test('fuzzed frames against the listener never stop it serving a real primary', async (t) => {
  const { node, port, dir, path, messages } = await listeningNode(t, { handshakeTimeoutMs: 1000 });
  let frames = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opening, { minLength: 6, maxLength: 8 }), async (batch) => {
      frames += batch.length;
      const socket = connect({ host: '127.0.0.2', port, localAddress: '127.0.0.1' });
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.end(Buffer.concat(batch));
      await Promise.race([new Promise((resolve) => socket.once('close', resolve)), new Promise((resolve) => setTimeout(resolve, 20))]);
      socket.destroy();
    }),
    { numRuns: 1700 },
  );
  t.ok(frames >= 10_000, `${frames} frames sent`);
  const known = [
    /^Unable to receive header from 127\.0\.0\.1: /,
    /^No 'resource' field in the header received from 127\.0\.0\.1\.$/,
    /^Received token of invalid size from 127\.0\.0\.1 \(expected 16, got \d+\)\.$/,
    /^No resource 'nope' as requested by 127\.0\.0\.1\.$/,
    /^Token received from 127\.0\.0\.1 doesn't match\.$/,
    /^No second connection from 127\.0\.0\.1 within 1 s\.$/,
    /^Connection from 127\.0\.0\.1 failed: /,
  ];
  const unexpected = messages().filter((message) => !known.some((pattern) => pattern.test(message)));
  t.same(unexpected, [], 'every log line is one of the listener refusals');

  const primaryPath = await createComponentFile(dir, 'primary');
  const resource = hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' });
  const primary = await PrimaryWorker.start(resource, recordingContext(), { reconnectMs: 100 });
  t.teardown(() => primary.stop());
  await waitFor('the primary to connect', () => primary.status().status === 'complete');
  await primary.device.write(0, pattern(8 * KiB, 5));
  await primary.stop();
  await node.stopSecondary();
  t.same((await dataOf(path)).subarray(0, 8 * KiB), pattern(8 * KiB, 5), 'the write reached the secondary');
});

t.test('remote addresses match by IP only, whatever the spelling', async (t) => {
  t.equal(normalizeIp('::ffff:10.0.0.1'), '10.0.0.1');
  t.equal(normalizeIp('::1'), '::1');
  t.ok(await isRemote('tcp4://10.0.0.1:8457', '10.0.0.1'));
  t.ok(await isRemote('10.0.0.1', '::ffff:10.0.0.1'));
  t.ok(await isRemote('tcp6://[2001:db8::1]:1234', '2001:db8:0:0:0:0:0:1'));
  t.notOk(await isRemote('tcp4://10.0.0.1', '10.0.0.2'));
  t.notOk(await isRemote('none', '10.0.0.1'));
  t.notOk(await isRemote('uds:///var/run/x', '10.0.0.1'));
  t.notOk(await isRemote('tcp://[bad', '10.0.0.1'));
  t.notOk(await isRemote('10.0.0.1', ''));
  t.ok(await isRemote('tcp://localhost', '127.0.0.1'), 'host names are resolved');
  t.notOk(await isRemote('tcp://no-such-host.invalid', '127.0.0.1'));
  const resources = [hastResource({ local: '/a', remote: 'none' }), hastResource({ local: '/b', remote: '10.0.0.9' })];
  t.ok(await isKnownPeer(resources, '10.0.0.9'));
  t.notOk(await isKnownPeer(resources, '10.0.0.1'));
});

t.test('listen refuses a UNIX socket address and a busy port', async (t) => {
  const { port } = await listeningNode(t);
  const listener = new PeerListener({ log: memoryLogger().log, lookup: () => undefined });
  await t.rejects(listener.listen('uds:///tmp/x.sock'), /^Unable to listen on address uds:\/\/\/tmp\/x\.sock: only TCP addresses can be listened on\.$/);
  await t.rejects(listener.listen(`tcp4://127.0.0.2:${port}`), new Error(`Unable to listen on address tcp4://127.0.0.2:${port}`));
  await listener.close();
});
