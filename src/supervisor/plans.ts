// The steps of a promotion and of a demotion, built from the configuration. Every step looks at the system
// before acting and skips what is already in place, so a demotion also unwinds a half-done promotion and a
// promotion completes a half-done one.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ResourceConfig, SupervisorConfig } from '../config/supervisor-conf.js';
import { HAST_DEVICE_DIR } from '../engine/hast-device.js';
import type { EngineResourceState, NodeOps } from './node-ops.js';
import { findMount } from './mounts.js';
import { RefusedError, StepCancelledError, type Step } from './transition.js';

// How often the promotion looks whether the peer has let go.
const PEER_POLL_MS = 50;

// Where a resource's device appears on the primary, on FreeBSD and with the built-in engine on Linux.
export function devicePath(resource: string): string {
  return `${HAST_DEVICE_DIR}/${resource}`;
}

// A mounted resource's mountpoint; zfs and raw resources have none.
function mountpointOf(resource: ResourceConfig): string | undefined {
  return resource.fstype === 'zfs' || resource.fstype === 'none' ? undefined : resource.mountpoint;
}

async function engineEntry(ops: NodeOps, name: string): Promise<EngineResourceState> {
  const entry = (await ops.engineResources()).find((e) => e.name === name);
  if (entry === undefined) throw new Error(`the engine does not know resource ${name}`);
  if (entry.error !== undefined) throw new Error(`the engine reports an error for ${name}: ${entry.error}`);
  return entry;
}

// True when our secondary is connected to a primary: the peer still holds the resource.
export function peerHoldsPrimary(entry: EngineResourceState): boolean {
  return entry.role === 'secondary' && entry.status === 'complete';
}

// Since when each resource has been secondary, as far as this supervisor knows. A primary peer connects to a
// new secondary only at its next reconnect attempt, so until peer_connect_grace has passed since then, "no
// primary is connected" does not yet mean "the peer is not primary". What is not known counts as just now;
// a primary seen connected since then ends the grace (its leaving is then seen as letting go).
export class SecondaryClock {
  private readonly since = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  // Notes a reading of the engine: the first reading of secondary starts the clock, a connected primary ends the
  // grace, any other role stops the clock.
  observe(name: string, role: string, status: string | undefined): void {
    if (role !== 'secondary') this.since.delete(name);
    else if (status === 'complete') this.since.set(name, Number.NEGATIVE_INFINITY);
    else if (!this.since.has(name)) this.since.set(name, this.now());
  }

  // Notes that this supervisor has just made the resource secondary.
  madeSecondary(name: string): void {
    if (!this.since.has(name)) this.since.set(name, this.now());
  }

  // Milliseconds until `graceMs` has passed since the resource became secondary; 0 or less once it has.
  graceLeft(name: string, graceMs: number): number {
    return (this.since.get(name) ?? this.now()) + graceMs - this.now();
  }
}

function resourceSteps(config: SupervisorConfig, ops: NodeOps, clock: SecondaryClock, resource: ResourceConfig): Step[] {
  const { name } = resource;
  const device = devicePath(name);
  const steps: Step[] = [
    {
      name: 'engine check',
      target: name,
      async run() {
        const entry = await engineEntry(ops, name);
        if (entry.splitBrain) {
          throw new RefusedError(
            `the engine reports split-brain for ${name}: both nodes changed the data while apart; ` +
              `keep one node's changes with \`carp-hast recover ${name} --discard-local\` on the other node`,
          );
        }
        return `role ${entry.role}${entry.status ? `, ${entry.status}` : ''}`;
      },
    },
    {
      name: 'peer release',
      target: name,
      interruptible: true,
      async run(signal) {
        const started = performance.now();
        const deadline = started + config.supervisor.peerReleaseTimeoutMs;
        const graceMs = config.supervisor.peerConnectGraceMs;
        let entry = await engineEntry(ops, name);
        clock.observe(name, entry.role, entry.status);
        // A resource without a role (the engine has just started) cannot hear from a primary peer; a secondary can.
        const fromInit = entry.role === 'init' && graceMs > 0;
        if (fromInit) {
          await ops.setRole(name, 'secondary');
          clock.madeSecondary(name);
          entry = await engineEntry(ops, name);
        }
        let sawPeer = false;
        for (;;) {
          if (peerHoldsPrimary(entry)) {
            sawPeer = true;
            if (performance.now() >= deadline) {
              const seconds = config.supervisor.peerReleaseTimeoutMs / 1000;
              throw new Error(`the peer is still primary for ${name} after ${seconds} s; refusing to make a second primary`);
            }
          } else if (sawPeer || entry.role !== 'secondary' || clock.graceLeft(name, graceMs) <= 0) {
            break;
          }
          await sleep(PEER_POLL_MS, undefined, { signal }).catch((cause: unknown) => {
            throw new StepCancelledError('Waiting for the peer', { cause });
          });
          entry = await engineEntry(ops, name);
        }
        const waited = Math.round(performance.now() - started);
        if (sawPeer) return `peer let go after ${waited} ms`;
        if (waited < PEER_POLL_MS) return 'peer not primary';
        return `no primary peer connected in ${waited} ms${fromInit ? ' (made secondary first)' : ''}`;
      },
    },
    {
      name: 'role primary',
      target: name,
      async run() {
        // hastd treats the role a resource already has as done, so this is safe to repeat.
        await ops.setRole(name, 'primary');
        return undefined;
      },
    },
    {
      name: 'device wait',
      target: name,
      interruptible: true,
      async run(signal) {
        const waited = await ops.waitForDevice(device, resource.deviceTimeoutMs, signal).catch((cause: unknown) => {
          if (signal.aborted) throw new StepCancelledError(`Waiting for ${device}`, { cause });
          throw cause;
        });
        return `${device} after ${waited} ms`;
      },
    },
  ];
  if (resource.fstype === 'zfs') {
    steps.push({
      name: 'pool import',
      target: name,
      async run() {
        const pool = resource.pool ?? name;
        if (await ops.poolImported(pool)) return `pool ${pool} already imported`;
        await ops.importPool(resource);
        return `pool ${pool}`;
      },
    });
  }
  const mountpoint = mountpointOf(resource);
  if (mountpoint !== undefined) steps.push(...mountSteps(ops, resource, mountpoint, device));
  return steps;
}

function mountSteps(ops: NodeOps, resource: ResourceConfig, mountpoint: string, device: string): Step[] {
  const { name } = resource;
  // Whether the mountpoint already holds this device (true), holds something else (a string saying what) or
  // is free (false).
  const mountedHere = async (): Promise<boolean | string> => {
    const entry = findMount(await ops.mounts(), mountpoint);
    if (entry === undefined) return false;
    const [source, wanted] = await Promise.all([ops.resolveDevice(entry.source), ops.resolveDevice(device)]);
    return source !== undefined && source === wanted ? true : entry.source;
  };
  return [
    {
      name: 'fsck',
      target: name,
      async run() {
        const mounted = await mountedHere();
        if (mounted === true) return 'skipped: already mounted';
        if (typeof mounted === 'string') throw new Error(`${mountpoint} is already mounted from ${mounted}`);
        return ops.checkFilesystem(resource, device);
      },
    },
    {
      name: 'mount',
      target: name,
      async run() {
        if ((await mountedHere()) === true) return 'already mounted';
        await ops.mount(resource, device);
        return `${device} on ${mountpoint}`;
      },
    },
  ];
}

// The promotion: per resource, in the configured order, check the engine, wait for the peer to let go, become
// primary, wait for the device, check and mount it; then start the services in order.
export function promotionSteps(config: SupervisorConfig, ops: NodeOps, clock: SecondaryClock): Step[] {
  const steps = config.resources.flatMap((resource) => resourceSteps(config, ops, clock, resource));
  for (const service of config.services) {
    steps.push({
      name: 'service start',
      target: service.name,
      async run() {
        if ((await ops.serviceRunning(service)) === true) return 'already running';
        await ops.startService(service);
        return undefined;
      },
    });
  }
  return steps;
}

// The demotion ladder: stop the services in reverse order, then per resource (reverse order) unmount (killing
// the processes that hold the mount, then forcing) or export the pool, and make the engine secondary.
// A service that will not stop is recorded and the ladder goes on: the unmount deals with what it holds.
export function demotionSteps(config: SupervisorConfig, ops: NodeOps, clock: SecondaryClock): Step[] {
  const steps: Step[] = [];
  for (const service of [...config.services].reverse()) {
    steps.push({
      name: 'service stop',
      target: service.name,
      tolerateFailure: true,
      async run() {
        // A status that cannot be read is no reason to skip the stop script and leave the service to the unmount's
        // holder kill.
        const running = await ops.serviceRunning(service).catch(() => undefined);
        if (running === false) return 'not running';
        await ops.stopService(service);
        return running === undefined ? 'stopped; its status could not be read' : undefined;
      },
    });
  }
  for (const resource of [...config.resources].reverse()) {
    const { name } = resource;
    const mountpoint = mountpointOf(resource);
    if (resource.fstype === 'zfs') {
      const pool = resource.pool ?? name;
      steps.push({
        name: 'pool export',
        target: name,
        async run() {
          if (!(await ops.poolImported(pool))) return `pool ${pool} not imported`;
          await ops.exportPool(resource);
          return `pool ${pool}`;
        },
      });
    } else if (mountpoint !== undefined) {
      steps.push({
        name: 'unmount',
        target: name,
        async run() {
          if (findMount(await ops.mounts(), mountpoint) === undefined) return 'not mounted';
          const { escalation, killed } = await ops.unmount(mountpoint);
          return killed.length > 0 ? `${escalation}, stopped pids ${killed.join(' ')}` : escalation;
        },
      });
    }
    steps.push({
      name: 'role secondary',
      target: name,
      async run() {
        // Taking the device away would cut a repair short; the demotion fails and is tried again later.
        const fsck = ops.fsckStillRunning(devicePath(name));
        if (fsck !== undefined) throw new Error(`${fsck} is still checking ${devicePath(name)}; the role stays until it ends`);
        await ops.setRole(name, 'secondary');
        clock.madeSecondary(name);
        return undefined;
      },
    });
  }
  return steps;
}
