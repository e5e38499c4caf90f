import t from 'tap';
import type { Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ReplicationMode } from '../../src/config/hast-conf.js';
import { BlockIoError } from '../../src/engine/block-device.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { encodeMetadata, METADATA_SIZE } from '../../src/engine/metadata.js';
import { PrimaryWorker } from '../../src/engine/primary.js';
import { HAST_HIO_MAX } from '../../src/engine/request-slots.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import {
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
  recordingContext,
  scratchDir,
  startPair,
  waitFor,
  type Pair,
} from '../fixtures/replication-pair.js';

// Stops both nodes and compares their data areas byte for byte.
async function assertIdentical(t: Test, pair: Pair, message: string): Promise<void> {
  await pair.primary.stop();
  await pair.secondary.stop();
  const [primary, secondary] = await Promise.all([dataOf(pair.primaryPath), dataOf(pair.secondaryPath)]);
  t.equal(Buffer.compare(primary, secondary), 0, message);
}

// A mix of writes, some overlapping, over the first 40 extents; each is checked by reading it back later.
function writeMix(count: number, seed: number): Array<{ offset: number; data: Buffer }> {
  let state = seed;
  const next = (n: number): number => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % n;
  };
  return Array.from({ length: count }, (_, i) => ({ offset: next(40 * 128) * 512, data: pattern((1 + next(64)) * 512, seed * 10_000 + i) }));
}

// What the device must hold after the writes, applied in order.
function expectedImage(writes: Array<{ offset: number; data: Buffer }>, size: number): Buffer {
  const image = Buffer.alloc(size);
  for (const { offset, data } of writes) data.copy(image, offset);
  return image;
}

for (const mode of ['fullsync', 'memsync', 'async'] as ReplicationMode[]) {
  t.test(`${mode}: pipelined writes reach both nodes identically`, async (t) => {
    const pair = await startPair(t, { replication: mode });
    const writes = writeMix(400, 7);
    await Promise.all(writes.map(({ offset, data }) => pair.primary.device.write(offset, data)));
    const span = 40 * EXTENT + 64 * 512;
    const expected = expectedImage(writes, span);
    for (let offset = 0; offset < 40 * EXTENT; offset += 128 * KiB) {
      t.equal(Buffer.compare(await pair.primary.device.read(offset, 128 * KiB), expected.subarray(offset, offset + 128 * KiB)), 0, `read at ${offset}`);
    }
    const statistics = pair.secondary.worker!.status().statistics;
    t.equal(pair.primary.status().status, 'complete');
    t.equal(pair.primary.status().replication, mode);
    await assertIdentical(t, pair, 'data areas are identical');
    t.equal(statistics.writes, BigInt(writes.length), 'the secondary executed every write');
    t.same(Buffer.compare((await dataOf(pair.secondaryPath)).subarray(0, span), expected), 0, 'in the order they were issued');
  });
}

t.test('memsync acknowledges once the secondary has the data, fullsync once it wrote it', async (t) => {
  for (const mode of ['memsync', 'fullsync'] as const) {
    const dir = await scratchDir(t);
    const primaryPath = await createComponentFile(dir, 'primary');
    const secondaryPath = await createComponentFile(dir, 'secondary');
    const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
    let secondaryDisk: FaultyStore | undefined;
    const port = await node.listen(undefined, { openComponent: async (file) => (secondaryDisk = new FaultyStore(await LocalComponent.open(file))) });
    t.teardown(() => node.stop());
    const context = recordingContext();
    const primary = await PrimaryWorker.start(
      hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1', replication: mode }),
      context,
    );
    t.teardown(() => primary.stop());
    await waitFor('the first sync', () => context.messages().includes('Nodes are in sync.'));
    await primary.device.write(0, pattern(4 * KiB, 1));
    const release = secondaryDisk!.holdWrites();
    let acknowledged = false;
    const write = primary.device.write(4 * KiB, pattern(4 * KiB, 2)).then(() => (acknowledged = true));
    await waitFor("the write held on the secondary's disk", () => secondaryDisk!.heldWrites > 0);
    if (mode === 'memsync') {
      await waitFor('the memsync acknowledgement', () => acknowledged);
      t.pass("memsync acknowledged while the secondary's disk write is held");
    } else {
      await sleep(200);
      t.equal(acknowledged, false, "fullsync waits while the secondary's disk write is held");
    }
    release();
    await write;
    await primary.stop();
    await node.stop();
  }
});

t.test('flush and trim reach the secondary', async (t) => {
  const pair = await startPair(t);
  await pair.primary.device.write(0, pattern(128 * KiB, 1));
  await pair.primary.device.trim(16 * KiB, 64 * KiB);
  await pair.primary.device.flush();
  await pair.primary.device.write(256 * KiB, pattern(4 * KiB, 2), { fua: true });
  t.match(pair.secondary.worker!.status().statistics, { writes: 2n, deletes: 1n, flushes: 2n });
  t.same(await pair.primary.device.read(16 * KiB, 64 * KiB), Buffer.alloc(64 * KiB));
  await assertIdentical(t, pair, 'identical after trim');
  t.same((await dataOf(pair.secondaryPath)).subarray(16 * KiB, 80 * KiB), Buffer.alloc(64 * KiB));
});

t.test('a secondary lost mid-stream: the primary goes on degraded, records what it missed, and resyncs', async (t) => {
  const pair = await startPair(t);
  const { primary, primaryContext } = pair;
  const writes = writeMix(600, 3);
  const stream = Promise.all(writes.map(({ offset, data }) => primary.device.write(offset, data)));
  await sleep(5);
  await pair.secondary.stop();
  await stream;
  t.pass('every write succeeded although the secondary vanished');
  await waitFor('degraded', () => primary.status().status === 'degraded');
  t.ok(primaryContext.events.includes('disconnect'));

  // What the secondary misses from now on is exactly what the map records.
  const missed = [3, 9, 17, 21, 30, 44];
  const sync = primaryContext.messages().length;
  for (const extent of missed) await primary.device.write(extent * EXTENT + 8 * KiB, pattern(4 * KiB, extent));
  t.ok(primary.status().dirty >= missed.length * EXTENT);
  const dirtyOnDisk = await ondiskDirtyExtents(pair.primaryPath);
  t.ok(missed.every((extent) => dirtyOnDisk.includes(extent)), 'every missed extent is marked on disk');

  await pair.secondary.listen(pair.port);
  await waitFor('the reconnect', () => primaryContext.messages().includes(`Successfully reconnected to tcp4://127.0.0.2:${pair.port}.`));
  await waitFor('the resync', () => primaryContext.messages().slice(sync).some((m) => m.startsWith('Synchronization complete.')));
  t.match(primaryContext.events, ['connect', 'disconnect', 'connect', 'syncstart', 'syncdone']);
  t.equal(primary.status().dirty, 0, 'nothing left to synchronise');
  await assertIdentical(t, pair, 'identical after the resync');
});

t.test('exactly the extents written while disconnected are synchronised', async (t) => {
  const pair = await startPair(t);
  const { primary, primaryContext } = pair;
  await primary.device.write(0, pattern(4 * KiB, 0));
  await pair.secondary.stop();
  await waitFor('degraded', () => primary.status().status === 'degraded');
  const missed = [2, 5, 11, 12, 30, 41];
  for (const extent of missed) await primary.device.write(extent * EXTENT, pattern(4 * KiB, extent));
  // Six extents fill the 4-entry LRU. Extent 0 is clean but stays marked on disk until the tidy write (within
  // a second); then the on-disk map holds the dirty extents and nothing else.
  t.ok((await ondiskDirtyExtents(pair.primaryPath)).includes(0), 'a clean extent is dropped later, not at once');
  await waitFor('the tidy write', async () => !(await ondiskDirtyExtents(pair.primaryPath)).includes(0));
  t.same(await ondiskDirtyExtents(pair.primaryPath), missed);
  t.equal(primary.status().dirty, missed.length * EXTENT);
  await pair.secondary.listen(pair.port);
  await waitFor('the resync', () => primaryContext.messages().some((m) => m.startsWith('Synchronization complete.')));
  t.ok(primaryContext.messages().includes('Synchronization started. 384KB to go.'), 'six 64 KiB extents to copy');
  t.ok(primaryContext.messages().some((m) => /^Synchronization complete\. 384KB synchronized in \d+s \([0-9.]+[KMG]?B\/sec\)\.$/.test(m)));
  await assertIdentical(t, pair, 'identical after the resync');
});

t.test('a write the secondary fails is recorded for sync and repaired at the next connection (defect #9)', async (t) => {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const disks: FaultyStore[] = [];
  const port = await node.listen(undefined, {
    openComponent: async (file) => {
      const disk = new FaultyStore(await LocalComponent.open(file));
      disks.push(disk);
      return disk;
    },
  });
  t.teardown(() => node.stop());
  const context = recordingContext();
  const primary = await PrimaryWorker.start(hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' }), context, {
    reconnectMs: 100,
  });
  t.teardown(() => primary.stop());
  await waitFor('the first sync', () => context.messages().includes('Nodes are in sync.'));
  const localoff = Number((await metadataOf(secondaryPath)).localoff);
  disks[0]!.failWritesAt(localoff + 7 * EXTENT);
  await primary.device.write(7 * EXTENT, pattern(8 * KiB, 7));
  t.equal(primary.status().dirty, EXTENT, 'the failed extent needs a sync');
  t.ok(context.messages().includes(`Remote request failed (Input/output error): WRITE(${7 * EXTENT}, 8192).`));
  await node.stopSecondary();
  await waitFor('the resync', () => context.messages().some((m) => m.startsWith('Synchronization complete.')));
  t.equal(primary.status().dirty, 0);
  await primary.stop();
  await node.stop();
  t.equal(Buffer.compare(await dataOf(primaryPath), await dataOf(secondaryPath)), 0, 'identical after the resync');
});

t.test('a failed local write the secondary took stands in every mode: read from the peer, copied back by the sync', async (t) => {
  for (const mode of ['fullsync', 'memsync', 'async'] as const) {
    let disk: FaultyStore | undefined;
    const pair = await startPair(t, {
      replication: mode,
      primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) },
    });
    const localoff = Number((await metadataOf(pair.primaryPath)).localoff);
    disk!.failWritesAt(localoff + 5 * EXTENT);
    await pair.primary.device.write(5 * EXTENT, pattern(4 * KiB, 1));
    t.equal(pair.primary.status().statistics.writeErrors, 1n, `${mode}: counted`);
    t.equal(pair.primary.status().status, 'degraded', `${mode}: degraded while the peer holds the only good copy`);
    t.same(await pair.primary.device.read(5 * EXTENT, 4 * KiB), pattern(4 * KiB, 1), `${mode}: read from the peer`);
    t.same((await metadataOf(pair.primaryPath)).peerExtents, [5], `${mode}: recorded in the metadata`);
    t.ok(pair.primaryContext.messages().includes('The local component is failing: the extents it could not write are served by the peer until the sync rewrites them.'));
    // The sync it asked for cannot write the extent back while the disk fails; once healed, the next one does.
    await waitFor('the failed sync', () => pair.primaryContext.messages().some((m) => m.startsWith('Synchronization left 1 extent(s) dirty')));
    disk!.heal();
    await pair.secondary.stopSecondary();
    await waitFor('the repair', () => pair.primary.status().status === 'complete' && pair.primary.status().dirty === 0);
    t.same((await metadataOf(pair.primaryPath)).peerExtents, undefined, `${mode}: repaired`);
    await assertIdentical(t, pair, `${mode}: the primary's copy was rewritten from the secondary's`);
    t.same((await dataOf(pair.primaryPath)).subarray(5 * EXTENT, 5 * EXTENT + 4 * KiB), pattern(4 * KiB, 1), `${mode}: the acknowledged write is there`);
  }
});

t.test('a failed local write is an error when the secondary is away', async (t) => {
  let disk: FaultyStore | undefined;
  const pair = await startPair(t, { primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) } });
  const localoff = Number((await metadataOf(pair.primaryPath)).localoff);
  const secondary = pair.secondary.worker!;
  // The secondary misses a write to extent 6, so its copy of extent 6 is out of date until the next sync.
  await pair.secondary.stopSecondary();
  await secondary.done;
  await pair.primary.device.write(6 * EXTENT, pattern(4 * KiB, 2));
  disk!.failWritesAt(localoff + 6 * EXTENT + 8 * KiB);
  await t.rejects(pair.primary.device.write(6 * EXTENT + 8 * KiB, pattern(4 * KiB, 3)), new BlockIoError('EIO', `WRITE(${6 * EXTENT + 8 * KiB}, 4096) failed on the local component`));
  t.same((await metadataOf(pair.primaryPath)).peerExtents, undefined, 'nothing is peer-held');
});

t.test('a component that disappears leaves the resource running from the peer, degraded', async (t) => {
  let disk: FaultyStore | undefined;
  const pair = await startPair(t, { primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) } });
  await pair.primary.device.write(0, pattern(8 * KiB, 1));
  disk!.vanish();
  for (let extent = 10; extent < 14; extent++) await pair.primary.device.write(extent * EXTENT, pattern(4 * KiB, extent));
  t.same(await pair.primary.device.read(0, 8 * KiB), pattern(8 * KiB, 1), 'old data is read from the peer');
  t.same(await pair.primary.device.read(12 * EXTENT, 4 * KiB), pattern(4 * KiB, 12), 'new data is read from the peer');
  const status = pair.primary.status();
  t.equal(status.status, 'degraded');
  t.ok(status.statistics.writeErrors >= 4n && status.statistics.readErrors >= 1n, `errors counted: ${JSON.stringify(status.statistics, (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))}`);
  await pair.primary.device.flush().catch(() => undefined);
  await pair.secondary.stop();
  t.same((await dataOf(pair.secondaryPath)).subarray(13 * EXTENT, 13 * EXTENT + 4 * KiB), pattern(4 * KiB, 13), 'the secondary has the writes');
});

t.test('a failed local read is served by the secondary', async (t) => {
  let disk: FaultyStore | undefined;
  const pair = await startPair(t, { primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) } });
  await pair.primary.device.write(0, pattern(4 * KiB, 1));
  disk!.failReadsAt(Number((await metadataOf(pair.primaryPath)).localoff));
  t.same(await pair.primary.device.read(0, 4 * KiB), pattern(4 * KiB, 1));
  t.equal(pair.primary.status().statistics.readErrors, 1n);
  t.ok(pair.primaryContext.messages().some((m) => /^Local request failed \(.*\), trying remote node\. READ\(0, 4096\)\.$/.test(m)));
});

t.test('async keeps at most HAST_HIO_MAX requests in flight', async (t) => {
  const dir = await scratchDir(t, { memory: true });
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  let secondaryDisk: FaultyStore | undefined;
  const port = await node.listen(undefined, { openComponent: async (file) => (secondaryDisk = new FaultyStore(await LocalComponent.open(file))) });
  t.teardown(() => node.stop());
  const context = recordingContext();
  const primary = await PrimaryWorker.start(
    hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1', replication: 'async' }),
    context,
  );
  t.teardown(() => primary.stop());
  await waitFor('the first sync', () => context.messages().includes('Nodes are in sync.'));
  const release = secondaryDisk!.holdWrites();
  let acknowledged = 0;
  const writes = Array.from({ length: 3 * HAST_HIO_MAX }, (_, i) => primary.device.write((i % 512) * 4 * KiB, pattern(4 * KiB, i)).then(() => acknowledged++));
  await waitFor('a slot-full of acknowledgements', () => acknowledged === HAST_HIO_MAX);
  await sleep(200);
  t.equal(acknowledged, HAST_HIO_MAX, 'async acknowledged as many writes as there are slots, no more');
  t.equal(primary.status().queues.idle, 0);
  t.equal(primary.status().queues.send, 2 * HAST_HIO_MAX, 'the rest wait for a slot');
  release();
  await Promise.all(writes);
  t.equal(acknowledged, 3 * HAST_HIO_MAX);
  await waitFor('the secondary to catch up', () => primary.status().queues.idle === HAST_HIO_MAX);
  await primary.stop();
  await node.stop();
  t.equal(Buffer.compare(await dataOf(primaryPath), await dataOf(secondaryPath)), 0, 'identical once drained');
});

// Two components that were connected before, with counters as given and the secondary's data differing.
async function knownPair(t: Test, primary: [bigint, bigint], secondary: [bigint, bigint], secondaryDirty: number[]) {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  for (const [path, [localcnt, remotecnt], role] of [
    [primaryPath, primary, 'primary'],
    [secondaryPath, secondary, 'secondary'],
  ] as const) {
    const metadata = await metadataOf(path);
    await poke(path, 0, encodeMetadata({ ...metadata, resuid: 77n, localcnt, remotecnt, prevrole: role }));
  }
  const map = Buffer.alloc(512);
  for (const extent of secondaryDirty) map[extent >> 3]! |= 1 << (extent & 7);
  await poke(secondaryPath, METADATA_SIZE, map);
  const localoff = Number((await metadataOf(secondaryPath)).localoff);
  for (const extent of secondaryDirty) await poke(secondaryPath, localoff + extent * EXTENT, pattern(EXTENT, 100 + extent));
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const port = await node.listen();
  t.teardown(() => node.stop());
  const context = recordingContext();
  const resource = hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' });
  return { node, port, context, resource, primaryPath, secondaryPath };
}

t.test('an out-of-date primary copies from the secondary and reads from it meanwhile', async (t) => {
  const { node, context, resource, primaryPath, secondaryPath } = await knownPair(t, [1n, 1n], [2n, 1n], [2, 6]);
  const primary = await PrimaryWorker.start(resource, context);
  t.teardown(() => primary.stop());
  await waitFor('the sync', () => context.messages().some((m) => m.startsWith('Synchronization complete.')));
  t.same(await primary.device.read(2 * EXTENT, 4 * KiB), pattern(EXTENT, 102).subarray(0, 4 * KiB), 'the secondary data won');
  await primary.stop();
  await node.stop();
  t.equal(Buffer.compare(await dataOf(primaryPath), await dataOf(secondaryPath)), 0);
  t.match(await metadataOf(primaryPath), { localcnt: 1n, remotecnt: 2n }, 'the primary now mirrors the secondary counters');
  t.match(await metadataOf(secondaryPath), { localcnt: 2n, remotecnt: 1n });
});

t.test('while out of date the primary reads from the secondary; a failed sync chunk stays dirty', async (t) => {
  const { node, context, resource, primaryPath } = await knownPair(t, [1n, 1n], [2n, 1n], [4]);
  const localoff = Number((await metadataOf(primaryPath)).localoff);
  let disk: FaultyStore | undefined;
  const primary = await PrimaryWorker.start(resource, context, {
    reconnectMs: 100,
    openComponent: async (file) => {
      disk = new FaultyStore(await LocalComponent.open(file));
      disk.failWritesAt(localoff + 4 * EXTENT);
      return disk;
    },
  });
  t.teardown(() => primary.stop());
  await waitFor('the failed sync', () => context.messages().some((m) => m.startsWith('Synchronization left')));
  t.ok(context.messages().includes('Synchronization left 1 extent(s) dirty after errors; they are copied again at the next connection.'));
  t.notOk(context.events.includes('syncdone'));
  t.equal(primary.status().dirty, EXTENT, 'the extent is still to be copied');
  disk!.log.length = 0;
  t.same(await primary.device.read(4 * EXTENT, 4 * KiB), pattern(EXTENT, 104).subarray(0, 4 * KiB), 'the secondary has the good copy');
  t.same(disk!.log.filter((entry) => entry.startsWith('read')), [], 'not read locally');
  disk!.heal();
  await node.stopSecondary();
  await waitFor('the repaired sync', () => context.events.includes('syncdone'));
  t.equal(primary.status().dirty, 0);
  t.same(await primary.device.read(4 * EXTENT, 4 * KiB), pattern(EXTENT, 104).subarray(0, 4 * KiB));
});

t.test('split-brain is refused on both nodes and reported', async (t) => {
  const { node, context, resource } = await knownPair(t, [2n, 1n], [2n, 1n], []);
  const primary = await PrimaryWorker.start(resource, context, { reconnectMs: 100 });
  t.teardown(() => primary.stop());
  await waitFor('the refusal', () => context.events.includes('split-brain'));
  t.ok(context.messages().includes('Split-brain condition!'));
  t.equal(primary.status().status, 'degraded');
  await waitFor('the secondary event', () => node.context.events.includes('split-brain'));
  await primary.device.write(0, pattern(512, 1));
  t.pass('the primary keeps serving');
});

t.test('a remote primary is waited for, then the primary starts anyway', async (t) => {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  node.role = 'primary';
  const port = await node.listen();
  t.teardown(() => node.stop());
  const context = recordingContext();
  const primary = await PrimaryWorker.start(
    hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1', timeout: 1 }),
    context,
    { reconnectMs: 100 },
  );
  t.teardown(() => primary.stop());
  await primary.device.write(0, pattern(512, 1));
  await waitFor('giving up waiting', () => context.messages().includes('Remote node is still primary, starting anyway.'), 5000);
  t.ok(context.messages().includes('Waiting for remote node to become secondary for 1s.'));
  t.ok(context.messages().includes('Remote node acts as primary for the resource and not as secondary.'));
  node.role = 'secondary';
  await waitFor('the connection', () => primary.status().status === 'complete');
  t.ok(context.messages().includes(`Successfully reconnected to tcp4://127.0.0.2:${port}.`));
});

t.test('nodes of different sizes do not connect', async (t) => {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary', 2 * 1024 * 1024);
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const port = await node.listen();
  t.teardown(() => node.stop());
  const context = recordingContext();
  const primary = await PrimaryWorker.start(hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' }), context);
  t.teardown(() => primary.stop());
  const local = (await metadataOf(primaryPath)).datasize;
  const remote = (await metadataOf(secondaryPath)).datasize;
  await waitFor('the refusal', () => context.messages().includes(`Data size differs between nodes (local=${local}, remote=${remote}).`));
  t.equal(primary.status().status, 'degraded');
});
