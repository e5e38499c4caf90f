import type { HastResource } from '../config/hast-conf.js';
import { ExitError, strerror } from '../common/errors.js';
import { EX_DATAERR, EX_IOERR, EX_NOINPUT } from '../common/sysexits.js';
import { ComponentBusyError, ComponentError, LocalComponent } from './local-component.js';
import { decodeMetadata, encodeMetadata, layoutForCreate, METADATA_SIZE, type HastMetadata } from './metadata.js';

// hastd's defaults for `hastctl create`: 2 MiB extents, 64 extents kept dirty.
export const DEFAULT_EXTENTSIZE = 2 * 1024 * 1024;
export const DEFAULT_KEEPDIRTY = 64;

// Sizes given to `hastctl create`; zero or absent means "use the default" (the provider size for mediasize).
export interface CreateOptions {
  mediasize?: number;
  extentsize?: number;
  keepdirty?: number;
}

async function openComponent(path: string, readOnly: boolean): Promise<LocalComponent> {
  try {
    return await LocalComponent.open(path, { readOnly });
  } catch (error) {
    if (error instanceof ComponentBusyError) throw new ExitError(error.message, EX_NOINPUT, { cause: error });
    const reason = error instanceof ComponentError ? error.cause : error;
    throw new ExitError(`Unable to open ${path}: ${strerror(reason)}.`, EX_NOINPUT, { cause: error });
  }
}

// `hastctl create`: writes fresh metadata (resuid 0, counters 0) and a clear activemap to the local component.
export async function createComponent(resource: HastResource, options: CreateOptions = {}): Promise<HastMetadata> {
  const extentsize = options.extentsize || DEFAULT_EXTENTSIZE;
  const keepdirty = options.keepdirty || DEFAULT_KEEPDIRTY;
  // hastctl(8) accepts any multiple of the sector size and hastd later asserts on it; refuse before writing.
  if ((extentsize & (extentsize - 1)) !== 0 || extentsize > 2 ** 31) {
    throw new ExitError(`Extent size (${extentsize}) is not a power of 2.`, EX_DATAERR);
  }
  const component = await openComponent(resource.local, false);
  try {
    const { path, sectorsize } = component;
    let mediasize = component.mediasize;
    if (options.mediasize) {
      if (options.mediasize > component.mediasize) {
        throw new ExitError(`Provided mediasize is larger than provider ${path} size.`, EX_DATAERR);
      }
      mediasize = options.mediasize;
    }
    if ((sectorsize & (sectorsize - 1)) !== 0) {
      throw new ExitError(`Sector size of provider ${path} is not power of 2 (${sectorsize}).`, EX_DATAERR);
    }
    if (extentsize < sectorsize) {
      throw new ExitError(`Extent size (${extentsize}) is less than sector size (${sectorsize}).`, EX_DATAERR);
    }
    const metadata = layoutForCreate({ mediasize: BigInt(mediasize), extentsize, keepdirty, sectorsize, resource: resource.name });
    // hastctl would write metadata with a negative data size here; a component must hold at least one sector of data.
    if (metadata.datasize < BigInt(sectorsize)) {
      throw new ExitError(
        `Provider ${path} is too small (${mediasize} bytes) for metadata and activemap (${metadata.localoff} bytes) and data.`,
        EX_DATAERR,
      );
    }
    await writeOrFail(component, encodeMetadata(metadata), 0, `Unable to write metadata to ${path}`);
    const mapsize = Number(metadata.localoff) - METADATA_SIZE;
    await writeOrFail(component, Buffer.alloc(mapsize), METADATA_SIZE, `Unable to store initial bitmap on ${path}`);
    try {
      await component.flush();
    } catch (error) {
      throw new ExitError(`Unable to flush ${path}: ${strerror(error)}.`, EX_IOERR, { cause: error });
    }
    return metadata;
  } finally {
    await component.close();
  }
}

async function writeOrFail(component: LocalComponent, data: Buffer, offset: number, what: string): Promise<void> {
  try {
    await component.write(data, offset);
  } catch (error) {
    throw new ExitError(`${what}: ${strerror(error)}.`, EX_IOERR, { cause: error });
  }
}

// `hastctl dump`: reads the metadata of a resource's local component without taking it from a running engine.
export async function readComponentMetadata(resource: HastResource): Promise<HastMetadata> {
  const component = await openComponent(resource.local, true);
  try {
    if (component.mediasize < METADATA_SIZE) {
      throw new ExitError(`Unable to read metadata from ${component.path}: component is smaller than ${METADATA_SIZE} bytes.`, EX_NOINPUT);
    }
    const block = Buffer.alloc(METADATA_SIZE);
    try {
      await component.read(block, 0);
    } catch (error) {
      throw new ExitError(`Unable to read metadata from ${component.path}: ${strerror(error)}.`, EX_NOINPUT, { cause: error });
    }
    return decodeMetadata(block, { path: component.path, resource: resource.name });
  } finally {
    await component.close();
  }
}
