import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { HastResource } from '../../src/config/hast-conf.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { METADATA_SIZE, decodeMetadata } from '../../src/engine/metadata.js';
import { Nv } from '../../src/engine/nv.js';
import { PrimaryWorker } from '../../src/engine/primary.js';
import { HIO } from '../../src/engine/wire.js';
import { NbdBlockClient } from '../fixtures/nbd-block-client.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import { hastctl, pairConf, pairLayout, startDaemon, waitFor as waitLong, MiB } from '../fixtures/engine-pair.js';
import {
  EXTENT,
  KiB,
  SecondaryNode,
  createComponentFile,
  dataOf,
  hastResource,
  metadataOf,
  pattern,
  recordingContext,
  scratchDir,
  waitFor,
} from '../fixtures/replication-pair.js';
import { freePort } from '../fixtures/free-port.js';

// Fields a relay saw on the packets going one way.
interface Seen {
  compression: Set<string>;
  checksum: Set<string>;
  writes: number;
}

// A TCP relay between a primary and its secondary that reads the packets going by (hast framing: 5-byte
// header, nv, payload of the nv's `size`), records their encoding fields, and can flip one payload byte of the
// Nth WRITE the primary sends. It connects to the secondary from 127.0.0.1, the primary's address there.
class PacketRelay {
  readonly requests: Seen = { compression: new Set(), checksum: new Set(), writes: 0 };
  readonly replies: Seen = { compression: new Set(), checksum: new Set(), writes: 0 };
  corruptWrite: number | undefined;
  corrupted = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(t: Test, target: number): Promise<{ relay: PacketRelay; port: number }> {
    const server = createServer();
    const relay = new PacketRelay(server);
    server.on('connection', (primary) => relay.bridge(primary, target));
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.2', resolve));
    t.teardown(() => relay.close());
    return { relay, port };
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private bridge(primary: Socket, target: number): void {
    const secondary = connect({ host: '127.0.0.2', port: target, localAddress: '127.0.0.1' });
    for (const socket of [primary, secondary]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        primary.destroy();
        secondary.destroy();
      });
    }
    this.forward(primary, secondary, this.requests, true);
    this.forward(secondary, primary, this.replies, false);
  }

  private forward(from: Socket, to: Socket, seen: Seen, fromPrimary: boolean): void {
    let buffered = Buffer.alloc(0);
    from.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (buffered.length < 5) return;
        const nvSize = buffered.readUInt32LE(1);
        if (buffered.length < 5 + nvSize) return;
        const nv = Nv.decode(buffered.subarray(5, 5 + nvSize));
        const total = 5 + nvSize + (nv.getUint32('size') ?? 0);
        if (buffered.length < total) return;
        const packet = Buffer.from(buffered.subarray(0, total));
        buffered = buffered.subarray(total);
        const compression = nv.getString('compression');
        const checksum = nv.getString('checksum');
        if (compression !== undefined) seen.compression.add(compression);
        if (checksum !== undefined) seen.checksum.add(checksum);
        if (fromPrimary && nv.getUint8('cmd') === HIO.WRITE && ++seen.writes === this.corruptWrite) {
          packet[5 + nvSize]! ^= 0x01;
          this.corrupted++;
        }
        to.write(packet);
      }
    });
  }
}

// A secondary node and a primary worker talking through a PacketRelay, each with its own encoding settings.
async function relayedPair(t: Test, encodings: { primary: Partial<HastResource>; secondary: Partial<HastResource> }, disk?: { faulty?: boolean }) {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const secondary = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1', ...encodings.secondary }));
  const target = await secondary.listen();
  t.teardown(() => secondary.stop());
  const { relay, port } = await PacketRelay.start(t, target);
  const resource = hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1', ...encodings.primary });
  const context = recordingContext();
  let store: FaultyStore | undefined;
  const openComponent = disk?.faulty ? async (file: string) => (store = new FaultyStore(await LocalComponent.open(file))) : undefined;
  const primary = await PrimaryWorker.start(resource, context, { reconnectMs: 100, openComponent });
  t.teardown(() => primary.stop());
  await waitFor('the primary to connect', () => primary.status().status === 'complete');
  await waitFor('the first sync', () => context.messages().some((m) => /^(Nodes are in sync|Synchronization complete)/.test(m)));
  return { primary, context, secondary, relay, primaryPath, secondaryPath, store, remote: resource.remote };
}

// Compressible data: a pattern repeated every 512 bytes, different per seed.
function compressible(length: number, seed: number): Buffer {
  return Buffer.alloc(length, pattern(512, seed));
}

t.test('in process: crc32+lzf on the primary, sha256+hole on the secondary; writes and remote reads arrive intact', async (t) => {
  const pair = await relayedPair(
    t,
    { primary: { checksum: 'crc32', compression: 'lzf' }, secondary: { checksum: 'sha256', compression: 'hole' } },
    { faulty: true },
  );
  const writes = [
    { offset: 0, data: compressible(128 * KiB, 1) },
    { offset: 2 * EXTENT, data: Buffer.alloc(64 * KiB) },
    { offset: 4 * EXTENT, data: pattern(32 * KiB, 3) },
    { offset: 6 * EXTENT + 512, data: compressible(4 * KiB, 4) },
  ];
  for (const { offset, data } of writes) await pair.primary.device.write(offset, data);
  // Local reads fail, so they go to the secondary and come back in its encoding.
  const localoff = Number((await metadataOf(pair.primaryPath)).localoff);
  for (const { offset } of writes) pair.store!.failReadsAt(localoff + offset);
  for (const { offset, data } of writes) t.same(await pair.primary.device.read(offset, data.length), data, `read back at ${offset}`);
  t.same([...pair.relay.requests.compression].sort(), ['hole', 'lzf'], 'the primary compressed its writes');
  t.same([...pair.relay.requests.checksum], ['crc32']);
  t.same([...pair.relay.replies.compression], ['hole'], 'the secondary sent the zero read as a hole');
  t.same([...pair.relay.replies.checksum], ['sha256']);
  await pair.primary.stop();
  await pair.secondary.stop();
  t.ok((await dataOf(pair.primaryPath)).equals(await dataOf(pair.secondaryPath)), 'data areas are identical');
});

t.test('a payload damaged on the way: Hash mismatch., the connection drops, the write is resynced', async (t) => {
  const encoding = { checksum: 'crc32', compression: 'lzf' } as const;
  const pair = await relayedPair(t, { primary: encoding, secondary: encoding });
  pair.relay.corruptWrite = pair.relay.requests.writes + 3;
  for (let i = 0; i < 3; i++) await pair.primary.device.write(i * 3 * EXTENT, compressible(64 * KiB, 10 + i));
  t.equal(pair.relay.corrupted, 1, 'the third write was damaged');
  await waitFor('the secondary to drop the session', () => pair.secondary.context.messages().some((m) => m.endsWith('Hash mismatch.')));
  t.same(
    pair.secondary.context.messages().filter((m) => m.includes('Hash')),
    ['Unable to receive request header: Hash mismatch.'],
  );
  t.ok(pair.secondary.context.events.includes('disconnect'));
  await waitFor('the primary to reconnect', () => pair.context.messages().includes(`Successfully reconnected to ${pair.remote}.`));
  await waitFor('the resync', () => pair.context.messages().some((m) => m.startsWith('Synchronization complete.')));
  const messages = pair.context.messages();
  const disconnected = messages.indexOf(`Disconnected from ${pair.remote}.`);
  t.ok(disconnected >= 0, 'the primary disconnected');
  const after = messages.slice(disconnected);
  t.ok(after.includes('Synchronization started. 64KB to go.'), 'then synchronised exactly one extent: the damaged write');
  await waitFor('nothing left dirty', () => pair.primary.status().status === 'complete' && pair.primary.status().dirty === 0);
  await pair.primary.device.write(12 * EXTENT, compressible(64 * KiB, 20));
  await pair.primary.stop();
  await pair.secondary.stop();
  const [primary, secondary] = await Promise.all([dataOf(pair.primaryPath), dataOf(pair.secondaryPath)]);
  t.ok(primary.subarray(6 * EXTENT, 7 * EXTENT).equals(compressible(64 * KiB, 12)), 'the damaged write is on the primary');
  t.ok(primary.equals(secondary), 'data areas are identical after the resync');
});

// Two `carp-hast hastd` processes, each reading its own copy of hast.conf (the encoding settings are not
// allowed in `on` blocks). Node a reaches node b through a PacketRelay, which shows what went over the wire.
async function processPair(t: Test, extra: { a: string; b: string }) {
  const layout = await pairLayout(t, 'fullsync', 16 * MiB);
  const { relay, port } = await PacketRelay.start(t, layout.ports.b);
  const confs = { a: join(layout.dir, 'hast-a.conf'), b: join(layout.dir, 'hast-b.conf') };
  writeFileSync(confs.a, pairConf({ ...layout, ports: { a: layout.ports.a, b: port }, replication: 'fullsync', extra: extra.a }));
  writeFileSync(confs.b, pairConf({ ...layout, replication: 'fullsync', extra: extra.b }));
  return { layout, relay, a: { ...layout, conf: confs.a }, b: { ...layout, conf: confs.b } };
}

function dataArea(path: string): Buffer {
  const file = readFileSync(path);
  const metadata = decodeMetadata(file.subarray(0, METADATA_SIZE), { path, resource: 'test' });
  return file.subarray(Number(metadata.localoff));
}

const combinations = [
  { name: 'crc32 + hole on both', a: 'checksum crc32\n\tcompression hole', b: 'checksum crc32\n\tcompression hole', wire: { compression: ['hole'], checksum: ['crc32'] } },
  { name: 'sha256 + lzf on both', a: 'checksum sha256\n\tcompression lzf', b: 'checksum sha256\n\tcompression lzf', wire: { compression: ['hole', 'lzf'], checksum: ['sha256'] } },
  { name: 'crc32 on a, none on b', a: 'checksum crc32\n\tcompression none', b: 'checksum none\n\tcompression none', wire: { compression: [], checksum: ['crc32'] } },
];

for (const combination of combinations) {
  t.test(`real processes, ${combination.name}: data written on the primary reaches the secondary byte for byte`, async (t) => {
    const { layout, relay, a, b } = await processPair(t, combination);
    for (const [node, nodeLayout] of [['a', a], ['b', b]] as const) {
      const created = await hastctl(nodeLayout, node, 'create', '-e', '1M', 'test');
      t.equal(created.exitCode, 0, `create on ${node}: ${created.stderr}`);
    }
    await startDaemon(t, b, 'b');
    t.equal((await hastctl(b, 'b', 'role', 'secondary', 'test')).exitCode, 0);
    await startDaemon(t, a, 'a');
    t.equal((await hastctl(a, 'a', 'role', 'primary', 'test')).exitCode, 0);
    await waitLong('the primary to connect', async () => (await hastctl(a, 'a', 'status', 'test')).stdout.includes('complete'));
    const client = await NbdBlockClient.open(join(layout.dir, 'run-a', 'test.nbd'), 'test');
    const writes = [
      { offset: 0, data: compressible(128 * KiB, 1) },
      { offset: 1 * MiB, data: Buffer.alloc(128 * KiB) },
      { offset: 2 * MiB + 4096, data: pattern(64 * KiB, 2) },
      { offset: 5 * MiB, data: compressible(4 * KiB, 3) },
    ];
    for (const { offset, data } of writes) await client.write(offset, data);
    await client.flush();
    t.same(await client.read(0, 128 * KiB), writes[0]!.data);
    client.close();
    t.equal((await hastctl(a, 'a', 'role', 'init', 'test')).exitCode, 0);
    t.equal((await hastctl(b, 'b', 'role', 'init', 'test')).exitCode, 0);
    t.same({ compression: [...relay.requests.compression].sort(), checksum: [...relay.requests.checksum] }, combination.wire, 'the writes went encoded');
    const primary = dataArea(layout.local.a);
    for (const { offset, data } of writes) t.ok(primary.subarray(offset, offset + data.length).equals(data), `written at ${offset}`);
    t.ok(primary.equals(dataArea(layout.local.b)), 'data areas are identical');
  });
}
