// Keeps requests on overlapping byte ranges in arrival order (hastd's range locks). A range is granted once
// every earlier overlapping range has been released; ranges that do not overlap never wait for each other.
export class RangeLock {
  private readonly held: Array<{ start: number; end: number; released: Promise<void> }> = [];

  // Resolves with the function that releases the range.
  async lock(offset: number, length: number): Promise<() => void> {
    const start = offset;
    const end = offset + length;
    const earlier = this.held.filter((entry) => entry.start < end && start < entry.end).map((entry) => entry.released);
    let signal!: () => void;
    const entry = { start, end, released: new Promise<void>((resolve) => (signal = resolve)) };
    this.held.push(entry);
    if (earlier.length > 0) await Promise.all(earlier);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held.splice(this.held.indexOf(entry), 1);
      signal();
    };
  }

  // Ranges granted or waiting.
  get size(): number {
    return this.held.length;
  }
}
