import t from 'tap';
import type { Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ReplicationMode } from '../../src/config/hast-conf.js';
import { MAXPHYS } from '../../src/engine/activemap.js';
import { BlockIoError } from '../../src/engine/block-device.js';
import { ComponentBusyError, LocalComponent } from '../../src/engine/local-component.js';
import { encodeMetadata, METADATA_SIZE, MetadataError } from '../../src/engine/metadata.js';
import { PrimaryWorker } from '../../src/engine/primary.js';
import { HAST_HIO_MAX } from '../../src/engine/request-slots.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import {
  EXTENT,
  KiB,
  createComponentFile,
  dataOf,
  hastResource,
  metadataOf,
  ondiskDirtyExtents,
  pattern,
  poke,
  recordingContext,
  scratchDir,
} from '../fixtures/replication-pair.js';

// A primary with `remote none` on a fresh component, its disk behind a FaultyStore.
async function soloPrimary(t: Test, replication: ReplicationMode = 'fullsync', path?: string) {
  const local = path ?? (await createComponentFile(await scratchDir(t), 'component'));
  let disk: FaultyStore | undefined;
  const context = recordingContext();
  const worker = await PrimaryWorker.start(hastResource({ local, replication }), context, {
    openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))),
  });
  t.teardown(() => worker.stop());
  return { worker, disk: disk!, path: local, context };
}

t.test('a primary without a peer serves its local component', async (t) => {
  const { worker, path } = await soloPrimary(t);
  const { device } = worker;
  const metadata = await metadataOf(path);
  t.equal(device.size, Number(metadata.datasize));
  t.equal(device.blockSize, 512);
  t.equal(device.maxRequest, MAXPHYS);
  t.equal(metadata.prevrole, 'primary', 'the role is recorded in the metadata');
  await device.write(64 * KiB, pattern(8 * KiB, 1));
  t.same(await device.read(64 * KiB, 8 * KiB), pattern(8 * KiB, 1));
  await device.flush();
  await worker.stop();
  t.same((await dataOf(path)).subarray(64 * KiB, 72 * KiB), pattern(8 * KiB, 1), 'the data sits at localoff on the component');
});

t.test('status: degraded without a peer, with hastd counters', async (t) => {
  const { worker } = await soloPrimary(t, 'memsync');
  await worker.device.write(0, pattern(4 * KiB, 1));
  await worker.device.write(EXTENT, pattern(4 * KiB, 2));
  await worker.device.read(0, 512);
  await worker.device.trim(0, 512);
  await worker.device.flush();
  const status = worker.status();
  t.equal(status.status, 'degraded');
  t.equal(status.replication, 'memsync');
  t.equal(status.extentsize, EXTENT);
  t.equal(status.keepdirty, 4);
  t.equal(status.dirty, 2 * EXTENT, 'extents the peer never got stay dirty');
  t.match(status.statistics, { reads: 1n, writes: 2n, deletes: 1n, flushes: 1n, readErrors: 0n, writeErrors: 0n });
  t.ok(status.statistics.activemapUpdates >= 2n, 'the map was written for each new extent');
  t.same(status.queues, { local: 0, send: 0, recv: 0, done: 0, idle: HAST_HIO_MAX });
});

t.test('writes the peer missed are marked on disk before they are acknowledged', async (t) => {
  const { worker, path } = await soloPrimary(t);
  await worker.device.write(3 * EXTENT - 4 * KiB, pattern(8 * KiB, 1));
  t.same(await ondiskDirtyExtents(path), [2, 3]);
  await worker.device.trim(10 * EXTENT, 2 * EXTENT);
  t.same(await ondiskDirtyExtents(path), [2, 3, 10, 11], 'a trim is recorded like a write');
});

t.test('requests outside the device or not aligned are refused', async (t) => {
  const { worker } = await soloPrimary(t);
  const { device } = worker;
  const size = device.size;
  const refusals: Array<[Promise<unknown>, string]> = [
    [device.read(100, 512), 'READ(100, 512): offset and length must be multiples of the 512-byte block size'],
    [device.write(0, Buffer.alloc(100)), 'WRITE(0, 100): offset and length must be multiples of the 512-byte block size'],
    [device.read(size - 512, 1024), `READ(${size - 512}, 1024): the request ends past the ${size}-byte device`],
    [device.read(0, MAXPHYS + 512), `READ(0, ${MAXPHYS + 512}): the request is longer than ${MAXPHYS} bytes`],
    [device.write(0, Buffer.alloc(MAXPHYS + 512)), `WRITE(0, ${MAXPHYS + 512}): the request is longer than ${MAXPHYS} bytes`],
    [device.read(-512, 512), 'READ(-512, 512): offset must be a non-negative integer and length a positive one'],
    [device.read(0, 0), 'READ(0, 0): offset must be a non-negative integer and length a positive one'],
    [device.trim(0.5, 512), 'DELETE(0.5, 512): offset must be a non-negative integer and length a positive one'],
  ];
  for (const [request, message] of refusals) await t.rejects(request, new BlockIoError('EINVAL', message));
  await device.trim(0, 4 * MAXPHYS);
  t.same(await device.read(0, 4 * KiB), Buffer.alloc(4 * KiB), 'a trim may be longer than MAXPHYS and reads back as zeros');
  t.equal(worker.status().statistics.reads, 1n, 'refused requests are not counted');
});

t.test('a failed local write is an error in every replication mode', async (t) => {
  for (const mode of ['fullsync', 'memsync', 'async'] as const) {
    const { worker, disk, context } = await soloPrimary(t, mode);
    const metadata = await metadataOf(disk.path);
    disk.failWritesAt(Number(metadata.localoff) + 8 * KiB);
    await t.rejects(worker.device.write(8 * KiB, pattern(4 * KiB, 1)), new BlockIoError('EIO', 'WRITE(8192, 4096) failed on the local component'), mode);
    t.equal(worker.status().statistics.writeErrors, 1n, mode);
    t.ok(context.messages().includes('Local request failed (writing 4096 bytes at offset ' + (Number(metadata.localoff) + 8 * KiB) + ` of ${disk.path}: EIO: injected failure): WRITE(8192, 4096).`), mode);
    await worker.device.write(16 * KiB, pattern(4 * KiB, 2));
  }
});

t.test('a failed local read without a peer is an error', async (t) => {
  const { worker, disk } = await soloPrimary(t);
  const metadata = await metadataOf(disk.path);
  disk.failReadsAt(Number(metadata.localoff));
  await t.rejects(worker.device.read(0, 512), new BlockIoError('EIO', 'READ(0, 512) failed on the local component and the peer is not connected'));
  t.equal(worker.status().statistics.readErrors, 1n);
});

t.test('flush reaches the disk; a failing flush is an error, an unsupported one is not', async (t) => {
  const { worker, disk } = await soloPrimary(t);
  disk.log.length = 0;
  await worker.device.write(0, pattern(4 * KiB, 1), { fua: true });
  t.same(disk.log.slice(-2), [`write ${Number((await metadataOf(disk.path)).localoff)}+4096`, 'flush'], 'FUA writes, then flushes');
  disk.failFlushes('EIO');
  await t.rejects(worker.device.flush(), new BlockIoError('EIO', 'FLUSH failed on the local component'));
  t.equal(worker.status().statistics.flushErrors, 1n);
  disk.failFlushes('EOPNOTSUPP');
  await worker.device.flush();
  disk.heal();
  disk.log.length = 0;
  await worker.device.flush();
  t.same(disk.log, [], 'after EOPNOTSUPP the component is not asked again');
});

t.test('stop lets admitted requests finish and refuses the rest', async (t) => {
  const { worker, disk } = await soloPrimary(t, 'async');
  await worker.device.write(0, pattern(4 * KiB, 0));
  const release = disk.holdWrites();
  const admitted = Array.from({ length: HAST_HIO_MAX }, (_, i) => worker.device.write((i % 64) * 4 * KiB, pattern(4 * KiB, i)));
  const waiting = worker.device.write(0, pattern(4 * KiB, 999));
  await nextTurn();
  t.equal(worker.status().queues.idle, 0, 'every slot is taken');
  t.equal(worker.status().queues.send, 1, 'one request waits for a slot');
  const stopped = worker.stop();
  await t.rejects(waiting, new BlockIoError('ESHUTDOWN', 'The resource is shutting down.'));
  await t.rejects(worker.device.read(0, 512), new BlockIoError('ESHUTDOWN', 'READ(0, 512): the resource is shutting down.'));
  release();
  await Promise.all(admitted);
  await stopped;
  t.pass('all admitted writes completed');
});

t.test('start fails cleanly on a busy, foreign or broken component', async (t) => {
  const dir = await scratchDir(t);
  const path = await createComponentFile(dir, 'component');
  const context = recordingContext();
  const first = await PrimaryWorker.start(hastResource({ local: path }), context);
  await t.rejects(PrimaryWorker.start(hastResource({ local: path }), context), ComponentBusyError);
  await first.stop();

  await t.rejects(
    PrimaryWorker.start(hastResource({ local: path, name: 'other' }), context),
    new MetadataError(`Provider ${path} is not part of resource other.`),
  );
  const good = await metadataOf(path);
  await poke(path, 0, encodeMetadata({ ...good, extentsize: 3000 }));
  await t.rejects(PrimaryWorker.start(hastResource({ local: path }), context), /^Metadata read from .* is invalid: extentsize 3000 is not a power of two\.$/);
  await poke(path, 0, encodeMetadata({ ...good, datasize: good.datasize * 2n }));
  await t.rejects(PrimaryWorker.start(hastResource({ local: path }), context), MetadataError);
  await poke(path, 0, encodeMetadata({ ...good, localoff: BigInt(METADATA_SIZE) }));
  await t.rejects(
    PrimaryWorker.start(hastResource({ local: path }), context),
    new MetadataError(`Metadata read from ${path} is invalid: the 512-byte activemap overlaps the data at offset 4096.`),
  );
  await poke(path, 0, Buffer.alloc(METADATA_SIZE));
  await t.rejects(PrimaryWorker.start(hastResource({ local: path }), context), new MetadataError(`Unable to read metadata from ${path}.`));
  await poke(path, 0, encodeMetadata(good));
  const again = await PrimaryWorker.start(hastResource({ local: path }), context);
  await again.stop();
  t.pass('every failed start closed the component again');
});

t.test('extents marked on disk at startup need a sync', async (t) => {
  const path = await createComponentFile(await scratchDir(t), 'component');
  await poke(path, METADATA_SIZE, Buffer.from([0b00100101]));
  const { worker } = await soloPrimary(t, 'fullsync', path);
  t.equal(worker.status().dirty, 3 * EXTENT);
  await worker.stop();
  t.same(await ondiskDirtyExtents(path), [0, 2, 5], 'they stay marked until synchronised');
});

t.test('localcnt: bumped once per disconnected period, in every worker lifetime (defect #10)', async (t) => {
  const path = await createComponentFile(await scratchDir(t), 'component');
  const fresh = await metadataOf(path);
  // A resource that has been in sync with its peer: counters as a completed sync leaves them.
  await poke(path, 0, encodeMetadata({ ...fresh, resuid: 42n, localcnt: 5n, remotecnt: 4n }));
  let { worker } = await soloPrimary(t, 'fullsync', path);
  t.match(await metadataOf(path), { localcnt: 5n, remotecnt: 4n, resuid: 42n }, 'start keeps the counters of a known resource');
  await worker.device.write(0, pattern(4 * KiB, 1));
  await worker.device.write(4 * KiB, pattern(4 * KiB, 2));
  t.match(await metadataOf(path), { localcnt: 6n, remotecnt: 4n }, 'the first missed write bumps localcnt, later ones do not');
  await worker.stop();
  ({ worker } = await soloPrimary(t, 'fullsync', path));
  await worker.device.write(0, pattern(4 * KiB, 3));
  t.match(await metadataOf(path), { localcnt: 7n }, 'a restarted worker bumps again rather than never');
  await worker.stop();
  const raw = await readFile(path);
  t.equal(raw.length, 4 * 1024 * 1024, 'the component keeps its size');
});

t.test('a never-connected resource starts from zero and counts its first write', async (t) => {
  const path = await createComponentFile(await scratchDir(t), 'component');
  const fresh = await metadataOf(path);
  await poke(path, 0, encodeMetadata({ ...fresh, localcnt: 3n, remotecnt: 3n }));
  const { worker } = await soloPrimary(t, 'fullsync', path);
  t.match(await metadataOf(path), { localcnt: 0n, remotecnt: 0n, resuid: 0n, prevrole: 'primary' });
  await worker.device.write(0, pattern(4 * KiB, 1));
  await worker.device.write(EXTENT, pattern(4 * KiB, 1));
  t.match(await metadataOf(path), { localcnt: 1n, resuid: 0n });
});

t.test('unreadable metadata or activemap fails the start with the path', async (t) => {
  const dir = await scratchDir(t);
  const path = await createComponentFile(dir, 'component');
  const context = recordingContext();
  const failing = (offset: number) => async (file: string) => {
    const disk = new FaultyStore(await LocalComponent.open(file));
    disk.failReadsAt(offset);
    return disk;
  };
  await t.rejects(PrimaryWorker.start(hastResource({ local: path }), context, { openComponent: failing(0) }), new MetadataError(`Unable to read metadata from ${path}.`));
  await t.rejects(
    PrimaryWorker.start(hastResource({ local: path }), context, { openComponent: failing(METADATA_SIZE) }),
    new MetadataError(`Unable to read activemap from ${path}.`),
  );
  const tiny = `${dir}/tiny`;
  await (await import('node:fs/promises')).writeFile(tiny, Buffer.alloc(2000));
  await t.rejects(
    PrimaryWorker.start(hastResource({ local: tiny }), context),
    new MetadataError(`Unable to read metadata from ${tiny}: the component has only 2000 bytes.`),
  );
});

t.test('a metadata write failure does not fail the write that caused it', async (t) => {
  const { worker, disk, context, path } = await soloPrimary(t);
  disk.failWritesAt(0);
  await worker.device.write(0, pattern(4 * KiB, 1));
  t.same(await worker.device.read(0, 4 * KiB), pattern(4 * KiB, 1));
  t.ok(context.messages().some((m) => m.startsWith(`Unable to write metadata to ${path}.: writing 4096 bytes at offset 0`)));
});
