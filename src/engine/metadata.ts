// The HAST metadata block at offset 0 of a local component (sbin/hastd/metadata.c), and the layout
// `hastctl create` gives a component: metadata, then the activemap bitmap, then the data.

import { ExitError } from '../common/errors.js';
import { EX_NOINPUT } from '../common/sysexits.js';
import { Nv } from './nv.js';

// Bytes reserved for metadata at the start of every component, whatever its sector size.
export const METADATA_SIZE = 4096;

// The role a metadata writer had; stored as text in `prevrole`.
export type HastRole = 'init' | 'primary' | 'secondary';

// What a metadata block says about its component.
export interface HastMetadata {
  resource: string;
  // Bytes of user data, i.e. the size of /dev/hast/<resource>.
  datasize: bigint;
  // Bytes covered by one activemap bit.
  extentsize: number;
  // How many recently written extents stay marked dirty on disk.
  keepdirty: number;
  // Where the data starts on the component (nv name "offset", "localoff" in `hastctl dump`).
  localoff: bigint;
  // Random id shared by both nodes once they have connected; 0 until then.
  resuid: bigint;
  localcnt: bigint;
  remotecnt: bigint;
  prevrole: HastRole;
  // Extents whose only good copy is on the peer: this node's disk failed to write them while the peer took
  // the data (our field, written only when non-empty; hastd ignores it).
  peerExtents?: number[];
}

// At most this many peer-held extents are recorded; past that the local disk counts as gone for writes.
export const MAX_PEER_EXTENTS = 256;

// Metadata that cannot be used; hastd's worker exits 66 (EX_NOINPUT) on it and `hastctl create` is the cure.
export class MetadataError extends ExitError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EX_NOINPUT, options);
    this.name = 'MetadataError';
  }
}

// The 4096-byte block hastd's metadata_write() produces: the nv list in its field order, zero-padded.
export function encodeMetadata(md: HastMetadata): Buffer {
  const stream = new Nv()
    .addString('resource', md.resource)
    .addUint64('datasize', md.datasize)
    .addUint32('extentsize', md.extentsize)
    .addUint32('keepdirty', md.keepdirty)
    .addUint64('offset', md.localoff)
    .addUint64('resuid', md.resuid)
    .addUint64('localcnt', md.localcnt)
    .addUint64('remotecnt', md.remotecnt)
    .addString('prevrole', md.prevrole);
  if (md.peerExtents !== undefined && md.peerExtents.length > 0) stream.addUint32Array('peerextents', Uint32Array.from(md.peerExtents));
  const encoded = stream.encode();
  // hastd asserts the same: a zero byte must be left to end the list.
  if (encoded.length >= METADATA_SIZE) {
    throw new RangeError(`metadata of resource "${md.resource}" takes ${encoded.length} of ${METADATA_SIZE} bytes`);
  }
  const block = Buffer.alloc(METADATA_SIZE);
  encoded.copy(block);
  return block;
}

// Reads a metadata block the way hastd's metadata_read() judges it, with its messages: `path` is the
// component and `resource` the configured resource it must belong to.
export function decodeMetadata(block: Buffer, where: { path: string; resource: string }): HastMetadata {
  let nv: Nv;
  try {
    nv = Nv.decode(block);
  } catch (error) {
    throw new MetadataError(`Metadata read from ${where.path} is invalid.`, { cause: error });
  }
  const resource = nv.getString('resource');
  if (resource !== undefined && resource !== where.resource) {
    throw new MetadataError(`Provider ${where.path} is not part of resource ${where.resource}.`);
  }
  try {
    // hastd reads every field and fails afterwards if any was missing or of another type, `resource`
    // included: a block without it passes the check above but is not accepted either.
    const peerExtents = nv.getUint32Array('peerextents');
    return {
      ...(peerExtents === undefined ? {} : { peerExtents: [...peerExtents] }),
      resource: nv.requireString('resource'),
      datasize: nv.requireUint64('datasize'),
      extentsize: nv.requireUint32('extentsize'),
      keepdirty: nv.requireUint32('keepdirty'),
      localoff: nv.requireUint64('offset'),
      resuid: nv.requireUint64('resuid'),
      localcnt: nv.requireUint64('localcnt'),
      remotecnt: nv.requireUint64('remotecnt'),
      prevrole: roleOf(nv.requireString('prevrole')),
    };
  } catch (error) {
    throw new MetadataError(`Unable to read metadata from ${where.path}.`, { cause: error });
  }
}

// hastd keeps "init" for any prevrole text other than "primary" and "secondary".
function roleOf(text: string): HastRole {
  return text === 'primary' || text === 'secondary' ? text : 'init';
}

// Bytes of activemap on disk for `mediasize` bytes of data (activemap_calc_ondisk_size()): one bit per
// extent, rounded up to whole sectors. extentsize and sectorsize must be powers of two, as hastd asserts.
export function ondiskMapSize(mediasize: bigint, extentsize: number, sectorsize: number): number {
  if (mediasize <= 0n) throw new RangeError(`activemap of ${mediasize} bytes: size must be positive`);
  if (!isPowerOfTwo(extentsize)) throw new RangeError(`extent size ${extentsize} is not a power of 2`);
  if (!isPowerOfTwo(sectorsize)) throw new RangeError(`sector size ${sectorsize} is not a power of 2`);
  const nextents = (mediasize - 1n) / BigInt(extentsize) + 1n;
  // FreeBSD's bitstring packs bits into bytes or longs; rounded up to a sector (>= 8 bytes) both agree.
  const bitmapBytes = (nextents + 7n) / 8n;
  const sector = BigInt(sectorsize);
  const size = ((bitmapBytes + sector - 1n) / sector) * sector;
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`activemap for ${mediasize} bytes in ${extentsize}-byte extents is too large`);
  }
  return Number(size);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 31;
}

// The metadata `hastctl create` writes for a component of `mediasize` bytes: the map is sized from what
// follows the metadata block, and the data follows the map. A component too small for all three gets a
// datasize <= 0, which the caller must refuse (hastctl itself would write a wrapped-around size).
export function layoutForCreate(options: {
  mediasize: bigint;
  extentsize: number;
  keepdirty: number;
  sectorsize: number;
  resource: string;
}): HastMetadata {
  const { mediasize, extentsize, keepdirty, sectorsize, resource } = options;
  const mapped = mediasize - BigInt(METADATA_SIZE);
  const mapsize = mapped > 0n ? BigInt(ondiskMapSize(mapped, extentsize, sectorsize)) : 0n;
  return {
    resource,
    datasize: mapped - mapsize,
    extentsize,
    keepdirty,
    localoff: BigInt(METADATA_SIZE) + mapsize,
    resuid: 0n,
    localcnt: 0n,
    remotecnt: 0n,
    prevrole: 'init',
  };
}
