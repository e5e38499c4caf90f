// A primary whose local disk fails reads and writes at chosen offsets, as real processes: the component is a
// file that nbdfuse makes of an nbdkit export, and nbdkit's sh plugin fails the chosen ranges with EIO.
import t, { type Test } from 'tap';
import { execa } from 'execa';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';
import { NbdBlockClient } from '../fixtures/nbd-block-client.js';
import { dataOf, metadataOf, pattern } from '../fixtures/replication-pair.js';

const BAD_SIZE = 64 * 1024;

// An nbdkit sh-plugin script: a disk kept in $BACKING that fails reads overlapping $BAD_READ and writes
// overlapping $BAD_WRITE (each BAD_SIZE bytes long).
const FAILING_DISK = `#!/bin/sh
overlaps() { [ -n "$1" ] && [ "$3" -lt $(($1 + ${BAD_SIZE})) ] && [ $(($3 + $2)) -gt "$1" ]; }
case "$1" in
  get_size) stat -c %s "$BACKING" ;;
  can_write|can_flush) exit 0 ;;
  pread)
    if overlaps "$BAD_READ" "$3" "$4"; then echo "EIO injected read failure" >&2; exit 1; fi
    dd if="$BACKING" skip="$4" count="$3" iflag=skip_bytes,count_bytes status=none ;;
  pwrite)
    if overlaps "$BAD_WRITE" "$3" "$4"; then cat > /dev/null; echo "EIO injected write failure" >&2; exit 1; fi
    dd of="$BACKING" seek="$4" oflag=seek_bytes conv=notrunc status=none ;;
  flush) sync ;;
  *) exit 2 ;;
esac
`;

// Serves `backing` through nbdkit and nbdfuse as the file it returns; taken down at teardown.
async function failingComponent(t: Test, dir: string, backing: string, bad: { read: number; write: number }): Promise<string> {
  const script = join(dir, 'failing-disk.sh');
  writeFileSync(script, FAILING_DISK);
  chmodSync(script, 0o755);
  const socket = join(dir, 'disk.sock');
  const nbdkit = execa('nbdkit', ['-f', '--exit-with-parent', '-U', socket, 'sh', script], {
    env: { BACKING: backing, BAD_READ: String(bad.read), BAD_WRITE: String(bad.write) },
    reject: false,
  });
  const mountpoint = join(dir, 'fuse');
  mkdirSync(mountpoint);
  const file = join(mountpoint, 'component');
  await waitFor('nbdkit', async () => (await execa('nbdinfo', ['--size', `nbd+unix:///?socket=${socket}`], { reject: false })).exitCode === 0, 10_000);
  const nbdfuse = execa('nbdfuse', [file, `nbd+unix:///?socket=${socket}`], { reject: false });
  t.teardown(async () => {
    await execa('fusermount3', ['-u', '-z', mountpoint], { reject: false });
    nbdfuse.kill('SIGKILL');
    nbdkit.kill('SIGKILL');
    await Promise.all([nbdfuse, nbdkit]);
  });
  await waitFor('nbdfuse', async () => (await execa('stat', ['-c', '%s', file], { reject: false })).stdout === String(64 * MiB), 10_000);
  return file;
}



async function role(t: Test, layout: PairLayout, node: 'a' | 'b', wanted: string): Promise<void> {
  const result = await hastctl(layout, node, 'role', wanted, 'test');
  t.equal(result.exitCode, 0, `role ${wanted} on ${node}: ${result.stderr}`);
}

t.test(
  'local read and write errors at chosen offsets: the application still reads correct data',
  { skip: process.getuid?.() === 0 ? false : 'needs root: nbdfuse mounts a FUSE file system' },
  async (t) => {
    const layout = await pairLayout(t, 'fullsync');
    for (const node of ['a', 'b'] as const) t.equal((await hastctl(layout, node, 'create', '-e', '1M', 'test')).exitCode, 0);
    const localoff = Number((await metadataOf(layout.local.a, 'test')).localoff);
    const readAt = 3 * MiB;
    const writeAt = 5 * MiB;
    const component = await failingComponent(t, layout.dir, layout.local.a, { read: localoff + readAt, write: localoff + writeAt });
    writeFileSync(layout.conf, readFileSync(layout.conf, 'utf8').replace(`local ${layout.local.a}`, `local ${component}`));

    const a = await startDaemon(t, layout, 'a');
    await startDaemon(t, layout, 'b');
    await role(t, layout, 'b', 'secondary');
    await role(t, layout, 'a', 'primary');
    await waitFor('a to connect', async () => /status: complete/.test((await hastctl(layout, 'a', 'list', 'test')).stdout));
    const device = await NbdBlockClient.open(join(layout.dir, 'run-a', 'test.nbd'), 'test');
    t.teardown(() => device.close());

    // Writing where reads fail works; writing where writes fail is taken by the peer.
    await device.write(readAt, pattern(128 * 1024, 1));
    await device.write(writeAt, pattern(128 * 1024, 2));
    await device.flush();
    t.ok((await device.read(readAt, 128 * 1024)).equals(pattern(128 * 1024, 1)), 'a failed local read is served by the peer');
    t.ok((await device.read(writeAt, 128 * 1024)).equals(pattern(128 * 1024, 2)), 'a failed local write reads back from the peer');
    t.ok((await device.read(writeAt + 64 * 1024, 4096)).equals(pattern(128 * 1024, 2).subarray(64 * 1024, 68 * 1024)));

    const list = (await hastctl(layout, 'a', 'list', 'test')).stdout;
    t.match(list, /^ {2}status: degraded$/m, 'loudly degraded');
    t.match(list, /^ {4}local errors: read: [1-9]\d*, write: [1-9]\d*, delete: 0, flush: 0$/m, 'both failures counted');
    t.match(a.output(), /Local request failed \(.*\), trying remote node\. READ\(3145728, 131072\)\./);
    t.match(a.output(), /The local component is failing/);

    device.close();
    await role(t, layout, 'a', 'init');
    await role(t, layout, 'b', 'init');
    const secondary = await dataOf(layout.local.b, 'test');
    t.ok(secondary.subarray(readAt, readAt + 128 * 1024).equals(pattern(128 * 1024, 1)), 'the secondary holds the first write');
    t.ok(secondary.subarray(writeAt, writeAt + 128 * 1024).equals(pattern(128 * 1024, 2)), 'the secondary holds the second write');
    const recorded = await metadataOf(layout.local.a, 'test');
    t.same(recorded.peerExtents, [5], "a's metadata says extent 5 is only on the peer");
  },
);
