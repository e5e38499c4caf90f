import { access, lstat, mkdir, readFile, readlink, rm, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { runCommand, type CommandResult } from '../common/run-command.js';

// Where FreeBSD puts a HAST provider; the same path on Linux is a symlink to the loop device.
export const HAST_DEVICE_DIR = '/dev/hast';

const QUICK = { timeoutMs: 30_000, killAfterMs: 5_000 };
const READY_TIMEOUT_MS = 15_000;

// Why /dev/hast/<name> cannot exist on this machine, or undefined if it can. Checked once per engine.
export async function attachUnavailableReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `attaching the NBD export as a block device is done on Linux only`;
  if (process.getuid?.() !== 0) return 'attaching a block device needs root';
  try {
    await access('/dev/fuse');
  } catch {
    return '/dev/fuse is missing (no FUSE in this kernel or container)';
  }
  for (const tool of [['nbdfuse', '--version'], ['losetup', '--version'], ['fusermount3', '--version']]) {
    try {
      await runCommand(tool, QUICK);
    } catch (error) {
      return `${tool[0]} is not usable (${describeError(error)}); install libnbd-bin, fuse3 and util-linux`;
    }
  }
  return undefined;
}

// The paths of one resource's attachment.
function attachmentPaths(runDir: string, name: string) {
  const mountpoint = join(runDir, `${name}.fuse`);
  return {
    mountpoint,
    file: join(mountpoint, 'disk'),
    pidfile: join(runDir, `${name}.nbdfuse.pid`),
    device: join(HAST_DEVICE_DIR, name),
  };
}

// /dev/hast/<name> on Linux: the NBD export made a file by nbdfuse, that file made a block device by a loop
// device, and /dev/hast/<name> a symlink to it. The kernel's nbd client would be shorter, but it is missing
// from many kernels (this project's CI has none); nbdfuse and losetup are in every Debian.
export class HastDevice {
  readonly path: string;
  readonly loop: string;
  private readonly paths: ReturnType<typeof attachmentPaths>;
  private readonly nbdfuse: Promise<CommandResult | undefined>;
  private readonly log: Logger;

  private constructor(paths: ReturnType<typeof attachmentPaths>, loop: string, nbdfuse: Promise<CommandResult | undefined>, log: Logger) {
    this.paths = paths;
    this.path = paths.device;
    this.loop = loop;
    this.nbdfuse = nbdfuse;
    this.log = log;
  }

  // Attaches the export served at `socket` as /dev/hast/<name>, first cleaning what a crashed engine left.
  static async attach(options: { name: string; socket: string; runDir: string; log: Logger }): Promise<HastDevice> {
    const paths = attachmentPaths(options.runDir, options.name);
    await cleanStaleAttachment(paths, options.log);
    await mkdir(paths.mountpoint, { recursive: true });
    const uri = `nbd+unix:///${encodeURIComponent(options.name)}?socket=${options.socket}`;
    let exited = false;
    const nbdfuse = runCommand(['nbdfuse', '-P', paths.pidfile, paths.file, uri], { timeoutMs: 'none', killAfterMs: 5_000 })
      .catch((error: unknown) => {
        options.log.warn(`nbdfuse ended: ${describeError(error)}`);
        return undefined;
      })
      .finally(() => {
        exited = true;
      });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await readFile(paths.pidfile, 'utf8').then((text) => text.trim() !== '', () => false))) {
      if (exited || Date.now() > deadline) {
        await runCommand(['fusermount3', '-u', '-z', paths.mountpoint], QUICK).catch(() => undefined);
        throw new Error(`nbdfuse did not make ${paths.file} available within ${READY_TIMEOUT_MS / 1000} s`);
      }
      await sleep(20);
    }
    let loop: string;
    try {
      loop = (await runCommand(['losetup', '--find', '--show', paths.file], QUICK)).stdout.trim();
      await mkdir(HAST_DEVICE_DIR, { recursive: true });
      await symlink(loop, paths.device);
    } catch (error) {
      await runCommand(['fusermount3', '-u', '-z', paths.mountpoint], QUICK).catch(() => undefined);
      throw new Error(`attaching ${paths.file} as ${paths.device}`, { cause: error });
    }
    options.log.info(`Device ${paths.device} created (${loop}).`);
    return new HastDevice(paths, loop, nbdfuse, options.log);
  }

  // Removes /dev/hast/<name>, the loop device and the FUSE file, and waits for nbdfuse to end.
  async detach(): Promise<void> {
    await unlink(this.paths.device).catch(() => undefined);
    await runCommand(['losetup', '--detach', this.loop], QUICK).catch((error: unknown) =>
      this.log.warn(`Unable to detach ${this.loop}: ${describeError(error)}`),
    );
    await runCommand(['fusermount3', '-u', this.paths.mountpoint], QUICK).catch(() =>
      runCommand(['fusermount3', '-u', '-z', this.paths.mountpoint], QUICK).catch(() => undefined),
    );
    await this.nbdfuse;
    await rm(this.paths.pidfile, { force: true });
    this.log.info(`Device ${this.paths.device} removed.`);
  }
}

// A crashed engine leaves the symlink, a loop device over a dead FUSE file and the FUSE mount: hastd takes its
// ggate device over with G_GATE_CMD_CANCEL; here the dead chain is torn down so a new one can be built.
async function cleanStaleAttachment(paths: ReturnType<typeof attachmentPaths>, log: Logger): Promise<void> {
  const link = await lstat(paths.device).catch(() => undefined);
  if (link !== undefined) {
    const target = link.isSymbolicLink() ? await readlink(paths.device) : undefined;
    if (target?.startsWith('/dev/loop')) {
      await runCommand(['losetup', '--detach', target], QUICK).catch(() => undefined);
    }
    await unlink(paths.device);
    log.warn(`Device ${paths.device} left by an earlier engine was removed.`);
  }
  const loops = await runCommand(['losetup', '--noheadings', '--output', 'NAME', '--associated', paths.file], QUICK).catch(
    () => undefined,
  );
  for (const loop of loops?.stdout.split('\n').filter((l) => l.trim() !== '') ?? []) {
    await runCommand(['losetup', '--detach', loop.trim()], QUICK).catch(() => undefined);
  }
  await runCommand(['fusermount3', '-u', '-z', paths.mountpoint], QUICK).catch(() => undefined);
  await rm(paths.pidfile, { force: true });
}
