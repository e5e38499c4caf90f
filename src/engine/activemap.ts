// The dirty-extent map of a HAST resource (hastd's activemap.c): which extents may differ between the nodes.
// Pure bookkeeping; ActivemapStore writes its images to disk.

// FreeBSD's MAXPHYS as hastd is built with: the largest single request, and the size of one sync chunk.
export const MAXPHYS = 128 * 1024;

// The sizes an activemap is built from; they come from the resource's metadata.
export interface ActivemapGeometry {
  // Bytes of user data the map covers.
  datasize: number;
  // Bytes per bit; a power of two.
  extentsize: number;
  // How many recently written extents stay marked on disk after their writes complete.
  keepdirty: number;
  // The on-disk image is padded to whole sectors.
  sectorsize: number;
  // Sync chunk size; MAXPHYS unless a test wants small numbers.
  maxChunk?: number;
}

// A geometry hastd would refuse (it asserts); raised before any state is built.
export class ActivemapGeometryError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'ActivemapGeometryError';
  }
}

// One step of the synchronisation cursor (activemap_sync_offset).
export interface SyncStep {
  // The extent the cursor just left: its sync bit is cleared, and once its last chunk has been copied the
  // caller reports it with extentComplete.
  finishedExtent: number | undefined;
  // The next range to copy to the out-of-date node, or undefined when nothing is left.
  range: { offset: number; length: number } | undefined;
}

// Bytes the on-disk bitmap takes: one bit per extent, rounded up to whole sectors (activemap_calc_ondisk_size).
export function activemapOndiskSize(datasize: number, extentsize: number, sectorsize: number): number {
  checkSizes(datasize, extentsize, sectorsize);
  return roundUp(Math.ceil(Math.ceil(datasize / extentsize) / 8), sectorsize);
}

// Whether an activemap image marks the extent (byte e/8, mask 1 << e%8, as FreeBSD's bitstring).
export function isExtentMarked(image: Uint8Array, extent: number): boolean {
  return ((image[extent >> 3] ?? 0) & (1 << (extent & 7))) !== 0;
}

// In-memory state of one resource's activemap, mirroring activemap.c. Per extent: a pending-write counter,
// memmap (dirty: writes pending or sync needed), syncmap (must be copied to the other node), and an LRU of the
// `keepdirty` most recently written extents, which stay marked on disk so hot extents cost no map writes.
export class Activemap {
  readonly datasize: number;
  readonly extentsize: number;
  readonly keepdirty: number;
  readonly sectorsize: number;
  readonly maxChunk: number;
  readonly nextents: number;
  // Bytes of the bitmap proper.
  readonly mapsize: number;
  // Bytes of the on-disk image (mapsize rounded up to the sector size).
  readonly ondiskSize: number;
  private readonly pending: Uint32Array;
  private readonly memmap: Uint8Array;
  private readonly syncmap: Uint8Array;
  // Least recently written first: a Set iterates in insertion order, and re-adding moves to the end.
  private readonly lru = new Set<number>();
  private ndirty = 0;
  // Where the next sync chunk starts: an offset, 'first' to start at the first marked extent, 'none' when idle.
  private syncCursor: number | 'first' | 'none' = 'none';

  constructor(geometry: ActivemapGeometry) {
    checkGeometry(geometry);
    this.datasize = geometry.datasize;
    this.extentsize = geometry.extentsize;
    this.keepdirty = geometry.keepdirty;
    this.sectorsize = geometry.sectorsize;
    this.maxChunk = geometry.maxChunk ?? MAXPHYS;
    this.nextents = Math.ceil(this.datasize / this.extentsize);
    this.mapsize = Math.ceil(this.nextents / 8);
    this.ondiskSize = roundUp(this.mapsize, this.sectorsize);
    this.pending = new Uint32Array(this.nextents);
    this.memmap = new Uint8Array(this.mapsize);
    this.syncmap = new Uint8Array(this.mapsize);
  }

  // The extents a byte range of user data touches; the range must lie inside the data area.
  extentRange(offset: number, length: number): { first: number; last: number } {
    const valid =
      Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length > 0 &&
      offset + length <= this.datasize;
    if (!valid) throw new RangeError(`range ${offset}+${length} is outside the ${this.datasize}-byte data area`);
    return { first: this.extentOf(offset), last: this.extentOf(offset + length - 1) };
  }

  // Before a write is issued. True when an extent entered the LRU, which is when hastd rewrites the map.
  writeStart(offset: number, length: number): boolean {
    const { first, last } = this.extentRange(offset, length);
    let modified = false;
    for (let extent = first; extent <= last; extent++) {
      this.addPending(extent, 1);
      if (this.touchLru(extent)) modified = true;
    }
    return modified;
  }

  // After a write completed on both nodes. True when an extent became clean and is not kept dirty by the LRU,
  // so a map write would clear it; extents still in the LRU are cleared lazily, when they are evicted.
  writeComplete(offset: number, length: number): boolean {
    const { first, last } = this.extentRange(offset, length);
    for (let extent = first; extent <= last; extent++) {
      if (this.pendingOf(extent) === 0) {
        throw new Error(`write completion on extent ${extent} without a write in progress`);
      }
    }
    let modified = false;
    for (let extent = first; extent <= last; extent++) {
      if (this.removePending(extent, 1) && !this.lru.has(extent)) modified = true;
    }
    return modified;
  }

  // The other node missed (part of) a write: its extents must be synchronised. They stay dirty until the sync
  // cursor has copied every chunk of them. True when something new was marked.
  needSync(offset: number, length: number): boolean {
    const { first, last } = this.extentRange(offset, length);
    let modified = false;
    for (let extent = first; extent <= last; extent++) {
      if (isExtentMarked(this.syncmap, extent)) continue;
      setBit(this.syncmap, extent);
      this.addPending(extent, this.chunksOf(extent));
      modified = true;
    }
    return modified;
  }

  // True when the extent waits for the sync cursor (the cursor clears the mark when it moves on).
  waitsForSync(extent: number): boolean {
    return isExtentMarked(this.syncmap, extent);
  }

  // Every chunk of an extent handed out by syncOffset has been copied. True when the extent became clean.
  extentComplete(extent: number): boolean {
    this.checkExtent(extent);
    const chunks = this.chunksOf(extent);
    if (this.pendingOf(extent) < chunks) {
      throw new Error(`sync completion on extent ${extent} that was not being synchronised`);
    }
    return this.removePending(extent, chunks);
  }

  // Restart synchronisation from the first extent that needs it (on every (re)connect).
  syncRewind(): void {
    this.syncCursor = firstMarked(this.syncmap) === undefined ? 'none' : 'first';
  }

  // Advances the sync cursor by one chunk of at most maxChunk bytes, never crossing an extent boundary.
  syncOffset(): SyncStep {
    let finishedExtent: number | undefined;
    let cursor = this.syncCursor;
    if (cursor === 'none') return { finishedExtent, range: undefined };
    if (typeof cursor === 'number' && this.leavesExtent(cursor)) {
      finishedExtent = this.extentOf(cursor);
      clearBit(this.syncmap, finishedExtent);
      cursor = 'first';
    }
    if (cursor === 'first') {
      const extent = firstMarked(this.syncmap);
      if (extent === undefined) {
        this.syncCursor = 'none';
        return { finishedExtent, range: undefined };
      }
      cursor = extent * this.extentsize;
    } else {
      cursor += this.maxChunk;
    }
    this.syncCursor = cursor;
    const extentEnd = Math.min((this.extentOf(cursor) + 1) * this.extentsize, this.datasize);
    return { finishedExtent, range: { offset: cursor, length: Math.min(extentEnd - cursor, this.maxChunk) } };
  }

  // Startup: replaces the in-memory state with the map read from disk. Everything marked there (including the
  // previous run's LRU) may differ from the other node, so it is dirty and needs a sync.
  loadOndisk(image: Uint8Array): void {
    this.checkImage(image);
    this.pending.fill(0);
    this.lru.clear();
    this.ndirty = 0;
    this.memmap.fill(0);
    this.syncmap.fill(0);
    this.markForSync(image);
  }

  // Adds the other node's on-disk map at connect time: its marked extents need a sync too.
  mergeBitmap(image: Uint8Array): void {
    this.checkImage(image);
    this.markForSync(image);
  }

  // The image to write to disk: every dirty extent plus the LRU (activemap_bitmap), padded to ondiskSize.
  bitmap(): Buffer {
    const image = Buffer.alloc(this.ondiskSize);
    image.set(this.memmap);
    for (const extent of this.lru) setBit(image, extent);
    return image;
  }

  // Extents dirty in memory (activemap_ndirty): writes pending or sync needed.
  dirtyExtents(): number {
    return this.ndirty;
  }

  // What `hastctl list` shows as dirty: dirty extents times the extent size.
  dirtyBytes(): number {
    return this.ndirty * this.extentsize;
  }

  // Extents still waiting to be synchronised.
  syncExtents(): number {
    let count = 0;
    for (let extent = 0; extent < this.nextents; extent++) if (isExtentMarked(this.syncmap, extent)) count++;
    return count;
  }

  // Marks each extent set in image and not yet waiting for a sync. hastd's activemap_merge overwrites the
  // pending counter instead of adding to it, losing writes in flight; we add.
  private markForSync(image: Uint8Array): void {
    for (let extent = 0; extent < this.nextents; extent++) {
      if (!isExtentMarked(image, extent) || isExtentMarked(this.syncmap, extent)) continue;
      setBit(this.syncmap, extent);
      this.addPending(extent, this.chunksOf(extent));
    }
    this.syncRewind();
  }

  private addPending(extent: number, count: number): void {
    const before = this.pendingOf(extent);
    this.pending[extent] = before + count;
    if (before === 0) {
      setBit(this.memmap, extent);
      this.ndirty++;
    }
  }

  // Returns true when the extent became clean.
  private removePending(extent: number, count: number): boolean {
    const after = this.pendingOf(extent) - count;
    this.pending[extent] = after;
    if (after > 0) return false;
    clearBit(this.memmap, extent);
    this.ndirty--;
    return true;
  }

  private pendingOf(extent: number): number {
    return this.pending[extent] ?? 0;
  }

  // Moves the extent to the LRU head; true if it was not there (evicting the tail when full).
  private touchLru(extent: number): boolean {
    if (this.lru.delete(extent)) {
      this.lru.add(extent);
      return false;
    }
    if (this.lru.size >= this.keepdirty) {
      const [tail] = this.lru;
      if (tail !== undefined) this.lru.delete(tail);
    }
    this.lru.add(extent);
    return true;
  }

  // Requests needed to copy an extent (ext2reqs); the last extent may be short.
  private chunksOf(extent: number): number {
    const size = Math.min(this.extentsize, this.datasize - extent * this.extentsize);
    return Math.ceil(size / this.maxChunk);
  }

  // Whether the chunk after the one at cursor would start past the data or in another extent.
  private leavesExtent(cursor: number): boolean {
    const next = cursor + this.maxChunk;
    return next >= this.datasize || this.extentOf(next) !== this.extentOf(cursor);
  }

  private extentOf(offset: number): number {
    return Math.floor(offset / this.extentsize);
  }

  private checkExtent(extent: number): void {
    if (!Number.isInteger(extent) || extent < 0 || extent >= this.nextents) {
      throw new RangeError(`extent ${extent} is outside the map of ${this.nextents} extents`);
    }
  }

  private checkImage(image: Uint8Array): void {
    if (image.length < this.mapsize) {
      throw new RangeError(`activemap image of ${image.length} bytes is shorter than the ${this.mapsize}-byte map`);
    }
  }
}

function checkGeometry(geometry: ActivemapGeometry): void {
  const { datasize, extentsize, keepdirty, sectorsize, maxChunk = MAXPHYS } = geometry;
  checkSizes(datasize, extentsize, sectorsize);
  if (!Number.isSafeInteger(keepdirty) || keepdirty <= 0) {
    throw new ActivemapGeometryError(`keepdirty ${keepdirty} is not a positive number`);
  }
  if (!Number.isSafeInteger(maxChunk) || maxChunk <= 0) {
    throw new ActivemapGeometryError(`maxChunk ${maxChunk} is not a positive number of bytes`);
  }
}

function checkSizes(datasize: number, extentsize: number, sectorsize: number): void {
  if (!Number.isSafeInteger(datasize) || datasize <= 0) {
    throw new ActivemapGeometryError(`datasize ${datasize} is not a positive number of bytes`);
  }
  if (!isPowerOfTwo(extentsize)) throw new ActivemapGeometryError(`extentsize ${extentsize} is not a power of two`);
  if (!isPowerOfTwo(sectorsize)) throw new ActivemapGeometryError(`sectorsize ${sectorsize} is not a power of two`);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

function firstMarked(bits: Uint8Array): number | undefined {
  const byte = bits.findIndex((value) => value !== 0);
  if (byte === -1) return undefined;
  const value = bits[byte] ?? 0;
  let bit = 0;
  while (!(value & (1 << bit))) bit++;
  return byte * 8 + bit;
}

// Sets an extent's bit in a bitmap image (activemap_bitmap's layout), e.g. one sent to the other node.
export function setBit(bits: Uint8Array, index: number): void {
  bits[index >> 3] = (bits[index >> 3] ?? 0) | (1 << (index & 7));
}

function clearBit(bits: Uint8Array, index: number): void {
  bits[index >> 3] = (bits[index >> 3] ?? 0) & ~(1 << (index & 7));
}
