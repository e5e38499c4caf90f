// hastd's HAST_HIO_MAX: at most 256 requests in flight per resource, on either node.
export const HAST_HIO_MAX = 256;

// A fixed number of request slots. A request takes one before it starts and gives it back once it has finished
// on every node, so the requests in flight, and the buffers they hold, stay bounded whatever the replication
// mode acknowledges early.
export class RequestSlots {
  readonly size: number;
  private free: number;
  private readonly waiters: Array<{ resolve: (release: () => void) => void; reject: (error: Error) => void }> = [];
  private closedWith: Error | undefined;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(size = HAST_HIO_MAX) {
    this.size = size;
    this.free = size;
  }

  // Slots taken right now.
  get inUse(): number {
    return this.size - this.free;
  }

  // Requests waiting for a slot.
  get waiting(): number {
    return this.waiters.length;
  }

  // Resolves with the function that gives the slot back; rejects with the close error once closed.
  acquire(): Promise<() => void> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  // Refuses every waiting and future request with `error`; slots already taken stay valid.
  close(error: Error): void {
    this.closedWith ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  // Resolves once every taken slot has been given back.
  idle(): Promise<void> {
    if (this.inUse === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next !== undefined) {
        next.resolve(this.releaser());
        return;
      }
      this.free++;
      if (this.free === this.size) for (const resolve of this.idleWaiters.splice(0)) resolve();
    };
  }
}
