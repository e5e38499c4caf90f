// The NBD protocol as a server speaks it (NetworkBlockDevice/nbd doc/proto.md): the fixed newstyle handshake,
// transmission requests and simple or structured replies. Constants and pure encoding, decoding and request
// checks; nbd-server.ts does the I/O. All integers travel big-endian.

import type { BlockErrorCode } from './block-device.js';

// 'NBDMAGIC': the first eight bytes the server sends.
export const NBD_MAGIC = 0x4e42444d41474943n;
// 'IHAVEOPT': follows NBDMAGIC in the greeting, and starts every client option.
export const IHAVEOPT = 0x49484156454f5054n;
// Starts every reply to an option other than NBD_OPT_EXPORT_NAME.
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
// Starts every transmission request.
export const REQUEST_MAGIC = 0x25609513;
// Starts a simple reply.
export const SIMPLE_REPLY_MAGIC = 0x67446698;
// Starts each chunk of a structured reply.
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// The server's greeting: NBDMAGIC, IHAVEOPT and the handshake flags.
export const GREETING_SIZE = 18;
// The client's flags, its answer to the greeting.
export const CLIENT_FLAGS_SIZE = 4;
// Magic, option and length ahead of each option's data.
export const OPTION_HEADER_SIZE = 16;
// A transmission request without a write's data.
export const REQUEST_HEADER_SIZE = 28;
const SIMPLE_REPLY_SIZE = 16;
const STRUCTURED_HEADER_SIZE = 20;
const EXPORT_NAME_ZEROES = 124;

// Handshake flags the server sends after its magic.
export const HANDSHAKE_FLAG = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
// Flags a client answers with; any other bit means the client speaks something we do not.
export const CLIENT_FLAG = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;

// Transmission flags: what the export supports, sent with its size.
export const TRANSMISSION_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const;

// Handshake options (NBD_OPT_*).
export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

// Option reply types (NBD_REP_*); errors have bit 31 set.
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_TOO_BIG: 0x80000009,
} as const;

// Information types a client may ask NBD_OPT_INFO and NBD_OPT_GO for (NBD_INFO_*).
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

// Transmission commands (NBD_CMD_*).
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;

// Command flags (NBD_CMD_FLAG_*).
export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

// Structured reply chunk types this server sends.
export const REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, ERROR: 0x8001 } as const;
// Marks the last chunk of a structured reply.
export const REPLY_FLAG_DONE = 1 << 0;

// The error numbers a reply may carry (NBD_E*): fixed by the protocol, whatever the host's errno values.
export const NBD_ERROR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

// Strings (export names, descriptions, messages) must not be longer than this.
export const MAX_STRING_LENGTH = 4096;

// A client broke the protocol in a way that leaves the stream unusable; the connection is closed.
export class NbdProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdProtocolError';
  }
}

// An option's data did not parse; the option is refused with NBD_REP_ERR_INVALID and haggling goes on.
export class InvalidOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidOptionError';
  }
}

// What a client said it speaks.
export interface ClientFlags {
  fixedNewstyle: boolean;
  noZeroes: boolean;
}

// The fixed part of one client option; `length` bytes of data follow it.
export interface OptionHeader {
  option: number;
  length: number;
}

// The data of NBD_OPT_INFO and NBD_OPT_GO: which export, and which NBD_INFO_* items the client wants.
export interface ExportRequest {
  name: string;
  infoRequests: number[];
}

// One transmission request. `handle` is the client's opaque tag, echoed in the reply. An offset beyond 2^53
// is not exact, but any such offset lies beyond every export and is refused anyway.
export interface NbdRequest {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
}

// What requests an export accepts: its size and block size constraints.
export interface ExportGeometry {
  size: number;
  minimumBlockSize: number;
  maximumRequest: number;
}

// Why a request is refused without reaching the device.
export interface RequestFault {
  error: number;
  reason: string;
}

// Names of the commands, for messages.
const COMMAND_NAMES: Record<number, string> = {
  [CMD.READ]: 'NBD_CMD_READ',
  [CMD.WRITE]: 'NBD_CMD_WRITE',
  [CMD.DISC]: 'NBD_CMD_DISC',
  [CMD.FLUSH]: 'NBD_CMD_FLUSH',
  [CMD.TRIM]: 'NBD_CMD_TRIM',
  [CMD.CACHE]: 'NBD_CMD_CACHE',
  [CMD.WRITE_ZEROES]: 'NBD_CMD_WRITE_ZEROES',
  [CMD.BLOCK_STATUS]: 'NBD_CMD_BLOCK_STATUS',
};

// Command flags each supported command accepts. FUA is valid on every command once SEND_FUA is advertised.
const ALLOWED_FLAGS: Record<number, number> = {
  [CMD.READ]: CMD_FLAG.FUA,
  [CMD.WRITE]: CMD_FLAG.FUA,
  [CMD.FLUSH]: CMD_FLAG.FUA,
  [CMD.TRIM]: CMD_FLAG.FUA,
  [CMD.WRITE_ZEROES]: CMD_FLAG.FUA | CMD_FLAG.NO_HOLE,
};

const BLOCK_ERRORS: Record<BlockErrorCode, number> = {
  EIO: NBD_ERROR.EIO,
  EINVAL: NBD_ERROR.EINVAL,
  ENOSPC: NBD_ERROR.ENOSPC,
  EPERM: NBD_ERROR.EPERM,
  ESHUTDOWN: NBD_ERROR.ESHUTDOWN,
  EOPNOTSUPP: NBD_ERROR.ENOTSUP,
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

// The name of a command for messages: NBD_CMD_READ, or "command 9" for one the protocol does not define.
export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

// The NBD error a device failure is reported with.
export function nbdErrorOf(code: BlockErrorCode): number {
  return BLOCK_ERRORS[code];
}

// The server's first message: magics and handshake flags (fixed newstyle, and no zeroes if the client wants).
export function encodeGreeting(): Buffer {
  const bytes = Buffer.alloc(GREETING_SIZE);
  bytes.writeBigUInt64BE(NBD_MAGIC, 0);
  bytes.writeBigUInt64BE(IHAVEOPT, 8);
  bytes.writeUInt16BE(HANDSHAKE_FLAG.FIXED_NEWSTYLE | HANDSHAKE_FLAG.NO_ZEROES, 16);
  return bytes;
}

// The client's answer to the greeting; unknown bits are a protocol error (the spec makes the server hang up).
export function decodeClientFlags(bytes: Buffer): ClientFlags {
  const flags = bytes.readUInt32BE(0);
  const known = CLIENT_FLAG.FIXED_NEWSTYLE | CLIENT_FLAG.NO_ZEROES;
  if ((flags & ~known) !== 0) throw new NbdProtocolError(`unknown client flags 0x${flags.toString(16).padStart(8, '0')}`);
  return { fixedNewstyle: (flags & CLIENT_FLAG.FIXED_NEWSTYLE) !== 0, noZeroes: (flags & CLIENT_FLAG.NO_ZEROES) !== 0 };
}

// The 16 bytes that start an option: magic, option number and data length.
export function decodeOptionHeader(bytes: Buffer): OptionHeader {
  const magic = bytes.readBigUInt64BE(0);
  if (magic !== IHAVEOPT) throw new NbdProtocolError(`bad option magic 0x${magic.toString(16).padStart(16, '0')}`);
  return { option: bytes.readUInt32BE(8), length: bytes.readUInt32BE(12) };
}

// An export name: UTF-8 without NUL, at most MAX_STRING_LENGTH bytes.
export function decodeExportName(bytes: Buffer): string {
  if (bytes.length > MAX_STRING_LENGTH) throw new InvalidOptionError(`export name of ${bytes.length} bytes is too long`);
  let name: string;
  try {
    name = utf8.decode(bytes);
  } catch {
    throw new InvalidOptionError('export name is not valid UTF-8');
  }
  if (name.includes('\0')) throw new InvalidOptionError('export name contains a NUL character');
  return name;
}

// The data of NBD_OPT_INFO or NBD_OPT_GO: name length, name, count of information requests, the requests.
export function decodeExportRequest(data: Buffer): ExportRequest {
  if (data.length < 6) throw new InvalidOptionError(`option data of ${data.length} bytes is too short`);
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) throw new InvalidOptionError(`export name length ${nameLength} overruns the option data`);
  const name = decodeExportName(data.subarray(4, 4 + nameLength));
  const count = data.readUInt16BE(4 + nameLength);
  const rest = data.length - 6 - nameLength;
  if (rest !== count * 2) throw new InvalidOptionError(`${count} information requests do not fit ${rest} bytes`);
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(data.readUInt16BE(6 + nameLength + i * 2));
  return { name, infoRequests };
}

// One reply to an option: magic, the option it answers, reply type, data length and data.
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const bytes = Buffer.alloc(20 + data.length);
  bytes.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  bytes.writeUInt32BE(option, 8);
  bytes.writeUInt32BE(type, 12);
  bytes.writeUInt32BE(data.length, 16);
  data.copy(bytes, 20);
  return bytes;
}

// An error reply to an option, with a message for the person at the client.
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, utf8Truncated(message));
}

// The data of one NBD_REP_SERVER reply to NBD_OPT_LIST: the export's name, then its description.
export function encodeExportListEntry(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(nameBytes.length, 0);
  return Buffer.concat([length, nameBytes, utf8Truncated(description)]);
}

// NBD_INFO_EXPORT: size and transmission flags, as NBD_OPT_EXPORT_NAME sends them.
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const bytes = Buffer.alloc(12);
  bytes.writeUInt16BE(INFO.EXPORT, 0);
  bytes.writeBigUInt64BE(BigInt(size), 2);
  bytes.writeUInt16BE(transmissionFlags, 10);
  return bytes;
}

// NBD_INFO_NAME or NBD_INFO_DESCRIPTION: a string after the information type.
export function encodeInfoText(type: typeof INFO.NAME | typeof INFO.DESCRIPTION, text: string): Buffer {
  const header = Buffer.alloc(2);
  header.writeUInt16BE(type, 0);
  return Buffer.concat([header, utf8Truncated(text)]);
}

// NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum block sizes.
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const bytes = Buffer.alloc(14);
  bytes.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  bytes.writeUInt32BE(minimum, 2);
  bytes.writeUInt32BE(preferred, 6);
  bytes.writeUInt32BE(maximum, 10);
  return bytes;
}

// The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless the client said
// NBD_FLAG_C_NO_ZEROES.
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const bytes = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_ZEROES));
  bytes.writeBigUInt64BE(BigInt(size), 0);
  bytes.writeUInt16BE(transmissionFlags, 8);
  return bytes;
}

// The 28-byte header of a transmission request; a write's data follows it.
export function decodeRequestHeader(bytes: Buffer): NbdRequest {
  const magic = bytes.readUInt32BE(0);
  if (magic !== REQUEST_MAGIC) throw new NbdProtocolError(`bad request magic 0x${magic.toString(16).padStart(8, '0')}`);
  return {
    flags: bytes.readUInt16BE(4),
    type: bytes.readUInt16BE(6),
    handle: bytes.readBigUInt64BE(8),
    offset: bytes.readUInt32BE(16) * 0x100000000 + bytes.readUInt32BE(20),
    length: bytes.readUInt32BE(24),
  };
}

// Why the export refuses a request, or undefined if the device may be asked. Following proto.md: unknown
// commands and flags, misalignment to the minimum block size and reads or writes longer than the maximum get
// EINVAL; a range past the end gets ENOSPC for commands that write data, EINVAL otherwise. NBD_CMD_DISC has
// no reply and is the caller's to handle.
export function checkRequest(request: NbdRequest, geometry: ExportGeometry): RequestFault | undefined {
  const name = commandName(request.type);
  const allowed = ALLOWED_FLAGS[request.type];
  if (allowed === undefined) return { error: NBD_ERROR.EINVAL, reason: `${name} is not supported` };
  if ((request.flags & ~allowed) !== 0) {
    return { error: NBD_ERROR.EINVAL, reason: `${name} does not accept flags 0x${request.flags.toString(16)}` };
  }
  if (request.type === CMD.FLUSH) return undefined;
  const { offset, length } = request;
  const { size, minimumBlockSize, maximumRequest } = geometry;
  const range = `${length} bytes at offset ${offset}`;
  if (offset % minimumBlockSize !== 0 || length % minimumBlockSize !== 0) {
    return { error: NBD_ERROR.EINVAL, reason: `${name} of ${range} is not aligned to ${minimumBlockSize} bytes` };
  }
  if ((request.type === CMD.READ || request.type === CMD.WRITE) && length > maximumRequest) {
    return { error: NBD_ERROR.EINVAL, reason: `${name} of ${range} is longer than the maximum of ${maximumRequest} bytes` };
  }
  if (offset + length > size) {
    const writes = request.type === CMD.WRITE || request.type === CMD.WRITE_ZEROES;
    return { error: writes ? NBD_ERROR.ENOSPC : NBD_ERROR.EINVAL, reason: `${name} of ${range} ends past the export size ${size}` };
  }
  return undefined;
}

// A simple reply: error (0 for success) and handle; a successful read's data follows it.
export function encodeSimpleReply(handle: bigint, error: number): Buffer {
  const bytes = Buffer.alloc(SIMPLE_REPLY_SIZE);
  bytes.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  bytes.writeUInt32BE(error, 4);
  bytes.writeBigUInt64BE(handle, 8);
  return bytes;
}

function structuredHeader(bytes: Buffer, type: number, handle: bigint, length: number): Buffer {
  bytes.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  bytes.writeUInt16BE(REPLY_FLAG_DONE, 4);
  bytes.writeUInt16BE(type, 6);
  bytes.writeBigUInt64BE(handle, 8);
  bytes.writeUInt32BE(length, 16);
  return bytes;
}

// The header of a whole read's one structured chunk (NBD_REPLY_TYPE_OFFSET_DATA, done); `dataLength` bytes
// of data follow it. Sending the data as one chunk after the device returned it all means no error can follow.
export function encodeReadChunkHeader(handle: bigint, offset: number, dataLength: number): Buffer {
  const bytes = structuredHeader(Buffer.alloc(STRUCTURED_HEADER_SIZE + 8), REPLY_TYPE.OFFSET_DATA, handle, 8 + dataLength);
  bytes.writeBigUInt64BE(BigInt(offset), STRUCTURED_HEADER_SIZE);
  return bytes;
}

// A final NBD_REPLY_TYPE_NONE chunk: success without data (a zero-length read).
export function encodeDoneChunk(handle: bigint): Buffer {
  return structuredHeader(Buffer.alloc(STRUCTURED_HEADER_SIZE), REPLY_TYPE.NONE, handle, 0);
}

// A final NBD_REPLY_TYPE_ERROR chunk: the error and a message for the person at the client.
export function encodeErrorChunk(handle: bigint, error: number, message: string): Buffer {
  const text = utf8Truncated(message);
  const bytes = structuredHeader(Buffer.alloc(STRUCTURED_HEADER_SIZE + 6 + text.length), REPLY_TYPE.ERROR, handle, 6 + text.length);
  bytes.writeUInt32BE(error, STRUCTURED_HEADER_SIZE);
  bytes.writeUInt16BE(text.length, STRUCTURED_HEADER_SIZE + 4);
  text.copy(bytes, STRUCTURED_HEADER_SIZE + 6);
  return bytes;
}

// UTF-8 bytes of `text`, cut to the protocol's string limit on a character boundary.
function utf8Truncated(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= MAX_STRING_LENGTH) return bytes;
  let end = MAX_STRING_LENGTH;
  while ((bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
