import t from 'tap';
import type { Test } from 'tap';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { Activemap, isExtentMarked } from '../../src/engine/activemap.js';
import { ActivemapStore } from '../../src/engine/activemap-store.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import { scratchDir } from '../fixtures/replication-pair.js';

const MiB = 1024 * 1024;
const MAP_OFFSET = 4096;
const NEXTENTS = 10;
const DATA_OFFSET = MAP_OFFSET + 512;

interface Rig {
  path: string;
  disk: FaultyStore;
  map: Activemap;
  store: ActivemapStore;
  // Errors of background tidy writes.
  tidyErrors: Error[];
}

// A component file laid out as hastd does (metadata, one-sector map, ten 1 MiB extents) behind a FaultyStore.
async function rig(t: Test, options: { keepdirty?: number; metaflush?: boolean; tidyDelayMs?: number } = {}): Promise<Rig> {
  // In memory: the checked operation logs must finish well before a tidy timer, even on a loaded machine.
  const dir = await scratchDir(t, { memory: true });
  const path = join(dir, 'component');
  await writeFile(path, '');
  await truncate(path, DATA_OFFSET + NEXTENTS * MiB);
  const disk = new FaultyStore(await LocalComponent.open(path));
  t.teardown(() => disk.close());
  const keepdirty = options.keepdirty ?? 3;
  const map = new Activemap({ datasize: NEXTENTS * MiB, extentsize: MiB, keepdirty, sectorsize: 512 });
  const tidyErrors: Error[] = [];
  const store = new ActivemapStore(map, disk, {
    mapOffset: MAP_OFFSET,
    metaflush: options.metaflush ?? true,
    tidyDelayMs: options.tidyDelayMs ?? 60_000,
    onTidyError: (error) => tidyErrors.push(error),
  });
  return { path, disk, map, store, tidyErrors };
}

// The extents the map on disk marks right now, read straight from the file.
async function onDisk(path: string): Promise<number[]> {
  const image = (await readFile(path)).subarray(MAP_OFFSET, MAP_OFFSET + 512);
  return [...Array(NEXTENTS).keys()].filter((extent) => isExtentMarked(image, extent));
}

// The tidy delay of the tests that wait for the timer: the timer starts with a test's first write, and this
// leaves its first steps, whose exact operation logs are checked, time to finish before it fires.
const TIDY_MS = 1000;

// Resolves once the store has written `count` map images (a tidy write runs on a timer).
async function mapWritesReach(store: ActivemapStore, count: number): Promise<void> {
  for (let waited = 0; store.mapWrites < count; waited += 5) {
    if (waited > 10_000) throw new Error(`${store.mapWrites} map writes after 10 s, expected ${count}`);
    await sleep(5);
  }
}

// A promise's state without waiting for it.
function watch(promise: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  promise.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

const at = (extent: number): number => extent * MiB;

// Writes to extents 0 and 1 with keepdirty 1: both marked on disk, extent 0 pushed out of the LRU by extent 1,
// neither write completed.
async function twoPendingWrites(store: ActivemapStore): Promise<void> {
  await store.beforeWrite(at(0), 4096);
  await store.beforeWrite(at(1), 4096);
}

t.test('the first write to an extent waits until the map marking it is durable, through O_DSYNC alone', async (t) => {
  const { path, disk, store } = await rig(t);
  await store.beforeWrite(at(2) + 4096, 8192);
  t.same(await onDisk(path), [2]);
  t.same(disk.log, ['durable write 4096+512'], 'no flush of the whole component');
  t.equal(store.mapWrites, 1);
  t.equal(store.metaflush, true);
});

t.test('hot extents cost no map writes; evicted ones are dropped by a later tidy write', async (t) => {
  const { path, disk, store } = await rig(t, { keepdirty: 2 });
  for (const extent of [0, 1]) {
    await store.beforeWrite(at(extent), 4096);
    store.afterWrite(at(extent), 4096);
  }
  t.equal(store.mapWrites, 2);
  for (let round = 0; round < 10; round++) {
    for (const extent of [1, 0]) {
      await store.beforeWrite(at(extent), 4096);
      store.afterWrite(at(extent), 4096);
    }
  }
  t.equal(store.mapWrites, 2, 'twenty writes to the two hot extents wrote no map');
  t.same(await onDisk(path), [0, 1], 'completed writes stay marked while in the LRU');

  await store.beforeWrite(at(5), 4096);
  t.same(await onDisk(path), [0, 1, 5], 'extent 1 left the LRU, but a marking write keeps every mark on disk');
  store.afterWrite(at(5), 4096);
  t.equal(store.mapWrites, 3);
  await store.flush();
  t.same(await onDisk(path), [0, 5], 'the tidy write dropped extent 1');
  t.same(disk.log.slice(-2), ['flush', 'durable write 4096+512'], 'after flushing the data extent 1 held');
});

t.test('an extent whose last write completes after it left the LRU is dropped by the tidy timer', async (t) => {
  const { path, disk, store, tidyErrors } = await rig(t, { keepdirty: 1, tidyDelayMs: TIDY_MS });
  await twoPendingWrites(store);
  t.same(await onDisk(path), [0, 1], 'extent 0 is evicted but its write is pending');
  store.afterWrite(at(0), 4096);
  await mapWritesReach(store, 3);
  t.same(await onDisk(path), [1]);
  t.same(disk.log, ['durable write 4096+512', 'durable write 4096+512', 'flush', 'durable write 4096+512']);
  t.same(tidyErrors, []);
});

t.test('an extent pushed out of the LRU by one already marked on disk is dropped by the tidy timer', async (t) => {
  const { path, store } = await rig(t, { keepdirty: 2, tidyDelayMs: TIDY_MS });
  for (const extent of [0, 1]) {
    await store.beforeWrite(at(extent), 4096);
    store.afterWrite(at(extent), 4096);
  }
  await store.markNeedSync(at(2), 4096);
  t.same(await onDisk(path), [0, 1, 2]);
  t.equal(store.mapWrites, 3);
  await store.beforeWrite(at(2), 4096);
  t.equal(store.mapWrites, 3, 'extent 2 was marked on disk already: no marking write');
  await mapWritesReach(store, 4);
  t.same(await onDisk(path), [1, 2], 'extent 0, pushed out, lost its mark with the tidy');
});

t.test('requests arriving while a map write is in flight share the next one', async (t) => {
  const { path, store } = await rig(t, { keepdirty: 16 });
  await Promise.all([...Array(NEXTENTS).keys()].map((extent) => store.beforeWrite(at(extent), 4096)));
  t.equal(store.mapWrites, 2, 'the first request started a write; the nine others waited for one more');
  t.same(await onDisk(path), [...Array(NEXTENTS).keys()]);
});

t.test('a write to an extent whose mark is still on its way to disk waits for it', async (t) => {
  const { path, disk, store } = await rig(t);
  const release = disk.holdWrites();
  const first = watch(store.beforeWrite(at(3), 4096));
  await nextTurn();
  const second = store.beforeWrite(at(3) + 8192, 4096);
  const secondState = watch(second);
  await nextTurn();
  t.equal(first.settled, false);
  t.equal(secondState.settled, false, 'the extent is in the LRU, but its mark has not reached the disk');
  release();
  await second;
  t.same(await onDisk(path), [3]);
  t.equal(store.mapWrites, 1, 'the image in flight already marked it: no second map write');
});

t.test('a write to another extent while a map write is in flight gets its own image', async (t) => {
  const { path, disk, store } = await rig(t);
  const release = disk.holdWrites();
  const first = store.beforeWrite(at(1), 4096);
  await nextTurn();
  const second = store.beforeWrite(at(2), 4096);
  release();
  await first;
  await second;
  t.same(await onDisk(path), [1, 2]);
  t.equal(store.mapWrites, 2);
});

t.test('a marking write issued while a tidy write is in flight still reaches the disk', async (t) => {
  const { path, disk, store } = await rig(t, { keepdirty: 1 });
  await twoPendingWrites(store);
  store.afterWrite(at(0), 4096);
  const release = disk.holdWrites();
  const tidy = store.flush();
  while (disk.heldWrites === 0) await nextTurn();
  t.same(disk.log.slice(-1), ['flush'], 'the tidy has flushed and its map write is held');
  const marking = store.beforeWrite(at(7), 4096);
  release();
  await Promise.all([tidy, marking]);
  t.same(await onDisk(path), [1, 7]);
});

t.test('a tidy holds up no marking write while it flushes, and keeps the marks of extents written meanwhile', async (t) => {
  const { path, disk, store } = await rig(t, { keepdirty: 1 });
  await twoPendingWrites(store);
  store.afterWrite(at(0), 4096);
  const release = disk.holdFlushes();
  const first = store.flush();
  const tidy = watch(first);
  await nextTurn();
  await store.beforeWrite(at(2), 4096);
  t.same(await onDisk(path), [0, 1, 2], 'marked while the flush is held');
  await store.beforeWrite(at(0), 4096);
  store.afterWrite(at(0), 4096);
  await store.beforeWrite(at(3), 4096);
  store.afterWrite(at(3), 4096);
  t.equal(tidy.settled, false);
  release();
  await first;
  t.same(await onDisk(path), [0, 1, 2, 3], 'extent 0 was written during the flush: its mark stays');
  await store.flush();
  t.same(await onDisk(path), [1, 2, 3], 'extent 0, clean again but written during the first flush, went with the second');
});

t.test('a failed map write fails the write before any data is written', async (t) => {
  const { path, disk, map, store } = await rig(t);
  disk.failWritesAt(MAP_OFFSET);
  const data = Buffer.alloc(4096, 0xab);
  const attempt = store.beforeWrite(at(4), 4096).then(() => disk.write(data, DATA_OFFSET + at(4)));
  const error = (await attempt.catch((e: unknown) => e)) as Error;
  t.equal(error.message, `Unable to write the activemap of ${path}`);
  t.equal((error.cause as Error).message, `durably writing 512 bytes at offset ${MAP_OFFSET} of ${path}`);
  t.same(disk.log, [], 'neither the map nor the data reached the disk');
  t.equal(map.dirtyExtents(), 0, 'the abandoned write is not counted as pending');
  t.equal(store.mapWrites, 0);

  disk.heal();
  t.equal(map.writeStart(at(4), 4096), false, 'the extent is in the LRU, so hastd would not rewrite the map');
  map.writeComplete(at(4), 4096);
  await store.beforeWrite(at(4), 4096);
  t.same(await onDisk(path), [4], 'but the failed write never marked it, so the store does');
  t.same(disk.log, ['durable write 4096+512']);
});

t.test('a failed flush keeps the marks of a tidy write and is reported; EOPNOTSUPP turns metaflush off', async (t) => {
  const { path, disk, store, tidyErrors } = await rig(t, { keepdirty: 1, tidyDelayMs: TIDY_MS });
  await twoPendingWrites(store);
  disk.failFlushes('EIO');
  store.afterWrite(at(0), 4096);
  for (let waited = 0; tidyErrors.length === 0 && waited < 10_000; waited += 5) await sleep(5);
  t.equal(tidyErrors[0]?.message, `Unable to write the activemap of ${path}`);
  t.equal((tidyErrors[0]?.cause as Error).message, `flushing of ${path}`);
  t.same(await onDisk(path), [0, 1], 'the data of extent 0 may not be durable: its mark stays');
  t.equal(store.metaflush, true);
  await store.beforeWrite(at(1) + 8192, 4096);
  t.equal(store.mapWrites, 2, 'requests go on: their marks are on disk');

  disk.failFlushes('EOPNOTSUPP');
  await store.flush();
  t.same(await onDisk(path), [1]);
  t.equal(store.metaflush, false);
  t.equal(store.flushUnsupported, true);
  await store.beforeWrite(at(2), 4096);
  t.same(disk.log.slice(-2), ['write 4096+512', 'write 4096+512'], 'the tidy write and the next: no flush, no O_DSYNC');
});

t.test('with metaflush off the map is written but never made durable', async (t) => {
  const { disk, store } = await rig(t, { metaflush: false, keepdirty: 1, tidyDelayMs: TIDY_MS });
  await twoPendingWrites(store);
  store.afterWrite(at(0), 4096);
  await mapWritesReach(store, 3);
  t.same(disk.log, ['write 4096+512', 'write 4096+512', 'write 4096+512']);
  t.equal(store.flushUnsupported, false);
});

t.test('a missed remote write is on disk before markNeedSync resolves, and dropped once synced', async (t) => {
  const { path, map, store } = await rig(t, { keepdirty: 1, tidyDelayMs: TIDY_MS });
  await store.beforeWrite(at(6), 4096);
  await store.markNeedSync(at(6), 4096);
  t.equal(store.mapWrites, 1, 'already marked on disk by the write itself');
  store.afterWrite(at(6), 4096);
  await store.markNeedSync(at(8), 4096);
  t.same(await onDisk(path), [6, 8]);
  t.equal(store.mapWrites, 2);

  map.syncRewind();
  for (;;) {
    const step = map.syncOffset();
    if (step.finishedExtent !== undefined) store.extentSynced(step.finishedExtent);
    if (step.range === undefined) break;
  }
  await mapWritesReach(store, 3);
  t.same(await onDisk(path), [6], 'extent 8 is clean; extent 6 is still in the LRU');
  t.equal(map.dirtyExtents(), 0);
});

t.test('flush writes the exact image after flushing the data, e.g. after loading the map at startup', async (t) => {
  const { path, disk, map, store } = await rig(t);
  map.loadOndisk(Buffer.from([0x21, 0x02]));
  await store.flush();
  t.same(await onDisk(path), [0, 5, 9]);
  t.same(disk.log, ['flush', 'durable write 4096+512']);
});

t.test('a failed tidy write is reported; the extents it flushed may go with the next map write', async (t) => {
  const { disk, store, tidyErrors } = await rig(t, { keepdirty: 1, tidyDelayMs: TIDY_MS });
  await twoPendingWrites(store);
  disk.failWritesAt(MAP_OFFSET);
  store.afterWrite(at(0), 4096);
  for (let waited = 0; tidyErrors.length === 0 && waited < 10_000; waited += 5) await sleep(5);
  t.equal(tidyErrors[0]?.message, `Unable to write the activemap of ${disk.path}`);
  disk.heal();
  await store.beforeWrite(at(2), 4096);
  t.same(disk.log.slice(-2), ['flush', 'durable write 4096+512'], "the tidy's flush, then the marking write (the tidy's own map write failed)");
  t.same(await onDisk(disk.path), [1, 2], 'extent 0, flushed and untouched, is dropped; extent 1 has a write pending');
});
