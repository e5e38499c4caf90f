import t from 'tap';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { joinBytes } from '../../src/engine/bytes.js';
import {
  COMPONENT_IO_CONCURRENCY,
  GatedStore,
  IoGate,
  MAX_MERGED_WRITE,
  SMALL_IO_BYTES,
  SMALL_IO_CONCURRENCY,
} from '../../src/engine/io-gate.js';
import type { BlockStore } from '../../src/engine/local-component.js';

// A store whose operations finish only when the test says so.
function heldStore(): { store: BlockStore; started: string[]; finish: () => void } {
  const started: string[] = [];
  const pending: Array<() => void> = [];
  const op = (name: string) => () => {
    started.push(name);
    return new Promise<void>((resolve) => pending.push(resolve));
  };
  const store: BlockStore = {
    path: '/held',
    mediasize: 4096,
    sectorsize: 512,
    read: op('read'),
    write: op('write'),
    writeDurable: op('durable write'),
    flush: op('flush'),
    delete: op('delete'),
    close: async () => undefined,
  };
  return { store, started, finish: () => pending.shift()?.() };
}

t.test('a gate runs at most `limit` operations, the rest in arrival order', async (t) => {
  t.ok(COMPONENT_IO_CONCURRENCY >= 1 && COMPONENT_IO_CONCURRENCY <= 4);
  const { store, started, finish } = heldStore();
  const gated = new GatedStore(store, new IoGate(2));
  t.equal(gated.path, '/held');
  t.equal(gated.mediasize, 4096);
  t.equal(gated.sectorsize, 512);
  const all = [gated.read(Buffer.alloc(1), 0), gated.write(Buffer.alloc(1), 0), gated.flush(), gated.read(Buffer.alloc(1), 0)];
  await nextTurn();
  t.same(started, ['read', 'write'], 'two run, two wait');
  finish();
  await nextTurn();
  t.same(started, ['read', 'write', 'flush']);
  const deleting = gated.delete(0, 512);
  await nextTurn();
  t.same(started, ['read', 'write', 'flush', 'delete'], 'deletes run an external command and are not gated');
  finish();
  finish();
  await nextTurn();
  t.same(started, ['read', 'write', 'flush', 'delete', 'read']);
  finish();
  finish();
  await Promise.all([...all, deleting]);
  await gated.close();
});

t.test('small operations may use every place; large ones only `largeLimit`, and nothing overtakes the oldest', async (t) => {
  t.ok(SMALL_IO_CONCURRENCY >= COMPONENT_IO_CONCURRENCY);
  const { store, started, finish } = heldStore();
  const gated = new GatedStore(store, new IoGate(3, 1));
  const large = Buffer.alloc(SMALL_IO_BYTES);
  const small = Buffer.alloc(SMALL_IO_BYTES - 1);
  const all = [
    gated.read(large, 0),
    gated.read(small, 0),
    gated.read(large, 0),
    gated.read(small, 0),
    gated.write(small, 0),
  ];
  await nextTurn();
  t.same(started, ['read', 'read'], 'one large and one small run; the second large waits, and the small behind it too');
  finish();
  await nextTurn();
  t.same(started, ['read', 'read', 'read', 'read'], 'the large one done: the next large and a small one start, three in all');
  finish();
  await nextTurn();
  t.same(started, ['read', 'read', 'read', 'read', 'write']);
  for (let i = 0; i < 3; i++) finish();
  await Promise.all(all);
});

t.test('a failing operation frees its place', async (t) => {
  const gate = new IoGate(1);
  await t.rejects(gate.run(() => Promise.reject(new Error('EIO'))), /EIO/);
  t.equal(await gate.run(async () => 7), 7);
});

// A store that records each write's offset and bytes, and holds writes until the test releases them.
function recordingStore(): { store: BlockStore; writes: Array<{ offset: number; data: string }>; release: () => void; fail: (error: Error) => void } {
  const writes: Array<{ offset: number; data: string }> = [];
  const pending: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  const store: BlockStore = {
    path: '/recorded',
    mediasize: 1 << 20,
    sectorsize: 512,
    read: async () => undefined,
    write: (data, offset) => {
      writes.push({ offset, data: joinBytes(data).toString() });
      return new Promise((resolve, reject) => pending.push({ resolve, reject }));
    },
    writeDurable: async () => undefined,
    flush: async () => undefined,
    delete: async () => undefined,
    close: async () => undefined,
  };
  return { store, writes, release: () => pending.shift()?.resolve(), fail: (error) => pending.shift()?.reject(error) };
}

t.test('writes queued behind a busy gate that continue each other go out as one write', async (t) => {
  const { store, writes, release } = recordingStore();
  const gated = new GatedStore(store, new IoGate(1));
  const first = gated.write(Buffer.from('0000'), 100);
  await nextTurn();
  // Queued while the first runs, out of order and with a gap: 8..12 and 4..8 join, 20..24 stays alone.
  const queued = [gated.write(Buffer.from('bbbb'), 8), gated.write([Buffer.from('aa'), Buffer.from('aa')], 4), gated.write(Buffer.from('cccc'), 20)];
  release();
  await first;
  await nextTurn();
  t.same(writes, [
    { offset: 100, data: '0000' },
    { offset: 4, data: 'aaaabbbb' },
  ]);
  release();
  await Promise.all(queued.slice(0, 2));
  await nextTurn();
  t.same(writes.slice(2), [{ offset: 20, data: 'cccc' }], 'the write that continues nothing goes alone');
  release();
  await queued[2];
  await nextTurn();
  t.equal(writes.length, 3, 'no turn is left that writes again');
});

t.test('a merged write that fails fails every write in it', async (t) => {
  const { store, release, fail } = recordingStore();
  const gated = new GatedStore(store, new IoGate(1));
  const first = gated.write(Buffer.from('x'), 0);
  await nextTurn();
  const merged = [gated.write(Buffer.from('a'), 10), gated.write(Buffer.from('b'), 11)];
  release();
  await first;
  await nextTurn();
  fail(new Error('EIO: injected'));
  for (const write of merged) await t.rejects(write, /EIO: injected/);
});

t.test('merging stops at MAX_MERGED_WRITE bytes', async (t) => {
  const { store, writes, release } = recordingStore();
  const gated = new GatedStore(store, new IoGate(1));
  const first = gated.write(Buffer.from('x'), 0);
  await nextTurn();
  const half = MAX_MERGED_WRITE / 2;
  const all = [0, 1, 2].map((i) => gated.write(Buffer.alloc(half), 1024 + i * half));
  release();
  await first;
  await nextTurn();
  t.same(
    writes.map((write) => [write.offset, write.data.length]),
    [
      [0, 1],
      [1024, MAX_MERGED_WRITE],
    ],
  );
  release();
  await nextTurn();
  release();
  await Promise.all(all);
  t.same(writes[2]?.offset, 1024 + MAX_MERGED_WRITE);
});
