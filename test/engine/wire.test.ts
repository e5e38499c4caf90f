import t from 'tap';
import { MAXPHYS } from '../../src/engine/activemap.js';
import { ComponentError } from '../../src/engine/local-component.js';
import { ProtocolError, type Packet } from '../../src/engine/hast-proto.js';
import { joinBytes } from '../../src/engine/bytes.js';
import { Nv } from '../../src/engine/nv.js';
import { encodePayload } from '../../src/engine/payload-codec.js';
import {
  ERRNO,
  HIO,
  blockErrorCode,
  errnoOf,
  errnoText,
  keepaliveNv,
  parseReply,
  parseRequest,
  replyNv,
  requestName,
  requestNv,
} from '../../src/engine/wire.js';

const LIMITS = { sectorsize: 512, datasize: 1024n * 1024n };

function packet(nv: Nv, payload?: Buffer): Packet {
  return { version: 2, nv, payload };
}

function request(fields: { cmd?: number; seq?: bigint; offset?: bigint; length?: bigint; memsync?: boolean }): Nv {
  const nv = new Nv();
  if (fields.cmd !== undefined) nv.addUint8('cmd', fields.cmd);
  if (fields.seq !== undefined) nv.addUint64('seq', fields.seq);
  if (fields.offset !== undefined) nv.addUint64('offset', fields.offset);
  if (fields.length !== undefined) nv.addUint64('length', fields.length);
  if (fields.memsync) nv.addUint8('memsync', 1);
  return nv;
}

t.test('a request encodes as hastd sends it and parses back', async (t) => {
  const data = Buffer.alloc(4096, 7);
  const nv = requestNv({ cmd: HIO.WRITE, seq: 9, offset: 8192, length: 4096, memsync: true, data });
  t.equal(nv.getUint8('cmd'), 2);
  t.equal(nv.getUint64('seq'), 9n);
  t.equal(nv.getUint64('offset'), 8192n);
  t.equal(nv.getUint64('length'), 4096n);
  t.equal(nv.getUint8('memsync'), 1);
  t.same(parseRequest(packet(Nv.decode(nv.encode()), data), LIMITS), {
    kind: 'valid',
    cmd: HIO.WRITE,
    seq: 9n,
    offset: 8192,
    length: 4096,
    memsync: true,
    data,
  });
  t.equal(requestNv({ cmd: HIO.READ, seq: 1, offset: 0, length: 512 }).getUint8('memsync'), undefined, 'no memsync unless asked');
});

t.test('keepalives and flushes need no range', async (t) => {
  t.same(parseRequest(packet(keepaliveNv()), LIMITS), { kind: 'keepalive' });
  t.same(parseRequest(packet(request({ cmd: HIO.FLUSH, seq: 3n })), LIMITS), {
    kind: 'valid',
    cmd: HIO.FLUSH,
    seq: 3n,
    offset: 0,
    length: 0,
    memsync: false,
    data: undefined,
  });
});

t.test('invalid requests are refused with hastd messages', async (t) => {
  const cases: Array<[string, Nv, Buffer | undefined, string]> = [
    ['no cmd', request({ seq: 1n }), undefined, "Header contains no 'cmd' field."],
    ['no seq', request({ cmd: HIO.READ, offset: 0n, length: 512n }), undefined, "Header contains no 'seq' field."],
    ['unknown cmd', request({ cmd: 9, seq: 1n }), undefined, "Header contains invalid 'cmd' (9)."],
    ['no offset', request({ cmd: HIO.READ, seq: 1n, length: 512n }), undefined, "Header is missing 'offset' field."],
    ['no length', request({ cmd: HIO.READ, seq: 1n, offset: 0n }), undefined, "Header is missing 'length' field."],
    ['zero length', request({ cmd: HIO.DELETE, seq: 1n, offset: 0n, length: 0n }), undefined, 'Data length is zero.'],
    [
      'too long',
      request({ cmd: HIO.READ, seq: 1n, offset: 0n, length: BigInt(MAXPHYS + 512) }),
      undefined,
      `Data length is too large (${MAXPHYS + 512} > ${MAXPHYS}).`,
    ],
    ['unaligned offset', request({ cmd: HIO.READ, seq: 1n, offset: 100n, length: 512n }), undefined, 'Offset 100 is not multiple of sector size.'],
    ['unaligned length', request({ cmd: HIO.READ, seq: 1n, offset: 0n, length: 100n }), undefined, 'Length 100 is not multiple of sector size.'],
    [
      'past the end',
      request({ cmd: HIO.READ, seq: 1n, offset: 1024n * 1024n - 512n, length: 1024n }),
      undefined,
      `Data offset is too large (${1024 * 1024 + 512} > ${1024 * 1024}).`,
    ],
    [
      'short data',
      request({ cmd: HIO.WRITE, seq: 1n, offset: 0n, length: 1024n }),
      Buffer.alloc(512),
      'Data size 512 differs from the request length 1024.',
    ],
    ['no data', request({ cmd: HIO.WRITE, seq: 1n, offset: 0n, length: 1024n }), undefined, 'Data size 0 differs from the request length 1024.'],
  ];
  for (const [name, nv, payload, reason] of cases) {
    const parsed = parseRequest(packet(nv, payload), LIMITS);
    t.equal(parsed.kind, 'invalid', name);
    if (parsed.kind === 'invalid') t.equal(parsed.reason, reason, name);
  }
  const mistyped = new Nv().addUint16('cmd', HIO.READ).addUint64('seq', 1n);
  t.match(parseRequest(packet(mistyped), LIMITS), { kind: 'invalid', reason: "Header contains no 'cmd' field." }, 'fields must have their exact type');
  t.match(
    parseRequest(packet(request({ cmd: HIO.WRITE, seq: 5n, offset: 1n, length: 512n, memsync: true })), LIMITS),
    { kind: 'invalid', seq: 5n, memsync: true },
    'an invalid memsync write is still marked memsync (its single reply says received)',
  );
  const huge = request({ cmd: HIO.DELETE, seq: 1n, offset: 0n, length: 1024n * 1024n });
  t.match(parseRequest(packet(huge), LIMITS), { kind: 'valid', length: 1024 * 1024 }, 'DELETE may exceed MAXPHYS');
});

t.test('compressed and checksummed payloads are decoded as their fields say', async (t) => {
  const nv = request({ cmd: HIO.WRITE, seq: 1n, offset: 0n, length: 4096n });
  const payload = encodePayload(nv, Buffer.alloc(4096), { checksum: 'crc32', compression: 'hole' });
  t.equal(nv.getString('compression'), 'hole');
  t.match(parseRequest(packet(nv, joinBytes(payload)), LIMITS), { kind: 'valid', length: 4096, data: Buffer.alloc(4096) });
  const data = Buffer.alloc(4096, 'text ');
  const reply = replyNv(1n);
  const sent = joinBytes(encodePayload(reply, data, { checksum: 'sha256', compression: 'lzf' }));
  t.equal(reply.getString('compression'), 'lzf');
  t.same(parseReply(packet(reply, sent)), { seq: 1n, received: false, error: 0, data });
  sent[sent.length - 1]! ^= 1;
  t.throws(() => parseReply(packet(reply, sent)), new ProtocolError('Hash mismatch.'), 'a damaged reply');
  const huge = request({ cmd: HIO.WRITE, seq: 1n, offset: 0n, length: 4096n }).addString('compression', 'hole');
  const announced = Buffer.alloc(4);
  announced.writeUInt32LE(MAXPHYS + 512);
  t.throws(() => parseRequest(packet(huge, announced), LIMITS), ProtocolError, 'more than MAXPHYS once decompressed');
});

t.test('replies carry seq, the memsync mark and a FreeBSD errno', async (t) => {
  t.same(parseReply(packet(replyNv(7n, { received: true }))), { seq: 7n, received: true, error: 0, data: undefined });
  const data = Buffer.from('abc');
  t.same(parseReply(packet(replyNv(8n, { error: ERRNO.EIO }), data)), { seq: 8n, received: false, error: 5, data });
  t.equal(replyNv(8n, { error: ERRNO.EIO }).getInt16('error'), 5, 'error is an int16');
  t.equal(replyNv(8n, { received: true }).getInt8('received'), 1, 'received is an int8');
  t.same(parseReply(packet(new Nv())), { seq: 0n, received: false, error: 0, data: undefined }, 'absent fields read as 0');
});

t.test('local failures map to FreeBSD errno numbers', async (t) => {
  const failure = (code: string): ComponentError => new ComponentError('x', '/dev/x', Object.assign(new Error(code), { code }));
  t.equal(errnoOf(failure('EIO')), 5);
  t.equal(errnoOf(failure('ENOSPC')), 28);
  t.equal(errnoOf(failure('EOPNOTSUPP')), 45);
  t.equal(errnoOf(failure('ENOTSUP')), 45, "Linux's other name for it");
  t.equal(errnoOf(failure('EWHATEVER')), 5, 'unknown codes are EIO');
  t.equal(errnoOf(new Error('plain')), 5);
  t.equal(errnoOf(new Error('outer', { cause: failure('EROFS') })), 30, 'causes are searched');
  t.equal(errnoText(22), 'Invalid argument');
  t.equal(errnoText(57), 'Socket is not connected');
  t.equal(errnoText(999), 'Unknown error: 999');
});

t.test('peer errors map to block device errors', async (t) => {
  t.equal(blockErrorCode(ERRNO.EINVAL), 'EINVAL');
  t.equal(blockErrorCode(ERRNO.ENOSPC), 'ENOSPC');
  t.equal(blockErrorCode(ERRNO.EPERM), 'EPERM');
  t.equal(blockErrorCode(ERRNO.EOPNOTSUPP), 'EOPNOTSUPP');
  t.equal(blockErrorCode(ERRNO.ENOTCONN), 'EIO');
});

t.test('requests are named as hastd logs them', async (t) => {
  t.equal(requestName(HIO.READ, 0, 512), 'READ(0, 512)');
  t.equal(requestName(HIO.WRITE, 4096n, 8192n), 'WRITE(4096, 8192)');
  t.equal(requestName(HIO.DELETE, 0, 1024), 'DELETE(0, 1024)');
  t.equal(requestName(HIO.FLUSH, 0, 0), 'FLUSH');
  t.equal(requestName(HIO.KEEPALIVE, 0, 0), 'KEEPALIVE');
  t.equal(requestName(42, 0, 0), 'UNKNOWN(42)');
});
