import type { Bytes } from './bytes.js';

// Why a block request failed, as an errno name: the NBD export maps these to NBD error codes.
export type BlockErrorCode = 'EIO' | 'EINVAL' | 'ENOSPC' | 'EPERM' | 'ESHUTDOWN' | 'EOPNOTSUPP';

// A block request that failed; the message names the request and the cause.
export class BlockIoError extends Error {
  readonly code: BlockErrorCode;

  constructor(code: BlockErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BlockIoError';
    this.code = code;
  }
}

// The device a primary resource serves (/dev/hast/<name> on FreeBSD): what the NBD export plugs into.
// Offsets and lengths are bytes of the data area and must be multiples of blockSize.
export interface BlockDevice {
  // Bytes of data (the metadata's datasize).
  readonly size: number;
  // The local component's sector size: the smallest request unit.
  readonly blockSize: number;
  // Largest single read or write (MAXPHYS).
  readonly maxRequest: number;
  read(offset: number, length: number): Promise<Buffer>;
  // Resolves when the write is as durable as the replication mode promises; `fua` adds a flush of what it wrote.
  // The data may be a list of buffers (as received from a socket): it is passed on uncopied.
  write(offset: number, data: Bytes, options?: { fua?: boolean }): Promise<void>;
  // Makes every write acknowledged before it durable on every node the replication mode promises.
  flush(): Promise<void>;
  // Discards the range on both nodes; it reads back as zeros afterwards.
  trim(offset: number, length: number): Promise<void>;
}
