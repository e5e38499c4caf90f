// The NBD export driven by clients we did not write: qemu-io, nbdcopy (libnbd) and fio's nbd engine.
import t from 'tap';
import type { Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import { BlockIoError, type BlockDevice, type BlockErrorCode } from '../../src/engine/block-device.js';
import { NbdServer } from '../../src/engine/nbd-server.js';
import { socketDir } from '../fixtures/control-target.js';
import { FileBlockDevice } from '../fixtures/file-block-device.js';
import { MemoryBlockDevice } from '../fixtures/memory-block-device.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const MiB = 1024 * 1024;
const POLICY = { timeoutMs: 120_000, killAfterMs: 1_000 };

async function serve(t: Test, device: BlockDevice) {
  const dir = socketDir(t);
  const path = join(dir, 'nbd.sock');
  const memory = memoryLogger();
  const exported = { name: 'disk', device };
  const server = await NbdServer.listen(path, (name) => (name === 'disk' ? exported : undefined), memory.log);
  t.teardown(() => server.close());
  const warnings = () => memory.records.filter((r) => Number(r['level']) >= 40).map((r) => String(r['msg']));
  return { dir, uri: `nbd+unix:///disk?socket=${path}`, warnings };
}

async function fileDevice(t: Test, size: number) {
  const dir = socketDir(t);
  const path = join(dir, 'disk.img');
  const device = await FileBlockDevice.create(path, size);
  t.teardown(() => device.close());
  return { device, path };
}

async function qemuIo(uri: string, commands: string[]) {
  return runCommand(['qemu-io', '-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri], POLICY);
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// [offset, length, pattern byte] written with qemu-io and checked both through the export and in the file.
const WRITES: [number, number, number][] = [
  [0, 4096, 0x11],
  [4096, 512, 0x22],
  [MiB, 300 * 1024, 0x33],
  [2 * MiB - 4096, 8192, 0x44], // across the 2 MiB boundary
  [6 * MiB - 65536, 65536, 0x55], // the last 64 KiB of the device
  [3 * MiB + 512, 1536, 0x66],
];

t.test('qemu-io: patterns written at many offsets and sizes read back, here and in the file', async (t) => {
  const { device, path } = await fileDevice(t, 6 * MiB);
  const { uri, warnings } = await serve(t, device);
  const writes = WRITES.map(([offset, length, byte], i) => `write ${i === 2 ? '-f ' : ''}-P ${byte} ${offset} ${length}`);
  const reads = WRITES.map(([offset, length, byte]) => `read -P ${byte} ${offset} ${length}`);
  const result = await qemuIo(uri, [...writes, 'flush', ...reads]);
  t.equal(result.stdout.match(/^wrote \d+\/\d+ bytes/gm)?.length, WRITES.length);
  t.equal(result.stdout.match(/^read \d+\/\d+ bytes/gm)?.length, WRITES.length);
  t.notMatch(result.stdout, /Pattern verification failed/);
  const file = readFileSync(path);
  for (const [offset, length, byte] of WRITES) {
    t.ok(
      file.subarray(offset, offset + length).every((b) => b === byte),
      `${length} bytes at ${offset} in the file`,
    );
  }
  t.equal(file[4096 + 512], 0, 'the bytes after a write are untouched');

  // Asynchronous writes in flight together, a misaligned write qemu turns into read-modify-write on our
  // 512-byte blocks, write zeroes and discard.
  const more = await qemuIo(uri, [
    'aio_write -P 0x71 4M 64k',
    'aio_write -P 0x72 5M 64k',
    'aio_write -P 0x73 4608k 4k',
    'aio_flush',
    'write -P 0x74 100 10',
    'write -z 1M 64k',
    'discard 5M 8k',
    'read -P 0x71 4M 64k',
    'read -P 0x73 4608k 4k',
    'read -P 0x11 0 100',
    'read -P 0x74 100 10',
    'read -P 0x11 110 3986',
    'read -P 0 1M 64k',
    'read -P 0x33 1088k 236k',
    'read -P 0 5M 8k',
    'read -P 0x72 5128k 56k',
  ]);
  t.notMatch(more.stdout, /Pattern verification failed|failed/);
  t.equal(more.stdout.match(/^read \d+\/\d+ bytes/gm)?.length, 9);
  t.same(warnings(), []);
});

t.test('qemu-io: requests past the end fail, and device errors arrive with their meaning', async (t) => {
  const device = new MemoryBlockDevice(4 * MiB);
  const { uri } = await serve(t, device);
  const outside = await qemuIo(uri, ['read 4M 512']).catch((error: unknown) => error as { stdout: string; exitCode: number });
  t.match(outside, { exitCode: 1, stdout: 'read failed: Input/output error\n' });
  // qemu-io writes with FUA (its default cache mode is writethrough), hence prefixes.
  const failures: [string, BlockErrorCode][] = [
    ['write 0+4096', 'ENOSPC'],
    ['write 4096+4096', 'EPERM'],
    ['read 8192+4096', 'EIO'],
  ];
  device.before = (call) => {
    const failure = failures.find(([prefix]) => call.startsWith(prefix));
    if (failure !== undefined) throw new BlockIoError(failure[1], `${call} refused`);
  };
  const expected: [string, string][] = [
    ['write 0 4k', 'write failed: No space left on device'],
    ['write 4k 4k', 'write failed: Operation not permitted'],
    ['read 8k 4k', 'read failed: Input/output error'],
  ];
  for (const [command, text] of expected) {
    const failed = await qemuIo(uri, [command]).catch((error: unknown) => error as { stdout: string; exitCode: number });
    t.match(failed, { exitCode: 1, stdout: `${text}\n` }, command);
  }
});

t.test('nbdcopy: 256 MiB in and out over several connections, checksums equal', async (t) => {
  const size = 256 * MiB;
  const { device, path: devicePath } = await fileDevice(t, size);
  const { dir, uri, warnings } = await serve(t, device);
  const source = join(dir, 'source.img');
  const copy = join(dir, 'copy.img');
  // Random data with every MiB's number stamped into each of its blocks, so a misplaced block shows; every
  // eighth MiB is left zero, which nbdcopy sends as NBD_CMD_WRITE_ZEROES.
  const image = Buffer.alloc(size);
  const random = randomBytes(MiB);
  for (let m = 0; m < 256; m++) {
    if (m % 8 === 0) continue;
    random.copy(image, m * MiB);
    for (let b = 0; b < MiB; b += 512) image.writeUInt32BE(m, m * MiB + b);
  }
  writeFileSync(source, image);
  const expected = createHash('sha256').update(image).digest('hex');
  // nbdcopy 1.14 ignores the advertised maximum block size (128 KiB here) and would send 256 KiB requests.
  const nbdcopy = ['nbdcopy', '--connections=4', '--request-size=131072'];
  await runCommand([...nbdcopy, source, uri], POLICY);
  t.equal(await sha256(devicePath), expected, 'the device file holds the image');
  await runCommand([...nbdcopy, uri, copy], POLICY);
  t.equal(await sha256(copy), expected, 'the image read back is the same');
  t.same(warnings(), []);
});

t.test('fio: 64 MiB of 4 KiB random writes at depth 32, verified with crc32c', async (t) => {
  const { device } = await fileDevice(t, 64 * MiB);
  const { uri, warnings } = await serve(t, device);
  const argv = [
    'fio',
    '--name=verify',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=32',
    '--size=64M',
    '--verify=crc32c',
    '--verify_state_save=0',
    '--output-format=json',
  ];
  const result = await runCommand(argv, POLICY);
  const json = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as {
    jobs: { error: number; write: { total_ios: number }; read: { total_ios: number } }[];
  };
  const job = json.jobs[0]!;
  t.equal(job.error, 0);
  t.equal(job.write.total_ios, 16384, 'every block written');
  t.equal(job.read.total_ios, 16384, 'every block read back and verified');
  t.notMatch(result.stderr, /verify/);
  t.same(warnings(), []);
});
