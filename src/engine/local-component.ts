import { constants, read as readCallback, write as writeCallback, writev as writevCallback } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tryLockExclusive, type LockOutcome } from '../common/flock.js';
import { runCommand } from '../common/run-command.js';
import { byteLength, sliceBytes, type Bytes } from './bytes.js';

// Regular files have no sector size of their own; hastd uses 512 for them, and so do we.
const FILE_SECTOR_SIZE = 512;

// fallocate and blkdiscard touch a byte range, not the whole disk; a minute means the device is stuck.
const DELETE_POLICY = { timeoutMs: 60_000, killAfterMs: 5_000 };

// The storage under one resource as the engine sees it. The engine only talks to this interface, so tests can
// wrap a real component and inject failures. Offsets are absolute component offsets.
export interface BlockStore {
  readonly path: string;
  // Usable bytes of the component (file size or device size).
  readonly mediasize: number;
  // Smallest unit the component writes atomically.
  readonly sectorsize: number;
  // Fills buf from offset; a read that ends early is an error, never a partial buffer.
  read(buf: Buffer, offset: number): Promise<void>;
  // Writes all the bytes at offset, a list of buffers back to back (pwritev).
  write(data: Bytes, offset: number): Promise<void>;
  // Writes like write() and resolves once these bytes are durable (O_DSYNC), without flushing the rest of the
  // component: the activemap's own range, made durable before the data writes it covers.
  writeDurable(data: Bytes, offset: number): Promise<void>;
  // Makes completed writes durable (fdatasync).
  flush(): Promise<void>;
  // Discards a range so that it reads back as zeros.
  delete(offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}

// An I/O failure on a component; the message names the operation, the offset and the path.
export class ComponentError extends Error {
  readonly path: string;
  // errno name of the underlying failure (EIO, ENOENT, EOPNOTSUPP...), when there is one.
  readonly code: string | undefined;

  constructor(message: string, path: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'ComponentError';
    this.path = path;
    this.code = errnoCode(cause);
  }
}

// Another process (a hastd or another engine) already holds the component: two writers would corrupt it.
export class ComponentBusyError extends ComponentError {
  constructor(path: string, cause?: unknown) {
    super(`Unable to lock ${path} (another hastd/engine holds it)`, path, cause);
    this.name = 'ComponentBusyError';
  }
}

// True when an error says the operation is not supported here (flock on some file systems, flush on some disks).
export function isNotSupported(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

// Options for LocalComponent.open.
export interface OpenOptions {
  // Open O_RDONLY and without the lock, as hastctl dump reads a component a running engine holds; writes
  // then fail with EBADF.
  readOnly?: boolean;
}

// The `local` component of a resource: a regular file or a block device, opened and locked for this engine.
export class LocalComponent implements BlockStore {
  readonly path: string;
  readonly mediasize: number;
  readonly sectorsize: number;
  // The file system cannot flock; hastd goes on with a warning and so may the caller.
  readonly lockUnsupported: boolean;
  private readonly handle: FileHandle;
  // A second descriptor opened O_DSYNC for writeDurable; undefined when read-only.
  private readonly durable: FileHandle | undefined;
  private readonly blockDevice: boolean;
  // Reads and writes in flight on the raw descriptors, which close() waits for.
  private inFlight = 0;
  private closing = false;
  private drained: (() => void) | undefined;

  private constructor(
    path: string,
    handles: { handle: FileHandle; durable: FileHandle | undefined },
    geometry: ComponentGeometry,
    lockUnsupported: boolean,
  ) {
    this.path = path;
    this.handle = handles.handle;
    this.durable = handles.durable;
    this.mediasize = geometry.mediasize;
    this.sectorsize = geometry.sectorsize;
    this.blockDevice = geometry.blockDevice;
    this.lockUnsupported = lockUnsupported;
  }

  // Opens and exclusively locks path (unless read-only); refuses with ComponentBusyError if someone else holds it.
  static async open(path: string, options: OpenOptions = {}): Promise<LocalComponent> {
    let handle: FileHandle;
    try {
      handle = await open(path, options.readOnly ? constants.O_RDONLY : constants.O_RDWR);
    } catch (error) {
      throw new ComponentError(`Unable to open ${path}`, path, error);
    }
    let durable: FileHandle | undefined;
    try {
      const lockUnsupported = options.readOnly ? false : await lockExclusive(handle.fd, path);
      const geometry = await componentGeometry(handle, path);
      if (!options.readOnly) durable = await openDurable(path);
      return new LocalComponent(path, { handle, durable }, geometry, lockUnsupported);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesRead = await this.tracked(() => pread(this.handle.fd, buf, done, offset + done));
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (error) {
      throw new ComponentError(`reading ${buf.length} bytes at offset ${offset} of ${this.path}`, this.path, error);
    }
    if (done < buf.length) {
      throw new ComponentError(
        `reading ${buf.length} bytes at offset ${offset} of ${this.path}: end of component after ${done} bytes`,
        this.path,
      );
    }
  }

  async write(data: Bytes, offset: number): Promise<void> {
    try {
      await this.tracked(() => writeAll(this.handle.fd, data, offset));
    } catch (error) {
      throw new ComponentError(`writing ${byteLength(data)} bytes at offset ${offset} of ${this.path}`, this.path, error);
    }
  }

  // On Linux an O_DSYNC write syncs only its own range and the disk's write cache (vfs_fsync_range), where
  // fdatasync would also write back every dirty page of the component.
  async writeDurable(data: Bytes, offset: number): Promise<void> {
    try {
      if (this.durable === undefined) throw Object.assign(new Error('opened read-only'), { code: 'EBADF' });
      const { fd } = this.durable;
      await this.tracked(() => writeAll(fd, data, offset));
    } catch (error) {
      throw new ComponentError(`durably writing ${byteLength(data)} bytes at offset ${offset} of ${this.path}`, this.path, error);
    }
  }

  async flush(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (error) {
      throw new ComponentError(`flushing ${this.path}`, this.path, error);
    }
  }

  // A FileHandle waits for its own calls before closing, but not for callback calls on its descriptor: this
  // does, so that a descriptor number is never closed and reused under a read or write in flight.
  private async tracked<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closing) throw Object.assign(new Error(`${this.path} is closed`), { code: 'EBADF' });
    this.inFlight++;
    try {
      return await operation();
    } finally {
      if (--this.inFlight === 0) this.drained?.();
    }
  }

  // Node has no fallocate(2) or BLKZEROOUT, so util-linux does it: a hole in a file, zeroed sectors on a disk.
  // Either way both nodes read zeros afterwards, which a plain discard would not promise.
  async delete(offset: number, length: number): Promise<void> {
    if (length === 0) return;
    const range = ['--offset', String(offset), '--length', String(length)];
    const argv = this.blockDevice
      ? ['blkdiscard', '--zeroout', ...range, this.path]
      : ['fallocate', '--punch-hole', '--keep-size', ...range, this.path];
    try {
      await runCommand(argv, DELETE_POLICY);
    } catch (error) {
      throw new ComponentError(`deleting ${length} bytes at offset ${offset} of ${this.path}`, this.path, error);
    }
  }

  // Closing the locked descriptor also drops the flock.
  async close(): Promise<void> {
    this.closing = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await this.durable?.close();
    await this.handle.close();
  }
}

// Device numbers as Linux packs them into st_rdev (glibc's gnu_dev_major/gnu_dev_minor).
export function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

// A decimal number as sysfs prints it ("16384\n"); anything else is an error naming the file.
export function parseSysfsNumber(text: string, file: string): number {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) throw new Error(`${file} holds '${trimmed}', not a number`);
  return Number(trimmed);
}

// A regular file or disk takes all of it at once unless interrupted; the loop covers short writes.
async function writeAll(fd: number, data: Bytes, offset: number): Promise<void> {
  let rest = data;
  let at = offset;
  for (let size = byteLength(rest); size > 0; ) {
    const bytesWritten = await pwrite(fd, rest, at);
    if (bytesWritten >= size) break;
    rest = sliceBytes(rest, bytesWritten, size);
    at += bytesWritten;
    size -= bytesWritten;
  }
}

// Reads and writes use node:fs's callback calls on the FileHandle's descriptor: the FileHandle's promise calls
// take two to three times the main thread's time per call (bench/fs-calls.mjs), and every application request
// is one of them.
function pread(fd: number, buf: Buffer, at: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readCallback(fd, buf, at, buf.length - at, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
}

function pwrite(fd: number, data: Bytes, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (error: NodeJS.ErrnoException | null, bytesWritten: number): void => (error ? reject(error) : resolve(bytesWritten));
    if (Buffer.isBuffer(data)) writeCallback(fd, data, 0, data.length, position, done);
    else writevCallback(fd, data, position, done);
  });
}

async function openDurable(path: string): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDWR | constants.O_DSYNC);
  } catch (error) {
    throw new ComponentError(`Unable to open ${path}`, path, error);
  }
}

interface ComponentGeometry {
  mediasize: number;
  sectorsize: number;
  blockDevice: boolean;
}

async function lockExclusive(fd: number, path: string): Promise<boolean> {
  let outcome: LockOutcome;
  try {
    outcome = await tryLockExclusive(fd);
  } catch (error) {
    throw new ComponentError(`Unable to lock ${path}`, path, error);
  }
  if (outcome === 'busy') throw new ComponentBusyError(path);
  return outcome === 'unsupported';
}

async function componentGeometry(handle: FileHandle, path: string): Promise<ComponentGeometry> {
  const st = await handle.stat({ bigint: true });
  if (st.isFile()) return { mediasize: Number(st.size), sectorsize: FILE_SECTOR_SIZE, blockDevice: false };
  if (st.isBlockDevice()) {
    try {
      return { ...(await blockDeviceGeometry(st.rdev)), blockDevice: true };
    } catch (error) {
      throw new ComponentError(`Unable to read the size of ${path}`, path, error);
    }
  }
  throw new ComponentError(`${path} is neither a regular file nor a block device`, path);
}

// Linux reports a disk's size in 512-byte units whatever its sector size; a partition has no queue/ of its own,
// so its sector size is read from the parent disk (the `..` is resolved by the kernel after the symlink).
async function blockDeviceGeometry(rdev: bigint): Promise<{ mediasize: number; sectorsize: number }> {
  const { major, minor } = deviceNumbers(rdev);
  const dir = `/sys/dev/block/${major}:${minor}`;
  const isPartition = await readFile(`${dir}/partition`).then(
    () => true,
    () => false,
  );
  const queue = isPartition ? `${dir}/../queue` : `${dir}/queue`;
  const sectors = await readSysfs(`${dir}/size`);
  const sectorsize = await readSysfs(`${queue}/logical_block_size`);
  return { mediasize: sectors * 512, sectorsize };
}

async function readSysfs(file: string): Promise<number> {
  return parseSysfsNumber(await readFile(file, 'utf8'), file);
}

function errnoCode(error: unknown): string | undefined {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
