// The request pipeline of a primary resource: what happens between device.write() and both disks.
//
//   write(offset, data)
//     1. validate, count, capture the replication mode
//     2. take a request slot (at most HAST_HIO_MAX requests in flight, acknowledged or not)
//     3. lock the range, so overlapping writes reach both disks in arrival order
//     4. activemap: the extents are marked on disk before any data is written (ActivemapStore.beforeWrite)
//     5. send the WRITE to the secondary and start the local pwrite, in parallel
//     6. acknowledge as the mode says:  fullsync: local done and the secondary's final reply
//                                       memsync:  local done and the secondary's `received` reply
//                                       async:    local done
//        A write the secondary missed (disconnected, send failure, error reply) is acknowledged only once its
//        extents are marked for sync on disk, and a sync pass is asked for if the peer is connected.
//        A failed local write (or activemap update) is acknowledged only once the secondary has written it
//        (its final reply, whatever the mode) and only if the secondary's copy of those extents was current;
//        the extents then become peer-held (PeerHeldExtents): read from the peer and copied back by the sync.
//        Otherwise it is an error.
//     7. in the background, once both parts are over: afterWrite (the extent may become clean, its mark is
//        dropped from the disk by a later tidy write), free the slot
//
// Reads are served locally; a failed local read is retried on the secondary. While this node is out of date
// (the sync source is the secondary) every read goes to the secondary, and so do reads of peer-held extents.

import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ReplicationMode } from '../config/hast-conf.js';
import type { ActivemapStore } from './activemap-store.js';
import { BlockIoError, type BlockDevice } from './block-device.js';
import { byteLength, type Bytes } from './bytes.js';
import { isNotSupported, type BlockStore } from './local-component.js';
import type { PeerHeldExtents } from './peer-held-extents.js';
import type { RangeLock } from './range-lock.js';
import type { Peer, RemoteCall, RemoteReply } from './remote-link.js';
import type { ReplicationCounters } from './replication-counters.js';
import { RequestSlots } from './request-slots.js';
import { ERRNO, HIO, blockErrorCode, errnoText, requestName } from './wire.js';
import { emptyStatistics, type WorkerQueues, type WorkerStatistics } from './worker-status.js';

// Everything the pipeline works with; the primary worker owns these and hands them over.
export interface PrimaryIoOptions {
  component: BlockStore;
  // Component offset of the data area.
  localoff: number;
  // Bytes of data (the device size).
  size: number;
  maxRequest: number;
  store: ActivemapStore;
  locks: RangeLock;
  counters: ReplicationCounters;
  peer: Peer;
  // The mode in force when a request arrives.
  replication(): ReplicationMode;
  // True while this node is out of date and the secondary is the sync source.
  readsFromPeer(): boolean;
  // Extents the local disk failed to write while the secondary took them.
  peerHeld: PeerHeldExtents;
  // True when the secondary's copy of every extent of the range is current (no sync owed to it).
  peerCurrent(offset: number, length: number): boolean;
  // Asks the synchronizer for a pass: extents were marked while the peer is connected.
  requestSync(): void;
  log: Logger;
}

// A write or a delete: the requests that change data on both nodes.
interface Change {
  cmd: typeof HIO.WRITE | typeof HIO.DELETE;
  offset: number;
  length: number;
  data?: Bytes;
}

// The primary's BlockDevice (/dev/hast/<name>): validates requests, replicates them per the replication
// mode, and keeps the counters hastctl list shows.
export class PrimaryIo implements BlockDevice {
  readonly size: number;
  readonly blockSize: number;
  readonly maxRequest: number;
  readonly statistics: WorkerStatistics = emptyStatistics();
  private readonly component: BlockStore;
  private readonly localoff: number;
  private readonly store: ActivemapStore;
  private readonly locks: RangeLock;
  private readonly counters: ReplicationCounters;
  private readonly peer: Peer;
  private readonly replication: () => ReplicationMode;
  private readonly readsFromPeer: () => boolean;
  private readonly peerHeld: PeerHeldExtents;
  private readonly peerCurrent: (offset: number, length: number) => boolean;
  private readonly requestSync: () => void;
  private readonly log: Logger;
  private readonly slots = new RequestSlots();
  private localInFlight = 0;
  private flushUnsupported = false;
  private closed = false;

  constructor(options: PrimaryIoOptions) {
    this.component = options.component;
    this.localoff = options.localoff;
    this.size = options.size;
    this.blockSize = options.component.sectorsize;
    this.maxRequest = options.maxRequest;
    this.store = options.store;
    this.locks = options.locks;
    this.counters = options.counters;
    this.peer = options.peer;
    this.replication = options.replication;
    this.readsFromPeer = options.readsFromPeer;
    this.peerHeld = options.peerHeld;
    this.peerCurrent = options.peerCurrent;
    this.requestSync = options.requestSync;
    this.log = options.log;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const what = requestName(HIO.READ, offset, length);
    this.checkRange(what, offset, length, this.maxRequest);
    this.statistics.reads++;
    const release = await this.admit(what);
    try {
      if (this.readsFromPeer() || this.peerHeld.overlaps(offset, length)) return await this.readRemote(what, offset, length);
      const buffer = Buffer.allocUnsafe(length);
      const localError = await this.runLocal(() => this.component.read(buffer, this.localoff + offset));
      if (localError === undefined) return buffer;
      this.statistics.readErrors++;
      if (!this.peer.connected) {
        this.log.warn(`Local request failed (${describeError(localError)}): ${what}.`);
        throw new BlockIoError('EIO', `${what} failed on the local component and the peer is not connected`, { cause: localError });
      }
      this.log.warn(`Local request failed (${describeError(localError)}), trying remote node. ${what}.`);
      return await this.readRemote(what, offset, length);
    } finally {
      release();
    }
  }

  async write(offset: number, data: Bytes, options: { fua?: boolean } = {}): Promise<void> {
    const length = byteLength(data);
    const what = requestName(HIO.WRITE, offset, length);
    this.checkRange(what, offset, length, this.maxRequest);
    this.statistics.writes++;
    const mode = this.replication();
    await this.counters.noteWrite();
    await this.replicate(what, { cmd: HIO.WRITE, offset, length, data }, mode);
    if (options.fua) await this.flushAs(mode);
  }

  // A delete changes data like a write, so it goes through the activemap too (hastd lets a missed DELETE go
  // unrecorded). It has no early acknowledgement, so memsync waits for the secondary as fullsync does.
  async trim(offset: number, length: number): Promise<void> {
    const what = requestName(HIO.DELETE, offset, length);
    this.checkRange(what, offset, length, undefined);
    this.statistics.deletes++;
    await this.replicate(what, { cmd: HIO.DELETE, offset, length }, this.replication() === 'async' ? 'async' : 'fullsync');
  }

  async flush(): Promise<void> {
    await this.flushAs(this.replication());
  }

  // Refuses new requests (ESHUTDOWN), including those still waiting for a slot; admitted ones carry on.
  close(): void {
    this.closed = true;
    this.slots.close(new BlockIoError('ESHUTDOWN', 'The resource is shutting down.'));
  }

  // True while any application request is admitted and not yet finished on both nodes.
  get busy(): boolean {
    return this.slots.inUse > 0;
  }

  // Resolves once every admitted request has finished on both nodes.
  drained(): Promise<void> {
    return this.slots.idle();
  }

  // Requests in each stage, for hastctl list (approximate: stages overlap).
  queues(): WorkerQueues {
    return {
      local: this.localInFlight,
      send: this.slots.waiting,
      recv: this.peer.connected ? this.slots.inUse - this.localInFlight : 0,
      done: 0,
      idle: this.slots.size - this.slots.inUse,
    };
  }

  // Steps 2-7 of the write path, for writes and deletes; resolves when `mode` allows the acknowledgement.
  private async replicate(what: string, change: Change, mode: ReplicationMode): Promise<void> {
    const release = await this.admit(what);
    const { offset, length } = change;
    const unlock = await this.locks.lock(offset, length);
    // Judged before this write marks anything: whether the peer's copy could stand in for a failed local one.
    const peerCurrent = this.peer.connected && this.peerCurrent(offset, length);
    const mapError = await this.markBeforeWrite(what, change);
    if (mapError !== undefined && !peerCurrent) {
      unlock();
      release();
      throw new BlockIoError('EIO', `${what}: unable to update the activemap`, { cause: mapError });
    }
    // The secondary applies requests in the order they arrive, so once sent the remote order is settled; the
    // range stays locked until the local part is done too. Without its activemap mark the local disk is left
    // alone: the peer takes the write, and the extent becomes peer-held.
    const remote = this.peer.send({ ...change, memsync: mode === 'memsync' && change.cmd === HIO.WRITE });
    const local = mapError === undefined ? this.changeLocally(what, change) : Promise.resolve(mapError);
    void local.then(unlock);
    const remoteAccounted = remote.done.then((reply) => this.accountRemote(change, reply));
    void this.finish(change, local, remoteAccounted, mapError === undefined).finally(release);

    const localError = await local;
    if (localError !== undefined) {
      await this.answerFromPeer(what, change, localError, peerCurrent, remoteAccounted);
      return;
    }
    try {
      await this.remoteAcknowledgement(mode, remote, remoteAccounted);
    } catch (error) {
      throw new BlockIoError('EIO', `${what}: the peer missed it and its extents could not be marked for sync`, { cause: error });
    }
  }

  // What the mode waits for on the secondary's side; a part the secondary missed must be recorded first.
  private async remoteAcknowledgement(mode: ReplicationMode, remote: RemoteCall, remoteAccounted: Promise<RemoteReply>): Promise<void> {
    switch (mode) {
      case 'fullsync':
        await remoteAccounted;
        return;
      case 'memsync':
        if ((await remote.received).error !== 0) await remoteAccounted;
        return;
      case 'async':
        if ((remote.outcome()?.error ?? 0) !== 0) await remoteAccounted;
        return;
    }
  }

  // Step 4: the activemap marks the extents on disk; resolves with the error if it could not.
  private async markBeforeWrite(what: string, change: Change): Promise<Error | undefined> {
    try {
      await this.store.beforeWrite(change.offset, change.length);
      return undefined;
    } catch (error) {
      // hastd counts activemap write errors as write errors.
      if (change.cmd === HIO.WRITE) this.statistics.writeErrors++;
      else this.statistics.deleteErrors++;
      this.log.warn(`Unable to update the activemap before ${what}: ${describeError(error)}`);
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  // The local part failed: the write stands if the secondary wrote it and its copy was current, so that a
  // dying local disk does not take the device down (research §8). Otherwise the application gets EIO.
  private async answerFromPeer(
    what: string,
    change: Change,
    localError: Error,
    peerCurrent: boolean,
    remoteAccounted: Promise<RemoteReply>,
  ): Promise<void> {
    const failed = new BlockIoError('EIO', `${what} failed on the local component`, { cause: localError });
    const reply = await remoteAccounted.catch(() => undefined);
    if (!peerCurrent || reply?.error !== 0) throw failed;
    const firstFailure = this.peerHeld.size === 0;
    if (!(await this.peerHeld.add(change.offset, change.length))) throw failed;
    if (firstFailure) {
      this.log.error('The local component is failing: the extents it could not write are served by the peer until the sync rewrites them.');
    }
    this.requestSync();
  }

  // A write the secondary did not apply must be copied at the next sync, whatever the reason: not connected,
  // lost connection, or an error reply (hastd ignores the last one, defect #9).
  private async accountRemote(change: Change, reply: RemoteReply): Promise<RemoteReply> {
    if (reply.error === 0) return reply;
    await this.store.markNeedSync(change.offset, change.length);
    await this.counters.peerMissedWrite();
    if (this.peer.connected) this.requestSync();
    return reply;
  }

  // Both parts are over: record a divergence the local side caused, then let the extent become clean (unless
  // the activemap could not mark it in the first place).
  private async finish(change: Change, local: Promise<Error | undefined>, remoteAccounted: Promise<RemoteReply>, marked: boolean): Promise<void> {
    const [localError, remote] = await Promise.all([local, remoteAccounted.catch(() => undefined)]);
    const what = requestName(change.cmd, change.offset, change.length);
    try {
      // The secondary has data this node failed to write: the extents differ until synchronised.
      if (localError !== undefined && remote?.error === 0) await this.store.markNeedSync(change.offset, change.length);
    } catch (error) {
      this.log.error(`Unable to mark ${what} for synchronization: ${describeError(error)}`);
    }
    if (marked) this.store.afterWrite(change.offset, change.length);
  }

  // The local part of a change; resolves with its error instead of rejecting.
  private async changeLocally(what: string, change: Change): Promise<Error | undefined> {
    const at = this.localoff + change.offset;
    const { data } = change;
    const error = await this.runLocal(() => (data !== undefined ? this.component.write(data, at) : this.component.delete(at, change.length)));
    if (error !== undefined) {
      if (change.cmd === HIO.WRITE) this.statistics.writeErrors++;
      else this.statistics.deleteErrors++;
      this.log.warn(`Local request failed (${describeError(error)}): ${what}.`);
    }
    return error;
  }

  // Runs one operation on the local component, counted as in flight; resolves with its error, if any.
  private async runLocal(operation: () => Promise<void>): Promise<Error | undefined> {
    this.localInFlight++;
    try {
      await operation();
      return undefined;
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    } finally {
      this.localInFlight--;
    }
  }

  // FLUSH on both nodes: fullsync and memsync wait for the secondary, async for the local disk only.
  private async flushAs(mode: ReplicationMode): Promise<void> {
    this.statistics.flushes++;
    const release = await this.admit('FLUSH');
    const remote = this.peer.send({ cmd: HIO.FLUSH, offset: 0, length: 0 });
    const local = this.flushLocal();
    void Promise.all([local, remote.done]).finally(release);
    const localError = await local;
    if (localError !== undefined) throw new BlockIoError('EIO', 'FLUSH failed on the local component', { cause: localError });
    if (mode !== 'async') await remote.done;
  }

  // A component without a write cache to flush (EOPNOTSUPP) has nothing to flush: hastd stops asking it.
  private async flushLocal(): Promise<Error | undefined> {
    if (this.flushUnsupported) return undefined;
    const error = await this.runLocal(() => this.component.flush());
    if (error !== undefined && isNotSupported(error)) {
      this.flushUnsupported = true;
      return undefined;
    }
    if (error !== undefined) {
      this.statistics.flushErrors++;
      this.log.warn(`Local request failed (${describeError(error)}): FLUSH.`);
    }
    return error;
  }

  private async readRemote(what: string, offset: number, length: number): Promise<Buffer> {
    const reply = await this.peer.send({ cmd: HIO.READ, offset, length }).done;
    if (reply.error !== 0 || reply.data === undefined) {
      throw new BlockIoError(blockErrorCode(reply.error), `${what} failed on the peer: ${errnoText(reply.error || ERRNO.EIO)}`);
    }
    return reply.data;
  }

  private async admit(what: string): Promise<() => void> {
    if (this.closed) throw new BlockIoError('ESHUTDOWN', `${what}: the resource is shutting down.`);
    return this.slots.acquire();
  }

  private checkRange(what: string, offset: number, length: number, limit: number | undefined): void {
    const invalid = (problem: string): BlockIoError => new BlockIoError('EINVAL', `${what}: ${problem}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) {
      throw invalid('offset must be a non-negative integer and length a positive one');
    }
    if (offset % this.blockSize !== 0 || length % this.blockSize !== 0) {
      throw invalid(`offset and length must be multiples of the ${this.blockSize}-byte block size`);
    }
    if (offset + length > this.size) throw invalid(`the request ends past the ${this.size}-byte device`);
    if (limit !== undefined && length > limit) throw invalid(`the request is longer than ${limit} bytes`);
  }
}
