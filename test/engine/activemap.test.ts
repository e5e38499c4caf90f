import t from 'tap';
import fc from 'fast-check';
import {
  Activemap,
  ActivemapGeometryError,
  MAXPHYS,
  activemapOndiskSize,
  isExtentMarked,
} from '../../src/engine/activemap.js';
import type { ActivemapGeometry, SyncStep } from '../../src/engine/activemap.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// Ten 1 MiB extents synchronised in 256 KiB chunks (4 per extent), three kept dirty.
function smallMap(overrides: Partial<ActivemapGeometry> = {}): Activemap {
  const geometry = { datasize: 10 * MiB, extentsize: MiB, keepdirty: 3, sectorsize: 512, maxChunk: 256 * KiB };
  return new Activemap({ ...geometry, ...overrides });
}

// The extents an image marks, in order.
function marked(image: Uint8Array, nextents: number): number[] {
  const extents: number[] = [];
  for (let extent = 0; extent < nextents; extent++) if (isExtentMarked(image, extent)) extents.push(extent);
  return extents;
}

function write(map: Activemap, extent: number): boolean {
  return map.writeStart(extent * map.extentsize, 4096);
}

function complete(map: Activemap, extent: number): boolean {
  return map.writeComplete(extent * map.extentsize, 4096);
}

// Runs the sync cursor to the end, listing what it hands out.
function drainSync(map: Activemap): SyncStep[] {
  const steps: SyncStep[] = [];
  for (;;) {
    const step = map.syncOffset();
    steps.push(step);
    if (step.range === undefined) return steps;
  }
}

t.test('on-disk size: one bit per extent, rounded up to whole sectors', async (t) => {
  t.equal(activemapOndiskSize(1024 * MiB, 2 * MiB, 512), 512, '512 extents fit in one sector');
  t.equal(activemapOndiskSize(4096 * 2 * MiB + 1, 2 * MiB, 512), 1024, '4097 extents need 513 bytes');
  t.equal(activemapOndiskSize(1024 * 1024 * MiB, 2 * MiB, 512), 65536, '1 TiB in 2 MiB extents');
  t.equal(activemapOndiskSize(10 * MiB, MiB, 4096), 4096);
  const map = smallMap();
  t.equal(map.nextents, 10);
  t.equal(map.mapsize, 2);
  t.equal(map.ondiskSize, 512);
  t.equal(map.maxChunk, 256 * KiB);
  t.equal(new Activemap({ datasize: MiB, extentsize: MiB, keepdirty: 1, sectorsize: 512 }).maxChunk, MAXPHYS);
  t.equal(MAXPHYS, 131072);
});

t.test('geometries hastd asserts on are refused with the offending value', async (t) => {
  const good = { datasize: 10 * MiB, extentsize: MiB, keepdirty: 3, sectorsize: 512 };
  const cases: [Partial<typeof good> & { maxChunk?: number }, string][] = [
    [{ datasize: 0 }, 'datasize 0 is not a positive number of bytes'],
    [{ datasize: 1.5 }, 'datasize 1.5 is not a positive number of bytes'],
    [{ extentsize: 1000 }, 'extentsize 1000 is not a power of two'],
    [{ extentsize: 0 }, 'extentsize 0 is not a power of two'],
    [{ sectorsize: 520 }, 'sectorsize 520 is not a power of two'],
    [{ keepdirty: 0 }, 'keepdirty 0 is not a positive number'],
    [{ maxChunk: -1 }, 'maxChunk -1 is not a positive number of bytes'],
  ];
  for (const [change, message] of cases) {
    t.throws(() => new Activemap({ ...good, ...change }), new ActivemapGeometryError(message), message);
  }
  t.throws(() => activemapOndiskSize(MiB, 3, 512), new ActivemapGeometryError('extentsize 3 is not a power of two'));
});

t.test('bit order is FreeBSD bitstring: byte e/8, mask 1 << e%8', async (t) => {
  const map = smallMap({ keepdirty: 10 });
  for (const extent of [0, 9]) write(map, extent);
  const image = map.bitmap();
  t.equal(image.length, 512);
  t.same([...image.subarray(0, 2)], [0x01, 0x02]);
  t.ok(image.subarray(2).every((byte) => byte === 0), 'the sector padding is zero');

  const wide = new Activemap({ datasize: 16 * MiB, extentsize: MiB, keepdirty: 16, sectorsize: 512 });
  for (const extent of [1, 7, 9, 15]) write(wide, extent);
  t.same([...wide.bitmap().subarray(0, 2)], [0x82, 0x82]);
  t.same(marked(Buffer.from([0x82, 0x82]), 16), [1, 7, 9, 15]);
});

t.test('the LRU: hot extents cost no map writes, a new one evicts the least recent', async (t) => {
  const map = smallMap();
  t.equal(write(map, 0), true, 'first write to an extent needs the map');
  t.equal(write(map, 1), true);
  t.equal(write(map, 2), true);
  for (const extent of [0, 1, 2]) t.equal(complete(map, extent), false, `extent ${extent} stays dirty via the LRU`);
  for (let round = 0; round < 5; round++) {
    for (const extent of [2, 0, 1]) {
      t.equal(write(map, extent), false);
      t.equal(complete(map, extent), false);
    }
  }
  t.same(marked(map.bitmap(), 10), [0, 1, 2]);
  t.equal(map.dirtyExtents(), 0, 'nothing is dirty in memory');

  t.equal(write(map, 5), true, 'a fourth extent needs the map');
  t.same(marked(map.bitmap(), 10), [0, 1, 5], 'extent 2, written least recently, is evicted and cleared lazily');
  t.equal(complete(map, 5), false);
});

t.test('with keepdirty 64 the 65th extent evicts the first', async (t) => {
  const map = new Activemap({ datasize: 100 * MiB, extentsize: MiB, keepdirty: 64, sectorsize: 512 });
  for (let extent = 0; extent < 64; extent++) {
    t.equal(write(map, extent), true);
    t.equal(complete(map, extent), false);
  }
  t.same(marked(map.bitmap(), 100), [...Array(64).keys()]);
  t.equal(write(map, 64), true);
  t.same(marked(map.bitmap(), 100), [...Array(65).keys()].slice(1));
});

t.test('a pending write keeps an evicted extent dirty until it completes', async (t) => {
  const map = smallMap();
  write(map, 0);
  for (const extent of [1, 2, 3]) {
    write(map, extent);
    complete(map, extent);
  }
  t.same(marked(map.bitmap(), 10), [0, 1, 2, 3], 'evicted but still written to');
  t.equal(map.dirtyExtents(), 1);
  t.equal(complete(map, 0), true, 'clean and outside the LRU: the map must be rewritten to clear it');
  t.same(marked(map.bitmap(), 10), [1, 2, 3]);
  t.equal(map.dirtyExtents(), 0);
});

t.test('counters: overlapping writes, writes across extents, dirty bytes', async (t) => {
  const map = smallMap();
  write(map, 4);
  write(map, 4);
  map.writeStart(6 * MiB - 512, 1024);
  t.equal(map.dirtyExtents(), 3);
  t.equal(map.dirtyBytes(), 3 * MiB);
  complete(map, 4);
  t.equal(map.dirtyExtents(), 3, 'one of two writes to extent 4 is still pending');
  complete(map, 4);
  map.writeComplete(6 * MiB - 512, 1024);
  t.equal(map.dirtyExtents(), 0);
  t.same(map.extentRange(6 * MiB - 512, 1024), { first: 5, last: 6 });
  t.same(map.extentRange(9 * MiB, MiB), { first: 9, last: 9 });
});

t.test('misuse is refused before the state changes', async (t) => {
  const map = smallMap();
  t.throws(() => complete(map, 4), new Error('write completion on extent 4 without a write in progress'));
  write(map, 3);
  t.throws(
    () => map.writeComplete(3 * MiB, MiB + 1),
    new Error('write completion on extent 4 without a write in progress'),
  );
  t.equal(map.dirtyExtents(), 1, 'extent 3 still counts its write');
  t.throws(
    () => map.writeStart(10 * MiB - 512, 1024),
    new RangeError(`range ${10 * MiB - 512}+1024 is outside the ${10 * MiB}-byte data area`),
  );
  t.throws(() => map.writeStart(-512, 512), RangeError);
  t.throws(() => map.writeStart(0, 0), RangeError);
  t.throws(() => map.extentComplete(10), new RangeError('extent 10 is outside the map of 10 extents'));
  t.throws(() => map.extentComplete(2), new Error('sync completion on extent 2 that was not being synchronised'));
  t.throws(
    () => map.loadOndisk(Buffer.alloc(1)),
    new RangeError('activemap image of 1 bytes is shorter than the 2-byte map'),
  );
  t.throws(() => map.mergeBitmap(Buffer.alloc(0)), RangeError);
});

t.test('needSync marks an extent until every chunk of it is synchronised', async (t) => {
  const map = smallMap();
  t.equal(map.needSync(2 * MiB + 4096, 4096), true);
  t.equal(map.needSync(2 * MiB, 512), false, 'already marked');
  t.equal(map.syncExtents(), 1);
  t.equal(map.dirtyExtents(), 1);
  t.same(marked(map.bitmap(), 10), [2]);
  t.same(map.syncOffset(), { finishedExtent: undefined, range: undefined }, 'the cursor waits for a rewind');

  map.syncRewind();
  const steps = drainSync(map);
  t.same(steps, [
    { finishedExtent: undefined, range: { offset: 2 * MiB, length: 256 * KiB } },
    { finishedExtent: undefined, range: { offset: 2 * MiB + 256 * KiB, length: 256 * KiB } },
    { finishedExtent: undefined, range: { offset: 2 * MiB + 512 * KiB, length: 256 * KiB } },
    { finishedExtent: undefined, range: { offset: 2 * MiB + 768 * KiB, length: 256 * KiB } },
    { finishedExtent: 2, range: undefined },
  ]);
  t.equal(map.syncExtents(), 0);
  t.equal(map.dirtyExtents(), 1, 'dirty until the caller reports the extent synchronised');
  t.equal(map.extentComplete(2), true);
  t.equal(map.dirtyExtents(), 0);
  t.same(marked(map.bitmap(), 10), []);
});

t.test('a write in flight during a sync keeps the extent dirty after the sync', async (t) => {
  const map = smallMap();
  write(map, 2);
  t.equal(map.needSync(2 * MiB, 4096), true);
  map.syncRewind();
  drainSync(map);
  t.equal(map.extentComplete(2), false, 'the write is still pending');
  t.equal(complete(map, 2), false, 'and it is in the LRU');
  t.equal(map.dirtyExtents(), 0);
});

t.test('the sync cursor walks marked extents in order, chunk by chunk, and can be rewound', async (t) => {
  const map = smallMap();
  map.needSync(7 * MiB, 4096);
  map.needSync(3 * MiB, 4096);
  map.syncRewind();
  t.same(map.syncOffset().range, { offset: 3 * MiB, length: 256 * KiB });
  t.same(map.syncOffset().range, { offset: 3 * MiB + 256 * KiB, length: 256 * KiB });
  map.syncRewind();
  t.same(
    map.syncOffset(),
    { finishedExtent: undefined, range: { offset: 3 * MiB, length: 256 * KiB } },
    'back to the first marked extent',
  );
  map.syncOffset();
  map.syncOffset();
  map.syncOffset();
  map.needSync(MiB, 4096);
  t.same(
    map.syncOffset(),
    { finishedExtent: 3, range: { offset: MiB, length: 256 * KiB } },
    'a newly marked earlier extent comes next',
  );
  const rest = drainSync(map).map((step) => [step.finishedExtent, step.range?.offset]);
  t.same(rest, [
    [undefined, MiB + 256 * KiB],
    [undefined, MiB + 512 * KiB],
    [undefined, MiB + 768 * KiB],
    [1, 7 * MiB],
    [undefined, 7 * MiB + 256 * KiB],
    [undefined, 7 * MiB + 512 * KiB],
    [undefined, 7 * MiB + 768 * KiB],
    [7, undefined],
  ]);
  t.same(map.syncOffset(), { finishedExtent: undefined, range: undefined }, 'idle once done');
});

t.test('a short last extent needs fewer chunks; extents smaller than a chunk take one each', async (t) => {
  const short = smallMap({ datasize: 2 * MiB + 300 * KiB });
  short.needSync(2 * MiB, 512);
  short.syncRewind();
  t.same(drainSync(short), [
    { finishedExtent: undefined, range: { offset: 2 * MiB, length: 256 * KiB } },
    { finishedExtent: undefined, range: { offset: 2 * MiB + 256 * KiB, length: 44 * KiB } },
    { finishedExtent: 2, range: undefined },
  ]);
  t.equal(short.extentComplete(2), true, 'two chunks were counted for the short extent');

  const tiny = new Activemap({ datasize: 4 * 64 * KiB, extentsize: 64 * KiB, keepdirty: 2, sectorsize: 512 });
  tiny.needSync(0, 4 * 64 * KiB);
  tiny.syncRewind();
  t.same(
    drainSync(tiny).map((step) => [step.finishedExtent, step.range?.offset, step.range?.length]),
    [
      [undefined, 0, 64 * KiB],
      [0, 64 * KiB, 64 * KiB],
      [1, 128 * KiB, 64 * KiB],
      [2, 192 * KiB, 64 * KiB],
      [3, undefined, undefined],
    ],
  );
  for (const extent of [0, 1, 2, 3]) t.equal(tiny.extentComplete(extent), true);
});

t.test('loading the on-disk map at startup makes every marked extent dirty and due for sync', async (t) => {
  const map = smallMap();
  write(map, 0);
  complete(map, 0);
  map.loadOndisk(Buffer.from([0x0a, 0xfc]));
  t.same(marked(map.bitmap(), 10), [1, 3], 'bits past the last extent and the old LRU are dropped');
  t.equal(map.dirtyExtents(), 2);
  t.equal(map.syncExtents(), 2);
  t.same(map.syncOffset().range, { offset: MiB, length: 256 * KiB });

  write(map, 3);
  complete(map, 3);
  t.equal(map.dirtyExtents(), 2, 'a write does not clean an extent that needs a sync');

  map.loadOndisk(Buffer.alloc(512));
  t.equal(map.dirtyExtents(), 0);
  t.same(map.syncOffset(), { finishedExtent: undefined, range: undefined });
});

t.test("merging the peer's map adds its extents without double counting ours", async (t) => {
  const map = smallMap();
  map.needSync(MiB, 512);
  write(map, 4);
  map.mergeBitmap(Buffer.from([0x12, 0x00]));
  t.equal(map.syncExtents(), 2);
  t.equal(map.dirtyExtents(), 2);
  t.same(map.syncOffset().range, { offset: MiB, length: 256 * KiB }, 'the merge rewinds the cursor');
  const finished = drainSync(map).flatMap((step) => step.finishedExtent ?? []);
  t.same(finished, [1, 4]);
  t.equal(map.extentComplete(1), true, 'extent 1 was counted once');
  t.equal(complete(map, 4), false, 'the write in flight during the merge completes normally');
  t.equal(map.extentComplete(4), true);
  t.equal(map.dirtyExtents(), 0);

  map.mergeBitmap(Buffer.alloc(2));
  t.same(map.syncOffset(), { finishedExtent: undefined, range: undefined });
});

t.test('bitmap() returns a copy', async (t) => {
  const map = smallMap();
  write(map, 1);
  const image = map.bitmap();
  image.fill(0xff);
  t.same(marked(map.bitmap(), 10), [1]);
});

t.test('model check: map writes, lazy clearing and the image follow hastd for any write sequence', async (t) => {
  const keepdirty = 4;
  const nextents = 12;
  const operation = fc.oneof(
    fc.record({ kind: fc.constant('start' as const), extent: fc.integer({ min: 0, max: nextents - 1 }) }),
    fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(operation, { maxLength: 200 }), (operations) => {
      const map = new Activemap({ datasize: nextents * MiB, extentsize: MiB, keepdirty, sectorsize: 512 });
      const pending: number[] = [];
      let lru: number[] = [];
      for (const op of operations) {
        if (op.kind === 'start') {
          const isNew = !lru.includes(op.extent);
          lru = [op.extent, ...lru.filter((e) => e !== op.extent)].slice(0, keepdirty);
          pending.push(op.extent);
          if (write(map, op.extent) !== isNew) return false;
        } else if (pending.length > 0) {
          const [extent] = pending.splice(op.pick % pending.length, 1) as [number];
          const clears = !pending.includes(extent) && !lru.includes(extent);
          if (complete(map, extent) !== clears) return false;
        }
        const expected = [...new Set([...pending, ...lru])].sort((a, b) => a - b);
        if (JSON.stringify(marked(map.bitmap(), nextents)) !== JSON.stringify(expected)) return false;
        if (map.dirtyExtents() !== new Set(pending).size) return false;
      }
      return true;
    }),
  );
  t.pass('the model and the map agreed on every step');
});
