import type { Socket } from 'node:net';
import { bufferList, byteLength, type Bytes } from './bytes.js';
import { Nv, NvError } from './nv.js';

// Protocol version this engine speaks (hastd's HAST_PROTO_VERSION).
export const HAST_PROTO_VERSION = 2;

const HEADER_SIZE = 5;

// Packets received but not yet asked for; past the high mark the socket is paused so a peer cannot make us
// buffer without bound.
const QUEUE_HIGH = 64;
const QUEUE_LOW = 16;

// How long a connection closed after a last packet waits for the peer to close its side.
const CLOSE_LINGER_MS = 5_000;

// Bounds on what a peer may make us buffer: an nv header is a few hundred bytes in practice; payloads are
// at most one request (MAXPHYS) or one activemap, whichever the caller allows.
export interface PacketLimits {
  maxNvSize: number;
  maxPayloadSize: number;
}

// Defaults that fit every packet hastd sends: requests of up to 1 MiB and activemaps of up to 64 MiB.
export const DEFAULT_PACKET_LIMITS: PacketLimits = { maxNvSize: 64 * 1024, maxPayloadSize: 64 * 1024 * 1024 };

// One framed message: `version:u8 | size:u32le`, an nv list of `size` bytes, then the payload whose length
// the nv's `size` field (uint32) gives, if it has one. A received payload is the socket's chunks as they came
// (views, uncopied); joinBytes() makes one Buffer of it where one is needed.
export interface Packet {
  version: number;
  nv: Nv;
  payload: Bytes | undefined;
}

// A peer broke the framing rules; the connection cannot be trusted any further and is closed.
export class ProtocolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

// Encodes one packet as the buffers to write: header, nv, then the payload's buffers, none of them copied.
export function encodePacket(nv: Nv, payload?: Bytes, version = HAST_PROTO_VERSION): Buffer[] {
  const payloadSize = payload === undefined ? 0 : byteLength(payload);
  if (payload !== undefined) nv.addUint32('size', payloadSize);
  const body = nv.encode();
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt8(version, 0);
  header.writeUInt32LE(body.length, 1);
  return payload === undefined || payloadSize === 0 ? [header, body] : [header, body, ...bufferList(payload)];
}

// Turns a byte stream into packets; throws ProtocolError on anything hastd's hast_proto_recv would refuse.
export class PacketDecoder {
  private readonly limits: PacketLimits;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pending: { version: number; nv: Nv; payloadSize: number } | undefined;
  private nvSize: number | undefined;
  private version = 0;

  constructor(limits: PacketLimits = DEFAULT_PACKET_LIMITS) {
    this.limits = limits;
  }

  // Bytes received but not yet part of a whole packet.
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Packet[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const packets: Packet[] = [];
    for (;;) {
      const packet = this.next();
      if (packet === undefined) return packets;
      packets.push(packet);
    }
  }

  private next(): Packet | undefined {
    if (this.pending === undefined) {
      if (this.nvSize === undefined) {
        if (this.buffered < HEADER_SIZE) return undefined;
        const header = this.take(HEADER_SIZE);
        this.version = header.readUInt8(0);
        this.nvSize = header.readUInt32LE(1);
        if (this.version < 1 || this.version > HAST_PROTO_VERSION) {
          throw new ProtocolError(`Unsupported protocol version ${this.version} in packet header.`);
        }
        if (this.nvSize > this.limits.maxNvSize) {
          throw new ProtocolError(`Packet header announces ${this.nvSize} bytes of nv data (limit ${this.limits.maxNvSize}).`);
        }
      }
      if (this.buffered < this.nvSize) return undefined;
      let nv: Nv;
      try {
        nv = Nv.decode(this.take(this.nvSize));
      } catch (error) {
        if (error instanceof NvError) throw new ProtocolError(`Invalid nv data in packet: ${error.message}.`, { cause: error });
        throw error;
      }
      this.nvSize = undefined;
      const payloadSize = nv.getUint32('size') ?? 0;
      if (payloadSize > this.limits.maxPayloadSize) {
        throw new ProtocolError(`Packet announces a ${payloadSize}-byte payload (limit ${this.limits.maxPayloadSize}).`);
      }
      this.pending = { version: this.version, nv, payloadSize };
    }
    const { version, nv, payloadSize } = this.pending;
    if (this.buffered < payloadSize) return undefined;
    this.pending = undefined;
    return { version, nv, payload: payloadSize === 0 ? undefined : this.takeViews(payloadSize) };
  }

  // Takes `size` buffered bytes as views of the chunks that hold them: a payload is never copied.
  private takeViews(size: number): Bytes {
    this.buffered -= size;
    const views: Buffer[] = [];
    for (let left = size; left > 0; ) {
      const chunk = this.chunks[0]!;
      if (chunk.length <= left) {
        this.chunks.shift();
        views.push(chunk);
        left -= chunk.length;
      } else {
        this.chunks[0] = chunk.subarray(left);
        views.push(chunk.subarray(0, left));
        left = 0;
      }
    }
    return views.length === 1 ? views[0]! : views;
  }

  // Takes `size` buffered bytes (a header or nv list) as one Buffer: a view when they sit in one chunk, else a
  // copy of exactly those bytes.
  private take(size: number): Buffer {
    if (size === 0) return Buffer.alloc(0);
    this.buffered -= size;
    const first = this.chunks[0]!;
    if (first.length >= size) {
      if (first.length === size) this.chunks.shift();
      else this.chunks[0] = first.subarray(size);
      return first.subarray(0, size);
    }
    const taken = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length, size - filled);
      chunk.copy(taken, filled, 0, count);
      filled += count;
      if (count === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(count);
    }
    return taken;
  }
}

// A connection that was closed or failed while a packet was awaited.
export class ConnectionClosedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConnectionClosedError';
  }
}

// A socket speaking framed packets: `receive()` awaits the next one (with a timeout), `send()` writes one with
// TCP_NODELAY; writes issued in the same tick are corked together into one segment where they fit.
export class PacketConnection {
  readonly socket: Socket;
  private readonly decoder: PacketDecoder;
  private readonly queue: Packet[] = [];
  private waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout } | undefined;
  private failure: Error | undefined;
  private corked = false;

  constructor(socket: Socket, limits: PacketLimits = DEFAULT_PACKET_LIMITS) {
    this.socket = socket;
    this.decoder = new PacketDecoder(limits);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(new ConnectionClosedError(`Connection error: ${error.message}.`, { cause: error })));
    socket.on('close', () => this.fail(new ConnectionClosedError('Connection closed by peer.')));
  }

  // Sends one packet; a closed connection throws the error that closed it.
  send(nv: Nv, payload?: Bytes, version?: number): void {
    if (this.failure !== undefined) throw this.failure;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    for (const buffer of encodePacket(nv, payload, version)) this.socket.write(buffer);
  }

  // The next packet; rejects with ConnectionClosedError, ProtocolError, or a timeout error after `timeoutMs`.
  receive(timeoutMs?: number): Promise<Packet> {
    const packet = this.queue.shift();
    if (this.socket.isPaused() && this.queue.length <= QUEUE_LOW && this.failure === undefined) this.socket.resume();
    if (packet !== undefined) return Promise.resolve(packet);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.waiter !== undefined) return Promise.reject(new Error('receive() called twice without waiting for the first.'));
    return new Promise((resolve, reject) => {
      const waiter: NonNullable<PacketConnection['waiter']> = { resolve, reject };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.waiter = undefined;
          reject(new ConnectionClosedError(`No packet received within ${timeoutMs / 1000} s.`));
        }, timeoutMs);
      }
      this.waiter = waiter;
    });
  }

  // Closes the connection; a pending receive() rejects.
  close(reason = 'Connection closed.'): void {
    this.fail(new ConnectionClosedError(reason));
    this.socket.destroy();
  }

  // Sends a last packet (a refusal the peer must be able to read) and closes once it is written. A peer that
  // never closes its side is cut off after CLOSE_LINGER_MS.
  sendAndClose(nv: Nv, version?: number): void {
    if (this.failure === undefined) this.send(nv, undefined, version);
    this.fail(new ConnectionClosedError('Connection closed.'));
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  private onData(chunk: Buffer): void {
    let packets: Packet[];
    try {
      packets = this.decoder.push(chunk);
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
      return;
    }
    for (const packet of packets) {
      const waiter = this.waiter;
      if (waiter !== undefined) {
        this.waiter = undefined;
        clearTimeout(waiter.timer);
        waiter.resolve(packet);
      } else {
        this.queue.push(packet);
      }
    }
    if (this.queue.length >= QUEUE_HIGH) this.socket.pause();
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }
}
