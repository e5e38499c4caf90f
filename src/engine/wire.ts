// The requests and replies a primary and its secondary exchange once connected (hast.h HIO_*, primary.c
// remote_send_thread/remote_recv_thread, secondary.c requnpack/send_thread). Requests travel on the primary's
// first connection, replies on the second. Pure encoding and validation; the workers do the I/O.

import { MAXPHYS } from './activemap.js';
import { byteLength, joinBytes, type Bytes } from './bytes.js';
import type { BlockErrorCode } from './block-device.js';
import type { Packet, PacketLimits } from './hast-proto.js';
import { Nv } from './nv.js';
import { decodePayload } from './payload-codec.js';

// Requests and replies carry a small nv header and at most one MAXPHYS of data; nothing bigger is buffered
// for a peer once its connection is established (the handshake's activemap excepted).
export const WIRE_PACKET_LIMITS: PacketLimits = { maxNvSize: 4096, maxPayloadSize: MAXPHYS };

// Request commands (the `cmd` field).
export const HIO = { READ: 1, WRITE: 2, DELETE: 3, FLUSH: 4, KEEPALIVE: 5 } as const;

// A command that carries a range and goes to the secondary's disk.
export type HioCommand = (typeof HIO)[Exclude<keyof typeof HIO, 'KEEPALIVE'>];

// FreeBSD errno numbers: what the `error` field of a reply carries, whatever the host's own numbering.
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EOPNOTSUPP: 45,
  ENOTCONN: 57,
  ESHUTDOWN: 58,
  ETIMEDOUT: 60,
  ECONNREFUSED: 61,
} as const;

const ERRNO_TEXT: Record<number, string> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  5: 'Input/output error',
  6: 'Device not configured',
  9: 'Bad file descriptor',
  12: 'Cannot allocate memory',
  13: 'Permission denied',
  16: 'Device busy',
  22: 'Invalid argument',
  27: 'File too large',
  28: 'No space left on device',
  30: 'Read-only file system',
  45: 'Operation not supported',
  57: 'Socket is not connected',
  58: "Can't send after socket shutdown",
  60: 'Operation timed out',
  61: 'Connection refused',
};

// Why a connection failed, for a log line. PacketConnection's errors (ConnectionClosedError, ProtocolError)
// already quote their cause, so only the outer message is used.
export function connectionFailure(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// strerror(3) as FreeBSD words it, for an errno number received from or sent to the peer.
export function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `Unknown error: ${errno}`;
}

// The FreeBSD errno number for a local failure (a ComponentError or Node system error); EIO if unknown.
export function errnoOf(error: unknown): number {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (code === 'ENOTSUP') return ERRNO.EOPNOTSUPP;
      if (code in ERRNO) return ERRNO[code as keyof typeof ERRNO];
    }
    current = current.cause;
  }
  return ERRNO.EIO;
}

// How a block device reports a failure the peer gave us.
export function blockErrorCode(errno: number): BlockErrorCode {
  switch (errno) {
    case ERRNO.EINVAL:
      return 'EINVAL';
    case ERRNO.ENOSPC:
      return 'ENOSPC';
    case ERRNO.EPERM:
      return 'EPERM';
    case ERRNO.EOPNOTSUPP:
      return 'EOPNOTSUPP';
    default:
      return 'EIO';
  }
}

// hastd's reqlog() names a request like `WRITE(4096, 131072)`; FLUSH has no range.
export function requestName(cmd: number, offset: number | bigint, length: number | bigint): string {
  switch (cmd) {
    case HIO.READ:
      return `READ(${offset}, ${length})`;
    case HIO.WRITE:
      return `WRITE(${offset}, ${length})`;
    case HIO.DELETE:
      return `DELETE(${offset}, ${length})`;
    case HIO.FLUSH:
      return 'FLUSH';
    case HIO.KEEPALIVE:
      return 'KEEPALIVE';
    default:
      return `UNKNOWN(${cmd})`;
  }
}

// One request from the primary. FLUSH uses offset 0 and length 0; WRITE carries `length` bytes of data.
export interface WireRequest {
  cmd: HioCommand;
  seq: number;
  offset: number;
  length: number;
  // memsync writes ask for an early `received` reply.
  memsync?: boolean;
  data?: Bytes;
}

// The nv header of a request (the data, if any, follows as the packet payload).
export function requestNv(request: WireRequest): Nv {
  const nv = new Nv()
    .addUint8('cmd', request.cmd)
    .addUint64('seq', BigInt(request.seq))
    .addUint64('offset', BigInt(request.offset))
    .addUint64('length', BigInt(request.length));
  if (request.memsync) nv.addUint8('memsync', 1);
  return nv;
}

// The packet a primary sends when it has had nothing to send for a while.
export function keepaliveNv(): Nv {
  return new Nv().addUint8('cmd', HIO.KEEPALIVE);
}

// The nv header of a reply: `received` marks a memsync early acknowledgement, `error` a FreeBSD errno.
export function replyNv(seq: bigint, options: { error?: number; received?: boolean } = {}): Nv {
  const nv = new Nv().addUint64('seq', seq);
  if (options.received) nv.addInt8('received', 1);
  if (options.error) nv.addInt16('error', options.error);
  return nv;
}

// A reply as the primary reads it; missing fields read as 0, as nv_get_*() does.
export interface WireReply {
  seq: bigint;
  received: boolean;
  error: number;
  data: Buffer | undefined;
}

// Reads a reply packet; a READ reply's data is verified and decompressed as its fields say (ProtocolError if
// that fails).
export function parseReply(packet: Packet): WireReply {
  const { nv } = packet;
  const data = decodePayload(nv, packet.payload, MAXPHYS);
  return {
    seq: nv.getUint64('seq') ?? 0n,
    received: nv.getInt8('received') !== undefined,
    error: nv.getInt16('error') ?? 0,
    data: data === undefined ? undefined : joinBytes(data),
  };
}

// What a secondary needs to know to judge a request.
export interface RequestLimits {
  sectorsize: number;
  datasize: bigint;
}

// A request as the secondary reads it: a keepalive, one it refuses (EINVAL, with hastd's log text), or one to
// execute. Offsets are in bytes of the data area.
export type ParsedRequest =
  | { kind: 'keepalive' }
  | { kind: 'invalid'; cmd: number; seq: bigint; memsync: boolean; reason: string }
  | { kind: 'valid'; cmd: HioCommand; seq: bigint; offset: number; length: number; memsync: boolean; data: Bytes | undefined };

// requnpack(): the checks hastd's secondary makes, in its order and with its messages, plus one it leaves to
// chance: a WRITE must carry exactly `length` bytes. A payload that fails its checksum or does not decompress
// throws ProtocolError: the connection cannot be trusted.
export function parseRequest(packet: Packet, limits: RequestLimits): ParsedRequest {
  const payload = decodePayload(packet.nv, packet.payload, MAXPHYS);
  const { nv } = packet;
  const cmd = nv.getUint8('cmd') ?? 0;
  const seq = nv.getUint64('seq') ?? 0n;
  const memsync = cmd === HIO.WRITE && nv.getUint8('memsync') !== undefined;
  const invalid = (reason: string): ParsedRequest => ({ kind: 'invalid', cmd, seq, memsync, reason });
  if (cmd === 0) return invalid("Header contains no 'cmd' field.");
  if (cmd === HIO.KEEPALIVE) return { kind: 'keepalive' };
  if (seq === 0n) return invalid("Header contains no 'seq' field.");
  if (cmd === HIO.FLUSH) return { kind: 'valid', cmd, seq, offset: 0, length: 0, memsync: false, data: undefined };
  if (cmd !== HIO.READ && cmd !== HIO.WRITE && cmd !== HIO.DELETE) return invalid(`Header contains invalid 'cmd' (${cmd}).`);
  const offset = nv.getUint64('offset');
  if (offset === undefined) return invalid("Header is missing 'offset' field.");
  const length = nv.getUint64('length');
  if (length === undefined) return invalid("Header is missing 'length' field.");
  if (length === 0n) return invalid('Data length is zero.');
  if (cmd !== HIO.DELETE && length > BigInt(MAXPHYS)) return invalid(`Data length is too large (${length} > ${MAXPHYS}).`);
  const sector = BigInt(limits.sectorsize);
  if (offset % sector !== 0n) return invalid(`Offset ${offset} is not multiple of sector size.`);
  if (length % sector !== 0n) return invalid(`Length ${length} is not multiple of sector size.`);
  if (offset + length > limits.datasize) return invalid(`Data offset is too large (${offset + length} > ${limits.datasize}).`);
  let data: Bytes | undefined;
  if (cmd === HIO.WRITE) {
    data = payload;
    const size = data === undefined ? 0 : byteLength(data);
    if (BigInt(size) !== length) return invalid(`Data size ${size} differs from the request length ${length}.`);
  }
  return { kind: 'valid', cmd, seq, offset: Number(offset), length: Number(length), memsync, data };
}
