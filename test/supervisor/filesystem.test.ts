import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { Test } from 'tap';
import { runCommand } from '../../src/common/run-command.js';
import type { FsckPolicy, FsType, ResourceConfig } from '../../src/config/supervisor-conf.js';
import {
  checkFilesystem,
  exportPool,
  FsckError,
  fsckArgv,
  fsckStillRunning,
  FsckTimeoutError,
  importPool,
  interpretFsckExit,
  MountError,
  mountArgv,
  mountFilesystem,
  parseFstatPids,
  parseFuserPids,
  poolIsImported,
  UnmountError,
  unmountFilesystem,
} from '../../src/supervisor/filesystem.js';
import { findMount, readMounts } from '../../src/supervisor/mounts.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const notRoot = process.getuid?.() !== 0;
const QUICK = { timeoutMs: 30_000, killAfterMs: 5_000 };

function resource(overrides: Partial<ResourceConfig> = {}): ResourceConfig {
  return {
    name: 'test',
    fstype: 'ext4',
    mountpoint: '/hast/test',
    mountOptions: [],
    fsck: 'auto',
    pool: undefined,
    deviceTimeoutMs: 30_000,
    fsckTimeoutMs: 60_000,
    mountTimeoutMs: 60_000,
    position: { file: 'carp-hast.toml', line: 1, col: 1 },
    ...overrides,
  };
}

async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

// Stand-in programs first on PATH, each a shell script; `$dir` in a script is their directory.
async function standIns(t: Test, programs: Record<string, string>): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await tempDir(t, 'stand-ins-');
  for (const [name, body] of Object.entries(programs)) {
    await writeFile(join(dir, name), `#!/bin/sh\ndir=$(dirname "$0")\n${body}\n`);
    await chmod(join(dir, name), 0o755);
  }
  return { dir, env: { PATH: `${dir}:${process.env['PATH'] ?? '/usr/bin:/bin'}` } };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---- Pure functions -----------------------------------------------------------------------------------------

t.test('fsckArgv picks the command per fstype and policy', async (t) => {
  const cases: [FsType, FsckPolicy, string[] | undefined][] = [
    ['ufs', 'auto', ['fsck', '-p', '-y', '-t', 'ufs', '/dev/hast/test']],
    ['ufs', 'always', ['fsck', '-p', '-y', '-t', 'ufs', '/dev/hast/test']],
    ['ufs', 'never', undefined],
    ['ext4', 'auto', ['fsck.ext4', '-p', '/dev/hast/test']],
    ['ext4', 'always', ['fsck.ext4', '-p', '/dev/hast/test']],
    ['ext4', 'never', undefined],
    ['xfs', 'auto', undefined],
    ['xfs', 'always', ['xfs_repair', '-n', '/dev/hast/test']],
    ['xfs', 'never', undefined],
    ['zfs', 'always', undefined],
    ['none', 'always', undefined],
  ];
  for (const [fstype, policy, argv] of cases) t.same(fsckArgv(fstype, '/dev/hast/test', policy), argv, `${fstype} ${policy}`);
});

t.test('interpretFsckExit reads each fsck exit status', async (t) => {
  const cases: [FsType, number, string][] = [
    ['ext4', 0, 'clean'],
    ['ext4', 1, 'repaired'],
    ['ext4', 2, 'repaired'],
    ['ext4', 3, 'repaired'],
    ['ext4', 4, 'failed'],
    ['ext4', 8, 'failed'],
    ['ext4', 12, 'failed'],
    ['ext4', -1, 'failed'],
    ['ufs', 0, 'clean'],
    ['ufs', 1, 'failed'],
    ['ufs', 3, 'failed'],
    ['ufs', 8, 'failed'],
    ['ufs', 16, 'failed'],
    ['xfs', 0, 'clean'],
    ['xfs', 1, 'failed'],
    ['xfs', 2, 'failed'],
  ];
  for (const [fstype, code, verdict] of cases) t.equal(interpretFsckExit(fstype, code), verdict, `${fstype} ${code}`);
});

t.test('mountArgv passes options joined with commas, and none when there are none', async (t) => {
  t.same(mountArgv('ext4', '/dev/hast/test', '/hast/test', []), ['mount', '-t', 'ext4', '/dev/hast/test', '/hast/test']);
  t.same(mountArgv('ufs', '/dev/hast/test', '/hast/test', ['noatime', 'ro']), [
    'mount',
    '-t',
    'ufs',
    '-o',
    'noatime,ro',
    '/dev/hast/test',
    '/hast/test',
  ]);
});

t.test('parseFuserPids reads the pids psmisc fuser prints on stdout', async (t) => {
  // Recorded from `fuser -m /mnt` on Debian 12: pids on stdout, "/mnt:" and the access letters on stderr.
  t.same(parseFuserPids(' 30491 30492'), [30491, 30492]);
  t.same(parseFuserPids('  1234c  5678e\n  1234m\n'), [1234, 5678]);
  t.same(parseFuserPids(''), []);
  t.same(parseFuserPids('/mnt: kernel'), []);
});

t.test('parseFstatPids reads the pid column of FreeBSD fstat output', async (t) => {
  const output = [
    'USER     CMD          PID   FD MOUNT      INUM MODE         SZ|DV R/W',
    'root     sleep       1234   wd /hast/test      2 drwxr-xr-x     512  r',
    'www      nginx        812    5 /hast/test     12 -rw-r--r--    1024 rw',
    'www      nginx        812    6 /hast/test     13 -rw-r--r--    2048 rw',
    'root     my tool 2    4321 text /hast/test      5 -r-xr-xr-x  160000  r',
    'root     sh          9999 mmap /hast/test      7 -r--r--r--    4096  r',
    'postgres postgres: walwriter 2  4567   wd /hast/test      2 drwxr-xr-x     512  r',
    'root     zsh           77 root /hast/test      2 drwxr-xr-x     512  r',
    '',
  ].join('\n');
  t.same(parseFstatPids(output), [1234, 812, 4321, 9999, 4567, 77]);
  t.same(parseFstatPids('USER     CMD          PID   FD MOUNT      INUM MODE         SZ|DV R/W\n'), []);
  t.same(parseFstatPids('fstat: /hast/test: No such file or directory\n'), []);
});

// ---- fsck with stand-ins: what cannot be made to happen with a real fsck --------------------------------------

// The pid a stand-in wrote once it started; on a loaded machine that can take a moment.
async function pidFrom(file: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (text.endsWith('\n')) return Number(text);
    if (Date.now() > deadline) throw new Error(`no pid in ${file}`);
    await sleep(20);
  }
}

t.test('fsck that outlasts fsck_timeout is left running and reported with its pid', async (t) => {
  const { dir, env } = await standIns(t, { 'fsck.ext4': 'echo $$ > "$dir/fsck.pid"\nexec sleep 30' });
  const { log, records } = memoryLogger();
  const started = performance.now();
  const error = await checkFilesystem(resource({ fsckTimeoutMs: 1500 }), '/dev/hast/test', { log, env }).catch((e: unknown) => e);
  t.ok(performance.now() - started < 5_000);
  t.ok(error instanceof FsckTimeoutError);
  const pid = await pidFrom(join(dir, 'fsck.pid'));
  t.equal((error as FsckTimeoutError).pid, pid);
  t.equal((error as Error).message, `fsck.ext4 on /dev/hast/test (pid ${pid}) is still running after 1.5 s and was left to finish`);
  await sleep(200);
  t.ok(alive(pid), 'fsck was not killed');
  t.equal(fsckStillRunning('/dev/hast/test'), `fsck.ext4 (pid ${pid})`);
  await t.rejects(checkFilesystem(resource(), '/dev/hast/test', { log, env }), {
    message: `fsck.ext4 (pid ${pid}) from an earlier promotion is still checking /dev/hast/test; not starting another`,
  });
  process.kill(pid, 'SIGTERM');
  // The supervisor notes when the fsck it gave up on ends.
  while (!records.some((r) => String(r['msg']).includes('no longer waited for'))) await sleep(20);
  t.equal(
    records.at(-1)?.['msg'],
    `fsck.ext4 on /dev/hast/test (pid ${pid}), no longer waited for, has ended: fsck.ext4 -p /dev/hast/test: killed by SIGTERM.`,
  );
  t.equal(fsckStillRunning('/dev/hast/test'), undefined, 'forgotten once it ended');
});

t.test('an fsck that never ends holds its device for twice fsck_timeout, not forever', async (t) => {
  const { dir, env } = await standIns(t, { 'fsck.ext4': 'echo $$ > "$dir/fsck.pid"\nexec sleep 30' });
  const { log, messages } = memoryLogger();
  await t.rejects(checkFilesystem(resource({ fsckTimeoutMs: 300 }), '/dev/hast/test', { log, env }), FsckTimeoutError);
  const pid = await pidFrom(join(dir, 'fsck.pid'));
  t.teardown(() => process.kill(pid, 'SIGKILL'));
  t.equal(fsckStillRunning('/dev/hast/test'), `fsck.ext4 (pid ${pid})`);
  await sleep(400);
  t.equal(fsckStillRunning('/dev/hast/test'), undefined, 'given up at 600 ms');
  t.ok(messages().includes(`fsck.ext4 (pid ${pid}) still runs at twice fsck_timeout; /dev/hast/test is no longer kept for it.`));
  t.ok(alive(pid), 'and still not killed');
});

t.test('an abort stops the wait for fsck, not fsck', async (t) => {
  const { dir, env } = await standIns(t, { 'fsck.ext4': 'echo $$ > "$dir/fsck.pid"\nexec sleep 30' });
  const controller = new AbortController();
  const checking = checkFilesystem(resource(), '/dev/hast/test', { log: memoryLogger().log, env, signal: controller.signal });
  await sleep(200);
  const reason = new Error('BACKUP arrived');
  controller.abort(reason);
  t.equal(await checking.catch((e: unknown) => e), reason);
  const pid = await pidFrom(join(dir, 'fsck.pid'));
  t.ok(alive(pid), 'fsck was not killed');
  t.equal(fsckStillRunning('/dev/hast/test'), `fsck.ext4 (pid ${pid})`);
  process.kill(pid, 'SIGTERM');
  while (fsckStillRunning('/dev/hast/test') !== undefined) await sleep(20);
  t.equal(
    await checkFilesystem(resource(), '/dev/x', { log: memoryLogger().log, signal: AbortSignal.abort(reason) }).catch((e: unknown) => e),
    reason,
    'an already aborted signal runs nothing',
  );
});

t.test('e2fsck exit status 2 is a repair, with the reboot advice logged', async (t) => {
  const { env } = await standIns(t, { 'fsck.ext4': 'echo "***** REBOOT SYSTEM *****"\nexit 2' });
  const { log, records } = memoryLogger();
  const result = await checkFilesystem(resource(), '/dev/hast/test', { log, env });
  t.equal(result.outcome, 'repaired');
  t.same(
    records.map((r) => r['msg']),
    [
      'Checking /dev/hast/test with fsck.ext4.',
      'fsck.ext4 repaired /dev/hast/test.',
      'fsck.ext4 advises a reboot (exit status 2); that matters for a mounted root file system, not here.',
    ],
  );
  t.equal(records[1]?.['output'], '***** REBOOT SYSTEM *****');
  t.equal(records[1]?.['exitCode'], 2);
});

t.test('FreeBSD fsck: the ufs argv runs and any nonzero exit is an FsckError', async (t) => {
  const { dir, env } = await standIns(t, { fsck: 'echo "$@" > "$dir/argv"\necho "UNEXPECTED SOFT UPDATE INCONSISTENCY" >&2\nexit 8' });
  const error = await checkFilesystem(resource({ fstype: 'ufs' }), '/dev/hast/test', { log: memoryLogger().log, env }).catch(
    (e: unknown) => e,
  );
  t.equal(await readFile(join(dir, 'argv'), 'utf8'), '-p -y -t ufs /dev/hast/test\n');
  t.ok(error instanceof FsckError);
  t.equal((error as FsckError).exitCode, 8);
  t.equal((error as FsckError).output, 'UNEXPECTED SOFT UPDATE INCONSISTENCY');
  t.equal(
    (error as Error).message,
    'fsck of /dev/hast/test failed: fsck -p -y -t ufs /dev/hast/test: exited with status 8: UNEXPECTED SOFT UPDATE INCONSISTENCY',
  );
});

t.test('no fsck for zfs, none, never, or xfs under auto', async (t) => {
  const { log, records } = memoryLogger();
  for (const r of [resource({ fstype: 'zfs' }), resource({ fstype: 'none' }), resource({ fsck: 'never' }), resource({ fstype: 'xfs' })]) {
    t.same(await checkFilesystem(r, '/dev/hast/test', { log }), { outcome: 'skipped', durationMs: 0 });
  }
  t.equal(records[3]?.['msg'], 'No fsck for /dev/hast/test (fstype xfs, fsck auto).');
});

t.test('an fsck program that is missing is an FsckError', async (t) => {
  const error = await checkFilesystem(resource(), '/dev/hast/test', { log: memoryLogger().log, env: { PATH: '/nonexistent' } }).catch(
    (e: unknown) => e,
  );
  t.ok(error instanceof FsckError);
  t.equal((error as FsckError).exitCode, undefined);
  t.match((error as Error).message, /^fsck of \/dev\/hast\/test failed: fsck\.ext4 -p \/dev\/hast\/test: .*ENOENT/);
});

// ---- ZFS: argv only (no zfs here) ---------------------------------------------------------------------------

t.test('importPool runs a forced import without a cachefile', async (t) => {
  const { dir, env } = await standIns(t, { zpool: 'echo "$@" >> "$dir/calls"' });
  const { log, records } = memoryLogger();
  await importPool('tank', { log, timeoutMs: 10_000, env });
  t.equal(await readFile(join(dir, 'calls'), 'utf8'), 'import -f -o cachefile=none tank\n');
  t.same(
    records.map((r) => [r['step'], r['msg']]),
    [
      ['pool import', 'Importing pool tank.'],
      ['pool import', 'Imported pool tank.'],
    ],
  );
});

t.test('poolIsImported: listed is yes, "no such pool" is no, anything else is an error', async (t) => {
  const listed = await standIns(t, { zpool: 'echo "$@" >> "$dir/calls"\necho tank' });
  t.equal(await poolIsImported('tank', { env: listed.env }), true);
  t.equal(await readFile(join(listed.dir, 'calls'), 'utf8'), 'list -H -o name tank\n');
  const missing = await standIns(t, { zpool: "echo \"cannot open 'tank': no such pool\" >&2\nexit 1" });
  t.equal(await poolIsImported('tank', { env: missing.env }), false);
  const broken = await standIns(t, { zpool: 'echo "internal error: out of memory" >&2\nexit 1' });
  await t.rejects(poolIsImported('tank', { env: broken.env }), {
    message: 'checking whether pool tank is imported: zpool list -H -o name tank: exited with status 1: internal error: out of memory',
  });
});

t.test('a failed import is a MountError with zpool output', async (t) => {
  const { env } = await standIns(t, { zpool: "echo \"cannot import 'tank': no such pool available\" >&2\nexit 1" });
  const error = await importPool('tank', { log: memoryLogger().log, timeoutMs: 10_000, env }).catch((e: unknown) => e);
  t.ok(error instanceof MountError);
  t.equal((error as MountError).output, "cannot import 'tank': no such pool available");
  t.equal(
    (error as Error).message,
    "importing pool tank: zpool import -f -o cachefile=none tank: exited with status 1: cannot import 'tank': no such pool available",
  );
});

t.test('exportPool exports, and forces the export when the plain one fails', async (t) => {
  const { dir, env } = await standIns(t, {
    zpool: 'echo "$@" >> "$dir/calls"\n[ "$2" = -f ] || [ ! -e "$dir/busy" ] || { echo "cannot unmount: pool busy" >&2; exit 1; }',
  });
  const log = memoryLogger().log;
  t.equal((await exportPool('tank', { log, timeoutMs: 10_000, env })).escalation, 'clean');
  await writeFile(join(dir, 'busy'), '');
  t.equal((await exportPool('tank', { log, timeoutMs: 10_000, env })).escalation, 'forced');
  t.equal(await readFile(join(dir, 'calls'), 'utf8'), 'export tank\nexport tank\nexport -f tank\n');
});

t.test('an export that fails even forced is an UnmountError', async (t) => {
  const { env } = await standIns(t, { zpool: 'echo "cannot export: pool I/O is suspended" >&2\nexit 1' });
  const error = await exportPool('tank', { log: memoryLogger().log, timeoutMs: 10_000, env }).catch((e: unknown) => e);
  t.ok(error instanceof UnmountError);
  t.equal((error as UnmountError).target, 'tank');
  t.equal((error as Error).message, 'exporting pool tank: zpool export -f tank: exited with status 1: cannot export: pool I/O is suspended');
});

// ---- The unmount ladder on FreeBSD, with stand-in mount -p, umount and fstat ----------------------------------

// A FreeBSD mount table with /hast/test while $dir/mounted exists. umount fails while the process in $dir/holder
// lives, unless forced and $dir/force-works exists; fstat reports the holder.
const FREEBSD_TOOLS = {
  mount: '[ -e "$dir/mounted" ] && printf "/dev/hast/test\\t/hast/test\\tufs\\trw\\t2 2\\n"; exit 0',
  umount: [
    'echo "$@" >> "$dir/calls"',
    '[ "$1" = -f ] && [ -e "$dir/force-works" ] && { rm "$dir/mounted"; exit 0; }',
    'if kill -0 "$(cat "$dir/holder")" 2>/dev/null || [ "$1" = -f ]; then',
    '  echo "umount: unmount of /hast/test failed: Device busy" >&2; exit 1',
    'fi',
    'rm "$dir/mounted"',
  ].join('\n'),
  fstat: [
    'echo "fstat $@" >> "$dir/calls"',
    'echo "USER     CMD          PID   FD MOUNT      INUM MODE         SZ|DV R/W"',
    'kill -0 "$(cat "$dir/holder")" 2>/dev/null && printf "root     sleep %10s   wd /hast/test      2 drwxr-xr-x     512  r\\n" "$(cat "$dir/holder")"',
    `echo "root     node        ${process.pid}    3 /hast/test     12 -rw-r--r--    1024 rw"`,
  ].join('\n'),
};

async function freebsdMachine(t: Test, holderIgnoresTerm = false) {
  const { dir, env } = await standIns(t, FREEBSD_TOOLS);
  await writeFile(join(dir, 'mounted'), '');
  const script = holderIgnoresTerm ? 'trap "" TERM; : > "$1/ready"; while :; do sleep 1; done' : ': > "$1/ready"; exec sleep 600';
  const holder = spawn('sh', ['-c', script, 'holder', dir], { stdio: 'ignore' });
  t.teardown(() => {
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
  });
  while (!(await stat(join(dir, 'ready')).then(() => true, () => false))) await sleep(10);
  await writeFile(join(dir, 'holder'), String(holder.pid));
  return { dir, env, holder };
}

t.test('FreeBSD: a busy mount is freed by stopping its holders, found with fstat', async (t) => {
  const { dir, env, holder } = await freebsdMachine(t);
  const { log, records } = memoryLogger();
  const exited = once(holder, 'exit');
  const result = await unmountFilesystem('/hast/test', { log, env, platform: 'freebsd', timeoutMs: 10_000, killGraceMs: 2_000 });
  t.same(result, { escalation: 'killed-holders', killed: [holder.pid] });
  t.same(await exited, [null, 'SIGTERM']);
  t.equal(await readFile(join(dir, 'calls'), 'utf8'), '/hast/test\nfstat -m -f /hast/test\n/hast/test\n');
  t.same(
    records.map((r) => r['msg']),
    [
      'Unmounting /hast/test.',
      '/hast/test is busy; looking for the processes holding it.',
      `Sending SIGTERM to pid(s) ${holder.pid}.`,
      `Unmounted /hast/test after stopping pid(s) ${holder.pid}.`,
    ],
  );
  t.equal(records[1]?.['output'], 'umount: unmount of /hast/test failed: Device busy');
});

t.test('FreeBSD: a mount gone by the time its holders are listed gets no process signalled', async (t) => {
  const { dir, env, holder } = await freebsdMachine(t);
  // Someone else unmounts between the busy umount and fstat, which then lists the file system below.
  await writeFile(join(dir, 'fstat'), `#!/bin/sh\nrm -f "${dir}/mounted"\nprintf "root     sleep %10s   wd /      2 drwxr-xr-x     512  r\\n" "$(cat "${dir}/holder")"\n`);
  const { log, messages } = memoryLogger();
  const result = await unmountFilesystem('/hast/test', { log, env, platform: 'freebsd', timeoutMs: 10_000 });
  t.same(result, { escalation: 'clean', killed: [] });
  t.equal(holder.exitCode, null, 'the holder was not signalled');
  t.equal(holder.signalCode, null);
  t.ok(messages().includes('/hast/test was unmounted meanwhile; no process was stopped.'));
});

t.test('FreeBSD: a holder that ignores SIGTERM gets SIGKILL after the grace time', async (t) => {
  const { env, holder } = await freebsdMachine(t, true);
  const { log, messages } = memoryLogger();
  const exited = once(holder, 'exit');
  const started = performance.now();
  const result = await unmountFilesystem('/hast/test', { log, env, platform: 'freebsd', timeoutMs: 10_000, killGraceMs: 300 });
  t.ok(performance.now() - started >= 300);
  t.same(result, { escalation: 'killed-holders', killed: [holder.pid] });
  t.same(await exited, [null, 'SIGKILL']);
  t.ok(messages().includes('Processes still running 0.3 s after SIGTERM; sending SIGKILL.'));
});

t.test('FreeBSD: umount -f when stopping the holders is not enough', async (t) => {
  const { dir, env, holder } = await freebsdMachine(t);
  // fstat lists only this process, which is never stopped: umount keeps failing until forced.
  await writeFile(join(dir, 'holder'), String(process.pid));
  await writeFile(join(dir, 'force-works'), '');
  const result = await unmountFilesystem('/hast/test', { log: memoryLogger().log, env, platform: 'freebsd', timeoutMs: 10_000 });
  t.same(result, { escalation: 'forced', killed: [] });
  t.equal(holder.exitCode, null, 'nothing else was signalled');
  t.equal(await readFile(join(dir, 'calls'), 'utf8'), '/hast/test\nfstat -m -f /hast/test\n/hast/test\n-f /hast/test\n');
});

t.test('FreeBSD: a mount that survives umount -f is an UnmountError naming the holders', async (t) => {
  const { dir, env } = await freebsdMachine(t);
  await writeFile(join(dir, 'holder'), String(process.pid));
  // A holder fstat lists but that cannot be signalled: a process that has already gone.
  const ghost = spawn('true');
  await once(ghost, 'exit');
  const line = `root     ghost      ${String(ghost.pid).padStart(5)}    3 /hast/test     12 -rw-r--r--    1024 rw`;
  await writeFile(join(dir, 'fstat'), `#!/bin/sh\necho '${line}'\n`);
  const error = await unmountFilesystem('/hast/test', { log: memoryLogger().log, env, platform: 'freebsd', timeoutMs: 10_000 }).catch(
    (e: unknown) => e,
  );
  t.ok(error instanceof UnmountError);
  const e = error as UnmountError;
  t.equal(e.target, '/hast/test');
  t.same(e.holders, [ghost.pid]);
  t.equal(
    e.message,
    `/hast/test is still mounted after umount -f (held by pid ${ghost.pid}): umount -f /hast/test: exited with status 1: ` +
      'umount: unmount of /hast/test failed: Device busy',
  );
  t.equal(e.output, 'umount: unmount of /hast/test failed: Device busy');
});

t.test('FreeBSD: our own pid is never a holder to stop', async (t) => {
  const { dir, env } = await freebsdMachine(t);
  await writeFile(join(dir, 'holder'), String(process.pid));
  await writeFile(join(dir, 'force-works'), '');
  const result = await unmountFilesystem('/hast/test', { log: memoryLogger().log, env, platform: 'freebsd', timeoutMs: 10_000 });
  t.same(result, { escalation: 'forced', killed: [] });
});

t.test('FreeBSD: a mountpoint that is not mounted is clean without running umount', async (t) => {
  const { dir, env } = await freebsdMachine(t);
  await rm(join(dir, 'mounted'));
  const result = await unmountFilesystem('/hast/test', { log: memoryLogger().log, env, platform: 'freebsd', timeoutMs: 10_000 });
  t.same(result, { escalation: 'clean', killed: [] });
  await t.rejects(stat(join(dir, 'calls')), { code: 'ENOENT' });
});

t.test('the ladder goes on to umount -f when the holders cannot be listed', async (t) => {
  const { dir, env } = await freebsdMachine(t);
  await writeFile(join(dir, 'force-works'), '');
  await writeFile(join(dir, 'fstat'), '#!/bin/sh\necho "fstat: kvm_openfiles: Operation not permitted" >&2\nexit 1\n');
  const { log, messages } = memoryLogger();
  const result = await unmountFilesystem('/hast/test', { log, env, platform: 'freebsd', timeoutMs: 10_000 });
  t.same(result, { escalation: 'forced', killed: [] });
  t.ok(
    messages().includes(
      'Unable to find the processes holding /hast/test: fstat -m -f /hast/test: exited with status 1: ' +
        'fstat: kvm_openfiles: Operation not permitted.',
    ),
  );
});

// ---- For real, as root: a loop device with ext4 ---------------------------------------------------------------

const NEEDS_ROOT = notRoot ? 'needs root: losetup and mount' : false;

// A 64 MiB ext4 file system on a loop device, detached (and unmounted) in teardown.
async function loopExt4(t: Test): Promise<{ device: string; dir: string }> {
  const dir = await tempDir(t, 'loop-ext4-');
  const image = join(dir, 'disk.img');
  await writeFile(image, '');
  await runCommand(['truncate', '-s', '64M', image], QUICK);
  const device = (await runCommand(['losetup', '--find', '--show', image], QUICK)).stdout.trim();
  t.teardown(async () => {
    for (const entry of (await readMounts()).filter((m) => m.source === device)) {
      await runCommand(['umount', entry.target], QUICK).catch(() => runCommand(['umount', '-l', entry.target], QUICK));
    }
    await runCommand(['losetup', '--detach', device], QUICK);
  });
  await runCommand(['mkfs.ext4', '-q', device], QUICK);
  return { device, dir };
}

t.test('ext4 for real: clean, repaired, then failed', { skip: NEEDS_ROOT }, async (t) => {
  const { device } = await loopExt4(t);
  const { log, records } = memoryLogger();
  const clean = await checkFilesystem(resource(), device, { log });
  t.equal(clean.outcome, 'clean');
  t.same(
    records.map((r) => [r['msg'], r['step']]),
    [
      [`Checking ${device} with fsck.ext4.`, 'fsck'],
      [`${device} is clean.`, 'fsck'],
    ],
  );
  t.same(records[0]?.['argv'], ['fsck.ext4', '-p', device]);
  t.type(records[0]?.['pid'], 'number');

  // Marked not cleanly unmounted, as after a crash of the old primary: preen checks it and says it repaired.
  await runCommand(['debugfs', '-w', '-R', 'ssv state 0', device], QUICK);
  t.equal((await checkFilesystem(resource(), device, { log })).outcome, 'repaired');
  t.equal((await checkFilesystem(resource(), device, { log })).outcome, 'clean', 'and it stays repaired');

  await runCommand(['dd', 'if=/dev/zero', `of=${device}`, 'bs=1024', 'seek=1', 'count=1', 'conv=notrunc', 'status=none'], QUICK);
  const error = await checkFilesystem(resource(), device, { log }).catch((e: unknown) => e);
  t.ok(error instanceof FsckError);
  t.equal((error as FsckError).exitCode, 8);
  t.match((error as FsckError).output, /Bad magic number in super-block/);
  t.match((error as Error).message, new RegExp(`^fsck of ${device} failed: fsck.ext4 -p ${device}: exited with status 8: `));
});

t.test('ext4 for real: mount, a holder blocks umount, the ladder stops it', { skip: NEEDS_ROOT }, async (t) => {
  const { device, dir } = await loopExt4(t);
  const mountpoint = join(dir, 'mnt', 'test');
  const r = resource({ mountpoint, mountOptions: ['noatime'] });
  const { log, records } = memoryLogger();
  const { durationMs } = await mountFilesystem(r, device, { log });
  t.ok(durationMs >= 0);
  const entry = findMount(await readMounts(), mountpoint);
  t.equal(entry?.source, device);
  t.ok(entry?.options.includes('noatime'));
  t.same(
    records.map((x) => [x['msg'], x['step']]),
    [
      [`Mounting ${device} on ${mountpoint}.`, 'mount'],
      [`Mounted ${device} on ${mountpoint}.`, 'mount'],
    ],
  );
  await writeFile(join(mountpoint, 'data'), 'replicated');

  const holder: ChildProcess = spawn('sleep', ['600'], { cwd: mountpoint, stdio: 'ignore' });
  t.teardown(() => {
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
  });
  const exited = once(holder, 'exit');
  await t.rejects(runCommand(['umount', mountpoint], QUICK), /target is busy/, 'the plain umount is blocked');

  const result = await unmountFilesystem(mountpoint, { log, timeoutMs: 30_000, killGraceMs: 2_000 });
  t.same(result, { escalation: 'killed-holders', killed: [holder.pid] });
  t.same(await exited, [null, 'SIGTERM']);
  t.equal(findMount(await readMounts(), mountpoint), undefined, 'the mount is gone');
  t.same(await unmountFilesystem(mountpoint, { log, timeoutMs: 30_000 }), { escalation: 'clean', killed: [] });

  // The data made it to the device.
  await mountFilesystem(r, device, { log });
  t.equal(await readFile(join(mountpoint, 'data'), 'utf8'), 'replicated');
  t.same(await unmountFilesystem(mountpoint, { log, timeoutMs: 30_000 }), { escalation: 'clean', killed: [] });
});

t.test('ext4 for real: a mount busy without a holder process is an UnmountError', { skip: NEEDS_ROOT }, async (t) => {
  const { device, dir } = await loopExt4(t);
  const mountpoint = join(dir, 'mnt');
  const { log, messages } = memoryLogger();
  await mountFilesystem(resource({ mountpoint }), device, { log });
  // A file system mounted inside keeps the mount busy, and no process holds it: fuser finds nobody.
  const inner = join(mountpoint, 'inner');
  await mkdir(inner);
  await runCommand(['mount', '-t', 'tmpfs', 'tmpfs', inner], QUICK);
  t.teardown(() => runCommand(['umount', inner], QUICK).catch(() => undefined));
  const error = await unmountFilesystem(mountpoint, { log, timeoutMs: 30_000 }).catch((e: unknown) => e);
  t.ok(error instanceof UnmountError);
  t.same((error as UnmountError).holders, []);
  t.equal(
    (error as Error).message,
    `${mountpoint} is still mounted after umount -f (no process found holding it): umount -f ${mountpoint}: ` +
      `exited with status 32: umount: ${mountpoint}: target is busy.`,
  );
  t.notOk(messages().some((m) => m.startsWith('Sending SIGTERM')), 'nothing was signalled');
  await runCommand(['umount', inner], QUICK);
  t.same(await unmountFilesystem(mountpoint, { log, timeoutMs: 30_000 }), { escalation: 'clean', killed: [] });
});

t.test('ext4 for real: mounting with the wrong fstype is a MountError with mount output', { skip: NEEDS_ROOT }, async (t) => {
  const { device, dir } = await loopExt4(t);
  const mountpoint = join(dir, 'mnt');
  await mkdir(mountpoint);
  const error = await mountFilesystem(resource({ fstype: 'xfs', mountpoint, mountTimeoutMs: 30_000 }), device, {
    log: memoryLogger().log,
  }).catch((e: unknown) => e);
  t.ok(error instanceof MountError);
  t.match((error as MountError).output, /wrong fs type|bad superblock|unknown filesystem type/);
  t.match((error as Error).message, new RegExp(`^mounting ${device} on ${mountpoint}: mount -t xfs ${device} ${mountpoint}: exited`));
  t.equal(findMount(await readMounts(), mountpoint), undefined);
});

t.test('a resource without a mountpoint cannot be mounted', async (t) => {
  await t.rejects(
    mountFilesystem(resource({ mountpoint: undefined }), '/dev/hast/test', { log: memoryLogger().log }),
    new MountError('resource test has no mountpoint to mount /dev/hast/test on'),
  );
});
