import t from 'tap';
import type { Test } from 'tap';
import { LocalComponent } from '../../src/engine/local-component.js';
import { encodeMetadata } from '../../src/engine/metadata.js';
import { PrimaryWorker, type PrimaryOptions } from '../../src/engine/primary.js';
import { SYNC_WINDOW, formatDuration } from '../../src/engine/primary-sync.js';
import type { OpenComponent } from '../../src/engine/resource-component.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import {
  EXTENT,
  KiB,
  SecondaryNode,
  createComponentFile,
  dataOf,
  hastResource,
  metadataOf,
  pattern,
  poke,
  recordingContext,
  scratchDir,
  waitFor,
} from '../fixtures/replication-pair.js';

// A FaultyStore-wrapping opener that remembers the store it opened last.
// Opens a component behind a FaultyStore the test can reach once it is open.
function faultyOpener(): { open: OpenComponent; disk: () => FaultyStore | undefined } {
  let disk: FaultyStore | undefined;
  return { open: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))), disk: () => disk };
}

// Opens the secondary's component behind a FaultyStore. The first time, its data writes (not its metadata or
// map) are held from the start until release() is called, so the sync cannot finish before the test looks.
function heldOpener(): { open: OpenComponent; release: () => void } {
  let release: (() => void) | undefined;
  const open: OpenComponent = async (file) => {
    const { localoff } = await metadataOf(file);
    const disk = new FaultyStore(await LocalComponent.open(file));
    release ??= disk.holdWrites(Number(localoff));
    return disk;
  };
  return { open, release: () => release?.() };
}

// A primary holding data (it has connected before, localcnt 1) and a freshly created secondary: the
// secondary asks for everything.
async function fullSyncPair(t: Test, options: { primary?: PrimaryOptions; secondary?: OpenComponent } = {}) {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const metadata = await metadataOf(primaryPath);
  await poke(primaryPath, 0, encodeMetadata({ ...metadata, resuid: 77n, localcnt: 1n, remotecnt: 0n }));
  const localoff = Number(metadata.localoff);
  for (let extent = 0; extent < Number(metadata.datasize) / EXTENT; extent += 5) await poke(primaryPath, localoff + extent * EXTENT, pattern(EXTENT, extent));
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const port = await node.listen(undefined, { openComponent: options.secondary });
  t.teardown(() => node.stop());
  const context = recordingContext();
  const resource = hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' });
  const primary = await PrimaryWorker.start(resource, context, { reconnectMs: 50, ...options.primary });
  t.teardown(() => primary.stop());
  return { node, port, context, primary, primaryPath, secondaryPath, datasize: Number(metadata.datasize) };
}

t.test('a fresh secondary gets a full copy; the counters then match', async (t) => {
  const { node, context, primary, primaryPath, secondaryPath, datasize } = await fullSyncPair(t);
  await waitFor('the sync', () => context.events.includes('syncdone'));
  t.equal(Math.ceil(datasize / EXTENT) * EXTENT, 4 * 1024 * 1024, 'the fixture has 64 extents');
  t.ok(context.messages().includes('Synchronization started. 4.0MB to go.'));
  t.ok(context.messages().some((m) => /^Synchronization complete\. 4\.0MB synchronized in \d+s \([0-9.]+[KMG]?B\/sec\)\.$/.test(m)));
  t.same(context.events, ['connect', 'syncstart', 'syncdone']);
  await primary.stop();
  await node.stop();
  t.equal(Buffer.compare(await dataOf(primaryPath), await dataOf(secondaryPath)), 0, 'identical');
  t.match(await metadataOf(primaryPath), { resuid: 77n, localcnt: 0n, remotecnt: 0n });
  t.match(await metadataOf(secondaryPath), { resuid: 77n, localcnt: 0n, remotecnt: 0n });
});

t.test('an interrupted sync is reported and resumed at the next connection', async (t) => {
  const secondary = heldOpener();
  const { node, port, context, primary, primaryPath, secondaryPath } = await fullSyncPair(t, { secondary: secondary.open });
  await waitFor('the sync to start', () => context.events.includes('syncstart'));
  const stopping = node.stop();
  secondary.release();
  await stopping;
  await waitFor('the interruption', () => context.events.includes('syncintr'));
  t.ok(context.messages().some((m) => /^Synchronization interrupted after \d+s\. [0-9.]+[KM]?B synchronized so far\.$/.test(m)));
  t.ok(primary.status().dirty > 0, 'what was not copied is still dirty');
  await node.listen(port, { openComponent: secondary.open });
  await waitFor('the resumed sync', () => context.events.includes('syncdone'));
  t.same(context.events, ['connect', 'syncstart', 'disconnect', 'syncintr', 'connect', 'syncstart', 'syncdone']);
  t.equal(primary.status().dirty, 0);
  await primary.stop();
  await node.stop();
  t.equal(Buffer.compare(await dataOf(primaryPath), await dataOf(secondaryPath)), 0, 'identical');
});

t.test('several chunks are in flight, and a running sync logs its progress with a rate', async (t) => {
  const secondary = heldOpener();
  const { node, context, primary } = await fullSyncPair(t, { secondary: secondary.open, primary: { syncProgressMs: 50 } });
  await waitFor('the window to fill', () => (node.worker?.status().statistics.writes ?? 0n) >= BigInt(SYNC_WINDOW));
  await waitFor('a progress line', () => context.messages().some((m) => m.startsWith('Synchronization in progress:')));
  t.equal(node.worker!.status().statistics.writes, BigInt(SYNC_WINDOW), `no more than ${SYNC_WINDOW} chunks in flight`);
  t.ok(context.messages().includes('Synchronization in progress: 4.0MB to go, 0B/sec.'), 'nothing copied while the secondary holds the writes');
  secondary.release();
  await waitFor('the sync', () => context.events.includes('syncdone'));
  t.ok(context.messages().some((m) => /^Synchronization in progress: [0-9.]+[KM]?B to go, [0-9.]+[KM]?B\/sec\.$/.test(m)));
  t.equal(primary.status().dirty, 0);
});

t.test('--sync-rate caps the copy', async (t) => {
  const { context } = await fullSyncPair(t, { primary: { syncRate: 8 * 1024 * 1024 } });
  const started = Date.now();
  await waitFor('the sync', () => context.events.includes('syncdone'));
  // 4 MiB at 8 MiB/s: the last 128 KiB chunk may start no earlier than 0.48 s after the first.
  t.ok(Date.now() - started >= 450, `took ${Date.now() - started} ms`);
});

// A primary and a secondary that were in sync (same resuid, matching counters, clean maps), with extents 4
// and 6 differing between them and `peerExtents` in either node's metadata.
async function inSyncPair(t: Test, peerExtents: { primary?: number[]; secondary?: number[] }) {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  const metadata = await metadataOf(primaryPath);
  const localoff = Number(metadata.localoff);
  const counters = { resuid: 77n, localcnt: 1n, remotecnt: 1n };
  await poke(primaryPath, 0, encodeMetadata({ ...metadata, ...counters, peerExtents: peerExtents.primary }));
  await poke(secondaryPath, 0, encodeMetadata({ ...metadata, ...counters, peerExtents: peerExtents.secondary }));
  for (const extent of [4, 6]) {
    await poke(primaryPath, localoff + extent * EXTENT, pattern(EXTENT, 10 + extent));
    await poke(secondaryPath, localoff + extent * EXTENT, pattern(EXTENT, 20 + extent));
  }
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const port = await node.listen();
  t.teardown(() => node.stop());
  const context = recordingContext();
  const resource = hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' });
  const primary = await PrimaryWorker.start(resource, context, { reconnectMs: 50 });
  t.teardown(() => primary.stop());
  await waitFor('the sync', () => context.events.includes('syncdone'));
  await primary.stop();
  await node.stop();
  const [primaryData, secondaryData] = [await dataOf(primaryPath), await dataOf(secondaryPath)];
  const extentOf = (data: Buffer, extent: number) => data.subarray(extent * EXTENT, (extent + 1) * EXTENT);
  return { context, primaryPath, secondaryPath, extentOf, primaryData, secondaryData };
}

t.test("a primary restarted with peer-held extents copies them back from the peer, not over it", async (t) => {
  const { context, primaryPath, extentOf, primaryData, secondaryData } = await inSyncPair(t, { primary: [4] });
  t.ok(context.messages().includes('Synchronization started. 64KB to go.'), 'only the peer-held extent travels');
  t.same(extentOf(primaryData, 4), pattern(EXTENT, 24), "the peer's copy of extent 4 replaced the stale local one");
  t.same(extentOf(secondaryData, 4), pattern(EXTENT, 24), "the peer's copy is untouched");
  t.same(extentOf(primaryData, 6), pattern(EXTENT, 16), 'other extents are left alone');
  t.equal((await metadataOf(primaryPath)).peerExtents, undefined, 'the list is cleared once repaired');
});

t.test('a secondary with peer-held extents asks its primary for them', async (t) => {
  const { context, secondaryPath, extentOf, secondaryData } = await inSyncPair(t, { secondary: [6] });
  t.ok(context.messages().includes('Synchronization started. 64KB to go.'));
  t.same(extentOf(secondaryData, 6), pattern(EXTENT, 16), "the primary's copy of extent 6 reached the secondary");
  t.same(extentOf(secondaryData, 4), pattern(EXTENT, 24), 'other extents are left alone');
  t.equal((await metadataOf(secondaryPath)).peerExtents, undefined, 'the secondary cleared its list once the primary had it');
});

t.test('a chunk that cannot be read stays dirty', async (t) => {
  const local = faultyOpener();
  const dir = await scratchDir(t);
  const path = await createComponentFile(dir, 'probe');
  const localoff = Number((await metadataOf(path)).localoff);
  const { context, primary } = await fullSyncPair(t, {
    primary: {
      openComponent: async (file) => {
        const store = await local.open(file);
        local.disk()!.failReadsAt(localoff + 3 * EXTENT);
        return store;
      },
    },
  });
  await waitFor('the end of the sync', () => context.messages().some((m) => m.startsWith('Synchronization left')));
  t.ok(context.messages().some((m) => m.startsWith(`Unable to read synchronization data: reading ${EXTENT} bytes at offset ${localoff + 3 * EXTENT} of`)));
  t.ok(context.messages().includes('Synchronization left 1 extent(s) dirty after errors; they are copied again at the next connection.'));
  t.equal(primary.status().dirty, EXTENT);
  t.notOk(context.events.includes('syncdone'));
});

t.test('a sync that cannot record its end says so', async (t) => {
  const dir = await scratchDir(t);
  const primaryPath = await createComponentFile(dir, 'primary');
  const secondaryPath = await createComponentFile(dir, 'secondary');
  for (const path of [primaryPath, secondaryPath]) {
    const metadata = await metadataOf(path);
    await poke(path, 0, encodeMetadata({ ...metadata, resuid: 5n }));
  }
  const node = new SecondaryNode(hastResource({ local: secondaryPath, remote: 'tcp4://127.0.0.1' }));
  const port = await node.listen();
  t.teardown(() => node.stop());
  const local = faultyOpener();
  const context = recordingContext();
  const primary = await PrimaryWorker.start(
    hastResource({ local: primaryPath, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' }),
    context,
    { openComponent: local.open },
  );
  t.teardown(() => primary.stop());
  local.disk()!.failWritesAt(0);
  await waitFor('the failure', () => context.messages().some((m) => m.startsWith('Synchronization failed: ')));
  t.ok(context.messages().includes('Nodes are in sync.'));
  t.match(context.messages().find((m) => m.startsWith('Synchronization failed: ')), `Synchronization failed: Unable to write metadata to ${primaryPath}.`);
  await primary.device.write(0, pattern(4 * KiB, 1));
  t.pass('the primary keeps serving');
});

t.test('durations are written as hastd logs them', async (t) => {
  t.equal(formatDuration(0), '0s');
  t.equal(formatDuration(999), '0s');
  t.equal(formatDuration(61_000), '1m1s');
  t.equal(formatDuration(3_600_000), '1h');
  t.equal(formatDuration(90_061_000), '1d1h1m1s');
  t.equal(formatDuration(86_400_000 + 5_000), '1d0h0m5s', 'units after the first are written while seconds remain');
});
