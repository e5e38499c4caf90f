import type { HastResource } from '../config/hast-conf.js';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ResourceReply } from './control-protocol.js';
import { DeviceExport, type ExportPolicy } from './device-export.js';
import type { HookRunner } from './hooks.js';
import type { HastRole } from './metadata.js';
import type { SecondaryTarget } from './peer-listener.js';
import { PrimaryWorker, type WorkerContext } from './primary.js';
import type { SecondaryWorker } from './secondary.js';
import { emptyStatistics, type SplitBrainChanges, type WorkerEvent, type WorkerStatus } from './worker-status.js';
import { humanizeBytes } from '../common/humanize.js';

// What a resource needs from the daemon around it.
export interface ResourceServices {
  log: Logger;
  hooks: HookRunner;
  exportPolicy: ExportPolicy;
  // Bytes per second a primary's resynchronisation may copy (default: no cap).
  syncRate?: number;
}

// One hast.conf resource inside the engine: its role and the worker serving that role. hastd forks a worker
// process per role; here a worker is an object in the one engine process, with the same lifecycle: a primary
// worker runs while the role is primary, a secondary worker only while a primary is connected.
export class ManagedResource implements SecondaryTarget {
  resource: HastResource;
  role: HastRole = 'init';
  private readonly services: ResourceServices;
  private primary: PrimaryWorker | undefined;
  private deviceExport: DeviceExport | undefined;
  private secondary: SecondaryWorker | undefined;
  // Set when a handshake found split-brain; cleared by a successful handshake or a role change.
  private splitBrain: SplitBrainChanges | undefined;
  private log: Logger;

  constructor(resource: HastResource, services: ResourceServices) {
    this.resource = resource;
    this.services = services;
    this.log = services.log.child({ resource: resource.name, role: this.role });
  }

  // The primary's device, while this node is primary and the worker is up.
  get primaryWorker(): PrimaryWorker | undefined {
    return this.primary;
  }

  // The NBD socket and /dev/hast/<name> of the primary, while they exist.
  get export(): DeviceExport | undefined {
    return this.deviceExport;
  }

  // Changes the role as `hastctl role` asks; resolves to the previous role. Becoming primary starts the
  // primary worker; if it cannot start, the role falls back to init, as hastd does when a worker exits for good.
  async setRole(role: HastRole): Promise<HastRole> {
    const previous = this.role;
    if (role === previous) return previous;
    this.setRoleField(role);
    this.splitBrain = undefined;
    this.log.info(`Role changed to ${role}.`);
    await this.stopWorkers();
    if (role === 'primary') await this.startPrimary();
    this.services.hooks.run(this.resource.exec, ['role', this.resource.name, previous, role]);
    return previous;
  }

  // Applies a changed configuration: a role other than init restarts its worker (hastd restarts a worker whose
  // local or provider name changed and pushes other changes into it; restarting is the simple, safe superset).
  async reconfigure(resource: HastResource): Promise<void> {
    const role = this.role;
    this.resource = resource;
    if (role === 'init') return;
    this.log.info('Configuration changed; restarting the worker.');
    await this.stopWorkers();
    if (role === 'primary') await this.startPrimary();
  }

  // Stops whatever runs and leaves the resource in init (shutdown and removal from the configuration).
  async shutdown(): Promise<void> {
    await this.setRole('init');
  }

  // SecondaryTarget: a new primary connection replaces the session of the old one.
  async stopSecondary(): Promise<void> {
    const worker = this.secondary;
    this.secondary = undefined;
    if (worker !== undefined) await worker.stop();
  }

  // SecondaryTarget: the listener hands over a worker whose handshake succeeded.
  adoptSecondary(worker: SecondaryWorker): void {
    this.secondary = worker;
    void worker.done.then(() => {
      if (this.secondary === worker) this.secondary = undefined;
    });
  }

  // What `hastctl status` and `list` show about this resource. Split-brain outlives the secondary's session
  // that found it, so that both nodes show it until the admin acts.
  describe(): ResourceReply {
    const worker = this.primary ?? this.secondary;
    const r = this.resource;
    const running = worker?.status();
    const status: WorkerStatus | undefined =
      this.splitBrain === undefined ? running : { ...(running ?? idleStatus(r)), status: 'split-brain', splitBrain: this.splitBrain };
    return {
      name: r.name,
      role: this.role,
      provname: r.provname,
      localpath: r.local,
      remoteaddr: r.remote,
      ...(r.source === null ? {} : { sourceaddr: r.source }),
      replication: r.replication,
      checksum: r.checksum,
      compression: r.compression,
      workerpid: worker === undefined ? 0 : process.pid,
      ...(status === undefined ? {} : { worker: status }),
    };
  }

  // SecondaryTarget: the logger and hook sink a secondary worker of this resource reports to.
  workerContext(): WorkerContext {
    return { log: this.log, onEvent: (event) => this.onWorkerEvent(event), onSplitBrain: (changes) => this.onSplitBrain(changes) };
  }

  private async startPrimary(): Promise<void> {
    try {
      this.primary = await PrimaryWorker.start(this.resource, this.workerContext(), { syncRate: this.services.syncRate });
    } catch (error) {
      this.log.error(`Unable to start the primary worker: ${describeError(error)}`);
      this.log.warn('Changing resource role back to init.');
      this.setRoleField('init');
      return;
    }
    try {
      this.deviceExport = await DeviceExport.start(this.resource.provname, this.primary.device, this.services.exportPolicy, this.log);
    } catch (error) {
      this.log.error(`Unable to export the device: ${describeError(error)}`);
      this.log.warn('Changing resource role back to init.');
      await this.stopWorkers();
      this.setRoleField('init');
    }
  }

  private onWorkerEvent(event: WorkerEvent): void {
    if (event === 'connect') this.splitBrain = undefined;
    this.services.hooks.run(this.resource.exec, [event, this.resource.name]);
  }

  // The primary retries the peer every few seconds; the hook and the summary run once per split-brain.
  private onSplitBrain(changes: SplitBrainChanges): void {
    const first = this.splitBrain === undefined;
    this.splitBrain = changes;
    if (!first) return;
    const peer = changes.peer === undefined ? 'an unknown amount' : humanizeBytes(changes.peer);
    this.log.error(
      `Split-brain: both nodes wrote while apart (this node changed ${humanizeBytes(changes.local)}, the peer ${peer}). ` +
        `Keep one node's data: on the other, run hastctl role init, hastctl create and hastctl role secondary.`,
    );
    this.onWorkerEvent('split-brain');
  }

  private async stopWorkers(): Promise<void> {
    const deviceExport = this.deviceExport;
    this.deviceExport = undefined;
    await deviceExport?.close();
    const primary = this.primary;
    this.primary = undefined;
    if (primary !== undefined) await primary.stop();
    await this.stopSecondary();
  }

  private setRoleField(role: HastRole): void {
    this.role = role;
    this.log = this.services.log.child({ resource: this.resource.name, role });
  }
}

// The status of a resource with no worker running: a secondary that refused its primary.
function idleStatus(resource: HastResource): WorkerStatus {
  return {
    status: 'degraded',
    replication: resource.replication,
    dirty: 0,
    extentsize: 0,
    keepdirty: 0,
    statistics: emptyStatistics(),
    queues: { local: 0, send: 0, recv: 0, done: 0, idle: 0 },
  };
}
