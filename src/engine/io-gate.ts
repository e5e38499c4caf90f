import { availableParallelism } from 'node:os';
import { bufferList, byteLength, type Bytes } from './bytes.js';
import type { BlockStore } from './local-component.js';

// Every fs call runs on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise, shared with
// dns and zlib). With more pool threads busy than there are cores, the threads preempt each other while
// holding the pool's lock: on 2 vCPUs, 128 KiB writes kept 64 deep went twice as fast with 2 threads busy as
// with 4, at a third less CPU per byte. So large component I/O keeps at most this many operations in the pool.
export const COMPONENT_IO_CONCURRENCY = Math.max(1, Math.min(4, availableParallelism()));

// Small operations (4 KiB random writes, which cannot be merged) cost little CPU each and are mostly the round
// trip to a pool thread and back, so they may use every thread of libuv's default pool: on 2 vCPUs, 4 KiB
// random writes 32 deep through NBD went from 24k to 31k IOPS with 4 threads instead of 2.
export const SMALL_IO_CONCURRENCY = 4;

// Operations below this size are small.
export const SMALL_IO_BYTES = 64 * 1024;

// A counting gate for operations that occupy a thread-pool thread: at most `limit` at once, of which at most
// `largeLimit` large ones, started in arrival order.
export class IoGate {
  private readonly limit: number;
  private readonly largeLimit: number;
  private running = 0;
  private runningLarge = 0;
  private readonly waiting: Array<{ large: boolean; start: () => void }> = [];

  constructor(limit: number, largeLimit = limit) {
    this.limit = limit;
    this.largeLimit = Math.min(limit, largeLimit);
  }

  // Runs `operation` once the gate admits it.
  async run<T>(operation: () => Promise<T>, options: { large?: boolean } = {}): Promise<T> {
    const large = options.large ?? false;
    if (this.waiting.length === 0 && this.admits(large)) this.admit(large);
    else await new Promise<void>((start) => this.waiting.push({ large, start }));
    try {
      return await operation();
    } finally {
      this.running--;
      if (large) this.runningLarge--;
      this.startWaiting();
    }
  }

  private admits(large: boolean): boolean {
    return this.running < this.limit && (!large || this.runningLarge < this.largeLimit);
  }

  private admit(large: boolean): void {
    this.running++;
    if (large) this.runningLarge++;
  }

  // Starts waiting operations from the oldest while the gate admits them; the oldest is never overtaken.
  private startWaiting(): void {
    for (let next = this.waiting[0]; next !== undefined && this.admits(next.large); next = this.waiting[0]) {
      this.waiting.shift();
      this.admit(next.large);
      next.start();
    }
  }
}

// The gate all components of this process share: they share one thread pool.
export const componentIoGate = new IoGate(SMALL_IO_CONCURRENCY, COMPONENT_IO_CONCURRENCY);

// At most this much data goes to the disk in one merged write, in at most IOV_MAX (Linux: 1024) buffers.
export const MAX_MERGED_WRITE = 4 * 1024 * 1024;
const MAX_MERGED_BUFFERS = 1024;

// A write waiting for its turn in the gate.
interface QueuedWrite {
  offset: number;
  end: number;
  data: Bytes;
  resolve(): void;
  reject(error: unknown): void;
}

// A BlockStore whose reads, writes and flushes pass through an IoGate. Deletes run an external command, not
// a pool thread, and are not gated.
//
// Writes that wait for the gate at the same time and continue each other back to back (the 128 KiB requests
// of a sequential stream) go to the disk as one pwritev when the first of them gets its turn: one thread-pool
// round trip instead of one per request, which is what bounds a busy two-core machine. Callers never have
// two overlapping writes in flight (range locks, one map write at a time), so merging only adjacent writes
// changes no outcome; a merged write that fails fails every write in it, as any of them might be the one
// the disk refused.
export class GatedStore implements BlockStore {
  private readonly inner: BlockStore;
  private readonly gate: IoGate;
  private readonly queued: QueuedWrite[] = [];
  // Turns in the gate asked for and not yet started.
  private waitingTurns = 0;

  constructor(inner: BlockStore, gate: IoGate = componentIoGate) {
    this.inner = inner;
    this.gate = gate;
  }

  get path(): string {
    return this.inner.path;
  }

  get mediasize(): number {
    return this.inner.mediasize;
  }

  get sectorsize(): number {
    return this.inner.sectorsize;
  }

  read(buf: Buffer, offset: number): Promise<void> {
    return this.gate.run(() => this.inner.read(buf, offset), { large: buf.length >= SMALL_IO_BYTES });
  }

  // A queued write waits for a turn in the gate. A turn writes the oldest queued write with every queued write
  // adjacent to it, so there are never more turns waiting than writes queued: a write that went out with an
  // earlier one leaves its turn to the next write queued.
  write(data: Bytes, offset: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const length = byteLength(data);
      this.queued.push({ offset, end: offset + length, data, resolve, reject });
      if (this.waitingTurns >= this.queued.length) return;
      this.waitingTurns++;
      // A turn is as large as the write that asked for it: the writes merged into it are known only when it starts.
      void this.gate.run(
        () => {
          this.waitingTurns--;
          return this.writeQueued();
        },
        { large: length >= SMALL_IO_BYTES },
      );
    });
  }

  // Never merged: only the activemap is written this way, one image at a time.
  writeDurable(data: Bytes, offset: number): Promise<void> {
    return this.gate.run(() => this.inner.writeDurable(data, offset));
  }

  flush(): Promise<void> {
    return this.gate.run(() => this.inner.flush());
  }

  delete(offset: number, length: number): Promise<void> {
    return this.inner.delete(offset, length);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async writeQueued(): Promise<void> {
    const batch = this.takeAdjacent();
    if (batch.length === 0) return;
    const first = batch[0]!;
    try {
      await this.inner.write(batch.length === 1 ? first.data : batch.flatMap((write) => bufferList(write.data)), first.offset);
    } catch (error) {
      for (const write of batch) write.reject(error);
      return;
    }
    for (const write of batch) write.resolve();
  }

  // The oldest queued write and the queued writes that continue it on either side, in offset order.
  private takeAdjacent(): QueuedWrite[] {
    const oldest = this.queued.shift();
    if (oldest === undefined) return [];
    const batch = [oldest];
    let start = oldest.offset;
    let end = oldest.end;
    let buffers = bufferCount(oldest.data);
    for (let grown = true; grown; ) {
      grown = false;
      for (let i = 0; i < this.queued.length; i++) {
        const write = this.queued[i]!;
        const adjacent = write.offset === end || write.end === start;
        const count = bufferCount(write.data);
        if (!adjacent || Math.max(end, write.end) - Math.min(start, write.offset) > MAX_MERGED_WRITE || buffers + count > MAX_MERGED_BUFFERS) continue;
        this.queued.splice(i--, 1);
        if (write.offset === end) {
          batch.push(write);
          end = write.end;
        } else {
          batch.unshift(write);
          start = write.offset;
        }
        buffers += count;
        grown = true;
      }
    }
    return batch;
  }
}

function bufferCount(data: Bytes): number {
  return Buffer.isBuffer(data) ? 1 : data.length;
}
