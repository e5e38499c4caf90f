import type { Activemap } from './activemap.js';
import { isExtentMarked, setBit } from './activemap.js';
import type { BlockStore } from './local-component.js';
import { isNotSupported } from './local-component.js';

// How long an extent may stay marked on disk after it became clean. Dropping a mark needs the component
// flushed first, which costs a full fdatasync, so marks are dropped in batches, off the path of any request.
export const TIDY_DELAY_MS = 1000;

// Where the map lives and whether writing it must also flush the disk's write cache.
export interface ActivemapStoreOptions {
  // Component offset of the bitmap (4096, right after the metadata block).
  mapOffset: number;
  // hast.conf `metaflush`: every map image is durable before the data writes it covers.
  metaflush: boolean;
  // Delay before marks of clean extents are dropped from the disk (TIDY_DELAY_MS).
  tidyDelayMs?: number;
  // A background write that was to drop marks failed; the marks stay on disk, which costs only a sync.
  onTidyError?: (error: Error) => void;
}

// Keeps a resource's activemap on its local component. It owns the crash-safety rule: a data write is issued
// only once a map image marking its extents has reached the disk (durably when metaflush is on), and that
// mark stays on disk until the write is over and durable.
//
// Two kinds of map write keep that rule cheap. A write that marks extents keeps every mark the disk already
// holds and goes out through O_DSYNC, which makes only the map durable (hastd writes the map and flushes the
// whole component, about five times the cost on a file with dirty data). Marks of extents that became clean
// are dropped later by a tidy: flush the component so that their data is durable, then write the map without
// the marks of the extents that stayed clean during the flush. The flush, which can take long with much dirty
// data, holds up no map write. Concurrent requests share map writes: one is in flight at a time, and every
// request that arrives meanwhile is covered by the single write that follows.
export class ActivemapStore {
  readonly map: Activemap;
  private readonly component: BlockStore;
  private readonly mapOffset: number;
  private readonly tidyDelayMs: number;
  private readonly onTidyError: ((error: Error) => void) | undefined;
  private metaflushOn: boolean;
  private unsupportedFlush = false;
  private writes = 0;
  // Extents marked in every image the disk may hold right now. Which of two images is on disk is unknown
  // while a write is in flight or after one failed, so only the marks common to both count.
  private surelyMarked: Uint8Array;
  private requested = 0;
  private completed = 0;
  private inFlight: MapWrite | undefined;
  private tidyTimer: NodeJS.Timeout | undefined;
  private tidying: Promise<void> | undefined;
  // While a tidy runs: the marks it may drop (on disk, not in the map when it began), and the extents written or
  // marked since it began, whose marks stay. The next image written takes them.
  private dropCandidates: Uint8Array | undefined;
  private touched: Uint8Array | undefined;

  constructor(map: Activemap, component: BlockStore, options: ActivemapStoreOptions) {
    this.map = map;
    this.component = component;
    this.mapOffset = options.mapOffset;
    this.metaflushOn = options.metaflush;
    this.tidyDelayMs = options.tidyDelayMs ?? TIDY_DELAY_MS;
    this.onTidyError = options.onTidyError;
    this.surelyMarked = new Uint8Array(map.ondiskSize);
  }

  // Map writes done so far (hastctl's `activemap updates`, stat_activemap_update).
  get mapWrites(): number {
    return this.writes;
  }

  // Whether map writes are still made durable.
  get metaflush(): boolean {
    return this.metaflushOn;
  }

  // The component refused a flush (EOPNOTSUPP), so metaflush was turned off; the daemon logs hastd's warning.
  get flushUnsupported(): boolean {
    return this.unsupportedFlush;
  }

  // Call before issuing a data write; resolves once the write may be issued. On rejection the write must not
  // be issued, and the map no longer counts it as pending.
  async beforeWrite(offset: number, length: number): Promise<void> {
    // An extent entering the LRU may push out one whose mark is on disk; no marking write need follow (the new
    // extent may be marked already), so this is where its mark is asked to go.
    if (this.map.writeStart(offset, length)) this.scheduleTidy();
    this.noteTouched(offset, length);
    try {
      await this.markOnDisk(offset, length);
    } catch (error) {
      this.map.writeComplete(offset, length);
      throw error;
    }
  }

  // Call once the write has completed on both nodes (or the missing side was marked with markNeedSync).
  afterWrite(offset: number, length: number): void {
    if (this.map.writeComplete(offset, length)) this.scheduleTidy();
  }

  // The other node did not get (part of) a write: resolves once its extents are marked for sync on disk.
  async markNeedSync(offset: number, length: number): Promise<void> {
    this.map.needSync(offset, length);
    this.noteTouched(offset, length);
    await this.markOnDisk(offset, length);
  }

  // The sync cursor has copied every chunk of an extent (see Activemap.syncOffset).
  extentSynced(extent: number): void {
    if (this.map.extentComplete(extent)) this.scheduleTidy();
  }

  // Tidies now, after any tidy already running, so that the map on disk is the current one: after loading or
  // merging a map, and before shutting down.
  async flush(): Promise<void> {
    clearTimeout(this.tidyTimer);
    this.tidyTimer = undefined;
    await this.tidying?.catch(() => undefined);
    await this.tidy();
  }

  // Resolves once the disk marks every extent of the range. An image already in flight that marks them all is
  // waited for rather than followed by another write.
  private async markOnDisk(offset: number, length: number): Promise<void> {
    const { first, last } = this.map.extentRange(offset, length);
    while (!marksAll(this.surelyMarked, first, last)) {
      const current = this.inFlight;
      if (current && marksAll(current.image, first, last)) await current.done;
      else await this.writeMap();
    }
  }

  private scheduleTidy(): void {
    if (this.tidyTimer !== undefined) return;
    this.tidyTimer = setTimeout(() => {
      this.tidyTimer = undefined;
      this.tidy().catch((error: unknown) => this.onTidyError?.(error instanceof Error ? error : new Error(String(error))));
    }, this.tidyDelayMs);
    this.tidyTimer.unref();
  }

  private tidy(): Promise<void> {
    this.tidying ??= this.runTidy().finally(() => {
      this.tidying = undefined;
    });
    return this.tidying;
  }

  private async runTidy(): Promise<void> {
    const clean = this.map.bitmap();
    const candidates = new Uint8Array(clean.length);
    for (let i = 0; i < clean.length; i++) candidates[i] = (this.surelyMarked[i] ?? 0) & ~(clean[i] ?? 0);
    this.touched = new Uint8Array(clean.length);
    try {
      if (this.metaflushOn) await this.flushComponent();
    } catch (error) {
      this.touched = undefined;
      throw new Error(`Unable to write the activemap of ${this.component.path}`, { cause: error });
    }
    this.dropCandidates = candidates;
    await this.writeMap();
  }

  private noteTouched(offset: number, length: number): void {
    if (this.touched === undefined) return;
    const { first, last } = this.map.extentRange(offset, length);
    for (let extent = first; extent <= last; extent++) setBit(this.touched, extent);
  }

  // Resolves once an image taken after this call has reached the disk.
  private async writeMap(): Promise<void> {
    const ticket = ++this.requested;
    while (this.completed < ticket) {
      this.inFlight ??= this.startWrite();
      await this.inFlight.done;
    }
  }

  private startWrite(): MapWrite {
    const covers = this.requested;
    const drop = this.takeDroppable();
    const image = this.map.bitmap();
    if (keepMarks(image, this.surelyMarked, drop)) this.scheduleTidy();
    for (let i = 0; i < image.length; i++) this.surelyMarked[i] = (this.surelyMarked[i] ?? 0) & (image[i] ?? 0);
    const done = this.writeImage(image, covers).finally(() => {
      this.inFlight = undefined;
    });
    return { image, done };
  }

  // The marks a tidy may drop now: its candidates that nobody wrote or marked since its flush began.
  private takeDroppable(): Uint8Array | undefined {
    const { dropCandidates, touched } = this;
    this.dropCandidates = undefined;
    if (dropCandidates === undefined || touched === undefined) return undefined;
    this.touched = undefined;
    for (let i = 0; i < dropCandidates.length; i++) dropCandidates[i] = (dropCandidates[i] ?? 0) & ~(touched[i] ?? 0);
    return dropCandidates;
  }

  private async writeImage(image: Buffer, covers: number): Promise<void> {
    try {
      if (this.metaflushOn) await this.component.writeDurable(image, this.mapOffset);
      else await this.component.write(image, this.mapOffset);
    } catch (error) {
      throw new Error(`Unable to write the activemap of ${this.component.path}`, { cause: error });
    }
    this.surelyMarked = image;
    this.completed = covers;
    this.writes++;
  }

  private async flushComponent(): Promise<void> {
    try {
      await this.component.flush();
    } catch (error) {
      if (!isNotSupported(error)) throw error;
      this.metaflushOn = false;
      this.unsupportedFlush = true;
    }
  }
}

// A map image on its way to disk.
interface MapWrite {
  image: Buffer;
  done: Promise<void>;
}

// Adds to image every mark of onDisk except those of drop; true if that kept a mark the map no longer has.
function keepMarks(image: Buffer, onDisk: Uint8Array, drop: Uint8Array | undefined): boolean {
  let kept = false;
  for (let i = 0; i < image.length; i++) {
    const byte = image[i] ?? 0;
    const merged = byte | ((onDisk[i] ?? 0) & ~(drop?.[i] ?? 0));
    if (merged !== byte) kept = true;
    image[i] = merged;
  }
  return kept;
}

function marksAll(image: Uint8Array, first: number, last: number): boolean {
  for (let extent = first; extent <= last; extent++) if (!isExtentMarked(image, extent)) return false;
  return true;
}
