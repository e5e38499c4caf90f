import t from 'tap';
import type { Test } from 'tap';
import { constants } from 'node:fs';
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import {
  ComponentBusyError,
  ComponentError,
  LocalComponent,
  deviceNumbers,
  isNotSupported,
  parseSysfsNumber,
} from '../../src/engine/local-component.js';

const MiB = 1024 * 1024;
// Linux's access-mode mask, which node:fs does not export.
const O_ACCMODE = 0o3;
const QUICK = { timeoutMs: 30_000, killAfterMs: 1_000 };

async function scratchDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'local-component-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function scratchFile(t: Test, size: number): Promise<string> {
  const file = join(await scratchDir(t), 'component');
  await writeFile(file, Buffer.alloc(0));
  await runCommand(['truncate', '--size', String(size), file], QUICK);
  return file;
}

async function rejection(promise: Promise<unknown>): Promise<ComponentError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ComponentError)) throw new Error(`expected a ComponentError, got ${String(error)}`);
  return error;
}

// The access mode and O_DSYNC bit of every descriptor this process holds on path, from /proc/self/fdinfo.
async function openFlags(path: string): Promise<number[]> {
  const flags: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== path) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    const octal = /^flags:\s+([0-7]+)$/m.exec(info)?.[1];
    if (octal !== undefined) flags.push(parseInt(octal, 8) & (O_ACCMODE | constants.O_DSYNC));
  }
  return flags.sort((a, b) => a - b);
}

function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 7 + seed) % 251 + 1;
  return buf;
}

t.test('a regular file: its size, 512-byte sectors, and positional reads and writes', async (t) => {
  const path = await scratchFile(t, MiB);
  const component = await LocalComponent.open(path);
  t.teardown(() => component.close());
  t.equal(component.path, path);
  t.equal(component.mediasize, MiB);
  t.equal(component.sectorsize, 512);
  t.equal(component.lockUnsupported, false);

  const data = pattern(12288, 3);
  await component.write(data, 8192);
  await component.flush();
  const back = Buffer.alloc(16384);
  await component.read(back, 4096);
  t.same(back.subarray(0, 4096), Buffer.alloc(4096), 'bytes before the write are untouched');
  t.same(back.subarray(4096), data);
});

t.test('durable writes go through a second descriptor opened O_DSYNC', async (t) => {
  const path = await scratchFile(t, MiB);
  const component = await LocalComponent.open(path);
  t.teardown(() => component.close());
  await component.writeDurable([pattern(512, 1), pattern(1024, 2)], 4096);
  const back = Buffer.alloc(1536);
  await component.read(back, 4096);
  t.same(back, Buffer.concat([pattern(512, 1), pattern(1024, 2)]));
  t.same(await openFlags(path), [0o2, 0o2 | constants.O_DSYNC], 'one O_RDWR descriptor, one O_RDWR|O_DSYNC');

  const readOnly = await LocalComponent.open(path, { readOnly: true });
  t.teardown(() => readOnly.close());
  const refused = await rejection(readOnly.writeDurable(Buffer.alloc(512), 4096));
  t.equal(refused.message, `durably writing 512 bytes at offset 4096 of ${path}`);
  t.equal(refused.code, 'EBADF');
});

t.test('close waits for reads and writes in flight; later ones fail', async (t) => {
  const path = await scratchFile(t, 16 * MiB);
  const component = await LocalComponent.open(path);
  const writes = [0, 1, 2, 3].map((i) => component.write(pattern(4 * MiB, i), i * 4 * MiB));
  const closing = component.close();
  await Promise.all([...writes, closing]);
  const again = await LocalComponent.open(path, { readOnly: true });
  t.teardown(() => again.close());
  const back = Buffer.alloc(4 * MiB);
  await again.read(back, 12 * MiB);
  t.same(back, pattern(4 * MiB, 3), 'the last write reached the file before the descriptor closed');
  const late = await rejection(component.write(Buffer.alloc(512), 0));
  t.equal(late.message, `writing 512 bytes at offset 0 of ${path}`);
  t.equal(late.code, 'EBADF');
});

t.test('a read that runs past the end is an error, not a short buffer', async (t) => {
  const path = await scratchFile(t, MiB);
  const component = await LocalComponent.open(path);
  t.teardown(() => component.close());
  const error = await rejection(component.read(Buffer.alloc(4096), MiB - 2048));
  t.equal(error.message, `reading 4096 bytes at offset ${MiB - 2048} of ${path}: end of component after 2048 bytes`);
  t.equal(error.path, path);
});

t.test('failed writes, reads and flushes name the operation, the offset and the path', async (t) => {
  const path = await scratchFile(t, MiB);
  const readOnly = await LocalComponent.open(path, { readOnly: true });
  const write = await rejection(readOnly.write(Buffer.alloc(4096), 8192));
  t.equal(write.message, `writing 4096 bytes at offset 8192 of ${path}`);
  t.equal(write.code, 'EBADF');
  await readOnly.close();

  const read = await rejection(readOnly.read(Buffer.alloc(512), 0));
  t.equal(read.message, `reading 512 bytes at offset 0 of ${path}`);
  const flush = await rejection(readOnly.flush());
  t.equal(flush.message, `flushing ${path}`);
  t.equal(flush.code, 'EBADF');
});

t.test('delete punches a hole in a file: zeros read back and the blocks are freed', async (t) => {
  const path = await scratchFile(t, MiB);
  const component = await LocalComponent.open(path);
  t.teardown(() => component.close());
  await component.write(pattern(MiB, 1), 0);
  await component.flush();
  const before = (await stat(path)).blocks;

  await component.delete(256 * 1024, 256 * 1024);
  const after = (await stat(path)).blocks;
  t.equal(before - after, (256 * 1024) / 512, 'exactly the punched range is freed');
  t.equal((await stat(path)).size, MiB, 'the size is kept');

  const back = Buffer.alloc(MiB);
  await component.read(back, 0);
  t.same(back.subarray(256 * 1024, 512 * 1024), Buffer.alloc(256 * 1024));
  t.same(back.subarray(0, 256 * 1024), pattern(MiB, 1).subarray(0, 256 * 1024));
  t.same(back.subarray(512 * 1024), pattern(MiB, 1).subarray(512 * 1024));
});

t.test('deleting nothing runs nothing; a refused delete names the range and the path', async (t) => {
  const path = await scratchFile(t, MiB);
  const component = await LocalComponent.open(path);
  t.teardown(() => component.close());
  await component.delete(4096, 0);
  const error = await rejection(component.delete(-512, 4096));
  t.equal(error.message, `deleting 4096 bytes at offset -512 of ${path}`);
  t.match(String((error.cause as Error).message), /^fallocate --punch-hole --keep-size --offset -512 --length 4096 /);
});

t.test('only one engine may open a component; closing releases it', async (t) => {
  const path = await scratchFile(t, MiB);
  const first = await LocalComponent.open(path);
  const error = await rejection(LocalComponent.open(path));
  t.ok(error instanceof ComponentBusyError);
  t.equal(error.message, `Unable to lock ${path} (another hastd/engine holds it)`);
  const reader = await LocalComponent.open(path, { readOnly: true });
  t.equal(reader.mediasize, MiB, 'a read-only opener (hastctl dump) takes no lock, as hastd metadata_read does');
  await reader.close();

  await first.close();
  const second = await LocalComponent.open(path);
  t.equal(second.mediasize, MiB);
  await second.close();
});

t.test('paths that are not a component give errors naming the path', async (t) => {
  const dir = await scratchDir(t);
  const missing = join(dir, 'missing');
  const notThere = await rejection(LocalComponent.open(missing));
  t.equal(notThere.message, `Unable to open ${missing}`);
  t.equal(notThere.code, 'ENOENT');

  const directory = await rejection(LocalComponent.open(dir));
  t.equal(directory.message, `Unable to open ${dir}`);
  t.equal(directory.code, 'EISDIR');
  const readOnlyDirectory = await rejection(LocalComponent.open(dir, { readOnly: true }));
  t.equal(readOnlyDirectory.message, `${dir} is neither a regular file nor a block device`);

  const charDevice = await rejection(LocalComponent.open('/dev/null'));
  t.equal(charDevice.message, '/dev/null is neither a regular file nor a block device');
});

t.test('device numbers are unpacked from st_rdev as glibc does', async (t) => {
  t.same(deviceNumbers(0x700n), { major: 7, minor: 0 });
  t.same(deviceNumbers(0x10301n), { major: 259, minor: 1 });
  t.same(deviceNumbers(0x1000_1232_3445n), { major: 0x1234, minor: 0x12345 });
});

t.test('sysfs numbers are parsed strictly', async (t) => {
  t.equal(parseSysfsNumber('16384\n', '/sys/x/size'), 16384);
  t.throws(() => parseSysfsNumber('none\n', '/sys/x/size'), { message: "/sys/x/size holds 'none', not a number" });
  t.throws(() => parseSysfsNumber('', '/sys/x/size'), { message: "/sys/x/size holds '', not a number" });
});

t.test('EOPNOTSUPP and ENOTSUP, bare or wrapped, count as not supported', async (t) => {
  const bare = Object.assign(new Error('x'), { code: 'EOPNOTSUPP' });
  t.equal(isNotSupported(bare), true);
  const wrapped = new ComponentError('flushing /x', '/x', Object.assign(new Error('y'), { code: 'ENOTSUP' }));
  t.equal(isNotSupported(wrapped), true);
  t.equal(isNotSupported(Object.assign(new Error('z'), { code: 'EIO' })), false);
  t.equal(isNotSupported('EOPNOTSUPP'), false);
});

// Loop devices need root; CI runs as root, a developer's unprivileged run skips these with the reason.
const asRoot = process.getuid?.() === 0 ? {} : { skip: 'loop devices need root' };

async function attachLoop(t: Test, file: string, extra: string[] = []): Promise<string> {
  const { stdout } = await runCommand(['losetup', '--find', '--show', ...extra, file], QUICK);
  const device = stdout.trim();
  t.teardown(() => runCommand(['losetup', '--detach', device], QUICK));
  return device;
}

t.test('a loop device: size and sector size from sysfs, and I/O', asRoot, async (t) => {
  const file = await scratchFile(t, 8 * MiB);
  const device = await attachLoop(t, file);
  const component = await LocalComponent.open(device);
  t.teardown(() => component.close());
  t.equal(component.mediasize, 8 * MiB);
  t.equal(component.sectorsize, 512);

  await component.write(pattern(64 * 1024, 9), MiB);
  const back = Buffer.alloc(64 * 1024);
  await component.read(back, MiB);
  t.same(back, pattern(64 * 1024, 9));
  await component.writeDurable(pattern(4096, 5), 4096);
  const durable = Buffer.alloc(4096);
  await component.read(durable, 4096);
  t.same(durable, pattern(4096, 5), 'a durable write through the second descriptor reads back through the first');

  await component.delete(MiB + 4096, 8192);
  await component.read(back, MiB);
  t.same(back.subarray(4096, 12288), Buffer.alloc(8192), 'the deleted sectors read as zeros');
  t.same(back.subarray(0, 4096), pattern(64 * 1024, 9).subarray(0, 4096));
  t.same(back.subarray(12288), pattern(64 * 1024, 9).subarray(12288));

  const misaligned = await rejection(component.delete(MiB + 100, 512));
  t.equal(misaligned.message, `deleting 512 bytes at offset ${MiB + 100} of ${device}`);
});

t.test('a loop device with 4096-byte sectors reports them', asRoot, async (t) => {
  const file = await scratchFile(t, 8 * MiB);
  const device = await attachLoop(t, file, ['--sector-size', '4096']);
  const component = await LocalComponent.open(device);
  t.teardown(() => component.close());
  t.equal(component.sectorsize, 4096);
  t.equal(component.mediasize, 8 * MiB);
});

t.test('a partition takes its sector size from the disk it is on', asRoot, async (t) => {
  const file = await scratchFile(t, 16 * MiB);
  // One MBR entry: Linux type, starting at 4 KiB sector 256, 3000 sectors long.
  const mbr = Buffer.alloc(512);
  mbr[446 + 4] = 0x83;
  mbr.writeUInt32LE(256, 446 + 8);
  mbr.writeUInt32LE(3000, 446 + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const disk = await LocalComponent.open(file);
  await disk.write(mbr, 0);
  await disk.close();

  const device = await attachLoop(t, file, ['--sector-size', '4096', '--partscan']);
  // Without udev the kernel may not have created the partition yet; partx asks for it explicitly.
  await runCommand(['partx', '--add', device], QUICK).catch(() => undefined);
  const component = await LocalComponent.open(`${device}p1`);
  t.teardown(() => component.close());
  t.equal(component.sectorsize, 4096);
  t.equal(component.mediasize, 3000 * 4096);
});
