// NodeOps on the real system: the engine through hastctl, the kernel's mount table, fsck, mount, zpool,
// the services' commands, CARP through ifconfig/ip and sysctl.
import { realpath } from 'node:fs/promises';
import type { Logger } from '../common/log.js';
import { runCommand } from '../common/run-command.js';
import type { ResourceConfig, ServiceConfig, SupervisorConfig } from '../config/supervisor-conf.js';
import { readCarpState, restoreCarp, stepDownCarp } from './carp-probe.js';
import { waitForDevice } from './device-wait.js';
import { EngineControl } from './engine-control.js';
import { checkFilesystem, exportPool, fsckStillRunning, importPool, mountFilesystem, poolIsImported, unmountFilesystem } from './filesystem.js';
import { isHastctlFailure, type HastListEntry } from './hastctl-output.js';
import { readMounts, type MountEntry } from './mounts.js';
import type { CarpReading, EngineResourceState, EngineRole, FsckOutcome, NodeOps } from './node-ops.js';
import { serviceRunning, startService, stopService } from './services.js';

// The demotion's unmount ladder: each umount attempt is bounded by this.
const UNMOUNT_TIMEOUT_MS = 60_000;
const REBOOT_POLICY = { timeoutMs: 60_000, killAfterMs: 5_000 };

// Where the real system and the tests differ: the platform's tools, and (tests) a PATH with stand-ins.
export interface SystemOpsOptions {
  config: SupervisorConfig;
  log: Logger;
  platform?: NodeJS.Platform;
  env?: Record<string, string>;
  // The `carp-hast` command line for the built-in engine's hastctl (default: this installation's).
  cli?: string[];
  // Resources the engine's log has reported in split-brain. Read with FreeBSD's hastd only, whose hastctl has no
  // field for it; a resource whose worker is seen complete, connected to its peer, is taken out again.
  splitBrain?: Set<string>;
}

// The NodeOps of this machine.
export function systemOps(options: SystemOpsOptions): NodeOps {
  const { config, log, env } = options;
  const platform = options.platform ?? process.platform;
  const engine = new EngineControl(config.engine, options.cli === undefined ? {} : { cli: options.cli });
  const carpOptions = { platform, ...(env ? { env } : {}) };
  const loggedSplitBrain = config.engine.kind === 'freebsd' ? (options.splitBrain ?? new Set<string>()) : undefined;
  const canReadCarp = config.carp.vip !== undefined || config.carp.vhids.length > 0;

  return {
    async engineResources(): Promise<EngineResourceState[]> {
      const entries = await engine.list();
      for (const entry of entries) if (!isHastctlFailure(entry) && entry.status === 'complete') loggedSplitBrain?.delete(entry.name);
      return entries.map((entry) => engineResourceState(entry, loggedSplitBrain));
    },
    async setRole(name: string, role: EngineRole): Promise<void> {
      await engine.role(role, [name]);
    },
    waitForDevice(path: string, timeoutMs: number, signal: AbortSignal): Promise<number> {
      return waitForDevice(path, { timeoutMs, signal, log });
    },
    async resolveDevice(path: string): Promise<string | undefined> {
      return realpath(path).catch(() => undefined);
    },
    async checkFilesystem(resource: ResourceConfig, device: string): Promise<FsckOutcome> {
      return (await checkFilesystem(resource, device, { log, env })).outcome;
    },
    fsckStillRunning(device: string): string | undefined {
      return fsckStillRunning(device);
    },
    async mount(resource: ResourceConfig, device: string): Promise<void> {
      await mountFilesystem(resource, device, { log, env });
    },
    unmount(mountpoint: string) {
      return unmountFilesystem(mountpoint, { log, timeoutMs: UNMOUNT_TIMEOUT_MS, platform, env });
    },
    mounts(): Promise<MountEntry[]> {
      return readMounts({ platform, ...(env ? { env } : {}) });
    },
    poolImported(pool: string): Promise<boolean> {
      return poolIsImported(pool, { env });
    },
    async importPool(resource: ResourceConfig): Promise<void> {
      await importPool(resource.pool ?? resource.name, { log, timeoutMs: resource.mountTimeoutMs, env });
    },
    async exportPool(resource: ResourceConfig): Promise<void> {
      await exportPool(resource.pool ?? resource.name, { log, timeoutMs: resource.mountTimeoutMs, env });
    },
    async startService(service: ServiceConfig): Promise<void> {
      await startService(service, { log });
    },
    async stopService(service: ServiceConfig): Promise<void> {
      await stopService(service, { log });
    },
    serviceRunning(service: ServiceConfig): Promise<boolean | undefined> {
      return serviceRunning(service, { log });
    },
    async readCarp(): Promise<CarpReading | undefined> {
      return canReadCarp ? readCarpState(config.carp, carpOptions) : undefined;
    },
    stepDownCarp(): Promise<string[]> {
      return stepDownCarp(config.carp, carpOptions);
    },
    async restoreCarp(): Promise<void> {
      await restoreCarp(config.carp, carpOptions);
    },
    async reboot(reason: string): Promise<void> {
      // shutdown(8) on both systems logs the reason to syslog and every terminal before rebooting.
      await runCommand(['shutdown', '-r', 'now', reason], { ...REBOOT_POLICY, env });
    },
  };
}

// One `hastctl list` entry as the supervisor sees it. The built-in engine's status says split-brain (ground
// truth, with the amounts); FreeBSD's hastd says it only in its log, which `loggedSplitBrain` holds.
export function engineResourceState(entry: HastListEntry, loggedSplitBrain?: ReadonlySet<string>): EngineResourceState {
  if (isHastctlFailure(entry)) {
    return { name: entry.name, role: 'unknown', status: undefined, dirty: 0, splitBrain: false, error: `hastctl error ${entry.error}` };
  }
  const { name, role, status, dirty } = entry;
  const splitBrain = status === 'split-brain' || loggedSplitBrain?.has(name) === true;
  const changes = entry.splitBrain;
  return {
    name,
    role,
    status,
    dirty,
    splitBrain,
    ...(changes === undefined ? {} : { localChanges: changes.local }),
    ...(changes?.peer === undefined ? {} : { peerChanges: changes.peer }),
  };
}
