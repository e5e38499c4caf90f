import { describeError } from '../common/errors.js';
import { humanizeBytes } from '../common/humanize.js';
import type { Logger } from '../common/log.js';
import type { ActivemapStore } from './activemap-store.js';
import type { SyncSource } from './handshake.js';
import type { BlockStore } from './local-component.js';
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
  // The nodes hold the same data again: the sync source no longer matters.
  completed(): void;
  log: Logger;
  onEvent(event: WorkerEvent): void;
}

// Copies the extents the activemap marks for synchronisation from the sync source to the other node, one
// MAXPHYS chunk at a time, after every connect (primary.c sync_thread). Each chunk holds a range lock so that
// no application write lands between its read and its write. An extent becomes clean when all its chunks were
// copied; one with a failed chunk stays marked (hastd counts it as synced, defect #15).
export class Synchronizer {
  private readonly options: SynchronizerOptions;
  // Each start() gets a new generation; a run whose generation is over (reconnect, stop) ends at its next step.
  private generation = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

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
    } catch (error) {
      this.options.log.error(`Synchronization failed: ${describeError(error)}`);
    }
  }

  private async pass(generation: number): Promise<void> {
    const { store, log, onEvent } = this.options;
    const map = store.map;
    if (!this.current(generation)) return;
    map.syncRewind();
    const started = Date.now();
    let synced = 0;
    let announced = false;
    // Extents with a failed chunk: those the cursor is in, and those it has left (to be marked again).
    const failing = new Set<number>();
    const left: number[] = [];
    for (;;) {
      if (!this.current(generation)) {
        await this.markAgain(left);
        if (announced) {
          log.info(`Synchronization interrupted after ${formatDuration(Date.now() - started)}. ${humanizeBytes(synced)} synchronized so far.`);
          onEvent('syncintr');
        }
        return;
      }
      const step = map.syncOffset();
      if (step.finishedExtent !== undefined) {
        if (failing.has(step.finishedExtent)) left.push(step.finishedExtent);
        else await store.extentSynced(step.finishedExtent);
      }
      const range = step.range;
      if (range === undefined) break;
      if (!announced) {
        log.info(`Synchronization started. ${humanizeBytes(map.dirtyBytes())} to go.`);
        onEvent('syncstart');
        announced = true;
      }
      if (await this.copy(range.offset, range.length)) synced += range.length;
      else if (this.options.peer.connected) failing.add(Math.floor(range.offset / map.extentsize));
    }
    if (left.length > 0) {
      await this.markAgain(left);
      log.error(`Synchronization left ${left.length} extent(s) dirty after errors; they are copied again at the next connection.`);
      return;
    }
    if (!announced) log.info('Nodes are in sync.');
    if (!this.current(generation)) return;
    if (synced > 0) {
      const elapsed = Date.now() - started;
      const rate = Math.round(synced / Math.max(elapsed / 1000, 0.001));
      log.info(`Synchronization complete. ${humanizeBytes(synced)} synchronized in ${formatDuration(elapsed)} (${humanizeBytes(rate)}/sec).`);
      onEvent('syncdone');
    }
    await this.options.counters.synchronized();
    this.options.completed();
  }

  // Copies one chunk from the sync source to the other node; false (after logging why) if it failed.
  private async copy(offset: number, length: number): Promise<boolean> {
    const unlock = await this.options.locks.lock(offset, length);
    try {
      const problem = this.options.source() === 'secondary' ? await this.copyFromPeer(offset, length) : await this.copyToPeer(offset, length);
      if (problem !== undefined) this.options.log.error(problem);
      return problem === undefined;
    } finally {
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

  // The cursor cleared these extents' sync marks when it left them, but a chunk of each failed: mark them
  // again, and give back the chunk count their pass would have returned.
  private async markAgain(extents: number[]): Promise<void> {
    const { store } = this.options;
    const { extentsize, datasize } = store.map;
    for (const extent of extents) {
      const offset = extent * extentsize;
      await store.markNeedSync(offset, Math.min(extentsize, datasize - offset));
      await store.extentSynced(extent);
    }
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
