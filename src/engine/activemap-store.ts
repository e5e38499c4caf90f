import type { Activemap } from './activemap.js';
import { isExtentMarked } from './activemap.js';
import type { BlockStore } from './local-component.js';
import { isNotSupported } from './local-component.js';

// Where the map lives and whether writing it must also flush the disk's write cache.
export interface ActivemapStoreOptions {
  // Component offset of the bitmap (4096, right after the metadata block).
  mapOffset: number;
  // hast.conf `metaflush`: follow every map write with a flush.
  metaflush: boolean;
}

// Keeps a resource's activemap on its local component. It owns the crash-safety rule: a data write is issued
// only once a map image marking its extents has reached the disk (and been flushed when metaflush is on), and
// that mark stays on disk until the write completes. Concurrent requests share map writes: one map write is
// in flight at a time, and every request that arrives meanwhile is covered by the single write that follows.
export class ActivemapStore {
  readonly map: Activemap;
  private readonly component: BlockStore;
  private readonly mapOffset: number;
  private metaflushOn: boolean;
  private unsupportedFlush = false;
  private writes = 0;
  // Extents marked in every image the disk may hold right now. Which of two images is on disk is unknown
  // while a write is in flight or after one failed, so only the marks common to both count.
  private surelyMarked: Uint8Array;
  private requested = 0;
  private completed = 0;
  private inFlight: MapWrite | undefined;

  constructor(map: Activemap, component: BlockStore, options: ActivemapStoreOptions) {
    this.map = map;
    this.component = component;
    this.mapOffset = options.mapOffset;
    this.metaflushOn = options.metaflush;
    this.surelyMarked = new Uint8Array(map.ondiskSize);
  }

  // Map writes done so far (hastctl's `activemap updates`, stat_activemap_update).
  get mapWrites(): number {
    return this.writes;
  }

  // Whether map writes are still followed by a flush.
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
    this.map.writeStart(offset, length);
    try {
      await this.markOnDisk(offset, length);
    } catch (error) {
      this.map.writeComplete(offset, length);
      throw error;
    }
  }

  // Call once the write has completed on both nodes (or the missing side was marked with markNeedSync).
  async afterWrite(offset: number, length: number): Promise<void> {
    if (this.map.writeComplete(offset, length)) await this.writeMap();
  }

  // The other node did not get (part of) a write: resolves once its extents are marked for sync on disk.
  async markNeedSync(offset: number, length: number): Promise<void> {
    this.map.needSync(offset, length);
    await this.markOnDisk(offset, length);
  }

  // The sync cursor has copied every chunk of an extent (see Activemap.syncOffset).
  async extentSynced(extent: number): Promise<void> {
    if (this.map.extentComplete(extent)) await this.writeMap();
  }

  // Writes the current image now: after loading or merging a map, and before shutting down.
  async flush(): Promise<void> {
    await this.writeMap();
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
    const image = this.map.bitmap();
    for (let i = 0; i < image.length; i++) this.surelyMarked[i] = (this.surelyMarked[i] ?? 0) & (image[i] ?? 0);
    const done = this.writeImage(image, covers).finally(() => {
      this.inFlight = undefined;
    });
    return { image, done };
  }

  private async writeImage(image: Buffer, covers: number): Promise<void> {
    try {
      await this.component.write(image, this.mapOffset);
      if (this.metaflushOn) await this.flushComponent();
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

function marksAll(image: Uint8Array, first: number, last: number): boolean {
  for (let extent = first; extent <= last; extent++) if (!isExtentMarked(image, extent)) return false;
  return true;
}
