import fc from 'fast-check';
import t from 'tap';
import { createHash } from 'node:crypto';
import { MAXPHYS } from '../../src/engine/activemap.js';
import { joinBytes, type Bytes } from '../../src/engine/bytes.js';
import { ProtocolError } from '../../src/engine/hast-proto.js';
import { lzfCompress } from '../../src/engine/lzf.js';
import { Nv } from '../../src/engine/nv.js';
import { LZF_MIN_SIZE, decodePayload, encodePayload, type PayloadEncoding } from '../../src/engine/payload-codec.js';
import { noise } from '../fixtures/noise.js';

const KiB = 1024;


// `noise` bytes of noise, then zeroes up to `length`: compresses to about `noise` bytes.
function partlyNoise(length: number, noiseLength: number): Buffer {
  const buffer = Buffer.alloc(length);
  noise(noiseLength, 77).copy(buffer);
  return buffer;
}

function encode(data: Bytes, encoding: PayloadEncoding): { nv: Nv; payload: Buffer } {
  const nv = new Nv();
  return { nv, payload: joinBytes(encodePayload(nv, data, encoding)) };
}

function le32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
}

const NONE: PayloadEncoding = { checksum: 'none', compression: 'none' };
const HOLE: PayloadEncoding = { checksum: 'none', compression: 'hole' };
const LZF: PayloadEncoding = { checksum: 'none', compression: 'lzf' };

t.test('none/none sends the payload as it is: same buffers, no fields', async (t) => {
  const data = noise(4 * KiB, 1);
  const nv = new Nv();
  t.equal(encodePayload(nv, data, NONE), data, 'the very same Buffer');
  const list = [data.subarray(0, 100), data.subarray(100)];
  t.equal(encodePayload(nv, list, NONE), list, 'the very same list');
  t.equal(nv.encode().length, 0, 'no fields added');
  t.equal(decodePayload(nv, list, MAXPHYS), list, 'decoding without fields returns what came');
  t.equal(decodePayload(nv, undefined, MAXPHYS), undefined);
});

t.test('hole: an all-zero payload whose length is a multiple of 8 becomes its length, 4 bytes LE', async (t) => {
  for (const length of [8, 512, 4 * KiB, MAXPHYS]) {
    const { nv, payload } = encode(Buffer.alloc(length), HOLE);
    t.equal(nv.getString('compression'), 'hole', `${length} bytes`);
    t.same(payload, le32(length));
    t.same(joinBytes(decodePayload(nv, payload, MAXPHYS)!), Buffer.alloc(length));
  }
  const chunks = [Buffer.alloc(100 * KiB), Buffer.alloc(28 * KiB)];
  t.same(encode(chunks, HOLE).payload, le32(128 * KiB), 'a list of zero chunks');
  for (const data of [Buffer.alloc(12), Buffer.alloc(4095), Buffer.alloc(0)]) {
    const { nv, payload } = encode(data, HOLE);
    t.equal(nv.getString('compression'), undefined, `${data.length} zero bytes are not a hole`);
    t.equal(payload.length, data.length);
  }
  const oneByte = Buffer.alloc(128 * KiB);
  oneByte[128 * KiB - 1] = 1;
  t.equal(encode(oneByte, HOLE).nv.getString('compression'), undefined, 'one non-zero byte at the very end');
  t.equal(encode([Buffer.alloc(64 * KiB), oneByte.subarray(64 * KiB)], HOLE).nv.getString('compression'), undefined, 'in a later chunk');
  t.equal(encode(partlyNoise(8 * KiB, 2 * KiB), HOLE).payload.length, 8 * KiB, 'hole never uses LZF');
});

t.test('lzf: hole first, LZF only above 1024 bytes and only if the stream fits in length - 1024', async (t) => {
  const zeroes = encode(Buffer.alloc(64 * KiB), LZF);
  t.equal(zeroes.nv.getString('compression'), 'hole', 'zeroes go as a hole');
  t.same(zeroes.payload, le32(64 * KiB));

  // At 1024 bytes and below LZF is not even tried (it could not save the 1024 bytes it must).
  const small = encode(partlyNoise(LZF_MIN_SIZE, 8), LZF);
  t.equal(small.nv.getString('compression'), undefined, '1024 bytes are not compressed');
  const above = partlyNoise(2 * KiB, 8);
  const compressed = encode(above, LZF);
  t.equal(compressed.nv.getString('compression'), 'lzf', '2048 bytes that compress well are');
  t.same(compressed.payload.subarray(0, 4), le32(above.length), 'the original length first, LE');
  t.same(compressed.payload.subarray(4), lzfCompress(above, above.length), 'then the LZF stream');
  t.same(joinBytes(decodePayload(compressed.nv, compressed.payload, MAXPHYS)!), above);

  // Find the noise lengths whose streams take exactly length - 1024 and one byte more.
  const length = 4 * KiB;
  const streamLength = (noiseLength: number): number => lzfCompress(partlyNoise(length, noiseLength), length)!.length;
  let fits = 0;
  while (streamLength(fits + 1) <= length - LZF_MIN_SIZE) fits++;
  t.equal(streamLength(fits), length - LZF_MIN_SIZE, 'a stream of exactly length - 1024 bytes exists');
  const exact = encode(partlyNoise(length, fits), LZF);
  t.equal(exact.nv.getString('compression'), 'lzf', 'a stream of exactly length - 1024 bytes is used');
  t.equal(exact.payload.length, 4 + length - LZF_MIN_SIZE);
  const over = encode(partlyNoise(length, fits + 1), LZF);
  t.equal(over.nv.getString('compression'), undefined, 'one byte more and the data goes as it is');
  t.same(over.payload, partlyNoise(length, fits + 1));

  const incompressible = noise(MAXPHYS, 3);
  const nv = new Nv();
  t.equal(encodePayload(nv, incompressible, LZF), incompressible, 'incompressible data goes as it is, uncopied');
  t.equal(nv.getString('compression'), undefined, 'without a compression field');
});

t.test('crc32 is zlib CRC-32 in 4 little-endian bytes; sha256 is node:crypto SHA-256', async (t) => {
  const crc = encode(Buffer.from('123456789'), { checksum: 'crc32', compression: 'none' });
  t.equal(crc.nv.getString('checksum'), 'crc32');
  // The CRC-32 check value of "123456789" is 0xcbf43926.
  t.same(Buffer.from(crc.nv.getUint8Array('hash')!), Buffer.from([0x26, 0x39, 0xf4, 0xcb]));
  t.same(crc.payload, Buffer.from('123456789'));

  const data = noise(8 * KiB, 4);
  const sha = encode([data.subarray(0, 1000), data.subarray(1000)], { checksum: 'sha256', compression: 'none' });
  t.equal(sha.nv.getString('checksum'), 'sha256');
  t.same(Buffer.from(sha.nv.getUint8Array('hash')!), createHash('sha256').update(data).digest(), 'over the chunks as one');

  const zero = encode(Buffer.alloc(4 * KiB), { checksum: 'sha256', compression: 'hole' });
  t.same(Buffer.from(zero.nv.getUint8Array('hash')!), createHash('sha256').update(le32(4 * KiB)).digest(), 'over the compressed bytes');
  const encoded = zero.nv.encode();
  const positions = ['compression', 'checksum', 'hash'].map((name) => encoded.indexOf(`${name}\0`));
  t.ok(positions[0]! >= 0 && positions[0]! < positions[1]! && positions[1]! < positions[2]!, `in hastd's order: ${positions.join(', ')}`);
});

t.test('a wrong, missing or odd hash is a ProtocolError with hastd text', async (t) => {
  const data = noise(4 * KiB, 5);
  for (const checksum of ['crc32', 'sha256'] as const) {
    const { nv, payload } = encode(data, { checksum, compression: 'none' });
    t.same(joinBytes(decodePayload(nv, payload, MAXPHYS)!), data, `${checksum} verifies`);
    const flipped = Buffer.from(payload);
    flipped[1234]! ^= 0x10;
    t.throws(() => decodePayload(nv, flipped, MAXPHYS), new ProtocolError('Hash mismatch.'), `${checksum}: one flipped bit`);
  }
  t.throws(() => decodePayload(new Nv().addString('checksum', 'crc32'), data, MAXPHYS), new ProtocolError('Hash is missing.'));
  const short = new Nv().addString('checksum', 'crc32').addUint8Array('hash', Uint8Array.of(1, 2, 3));
  t.throws(() => decodePayload(short, data, MAXPHYS), new ProtocolError('Invalid hash size (3) for crc32, should be 4.'));
  const md5 = new Nv().addString('checksum', 'md5').addUint8Array('hash', new Uint8Array(16));
  t.throws(() => decodePayload(md5, data, MAXPHYS), new ProtocolError("Unknown checksum algorithm 'md5'."));
  t.throws(() => decodePayload(new Nv().addString('compression', 'zstd'), data, MAXPHYS), new ProtocolError("Unknown compression algorithm 'zstd'."));
});

t.test('malformed compressed payloads are refused', async (t) => {
  const hole = new Nv().addString('compression', 'hole');
  t.throws(() => decodePayload(hole, Buffer.alloc(5), MAXPHYS), new ProtocolError('Unable to decompress (invalid size: 5).'));
  const lzf = new Nv().addString('compression', 'lzf');
  t.throws(() => decodePayload(lzf, le32(2000), MAXPHYS), new ProtocolError('Unable to decompress (invalid size: 4).'));
  t.throws(
    () => decodePayload(lzf, Buffer.concat([le32(2000), Buffer.from([0x20, 0x00])]), MAXPHYS),
    new ProtocolError('Unable to decompress: LZF back reference at input offset 0 reaches 1 bytes back from output offset 0.'),
  );
  const stream = lzfCompress(partlyNoise(4 * KiB, 100), 4 * KiB)!;
  t.throws(
    () => decodePayload(lzf, Buffer.concat([le32(4 * KiB + 8), stream]), MAXPHYS),
    new ProtocolError(`Unable to decompress: LZF stream decodes to ${4 * KiB} bytes, not the announced ${4 * KiB + 8}.`),
    'a wrong original length',
  );
});

t.test('an announced length above the limit is refused before anything is allocated', async (t) => {
  const allocations: number[] = [];
  const { alloc, allocUnsafe } = Buffer;
  Buffer.alloc = ((size: number, ...rest: []) => (allocations.push(size), alloc(size, ...rest))) as typeof Buffer.alloc;
  Buffer.allocUnsafe = ((size: number) => (allocations.push(size), allocUnsafe(size))) as typeof Buffer.allocUnsafe;
  try {
    for (const [algorithm, announced] of [['hole', MAXPHYS + 8], ['lzf', 0xffffffff]] as const) {
      const nv = new Nv().addString('compression', algorithm);
      const payload = algorithm === 'hole' ? le32(announced) : Buffer.concat([le32(announced), Buffer.from([0x00, 0x00])]);
      allocations.length = 0;
      t.throws(
        () => decodePayload(nv, payload, MAXPHYS),
        new ProtocolError(`Unable to decompress (${algorithm} payload announces ${announced} bytes, more than the ${MAXPHYS} allowed).`),
      );
      t.same(allocations.filter((size) => size > MAXPHYS), [], `${algorithm}: nothing big allocated`);
    }
  } finally {
    Buffer.alloc = alloc;
    Buffer.allocUnsafe = allocUnsafe;
  }
  t.same(joinBytes(decodePayload(new Nv().addString('compression', 'hole'), le32(MAXPHYS), MAXPHYS)!), Buffer.alloc(MAXPHYS), 'the limit itself is fine');
});

const encodings = fc.record({
  checksum: fc.constantFrom('none', 'crc32', 'sha256'),
  compression: fc.constantFrom('none', 'hole', 'lzf'),
}) as fc.Arbitrary<PayloadEncoding>;

const payloads = fc
  .record({
    kind: fc.constantFrom('zeroes', 'noise', 'partly'),
    sectors: fc.integer({ min: 1, max: MAXPHYS / 512 }),
    seed: fc.integer(),
    split: fc.nat(),
  })
  .map(({ kind, sectors, seed, split }) => {
    const length = sectors * 512;
    const data = kind === 'zeroes' ? Buffer.alloc(length) : kind === 'noise' ? noise(length, seed) : partlyNoise(length, (seed >>> 0) % length);
    // Sometimes as the chunks a socket delivers.
    const at = split % (length + 1);
    return { data, bytes: at === 0 ? data : [data.subarray(0, at), data.subarray(at)] };
  });

t.test('whatever the sender configured, the receiver decodes from the fields alone', async (t) => {
  const used = new Set<string>();
  fc.assert(
    fc.property(encodings, payloads, (encoding, { data, bytes }) => {
      const nv = new Nv();
      const sent = encodePayload(nv, bytes, encoding);
      used.add(`${nv.getString('compression') ?? 'plain'}+${nv.getString('checksum') ?? 'none'}`);
      // Through the nv encoding, as the peer sees it.
      const received = Nv.decode(nv.encode());
      return joinBytes(decodePayload(received, sent, MAXPHYS)!).equals(data);
    }),
    { numRuns: 400, seed: 21 },
  );
  t.equal(used.size, 9, `every combination seen: ${[...used].sort().join(', ')}`);
});
