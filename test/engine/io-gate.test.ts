import t from 'tap';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { COMPONENT_IO_CONCURRENCY, GatedStore, IoGate } from '../../src/engine/io-gate.js';
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

t.test('a failing operation frees its place', async (t) => {
  const gate = new IoGate(1);
  await t.rejects(gate.run(() => Promise.reject(new Error('EIO'))), /EIO/);
  t.equal(await gate.run(async () => 7), 7);
});
