import { deepStrictEqual } from 'node:assert';
import fc from 'fast-check';
import t from 'tap';
import { Nv, NvError } from '../../src/engine/nv.js';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

t.test('known records encode to hand-computed bytes', async (t) => {
  // type 02 (uint8), namesize 4 ("cmd\0"), dsize 1, name padded to 8, data padded to 8.
  t.equal(
    new Nv().addUint8('cmd', 2).encode().toString('hex'),
    '020401000000' + '636d640000000000' + '0200000000000000',
  );
  // type 11 (string), namesize 10 ("resource0\0" padded to 16), dsize 4 ("all\0" padded to 8).
  t.equal(
    new Nv().addString('resource0', 'all').encode().toString('hex'),
    '110a04000000' + '7265736f757263653000' + '000000000000' + '616c6c0000000000',
  );
  // int16 -2 is fe ff little-endian.
  t.equal(
    new Nv().addInt16('error', -2).encode().toString('hex'),
    '030602000000' + '6572726f72000000' + 'feff000000000000',
  );
  // A 7-character name plus NUL fills exactly 8 bytes; an 8-character one needs 16.
  t.equal(new Nv().addUint32('sevench', 1).encode().length, 6 + 8 + 8);
  t.equal(new Nv().addUint32('eightchr', 1).encode().length, 6 + 16 + 8);
  t.equal(
    new Nv().addUint64('size', 0x0102030405060708n).encode().toString('hex'),
    '080508000000' + '73697a6500000000' + '0807060504030201',
  );
  t.equal(
    new Nv().addInt64('x', -1n).encode().toString('hex'),
    '070208000000' + '7800000000000000' + 'ffffffffffffffff',
  );
  t.equal(
    new Nv().addUint8Array('hash', Uint8Array.of(0xde, 0xad, 0xbe, 0xef)).encode().toString('hex'),
    '0a0504000000' + '6861736800000000' + 'deadbeef00000000',
  );
  t.equal(
    new Nv().addInt32Array('a', Int32Array.of(1, -1)).encode().toString('hex'),
    '0d0208000000' + '6100000000000000' + '01000000ffffffff',
  );
  // Records follow each other with no alignment to the buffer: 22 + 22 bytes.
  t.same(
    new Nv().addUint8('cmd', 1).addUint8('role', 2).encode(),
    hex('02 04 01000000 636d640000000000 0100000000000000  02 05 01000000 726f6c6500000000 0200000000000000'),
  );
});

t.test('every type has its nv.c type code', async (t) => {
  const nv = new Nv()
    .addInt8('n', 0)
    .addUint8('n', 0)
    .addInt16('n', 0)
    .addUint16('n', 0)
    .addInt32('n', 0)
    .addUint32('n', 0)
    .addInt64('n', 0n)
    .addUint64('n', 0n)
    .addInt8Array('n', Int8Array.of(0))
    .addUint8Array('n', Uint8Array.of(0))
    .addInt16Array('n', Int16Array.of(0))
    .addUint16Array('n', Uint16Array.of(0))
    .addInt32Array('n', Int32Array.of(0))
    .addUint32Array('n', Uint32Array.of(0))
    .addInt64Array('n', BigInt64Array.of(0n))
    .addUint64Array('n', BigUint64Array.of(0n))
    .addString('n', '');
  const buf = nv.encode();
  const codes: number[] = [];
  for (let offset = 0; offset < buf.length; ) {
    codes.push(buf.readUInt8(offset));
    offset += 6 + 8 + Math.ceil(buf.readUInt32LE(offset + 2) / 8) * 8;
  }
  t.same(codes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
});

t.test('every type round-trips its extreme values', async (t) => {
  const nv = Nv.decode(
    new Nv()
      .addInt8('i8', -128)
      .addUint8('u8', 255)
      .addInt16('i16', -32768)
      .addUint16('u16', 65535)
      .addInt32('i32', -(2 ** 31))
      .addUint32('u32', 2 ** 32 - 1)
      .addInt64('i64', -(2n ** 63n))
      .addUint64('u64', 2n ** 64n - 1n)
      .addInt8Array('i8a', Int8Array.of(-128, 127))
      .addUint8Array('u8a', Uint8Array.of(0, 255))
      .addInt16Array('i16a', Int16Array.of(-32768, 32767))
      .addUint16Array('u16a', Uint16Array.of(0, 65535))
      .addInt32Array('i32a', Int32Array.of(-(2 ** 31), 2 ** 31 - 1))
      .addUint32Array('u32a', Uint32Array.of(0, 2 ** 32 - 1))
      .addInt64Array('i64a', BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n))
      .addUint64Array('u64a', BigUint64Array.of(0n, 2n ** 64n - 1n))
      .addString('s', 'hëllo wörld')
      .addString('empty', '')
      .encode(),
  );
  t.equal(nv.getInt8('i8'), -128);
  t.equal(nv.getUint8('u8'), 255);
  t.equal(nv.getInt16('i16'), -32768);
  t.equal(nv.getUint16('u16'), 65535);
  t.equal(nv.getInt32('i32'), -(2 ** 31));
  t.equal(nv.getUint32('u32'), 2 ** 32 - 1);
  t.equal(nv.getInt64('i64'), -(2n ** 63n));
  t.equal(nv.getUint64('u64'), 2n ** 64n - 1n);
  t.same(nv.getInt8Array('i8a'), Int8Array.of(-128, 127));
  t.same(nv.getUint8Array('u8a'), Uint8Array.of(0, 255));
  t.same(nv.getInt16Array('i16a'), Int16Array.of(-32768, 32767));
  t.same(nv.getUint16Array('u16a'), Uint16Array.of(0, 65535));
  t.same(nv.getInt32Array('i32a'), Int32Array.of(-(2 ** 31), 2 ** 31 - 1));
  t.same(nv.getUint32Array('u32a'), Uint32Array.of(0, 2 ** 32 - 1));
  t.same(nv.getInt64Array('i64a'), BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n));
  t.same(nv.getUint64Array('u64a'), BigUint64Array.of(0n, 2n ** 64n - 1n));
  t.equal(nv.getString('s'), 'hëllo wörld');
  t.equal(nv.getString('empty'), '');
  t.ok(nv.getUint8Array('u8a') instanceof Uint8Array);
  t.ok(nv.getUint64Array('u64a') instanceof BigUint64Array);
});

t.test('require methods return present values', async (t) => {
  const nv = new Nv()
    .addInt8('i8', -1)
    .addUint8('u8', 1)
    .addInt16('i16', -2)
    .addUint16('u16', 2)
    .addInt32('i32', -3)
    .addUint32('u32', 3)
    .addInt64('i64', -4n)
    .addUint64('u64', 4n)
    .addInt8Array('i8a', Int8Array.of(-5))
    .addUint8Array('u8a', Uint8Array.of(5))
    .addInt16Array('i16a', Int16Array.of(-6))
    .addUint16Array('u16a', Uint16Array.of(6))
    .addInt32Array('i32a', Int32Array.of(-7))
    .addUint32Array('u32a', Uint32Array.of(7))
    .addInt64Array('i64a', BigInt64Array.of(-8n))
    .addUint64Array('u64a', BigUint64Array.of(8n))
    .addString('s', 'x');
  t.equal(nv.requireInt8('i8'), -1);
  t.equal(nv.requireUint8('u8'), 1);
  t.equal(nv.requireInt16('i16'), -2);
  t.equal(nv.requireUint16('u16'), 2);
  t.equal(nv.requireInt32('i32'), -3);
  t.equal(nv.requireUint32('u32'), 3);
  t.equal(nv.requireInt64('i64'), -4n);
  t.equal(nv.requireUint64('u64'), 4n);
  t.same(nv.requireInt8Array('i8a'), Int8Array.of(-5));
  t.same(nv.requireUint8Array('u8a'), Uint8Array.of(5));
  t.same(nv.requireInt16Array('i16a'), Int16Array.of(-6));
  t.same(nv.requireUint16Array('u16a'), Uint16Array.of(6));
  t.same(nv.requireInt32Array('i32a'), Int32Array.of(-7));
  t.same(nv.requireUint32Array('u32a'), Uint32Array.of(7));
  t.same(nv.requireInt64Array('i64a'), BigInt64Array.of(-8n));
  t.same(nv.requireUint64Array('u64a'), BigUint64Array.of(8n));
  t.equal(nv.requireString('s'), 'x');
});

t.test('lookup is by name and exact type, and the first record with the name decides', async (t) => {
  const nv = new Nv().addUint32('size', 7).addUint64('size', 8n).addUint8('zero', 0);
  t.equal(nv.getUint32('size'), 7);
  // nv_find() stops at the first "size" and fails on its type, even though a uint64 "size" follows.
  t.equal(nv.getUint64('size'), undefined);
  t.equal(nv.getInt32('size'), undefined);
  t.equal(nv.getString('missing'), undefined);
  t.equal(nv.getUint8('zero'), 0);
  t.equal(nv.requireUint8('zero'), 0);
  t.throws(() => nv.requireUint8('missing'), NvError);
  t.throws(() => nv.requireUint64('size'), new NvError('nv field "size" is uint32, expected uint64'));
  t.throws(() => nv.requireString('missing'), new NvError('nv field "missing" (string) is missing'));
  t.throws(() => nv.requireUint8Array('zero'), new NvError('nv field "zero" is uint8, expected uint8[]'));
  t.throws(() => nv.requireInt8('missing'), NvError);
  t.throws(() => nv.requireInt16('missing'), NvError);
  t.throws(() => nv.requireUint16('missing'), NvError);
  t.throws(() => nv.requireInt32('missing'), NvError);
  t.throws(() => nv.requireUint32('missing'), NvError);
  t.throws(() => nv.requireInt64('missing'), NvError);
  t.throws(() => nv.requireInt8Array('missing'), NvError);
  t.throws(() => nv.requireInt16Array('missing'), NvError);
  t.throws(() => nv.requireUint16Array('missing'), NvError);
  t.throws(() => nv.requireInt32Array('missing'), NvError);
  t.throws(() => nv.requireUint32Array('missing'), NvError);
  t.throws(() => nv.requireInt64Array('missing'), NvError);
  t.throws(() => nv.requireUint64Array('missing'), NvError);
});

t.test('values and names that hastd could not carry are refused', async (t) => {
  const nv = new Nv();
  t.throws(() => nv.addUint8('x', 256), new NvError('value 256 does not fit uint8 field "x"'));
  t.throws(() => nv.addInt8('x', -129), new NvError('value -129 does not fit int8 field "x"'));
  t.throws(() => nv.addInt16('x', 32768), NvError);
  t.throws(() => nv.addUint16('x', -1), NvError);
  t.throws(() => nv.addInt32('x', 2 ** 31), NvError);
  t.throws(() => nv.addUint32('x', 2 ** 32), new NvError('value 4294967296 does not fit uint32 field "x"'));
  t.throws(() => nv.addUint32('x', 1.5), new NvError('value 1.5 does not fit uint32 field "x"'));
  t.throws(() => nv.addInt64('x', 2n ** 63n), NvError);
  t.throws(() => nv.addUint64('x', -1n), new NvError('value -1 does not fit uint64 field "x"'));
  t.throws(() => nv.addString('x', 'a\0b'), new NvError('string field "x" contains a NUL character'));
  t.throws(() => nv.addUint8Array('hash', new Uint8Array(0)), new NvError('uint8 array field "hash" is empty'));
  const nameError = new NvError('nv field name "" must be 1 to 254 bytes without NUL');
  t.throws(() => nv.addUint8('', 1), nameError);
  t.throws(() => nv.addUint8('a\0b', 1), NvError);
  t.throws(() => nv.addUint8('x'.repeat(255), 1), NvError);
  t.throws(() => nv.addUint8('é'.repeat(128), 1), NvError, '256 bytes of UTF-8');
  t.equal(nv.encode().length, 0, 'nothing was added');
  t.equal(new Nv().addUint8('x'.repeat(254), 1).encode().readUInt8(1), 255, 'the longest name');
});

t.test('decoding stops at the first zero type byte', async (t) => {
  const one = new Nv().addUint8('cmd', 2).encode();
  t.equal(Nv.decode(Buffer.alloc(0)).encode().length, 0);
  t.equal(Nv.decode(Buffer.alloc(4096)).encode().length, 0);
  const padded = Buffer.concat([one, Buffer.alloc(100)]);
  t.same(Nv.decode(padded).encode(), one);
  // nv_validate() does not look past the zero byte either.
  const trailingJunk = Buffer.concat([one, hex('00 ff ff ff')]);
  t.same(Nv.decode(trailingJunk).encode(), one);
  t.equal(Nv.decode(padded).getUint8('cmd'), 2);
});

t.test('decoded data does not alias the input buffer', async (t) => {
  const buf = new Nv().addUint8Array('hash', Uint8Array.of(1, 2, 3)).encode();
  const nv = Nv.decode(buf);
  buf.fill(0);
  t.same(nv.getUint8Array('hash'), Uint8Array.of(1, 2, 3));
});

// A valid record is `02 04 01000000 636d6400 00000000 02000000 00000000`: uint8 "cmd" = 2, 22 bytes.
const CMD = '636d6400 00000000';
const MALFORMED: [Buffer, string][] = [
  [hex('02 04 01'), 'nv record at byte 0: header needs 6 bytes, only 3 left'],
  [hex(`02 04 01000000 ${CMD} 0200000000000000 0204`), 'nv record at byte 22: header needs 6 bytes, only 2 left'],
  [
    hex(`82 04 01000000 ${CMD} 02000000 00000000`),
    'nv record at byte 0: type 0x82 is in host byte order, not little-endian',
  ],
  [hex(`12 04 01000000 ${CMD} 02000000 00000000`), 'nv record at byte 0: unknown type code 18'],
  [hex(`7f 04 01000000 ${CMD} 02000000 00000000`), 'nv record at byte 0: unknown type code 127'],
  [hex(`02 00 01000000 ${CMD} 02000000 00000000`), 'nv record at byte 0: name size is 0'],
  [hex(`02 09 01000000 ${CMD}`), 'nv record at byte 0: name runs past the end of the buffer'],
  [
    hex('02 04 01000000 636d6478 00000000 02000000 00000000'),
    'nv record at byte 0: name is not a NUL-terminated string of 3 bytes',
  ],
  [
    hex('02 04 01000000 63006400 00000000 02000000 00000000'),
    'nv record at byte 0: name is not a NUL-terminated string of 3 bytes',
  ],
  [hex('02 04 01000000 63ff6400 00000000 02000000 00000000'), 'nv record at byte 0: name is not valid UTF-8'],
  [hex(`02 04 00000000 ${CMD}`), 'nv field "cmd" at byte 0: data size is 0'],
  // The last padding byte is missing: hastd wants whole records.
  [
    hex(`02 04 01000000 ${CMD} 02000000 000000`),
    'nv field "cmd" at byte 0: data (1 bytes) runs past the end of the buffer',
  ],
  [
    hex(`02 04 ffffffff ${CMD} 02000000 00000000`),
    'nv field "cmd" at byte 0: data (4294967295 bytes) runs past the end of the buffer',
  ],
  [hex(`06 04 08000000 ${CMD} 02000000 00000000`), 'nv field "cmd" at byte 0: uint32 needs 4 bytes of data, has 8'],
  [
    hex(`0c 04 03000000 ${CMD} 01020300 00000000`),
    'nv field "cmd" at byte 0: uint16[] data size 3 is not a multiple of 2',
  ],
  [
    hex(`10 04 0c000000 ${CMD} 01020300 00000000 01020300 00000000`),
    'nv field "cmd" at byte 0: uint64[] data size 12 is not a multiple of 8',
  ],
  [hex(`11 04 03000000 ${CMD} 61626300 00000000`), 'nv field "cmd" at byte 0: string is not NUL-terminated'],
  [
    hex(`11 04 04000000 ${CMD} 61006200 00000000`),
    'nv field "cmd" at byte 0: string contains a NUL before its end',
  ],
  [
    hex(`02 04 01000000 ${CMD} 02000000 00000000  12 04 01000000 ${CMD} 02000000 00000000`),
    'nv record at byte 22: unknown type code 18',
  ],
];

t.test('malformed records are rejected with what and where', async (t) => {
  for (const [buf, message] of MALFORMED) t.throws(() => Nv.decode(buf), new NvError(message), message);
});

t.test('records hastd accepts are accepted', async (t) => {
  // An 8-bit array may have any length; padding bytes are not checked, as in nv_validate().
  const nv = Nv.decode(hex('09 02 03000000 6100000000000000 010203ffffffffff'));
  t.same(nv.getInt8Array('a'), Int8Array.of(1, 2, 3));
  // A one-byte name field holds the empty name.
  const emptyName = hex('02 01 01000000 0000000000000000 0700000000000000');
  t.equal(Nv.decode(emptyName).getUint8(''), 7);
  t.same(Nv.decode(emptyName).encode(), emptyName);
});

// One generated nv field: how to add it and read it back.
interface FieldCase {
  name: string;
  value: unknown;
  add(nv: Nv): Nv;
  read(nv: Nv): unknown;
}

const NAMES = fc.oneof(
  fc.constantFrom('cmd', 'size', 'resource0', 'x'),
  fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
    .filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 254),
);

function field<V>(
  values: fc.Arbitrary<V>,
  add: (nv: Nv, name: string, value: V) => Nv,
  read: (nv: Nv, name: string) => V | undefined,
): fc.Arbitrary<FieldCase> {
  return fc.record({ name: NAMES, value: values }).map(({ name, value }) => ({
    name,
    value,
    add: (nv: Nv) => add(nv, name, value),
    read: (nv: Nv) => read(nv, name),
  }));
}

const ARRAY = { minLength: 1, maxLength: 20 };
const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };
const FIELDS = fc.oneof(
  field(fc.integer({ min: -128, max: 127 }), (nv, n, v) => nv.addInt8(n, v), (nv, n) => nv.getInt8(n)),
  field(fc.integer({ min: 0, max: 255 }), (nv, n, v) => nv.addUint8(n, v), (nv, n) => nv.getUint8(n)),
  field(fc.integer({ min: -32768, max: 32767 }), (nv, n, v) => nv.addInt16(n, v), (nv, n) => nv.getInt16(n)),
  field(fc.integer({ min: 0, max: 65535 }), (nv, n, v) => nv.addUint16(n, v), (nv, n) => nv.getUint16(n)),
  field(fc.integer(), (nv, n, v) => nv.addInt32(n, v), (nv, n) => nv.getInt32(n)),
  field(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (nv, n, v) => nv.addUint32(n, v), (nv, n) => nv.getUint32(n)),
  field(fc.bigInt(INT64), (nv, n, v) => nv.addInt64(n, v), (nv, n) => nv.getInt64(n)),
  field(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (nv, n, v) => nv.addUint64(n, v), (nv, n) => nv.getUint64(n)),
  field<Int8Array>(fc.int8Array(ARRAY), (nv, n, v) => nv.addInt8Array(n, v), (nv, n) => nv.getInt8Array(n)),
  field<Uint8Array>(fc.uint8Array(ARRAY), (nv, n, v) => nv.addUint8Array(n, v), (nv, n) => nv.getUint8Array(n)),
  field<Int16Array>(fc.int16Array(ARRAY), (nv, n, v) => nv.addInt16Array(n, v), (nv, n) => nv.getInt16Array(n)),
  field<Uint16Array>(fc.uint16Array(ARRAY), (nv, n, v) => nv.addUint16Array(n, v), (nv, n) => nv.getUint16Array(n)),
  field<Int32Array>(fc.int32Array(ARRAY), (nv, n, v) => nv.addInt32Array(n, v), (nv, n) => nv.getInt32Array(n)),
  field<Uint32Array>(fc.uint32Array(ARRAY), (nv, n, v) => nv.addUint32Array(n, v), (nv, n) => nv.getUint32Array(n)),
  field<BigInt64Array>(fc.bigInt64Array(ARRAY), (nv, n, v) => nv.addInt64Array(n, v), (nv, n) => nv.getInt64Array(n)),
  field<BigUint64Array>(
    fc.bigUint64Array(ARRAY),
    (nv, n, v) => nv.addUint64Array(n, v),
    (nv, n) => nv.getUint64Array(n),
  ),
  field(
    fc.string({ unit: 'grapheme', maxLength: 60 }).filter((s) => !s.includes('\0')),
    (nv, n, v) => nv.addString(n, v),
    (nv, n) => nv.getString(n),
  ),
);

const NV_LISTS = fc.array(FIELDS, { maxLength: 12 });

function build(fields: FieldCase[]): Nv {
  return fields.reduce((nv, f) => f.add(nv), new Nv());
}

// Decoding must either work or throw NvError; when it works, one more encode/decode changes nothing.
function decodesOrRejects(bytes: Uint8Array): void {
  let nv: Nv;
  try {
    nv = Nv.decode(Buffer.from(bytes));
  } catch (error) {
    if (error instanceof NvError) return;
    throw error;
  }
  const once = nv.encode();
  deepStrictEqual(Nv.decode(once).encode(), once);
}

t.test('random nv lists round-trip', async (t) => {
  fc.assert(
    fc.property(NV_LISTS, fc.nat({ max: 64 }), (fields, padding) => {
      const encoded = build(fields).encode();
      const decoded = Nv.decode(Buffer.concat([encoded, Buffer.alloc(padding)]));
      deepStrictEqual(decoded.encode(), encoded);
      const seen = new Set<string>();
      for (const f of fields) {
        if (seen.has(f.name)) continue;
        seen.add(f.name);
        deepStrictEqual(f.read(decoded), f.value, `field "${f.name}"`);
      }
    }),
    { numRuns: 1000 },
  );
  t.pass('1000 lists');
});

t.test('random bytes decode or throw NvError only', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), decodesOrRejects), { numRuns: 5000 });
  // Mostly plausible headers, so that validation gets past the first byte.
  const plausible = fc
    .tuple(
      fc.oneof(fc.integer({ min: 1, max: 17 }), fc.integer({ min: 0, max: 255 })),
      fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 255 })),
      fc.oneof(fc.integer({ min: 0, max: 40 }), fc.nat()),
      fc.uint8Array({ maxLength: 120 }),
    )
    .map(([type, namesize, dsize, rest]) => {
      const header = Buffer.alloc(6);
      header.writeUInt8(type, 0);
      header.writeUInt8(namesize, 1);
      header.writeUInt32LE(dsize, 2);
      return Buffer.concat([header, rest]);
    });
  fc.assert(fc.property(plausible, decodesOrRejects), { numRuns: 5000 });
  t.pass('10000 buffers');
});

t.test('mutated valid encodings decode or throw NvError only', async (t) => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  );
  fc.assert(
    fc.property(NV_LISTS, fc.array(mutation, { minLength: 1, maxLength: 4 }), (fields, mutations) => {
      let bytes = build(fields).encode();
      for (const m of mutations) {
        const at = bytes.length === 0 ? 0 : m.at % bytes.length;
        if (m.kind === 'set' && bytes.length > 0) bytes[at] = m.byte;
        if (m.kind === 'truncate') bytes = bytes.subarray(0, at);
        if (m.kind === 'insert') {
          bytes = Buffer.concat([bytes.subarray(0, at), Buffer.of(m.byte), bytes.subarray(at)]);
        }
      }
      decodesOrRejects(bytes);
    }),
    { numRuns: 5000 },
  );
  t.pass('5000 mutations');
});
