// LZF, the compression hastd uses for `compression lzf` (liblzf 3.x by Marc Lehmann, sbin/hastd/lzf.c). A
// stream is a sequence of items, each starting with a control byte:
//   000LLLLL                      a literal run: the next L+1 bytes, as they are;
//   LLLooooo oooooooo             a back reference (L from 1 to 6): L+2 bytes copied from o+1 bytes back in
//                                 the output, o being the 13 offset bits;
//   111ooooo LLLLLLLL oooooooo    the same for L+9 bytes.
// The compressor here is a plain hash-table matcher writing that format; its output need not be
// byte-identical to liblzf's.

// The stream cannot be decoded: it is truncated, refers outside the output, or decodes to the wrong length.
export class LzfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LzfError';
  }
}

const MAX_LITERAL = 32;
// Back references reach at most 8 KiB back and copy 3 to 264 bytes (a length field of 1 to 7 + 255).
const MAX_DISTANCE = 1 << 13;
const MIN_MATCH = 3;
const MAX_MATCH = 7 + 255 + 2;
const LONG_MATCH = 7 + 2;

const HASH_BITS = 14;

// Compresses `input`; undefined when the stream would take more than `maxOutput` bytes (hastd then sends the
// data uncompressed). An empty input gives an empty stream.
export function lzfCompress(input: Buffer, maxOutput: number): Buffer | undefined {
  // A stream is never longer than the input plus one control byte per 32 literals and one more (each back
  // reference saves at least the control byte of the literal run it splits), so that is all there is to reserve.
  const out = Buffer.allocUnsafe(Math.max(0, Math.min(maxOutput, input.length + Math.ceil(input.length / MAX_LITERAL) + 1)));
  // Position + 1 of the last place each 3-byte prefix was seen; 0 means never.
  const seen = new Int32Array(1 << HASH_BITS);
  let op = 0;
  let literalStart = 0;

  // Writes input[from, to) as literal runs; false if the output is full.
  const literals = (from: number, to: number): boolean => {
    for (let at = from; at < to; at += MAX_LITERAL) {
      const count = Math.min(MAX_LITERAL, to - at);
      if (op + 1 + count > out.length) return false;
      out[op++] = count - 1;
      // A loop beats Buffer.copy's call overhead for at most 32 bytes.
      for (let i = at; i < at + count; i++) out[op++] = input[i]!;
    }
    return true;
  };

  let ip = 0;
  while (ip + MIN_MATCH <= input.length) {
    const slot = prefixHash(input, ip);
    const candidate = seen[slot]! - 1;
    seen[slot] = ip + 1;
    const distance = ip - candidate;
    if (candidate < 0 || distance > MAX_DISTANCE || !samePrefix(input, candidate, ip)) {
      ip++;
      continue;
    }
    const limit = Math.min(MAX_MATCH, input.length - ip);
    let length = MIN_MATCH;
    while (length < limit && input[candidate + length] === input[ip + length]) length++;
    if (!literals(literalStart, ip)) return undefined;
    if (op + (length < LONG_MATCH ? 2 : 3) > out.length) return undefined;
    const offset = distance - 1;
    if (length < LONG_MATCH) {
      out[op++] = ((length - 2) << 5) | (offset >> 8);
    } else {
      out[op++] = (7 << 5) | (offset >> 8);
      out[op++] = length - LONG_MATCH;
    }
    out[op++] = offset & 0xff;
    // Remember the positions inside the match too, so later data can refer to them.
    for (let at = ip + 1; at < ip + length && at + MIN_MATCH <= input.length; at++) seen[prefixHash(input, at)] = at + 1;
    ip += length;
    literalStart = ip;
  }
  if (!literals(literalStart, input.length)) return undefined;
  return out.subarray(0, op);
}

// Decompresses a stream that must decode to exactly `outputLength` bytes; throws LzfError otherwise. Reads
// and writes are bounds-checked, so any stream, however malformed, only ever produces that error.
export function lzfDecompress(input: Buffer, outputLength: number): Buffer {
  const out = Buffer.allocUnsafe(outputLength);
  let ip = 0;
  let op = 0;
  while (ip < input.length) {
    const at = ip;
    const control = input[ip++]!;
    if (control < MAX_LITERAL) {
      const count = control + 1;
      if (ip + count > input.length) throw new LzfError(`LZF stream truncated: literal run of ${count} bytes at input offset ${at}, ${input.length - ip} left`);
      if (op + count > outputLength) throw new LzfError(`LZF literal run at input offset ${at} overruns the ${outputLength}-byte output`);
      for (const end = ip + count; ip < end; ) out[op++] = input[ip++]!;
      continue;
    }
    let length = control >> 5;
    if (length === 7) {
      if (ip >= input.length) throw new LzfError(`LZF stream truncated: back reference at input offset ${at} lacks its length byte`);
      length += input[ip++]!;
    }
    if (ip >= input.length) throw new LzfError(`LZF stream truncated: back reference at input offset ${at} lacks its offset byte`);
    const distance = ((control & 0x1f) << 8) + input[ip++]! + 1;
    length += 2;
    if (distance > op) throw new LzfError(`LZF back reference at input offset ${at} reaches ${distance} bytes back from output offset ${op}`);
    if (op + length > outputLength) throw new LzfError(`LZF back reference at input offset ${at} overruns the ${outputLength}-byte output`);
    // Byte by byte: a reference may overlap the bytes it produces (a repeated pattern).
    for (let from = op - distance; length > 0; length--) out[op++] = out[from++]!;
  }
  if (op !== outputLength) throw new LzfError(`LZF stream decodes to ${op} bytes, not the announced ${outputLength}`);
  return out;
}

function prefixHash(input: Buffer, at: number): number {
  const prefix = (input[at]! << 16) | (input[at + 1]! << 8) | input[at + 2]!;
  return Math.imul(prefix, 2654435761) >>> (32 - HASH_BITS);
}

function samePrefix(input: Buffer, a: number, b: number): boolean {
  return input[a] === input[b] && input[a + 1] === input[b + 1] && input[a + 2] === input[b + 2];
}
