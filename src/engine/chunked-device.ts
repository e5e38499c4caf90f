import type { BlockDevice } from './block-device.js';
import { byteLength, sliceBytes, type Bytes } from './bytes.js';

// The largest request an NBD client may send by default (proto.md: 32 MiB), which is what we accept.
export const NBD_MAX_REQUEST = 32 * 1024 * 1024;

// A BlockDevice that takes requests larger than the one below it can (a primary takes MAXPHYS, 128 KiB, as the
// HAST wire protocol does) and splits them. Clients such as nbdcopy and the kernel's loop device over nbdfuse
// send larger requests than the block size limits they are told. A split write is acknowledged when all its
// pieces are; if one fails the write fails, and what the range holds is then undefined, as for any failed write.
export class ChunkedDevice implements BlockDevice {
  readonly size: number;
  readonly blockSize: number;
  readonly maxRequest: number;
  private readonly inner: BlockDevice;

  constructor(inner: BlockDevice, maxRequest = NBD_MAX_REQUEST) {
    this.inner = inner;
    this.size = inner.size;
    this.blockSize = inner.blockSize;
    this.maxRequest = Math.max(maxRequest, inner.maxRequest);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (length <= this.inner.maxRequest) return this.inner.read(offset, length);
    const parts = await Promise.all(this.pieces(offset, length).map(([at, size]) => this.inner.read(at, size)));
    return Buffer.concat(parts, length);
  }

  async write(offset: number, data: Bytes, options: { fua?: boolean } = {}): Promise<void> {
    const length = byteLength(data);
    if (length <= this.inner.maxRequest) return this.inner.write(offset, data, options);
    await Promise.all(this.pieces(offset, length).map(([at, size]) => this.inner.write(at, sliceBytes(data, at - offset, at - offset + size))));
    if (options.fua) await this.inner.flush();
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  trim(offset: number, length: number): Promise<void> {
    return this.inner.trim(offset, length);
  }

  private pieces(offset: number, length: number): [number, number][] {
    const step = this.inner.maxRequest;
    const pieces: [number, number][] = [];
    for (let at = offset; at < offset + length; at += step) pieces.push([at, Math.min(step, offset + length - at)]);
    return pieces;
  }
}
