// The storage steps of a failover on a resource's device: fsck and mount when promoting, the unmount ladder
// when demoting, and zpool import/export for ZFS resources.
import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { CommandError, runCommand } from '../common/run-command.js';
import type { FsckPolicy, FsType, ResourceConfig } from '../config/supervisor-conf.js';
import { findMount, readMounts } from './mounts.js';
import type { FsckOutcome, UnmountEscalation } from './node-ops.js';

// What an fsck exit status says about the file system.
export type FsckVerdict = 'clean' | 'repaired' | 'failed';

// Extra environment for the commands run here (tests put stand-in programs first on PATH).
type CommandEnv = Record<string, string> | undefined;

// mount, umount and zpool are killed this long after SIGTERM when they overstay their timeout.
const KILL_AFTER_MS = 5_000;
// A holder that got SIGKILL still has to close its files before the mount is free.
const KILL_SETTLE_MS = 1_000;
const EXIT_POLL_MS = 25;

// fsck found damage it could not repair, or could not run: the device must not be mounted.
export class FsckError extends Error {
  readonly device: string;
  readonly exitCode: number | undefined;
  readonly output: string;

  constructor(device: string, cause: CommandError) {
    super(`fsck of ${device} failed: ${cause.message}`, { cause });
    this.name = 'FsckError';
    this.device = device;
    this.exitCode = cause.exitCode;
    this.output = outputOf(cause);
  }
}

// fsck outlasted fsck_timeout. It is still running (killing it mid-repair could leave the file system worse).
export class FsckTimeoutError extends Error {
  readonly device: string;
  readonly pid: number | undefined;

  constructor(device: string, program: string, pid: number | undefined, timeoutMs: number) {
    const seconds = timeoutMs / 1000;
    super(`${program} on ${device} (pid ${pid ?? 'unknown'}) is still running after ${seconds} s and was left to finish`);
    this.name = 'FsckTimeoutError';
    this.device = device;
    this.pid = pid;
  }
}

// mount or zpool import failed or timed out.
export class MountError extends Error {
  readonly output: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MountError';
    this.output = outputOf(options?.cause);
  }
}

// A mountpoint or pool (`target`) this node cannot let go of; `holders` are the processes seen holding it last.
export class UnmountError extends Error {
  readonly target: string;
  readonly holders: number[];
  readonly output: string;

  constructor(target: string, message: string, holders: number[], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnmountError';
    this.target = target;
    this.holders = holders;
    this.output = outputOf(options?.cause);
  }
}

// ---- fsck --------------------------------------------------------------------------------------------------

// The fsck command for a device, or undefined when none is run. ufs is FreeBSD's fsck in preen mode, which also
// replays the soft-updates journal; ext4 is e2fsck's preen, quick on a clean journaled file system. xfs only
// with fsck = "always": mount replays its log, and xfs_repair -n refuses a file system whose log is dirty.
export function fsckArgv(fstype: FsType, device: string, policy: FsckPolicy): string[] | undefined {
  if (policy === 'never') return undefined;
  switch (fstype) {
    case 'ufs':
      return ['fsck', '-p', '-y', '-t', 'ufs', device];
    case 'ext4':
      return ['fsck.ext4', '-p', device];
    case 'xfs':
      return policy === 'always' ? ['xfs_repair', '-n', device] : undefined;
    case 'zfs':
    case 'none':
      return undefined;
  }
}

// What an fsck exit status means for the file system type it checked.
export function interpretFsckExit(fstype: FsType, code: number): FsckVerdict {
  if (code === 0) return 'clean';
  // e2fsck(8): 1 errors corrected, 2 corrected and a reboot advised, 4 and up left uncorrected or not checked.
  if (fstype === 'ext4' && code > 0 && code < 4) return 'repaired';
  // FreeBSD's fsck_ffs (sbin/fsck_ffs/main.c) exits 0 after a preen that repaired, so any other status is a
  // failure: 8 (EEXIT, sbin/fsck_ffs/fsck.h) for damage preen may not fix, 3 for an unreadable superblock,
  // 16 (ERERUN) when it wants another run. xfs_repair -n: 1 is corruption found; nothing else is a repair.
  return 'failed';
}

// The fsck runs this process stopped waiting for and that have not ended yet, by device: what they are, and
// until when the device is kept for them (twice fsck_timeout from their start: one hung on a dead device
// would otherwise hold the node forever).
const leftRunning = new Map<string, { what: string; keepUntil: number; log: Logger }>();

// What still checks `device` after its promotion stopped waiting ("fsck.ext4 (pid 123)"), if anything: the
// device must not be taken away under it, nor a second fsck started on it.
export function fsckStillRunning(device: string): string | undefined {
  const entry = leftRunning.get(device);
  if (entry === undefined || performance.now() < entry.keepUntil) return entry?.what;
  leftRunning.delete(device);
  entry.log.error(`${entry.what} still runs at twice fsck_timeout; ${device} is no longer kept for it.`);
  return undefined;
}

// Runs fsck on `device` as the resource's fstype and fsck policy say. fsck is never killed: only the wait is
// bounded, by fsck_timeout or the signal, and fsck is left to finish on its own (fsckStillRunning says so
// until it ends). Throws FsckError or FsckTimeoutError, or Error when an earlier fsck is still running.
export async function checkFilesystem(
  resource: ResourceConfig,
  device: string,
  options: { log: Logger; signal?: AbortSignal; env?: CommandEnv },
): Promise<{ outcome: FsckOutcome; durationMs: number }> {
  const log = options.log.child({ step: 'fsck' });
  const argv = fsckArgv(resource.fstype, device, resource.fsck);
  if (argv === undefined) {
    log.info(`No fsck for ${device} (fstype ${resource.fstype}, fsck ${resource.fsck}).`);
    return { outcome: 'skipped', durationMs: 0 };
  }
  options.signal?.throwIfAborted();
  const earlier = fsckStillRunning(device);
  if (earlier !== undefined) throw new Error(`${earlier} from an earlier promotion is still checking ${device}; not starting another`);
  const program = argv[0] ?? 'fsck';
  const started = performance.now();
  let pid: number | undefined;
  // No timeout and no kill, not even when the supervisor exits: an interrupted repair can do more harm than
  // the damage it was repairing.
  const finished: Promise<CommandError | undefined> = runCommand(argv, {
    timeoutMs: 'none',
    killAfterMs: 'never',
    env: options.env,
    onSpawn: (spawned) => {
      pid = spawned;
    },
  }).then(
    () => undefined,
    (error: unknown) => {
      if (error instanceof CommandError) return error;
      throw error;
    },
  );
  log.info({ argv, pid }, `Checking ${device} with ${program}.`);
  const failure = await settleWithin(finished, resource.fsckTimeoutMs, options.signal);
  const durationMs = Math.round(performance.now() - started);
  if (failure === TIMED_OUT || failure === ABORTED) {
    const entry = { what: `${program} (pid ${pid})`, keepUntil: started + 2 * resource.fsckTimeoutMs, log };
    leftRunning.set(device, entry);
    void finished.finally(() => leftRunning.get(device) === entry && leftRunning.delete(device)).catch(() => undefined);
    reportLateEnd(finished, log, `${program} on ${device} (pid ${pid})`, started);
    if (failure === ABORTED) {
      log.warn({ durationMs, pid }, `Stopped waiting for ${program} on ${device} (pid ${pid}); it was left to finish.`);
      throw options.signal?.reason;
    }
    const error = new FsckTimeoutError(device, program, pid, resource.fsckTimeoutMs);
    log.error({ durationMs, pid }, `${error.message}.`);
    throw error;
  }
  if (failure === undefined) {
    log.info({ durationMs }, `${device} is clean.`);
    return { outcome: 'clean', durationMs };
  }
  const verdict = failure.exitCode === undefined ? 'failed' : interpretFsckExit(resource.fstype, failure.exitCode);
  if (verdict === 'failed') {
    const error = new FsckError(device, failure);
    log.error({ durationMs, exitCode: failure.exitCode, output: error.output }, `${error.message}.`);
    throw error;
  }
  log.warn({ durationMs, exitCode: failure.exitCode, output: outputOf(failure) }, `${program} repaired ${device}.`);
  if (failure.exitCode !== undefined && (failure.exitCode & 2) !== 0) {
    const advice = `${program} advises a reboot (exit status ${failure.exitCode})`;
    log.warn(`${advice}; that matters for a mounted root file system, not here.`);
  }
  return { outcome: 'repaired', durationMs };
}

// Keeps a record of an fsck the supervisor stopped waiting for, once it ends.
function reportLateEnd(finished: Promise<CommandError | undefined>, log: Logger, what: string, started: number): void {
  const report = (status: string) =>
    log.warn({ durationMs: Math.round(performance.now() - started) }, `${what}, no longer waited for, has ended: ${status}.`);
  finished.then(
    (failure) => report(failure === undefined ? 'exit status 0' : failure.message),
    (error: unknown) => report(describeError(error)),
  );
}

const TIMED_OUT = Symbol('timed out');
const ABORTED = Symbol('aborted');

// The promise's value, or TIMED_OUT or ABORTED when the timeout or the signal comes first.
async function settleWithin<T>(
  promise: Promise<T>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<T | typeof TIMED_OUT | typeof ABORTED> {
  const settled = new AbortController();
  const cancel = signal === undefined ? settled.signal : AbortSignal.any([signal, settled.signal]);
  try {
    const timer = sleep<typeof TIMED_OUT>(timeoutMs, TIMED_OUT, { signal: cancel }).catch((): typeof ABORTED => ABORTED);
    return await Promise.race([promise, timer]);
  } finally {
    settled.abort();
  }
}

// ---- mount -------------------------------------------------------------------------------------------------

// The mount command: the same shape on Linux and FreeBSD (`mount -t ufs -o ro /dev/hast/x /hast/x`).
export function mountArgv(fstype: FsType, device: string, mountpoint: string, mountOptions: string[]): string[] {
  const optionArgs = mountOptions.length > 0 ? ['-o', mountOptions.join(',')] : [];
  return ['mount', '-t', fstype, ...optionArgs, device, mountpoint];
}

// Mounts the resource's device on its mountpoint, creating the directory if missing. Throws MountError.
export async function mountFilesystem(
  resource: ResourceConfig,
  device: string,
  options: { log: Logger; env?: CommandEnv },
): Promise<{ durationMs: number }> {
  const log = options.log.child({ step: 'mount' });
  const { mountpoint } = resource;
  if (mountpoint === undefined) throw new MountError(`resource ${resource.name} has no mountpoint to mount ${device} on`);
  const argv = mountArgv(resource.fstype, device, mountpoint, resource.mountOptions);
  const started = performance.now();
  log.info({ argv }, `Mounting ${device} on ${mountpoint}.`);
  try {
    await mkdir(mountpoint, { recursive: true });
    await runCommand(argv, { timeoutMs: resource.mountTimeoutMs, killAfterMs: KILL_AFTER_MS, env: options.env });
  } catch (cause) {
    const error = new MountError(`mounting ${device} on ${mountpoint}: ${describeError(cause)}`, { cause });
    const durationMs = Math.round(performance.now() - started);
    log.error({ durationMs, output: error.output }, `Unable to mount: ${error.message}.`);
    throw error;
  }
  const durationMs = Math.round(performance.now() - started);
  log.info({ durationMs }, `Mounted ${device} on ${mountpoint}.`);
  return { durationMs };
}

// ---- unmount -----------------------------------------------------------------------------------------------

// The process ids `fuser -m` prints on stdout (psmisc prints the access letters and names on stderr; other
// fusers append the letters to the pid, as in "1234c").
export function parseFuserPids(stdout: string): number[] {
  const pids = stdout
    .split(/\s+/)
    .map((word) => /^(\d+)[a-zA-Z]*$/.exec(word)?.[1])
    .filter((digits) => digits !== undefined)
    .map(Number);
  return [...new Set(pids)];
}

// The process ids in `fstat -f <mountpoint>` output. usr.bin/fstat/fstat.c prints a header line, then one line
// per open file: "%-8.8s %-10s %5d" (USER, CMD, PID), the FD (a number, or text, wd, root, tr, mmap, jail,
// ctty) and the MOUNT it is on, an absolute path. A command name may hold spaces and digits ("postgres: walwriter
// 2"), so the pid is found as the number followed by an FD and the mount path.
export function parseFstatPids(text: string): number[] {
  const pids: number[] = [];
  for (const line of text.split('\n')) {
    const match = /^.{8} .{10}.*?\s(\d+)\s+(?:\d+|text|wd|root|tr|mmap|jail|ctty)\s+\//.exec(line);
    if (match?.[1] !== undefined) pids.push(Number(match[1]));
  }
  return [...new Set(pids)];
}

// The demotion ladder for one mountpoint: umount; if the mount is busy, SIGTERM the processes holding it, wait
// killGraceMs, SIGKILL what is left and umount again; then umount -f. A mountpoint that is not mounted is
// 'clean'. Never signals this process. Throws UnmountError naming the holders when the mount stays, and
// MountTableError when the mount table cannot be read.
export async function unmountFilesystem(
  mountpoint: string,
  options: { log: Logger; timeoutMs: number; platform?: NodeJS.Platform; killGraceMs?: number; env?: CommandEnv },
): Promise<{ escalation: UnmountEscalation; killed: number[] }> {
  const log = options.log.child({ step: 'unmount' });
  const platform = options.platform ?? process.platform;
  const policy = { timeoutMs: options.timeoutMs, killAfterMs: KILL_AFTER_MS, env: options.env };
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const mounted = async () => findMount(await readMounts({ platform, env: options.env }), mountpoint) !== undefined;
  // Resolves to the command's failure while the mountpoint is still mounted, undefined once it is not.
  const umount = async (argv: string[]): Promise<CommandError | undefined> => {
    try {
      await runCommand(argv, policy);
      return undefined;
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      return (await mounted()) ? error : undefined;
    }
  };

  if (!(await mounted())) {
    log.info(`${mountpoint} is not mounted.`);
    return { escalation: 'clean', killed: [] };
  }
  log.info(`Unmounting ${mountpoint}.`);
  const plain = await umount(['umount', mountpoint]);
  if (plain === undefined) {
    log.info({ durationMs: elapsed() }, `Unmounted ${mountpoint}.`);
    return { escalation: 'clean', killed: [] };
  }
  log.warn({ output: outputOf(plain) }, `${mountpoint} is busy; looking for the processes holding it.`);
  // Without the list of holders the ladder still goes on to the forced unmount.
  const holders = await findHolders(mountpoint, platform, policy).catch((error: unknown) => {
    log.error(`Unable to find the processes holding ${mountpoint}: ${describeError(error)}.`);
    return [];
  });
  // Unmounted meanwhile (by someone else), fstat -f and fuser would name every process on the file system
  // below: nobody is signalled unless the mount is still there.
  if (!(await mounted())) {
    log.warn({ durationMs: elapsed() }, `${mountpoint} was unmounted meanwhile; no process was stopped.`);
    return { escalation: 'clean', killed: [] };
  }
  const killed = await stopProcesses(holders, options.killGraceMs ?? 5_000, log);
  if ((await umount(['umount', mountpoint])) === undefined) {
    const how = killed.length > 0 ? `after stopping pid(s) ${killed.join(', ')}` : 'on the second try';
    log.warn({ durationMs: elapsed(), killed }, `Unmounted ${mountpoint} ${how}.`);
    return { escalation: killed.length > 0 ? 'killed-holders' : 'clean', killed };
  }
  const forced = await umount(['umount', '-f', mountpoint]);
  if (forced === undefined) {
    log.warn({ durationMs: elapsed(), killed }, `Unmounted ${mountpoint} by force.`);
    return { escalation: 'forced', killed };
  }
  const remaining = await findHolders(mountpoint, platform, policy).catch(() => []);
  const heldBy = remaining.length > 0 ? `held by pid ${remaining.join(', ')}` : 'no process found holding it';
  const message = `${mountpoint} is still mounted after umount -f (${heldBy}): ${forced.message}`;
  const error = new UnmountError(mountpoint, message, remaining, { cause: forced });
  log.error({ durationMs: elapsed(), holders: remaining, output: error.output }, `Unable to unmount: ${error.message}.`);
  throw error;
}

// The processes with files, a working directory or mappings on the mounted file system, other than us.
async function findHolders(
  mountpoint: string,
  platform: NodeJS.Platform,
  policy: { timeoutMs: number; killAfterMs: number; env: CommandEnv },
): Promise<number[]> {
  let pids: number[];
  if (platform === 'freebsd') {
    pids = parseFstatPids((await runCommand(['fstat', '-m', '-f', mountpoint], policy)).stdout);
  } else {
    // -M: only if it is a mountpoint. fuser exits 1 when no process uses the file system (or it is no mountpoint).
    const { stdout } = await runCommand(['fuser', '-M', '-m', mountpoint], policy).catch((error: unknown) => {
      if (error instanceof CommandError && error.exitCode === 1) return error;
      throw error;
    });
    pids = parseFuserPids(stdout);
  }
  return pids.filter((pid) => pid !== process.pid);
}

// SIGTERM, up to graceMs to exit, then SIGKILL. Resolves to the pids that were signalled.
async function stopProcesses(pids: number[], graceMs: number, log: Logger): Promise<number[]> {
  if (pids.length === 0) return [];
  log.warn({ pids }, `Sending SIGTERM to pid(s) ${pids.join(', ')}.`);
  const signalled = pids.filter((pid) => signal(pid, 'SIGTERM'));
  let alive = await waitForExit(signalled, graceMs);
  if (alive.length > 0) {
    log.warn({ pids: alive }, `Processes still running ${graceMs / 1000} s after SIGTERM; sending SIGKILL.`);
    alive.forEach((pid) => signal(pid, 'SIGKILL'));
    alive = await waitForExit(alive, KILL_SETTLE_MS);
    if (alive.length > 0) log.error({ pids: alive }, 'Processes survived SIGKILL (blocked in the kernel?).');
  }
  return signalled;
}

// False when the process no longer exists.
function signal(pid: number, name: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch (error) {
    // EPERM: it exists but is not ours to signal; ESRCH: it is gone.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// The pids still running after up to timeoutMs.
async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = performance.now() + timeoutMs;
  let alive = pids.filter((pid) => signal(pid, 0));
  while (alive.length > 0 && performance.now() < deadline) {
    await sleep(EXIT_POLL_MS);
    alive = alive.filter((pid) => signal(pid, 0));
  }
  return alive;
}

// ---- ZFS ---------------------------------------------------------------------------------------------------

// `zpool list` of one pool is quick; a hung one is not worth waiting for.
const ZPOOL_LIST_POLICY = { timeoutMs: 10_000, killAfterMs: 5_000 };

// Whether this node has `pool` imported. Only zpool's "no such pool" means no: any other failure is thrown, so
// that a demotion never takes a pool it could not check for exported.
export async function poolIsImported(pool: string, options: { env?: CommandEnv } = {}): Promise<boolean> {
  try {
    await runCommand(['zpool', 'list', '-H', '-o', 'name', pool], { ...ZPOOL_LIST_POLICY, env: options.env });
    return true;
  } catch (cause) {
    if (cause instanceof CommandError && cause.exitCode === 1 && cause.stderr.includes('no such pool')) return false;
    throw new Error(`checking whether pool ${pool} is imported: ${describeError(cause)}`, { cause });
  }
}

// Imports a ZFS pool from the HAST device(s): forced, because the pool was last imported on the peer, and with
// no cachefile, so that this node never imports it at boot behind HAST's back. Throws MountError.
export async function importPool(
  pool: string,
  options: { log: Logger; timeoutMs: number; env?: CommandEnv },
): Promise<{ durationMs: number }> {
  const log = options.log.child({ step: 'pool import' });
  const argv = ['zpool', 'import', '-f', '-o', 'cachefile=none', pool];
  const started = performance.now();
  log.info({ argv }, `Importing pool ${pool}.`);
  try {
    await runCommand(argv, { timeoutMs: options.timeoutMs, killAfterMs: KILL_AFTER_MS, env: options.env });
  } catch (cause) {
    const error = new MountError(`importing pool ${pool}: ${describeError(cause)}`, { cause });
    const durationMs = Math.round(performance.now() - started);
    log.error({ durationMs, output: error.output }, `Unable to import: ${error.message}.`);
    throw error;
  }
  const durationMs = Math.round(performance.now() - started);
  log.info({ durationMs }, `Imported pool ${pool}.`);
  return { durationMs };
}

// Exports a ZFS pool, forcing the export (which unmounts busy datasets) when the plain one fails. Throws
// UnmountError.
export async function exportPool(
  pool: string,
  options: { log: Logger; timeoutMs: number; env?: CommandEnv },
): Promise<{ escalation: 'clean' | 'forced'; durationMs: number }> {
  const log = options.log.child({ step: 'pool export' });
  const policy = { timeoutMs: options.timeoutMs, killAfterMs: KILL_AFTER_MS, env: options.env };
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  log.info(`Exporting pool ${pool}.`);
  try {
    await runCommand(['zpool', 'export', pool], policy);
    log.info({ durationMs: elapsed() }, `Exported pool ${pool}.`);
    return { escalation: 'clean', durationMs: elapsed() };
  } catch (plain) {
    log.warn({ output: outputOf(plain) }, `Plain export of pool ${pool} failed; forcing it.`);
  }
  try {
    await runCommand(['zpool', 'export', '-f', pool], policy);
  } catch (cause) {
    const error = new UnmountError(pool, `exporting pool ${pool}: ${describeError(cause)}`, [], { cause });
    log.error({ durationMs: elapsed(), output: error.output }, `Unable to export: ${error.message}.`);
    throw error;
  }
  log.warn({ durationMs: elapsed() }, `Exported pool ${pool} by force.`);
  return { escalation: 'forced', durationMs: elapsed() };
}

// A failed command's stderr and stdout, for errors and logs; empty for anything else.
function outputOf(error: unknown): string {
  return error instanceof CommandError ? [error.stderr.trim(), error.stdout.trim()].filter(Boolean).join('\n') : '';
}
