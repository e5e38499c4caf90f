import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { HastResource, ReplicationMode } from '../config/hast-conf.js';
import { Activemap, MAXPHYS } from './activemap.js';
import { ActivemapStore } from './activemap-store.js';
import type { BlockDevice } from './block-device.js';
import type { SecondaryAnswer, SyncSource } from './handshake.js';
import { METADATA_SIZE, MetadataError } from './metadata.js';
import { PeerHeldExtents } from './peer-held-extents.js';
import { PrimaryIo } from './primary-io.js';
import { Synchronizer } from './primary-sync.js';
import { RangeLock } from './range-lock.js';
import { ABSENT_PEER, RemoteLink } from './remote-link.js';
import { ReplicationCounters } from './replication-counters.js';
import { ResourceComponent, type OpenComponent } from './resource-component.js';
import type { SplitBrainChanges, WorkerEvent, WorkerStatus } from './worker-status.js';

// What a worker needs from the daemon: a logger bound to its resource and role, and where its hook events go.
export interface WorkerContext {
  log: Logger;
  onEvent(event: WorkerEvent): void;
  // A handshake found split-brain; the daemon shows it in status and runs the `split-brain` hook.
  onSplitBrain(changes: SplitBrainChanges): void;
}

// Optional settings of a primary worker; the defaults are hastd's.
export interface PrimaryOptions {
  // How the local component is opened (default: LocalComponent.open).
  openComponent?: OpenComponent;
  // Idle time before a keepalive is sent (HAST_KEEPALIVE, 10 s).
  keepaliveMs?: number;
  // Pause between attempts to reach the secondary.
  reconnectMs?: number;
  // Time between a running sync's progress lines.
  syncProgressMs?: number;
  // Bytes per second the sync may copy (default: no cap).
  syncRate?: number;
}

// One resource in the primary role: the local component, its activemap and counters, the link to the
// secondary, the synchronisation, and the block device the NBD export serves. A write's path from
// device.write() to both disks is in primary-io.ts.
export class PrimaryWorker {
  // The resource's data, replicated per `replication` (/dev/hast/<name>).
  readonly device: BlockDevice;
  private readonly resource: HastResource;
  private readonly log: Logger;
  private readonly component: ResourceComponent;
  private readonly map: Activemap;
  private readonly store: ActivemapStore;
  private readonly counters: ReplicationCounters;
  private readonly peerHeld: PeerHeldExtents;
  private readonly io: PrimaryIo;
  private readonly link: RemoteLink | undefined;
  private readonly sync: Synchronizer;
  // Set by the handshake: the secondary holds the newer data until the sync completes.
  private syncSource: SyncSource | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(
    resource: HastResource,
    ctx: WorkerContext,
    component: ResourceComponent,
    map: Activemap,
    counters: ReplicationCounters,
    options: PrimaryOptions,
  ) {
    this.resource = resource;
    this.log = ctx.log;
    this.component = component;
    this.map = map;
    this.counters = counters;
    this.peerHeld = new PeerHeldExtents(component, map, ctx.log);
    this.store = new ActivemapStore(map, component.store, {
      mapOffset: METADATA_SIZE,
      metaflush: resource.metaflush,
      onTidyError: (error) => ctx.log.warn(`Unable to clear clean extents from the activemap: ${describeError(error)}`),
    });
    const locks = new RangeLock();
    this.link =
      resource.remote === 'none'
        ? undefined
        : new RemoteLink({
            resource,
            geometry: { datasize: component.metadata.datasize, extentsize: map.extentsize },
            log: ctx.log,
            onEvent: ctx.onEvent,
            handlers: {
              hello: async () => ({ ...(await this.counters.hello()), dirty: this.map.dirtyBytes() }),
              accept: (answer) => this.acceptSecondary(answer),
              connected: () => this.sync.start(),
              splitBrain: (peer) => ctx.onSplitBrain({ local: this.map.dirtyBytes(), peer }),
            },
            keepaliveMs: options.keepaliveMs,
            reconnectMs: options.reconnectMs,
          });
    const peer = this.link ?? ABSENT_PEER;
    this.io = new PrimaryIo({
      component: component.store,
      localoff: component.localoff,
      size: component.datasize,
      maxRequest: MAXPHYS,
      store: this.store,
      locks,
      counters,
      peer,
      replication: () => this.replication,
      readsFromPeer: () => this.syncSource === 'secondary',
      peerHeld: this.peerHeld,
      peerCurrent: (offset, length) => this.peerCurrent(offset, length),
      requestSync: () => this.sync.requestPass(),
      log: ctx.log,
    });
    this.device = this.io;
    this.sync = new Synchronizer({
      store: this.store,
      component: component.store,
      localoff: component.localoff,
      locks,
      peer,
      counters,
      source: () => this.syncSource,
      peerHeld: this.peerHeld,
      completed: () => (this.syncSource = undefined),
      applicationBusy: () => this.io.busy,
      progressIntervalMs: options.syncProgressMs,
      rateBytesPerSecond: options.syncRate,
      log: ctx.log,
      onEvent: ctx.onEvent,
    });
  }

  // Opens and locks the local component, loads its metadata and activemap (every extent marked on disk needs a
  // sync), records the primary role in the metadata, and starts connecting to the secondary. Resolves as soon
  // as local I/O works, without waiting for the peer. Fails with ComponentError or MetadataError.
  static async start(resource: HastResource, ctx: WorkerContext, options: PrimaryOptions = {}): Promise<PrimaryWorker> {
    const component = await ResourceComponent.open(resource, options.openComponent);
    try {
      const map = activemapFor(component);
      map.loadOndisk(await component.readActivemap(map.ondiskSize));
      // A previous run's peer-held extents must come back from the peer, even if their map marks were lost.
      for (const extent of component.metadata.peerExtents ?? []) {
        if (extent * map.extentsize < map.datasize) map.needSync(extent * map.extentsize, Math.min(map.extentsize, map.datasize - extent * map.extentsize));
      }
      const counters = new ReplicationCounters(component, ctx.log);
      await counters.start();
      const worker = new PrimaryWorker(resource, ctx, component, map, counters, options);
      worker.link?.start();
      return worker;
    } catch (error) {
      await component.close();
      throw error;
    }
  }

  // The mode requests use now (memsync falls back to fullsync with a version 1 peer).
  get replication(): ReplicationMode {
    return this.link?.replication ?? this.resource.replication;
  }

  // What hastctl status and list show for this resource: degraded also while the local disk has failed
  // writes that only the peer holds.
  status(): WorkerStatus {
    return {
      status: this.link?.connected && this.peerHeld.size === 0 ? 'complete' : 'degraded',
      replication: this.replication,
      dirty: this.map.dirtyBytes(),
      extentsize: this.map.extentsize,
      keepdirty: this.map.keepdirty,
      statistics: { ...this.io.statistics, activemapUpdates: BigInt(this.store.mapWrites) },
      queues: this.io.queues(),
    };
  }

  // Refuses new requests (ESHUTDOWN), lets every admitted one finish on both nodes (or fail over to the
  // activemap when the secondary is lost), then closes the connections and the component.
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.io.close();
    await this.sync.stop();
    await this.io.drained();
    await this.link?.close();
    try {
      await this.store.flush();
    } catch (error) {
      this.log.error(`Unable to write the activemap at shutdown: ${describeError(error)}`);
    }
    await this.component.close();
  }

  // Whether the secondary's copy of the range is current: no sync owed to it there, except for extents it
  // holds because this node failed to write them.
  private peerCurrent(offset: number, length: number): boolean {
    const { first, last } = this.map.extentRange(offset, length);
    for (let extent = first; extent <= last; extent++) {
      if (this.peerHeld.has(extent)) continue;
      if (this.map.waitsForSync(extent) || this.sync.copyingToPeer(extent)) return false;
    }
    return true;
  }

  // The secondary accepted the handshake: learn its counters and merge its dirty extents into ours, on disk
  // before the first request tells it to clear its own map.
  private async acceptSecondary(answer: SecondaryAnswer): Promise<void> {
    await this.counters.learn(answer);
    this.syncSource = answer.syncsrc;
    if (answer.map !== undefined) {
      this.map.mergeBitmap(answer.map);
      await this.store.flush();
    }
  }
}

// The activemap the metadata describes; a geometry hastd would assert on, or a map overlapping the data, is
// invalid metadata.
function activemapFor(component: ResourceComponent): Activemap {
  const { extentsize, keepdirty } = component.metadata;
  let map: Activemap;
  try {
    map = new Activemap({ datasize: component.datasize, extentsize, keepdirty, sectorsize: component.store.sectorsize });
  } catch (error) {
    throw new MetadataError(`Metadata read from ${component.path} is invalid: ${describeError(error)}.`, { cause: error });
  }
  if (METADATA_SIZE + map.ondiskSize > component.localoff) {
    throw new MetadataError(
      `Metadata read from ${component.path} is invalid: the ${map.ondiskSize}-byte activemap overlaps the data at offset ${component.localoff}.`,
    );
  }
  return map;
}
