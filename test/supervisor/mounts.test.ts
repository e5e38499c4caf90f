import t, { type Test } from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findMount, MountTableError, parseMountP, parseProcMounts, readMounts } from '../../src/supervisor/mounts.js';

// /proc/self/mounts on Debian, with the kernel's escapes for a space, a tab and a backslash.
const PROC_MOUNTS = [
  'sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0',
  '/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0',
  '/dev/loop3 /hast/with\\040space ext4 rw,relatime 0 0',
  '/dev/loop4 /hast/tab\\011and\\134backslash xfs ro 0 0',
  '',
].join('\n');

// FreeBSD 14 `mount -p`, padded as putfsent() pads: a tab per 8 characters short of 24, else a space.
const MOUNT_P = [
  'zroot/ROOT/default\t/\t\t\tzfs\trw,noatime,nfsv4acls \t0 0',
  'devfs\t\t\t/dev\t\t\tdevfs\trw,multilabel \t0 0',
  '/dev/hast/test\t\t/hast/test\t\tufs\trw,sync\t\t2 2',
  '/dev/gpt/a-very-long-label-name /mnt/data\t\tufs\trw\t\t2 2',
  'tmpfs\t\t\t/hast/test\t\ttmpfs\trw\t\t0 0',
  '',
].join('\n');

t.test('parseProcMounts reads fields and decodes octal escapes', async (t) => {
  t.same(parseProcMounts(PROC_MOUNTS), [
    { source: 'sysfs', target: '/sys', fstype: 'sysfs', options: ['rw', 'nosuid', 'nodev', 'noexec', 'relatime'] },
    { source: '/dev/sda1', target: '/', fstype: 'ext4', options: ['rw', 'relatime', 'errors=remount-ro'] },
    { source: '/dev/loop3', target: '/hast/with space', fstype: 'ext4', options: ['rw', 'relatime'] },
    { source: '/dev/loop4', target: '/hast/tab\tand\\backslash', fstype: 'xfs', options: ['ro'] },
  ]);
  t.same(parseProcMounts(''), []);
});

t.test('parseMountP reads tab- and space-padded fstab lines', async (t) => {
  t.same(parseMountP(MOUNT_P), [
    { source: 'zroot/ROOT/default', target: '/', fstype: 'zfs', options: ['rw', 'noatime', 'nfsv4acls'] },
    { source: 'devfs', target: '/dev', fstype: 'devfs', options: ['rw', 'multilabel'] },
    { source: '/dev/hast/test', target: '/hast/test', fstype: 'ufs', options: ['rw', 'sync'] },
    { source: '/dev/gpt/a-very-long-label-name', target: '/mnt/data', fstype: 'ufs', options: ['rw'] },
    { source: 'tmpfs', target: '/hast/test', fstype: 'tmpfs', options: ['rw'] },
  ]);
});

t.test('a line without four fields is an error naming it', async (t) => {
  const procError = t.throws(() => parseProcMounts('sysfs /sys sysfs rw 0 0\n/dev/sda1 /\n'));
  t.type(procError, MountTableError);
  t.equal((procError as Error).message, '/proc/self/mounts line 2: expected "source target fstype options": "/dev/sda1 /"');
  const mountPError = t.throws(() => parseMountP('devfs\t\t\t/dev\t\t\tdevfs\n'));
  const quoted = JSON.stringify('devfs\t\t\t/dev\t\t\tdevfs');
  t.equal((mountPError as Error).message, `mount -p line 1: expected "source target fstype options": ${quoted}`);
});

t.test('findMount: the last mount on a path wins, paths compared normalised', async (t) => {
  const entries = parseMountP(MOUNT_P);
  t.equal(findMount(entries, '/hast/test')?.fstype, 'tmpfs', 'the later mount hides the earlier one');
  t.equal(findMount(entries, '/hast/test/')?.source, 'tmpfs');
  t.equal(findMount(entries, '/hast//test')?.source, 'tmpfs');
  t.equal(findMount(entries, '/hast/../hast/test')?.source, 'tmpfs');
  t.equal(findMount(entries, '/')?.source, 'zroot/ROOT/default');
  t.equal(findMount(entries, '/hast'), undefined);
  t.equal(findMount(entries.slice(0, 3), '/hast/test')?.source, '/dev/hast/test');
  t.equal(findMount(parseProcMounts(PROC_MOUNTS), '/hast/with space')?.source, '/dev/loop3');
});

t.test('readMounts on Linux reads /proc/self/mounts', { skip: process.platform !== 'linux' && 'needs /proc' }, async (t) => {
  const entries = await readMounts({ platform: 'linux' });
  t.ok(findMount(entries, '/proc') ?? findMount(entries, '/'), 'the root or /proc is mounted');
  t.ok(entries.every((entry) => entry.options.length > 0));
});

// A stand-in for FreeBSD's mount(8) in a fresh directory, and the environment that puts it first in PATH.
function fakeMount(t: Test, script: string): { dir: string; env: Record<string, string> } {
  const dir = t.testdir({ 'mount-p.txt': MOUNT_P });
  writeFileSync(join(dir, 'mount'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'mount'), 0o755);
  return { dir, env: { PATH: `${dir}:${process.env['PATH'] ?? ''}` } };
}

t.test('readMounts on FreeBSD runs mount -p', async (t) => {
  const { dir, env } = fakeMount(t, 'echo "$@" > "$(dirname "$0")/argv"\ncat "$(dirname "$0")/mount-p.txt"');
  const entries = await readMounts({ platform: 'freebsd', env });
  t.same(entries, parseMountP(MOUNT_P));
  t.equal(readFileSync(join(dir, 'argv'), 'utf8'), '-p\n');
});

t.test('readMounts on FreeBSD: a failing mount -p is a MountTableError with the command as cause', async (t) => {
  const { env } = fakeMount(t, 'echo "mount: getmntinfo: Operation not permitted" >&2\nexit 1');
  const error = await t.rejects(readMounts({ platform: 'freebsd', env }));
  t.type(error, MountTableError);
  t.equal((error as Error).message, 'reading the mount table with mount -p');
  t.match(String((error as Error).cause), /mount -p: exited with status 1: mount: getmntinfo: Operation not permitted/);
});

t.test('readMounts on FreeBSD: garbage from mount -p is a MountTableError naming the line', async (t) => {
  const { env } = fakeMount(t, 'echo "something odd"');
  const error = await t.rejects(readMounts({ platform: 'freebsd', env }));
  t.equal((error as Error).message, 'mount -p line 1: expected "source target fstype options": "something odd"');
});
