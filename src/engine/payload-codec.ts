// What hastd does to a packet's payload on its way to and from the peer (hast_proto.c, hast_compression.c,
// hast_checksum.c): the sender compresses it, then checksums the compressed bytes, and says which algorithms it
// used in the nv header; the receiver verifies and decompresses according to those fields, whatever its own
// configuration. Research §6.2.

import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { ChecksumAlgorithm, CompressionAlgorithm } from '../config/hast-conf.js';
import { bufferList, byteLength, joinBytes, type Bytes } from './bytes.js';
import { ProtocolError } from './hast-proto.js';
import { lzfCompress, lzfDecompress, type LzfError } from './lzf.js';
import type { Nv } from './nv.js';

// How this node encodes what it sends: the resource's `checksum` and `compression` settings.
export interface PayloadEncoding {
  checksum: ChecksumAlgorithm;
  compression: CompressionAlgorithm;
}

// hastd tries LZF only on payloads longer than this, and keeps the result only if it saves at least as much.
export const LZF_MIN_SIZE = 1024;

// Both compressed forms start with the original length, 4 bytes little-endian.
const LENGTH_PREFIX = 4;

const ZEROES = Buffer.alloc(64 * 1024);

// Encodes a payload for sending as hastd's hast_proto_send() does: adds `compression` (only if the payload was
// actually compressed), `checksum` and `hash` to `nv`, and returns the bytes to send. With neither configured
// the payload is returned as it is, uncopied.
export function encodePayload(nv: Nv, data: Bytes, encoding: PayloadEncoding): Bytes {
  let payload = data;
  const compressed = compress(data, encoding.compression);
  if (compressed !== undefined) {
    nv.addString('compression', compressed.algorithm);
    payload = compressed.payload;
  }
  if (encoding.checksum !== 'none') {
    nv.addString('checksum', encoding.checksum);
    nv.addUint8Array('hash', digest(encoding.checksum, payload));
  }
  return payload;
}

// Decodes a received payload as hastd's hast_proto_recv_data() does: verifies the hash named by `checksum`,
// then undoes `compression`; a payload neither field names is returned as received, uncopied. The original
// length a compressed payload announces is checked against `maxLength` before anything is allocated. Throws
// ProtocolError, with hastd's messages where it has one: the packet cannot be trusted and the connection must go.
export function decodePayload(nv: Nv, payload: Bytes | undefined, maxLength: number): Bytes | undefined {
  if (payload === undefined) return undefined;
  verifyChecksum(nv, payload);
  const algorithm = nv.getString('compression');
  if (algorithm === undefined) return payload;
  if (algorithm === 'hole') return holeDecompress(payload, maxLength);
  if (algorithm === 'lzf') return lzfPayloadDecompress(joinBytes(payload), maxLength);
  throw new ProtocolError(`Unknown compression algorithm '${algorithm}'.`);
}

function compress(data: Bytes, algorithm: CompressionAlgorithm): { algorithm: 'hole' | 'lzf'; payload: Bytes } | undefined {
  if (algorithm === 'none') return undefined;
  const length = byteLength(data);
  // hastd's allzeros() works in 8-byte words; requests are whole sectors, so in practice every payload qualifies.
  if (length > 0 && length % 8 === 0 && isAllZero(data)) return { algorithm: 'hole', payload: lengthPrefix(length) };
  if (algorithm === 'hole' || length <= LZF_MIN_SIZE) return undefined;
  const stream = lzfCompress(joinBytes(data), length - LZF_MIN_SIZE);
  return stream === undefined ? undefined : { algorithm: 'lzf', payload: [lengthPrefix(length), stream] };
}

function holeDecompress(payload: Bytes, maxLength: number): Buffer {
  const size = byteLength(payload);
  if (size !== LENGTH_PREFIX) throw new ProtocolError(`Unable to decompress (invalid size: ${size}).`);
  const length = joinBytes(payload).readUInt32LE(0);
  checkLength('hole', length, maxLength);
  return Buffer.alloc(length);
}

function lzfPayloadDecompress(payload: Buffer, maxLength: number): Buffer {
  if (payload.length <= LENGTH_PREFIX) throw new ProtocolError(`Unable to decompress (invalid size: ${payload.length}).`);
  const length = payload.readUInt32LE(0);
  checkLength('lzf', length, maxLength);
  try {
    return lzfDecompress(payload.subarray(LENGTH_PREFIX), length);
  } catch (error) {
    // lzfDecompress throws nothing but LzfError for a stream of any content.
    throw new ProtocolError(`Unable to decompress: ${(error as LzfError).message}.`, { cause: error });
  }
}

function checkLength(algorithm: string, length: number, maxLength: number): void {
  if (length > maxLength) {
    throw new ProtocolError(`Unable to decompress (${algorithm} payload announces ${length} bytes, more than the ${maxLength} allowed).`);
  }
}

function verifyChecksum(nv: Nv, payload: Bytes): void {
  const algorithm = nv.getString('checksum');
  if (algorithm === undefined) return;
  const received = nv.getUint8Array('hash');
  if (received === undefined) throw new ProtocolError('Hash is missing.');
  if (algorithm !== 'crc32' && algorithm !== 'sha256') throw new ProtocolError(`Unknown checksum algorithm '${algorithm}'.`);
  const computed = digest(algorithm, payload);
  if (received.length !== computed.length) {
    throw new ProtocolError(`Invalid hash size (${received.length}) for ${algorithm}, should be ${computed.length}.`);
  }
  if (!computed.equals(received)) throw new ProtocolError('Hash mismatch.');
}

// crc32 goes out little-endian: hastd copies the host's uint32 as it is (its defect #7), which is
// little-endian on every platform HAST runs on in practice (x86, amd64, arm64).
function digest(algorithm: Exclude<ChecksumAlgorithm, 'none'>, payload: Bytes): Buffer {
  if (algorithm === 'sha256') {
    const hash = createHash('sha256');
    for (const buffer of bufferList(payload)) hash.update(buffer);
    return hash.digest();
  }
  let crc = 0;
  for (const buffer of bufferList(payload)) crc = crc32(buffer, crc);
  const hash = Buffer.allocUnsafe(4);
  hash.writeUInt32LE(crc, 0);
  return hash;
}

function lengthPrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(LENGTH_PREFIX);
  prefix.writeUInt32LE(length, 0);
  return prefix;
}

// memcmp against a block of zeroes: far faster than a loop over the bytes in JavaScript.
function isAllZero(data: Bytes): boolean {
  for (const buffer of bufferList(data)) {
    for (let at = 0; at < buffer.length; at += ZEROES.length) {
      const piece = buffer.subarray(at, at + ZEROES.length);
      if (!piece.equals(ZEROES.subarray(0, piece.length))) return false;
    }
  }
  return true;
}
