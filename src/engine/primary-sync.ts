import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../common/errors.js';
import { humanizeBytes } from '../common/humanize.js';
import type { Logger } from '../common/log.js';
import type { ActivemapStore } from './activemap-store.js';
import type { SyncSource } from './handshake.js';
import type { BlockStore } from './local-component.js';
import type { PeerHeldExtents } from './peer-held-extents.js';
import type { RangeLock } from './range-lock.js';
import type { Peer } from './remote-link.js';
import type { ReplicationCounters } from './replication-counters.js';
import { HIO, errnoText } from './wire.js';
import type { WorkerEvent } from './worker-status.js';

// Everything a Synchronizer works with; the primary worker owns these.
export interface SynchronizerOptions {
  store: ActivemapStore;
  component: BlockStore;
  // Component offset of the data area.
  localoff: number;
  locks: RangeLock;
  peer: Peer;
  counters: ReplicationCounters;
  // Which node holds the good copy, as the secondary decided at the handshake.
  source(): SyncSource | undefined;
  // Extents the local disk failed to write: copied from the peer whatever source() says.
  peerHeld: PeerHeldExtents;
  // The nodes hold the same data again: the sync source no longer matters.
  completed(): void;
  // True while application requests are in flight; the sync then steps back.
  applicationBusy(): boolean;
  log: Logger;
  onEvent(event: WorkerEvent): void;
  // Milliseconds between progress lines (default PROGRESS_INTERVAL_MS).
  progressIntervalMs?: number;
  // Bytes per second the sync may copy (default: no cap), for links the application needs more than the sync.
  rateBytesPerSecond?: number;
}

// Chunks in flight while the device is idle (hastd copies one at a time), and while the application is busy.
export const SYNC_WINDOW = 8;
export const SYNC_WINDOW_BUSY = 2;

// How often a running sync logs its progress, unless told otherwise.
export const PROGRESS_INTERVAL_MS = 10_000;

// Copies the extents the activemap marks for synchronisation from the sync source to the other node in
// MAXPHYS chunks, after every connect (primary.c sync_thread), with several chunks in flight. Each chunk holds
// a range lock so that no application write lands between its read and its write. An extent becomes clean
// when all its chunks were copied; one with a failed chunk stays marked (hastd counts it as synced, defect
// #15).
export class Synchronizer {
  private readonly options: SynchronizerOptions;
  // Each start() gets a new generation; a run whose generation is over (reconnect, stop) ends at its next step.
  private generation = 0;
  private stopped = false;
  private running: Promise<void> | undefined;
  // A pass was asked for while one ran: run another when it ends.
  private again = false;
  // Chunks being copied to the peer, per extent: the peer's copy of those extents is not current yet.
  private readonly toPeer = new Map<number, number>();

  constructor(options: SynchronizerOptions) {
    this.options = options;
  }

  // Starts a pass from the first marked extent (the peer has just connected); a previous pass ends first.
  start(): void {
    if (this.stopped) return;
    const generation = ++this.generation;
    const run = (this.running ?? Promise.resolve()).then(() => this.run(generation));
    this.running = run;
    void run.finally(() => {
      if (this.running === run) this.running = undefined;
    });
  }

  // Runs a pass soon without cutting short one that is running: extents were marked while connected.
  requestPass(): void {
    if (this.stopped) return;
    if (this.running !== undefined) this.again = true;
    else this.start();
  }

  // True when the extent has a chunk on its way to the peer, whose copy of it is therefore not current.
  copyingToPeer(extent: number): boolean {
    return this.toPeer.has(extent);
  }

  // Ends the pass in progress after its current chunk and starts no new one.
  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    await this.running;
  }

  private current(generation: number): boolean {
    return generation === this.generation && this.options.peer.connected;
  }

  private async run(generation: number): Promise<void> {
    try {
      await this.pass(generation);
      while (this.again && generation === this.generation) {
        this.again = false;
        await this.pass(generation);
      }
    } catch (error) {
      this.options.log.error(`Synchronization failed: ${describeError(error)}`);
    }
  }

  private async pass(generation: number): Promise<void> {
    const { store, log, onEvent } = this.options;
    const map = store.map;
    if (!this.current(generation)) return;
    map.syncRewind();
    const progress = new SyncProgress(log, () => map.dirtyBytes(), this.options.progressIntervalMs ?? PROGRESS_INTERVAL_MS);
    const extents = new Map<number, ExtentCopy>();
    const inFlight = new Set<Promise<void>>();
    let announced = false;
    const pace = new SyncPace(this.options.rateBytesPerSecond);
    // Extents with a failed chunk that the cursor has left: marked again at the end of the pass, so that this
    // pass does not come back to them.
    const left: number[] = [];
    // Settles an extent once the cursor has left it and its last chunk is back.
    const settle = async (extent: number, copy: ExtentCopy): Promise<void> => {
      if (!copy.handedOut || copy.outstanding > 0) return;
      extents.delete(extent);
      if (copy.failed) {
        left.push(extent);
        return;
      }
      store.extentSynced(extent);
      if (copy.fromPeer) await this.options.peerHeld.repaired(extent);
    };
    while (this.current(generation)) {
      while (inFlight.size >= this.window()) await Promise.race(inFlight);
      if (!this.current(generation)) break;
      const step = map.syncOffset();
      if (step.finishedExtent !== undefined) {
        const leaving = extents.get(step.finishedExtent) ?? { outstanding: 0, failed: false, handedOut: false, fromPeer: false };
        leaving.handedOut = true;
        await settle(step.finishedExtent, leaving);
      }
      const range = step.range;
      if (range === undefined) break;
      await pace.take(range.length);
      if (!announced) {
        log.info(`Synchronization started. ${humanizeBytes(map.dirtyBytes())} to go.`);
        onEvent('syncstart');
        announced = true;
      }
      const extent = Math.floor(range.offset / map.extentsize);
      const copy = extents.get(extent) ?? { outstanding: 0, failed: false, handedOut: false, fromPeer: false };
      extents.set(extent, copy);
      copy.outstanding++;
      copy.fromPeer ||= this.fromPeer(range.offset, range.length);
      const chunk = (async () => {
        const ok = await this.copy(range.offset, range.length);
        copy.outstanding--;
        if (ok) progress.copied(range.length);
        else copy.failed = true;
        try {
          await settle(extent, copy);
        } catch (error) {
          log.error(`Unable to record the synchronization of extent ${extent}: ${describeError(error)}`);
        }
      })();
      inFlight.add(chunk);
      void chunk.then(() => inFlight.delete(chunk));
    }
    await Promise.all(inFlight);
    progress.stop();
    for (const extent of left) await this.markAgain(extent);
    const synced = progress.total;
    if (!this.current(generation)) {
      // Extents the cursor was still in keep their marks; the next connection starts from the first one.
      if (announced) {
        log.info(`Synchronization interrupted after ${formatDuration(progress.elapsed)}. ${humanizeBytes(synced)} synchronized so far.`);
        onEvent('syncintr');
      }
      return;
    }
    if (left.length > 0) {
      log.error(`Synchronization left ${left.length} extent(s) dirty after errors; they are copied again at the next connection.`);
      return;
    }
    if (!announced) log.info('Nodes are in sync.');
    if (synced > 0) {
      const rate = Math.round(synced / Math.max(progress.elapsed / 1000, 0.001));
      log.info(`Synchronization complete. ${humanizeBytes(synced)} synchronized in ${formatDuration(progress.elapsed)} (${humanizeBytes(rate)}/sec).`);
      onEvent('syncdone');
    }
    await this.options.counters.synchronized();
    this.options.completed();
  }

  // Chunks in flight: several while the device is idle, fewer while the application has requests in flight,
  // so that its I/O keeps a fair share of both disks and the link.
  private window(): number {
    return this.options.applicationBusy() ? SYNC_WINDOW_BUSY : SYNC_WINDOW;
  }

  private fromPeer(offset: number, length: number): boolean {
    return this.options.source() === 'secondary' || this.options.peerHeld.overlaps(offset, length);
  }

  // Copies one chunk from the sync source to the other node; false (after logging why) if it failed.
  private async copy(offset: number, length: number): Promise<boolean> {
    const unlock = await this.options.locks.lock(offset, length);
    const extent = Math.floor(offset / this.options.store.map.extentsize);
    const toPeer = !this.fromPeer(offset, length);
    if (toPeer) this.toPeer.set(extent, (this.toPeer.get(extent) ?? 0) + 1);
    try {
      const problem = toPeer ? await this.copyToPeer(offset, length) : await this.copyFromPeer(offset, length);
      if (problem !== undefined) this.options.log.error(problem);
      return problem === undefined;
    } finally {
      if (toPeer) {
        const count = (this.toPeer.get(extent) ?? 1) - 1;
        if (count === 0) this.toPeer.delete(extent);
        else this.toPeer.set(extent, count);
      }
      unlock();
    }
  }

  // Local data to the secondary; returns what went wrong, if anything.
  private async copyToPeer(offset: number, length: number): Promise<string | undefined> {
    const { component, localoff, peer } = this.options;
    const data = Buffer.allocUnsafe(length);
    try {
      await component.read(data, localoff + offset);
    } catch (error) {
      return `Unable to read synchronization data: ${describeError(error)}.`;
    }
    const reply = await peer.send({ cmd: HIO.WRITE, offset, length, data }).done;
    return reply.error === 0 ? undefined : `Unable to write synchronization data: ${errnoText(reply.error)}.`;
  }

  // The secondary's data to the local component; returns what went wrong, if anything.
  private async copyFromPeer(offset: number, length: number): Promise<string | undefined> {
    const { component, localoff, peer } = this.options;
    const reply = await peer.send({ cmd: HIO.READ, offset, length }).done;
    if (reply.error !== 0 || reply.data === undefined) return `Unable to read synchronization data: ${errnoText(reply.error)}.`;
    try {
      await component.write(reply.data, localoff + offset);
      return undefined;
    } catch (error) {
      return `Unable to write synchronization data: ${describeError(error)}.`;
    }
  }

  // The cursor cleared this extent's sync mark when it left it, but a chunk failed: mark it again, and give
  // back the chunk count its pass would have returned.
  private async markAgain(extent: number): Promise<void> {
    const { store } = this.options;
    const { extentsize, datasize } = store.map;
    const offset = extent * extentsize;
    await store.markNeedSync(offset, Math.min(extentsize, datasize - offset));
    store.extentSynced(extent);
  }
}

// Spaces chunks so that a pass copies at most `rate` bytes per second (no cap when undefined).
class SyncPace {
  private readonly rate: number | undefined;
  private next = Date.now();

  constructor(rate: number | undefined) {
    this.rate = rate;
  }

  // Resolves when `bytes` more may be copied.
  async take(bytes: number): Promise<void> {
    if (this.rate === undefined) return;
    const now = Date.now();
    const start = Math.max(this.next, now);
    this.next = start + (bytes / this.rate) * 1000;
    if (start > now) await sleep(start - now);
  }
}

// The chunks of one extent a pass has handed out, and how they went.
interface ExtentCopy {
  outstanding: number;
  failed: boolean;
  // The cursor has moved past the extent's last chunk.
  handedOut: boolean;
  // Its data came from the peer (this node was out of date, or its disk had failed there).
  fromPeer: boolean;
}

// Bytes copied in one pass, and a log line with the rate every PROGRESS_INTERVAL_MS while it runs.
class SyncProgress {
  total = 0;
  private readonly started = Date.now();
  private readonly timer: NodeJS.Timeout;
  private sinceLast = 0;
  private last = Date.now();

  constructor(log: Logger, toGo: () => number, intervalMs: number) {
    this.timer = setInterval(() => {
      const now = Date.now();
      const rate = Math.round(this.sinceLast / Math.max((now - this.last) / 1000, 0.001));
      log.info(`Synchronization in progress: ${humanizeBytes(toGo())} to go, ${humanizeBytes(rate)}/sec.`);
      this.sinceLast = 0;
      this.last = now;
    }, intervalMs);
    this.timer.unref();
  }

  get elapsed(): number {
    return Date.now() - this.started;
  }

  copied(bytes: number): void {
    this.total += bytes;
    this.sinceLast += bytes;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// A duration as hastd logs it with `%#.0T`: "1h2m3s", zero units left out, "0s" for nothing.
export function formatDuration(ms: number): string {
  const total = Math.floor(ms / 1000);
  let rest = total;
  let text = '';
  for (const [unit, seconds] of [['d', 86_400], ['h', 3_600], ['m', 60]] as const) {
    if (total >= seconds && rest !== 0) {
      text += `${Math.floor(rest / seconds)}${unit}`;
      rest %= seconds;
    }
  }
  if (rest !== 0 || total === 0) text += `${rest}s`;
  return text;
}
