import fc from 'fast-check';
import t from 'tap';
import { LzfError, lzfCompress, lzfDecompress } from '../../src/engine/lzf.js';
import { noise } from '../fixtures/noise.js';

const KiB = 1024;

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

// Room for any stream: the input, one control byte per 32 literals, and one more.
function roomFor(length: number): number {
  return length + Math.ceil(length / 32) + 1;
}


// Data of the kinds a disk holds: noise, a short pattern repeated, zeroes, and text-like runs with repeats.
const dataKind = fc.constantFrom('noise', 'pattern', 'zeroes', 'mixed');
const sample = fc.record({ kind: dataKind, length: fc.integer({ min: 0, max: 128 * KiB }), seed: fc.integer(), period: fc.integer({ min: 1, max: 300 }) }).map(
  ({ kind, length, seed, period }) => {
    switch (kind) {
      case 'noise':
        return noise(length, seed);
      case 'pattern': {
        const unit = noise(period, seed);
        return Buffer.alloc(length, unit);
      }
      case 'zeroes':
        return Buffer.alloc(length);
      default: {
        // Noise with every other 4 KiB block a copy of an earlier stretch, so matches at many distances.
        const buffer = noise(length, seed);
        for (let at = 4 * KiB; at + 4 * KiB <= length; at += 8 * KiB) {
          const from = at - Math.min(at, period * 20);
          buffer.copy(buffer, at, from, from + 4 * KiB);
        }
        return buffer;
      }
    }
  },
);

t.test('hand-built streams decode to exact bytes', async (t) => {
  // A literal run of 3 bytes: control 0x02 then "abc".
  t.equal(lzfDecompress(hex('02 616263'), 3).toString(), 'abc');
  // Then a back reference: control 0x20 (length field 1: copy 3), offset byte 0x02 (3 bytes back).
  t.equal(lzfDecompress(hex('02 616263 20 02'), 6).toString(), 'abcabc');
  // An overlapping reference: "a", then control 0xe0 (long form), length byte 3 (7 + 3 + 2 = 12), offset 1.
  t.equal(lzfDecompress(hex('00 61 e0 03 00'), 13).toString(), 'a'.repeat(13));
  // The offset's high bits live in the control byte: 288 literal bytes (9 runs of 32), then control 0x21 and
  // offset byte 0x00: 256 + 0 + 1 = 257 bytes back, 3 bytes long.
  const literal = noise(288, 5);
  const runs = Buffer.concat(Array.from({ length: 9 }, (_, i) => Buffer.concat([Buffer.from([0x1f]), literal.subarray(i * 32, i * 32 + 32)])));
  const decoded = lzfDecompress(Buffer.concat([runs, hex('21 00')]), 291);
  t.same(decoded.subarray(0, 288), literal);
  t.same(decoded.subarray(288), literal.subarray(288 - 257, 288 - 257 + 3));
  t.same(lzfDecompress(Buffer.alloc(0), 0), Buffer.alloc(0), 'an empty stream is empty data');
});

t.test('the compressor writes the format by hand: a literal, then a long reference', async (t) => {
  // "a" as a literal (00 61), then 9 bytes from 1 back: long form e0, length byte 9 - 9 = 0, offset byte 0.
  t.equal(lzfCompress(Buffer.from('a'.repeat(10)), 100)?.toString('hex'), '0061e00000');
  // Nothing repeats in "abcdef": one literal run.
  t.equal(lzfCompress(Buffer.from('abcdef'), 100)?.toString('hex'), '05616263646566');
  // "abcabcabc": literal "abc", then 6 bytes from 3 back: control (6 - 2) << 5 = 0x80, offset byte 2.
  t.equal(lzfCompress(Buffer.from('abcabcabc'), 100)?.toString('hex'), '02616263' + '8002');
  t.same(lzfCompress(Buffer.alloc(0), 0), Buffer.alloc(0));
});

t.test('malformed streams throw LzfError naming the problem', async (t) => {
  const cases: Array<[string, Buffer, number, RegExp]> = [
    ['reference before the start', hex('20 00'), 3, /^LZF back reference at input offset 0 reaches 1 bytes back from output offset 0$/],
    ['reference one byte too far', hex('01 6162 20 02'), 5, /reaches 3 bytes back from output offset 2$/],
    ['truncated literal', hex('05 61'), 6, /^LZF stream truncated: literal run of 6 bytes at input offset 0, 1 left$/],
    ['reference without offset byte', hex('00 61 20'), 4, /^LZF stream truncated: back reference at input offset 2 lacks its offset byte$/],
    ['long reference without length byte', hex('00 61 e0'), 11, /^LZF stream truncated: back reference at input offset 2 lacks its length byte$/],
    ['long reference without offset byte', hex('00 61 e0 00'), 11, /lacks its offset byte$/],
    ['literal overrunning the output', hex('02 616263'), 2, /^LZF literal run at input offset 0 overruns the 2-byte output$/],
    ['reference overrunning the output', hex('00 61 20 00'), 3, /^LZF back reference at input offset 2 overruns the 3-byte output$/],
    ['stream shorter than announced', hex('02 616263'), 4, /^LZF stream decodes to 3 bytes, not the announced 4$/],
    ['empty stream, data announced', Buffer.alloc(0), 1, /^LZF stream decodes to 0 bytes, not the announced 1$/],
  ];
  for (const [what, stream, length, message] of cases) {
    t.throws(() => lzfDecompress(stream, length), { name: 'LzfError', message }, what);
  }
});

t.test('round trip: any data decompresses to itself', async (t) => {
  let compressedSome = false;
  fc.assert(
    fc.property(sample, (data) => {
      const stream = lzfCompress(data, roomFor(data.length));
      if (stream === undefined) return false;
      if (stream.length < data.length) compressedSome = true;
      return lzfDecompress(stream, data.length).equals(data);
    }),
    { numRuns: 300, seed: 11 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4 * KiB }), (bytes) => {
      const data = Buffer.from(bytes);
      return lzfDecompress(lzfCompress(data, roomFor(data.length))!, data.length).equals(data);
    }),
    { numRuns: 2000, seed: 12 },
  );
  t.ok(compressedSome, 'some samples compressed');
});

t.test('compression ratios are what LZF gives', async (t) => {
  const zeroes = lzfCompress(Buffer.alloc(128 * KiB), roomFor(128 * KiB))!;
  // One literal byte, then references of 264 bytes at 3 bytes each.
  t.ok(zeroes.length < 1600, `128 KiB of zeroes: ${zeroes.length} bytes`);
  const random = noise(128 * KiB, 3);
  const noisy = lzfCompress(random, roomFor(random.length))!.length;
  // About one control byte per 32 literals; the odd chance 3-byte match saves a byte or two.
  t.ok(noisy > 128 * KiB + 4 * KiB - 256 && noisy <= 128 * KiB + 4 * KiB, `128 KiB of noise: ${noisy} bytes`);
});

t.test('maxOutput is a hard limit: one byte less than needed gives undefined', async (t) => {
  fc.assert(
    fc.property(sample, (data) => {
      const stream = lzfCompress(data, roomFor(data.length))!;
      const exact = lzfCompress(data, stream.length);
      const short = data.length === 0 ? undefined : lzfCompress(data, stream.length - 1);
      return exact !== undefined && exact.equals(stream) && short === undefined;
    }),
    { numRuns: 200, seed: 13 },
  );
  t.equal(lzfCompress(noise(2 * KiB, 9), 1024), undefined, 'noise does not fit in half its size');
  // "a" as a literal takes 2 bytes, the reference after it 3 more.
  t.equal(lzfCompress(Buffer.from('a'.repeat(10)), 4), undefined, 'the reference does not fit');
  t.equal(lzfCompress(Buffer.from('a'.repeat(10)), 5)?.length, 5);
});

// A valid stream with some bytes replaced, some cut off or some appended.
const mutatedStream = fc
  .record({
    data: sample,
    edits: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 4 }),
    cut: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.nat({ max: 8 })),
    tail: fc.uint8Array({ maxLength: 4 }),
    lengthDelta: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, fc.integer({ min: -3, max: 3 })),
  })
  .map(({ data, edits, cut, tail, lengthDelta }) => {
    const stream = Buffer.from(lzfCompress(data.subarray(0, 8 * KiB), roomFor(8 * KiB))!);
    for (const { at, value } of edits) if (stream.length > 0) stream[at % stream.length] = value;
    const input = Buffer.concat([stream.subarray(0, Math.max(0, stream.length - cut)), Buffer.from(tail)]);
    return { input, length: Math.max(0, Math.min(data.length, 8 * KiB) + lengthDelta) };
  });

const randomStream = fc
  .record({ bytes: fc.uint8Array({ maxLength: 512 }), length: fc.integer({ min: 0, max: 64 * KiB }) })
  .map(({ bytes, length }) => ({ input: Buffer.from(bytes), length }));

t.test('fuzz: malformed streams give LzfError or exactly the announced length, nothing else', async (t) => {
  const outcomes = { decoded: 0, refused: 0 };
  fc.assert(
    fc.property(fc.oneof(mutatedStream, randomStream), ({ input, length }) => {
      try {
        const out = lzfDecompress(input, length);
        outcomes.decoded++;
        return out.length === length;
      } catch (error) {
        if (!(error instanceof LzfError)) throw error;
        outcomes.refused++;
        return true;
      }
    }),
    { numRuns: 12_000, seed: 14 },
  );
  t.ok(outcomes.decoded > 500 && outcomes.refused > 5000, `outcomes: ${JSON.stringify(outcomes)}`);
});
