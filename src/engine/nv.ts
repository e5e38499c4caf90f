// HAST's nv encoding (sbin/hastd/nv.c): the name/value lists inside the metadata block, the control
// protocol and the wire protocol. A list is a run of records with no count and no terminator:
//
//   type:u8 | namesize:u8 | dsize:u32le | name, NUL-terminated, zero-padded to 8 | data, zero-padded to 8
//
// hastd writes the little-endian form (type byte high bit clear) on disk and on the wire; the host-order
// form (bit 0x80) only ever exists in its memory, so it is neither accepted nor produced here.

const SCALAR_TYPES = ['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'] as const;

// A fixed-size integer type; its array form is the same name with `[]`.
type NvScalarType = (typeof SCALAR_TYPES)[number];

// Every nv value type, named as in nv.c (`uint64[]` is NV_TYPE_UINT64_ARRAY).
type NvType = NvScalarType | `${NvScalarType}[]` | 'string';

interface ScalarValues {
  int8: number;
  uint8: number;
  int16: number;
  uint16: number;
  int32: number;
  uint32: number;
  int64: bigint;
  uint64: bigint;
}

interface ArrayValues {
  int8: Int8Array;
  uint8: Uint8Array;
  int16: Int16Array;
  uint16: Uint16Array;
  int32: Int32Array;
  uint32: Uint32Array;
  int64: BigInt64Array;
  uint64: BigUint64Array;
}

// Position in this list + 1 is the type code: 1..8 scalars, 9..16 arrays, 17 string.
const TYPES_BY_CODE: readonly NvType[] = [
  ...SCALAR_TYPES,
  ...SCALAR_TYPES.map((type) => `${type}[]` as const),
  'string',
];

const HEADER_SIZE = 6;
// hastd's names are ASCII; insisting on UTF-8 keeps every decoded list encodable again byte for byte.
const NAME_DECODER = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const HOST_ORDER = 0x80;
const MAX_NAME_BYTES = 254;

// How one integer of a scalar type sits in little-endian bytes.
interface ElementCodec<V> {
  size: number;
  read(buf: Buffer, offset: number): V;
  write(buf: Buffer, offset: number, value: V): void;
  fits(value: V): boolean;
}

function smallIntCodec(size: 1 | 2 | 4, signed: boolean): ElementCodec<number> {
  const bits = size * 8;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  return {
    size,
    read: (buf, offset) => (signed ? buf.readIntLE(offset, size) : buf.readUIntLE(offset, size)),
    write: (buf, offset, value) => {
      if (signed) buf.writeIntLE(value, offset, size);
      else buf.writeUIntLE(value, offset, size);
    },
    fits: (value) => Number.isInteger(value) && value >= min && value <= max,
  };
}

const ELEMENTS: { [T in NvScalarType]: ElementCodec<ScalarValues[T]> } = {
  int8: smallIntCodec(1, true),
  uint8: smallIntCodec(1, false),
  int16: smallIntCodec(2, true),
  uint16: smallIntCodec(2, false),
  int32: smallIntCodec(4, true),
  uint32: smallIntCodec(4, false),
  int64: {
    size: 8,
    read: (buf, offset) => buf.readBigInt64LE(offset),
    write: (buf, offset, value) => {
      buf.writeBigInt64LE(value, offset);
    },
    fits: (value) => BigInt.asIntN(64, value) === value,
  },
  uint64: {
    size: 8,
    read: (buf, offset) => buf.readBigUInt64LE(offset),
    write: (buf, offset, value) => {
      buf.writeBigUInt64LE(value, offset);
    },
    fits: (value) => BigInt.asUintN(64, value) === value,
  },
};

const TYPED_ARRAYS: { [T in NvScalarType]: (values: ScalarValues[T][]) => ArrayValues[T] } = {
  int8: (values) => Int8Array.from(values),
  uint8: (values) => Uint8Array.from(values),
  int16: (values) => Int16Array.from(values),
  uint16: (values) => Uint16Array.from(values),
  int32: (values) => Int32Array.from(values),
  uint32: (values) => Uint32Array.from(values),
  int64: (values) => BigInt64Array.from(values),
  uint64: (values) => BigUint64Array.from(values),
};

// An nv list that cannot be decoded, or a value that cannot be encoded; the message says what and where.
export class NvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvError';
  }
}

interface NvRecord {
  name: string;
  type: NvType;
  data: Buffer;
}

function roundup8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

// An ordered nv list: typed add methods build one, `decode` reads one, typed get methods look fields up.
// Lookup follows nv_find(): the first record with the name decides; if its type differs the field reads as
// absent (`get...` returns undefined, `require...` throws NvError naming the field).
export class Nv {
  private readonly records: NvRecord[] = [];

  addInt8(name: string, value: number): this { return this.addScalar(name, 'int8', value); }
  addUint8(name: string, value: number): this { return this.addScalar(name, 'uint8', value); }
  addInt16(name: string, value: number): this { return this.addScalar(name, 'int16', value); }
  addUint16(name: string, value: number): this { return this.addScalar(name, 'uint16', value); }
  addInt32(name: string, value: number): this { return this.addScalar(name, 'int32', value); }
  addUint32(name: string, value: number): this { return this.addScalar(name, 'uint32', value); }
  addInt64(name: string, value: bigint): this { return this.addScalar(name, 'int64', value); }
  addUint64(name: string, value: bigint): this { return this.addScalar(name, 'uint64', value); }

  addInt8Array(name: string, values: Int8Array): this { return this.addArray(name, 'int8', values); }
  addUint8Array(name: string, values: Uint8Array): this { return this.addArray(name, 'uint8', values); }
  addInt16Array(name: string, values: Int16Array): this { return this.addArray(name, 'int16', values); }
  addUint16Array(name: string, values: Uint16Array): this { return this.addArray(name, 'uint16', values); }
  addInt32Array(name: string, values: Int32Array): this { return this.addArray(name, 'int32', values); }
  addUint32Array(name: string, values: Uint32Array): this { return this.addArray(name, 'uint32', values); }
  addInt64Array(name: string, values: BigInt64Array): this { return this.addArray(name, 'int64', values); }
  addUint64Array(name: string, values: BigUint64Array): this { return this.addArray(name, 'uint64', values); }

  addString(name: string, value: string): this {
    if (value.includes('\0')) throw new NvError(`string field "${name}" contains a NUL character`);
    return this.append(name, 'string', Buffer.from(`${value}\0`, 'utf8'));
  }

  getInt8(name: string): number | undefined { return this.scalar(name, 'int8'); }
  getUint8(name: string): number | undefined { return this.scalar(name, 'uint8'); }
  getInt16(name: string): number | undefined { return this.scalar(name, 'int16'); }
  getUint16(name: string): number | undefined { return this.scalar(name, 'uint16'); }
  getInt32(name: string): number | undefined { return this.scalar(name, 'int32'); }
  getUint32(name: string): number | undefined { return this.scalar(name, 'uint32'); }
  getInt64(name: string): bigint | undefined { return this.scalar(name, 'int64'); }
  getUint64(name: string): bigint | undefined { return this.scalar(name, 'uint64'); }

  getInt8Array(name: string): Int8Array | undefined { return this.array(name, 'int8'); }
  getUint8Array(name: string): Uint8Array | undefined { return this.array(name, 'uint8'); }
  getInt16Array(name: string): Int16Array | undefined { return this.array(name, 'int16'); }
  getUint16Array(name: string): Uint16Array | undefined { return this.array(name, 'uint16'); }
  getInt32Array(name: string): Int32Array | undefined { return this.array(name, 'int32'); }
  getUint32Array(name: string): Uint32Array | undefined { return this.array(name, 'uint32'); }
  getInt64Array(name: string): BigInt64Array | undefined { return this.array(name, 'int64'); }
  getUint64Array(name: string): BigUint64Array | undefined { return this.array(name, 'uint64'); }

  getString(name: string): string | undefined {
    const data = this.dataOf(name, 'string');
    return data?.toString('utf8', 0, data.length - 1);
  }

  requireInt8(name: string): number { return this.getInt8(name) ?? this.absent(name, 'int8'); }
  requireUint8(name: string): number { return this.getUint8(name) ?? this.absent(name, 'uint8'); }
  requireInt16(name: string): number { return this.getInt16(name) ?? this.absent(name, 'int16'); }
  requireUint16(name: string): number { return this.getUint16(name) ?? this.absent(name, 'uint16'); }
  requireInt32(name: string): number { return this.getInt32(name) ?? this.absent(name, 'int32'); }
  requireUint32(name: string): number { return this.getUint32(name) ?? this.absent(name, 'uint32'); }
  requireInt64(name: string): bigint { return this.getInt64(name) ?? this.absent(name, 'int64'); }
  requireUint64(name: string): bigint { return this.getUint64(name) ?? this.absent(name, 'uint64'); }

  requireInt8Array(name: string): Int8Array {
    return this.getInt8Array(name) ?? this.absent(name, 'int8[]');
  }
  requireUint8Array(name: string): Uint8Array {
    return this.getUint8Array(name) ?? this.absent(name, 'uint8[]');
  }
  requireInt16Array(name: string): Int16Array {
    return this.getInt16Array(name) ?? this.absent(name, 'int16[]');
  }
  requireUint16Array(name: string): Uint16Array {
    return this.getUint16Array(name) ?? this.absent(name, 'uint16[]');
  }
  requireInt32Array(name: string): Int32Array {
    return this.getInt32Array(name) ?? this.absent(name, 'int32[]');
  }
  requireUint32Array(name: string): Uint32Array {
    return this.getUint32Array(name) ?? this.absent(name, 'uint32[]');
  }
  requireInt64Array(name: string): BigInt64Array {
    return this.getInt64Array(name) ?? this.absent(name, 'int64[]');
  }
  requireUint64Array(name: string): BigUint64Array {
    return this.getUint64Array(name) ?? this.absent(name, 'uint64[]');
  }

  requireString(name: string): string { return this.getString(name) ?? this.absent(name, 'string'); }

  // The little-endian byte form, exactly as hastd's nv_hton() leaves it.
  encode(): Buffer {
    return Buffer.concat(this.records.map(encodeRecord));
  }

  // Reads records up to the end of `buf` or the first zero type byte (what follows it is ignored, as the
  // zero padding of a metadata block must be) and validates each one as nv_validate() does.
  static decode(buf: Buffer): Nv {
    const nv = new Nv();
    let offset = 0;
    while (offset < buf.length && buf[offset] !== 0) {
      const { record, next } = decodeRecord(buf, offset);
      nv.records.push(record);
      offset = next;
    }
    return nv;
  }

  private addScalar<T extends NvScalarType>(name: string, type: T, value: ScalarValues[T]): this {
    const codec: ElementCodec<ScalarValues[T]> = ELEMENTS[type];
    if (!codec.fits(value)) throw new NvError(`value ${value} does not fit ${type} field "${name}"`);
    const data = Buffer.alloc(codec.size);
    codec.write(data, 0, value);
    return this.append(name, type, data);
  }

  private addArray<T extends NvScalarType>(
    name: string,
    element: T,
    values: Iterable<ScalarValues[T]> & { length: number },
  ): this {
    // hastd refuses a record with no data, so an empty array could never be read back.
    if (values.length === 0) throw new NvError(`${element} array field "${name}" is empty`);
    const codec: ElementCodec<ScalarValues[T]> = ELEMENTS[element];
    const data = Buffer.alloc(values.length * codec.size);
    let offset = 0;
    for (const value of values) {
      codec.write(data, offset, value);
      offset += codec.size;
    }
    return this.append(name, `${element}[]`, data);
  }

  private append(name: string, type: NvType, data: Buffer): this {
    const nameBytes = Buffer.byteLength(name, 'utf8');
    if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES || name.includes('\0')) {
      throw new NvError(`nv field name "${name}" must be 1 to ${MAX_NAME_BYTES} bytes without NUL`);
    }
    this.records.push({ name, type, data });
    return this;
  }

  private dataOf(name: string, type: NvType): Buffer | undefined {
    const record = this.records.find((r) => r.name === name);
    return record?.type === type ? record.data : undefined;
  }

  private scalar<T extends NvScalarType>(name: string, type: T): ScalarValues[T] | undefined {
    const data = this.dataOf(name, type);
    return data === undefined ? undefined : ELEMENTS[type].read(data, 0);
  }

  private array<T extends NvScalarType>(name: string, element: T): ArrayValues[T] | undefined {
    const data = this.dataOf(name, `${element}[]`);
    if (data === undefined) return undefined;
    const codec: ElementCodec<ScalarValues[T]> = ELEMENTS[element];
    const values: ScalarValues[T][] = [];
    for (let offset = 0; offset < data.length; offset += codec.size) values.push(codec.read(data, offset));
    return TYPED_ARRAYS[element](values);
  }

  private absent(name: string, type: NvType): never {
    const record = this.records.find((r) => r.name === name);
    if (record === undefined) throw new NvError(`nv field "${name}" (${type}) is missing`);
    throw new NvError(`nv field "${name}" is ${record.type}, expected ${type}`);
  }
}

function encodeRecord({ name, type, data }: NvRecord): Buffer {
  const namesize = Buffer.byteLength(name, 'utf8') + 1;
  const dataStart = HEADER_SIZE + roundup8(namesize);
  const record = Buffer.alloc(dataStart + roundup8(data.length));
  record.writeUInt8(TYPES_BY_CODE.indexOf(type) + 1, 0);
  record.writeUInt8(namesize, 1);
  record.writeUInt32LE(data.length, 2);
  record.write(name, HEADER_SIZE, 'utf8');
  data.copy(record, dataStart);
  return record;
}

function decodeRecord(buf: Buffer, at: number): { record: NvRecord; next: number } {
  const where = `nv record at byte ${at}`;
  if (buf.length - at < HEADER_SIZE) {
    throw new NvError(`${where}: header needs ${HEADER_SIZE} bytes, only ${buf.length - at} left`);
  }
  const code = buf.readUInt8(at);
  if ((code & HOST_ORDER) !== 0) {
    throw new NvError(`${where}: type 0x${code.toString(16)} is in host byte order, not little-endian`);
  }
  const type = TYPES_BY_CODE[code - 1];
  if (type === undefined) throw new NvError(`${where}: unknown type code ${code}`);
  const namesize = buf.readUInt8(at + 1);
  const dsize = buf.readUInt32LE(at + 2);
  if (namesize === 0) throw new NvError(`${where}: name size is 0`);
  const nameStart = at + HEADER_SIZE;
  const dataStart = nameStart + roundup8(namesize);
  if (dataStart > buf.length) throw new NvError(`${where}: name runs past the end of the buffer`);
  const nameField = buf.subarray(nameStart, nameStart + namesize);
  if (nameField.indexOf(0) !== namesize - 1) {
    throw new NvError(`${where}: name is not a NUL-terminated string of ${namesize - 1} bytes`);
  }
  let name: string;
  try {
    name = NAME_DECODER.decode(nameField.subarray(0, namesize - 1));
  } catch {
    throw new NvError(`${where}: name is not valid UTF-8`);
  }

  const field = `nv field "${name}" at byte ${at}`;
  if (dsize === 0) throw new NvError(`${field}: data size is 0`);
  const next = dataStart + roundup8(dsize);
  if (next > buf.length) throw new NvError(`${field}: data (${dsize} bytes) runs past the end of the buffer`);
  const data = buf.subarray(dataStart, dataStart + dsize);
  const problem = dataProblem(type, data);
  if (problem !== undefined) throw new NvError(`${field}: ${problem}`);
  return { record: { name, type, data: Buffer.from(data) }, next };
}

// What is wrong with a record's data for its type, if anything.
function dataProblem(type: NvType, data: Buffer): string | undefined {
  if (type === 'string') {
    if (data[data.length - 1] !== 0) return 'string is not NUL-terminated';
    if (data.indexOf(0) !== data.length - 1) return 'string contains a NUL before its end';
    return undefined;
  }
  if (type.endsWith('[]')) {
    const { size } = ELEMENTS[type.slice(0, -2) as NvScalarType];
    return data.length % size === 0 ? undefined : `${type} data size ${data.length} is not a multiple of ${size}`;
  }
  const { size } = ELEMENTS[type as NvScalarType];
  return data.length === size ? undefined : `${type} needs ${size} bytes of data, has ${data.length}`;
}
