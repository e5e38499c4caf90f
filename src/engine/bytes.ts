// Data on its way to a disk or a socket: one Buffer, or several meant back to back (a scatter-gather list).
// A 128 KiB payload arrives from a socket in two or more chunks; passing the chunks on as a list and writing
// them with pwritev or writev costs no copy, where gathering them into one Buffer costs a copy per byte.
export type Bytes = Buffer | readonly Buffer[];

// The number of bytes in all the buffers.
export function byteLength(bytes: Bytes): number {
  if (Buffer.isBuffer(bytes)) return bytes.length;
  let length = 0;
  for (const buffer of bytes) length += buffer.length;
  return length;
}

// The bytes as a list of buffers, uncopied.
export function bufferList(bytes: Bytes): readonly Buffer[] {
  return Buffer.isBuffer(bytes) ? [bytes] : bytes;
}

// The bytes in one Buffer: uncopied when they already are one, else gathered into a new one.
export function joinBytes(bytes: Bytes): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes.length === 1) return bytes[0]!;
  return Buffer.concat(bytes);
}

// Bytes `start` to `end` (exclusive), as views of the buffers that hold them: nothing is copied.
export function sliceBytes(bytes: Bytes, start: number, end: number): Bytes {
  if (Buffer.isBuffer(bytes)) return bytes.subarray(start, end);
  const slice: Buffer[] = [];
  let at = 0;
  for (const buffer of bytes) {
    const next = at + buffer.length;
    if (at >= start && next <= end) slice.push(buffer);
    else if (next > start && at < end) slice.push(buffer.subarray(Math.max(0, start - at), Math.min(buffer.length, end - at)));
    if (next >= end) break;
    at = next;
  }
  return slice.length === 1 ? slice[0]! : slice;
}
