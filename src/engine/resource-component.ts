import type { HastResource } from '../config/hast-conf.js';
import { GatedStore } from './io-gate.js';
import { LocalComponent, type BlockStore } from './local-component.js';
import { decodeMetadata, encodeMetadata, METADATA_SIZE, MetadataError, type HastMetadata } from './metadata.js';

// Opens a resource's local component for a worker. LocalComponent.open in the daemon; a caller may wrap the
// store it returns (tests inject disk failures this way).
export type OpenComponent = (path: string) => Promise<BlockStore>;

// The default OpenComponent: the real file or disk, opened read-write and flocked.
export const openLocalComponent: OpenComponent = (path) => LocalComponent.open(path);

// A resource's local component as a worker holds it: the open store, the metadata in force, and the writes
// that keep the metadata block up to date. Offsets given to the store are component offsets; user data
// starts at `localoff`.
export class ResourceComponent {
  readonly store: BlockStore;
  private current: HastMetadata;
  // Metadata writes go to disk one at a time, in the order they were asked for.
  private writing: Promise<void> = Promise.resolve();

  private constructor(store: BlockStore, metadata: HastMetadata) {
    this.store = store;
    this.current = metadata;
  }

  // Opens and locks the component and reads its metadata; fails with ComponentError (busy, unreadable) or
  // MetadataError (missing, corrupt, another resource's, or not fitting the component).
  static async open(resource: HastResource, open: OpenComponent = openLocalComponent): Promise<ResourceComponent> {
    const store = new GatedStore(await open(resource.local));
    try {
      return new ResourceComponent(store, await readMetadata(store, resource.name));
    } catch (error) {
      await store.close();
      throw error;
    }
  }

  get path(): string {
    return this.store.path;
  }

  get metadata(): Readonly<HastMetadata> {
    return this.current;
  }

  // Component offset of the first byte of user data.
  get localoff(): number {
    return Number(this.current.localoff);
  }

  // Bytes of user data.
  get datasize(): number {
    return Number(this.current.datasize);
  }

  // Changes metadata fields and writes the whole block (hastd rewrites it on every counter or resuid change).
  async update(changes: Partial<HastMetadata>): Promise<void> {
    this.current = { ...this.current, ...changes };
    const block = encodeMetadata(this.current);
    const write = this.writing.then(() => this.store.write(block, 0));
    this.writing = write.catch(() => undefined);
    try {
      await write;
    } catch (error) {
      throw new MetadataError(`Unable to write metadata to ${this.path}.`, { cause: error });
    }
  }

  // The on-disk activemap image: `size` bytes right after the metadata block.
  async readActivemap(size: number): Promise<Buffer> {
    const image = Buffer.alloc(size);
    try {
      await this.store.read(image, METADATA_SIZE);
    } catch (error) {
      throw new MetadataError(`Unable to read activemap from ${this.path}.`, { cause: error });
    }
    return image;
  }

  // Waits for metadata writes in progress, then closes the store (which drops the lock).
  async close(): Promise<void> {
    await this.writing;
    await this.store.close();
  }
}

async function readMetadata(store: BlockStore, resource: string): Promise<HastMetadata> {
  const { path, mediasize } = store;
  if (mediasize < METADATA_SIZE) {
    throw new MetadataError(`Unable to read metadata from ${path}: the component has only ${mediasize} bytes.`);
  }
  const block = Buffer.alloc(METADATA_SIZE);
  try {
    await store.read(block, 0);
  } catch (error) {
    throw new MetadataError(`Unable to read metadata from ${path}.`, { cause: error });
  }
  const metadata = decodeMetadata(block, { path, resource });
  const { localoff, datasize } = metadata;
  const fits = localoff >= BigInt(METADATA_SIZE) && datasize > 0n && localoff + datasize <= BigInt(mediasize);
  if (!fits) {
    throw new MetadataError(
      `Metadata read from ${path} is invalid: ${datasize} bytes of data at offset ${localoff} do not fit the ${mediasize}-byte component.`,
    );
  }
  return metadata;
}
