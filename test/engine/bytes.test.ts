import t from 'tap';
import fc from 'fast-check';
import { bufferList, byteLength, joinBytes, sliceBytes } from '../../src/engine/bytes.js';

t.test('one buffer is its own list, length and join, uncopied', async (t) => {
  const one = Buffer.from('abcdef');
  t.equal(byteLength(one), 6);
  t.same(bufferList(one), [one]);
  t.equal(joinBytes(one), one);
  t.equal(joinBytes([one]), one, 'a list of one is not copied either');
  t.equal(sliceBytes(one, 1, 3).toString(), 'bc');
});

t.test('a list joins back to back', async (t) => {
  const parts = [Buffer.from('ab'), Buffer.from(''), Buffer.from('cde')];
  t.equal(byteLength(parts), 5);
  t.equal(bufferList(parts), parts);
  t.equal(joinBytes(parts).toString(), 'abcde');
  t.equal(byteLength([]), 0);
});

t.test('a slice of a list holds views of the buffers it spans', async (t) => {
  const parts = [Buffer.from('abc'), Buffer.from('def'), Buffer.from('ghi')];
  const inside = sliceBytes(parts, 4, 6);
  t.ok(Buffer.isBuffer(inside), 'within one buffer: one view');
  t.equal(inside.toString(), 'ef');
  parts[1]![1] = 0x45;
  t.equal(inside.toString(), 'Ef', 'a view, not a copy');
  const across = sliceBytes(parts, 2, 7) as readonly Buffer[];
  t.same(across.map(String), ['c', 'dEf', 'g']);
  t.same(sliceBytes(parts, 3, 3), []);
});

t.test('slicing a list gives the bytes slicing the joined buffer gives', async () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 6 }),
      fc.nat(),
      fc.nat(),
      (arrays, a, b) => {
        const parts = arrays.map((array) => Buffer.from(array));
        const whole = Buffer.concat(parts);
        const start = whole.length === 0 ? 0 : a % (whole.length + 1);
        const end = start + (whole.length === 0 ? 0 : b % (whole.length - start + 1));
        const slice = sliceBytes(parts, start, end);
        return byteLength(slice) === end - start && joinBytes(slice).equals(whole.subarray(start, end));
      },
    ),
  );
});
