// The I/O a failover does on this node, as one interface: the transitions are written against it, the daemon
// gives them the real system (system-ops.ts), and the transition tests give them a recording stand-in.
import type { CarpState } from './devd-event.js';
import type { ResourceConfig, ServiceConfig } from '../config/supervisor-conf.js';
import type { MountEntry } from './mounts.js';

// The roles hastctl sets.
export type EngineRole = 'init' | 'primary' | 'secondary';

// One resource as the engine reports it through `hastctl list`.
export interface EngineResourceState {
  name: string;
  role: string;
  // "complete" or "degraded" while a worker runs, "split-brain" (built-in engine); undefined without a worker.
  status: string | undefined;
  dirty: number;
  // Both nodes wrote while apart: the built-in engine says so in its status, FreeBSD's hastd in its log.
  splitBrain: boolean;
  // With splitBrain, the bytes this node and the peer changed since they parted, when the engine says.
  localChanges?: number;
  peerChanges?: number;
  // Set when the engine could not report on the resource.
  error?: string;
}

// What CARP says about this node, with a few words for status ("1@em0 MASTER (advskew 0)").
export interface CarpReading {
  state: CarpState;
  detail: string;
}

// How a device was checked before mounting.
export type FsckOutcome = 'skipped' | 'clean' | 'repaired';

// How far the unmount ladder had to go.
export type UnmountEscalation = 'clean' | 'killed-holders' | 'forced';

// Everything a promotion or demotion does to the system.
export interface NodeOps {
  engineResources(): Promise<EngineResourceState[]>;
  setRole(name: string, role: EngineRole): Promise<void>;
  waitForDevice(path: string, timeoutMs: number, signal: AbortSignal): Promise<number>;
  // The device's canonical path (the loop device behind /dev/hast/<name> on Linux), undefined if absent.
  resolveDevice(path: string): Promise<string | undefined>;
  checkFilesystem(resource: ResourceConfig, device: string): Promise<FsckOutcome>;
  // An fsck a promotion stopped waiting for that still runs on `device` ("fsck.ext4 (pid 123)"), if any.
  fsckStillRunning(device: string): string | undefined;
  mount(resource: ResourceConfig, device: string): Promise<void>;
  unmount(mountpoint: string): Promise<{ escalation: UnmountEscalation; killed: number[] }>;
  mounts(): Promise<MountEntry[]>;
  poolImported(pool: string): Promise<boolean>;
  importPool(resource: ResourceConfig): Promise<void>;
  exportPool(resource: ResourceConfig): Promise<void>;
  startService(service: ServiceConfig): Promise<void>;
  stopService(service: ServiceConfig): Promise<void>;
  // undefined when the service has no status command.
  serviceRunning(service: ServiceConfig): Promise<boolean | undefined>;
  // undefined when nothing on this node can tell (carp.source = "notify" without vhids or vip).
  readCarp(): Promise<CarpReading | undefined>;
  // Makes CARP give MASTER to the peer; resolves to the command it ran.
  stepDownCarp(): Promise<string[]>;
  // Undoes stepDownCarp where that is a lasting setting (FreeBSD's demotion sysctl).
  restoreCarp(): Promise<void>;
  // The on_demote_failure = "reboot" escalation.
  reboot(reason: string): Promise<void>;
}
