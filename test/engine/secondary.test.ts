import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import { MAXPHYS } from '../../src/engine/activemap.js';
import { joinBytes } from '../../src/engine/bytes.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { PacketDecoder, ProtocolError, encodePacket, type Packet } from '../../src/engine/hast-proto.js';
import { SPLIT_BRAIN_ERRMSG, type PrimaryHello } from '../../src/engine/handshake.js';
import { encodeMetadata, METADATA_SIZE, ondiskMapSize } from '../../src/engine/metadata.js';
import { Nv } from '../../src/engine/nv.js';
import { decodePayload } from '../../src/engine/payload-codec.js';
import { ERRNO, HIO, WIRE_PACKET_LIMITS, keepaliveNv, requestNv } from '../../src/engine/wire.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import { closedByPeer, exchange, fakeHandshake, type FakeSession } from '../fixtures/fake-primary.js';
import {
  COMPONENT_SIZE,
  EXTENT,
  KiB,
  SecondaryNode,
  createComponentFile,
  dataOf,
  hastResource,
  metadataOf,
  ondiskDirtyExtents,
  pattern,
  poke,
  scratchDir,
  waitFor,
} from '../fixtures/replication-pair.js';

const VIRGIN: PrimaryHello = { resuid: 1234n, localcnt: 0n, remotecnt: 0n, virgin: true };
// The map size a secondary computes from its component (mediasize - 4096), as hastd does.
const MAPSIZE = ondiskMapSize(BigInt(COMPONENT_SIZE - METADATA_SIZE), EXTENT, 512);

// A secondary node listening with a fresh component; `faulty` puts its disk behind a FaultyStore.
async function secondaryNode(t: Test, options: { faulty?: boolean; memory?: boolean } = {}) {
  const path = await createComponentFile(await scratchDir(t, { memory: options.memory }), 'secondary');
  const node = new SecondaryNode(hastResource({ local: path, remote: 'tcp4://127.0.0.1' }));
  let disk: FaultyStore | undefined;
  const openComponent = options.faulty ? async (file: string) => (disk = new FaultyStore(await LocalComponent.open(file))) : undefined;
  const port = await node.listen(undefined, { openComponent });
  t.teardown(() => node.stop());
  return { node, port, path, disk: () => disk! };
}

// Gives the secondary's metadata a resuid and counters, as if it had been connected before.
async function knownSecondary(path: string, localcnt: bigint, remotecnt: bigint, dirty: number[] = []): Promise<void> {
  const metadata = await metadataOf(path);
  await poke(path, 0, encodeMetadata({ ...metadata, resuid: 1234n, localcnt, remotecnt, prevrole: 'secondary' }));
  const map = Buffer.alloc(MAPSIZE);
  for (const extent of dirty) map[extent >> 3]! |= 1 << (extent & 7);
  await poke(path, METADATA_SIZE, map);
}

function write(seq: number, offset: number, data: Buffer, memsync = false): Nv {
  return requestNv({ cmd: HIO.WRITE, seq, offset, length: data.length, memsync });
}

t.test('a fresh secondary adopts a virgin primary: nothing to synchronise', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  const { answer } = await fakeHandshake(port, VIRGIN);
  const nv = answer.nv;
  t.equal(nv.getInt64('datasize'), (await metadataOf(path)).datasize);
  t.equal(nv.getInt32('extentsize'), EXTENT);
  t.equal(nv.getInt8('virgin'), 1);
  t.equal(nv.getUint8('syncsrc'), 1);
  t.equal(nv.getUint32('mapsize'), 0);
  t.equal(answer.payload, undefined);
  t.match(await metadataOf(path), { resuid: 1234n, localcnt: 0n, remotecnt: 0n, prevrole: 'secondary' });
  await waitFor('the connect event', () => node.context.events.includes('connect'));
});

t.test('a fresh secondary asks a primary with data for everything', async (t) => {
  const { port } = await secondaryNode(t);
  const { answer } = await fakeHandshake(port, { ...VIRGIN, virgin: false, localcnt: 1n });
  t.equal(answer.nv.getUint32('mapsize'), MAPSIZE);
  t.same(answer.payload, Buffer.alloc(MAPSIZE, 0xff));
});

t.test('nodes in sync exchange the secondary dirty map, cleared at the first request', async (t) => {
  const { port, path } = await secondaryNode(t);
  await knownSecondary(path, 3n, 3n, [1, 6]);
  const session = await fakeHandshake(port, { resuid: 1234n, localcnt: 3n, remotecnt: 3n, virgin: false });
  t.equal(session.answer.nv.getUint8('syncsrc'), 1);
  t.equal(session.answer.nv.getInt8('virgin'), undefined);
  t.equal(session.answer.nv.getUint64('localcnt'), 3n);
  t.same(await ondiskDirtyExtents(path), [1, 6], 'kept until the primary has merged it');
  await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 1, offset: 0, length: 0 }));
  t.same(await ondiskDirtyExtents(path), []);
});

t.test('an out-of-date primary is told to copy from the secondary', async (t) => {
  const { port, path } = await secondaryNode(t);
  await knownSecondary(path, 4n, 3n);
  const { answer } = await fakeHandshake(port, { resuid: 1234n, localcnt: 3n, remotecnt: 3n, virgin: false });
  t.equal(answer.nv.getUint8('syncsrc'), 2);
});

t.test('counters that cannot happen ask for a full sync, with a warning', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  await knownSecondary(path, 3n, 3n);
  const { answer } = await fakeHandshake(port, { resuid: 1234n, localcnt: 2n, remotecnt: 2n, virgin: false });
  t.equal(answer.nv.getUint8('syncsrc'), 2);
  t.same(answer.payload, Buffer.alloc(MAPSIZE, 0xff));
  t.ok(
    node.context
      .messages()
      .includes('This should never happen, asking for full synchronization (primary(local=2, remote=2), secondary(local=3, remote=3)).'),
  );
});

t.test('split-brain is refused and reported', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  await knownSecondary(path, 4n, 3n);
  const { answer, requests } = await fakeHandshake(port, { resuid: 1234n, localcnt: 4n, remotecnt: 3n, virgin: false });
  t.equal(answer.nv.getString('errmsg'), SPLIT_BRAIN_ERRMSG);
  await closedByPeer(requests);
  await node.workers[0]!.done;
  t.same(node.context.events, ['split-brain']);
  t.ok(node.context.messages().includes('Split-brain detected, exiting.'));
  t.match(await metadataOf(path), { localcnt: 4n, remotecnt: 3n }, 'a secondary never changes its counters');
});

t.test('another resource id is refused', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  await knownSecondary(path, 0n, 0n);
  const { answer } = await fakeHandshake(port, { ...VIRGIN, resuid: 99n });
  t.equal(answer.nv.getString('errmsg'), 'Resource unique ID mismatch (primary=99, secondary=1234).');
  await node.workers[0]!.done;
  t.same(node.context.events, []);
});

t.test('a component another engine holds is refused with the reason', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  const holder = await LocalComponent.open(path);
  t.teardown(() => holder.close());
  const { answer } = await fakeHandshake(port, VIRGIN);
  t.equal(answer.nv.getString('errmsg'), `Unable to lock ${path} (another hastd/engine holds it)`);
  await node.workers[0]!.done;
  t.same(node.context.events, []);
});

t.test('requests are executed and answered', async (t) => {
  const { node, port, path } = await secondaryNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  const data = pattern(8 * KiB, 3);
  let reply = await exchange(session, write(1, 16 * KiB, data), data);
  t.equal(reply.nv.getUint64('seq'), 1n);
  t.equal(reply.nv.getInt16('error'), undefined);
  reply = await exchange(session, requestNv({ cmd: HIO.READ, seq: 2, offset: 16 * KiB, length: 8 * KiB }));
  t.same(reply.payload, data);
  reply = await exchange(session, requestNv({ cmd: HIO.DELETE, seq: 3, offset: 16 * KiB, length: 4 * KiB }));
  t.equal(reply.nv.getUint64('seq'), 3n);
  session.requests.send(keepaliveNv());
  reply = await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 4, offset: 0, length: 0 }));
  t.equal(reply.nv.getUint64('seq'), 4n, 'a keepalive gets no reply');
  const onDisk = (await dataOf(path)).subarray(16 * KiB, 24 * KiB);
  t.same(onDisk, Buffer.concat([Buffer.alloc(4 * KiB), data.subarray(4 * KiB)]));
  t.match(node.worker!.status(), {
    status: 'complete',
    extentsize: EXTENT,
    keepdirty: 4,
    dirty: 0,
    statistics: { reads: 1n, writes: 1n, deletes: 1n, flushes: 1n },
  });
});

t.test('a memsync write is acknowledged when received, then when written', async (t) => {
  const { disk, port } = await secondaryNode(t, { faulty: true });
  const session = await fakeHandshake(port, VIRGIN);
  await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 1, offset: 0, length: 0 }));
  const release = disk().holdWrites();
  const data = pattern(4 * KiB, 1);
  const early = await exchange(session, write(2, 0, data, true), data);
  t.same([early.nv.getUint64('seq'), early.nv.getInt8('received')], [2n, 1], 'received while the disk write is held');
  release();
  const final = await session.replies.receive(5000);
  t.same([final.nv.getUint64('seq'), final.nv.getInt8('received')], [2n, undefined]);
});

t.test('invalid requests get EINVAL and a log line; the session goes on', async (t) => {
  const { node, port } = await secondaryNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  let reply = await exchange(session, requestNv({ cmd: HIO.READ, seq: 5, offset: 100, length: 512 }));
  t.same([reply.nv.getUint64('seq'), reply.nv.getInt16('error')], [5n, ERRNO.EINVAL]);
  reply = await exchange(session, write(6, 0, Buffer.alloc(512), true), Buffer.alloc(512 + 512));
  t.same([reply.nv.getInt16('error'), reply.nv.getInt8('received')], [ERRNO.EINVAL, 1], 'one reply, marked received, for a memsync write');
  reply = await exchange(session, new Nv().addUint8('cmd', 7).addUint64('seq', 7n));
  t.equal(reply.nv.getInt16('error'), ERRNO.EINVAL);
  t.same(node.context.messages().slice(-3), [
    'Offset 100 is not multiple of sector size.',
    'Data size 1024 differs from the request length 512.',
    "Header contains invalid 'cmd' (7).",
  ]);
  t.match(node.worker!.status().statistics, { readErrors: 1n, writeErrors: 1n });
  reply = await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 8, offset: 0, length: 0 }));
  t.equal(reply.nv.getInt16('error'), undefined);
});

t.test('disk failures are answered with FreeBSD errno numbers', async (t) => {
  const { node, port, path, disk } = await secondaryNode(t, { faulty: true });
  const session = await fakeHandshake(port, VIRGIN);
  const localoff = Number((await metadataOf(path)).localoff);
  disk().failWritesAt(localoff + 4 * KiB);
  let reply = await exchange(session, write(1, 4 * KiB, Buffer.alloc(512)), Buffer.alloc(512));
  t.equal(reply.nv.getInt16('error'), ERRNO.EIO);
  t.ok(node.context.messages().some((m) => m.startsWith('Request failed (Input/output error): WRITE(4096, 512):')));
  disk().failFlushes('EOPNOTSUPP');
  reply = await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 2, offset: 0, length: 0 }));
  t.equal(reply.nv.getInt16('error'), ERRNO.EOPNOTSUPP);
  const logged = node.context.messages().length;
  disk().heal();
  reply = await exchange(session, requestNv({ cmd: HIO.FLUSH, seq: 3, offset: 0, length: 0 }));
  t.equal(reply.nv.getInt16('error'), ERRNO.EOPNOTSUPP, 'later flushes fail at once');
  t.equal(node.context.messages().length, logged, 'and are not logged');
  t.match(node.worker!.status().statistics, { writeErrors: 1n, flushErrors: 2n });
});

t.test('pipelined requests take effect in arrival order', async (t) => {
  const { port, path } = await secondaryNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  const count = 200;
  for (let i = 1; i <= count; i++) {
    // Overlapping writes of growing length over the same start, with reads of the first block in between.
    const data = Buffer.alloc(((i % 8) + 1) * 512, i);
    session.requests.send(write(2 * i, 0, data), data);
    session.requests.send(requestNv({ cmd: HIO.READ, seq: 2 * i + 1, offset: 0, length: 512 }));
  }
  session.requests.send(requestNv({ cmd: HIO.FLUSH, seq: 10_000, offset: 0, length: 0 }));
  const reads = new Map<bigint, number>();
  for (;;) {
    const reply = await session.replies.receive(5000);
    const seq = reply.nv.getUint64('seq')!;
    if (seq === 10_000n) break;
    if (seq % 2n === 1n) reads.set(seq, joinBytes(reply.payload!)[0]!);
  }
  t.equal(reads.size, count, 'every read answered before the flush');
  t.ok([...reads].every(([seq, byte]) => BigInt(byte) === (seq - 1n) / 2n), 'each read sees the write sent just before it');
  const last = Buffer.alloc(((count % 8) + 1) * 512, count);
  t.same((await dataOf(path)).subarray(0, last.length), last);
});

t.test('the session ends with a disconnect event when the primary goes away', async (t) => {
  const { node, port } = await secondaryNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  await waitFor('the worker', () => node.worker !== undefined);
  session.replies.close();
  await node.worker!.done;
  t.same(node.context.events, ['connect', 'disconnect']);
  t.equal(node.worker!.status().status, 'degraded');
  t.match(node.context.messages().at(-1), /^Reply connection failed: /);
});

t.test('stopping a session reports no disconnect', async (t) => {
  const { node, port } = await secondaryNode(t);
  const session = await fakeHandshake(port, VIRGIN);
  await waitFor('the worker', () => node.worker !== undefined);
  await node.worker!.stop();
  await closedByPeer(session.requests);
  t.same(node.context.events, ['connect']);
});

// A well-framed request with random fields: executed or refused with EINVAL.
const requestFrame = fc
  .record({
    cmd: fc.integer({ min: 0, max: 7 }),
    seq: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    offset: fc.oneof(fc.integer({ min: 0, max: 64 }).map((n) => BigInt(n * 512)), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    length: fc.oneof(fc.integer({ min: 0, max: 300 }).map((n) => BigInt(n * 512)), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    memsync: fc.boolean(),
    payload: fc.option(fc.uint8Array({ maxLength: 2048 }), { nil: undefined }),
  })
  .map(({ cmd, seq, offset, length, memsync, payload }) => {
    const nv = new Nv().addUint8('cmd', cmd).addUint64('seq', seq).addUint64('offset', offset).addUint64('length', length);
    if (memsync) nv.addUint8('memsync', 1);
    return Buffer.concat(encodePacket(nv, payload === undefined ? undefined : Buffer.from(payload)));
  });

// A random nv list (fields of the wrong types, a size with no payload, a compression that may not decode).
const nvFrame = fc
  .array(
    fc.record({ name: fc.constantFrom('cmd', 'seq', 'offset', 'length', 'memsync', 'size', 'compression', 'x'), value: fc.integer({ min: 0, max: 600 }) }),
    { maxLength: 5 },
  )
  .map((fields) => {
    const nv = new Nv();
    for (const { name, value } of fields) {
      if (name === 'compression') nv.addString(name, 'hole');
      else if (value % 2 === 0) nv.addUint8(name, value % 256);
      else nv.addUint32(name, value);
    }
    return Buffer.concat(encodePacket(nv));
  });

// Raw bytes.
const garbage = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.from(bytes));

// A request cut short: the secondary waits for the rest.
const truncated = requestFrame.chain((whole) => fc.integer({ min: 1, max: whole.length - 1 }).map((cut) => whole.subarray(0, cut)));

// A batch of frames for one session: well-framed requests only, the same ending in a cut frame, or anything.
const batch = fc.oneof(
  fc.array(requestFrame, { minLength: 25, maxLength: 40 }),
  fc.tuple(fc.array(requestFrame, { minLength: 25, maxLength: 40 }), truncated).map(([frames, last]) => [...frames, last]),
  fc.array(fc.oneof({ weight: 8, arbitrary: requestFrame }, { weight: 2, arbitrary: nvFrame }, { weight: 1, arbitrary: garbage }), {
    minLength: 25,
    maxLength: 40,
  }),
);

// What the secondary must do with a stream: drop the connection, or answer the final flush.
function expectation(stream: Buffer): 'drop' | 'answer' | 'incomplete' {
  const decoder = new PacketDecoder(WIRE_PACKET_LIMITS);
  let packets;
  try {
    packets = decoder.push(stream);
  } catch (error) {
    if (error instanceof ProtocolError) return 'drop';
    throw error;
  }
  if (packets.some((p) => !decodes(p))) return 'drop';
  return packets.at(-1)?.nv.getUint64('seq') === 2n ** 63n ? 'answer' : 'incomplete';
}

// Whether the packet's payload survives decoding (a hole announcing too much, a hole of the wrong size, ...).
function decodes(packet: Packet): boolean {
  try {
    decodePayload(packet.nv, packet.payload, MAXPHYS);
    return true;
  } catch (error) {
    if (error instanceof ProtocolError) return false;
    throw error;
  }
}

async function fuzzSession(session: FakeSession, frames: Buffer[]): Promise<ReturnType<typeof expectation>> {
  const sentinel = Buffer.concat(encodePacket(new Nv().addUint8('cmd', HIO.FLUSH).addUint64('seq', 2n ** 63n)));
  const stream = Buffer.concat([...frames, sentinel]);
  const expected = expectation(stream);
  session.requests.socket.write(stream);
  if (expected === 'drop') {
    await closedByPeer(session.replies);
  } else if (expected === 'answer') {
    for (;;) {
      const reply = await session.replies.receive(10_000);
      if (reply.nv.getUint64('seq') === 2n ** 63n) break;
    }
  }
  session.requests.close();
  session.replies.close();
  return expected;
}

t.test('fuzzed frames on an established session: answered or dropped, never a crash', async (t) => {
  const { node, port, path } = await secondaryNode(t, { memory: true });
  let sent = 0;
  let sessions = 0;
  const outcomes = { drop: 0, answer: 0, incomplete: 0 };
  await fc.assert(
    fc.asyncProperty(batch, async (frames) => {
      await waitFor('the previous session to end', () => node.worker === undefined || node.workers.at(-1)!.status().status === 'degraded');
      const session = await fakeHandshake(port, VIRGIN);
      sessions++;
      sent += frames.length;
      outcomes[await fuzzSession(session, frames)]++;
    }),
    { numRuns: 400 },
  );
  t.ok(sent >= 10_000, `${sent} frames over ${sessions} sessions`);
  t.ok(outcomes.drop > 0 && outcomes.answer > 0 && outcomes.incomplete > 0, `outcomes: ${JSON.stringify(outcomes)}`);
  await sleep(10);
  const session = await fakeHandshake(port, VIRGIN);
  const data = pattern(4 * KiB, 9);
  const reply = await exchange(session, write(1, 0, data), data);
  t.equal(reply.nv.getInt16('error'), undefined, 'the listener still serves a well-behaved primary');
  t.same((await dataOf(path)).subarray(0, 4 * KiB), data);
});
