import t from 'tap';
import fc from 'fast-check';
import {
  checkRequest,
  CMD,
  CMD_FLAG,
  commandName,
  decodeClientFlags,
  decodeExportName,
  decodeExportRequest,
  decodeOptionHeader,
  decodeRequestHeader,
  encodeDoneChunk,
  encodeErrorChunk,
  encodeExportListEntry,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeOptionError,
  encodeOptionReply,
  encodeReadChunkHeader,
  encodeSimpleReply,
  INFO,
  InvalidOptionError,
  NBD_ERROR,
  nbdErrorOf,
  NbdProtocolError,
  OPT,
  REP,
  type NbdRequest,
} from '../../src/engine/nbd-protocol.js';
import { encodeOption, encodeRequest, exportRequestData } from '../fixtures/nbd-raw-client.js';

const hex = (bytes: Buffer) => bytes.toString('hex');

t.test('greeting: NBDMAGIC, IHAVEOPT, fixed newstyle and no zeroes', async (t) => {
  t.equal(hex(encodeGreeting()), `${hex(Buffer.from('NBDMAGICIHAVEOPT'))}0003`);
});

t.test('client flags: known bits decoded, unknown bits refused', async (t) => {
  const flags = (n: number) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(n, 0);
    return bytes;
  };
  t.same(decodeClientFlags(flags(0)), { fixedNewstyle: false, noZeroes: false });
  t.same(decodeClientFlags(flags(1)), { fixedNewstyle: true, noZeroes: false });
  t.same(decodeClientFlags(flags(3)), { fixedNewstyle: true, noZeroes: true });
  t.throws(() => decodeClientFlags(flags(4)), new NbdProtocolError('unknown client flags 0x00000004'));
  t.throws(() => decodeClientFlags(flags(0x80000001)), new NbdProtocolError('unknown client flags 0x80000001'));
});

t.test('option header: option and length after the IHAVEOPT magic', async (t) => {
  t.same(decodeOptionHeader(encodeOption(OPT.GO, Buffer.alloc(0), 0xfffffff0)), { option: OPT.GO, length: 0xfffffff0 });
  const bad = encodeOption(OPT.GO);
  bad.write('NBDMAGIC', 0, 'latin1');
  t.throws(() => decodeOptionHeader(bad), new NbdProtocolError('bad option magic 0x4e42444d41474943'));
});

t.test('export names: UTF-8 without NUL, at most 4096 bytes', async (t) => {
  t.equal(decodeExportName(Buffer.from('résumé', 'utf8')), 'résumé');
  t.equal(decodeExportName(Buffer.alloc(0)), '');
  t.equal(decodeExportName(Buffer.alloc(4096, 'a')), 'a'.repeat(4096));
  t.throws(() => decodeExportName(Buffer.alloc(4097, 'a')), new InvalidOptionError('export name of 4097 bytes is too long'));
  t.throws(() => decodeExportName(Buffer.from([0x61, 0xff])), new InvalidOptionError('export name is not valid UTF-8'));
  t.throws(() => decodeExportName(Buffer.from('a\0b')), new InvalidOptionError('export name contains a NUL character'));
});

t.test('NBD_OPT_INFO / NBD_OPT_GO data', async (t) => {
  t.same(decodeExportRequest(exportRequestData('disk', [INFO.NAME, INFO.BLOCK_SIZE])), { name: 'disk', infoRequests: [1, 3] });
  t.same(decodeExportRequest(exportRequestData('')), { name: '', infoRequests: [] });
  t.throws(() => decodeExportRequest(Buffer.alloc(5)), new InvalidOptionError('option data of 5 bytes is too short'));
  const overrun = exportRequestData('disk');
  overrun.writeUInt32BE(5, 0);
  t.throws(() => decodeExportRequest(overrun), new InvalidOptionError('export name length 5 overruns the option data'));
  const extra = Buffer.concat([exportRequestData('disk', [INFO.NAME]), Buffer.alloc(1)]);
  t.throws(() => decodeExportRequest(extra), new InvalidOptionError('1 information requests do not fit 3 bytes'));
  const short = exportRequestData('disk', [INFO.NAME]).subarray(0, 11);
  t.throws(() => decodeExportRequest(short), new InvalidOptionError('1 information requests do not fit 1 bytes'));
});

t.test('option replies: magic, option, type, length, data', async (t) => {
  t.equal(hex(encodeOptionReply(OPT.LIST, REP.ACK)), '0003e889045565a9' + '00000003' + '00000001' + '00000000');
  t.equal(hex(encodeOptionError(99, REP.ERR_UNSUP, 'no')), '0003e889045565a9' + '00000063' + '80000001' + '00000002' + '6e6f');
  // Messages are cut to 4096 bytes without splitting a character.
  const long = encodeOptionError(OPT.GO, REP.ERR_INVALID, 'a' + 'é'.repeat(3000));
  t.equal(long.readUInt32BE(16), 4095);
  t.equal(long.subarray(20).toString('utf8'), 'a' + 'é'.repeat(2047));
});

t.test('export list entries, information items and the NBD_OPT_EXPORT_NAME reply', async (t) => {
  t.equal(hex(encodeExportListEntry('db', 'a disk')), '00000002' + hex(Buffer.from('dba disk')));
  t.equal(hex(encodeExportListEntry('db')), '00000002' + hex(Buffer.from('db')));
  t.equal(hex(encodeInfoExport(2 ** 40 + 512, 0x14d)), '0000' + '0000010000000200' + '014d');
  t.equal(hex(encodeInfoText(INFO.NAME, 'db')), '0001' + hex(Buffer.from('db')));
  t.equal(hex(encodeInfoText(INFO.DESCRIPTION, 'x')), '0002' + '78');
  t.equal(hex(encodeInfoBlockSize(512, 4096, 131072)), '0003' + '00000200' + '00001000' + '00020000');
  t.equal(hex(encodeExportNameReply(1024, 0x14d, true)), '0000000000000400' + '014d');
  const padded = encodeExportNameReply(1024, 0x14d, false);
  t.equal(padded.length, 134);
  t.equal(hex(padded.subarray(0, 10)), '0000000000000400' + '014d');
  t.ok(padded.subarray(10).every((byte) => byte === 0));
});

t.test('request headers decode what a client encodes, large offsets included', async (t) => {
  const request: NbdRequest = { flags: CMD_FLAG.FUA, type: CMD.WRITE, handle: 0xdeadbeefcafef00dn, offset: 2 ** 40 + 4096, length: 65536 };
  t.same(decodeRequestHeader(encodeRequest(request)), request);
  // Past 2^53 the offset is approximate, but still past any export.
  const huge = encodeRequest({ type: CMD.READ });
  huge.writeBigUInt64BE(0xffffffffffffffffn, 16);
  t.equal(decodeRequestHeader(huge).offset, 2 ** 64);
  const bad = encodeRequest({ type: CMD.READ });
  bad.writeUInt32BE(0x67446698, 0);
  t.throws(() => decodeRequestHeader(bad), new NbdProtocolError('bad request magic 0x67446698'));
  fc.assert(
    fc.property(
      fc.record({
        flags: fc.integer({ min: 0, max: 0xffff }),
        type: fc.integer({ min: 0, max: 0xffff }),
        handle: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        offset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        length: fc.integer({ min: 0, max: 0xffffffff }),
      }),
      (r) => {
        t.same(decodeRequestHeader(encodeRequest(r)), r);
      },
    ),
    { numRuns: 500 },
  );
});

t.test('request checks follow proto.md', async (t) => {
  const geometry = { size: 1024 * 1024, minimumBlockSize: 512, maximumRequest: 65536 };
  const check = (request: Partial<NbdRequest> & { type: number }) =>
    checkRequest({ flags: 0, handle: 0n, offset: 0, length: 512, ...request }, geometry);
  t.equal(check({ type: CMD.READ }), undefined);
  t.equal(check({ type: CMD.WRITE, flags: CMD_FLAG.FUA, offset: 1024 * 1024 - 512 }), undefined);
  t.equal(check({ type: CMD.READ, length: 0 }), undefined);
  t.equal(check({ type: CMD.FLUSH, offset: 3, length: 7 }), undefined, 'flush ignores its reserved fields');
  t.equal(check({ type: CMD.TRIM, length: 1024 * 1024 }), undefined, 'trim is not bound by the maximum');
  t.equal(check({ type: CMD.WRITE_ZEROES, flags: CMD_FLAG.NO_HOLE | CMD_FLAG.FUA, length: 1024 * 1024 }), undefined);
  t.same(check({ type: 42 }), { error: NBD_ERROR.EINVAL, reason: 'command 42 is not supported' });
  t.same(check({ type: CMD.BLOCK_STATUS }), { error: NBD_ERROR.EINVAL, reason: 'NBD_CMD_BLOCK_STATUS is not supported' });
  t.same(check({ type: CMD.CACHE }), { error: NBD_ERROR.EINVAL, reason: 'NBD_CMD_CACHE is not supported' });
  t.same(check({ type: CMD.READ, flags: CMD_FLAG.DF }), { error: NBD_ERROR.EINVAL, reason: 'NBD_CMD_READ does not accept flags 0x4' });
  t.same(check({ type: CMD.WRITE, flags: CMD_FLAG.NO_HOLE }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_WRITE does not accept flags 0x2',
  });
  t.same(check({ type: CMD.FLUSH, flags: 0x8000 }), { error: NBD_ERROR.EINVAL, reason: 'NBD_CMD_FLUSH does not accept flags 0x8000' });
  t.same(check({ type: CMD.READ, offset: 100 }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_READ of 512 bytes at offset 100 is not aligned to 512 bytes',
  });
  t.same(check({ type: CMD.TRIM, length: 1000 }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_TRIM of 1000 bytes at offset 0 is not aligned to 512 bytes',
  });
  t.same(check({ type: CMD.WRITE, length: 65536 + 512 }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_WRITE of 66048 bytes at offset 0 is longer than the maximum of 65536 bytes',
  });
  t.same(check({ type: CMD.READ, offset: 1024 * 1024 }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_READ of 512 bytes at offset 1048576 ends past the export size 1048576',
  });
  t.same(check({ type: CMD.TRIM, offset: 1024 * 1024 - 512, length: 1024 }), {
    error: NBD_ERROR.EINVAL,
    reason: 'NBD_CMD_TRIM of 1024 bytes at offset 1048064 ends past the export size 1048576',
  });
  t.same(check({ type: CMD.WRITE, offset: 1024 * 1024 }), {
    error: NBD_ERROR.ENOSPC,
    reason: 'NBD_CMD_WRITE of 512 bytes at offset 1048576 ends past the export size 1048576',
  });
  t.same(check({ type: CMD.WRITE_ZEROES, offset: 2 ** 62 }), {
    error: NBD_ERROR.ENOSPC,
    reason: `NBD_CMD_WRITE_ZEROES of 512 bytes at offset ${2 ** 62} ends past the export size 1048576`,
  });
});

t.test('transmission replies', async (t) => {
  t.equal(hex(encodeSimpleReply(0x0102030405060708n, NBD_ERROR.ENOSPC)), '67446698' + '0000001c' + '0102030405060708');
  t.equal(
    hex(encodeReadChunkHeader(7n, 4096, 512)),
    '668e33ef' + '0001' + '0001' + '0000000000000007' + '00000208' + '0000000000001000',
  );
  t.equal(hex(encodeDoneChunk(7n)), '668e33ef' + '0001' + '0000' + '0000000000000007' + '00000000');
  t.equal(
    hex(encodeErrorChunk(7n, NBD_ERROR.EIO, 'bad')),
    '668e33ef' + '0001' + '8001' + '0000000000000007' + '00000009' + '00000005' + '0003' + hex(Buffer.from('bad')),
  );
});

t.test('device errors map to NBD errors', async (t) => {
  t.same(
    (['EIO', 'EINVAL', 'ENOSPC', 'EPERM', 'ESHUTDOWN', 'EOPNOTSUPP'] as const).map(nbdErrorOf),
    [NBD_ERROR.EIO, NBD_ERROR.EINVAL, NBD_ERROR.ENOSPC, NBD_ERROR.EPERM, NBD_ERROR.ESHUTDOWN, NBD_ERROR.ENOTSUP],
  );
  const { EIO, EINVAL, ENOSPC, EPERM, ESHUTDOWN, ENOTSUP } = NBD_ERROR;
  t.same([EIO, EINVAL, ENOSPC, EPERM, ESHUTDOWN, ENOTSUP], [5, 22, 28, 1, 108, 95], 'the numbers proto.md fixes');
  t.equal(commandName(CMD.WRITE_ZEROES), 'NBD_CMD_WRITE_ZEROES');
  t.equal(commandName(300), 'command 300');
});
