import t from 'tap';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { RangeLock } from '../../src/engine/range-lock.js';

t.test('overlapping ranges are granted in arrival order, others at once', async (t) => {
  const locks = new RangeLock();
  const order: string[] = [];
  const first = await locks.lock(0, 100);
  const second = locks.lock(50, 100).then((release) => (order.push('second'), release));
  const third = locks.lock(120, 10).then((release) => (order.push('third'), release));
  const apart = locks.lock(1000, 10).then((release) => (order.push('apart'), release));
  await nextTurn();
  t.same(order, ['apart'], 'a range overlapping nothing earlier does not wait');
  t.equal(locks.size, 4);
  first();
  await nextTurn();
  t.same(order, ['apart', 'second'], 'the second waits for the first only');
  (await second)();
  await nextTurn();
  t.same(order, ['apart', 'second', 'third'], 'the third overlaps the second, not the first');
  (await third)();
  const release = await apart;
  release();
  release();
  t.equal(locks.size, 0, 'releasing twice is harmless');
});

t.test('touching ranges do not overlap', async (t) => {
  const locks = new RangeLock();
  await locks.lock(0, 512);
  let granted = false;
  void locks.lock(512, 512).then(() => (granted = true));
  await nextTurn();
  t.ok(granted);
});
