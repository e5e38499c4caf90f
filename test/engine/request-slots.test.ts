import t from 'tap';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { HAST_HIO_MAX, RequestSlots } from '../../src/engine/request-slots.js';

t.test('at most `size` slots are taken; waiters get freed slots in order', async (t) => {
  t.equal(new RequestSlots().size, HAST_HIO_MAX);
  const slots = new RequestSlots(2);
  const a = await slots.acquire();
  const b = await slots.acquire();
  const granted: string[] = [];
  const c = slots.acquire().then((release) => (granted.push('c'), release));
  const d = slots.acquire().then((release) => (granted.push('d'), release));
  await nextTurn();
  t.same(granted, []);
  t.equal(slots.inUse, 2);
  t.equal(slots.waiting, 2);
  a();
  a();
  await nextTurn();
  t.same(granted, ['c'], 'a released slot goes to the first waiter, once');
  b();
  await nextTurn();
  t.same(granted, ['c', 'd']);
  let idle = false;
  void slots.idle().then(() => (idle = true));
  (await c)();
  await nextTurn();
  t.notOk(idle, 'not idle while a slot is taken');
  (await d)();
  await nextTurn();
  t.ok(idle);
  t.equal(slots.inUse, 0);
  await slots.idle();
});

t.test('closing refuses waiters and later requests, not slots already taken', async (t) => {
  const slots = new RequestSlots(1);
  const taken = await slots.acquire();
  const waiting = slots.acquire();
  const error = new Error('shutting down');
  slots.close(error);
  await t.rejects(waiting, error);
  await t.rejects(slots.acquire(), error);
  t.equal(slots.inUse, 1);
  taken();
  t.equal(slots.inUse, 0);
});
