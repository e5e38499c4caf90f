import { deepStrictEqual } from 'node:assert';
import fc from 'fast-check';
import t from 'tap';
import { ExitError } from '../../src/common/errors.js';
import {
  decodeMetadata,
  encodeMetadata,
  layoutForCreate,
  METADATA_SIZE,
  MetadataError,
  ondiskMapSize,
  type HastMetadata,
} from '../../src/engine/metadata.js';
import { Nv, NvError } from '../../src/engine/nv.js';

const GiB = 2n ** 30n;
const WHERE = { path: '/dev/ada0', resource: 'shared' };

const KNOWN: HastMetadata = {
  resource: 'shared',
  datasize: 1073737216n,
  extentsize: 2097152,
  keepdirty: 64,
  localoff: 4608n,
  resuid: 0x0102030405060708n,
  localcnt: 5n,
  remotecnt: 0x100000000n,
  prevrole: 'primary',
};

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

function block(nv: Nv): Buffer {
  const buf = Buffer.alloc(METADATA_SIZE);
  nv.encode().copy(buf);
  return buf;
}

// The fields of KNOWN as hastd writes them, minus the ones named in `skip`.
function knownNv(skip: string[] = []): Nv {
  const nv = new Nv();
  if (!skip.includes('resource')) nv.addString('resource', 'shared');
  if (!skip.includes('datasize')) nv.addUint64('datasize', KNOWN.datasize);
  if (!skip.includes('extentsize')) nv.addUint32('extentsize', KNOWN.extentsize);
  if (!skip.includes('keepdirty')) nv.addUint32('keepdirty', KNOWN.keepdirty);
  if (!skip.includes('offset')) nv.addUint64('offset', KNOWN.localoff);
  if (!skip.includes('resuid')) nv.addUint64('resuid', KNOWN.resuid);
  if (!skip.includes('localcnt')) nv.addUint64('localcnt', KNOWN.localcnt);
  if (!skip.includes('remotecnt')) nv.addUint64('remotecnt', KNOWN.remotecnt);
  if (!skip.includes('prevrole')) nv.addString('prevrole', KNOWN.prevrole);
  return nv;
}

t.test('encodeMetadata lays the fields out as hastd does', async (t) => {
  const encoded = encodeMetadata(KNOWN);
  t.equal(encoded.length, METADATA_SIZE);
  // Each record: type, namesize, dsize (LE), name padded to 8, data padded to 8.
  const records = hex(`
    11 09 07000000  7265736f75726365 0000000000000000  7368617265640000
    08 09 08000000  6461746173697a65 0000000000000000  00eeff3f00000000
    06 0b 04000000  657874656e747369 7a65000000000000  0000200000000000
    06 0a 04000000  6b65657064697274 7900000000000000  4000000000000000
    08 07 08000000  6f66667365740000                   0012000000000000
    08 07 08000000  7265737569640000                   0807060504030201
    08 09 08000000  6c6f63616c636e74 0000000000000000  0500000000000000
    08 0a 08000000  72656d6f7465636e 7400000000000000  0000000001000000
    11 09 08000000  70726576726f6c65 0000000000000000  7072696d61727900
  `);
  t.equal(records.length, 4 * 30 + 2 * 22 + 3 * 30);
  t.equal(encoded.subarray(0, records.length).toString('hex'), records.toString('hex'));
  t.ok(encoded.subarray(records.length).every((byte) => byte === 0), 'zero-padded to 4096 bytes');
});

t.test('a metadata block decodes to what was encoded', async (t) => {
  t.same(decodeMetadata(encodeMetadata(KNOWN), WHERE), KNOWN);
  const metadata = fc.record({
    resource: fc.string({ minLength: 1, maxLength: 64 }).filter((s) => !s.includes('\0')),
    datasize: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    extentsize: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    keepdirty: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    localoff: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    resuid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    localcnt: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    remotecnt: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    prevrole: fc.constantFrom('init' as const, 'primary' as const, 'secondary' as const),
  });
  fc.assert(
    fc.property(metadata, (md) => {
      // fast-check's records have no prototype; compare against a plain copy.
      deepStrictEqual(decodeMetadata(encodeMetadata(md), { path: '/x', resource: md.resource }), { ...md });
    }),
    { numRuns: 500 },
  );
});

t.test('metadata that does not fit the block is refused', async (t) => {
  t.throws(() => encodeMetadata({ ...KNOWN, resource: 'r'.repeat(4000) }), RangeError);
  t.throws(() => encodeMetadata({ ...KNOWN, datasize: -511n }), NvError);
});

t.test('garbage is invalid metadata, exit 66', async (t) => {
  const garbage = Buffer.alloc(METADATA_SIZE, 0xff);
  const error = t.throws(() => decodeMetadata(garbage, WHERE)) as MetadataError;
  t.ok(error instanceof MetadataError);
  t.ok(error instanceof ExitError);
  t.equal(error.message, 'Metadata read from /dev/ada0 is invalid.');
  t.equal(error.exitCode, 66);
  t.ok(error.cause instanceof NvError);
  t.equal(
    (error.cause as NvError).message,
    'nv record at byte 0: type 0xff is in host byte order, not little-endian',
  );
});

t.test('a zeroed block has no fields and cannot be read', async (t) => {
  const error = t.throws(() => decodeMetadata(Buffer.alloc(METADATA_SIZE), WHERE)) as MetadataError;
  t.equal(error.message, 'Unable to read metadata from /dev/ada0.');
  t.equal(error.exitCode, 66);
  t.equal((error.cause as NvError).message, 'nv field "resource" (string) is missing');
});

t.test('every field is needed', async (t) => {
  const names = ['datasize', 'extentsize', 'keepdirty', 'offset', 'resuid', 'localcnt', 'remotecnt', 'prevrole'];
  for (const name of names) {
    const error = t.throws(() => decodeMetadata(block(knownNv([name])), WHERE), name) as MetadataError;
    t.equal(error.message, 'Unable to read metadata from /dev/ada0.');
    t.match((error.cause as NvError).message, `"${name}"`);
  }
  // hastd's nv_get_string() on the missing "resource" flags an error that fails the read afterwards.
  const error = t.throws(() => decodeMetadata(block(knownNv(['resource'])), WHERE)) as MetadataError;
  t.equal(error.message, 'Unable to read metadata from /dev/ada0.');
});

t.test('a field of the wrong type reads as missing', async (t) => {
  const nv = knownNv(['extentsize']).addUint64('extentsize', 2097152n);
  const error = t.throws(() => decodeMetadata(block(nv), WHERE)) as MetadataError;
  t.equal(error.message, 'Unable to read metadata from /dev/ada0.');
  t.equal((error.cause as NvError).message, 'nv field "extentsize" is uint64, expected uint32');
});

t.test('metadata of another resource is refused before anything else', async (t) => {
  const error = t.throws(() => decodeMetadata(encodeMetadata(KNOWN), { path: '/dev/ada0', resource: 'other' }));
  t.ok(error instanceof MetadataError);
  t.equal((error as MetadataError).message, 'Provider /dev/ada0 is not part of resource other.');
  t.equal((error as MetadataError).exitCode, 66);
  const incomplete = new Nv().addString('resource', 'shared');
  t.throws(
    () => decodeMetadata(block(incomplete), { path: '/dev/ada0', resource: 'other' }),
    new MetadataError('Provider /dev/ada0 is not part of resource other.'),
  );
});

t.test('prevrole other than primary or secondary reads as init, as in hastd', async (t) => {
  const prevrole = (text: string) =>
    decodeMetadata(block(knownNv(['prevrole']).addString('prevrole', text)), WHERE).prevrole;
  t.equal(prevrole('secondary'), 'secondary');
  t.equal(prevrole('primary'), 'primary');
  t.equal(prevrole('init'), 'init');
  t.equal(prevrole('bogus'), 'init');
});

t.test('unknown extra fields are ignored', async (t) => {
  t.same(decodeMetadata(block(knownNv().addUint8('future', 1)), WHERE), KNOWN);
});

t.test('ondiskMapSize: one bit per extent, rounded up to whole sectors', async (t) => {
  const MiB2 = 2 * 1024 * 1024;
  // 1 GiB / 2 MiB = 512 extents = 64 bytes -> one 512-byte sector.
  t.equal(ondiskMapSize(GiB, MiB2, 512), 512);
  // What hastctl create passes for a 1 GiB file: still 512 extents (the last one partial).
  t.equal(ondiskMapSize(GiB - 4096n, MiB2, 512), 512);
  // One byte still needs one extent, one bitmap byte, one sector.
  t.equal(ondiskMapSize(1n, MiB2, 512), 512);
  t.equal(ondiskMapSize(1n, MiB2, 4096), 4096);
  // 8 GiB = 4096 extents = 512 bytes exactly; one more byte makes 4097 extents = 513 bytes -> 1024.
  t.equal(ondiskMapSize(8n * GiB, MiB2, 512), 512);
  t.equal(ondiskMapSize(8n * GiB + 1n, MiB2, 512), 1024);
  // 2 TiB = 2^20 extents = 131072 bytes, already a multiple of both sector sizes.
  t.equal(ondiskMapSize(2048n * GiB, MiB2, 512), 131072);
  t.equal(ondiskMapSize(2048n * GiB, MiB2, 4096), 131072);
  // 10^11 bytes: ceil(10^11 / 2097152) = 47684 extents, ceil(47684 / 8) = 5961 bytes -> 12 sectors of 512.
  t.equal(ondiskMapSize(100_000_000_000n, MiB2, 512), 6144);
  t.equal(ondiskMapSize(100_000_000_000n, MiB2, 4096), 8192);
  // Small extents: 1 MiB / 512 = 2048 extents = 256 bytes -> 512.
  t.equal(ondiskMapSize(2n ** 20n, 512, 512), 512);
});

t.test('ondiskMapSize refuses what hastd asserts against', async (t) => {
  t.throws(() => ondiskMapSize(0n, 2097152, 512), new RangeError('activemap of 0 bytes: size must be positive'));
  t.throws(() => ondiskMapSize(GiB, 3 * 1024 * 1024, 512), new RangeError('extent size 3145728 is not a power of 2'));
  t.throws(() => ondiskMapSize(GiB, 0, 512), RangeError);
  t.throws(() => ondiskMapSize(GiB, 2097152, 0), new RangeError('sector size 0 is not a power of 2'));
  t.throws(() => ondiskMapSize(GiB, 2097152, 520), RangeError);
  t.throws(() => ondiskMapSize(2n ** 63n, 1, 1), RangeError, 'a map too large to address');
});

t.test('layoutForCreate for a 1 GiB file with the defaults', async (t) => {
  // mediasize 1073741824; the map covers 1073741824 - 4096 bytes = 512 extents of 2 MiB -> 512 bytes;
  // datasize = 1073741824 - 4096 - 512 = 1073737216 and the data starts at 4096 + 512 = 4608.
  const defaults = { extentsize: 2097152, keepdirty: 64, sectorsize: 512, resource: 'shared' };
  t.same(layoutForCreate({ ...defaults, mediasize: GiB }), {
    resource: 'shared',
    datasize: 1073737216n,
    extentsize: 2097152,
    keepdirty: 64,
    localoff: 4608n,
    resuid: 0n,
    localcnt: 0n,
    remotecnt: 0n,
    prevrole: 'init',
  });
});

t.test('layoutForCreate leaves no usable data on a component that is too small', async (t) => {
  const tiny = { extentsize: 2097152, keepdirty: 64, sectorsize: 512, resource: 'r' };
  const exact = layoutForCreate({ ...tiny, mediasize: 4096n });
  t.equal(exact.datasize, 0n);
  t.equal(exact.localoff, 4096n);
  // One byte after the metadata needs a whole 512-byte map sector.
  const short = layoutForCreate({ ...tiny, mediasize: 4097n });
  t.equal(short.datasize, -511n);
  t.equal(short.localoff, 4608n);
  t.equal(layoutForCreate({ ...tiny, mediasize: 5120n }).datasize, 512n);
});
