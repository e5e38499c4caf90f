import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import { BlockIoError } from '../../src/engine/block-device.js';
import {
  CLIENT_FLAG,
  CMD,
  CMD_FLAG,
  GREETING_SIZE,
  INFO,
  NBD_ERROR,
  OPT,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  TRANSMISSION_FLAG,
} from '../../src/engine/nbd-protocol.js';
import { NbdServer, type NbdExport, type NbdServerOptions } from '../../src/engine/nbd-server.js';
import { socketDir } from '../fixtures/control-target.js';
import { MemoryBlockDevice } from '../fixtures/memory-block-device.js';
import { memoryLogger } from '../fixtures/memory-log.js';
import { encodeOption, encodeRequest, exportRequestData, RawNbdClient } from '../fixtures/nbd-raw-client.js';

const MiB = 1024 * 1024;
const EXPORT_FLAGS = 0x16d;
const QUICK = { timeoutMs: 30_000, killAfterMs: 1_000 };

async function start(t: Test, options: NbdServerOptions & { device?: MemoryBlockDevice } = {}) {
  const path = join(socketDir(t), 'nbd.sock');
  const device = options.device ?? new MemoryBlockDevice(MiB);
  const exported: NbdExport = { name: 'disk', device, description: 'the test disk' };
  const other: NbdExport = { name: 'other', device: new MemoryBlockDevice(2 * MiB) };
  const exports = new Map([exported, other].map((e) => [e.name, e]));
  const memory = memoryLogger();
  const server = await NbdServer.listen(path, (name) => exports.get(name), memory.log, {
    listExports: () => [exported, other],
    ...options,
  });
  t.teardown(() => server.close());
  const warnings = () => memory.records.filter((r) => r['level'] === 40).map((r) => String(r['msg']));
  return { path, device, server, warnings, ...memory };
}

// nbdinfo, a client we did not write, still gets a sensible answer from the server.
async function nbdinfoSize(path: string): Promise<string> {
  return (await runCommand(['nbdinfo', '--size', `nbd+unix:///disk?socket=${path}`], QUICK)).stdout;
}

// Resolves once `condition` holds (polled), failing the test after a second.
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 10_000) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

function pattern(length: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff));
}

t.test('nbdinfo sees the size, block sizes, flags, description and export list', async (t) => {
  const { path } = await start(t, { defaultExport: 'disk' });
  const json = JSON.parse((await runCommand(['nbdinfo', '--json', `nbd+unix:///disk?socket=${path}`], QUICK)).stdout) as {
    protocol: string;
    structured: boolean;
    exports: Record<string, unknown>[];
  };
  t.equal(json.protocol, 'newstyle-fixed');
  t.equal(json.structured, true);
  t.match(json.exports[0], {
    'export-name': 'disk',
    description: 'the test disk',
    'export-size': MiB,
    is_read_only: false,
    is_rotational: false,
    can_flush: true,
    can_fua: true,
    can_trim: true,
    can_zero: true,
    can_multi_conn: true,
    can_df: false,
    can_cache: false,
    can_fast_zero: false,
    block_size_minimum: 512,
    block_size_preferred: 4096,
    block_size_maximum: 131072,
  });
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
  // The empty name selects the default export.
  t.equal((await runCommand(['nbdinfo', '--size', `nbd+unix:///?socket=${path}`], QUICK)).stdout, `${MiB}\n`);
  const list = (await runCommand(['nbdinfo', '--list', '--json', `nbd+unix:///?socket=${path}`], QUICK)).stdout;
  const listed = (JSON.parse(list) as { exports: { 'export-name': string; 'export-size': number }[] }).exports;
  t.same(
    listed.map((e) => [e['export-name'], e['export-size']]),
    [
      ['disk', MiB],
      ['other', 2 * MiB],
    ],
  );
  await t.rejects(
    runCommand(['nbdinfo', `nbd+unix:///nope?socket=${path}`], QUICK),
    /nbd_opt_go: server replied with error to opt_go request: No such file or directory for export: nope/,
  );
});

t.test('NBD_OPT_INFO answers with the items asked for; unknown exports and listing are refused', async (t) => {
  const { path } = await start(t);
  const client = await RawNbdClient.greeted(path);
  client.write(encodeOption(OPT.INFO, exportRequestData('disk', [INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE, 77])));
  const replies = [await client.optionReply(), await client.optionReply(), await client.optionReply(), await client.optionReply()];
  t.same(
    replies.map((r) => [r.option, r.type, r.data.toString('hex')]),
    [
      [OPT.INFO, REP.INFO, '0000' + '0000000000100000' + EXPORT_FLAGS.toString(16).padStart(4, '0')],
      [OPT.INFO, REP.INFO, '0003' + '00000200' + '00001000' + '00020000'],
      [OPT.INFO, REP.INFO, '0001' + Buffer.from('disk').toString('hex')],
      [OPT.INFO, REP.INFO, '0002' + Buffer.from('the test disk').toString('hex')],
    ],
  );
  t.same(await client.optionReply(), { option: OPT.INFO, type: REP.ACK, data: Buffer.alloc(0) });
  // An export without a description does not answer NBD_INFO_DESCRIPTION.
  client.write(encodeOption(OPT.INFO, exportRequestData('other', [INFO.DESCRIPTION])));
  t.equal((await client.optionReply()).data.readUInt16BE(0), INFO.EXPORT);
  t.equal((await client.optionReply()).data.readUInt16BE(0), INFO.BLOCK_SIZE);
  t.equal((await client.optionReply()).type, REP.ACK);
  client.write(encodeOption(OPT.GO, exportRequestData('nope')));
  t.same(await client.optionReply(), { option: OPT.GO, type: REP.ERR_UNKNOWN, data: Buffer.from('no export named "nope"') });
  // No default export configured: the empty name is unknown too.
  client.write(encodeOption(OPT.GO, exportRequestData('')));
  t.same(await client.optionReply(), { option: OPT.GO, type: REP.ERR_UNKNOWN, data: Buffer.from('no export named ""') });
  client.destroy();

  const { path: unlisted } = await start(t, { listExports: undefined });
  const other = await RawNbdClient.greeted(unlisted);
  other.write(encodeOption(OPT.LIST));
  t.same(await other.optionReply(), { option: OPT.LIST, type: REP.ERR_POLICY, data: Buffer.from('this server does not list its exports') });
  other.destroy();
});

t.test('unknown and malformed options are refused, and haggling goes on', async (t) => {
  const { path, warnings } = await start(t);
  const client = await RawNbdClient.greeted(path);
  const refusals: [number, Buffer, number, string][] = [
    [99, Buffer.from('whatever'), REP.ERR_UNSUP, 'option 99 is not supported'],
    [OPT.STARTTLS, Buffer.alloc(0), REP.ERR_UNSUP, 'option 5 is not supported'],
    [OPT.SET_META_CONTEXT, Buffer.alloc(12), REP.ERR_UNSUP, 'option 10 is not supported'],
    [OPT.LIST, Buffer.alloc(1), REP.ERR_INVALID, 'NBD_OPT_LIST takes no data'],
    [OPT.STRUCTURED_REPLY, Buffer.alloc(1), REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data'],
    [OPT.GO, Buffer.alloc(3), REP.ERR_INVALID, 'option data of 3 bytes is too short'],
    [OPT.INFO, exportRequestData('a\0b'), REP.ERR_INVALID, 'export name contains a NUL character'],
  ];
  for (const [option, data, type, message] of refusals) {
    client.write(encodeOption(option, data));
    t.same(await client.optionReply(), { option, type, data: Buffer.from(message) }, message);
  }
  client.write(encodeOption(OPT.GO, exportRequestData('disk')));
  for (let reply = await client.optionReply(); reply.type !== REP.ACK; reply = await client.optionReply()) t.equal(reply.type, REP.INFO);
  client.write(encodeRequest({ type: CMD.READ, handle: 1n, length: 512 }));
  t.same(await client.reply(512), { handle: 1n, error: 0, data: Buffer.alloc(512) });
  client.destroy();
  t.same(warnings(), []);
});

t.test('oversized option data is skipped unbuffered and refused; an oversized export name closes', async (t) => {
  const { path, warnings } = await start(t);
  const client = await RawNbdClient.greeted(path);
  const length = 64 * MiB;
  client.write(encodeOption(OPT.GO, Buffer.alloc(0), length));
  const before = process.memoryUsage().arrayBuffers;
  const slice = Buffer.alloc(MiB);
  for (let sent = 0; sent < length; sent += slice.length) {
    if (!client.socket.write(slice)) await new Promise((resolve) => client.socket.once('drain', resolve));
  }
  t.same(await client.optionReply(), {
    option: OPT.GO,
    type: REP.ERR_TOO_BIG,
    data: Buffer.from('option data of 67108864 bytes is longer than the 16384 bytes accepted'),
  });
  t.ok(process.memoryUsage().arrayBuffers - before < 32 * MiB, 'the skipped data was not kept');
  client.write(encodeOption(OPT.ABORT));
  t.equal((await client.optionReply()).type, REP.ACK);
  t.equal((await client.rest()).length, 0);
  client.destroy();

  const named = await RawNbdClient.greeted(path);
  named.write(encodeOption(OPT.EXPORT_NAME, Buffer.alloc(0), MiB));
  t.equal((await named.rest()).length, 0);
  t.same(warnings(), ['Dropping NBD connection: NBD_OPT_EXPORT_NAME with 1048576 bytes of data.']);
});

t.test('NBD_OPT_EXPORT_NAME: size and flags, with or without the 124 zeroes; an unknown name closes', async (t) => {
  const { path, warnings } = await start(t, { defaultExport: 'disk' });
  const zeroes = await RawNbdClient.greeted(path, CLIENT_FLAG.FIXED_NEWSTYLE);
  zeroes.write(encodeOption(OPT.EXPORT_NAME, Buffer.from('disk')));
  const reply = await zeroes.read(134);
  t.equal(reply.subarray(0, 10).toString('hex'), '0000000000100000' + '016d');
  t.ok(reply.subarray(10).every((byte) => byte === 0));
  zeroes.write(encodeRequest({ type: CMD.WRITE, handle: 9n, offset: 512, length: 512 }));
  zeroes.write(pattern(512, 1));
  t.same(await zeroes.reply(), { handle: 9n, error: 0, data: Buffer.alloc(0) });
  zeroes.write(encodeRequest({ type: CMD.DISC }));
  t.equal((await zeroes.rest()).length, 0);

  const defaulted = await RawNbdClient.greeted(path);
  defaulted.write(encodeOption(OPT.EXPORT_NAME));
  t.equal((await defaulted.read(10)).toString('hex'), '0000000000100000' + '016d');
  defaulted.write(encodeRequest({ type: CMD.READ, handle: 2n, offset: 512, length: 512 }));
  t.same(await defaulted.reply(512), { handle: 2n, error: 0, data: pattern(512, 1) });
  defaulted.destroy();

  for (const name of [Buffer.from('nope'), Buffer.from([0xc3])]) {
    const unknown = await RawNbdClient.greeted(path);
    unknown.write(encodeOption(OPT.EXPORT_NAME, name));
    t.equal((await unknown.rest()).length, 0);
  }
  t.same(warnings(), [
    'Dropping NBD connection: NBD_OPT_EXPORT_NAME names unknown export "nope".',
    'Dropping NBD connection: NBD_OPT_EXPORT_NAME: export name is not valid UTF-8.',
  ]);
});

t.test('bad handshakes end the connection with one log line each', async (t) => {
  const { path, warnings } = await start(t, { handshakeTimeoutMs: 100 });
  const flags = await RawNbdClient.greeted(path, 0x10);
  t.equal((await flags.rest()).length, 0);
  const magic = await RawNbdClient.greeted(path);
  magic.write(Buffer.alloc(16, 0x41));
  t.equal((await magic.rest()).length, 0);
  const silent = await RawNbdClient.connect(path);
  t.equal((await silent.rest()).length, GREETING_SIZE);
  const leaving = await RawNbdClient.greeted(path);
  leaving.write(encodeOption(OPT.LIST).subarray(0, 10));
  leaving.end();
  t.equal((await leaving.rest()).length, 0);
  t.same(warnings(), [
    'Dropping NBD connection: unknown client flags 0x00000010.',
    'Dropping NBD connection: bad option magic 0x4141414141414141.',
    'Dropping NBD connection: no export chosen within 0.1 s.',
    'Dropping NBD connection: client closed the connection before choosing an export.',
  ]);
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
});

t.test('an export lookup that throws drops that client only', async (t) => {
  const path = join(socketDir(t), 'nbd.sock');
  const { log, records } = memoryLogger();
  const server = await NbdServer.listen(path, () => {
    throw new Error('resource table is being rebuilt');
  }, log);
  t.teardown(() => server.close());
  const client = await RawNbdClient.greeted(path);
  client.write(encodeOption(OPT.GO, exportRequestData('disk')));
  t.equal((await client.rest()).length, 0);
  t.same(
    records.map((r) => [r['level'], r['msg']]),
    [[40, 'Dropping NBD connection: internal error: resource table is being rebuilt.']],
  );
});

t.test('NBD_OPT_ABORT is acknowledged and the connection closed quietly', async (t) => {
  const { path, warnings } = await start(t);
  const client = await RawNbdClient.greeted(path);
  client.write(encodeOption(OPT.ABORT, Buffer.from('ignored')));
  t.same(await client.optionReply(), { option: OPT.ABORT, type: REP.ACK, data: Buffer.alloc(0) });
  t.equal((await client.rest()).length, 0);
  // A client that aborts and leaves without reading the acknowledgement is no trouble either.
  const hasty = await RawNbdClient.greeted(path);
  hasty.write(encodeOption(OPT.ABORT));
  hasty.destroy();
  await settle();
  t.same(warnings(), []);
});

t.test('random bytes in the handshake never hurt the server', async (t) => {
  const { path, warnings } = await start(t, { handshakeTimeoutMs: 2_000 });
  const flags = (n: number) => Buffer.from([0, 0, 0, n]);
  const option = fc
    .tuple(fc.integer({ min: 0, max: 12 }), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 80 }))
    .map(([opt, data, length]) => encodeOption(opt, Buffer.from(data), length));
  const stream = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
    fc.tuple(fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 200 })).map(([f, rest]) => Buffer.concat([flags(f), rest])),
    fc.tuple(fc.integer({ min: 0, max: 3 }), fc.array(option, { maxLength: 5 })).map(([f, opts]) => Buffer.concat([flags(f), ...opts])),
  );
  const heapBefore = process.memoryUsage().heapUsed;
  await fc.assert(
    fc.asyncProperty(stream, fc.boolean(), async (bytes, hangUp) => {
      const client = await RawNbdClient.connect(path);
      client.write(bytes);
      if (hangUp) client.destroy();
      else client.end();
      await client.closed;
    }),
    { numRuns: 2000 },
  );
  t.ok(process.memoryUsage().heapUsed - heapBefore < 64 * MiB, 'heap did not grow with the connections');
  t.ok(warnings().length <= 2000, 'at most one line per connection');
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
});

t.test('reads and writes with simple and structured replies', async (t) => {
  const { path, device } = await start(t);
  const simple = await RawNbdClient.attached(path, 'disk');
  simple.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: 1n, offset: 4096, length: 8192 }), pattern(8192, 3)]));
  t.same(await simple.reply(), { handle: 1n, error: 0, data: Buffer.alloc(0) });
  t.same(device.data.subarray(4096, 4096 + 8192), pattern(8192, 3));
  simple.write(encodeRequest({ type: CMD.READ, handle: 2n, offset: 4096, length: 8192 }));
  t.same(await simple.reply(8192), { handle: 2n, error: 0, data: pattern(8192, 3) });
  // Zero-length requests succeed without reaching the device.
  simple.write(encodeRequest({ type: CMD.READ, handle: 3n, offset: 0, length: 0 }));
  t.same(await simple.reply(), { handle: 3n, error: 0, data: Buffer.alloc(0) });
  simple.write(encodeRequest({ type: CMD.WRITE, handle: 4n, offset: 0, length: 0 }));
  t.same(await simple.reply(), { handle: 4n, error: 0, data: Buffer.alloc(0) });
  simple.write(encodeRequest({ type: CMD.TRIM, handle: 5n, offset: 0, length: 0 }));
  t.same(await simple.reply(), { handle: 5n, error: 0, data: Buffer.alloc(0) });
  simple.write(encodeRequest({ type: CMD.WRITE_ZEROES, handle: 6n, offset: 0, length: 0 }));
  t.same(await simple.reply(), { handle: 6n, error: 0, data: Buffer.alloc(0) });
  t.same(device.calls, ['write 4096+8192', 'read 4096+8192']);

  const structured = await RawNbdClient.attached(path, 'disk', true);
  structured.write(encodeRequest({ type: CMD.READ, handle: 7n, offset: 8192, length: 4096 }));
  t.same(await structured.reply(), {
    handle: 7n,
    error: 0,
    data: pattern(8192, 3).subarray(4096),
    structured: { flags: REPLY_FLAG_DONE, type: REPLY_TYPE.OFFSET_DATA, offset: 8192 },
  });
  structured.write(encodeRequest({ type: CMD.READ, handle: 8n, offset: 0, length: 0 }));
  t.same(await structured.reply(), {
    handle: 8n,
    error: 0,
    data: Buffer.alloc(0),
    structured: { flags: REPLY_FLAG_DONE, type: REPLY_TYPE.NONE },
  });
  structured.write(encodeRequest({ type: CMD.FLUSH, handle: 9n }));
  t.same(await structured.reply(), { handle: 9n, error: 0, data: Buffer.alloc(0) }, 'other commands succeed with simple replies');
  simple.destroy();
  structured.destroy();
});

t.test('refused requests get EINVAL or ENOSPC, and the data of a refused write is skipped', async (t) => {
  const { path, device, warnings } = await start(t);
  const pastEnd = `ends past the export size ${MiB}`;
  for (const structured of [false, true]) {
    const client = await RawNbdClient.attached(path, 'disk', structured);
    const refusals: [Parameters<typeof encodeRequest>[0], number, string][] = [
      [{ type: 9 }, NBD_ERROR.EINVAL, 'command 9 is not supported'],
      [{ type: CMD.READ, flags: CMD_FLAG.DF, length: 512 }, NBD_ERROR.EINVAL, 'NBD_CMD_READ does not accept flags 0x4'],
      [{ type: CMD.READ, offset: 1, length: 512 }, NBD_ERROR.EINVAL, 'NBD_CMD_READ of 512 bytes at offset 1 is not aligned to 512 bytes'],
      [
        { type: CMD.READ, length: 256 * 1024 },
        NBD_ERROR.EINVAL,
        'NBD_CMD_READ of 262144 bytes at offset 0 is longer than the maximum of 131072 bytes',
      ],
      [{ type: CMD.READ, offset: MiB, length: 512 }, NBD_ERROR.EINVAL, `NBD_CMD_READ of 512 bytes at offset ${MiB} ${pastEnd}`],
      [{ type: CMD.TRIM, offset: MiB, length: 512 }, NBD_ERROR.EINVAL, `NBD_CMD_TRIM of 512 bytes at offset ${MiB} ${pastEnd}`],
      [{ type: CMD.WRITE_ZEROES, offset: MiB, length: 512 }, NBD_ERROR.ENOSPC, `NBD_CMD_WRITE_ZEROES of 512 bytes at offset ${MiB} ${pastEnd}`],
    ];
    let handle = 100n;
    for (const [request, error, message] of refusals) {
      client.write(encodeRequest({ ...request, handle: ++handle }));
      const reply = await client.reply();
      t.equal(reply.handle, handle);
      t.equal(reply.error, error, message);
      if (structured) t.same(reply.structured, { flags: REPLY_FLAG_DONE, type: REPLY_TYPE.ERROR, message });
    }
    // Refused writes: the data that follows is consumed, so the next request is read where it starts.
    const writes: [number, number, number][] = [
      [MiB, 512, NBD_ERROR.ENOSPC],
      [100, 512, NBD_ERROR.EINVAL],
      [0, 4 * MiB, NBD_ERROR.EINVAL],
    ];
    for (const [offset, length, error] of writes) {
      client.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: 5n, offset, length }), Buffer.alloc(length, 0xee)]));
      client.write(encodeRequest({ type: CMD.READ, handle: 6n, offset: 0, length: 512 }));
      t.same([(await client.reply()).error, (await client.reply(512)).error], [error, 0]);
    }
    client.destroy();
  }
  t.equal(device.data.indexOf(0xee), -1, 'no refused write reached the device');
  t.same(device.calls, Array(6).fill('read 0+512'));
  t.same(warnings(), []);

  // A write announcing more than 32 MiB beyond the maximum is not read for: the connection is closed.
  const huge = await RawNbdClient.attached(path, 'disk');
  huge.write(encodeRequest({ type: CMD.WRITE, handle: 1n, length: 0x80000000 }));
  t.equal((await huge.rest()).length, 0);
  t.same(warnings(), [
    'Dropping NBD connection: NBD_CMD_WRITE of 2147483648 bytes at offset 0 is longer than the maximum of 131072 bytes; ' +
      'closing rather than reading its data.',
  ]);
});

t.test('device failures become NBD errors', async (t) => {
  const { path, device, records } = await start(t);
  for (const structured of [false, true]) {
    const client = await RawNbdClient.attached(path, 'disk', structured);
    const codes = ['EIO', 'EINVAL', 'ENOSPC', 'EPERM', 'ESHUTDOWN', 'EOPNOTSUPP'] as const;
    const expected = [NBD_ERROR.EIO, NBD_ERROR.EINVAL, NBD_ERROR.ENOSPC, NBD_ERROR.EPERM, NBD_ERROR.ESHUTDOWN, NBD_ERROR.ENOTSUP];
    for (const [i, code] of codes.entries()) {
      device.before = () => {
        throw new BlockIoError(code, `replica says ${code}`);
      };
      client.write(encodeRequest({ type: i % 2 === 0 ? CMD.READ : CMD.FLUSH, handle: BigInt(i), length: i % 2 === 0 ? 512 : 0 }));
      const reply = await client.reply(512);
      t.same([reply.handle, reply.error, reply.data.length], [BigInt(i), expected[i], 0], code);
      if (structured) t.equal(reply.structured?.message, `replica says ${code}`);
    }
    device.before = () => {
      throw new TypeError('bug in the device');
    };
    client.write(encodeRequest({ type: CMD.WRITE, handle: 20n, length: 512 }));
    client.write(Buffer.alloc(512));
    t.same((await client.reply()).error, NBD_ERROR.EIO);
    device.before = undefined;
    client.destroy();
  }
  t.same(
    records.filter((r) => r['level'] === 50).map((r) => r['msg']),
    Array(2).fill('NBD_CMD_WRITE of 512 bytes at offset 0 failed unexpectedly: bug in the device'),
  );

  // A device that returns the wrong amount of data is caught before the client gets it.
  const { path: shortPath } = await start(t, { device: new ShortReadDevice(MiB) });
  const client = await RawNbdClient.attached(shortPath, 'disk');
  client.write(encodeRequest({ type: CMD.READ, handle: 1n, length: 1024 }));
  t.same(await client.reply(1024), { handle: 1n, error: NBD_ERROR.EIO, data: Buffer.alloc(0) });
  client.destroy();
});

class ShortReadDevice extends MemoryBlockDevice {
  override async read(offset: number, length: number): Promise<Buffer> {
    return (await super.read(offset, length)).subarray(0, length - 512);
  }
}

t.test('FUA, flush, trim and write zeroes reach the device as proto.md asks', async (t) => {
  const { path, device } = await start(t);
  device.data.fill(0xaa);
  const client = await RawNbdClient.attached(path, 'disk');
  const requests = [
    Buffer.concat([encodeRequest({ type: CMD.WRITE, flags: CMD_FLAG.FUA, handle: 1n, offset: 0, length: 512 }), Buffer.alloc(512, 1)]),
    encodeRequest({ type: CMD.FLUSH, handle: 2n }),
    encodeRequest({ type: CMD.TRIM, handle: 3n, offset: 1024, length: 1024 }),
    encodeRequest({ type: CMD.TRIM, flags: CMD_FLAG.FUA, handle: 4n, offset: 4096, length: 512 }),
    encodeRequest({ type: CMD.WRITE_ZEROES, handle: 5n, offset: 8192, length: 4096 }),
    encodeRequest({ type: CMD.WRITE_ZEROES, flags: CMD_FLAG.NO_HOLE, handle: 6n, offset: 65536, length: 300 * 1024 }),
    encodeRequest({ type: CMD.WRITE_ZEROES, flags: CMD_FLAG.NO_HOLE | CMD_FLAG.FUA, handle: 7n, offset: 512 * 1024, length: 1024 }),
    encodeRequest({ type: CMD.READ, flags: CMD_FLAG.FUA, handle: 8n, offset: 0, length: 512 }),
  ];
  for (const [i, request] of requests.entries()) {
    client.write(request);
    const reply = await client.reply(i === requests.length - 1 ? 512 : 0);
    t.same([reply.handle, reply.error], [BigInt(i + 1), 0]);
  }
  t.same(device.calls, [
    'write 0+512 fua',
    'flush',
    'trim 1024+1024',
    'trim 4096+512',
    'flush',
    'trim 8192+4096',
    'write 65536+131072',
    'write 196608+131072',
    'write 327680+45056',
    'write 524288+1024 fua',
    'read 0+512',
  ]);
  const zeroed = [
    [1024, 2048],
    [4096, 4608],
    [8192, 12288],
    [65536, 65536 + 300 * 1024],
    [524288, 525312],
  ];
  for (const [from, to] of zeroed) t.ok(device.data.subarray(from, to).every((byte) => byte === 0), `${from}..${to} reads as zeros`);
  t.equal(device.data[2048], 0xaa, 'nothing past the ranges was touched');
  client.destroy();
});

t.test('requests are pipelined and answered as they complete', async (t) => {
  const { path, device } = await start(t);
  let releaseSlow!: () => void;
  const slow = new Promise<void>((resolve) => (releaseSlow = resolve));
  device.before = (call) => (call === 'read 0+512' ? slow : undefined);
  const client = await RawNbdClient.attached(path, 'disk');
  client.write(encodeRequest({ type: CMD.READ, handle: 1n, length: 512 }));
  client.write(encodeRequest({ type: CMD.READ, handle: 2n, offset: 512, length: 512 }));
  t.equal((await client.reply(512)).handle, 2n, 'the second request is answered first');
  releaseSlow();
  t.equal((await client.reply(512)).handle, 1n);
  client.destroy();
});

t.test('requests in flight and bytes held per connection are bounded', async (t) => {
  const { path, device } = await start(t, { device: new MemoryBlockDevice(8 * MiB, { maxRequest: 4 * MiB }) });
  const release = device.hold();
  const client = await RawNbdClient.attached(path, 'disk');
  for (let i = 0; i < 100; i++) client.write(encodeRequest({ type: CMD.READ, handle: BigInt(i), offset: i * 512, length: 512 }));
  await until(() => device.running === 64, '64 requests run');
  await settle();
  t.equal(device.running, 64, 'no more than 64 requests run at once');
  release();
  const handles = new Set<bigint>();
  for (let i = 0; i < 100; i++) handles.add((await client.reply(512)).handle);
  t.equal(handles.size, 100);

  // Reads of 4 MiB: at most 32 MiB of them are held at once.
  const releaseBig = device.hold();
  for (let i = 0; i < 12; i++) client.write(encodeRequest({ type: CMD.READ, handle: BigInt(i), length: 4 * MiB }));
  await until(() => device.running === 8, '8 big reads run');
  await settle();
  t.equal(device.running, 8, '32 MiB of reads held, no more');
  releaseBig();
  for (let i = 0; i < 12; i++) t.equal((await client.reply(4 * MiB)).data.length, 4 * MiB);
  client.destroy();
});

t.test('a client that does not read its replies is paused', async (t) => {
  const { path, device } = await start(t, { device: new MemoryBlockDevice(8 * MiB, { maxRequest: 4 * MiB }) });
  const client = await RawNbdClient.attached(path, 'disk');
  client.socket.pause();
  for (let i = 0; i < 40; i++) client.write(encodeRequest({ type: CMD.READ, handle: BigInt(i), length: 4 * MiB }));
  await until(() => device.calls.length >= 8, 'reads start');
  await settle();
  t.ok(device.calls.length < 20, `the server stopped taking requests (${device.calls.length} of 40 started)`);
  client.socket.resume();
  for (let i = 0; i < 40; i++) t.equal((await client.reply(4 * MiB)).handle, BigInt(i));
  client.destroy();
});

t.test('a client leaving mid-request: requests in flight finish, replies are dropped quietly', async (t) => {
  const { path, device, warnings } = await start(t);
  const partial = await RawNbdClient.attached(path, 'disk');
  partial.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: 1n, length: 4096 }), Buffer.alloc(1000, 0xee)]));
  await settle();
  partial.destroy();
  await settle();
  t.equal(device.calls.length, 0, 'the incomplete write never reached the device');

  const release = device.hold();
  const busy = await RawNbdClient.attached(path, 'disk');
  for (let i = 0; i < 3; i++) {
    busy.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 512, length: 512 }), Buffer.alloc(512, 7)]));
  }
  await until(() => device.running === 3, 'writes run');
  busy.destroy();
  await settle();
  release();
  await until(() => device.running === 0, 'writes finish');
  t.same(device.data.subarray(0, 1536), Buffer.alloc(1536, 7), 'the writes in flight were completed');
  await settle();
  t.same(warnings(), [
    'Dropping NBD connection: client closed the connection in the middle of a request.',
    'Dropping NBD connection: client closed the connection without NBD_CMD_DISC, 3 requests in flight.',
  ]);
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
});

t.test('NBD_CMD_DISC and a half-close: what is in flight is answered, then the connection ends', async (t) => {
  const { path, device, warnings } = await start(t);
  const release = device.hold();
  const client = await RawNbdClient.attached(path, 'disk');
  client.write(Buffer.concat([encodeRequest({ type: CMD.READ, handle: 1n, length: 512 }), encodeRequest({ type: CMD.DISC })]));
  await until(() => device.running === 1, 'the read runs');
  release();
  t.equal((await client.reply(512)).handle, 1n);
  t.equal((await client.rest()).length, 0);

  const halfClosed = await RawNbdClient.attached(path, 'disk');
  halfClosed.write(encodeRequest({ type: CMD.READ, handle: 2n, length: 512 }));
  halfClosed.end();
  t.equal((await halfClosed.reply(512)).handle, 2n);
  t.equal((await halfClosed.rest()).length, 0);
  t.same(warnings(), []);
});

t.test('close(): requests in flight are answered, those not started get ESHUTDOWN, the socket file goes', async (t) => {
  const { path, device, server } = await start(t);
  const release = device.hold();
  const client = await RawNbdClient.attached(path, 'disk', true);
  const haggling = await RawNbdClient.greeted(path);
  for (let i = 0; i < 70; i++) {
    client.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: BigInt(i), offset: i * 512, length: 512 }), Buffer.alloc(512, 9)]));
  }
  await until(() => device.running === 64, '64 writes run');
  let closed = false;
  const closing = server.close().then(() => (closed = true));
  for (let i = 64; i < 70; i++) {
    t.same(await client.reply(), {
      handle: BigInt(i),
      error: NBD_ERROR.ESHUTDOWN,
      data: Buffer.alloc(0),
      structured: { flags: REPLY_FLAG_DONE, type: REPLY_TYPE.ERROR, message: 'the server is shutting down' },
    });
  }
  t.equal((await haggling.rest()).length, 0, 'a client still haggling is dropped');
  await settle();
  t.equal(closed, false, 'close() waits for the writes in flight');
  release();
  for (let i = 0; i < 64; i++) t.same(await client.reply(), { handle: BigInt(i), error: 0, data: Buffer.alloc(0) });
  t.equal((await client.rest()).length, 0);
  await closing;
  t.same(device.data.subarray(0, 64 * 512), Buffer.alloc(64 * 512, 9));
  t.equal(existsSync(path), false, 'the socket file is removed');
  await t.rejects(RawNbdClient.connect(path), { code: 'ENOENT' });
});

t.test('2000 connections opened and dropped leave the server serving', async (t) => {
  const { path, warnings } = await start(t);
  const heapBefore = process.memoryUsage().heapUsed;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const socket = connect(path);
        await new Promise((resolve) => socket.once(i % 2 === 0 ? 'connect' : 'data', resolve));
        socket.destroy();
        await new Promise((resolve) => socket.once('close', resolve));
      }),
    );
  }
  await until(() => warnings().length >= 2000, 'every dropped connection is logged');
  t.ok(process.memoryUsage().heapUsed - heapBefore < 64 * MiB, 'heap did not grow with the connections');
  t.equal(warnings().length, 2000);
  // Which symptom a connection shows depends on how far the server got before the client vanished.
  const symptoms = [
    'Dropping NBD connection: client closed the connection before choosing an export.',
    'Dropping NBD connection: connection failed: read ECONNRESET.',
    'Dropping NBD connection: connection failed: write EPIPE.',
  ];
  t.same(
    warnings().filter((line) => !symptoms.includes(line)),
    [],
  );
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
});

t.test('random requests after the handshake never hurt the server', async (t) => {
  const { path } = await start(t);
  const request = fc.record({
    type: fc.integer({ min: 0, max: 10 }),
    flags: fc.integer({ min: 0, max: 0x1f }),
    offset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 * MiB })),
    length: fc.oneof(fc.constant(512), fc.integer({ min: 0, max: 64 * 1024 })),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 8 }), fc.boolean(), async (requests, structured) => {
      const client = await RawNbdClient.attached(path, 'disk', structured);
      for (const [i, r] of requests.entries()) {
        client.write(encodeRequest({ ...r, handle: BigInt(i) }));
        if (r.type === CMD.WRITE) client.write(Buffer.alloc(r.length));
      }
      client.end();
      await client.rest();
    }),
    { numRuns: 300 },
  );
  t.equal(await nbdinfoSize(path), `${MiB}\n`);
});

t.test('socket files: stale ones are replaced, live ones and other files refused, mode 0600', async (t) => {
  const dir = socketDir(t);
  const { log } = memoryLogger();
  const stale = join(dir, 'stale.sock');
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(stale, resolve));
  await t.rejects(NbdServer.listen(stale, () => undefined, log), {
    message: `NBD socket ${stale} is in use: another server answers on it`,
  });
  // Closing a listener removes its file; a process that exits without closing leaves it behind.
  await new Promise((resolve) => squatter.close(resolve));
  const leaveSocket = "require('net').createServer().listen(process.argv[1], () => process.exit(0))";
  await runCommand([process.execPath, '-e', leaveSocket, stale], QUICK);
  t.equal(statSync(stale).isSocket(), true);
  const server = await NbdServer.listen(stale, () => undefined, log);
  t.equal(statSync(stale).mode & 0o777, 0o600);
  await server.close();

  const file = join(dir, 'file');
  writeFileSync(file, 'data');
  await t.rejects(NbdServer.listen(file, () => undefined, log), {
    message: `listening on NBD socket ${file}`,
    cause: { code: 'EADDRINUSE' },
  });
  const under = join(file, 'nbd.sock');
  await t.rejects(NbdServer.listen(under, () => undefined, log), { message: `checking NBD socket ${under}`, cause: { code: 'ENOTDIR' } });
});

t.test('transmission flags', async (t) => {
  t.equal(
    EXPORT_FLAGS,
    TRANSMISSION_FLAG.HAS_FLAGS |
      TRANSMISSION_FLAG.SEND_FLUSH |
      TRANSMISSION_FLAG.SEND_FUA |
      TRANSMISSION_FLAG.SEND_TRIM |
      TRANSMISSION_FLAG.SEND_WRITE_ZEROES |
      TRANSMISSION_FLAG.CAN_MULTI_CONN,
  );
});
