import { availableParallelism } from 'node:os';
import type { BlockStore } from './local-component.js';

// Every fs call runs on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise, shared with
// dns and zlib). With more pool threads busy than there are cores, the threads preempt each other while
// holding the pool's lock: on 2 vCPUs, 128 KiB writes kept 64 deep went twice as fast with 2 threads busy as
// with 4, at a third less CPU per byte. So component I/O keeps at most this many operations in the pool and
// queues the rest here, first come first served.
export const COMPONENT_IO_CONCURRENCY = Math.max(1, Math.min(4, availableParallelism()));

// A counting gate for operations that occupy a thread-pool thread.
export class IoGate {
  private readonly limit: number;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  // Runs `operation` once fewer than `limit` gated operations are running.
  async run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await operation();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.running--;
    }
  }
}

// The gate all components of this process share: they share one thread pool.
export const componentIoGate = new IoGate(COMPONENT_IO_CONCURRENCY);

// A BlockStore whose reads, writes and flushes pass through an IoGate. Deletes run an external command, not
// a pool thread, and are not gated.
export class GatedStore implements BlockStore {
  private readonly inner: BlockStore;
  private readonly gate: IoGate;

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
    return this.gate.run(() => this.inner.read(buf, offset));
  }

  write(buf: Buffer, offset: number): Promise<void> {
    return this.gate.run(() => this.inner.write(buf, offset));
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
}
