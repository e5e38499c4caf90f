import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import { METADATA_SIZE, decodeMetadata } from '../../src/engine/metadata.js';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';
import { lockHastDevices } from '../fixtures/hast-device-lock.js';

// The device a primary exports is checked with clients nobody here wrote: nbdinfo, nbdcopy, qemu-io, fio,
// and as root mkfs.ext4, mount and fsck.ext4 on /dev/hast/<name>.

const TOOL = { timeoutMs: 300_000, killAfterMs: 5_000 };
const isRoot = process.getuid?.() === 0;

function dataArea(path: string): Buffer {
  const file = readFileSync(path);
  const metadata = decodeMetadata(file.subarray(0, METADATA_SIZE), { path, resource: 'test' });
  return file.subarray(Number(metadata.localoff));
}

async function sha256(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function statusLine(layout: PairLayout, node: 'a' | 'b'): Promise<string> {
  return (await hastctl(layout, node, 'status', 'test')).stdout.split('\n')[1] ?? '';
}

// Both nodes as `carp-hast hastd` processes; a is primary, b secondary, connected.
async function runningPair(t: Test, size: number, attach: boolean) {
  const layout = await pairLayout(t, 'fullsync', size);
  for (const node of ['a', 'b'] as const) t.equal((await hastctl(layout, node, 'create', 'test')).exitCode, 0);
  const b = await startDaemon(t, layout, 'b', { attach });
  t.equal((await hastctl(layout, 'b', 'role', 'secondary', 'test')).exitCode, 0);
  const a = await startDaemon(t, layout, 'a', { attach });
  t.equal((await hastctl(layout, 'a', 'role', 'primary', 'test')).exitCode, 0);
  await waitFor('a connected primary', async () => (await statusLine(layout, 'a')).startsWith('test\tcomplete primary'));
  const socket = join(layout.dir, 'run-a', 'test.nbd');
  return { layout, a, b, socket, uri: `nbd+unix:///test?socket=${socket}` };
}

async function demoteBoth(t: Test, layout: PairLayout): Promise<void> {
  t.equal((await hastctl(layout, 'a', 'role', 'init', 'test')).exitCode, 0);
  t.equal((await hastctl(layout, 'b', 'role', 'init', 'test')).exitCode, 0);
}

t.test('NBD clients read and write the primary; both components end identical', async (t) => {
  const { layout, socket, uri } = await runningPair(t, 300 * MiB, false);
  const datasize = Number(decodeMetadata(readFileSync(layout.local.a).subarray(0, METADATA_SIZE), { path: '', resource: 'test' }).datasize);

  const info = JSON.parse((await runCommand(['nbdinfo', '--json', uri], TOOL)).stdout) as {
    exports: { 'export-size': number; 'block_size_minimum': number; 'block_size_preferred': number; can_flush: boolean; can_fua: boolean; can_trim: boolean; can_zero: boolean }[];
  };
  const exported = info.exports[0]!;
  t.equal(exported['export-size'], datasize, 'the export is the data area');
  t.equal(exported.block_size_minimum, 512);
  t.equal(exported.block_size_preferred, 4096);
  t.same([exported.can_flush, exported.can_fua, exported.can_trim, exported.can_zero], [true, true, true, true]);

  // 256 MiB in with nbdcopy, and back out.
  const source = join(layout.dir, 'pattern.img');
  await runCommand(['dd', 'if=/dev/urandom', `of=${source}`, 'bs=1M', 'count=256', 'status=none'], TOOL);
  await runCommand(['nbdcopy', source, uri], TOOL);
  const copy = join(layout.dir, 'copy.img');
  await runCommand(['nbdcopy', uri, copy], TOOL);
  t.equal(await sha256(copy, 256 * MiB), await sha256(source, 256 * MiB), 'nbdcopy out returns what went in');

  // qemu-io patterns at odd places, including the last sector.
  const qemu = (command: string) => runCommand(['qemu-io', '-f', 'raw', '-c', command, uri], TOOL);
  await qemu(`write -P 0x5a ${260 * MiB - 4096} 8192`);
  await qemu(`write -P 0xc3 ${datasize - 512} 512`);
  t.match((await qemu(`read -P 0x5a ${260 * MiB - 4096} 8192`)).stdout, /read 8192\/8192 bytes/);
  t.match((await qemu(`read -P 0xc3 ${datasize - 512} 512`)).stdout, /read 512\/512 bytes/);

  // fio's nbd engine with verification, queue depth 16.
  const fio = await runCommand(
    ['fio', '--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=32M',
      '--offset=264M', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json'],
    TOOL,
  );
  const job = (JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number } }[] }).jobs[0]!;
  t.equal(job.error, 0, 'fio verified what it wrote');
  t.equal(job.write.io_bytes, 32 * MiB);

  await demoteBoth(t, layout);
  t.equal(existsSync(socket), false, 'the NBD socket goes away with the primary role');
  t.ok(dataArea(layout.local.a).equals(dataArea(layout.local.b)), 'the two components are byte-identical');
});

t.test('ext4 on /dev/hast/test survives a switch to the peer', { skip: isRoot ? false : 'mount and losetup need root' }, async (t) => {
  await lockHastDevices(t);
  const { layout } = await runningPair(t, 128 * MiB, true);
  await waitFor('/dev/hast/test on a', () => existsSync('/dev/hast/test'));
  t.match(readlinkSync('/dev/hast/test'), /^\/dev\/loop\d+$/);
  const mnt = join(layout.dir, 'mnt');
  await mkdir(mnt);
  await runCommand(['mkfs.ext4', '-q', '-F', '/dev/hast/test'], TOOL);
  await runCommand(['mount', '/dev/hast/test', mnt], TOOL);
  const files: Record<string, string> = {};
  for (let i = 0; i < 20; i++) {
    files[`file-${i}`] = `contents ${i} `.repeat(1000 * (i + 1));
    writeFileSync(join(mnt, `file-${i}`), files[`file-${i}`]!);
  }
  await runCommand(['sync'], TOOL);
  await runCommand(['umount', mnt], TOOL);
  await runCommand(['fsck.ext4', '-n', '/dev/hast/test'], TOOL);

  // Switch: a lets go, b takes over and gets its own /dev/hast/test.
  t.equal((await hastctl(layout, 'a', 'role', 'secondary', 'test')).exitCode, 0);
  t.equal(existsSync('/dev/hast/test'), false, 'demotion removes the device');
  t.equal((await hastctl(layout, 'b', 'role', 'primary', 'test')).exitCode, 0);
  await waitFor('/dev/hast/test on b', () => existsSync('/dev/hast/test'));
  await waitFor('b connected primary', async () => (await statusLine(layout, 'b')).startsWith('test\tcomplete primary'));
  const fsck = await runCommand(['fsck.ext4', '-n', '/dev/hast/test'], TOOL);
  t.match(fsck.stdout, /clean/);
  await runCommand(['mount', '/dev/hast/test', mnt], TOOL);
  for (const [name, contents] of Object.entries(files)) t.equal(readFileSync(join(mnt, name), 'utf8'), contents, name);
  await runCommand(['umount', mnt], TOOL);
  await demoteBoth(t, layout);
  t.equal(existsSync('/dev/hast/test'), false);
});

t.test('a device left by a killed engine is cleaned and made again', { skip: isRoot ? false : 'losetup needs root' }, async (t) => {
  await lockHastDevices(t);
  const { layout, a } = await runningPair(t, 64 * MiB, true);
  await waitFor('/dev/hast/test on a', () => existsSync('/dev/hast/test'));
  a.process.kill('SIGKILL');
  await a.process;
  t.ok(lstatSync('/dev/hast/test').isSymbolicLink(), 'the symlink outlives the killed engine');
  const restarted = await startDaemon(t, layout, 'a', { attach: true });
  t.equal((await hastctl(layout, 'a', 'role', 'primary', 'test')).exitCode, 0);
  await waitFor('a new /dev/hast/test', () => existsSync('/dev/hast/test'));
  t.match(restarted.output(), /left by an earlier engine was removed/);
  const fuseFile = join(layout.dir, 'run-a', 'test.fuse', 'disk');
  const backing = (await runCommand(['losetup', '--list', '--noheadings', '--output', 'BACK-FILE'], TOOL)).stdout;
  t.equal(backing.split('\n').filter((line) => line.trim() === fuseFile).length, 1, 'the dead loop device was detached');
  await runCommand(['dd', 'if=/dev/zero', 'of=/dev/hast/test', 'bs=64k', 'count=16', 'oflag=direct', 'status=none'], TOOL);
  await demoteBoth(t, layout);
  t.equal(existsSync('/dev/hast/test'), false);
});
