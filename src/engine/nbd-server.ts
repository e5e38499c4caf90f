// The NBD export of block devices on a UNIX socket: how a primary's data reaches Linux (the kernel's nbd
// client, qemu or libnbd), where FreeBSD's hastd uses GEOM Gate for /dev/hast/<name>. Fixed newstyle
// handshake only. Requests are pipelined: each is started as soon as it has arrived, replies go out as they
// complete, and what one connection may have running or buffered is bounded.

import { chmod } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { removeStaleSocket } from '../common/unix-socket.js';
import { BlockIoError, type BlockDevice } from './block-device.js';
import type { Bytes } from './bytes.js';
import {
  checkRequest,
  CLIENT_FLAGS_SIZE,
  CMD,
  CMD_FLAG,
  commandName,
  decodeClientFlags,
  decodeExportName,
  decodeExportRequest,
  decodeOptionHeader,
  decodeRequestHeader,
  encodeDoneChunk,
  encodeErrorChunk,
  encodeExportListEntry,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoText,
  encodeOptionError,
  encodeOptionReply,
  encodeReadChunkHeader,
  encodeSimpleReply,
  INFO,
  InvalidOptionError,
  NBD_ERROR,
  nbdErrorOf,
  NbdProtocolError,
  OPT,
  OPTION_HEADER_SIZE,
  REP,
  REQUEST_HEADER_SIZE,
  TRANSMISSION_FLAG,
  type ExportGeometry,
  type NbdRequest,
  type OptionHeader,
  type RequestFault,
} from './nbd-protocol.js';

// One export: a block device under the name clients ask for (the resource name).
export interface NbdExport {
  name: string;
  device: BlockDevice;
  description?: string;
}

// Finds the export a client names; undefined if there is none by that name.
export type NbdExportLookup = (name: string) => NbdExport | undefined;

// Tunables of the NBD server.
export interface NbdServerOptions {
  // The export a client gets when it names none (the empty name).
  defaultExport?: string;
  // The exports NBD_OPT_LIST reports; without it listing is refused with NBD_REP_ERR_POLICY.
  listExports?: () => NbdExport[];
  // How long a client may take to choose an export before it is dropped.
  handshakeTimeoutMs?: number;
}

// qemu-nbd gives a client 10 s to finish the handshake (--handshake-limit, after CVE-2024-7409), so
// connections that never get anywhere do not pile up.
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

// Option data we read and act on: an export name (at most 4096 bytes) and a few information requests fit
// several times over. Longer option data is skipped as it arrives, never buffered, and refused.
const MAX_OPTION_LENGTH = 16 * 1024;

// Requests one connection may have running, and bytes it may hold for them (data being written or read,
// replies the client has not taken yet). At either limit the socket is paused until requests complete or
// the client reads.
const MAX_IN_FLIGHT = 64;
const MAX_BUFFERED_BYTES = 32 * 1024 * 1024;

// proto.md: a write shorter than 2^25 bytes SHOULD NOT be taken for a denial of service. A refused write's
// data is skipped as it arrives, never buffered; but a header announcing more than this (and more than the
// export takes) is not worth reading minutes of data for: the connection is closed instead.
const MAX_SKIPPED_WRITE = 32 * 1024 * 1024;

// How long a connection whose end we closed waits for the client to close its side.
const CLOSE_LINGER_MS = 5_000;

// The preferred block size advertised: below a page, writes turn into read-modify-write on most devices.
const PREFERRED_BLOCK_SIZE = 4096;

// What every export offers: writable, with flush, FUA, trim and write zeroes. CAN_MULTI_CONN is safe because
// the server keeps no cache of its own: all connections to an export call the same BlockDevice, whose flush()
// makes every write it acknowledged durable whichever connection sent it, and a write acknowledged on one
// connection is what a read on any other returns.
const EXPORT_FLAGS =
  TRANSMISSION_FLAG.HAS_FLAGS |
  TRANSMISSION_FLAG.SEND_FLUSH |
  TRANSMISSION_FLAG.SEND_FUA |
  TRANSMISSION_FLAG.SEND_TRIM |
  TRANSMISSION_FLAG.SEND_WRITE_ZEROES |
  TRANSMISSION_FLAG.CAN_MULTI_CONN;

const EMPTY = Buffer.alloc(0);

// What a connection needs from its server.
interface ServerContext {
  lookup: NbdExportLookup;
  options: NbdServerOptions;
  log: Logger;
}

// A listening NBD socket; `close()` finishes what clients have started, then removes the socket file.
export class NbdServer {
  private readonly server: Server;
  private readonly context: ServerContext;
  private readonly connections = new Set<NbdConnection>();
  private nextConnectionId = 1;
  private closing: Promise<void> | undefined;

  private constructor(server: Server, context: ServerContext) {
    this.server = server;
    this.context = context;
    server.on('connection', (socket) => this.accept(socket));
  }

  // Listens on `socketPath` (mode 0600: whoever connects can write the device). A stale socket file is
  // removed first; one a live server answers on is refused.
  static async listen(
    socketPath: string,
    exports: NbdExportLookup,
    log: Logger,
    options: NbdServerOptions = {},
  ): Promise<NbdServer> {
    await removeStaleSocket(socketPath, 'NBD socket', () => new Error(`NBD socket ${socketPath} is in use: another server answers on it`));
    // allowHalfOpen: a client that shuts down its sending side still gets the replies to what it sent.
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new Error(`listening on NBD socket ${socketPath}`, { cause: error });
    });
    const nbdLog = log.child({ component: 'nbd' });
    const nbdServer = new NbdServer(server, { lookup: exports, options, log: nbdLog });
    server.on('error', (error) => nbdLog.error(`NBD socket ${socketPath}: ${describeError(error)}`));
    try {
      await chmod(socketPath, 0o600);
    } catch (error) {
      await nbdServer.close();
      throw new Error(`setting the mode of NBD socket ${socketPath}`, { cause: error });
    }
    return nbdServer;
  }

  // Stops accepting; each client's requests already received are answered (ESHUTDOWN for those not yet
  // started) before its connection is closed. Resolves once every connection is closed and the socket file
  // is gone. A request in flight is never abandoned: close() waits for the device to finish it.
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.connections].map((connection) => connection.shutdown()));
    await stopped;
  }

  private accept(socket: Socket): void {
    const connection = new NbdConnection(socket, this.nextConnectionId++, this.context);
    this.connections.add(connection);
    void connection.closed.then(() => this.connections.delete(connection));
  }
}

// Where a connection is in the byte stream, and what the bytes it waits for are.
type ReadState =
  | { phase: 'clientFlags' }
  | { phase: 'optionHeader' }
  | { phase: 'optionData'; header: OptionHeader }
  | { phase: 'skipOption'; header: OptionHeader; remaining: number }
  | { phase: 'requestHeader' }
  | { phase: 'writeData'; request: NbdRequest }
  | { phase: 'skipWriteData'; request: NbdRequest; fault: RequestFault; remaining: number }
  // Nothing more is read: the client said it is done, or the connection is closing.
  | { phase: 'done' };

const OPTION_HEADER: ReadState = { phase: 'optionHeader' };
const REQUEST_HEADER: ReadState = { phase: 'requestHeader' };
const DONE: ReadState = { phase: 'done' };

// The export a connection has entered the transmission phase with.
interface Attached {
  export: NbdExport;
  geometry: ExportGeometry;
}

// One client: the handshake, then requests until the client disconnects or the server shuts down.
class NbdConnection {
  readonly closed: Promise<void>;
  private readonly socket: Socket;
  private readonly context: ServerContext;
  private readonly log: Logger;
  private readonly input = new InputQueue();
  private state: ReadState = { phase: 'clientFlags' };
  // The client asked for NBD_OPT_EXPORT_NAME's reply without its 124 zero bytes.
  private noZeroes = false;
  private structuredReplies = false;
  private attached: Attached | undefined;
  private inFlight = 0;
  // Bytes of data held for requests in flight.
  private heldBytes = 0;
  // Replies gathered for one write to the socket.
  private output: Buffer[] = [];
  private outputBytes = 0;
  private outputScheduled = false;
  private paused = false;
  // No more requests will be read; the connection ends once those in flight are answered.
  private ending = false;
  private shuttingDown = false;
  // Whether this connection's one warning has been logged.
  private reported = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(socket: Socket, id: number, context: ServerContext) {
    this.socket = socket;
    this.context = context;
    this.log = context.log.child({ connection: id });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => this.onClose());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (error) => this.onError(error));
    socket.on('drain', () => this.resumeInput());
    const timeoutMs = context.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.handshakeTimer = setTimeout(() => this.drop(`no export chosen within ${timeoutMs / 1000} s`), timeoutMs);
    socket.write(encodeGreeting());
  }

  // The server is closing: a client still haggling is dropped; one attached gets its requests answered.
  shutdown(): Promise<void> {
    if (this.attached === undefined) {
      this.socket.destroy();
      return this.closed;
    }
    this.shuttingDown = true;
    this.socket.pause();
    // Requests already received are answered with ESHUTDOWN, as proto.md asks of a server going down.
    this.pump();
    this.stopReading();
    return this.closed;
  }

  private onData(chunk: Buffer): void {
    if (this.state.phase === 'done') return;
    this.input.push(chunk);
    this.pump();
  }

  // Acts on every whole message received, until bytes run out or the connection holds too much.
  private pump(): void {
    try {
      for (;;) {
        if (!this.shuttingDown && this.overloaded()) {
          this.paused = true;
          this.socket.pause();
          return;
        }
        if (!this.step()) return;
      }
    } catch (error) {
      this.drop(error instanceof NbdProtocolError ? error.message : `internal error: ${describeError(error)}`);
    }
  }

  private overloaded(): boolean {
    return this.inFlight >= MAX_IN_FLIGHT || this.heldBytes + this.outputBytes + this.socket.writableLength >= MAX_BUFFERED_BYTES;
  }

  private resumeInput(): void {
    if (!this.paused || this.shuttingDown || this.overloaded()) return;
    this.paused = false;
    // Bytes that arrived before the pause come first; they may fill the connection up again.
    this.pump();
    if (!this.paused) this.socket.resume();
  }

  // Consumes the next message if it has arrived whole; false when more bytes are needed.
  private step(): boolean {
    const state = this.state;
    switch (state.phase) {
      case 'clientFlags': {
        const bytes = this.input.take(CLIENT_FLAGS_SIZE);
        if (bytes === undefined) return false;
        this.noZeroes = decodeClientFlags(bytes).noZeroes;
        this.state = OPTION_HEADER;
        return true;
      }
      case 'optionHeader': {
        const bytes = this.input.take(OPTION_HEADER_SIZE);
        if (bytes === undefined) return false;
        const header = decodeOptionHeader(bytes);
        if (header.length <= MAX_OPTION_LENGTH) this.state = { phase: 'optionData', header };
        // NBD_OPT_EXPORT_NAME cannot be answered with an error; the others are refused once skipped.
        else if (header.option === OPT.EXPORT_NAME) throw new NbdProtocolError(`NBD_OPT_EXPORT_NAME with ${header.length} bytes of data`);
        else this.state = { phase: 'skipOption', header, remaining: header.length };
        return true;
      }
      case 'optionData': {
        const data = this.input.take(state.header.length);
        if (data === undefined) return false;
        this.state = OPTION_HEADER;
        this.handleOption(state.header.option, data);
        return true;
      }
      case 'skipOption': {
        state.remaining -= this.input.skip(state.remaining);
        if (state.remaining > 0) return false;
        this.state = OPTION_HEADER;
        const message = `option data of ${state.header.length} bytes is longer than the ${MAX_OPTION_LENGTH} bytes accepted`;
        this.send(encodeOptionError(state.header.option, REP.ERR_TOO_BIG, message));
        return true;
      }
      case 'requestHeader': {
        const bytes = this.input.take(REQUEST_HEADER_SIZE);
        if (bytes === undefined) return false;
        this.handleRequest(decodeRequestHeader(bytes));
        return true;
      }
      case 'writeData': {
        // The data goes to the device as the socket chunks it arrived in: gathering a 1 MiB write into one
        // buffer cost a fifth of the main thread.
        const data = this.input.takeViews(state.request.length);
        if (data === undefined) return false;
        this.state = REQUEST_HEADER;
        this.start(state.request, data);
        return true;
      }
      case 'skipWriteData': {
        state.remaining -= this.input.skip(state.remaining);
        if (state.remaining > 0) return false;
        this.state = REQUEST_HEADER;
        this.replyError(state.request, state.fault);
        return true;
      }
      case 'done':
        return false;
    }
  }

  private handleOption(option: number, data: Buffer): void {
    try {
      switch (option) {
        case OPT.EXPORT_NAME:
          return this.exportName(data);
        case OPT.ABORT:
          this.send(encodeOptionReply(option, REP.ACK));
          return this.stopReading();
        case OPT.LIST:
          return this.list(data);
        case OPT.INFO:
        case OPT.GO:
          return this.info(option, data);
        case OPT.STRUCTURED_REPLY:
          if (data.length > 0) throw new InvalidOptionError('NBD_OPT_STRUCTURED_REPLY takes no data');
          this.structuredReplies = true;
          return this.send(encodeOptionReply(option, REP.ACK));
        default:
          return this.send(encodeOptionError(option, REP.ERR_UNSUP, `option ${option} is not supported`));
      }
    } catch (error) {
      if (!(error instanceof InvalidOptionError)) throw error;
      this.send(encodeOptionError(option, REP.ERR_INVALID, error.message));
    }
  }

  // NBD_OPT_EXPORT_NAME has no error reply: a name we cannot serve ends the connection, as the spec says.
  private exportName(data: Buffer): void {
    let name: string;
    try {
      name = decodeExportName(data);
    } catch (error) {
      throw new NbdProtocolError(`NBD_OPT_EXPORT_NAME: ${describeError(error)}`);
    }
    const found = this.lookup(name);
    if (found === undefined) throw new NbdProtocolError(`NBD_OPT_EXPORT_NAME names unknown export "${name}"`);
    this.send(encodeExportNameReply(found.device.size, EXPORT_FLAGS, this.noZeroes));
    this.attach(found);
  }

  private list(data: Buffer): void {
    if (data.length > 0) throw new InvalidOptionError('NBD_OPT_LIST takes no data');
    const listExports = this.context.options.listExports;
    if (listExports === undefined) {
      this.send(encodeOptionError(OPT.LIST, REP.ERR_POLICY, 'this server does not list its exports'));
      return;
    }
    for (const entry of listExports()) {
      this.send(encodeOptionReply(OPT.LIST, REP.SERVER, encodeExportListEntry(entry.name, entry.description)));
    }
    this.send(encodeOptionReply(OPT.LIST, REP.ACK));
  }

  // NBD_OPT_INFO and NBD_OPT_GO: the export's size, flags and block sizes, then for GO the transmission phase.
  private info(option: typeof OPT.INFO | typeof OPT.GO, data: Buffer): void {
    const request = decodeExportRequest(data);
    const found = this.lookup(request.name);
    if (found === undefined) {
      this.log.info(`Client asked for unknown export "${request.name}".`);
      this.send(encodeOptionError(option, REP.ERR_UNKNOWN, `no export named "${request.name}"`));
      return;
    }
    const { device } = found;
    this.send(encodeOptionReply(option, REP.INFO, encodeInfoExport(device.size, EXPORT_FLAGS)));
    // Sent whether asked for or not: proto.md wants a server that enforces block sizes to say so.
    const blockSizes = encodeInfoBlockSize(device.blockSize, Math.max(PREFERRED_BLOCK_SIZE, device.blockSize), device.maxRequest);
    this.send(encodeOptionReply(option, REP.INFO, blockSizes));
    if (request.infoRequests.includes(INFO.NAME)) {
      this.send(encodeOptionReply(option, REP.INFO, encodeInfoText(INFO.NAME, found.name)));
    }
    if (request.infoRequests.includes(INFO.DESCRIPTION) && found.description !== undefined) {
      this.send(encodeOptionReply(option, REP.INFO, encodeInfoText(INFO.DESCRIPTION, found.description)));
    }
    this.send(encodeOptionReply(option, REP.ACK));
    if (option === OPT.GO) this.attach(found);
  }

  private lookup(name: string): NbdExport | undefined {
    const wanted = name === '' ? this.context.options.defaultExport : name;
    return wanted === undefined ? undefined : this.context.lookup(wanted);
  }

  private attach(found: NbdExport): void {
    clearTimeout(this.handshakeTimer);
    const { size, blockSize, maxRequest } = found.device;
    this.attached = { export: found, geometry: { size, minimumBlockSize: blockSize, maximumRequest: maxRequest } };
    this.state = REQUEST_HEADER;
    this.log.debug(`Client attached to export "${found.name}".`);
  }

  private handleRequest(request: NbdRequest): void {
    if (request.type === CMD.DISC) {
      this.stopReading();
      return;
    }
    const fault = checkRequest(request, this.attached!.geometry);
    if (request.type !== CMD.WRITE) {
      if (fault === undefined) this.start(request, EMPTY);
      else this.replyError(request, fault);
    } else if (fault === undefined) {
      this.state = { phase: 'writeData', request };
    } else if (request.length > MAX_SKIPPED_WRITE) {
      throw new NbdProtocolError(`${fault.reason}; closing rather than reading its data`);
    } else {
      // The refused write's data must still be consumed, or its bytes would be taken for requests.
      this.state = { phase: 'skipWriteData', request, fault, remaining: request.length };
    }
  }

  private start(request: NbdRequest, data: Bytes): void {
    if (this.shuttingDown) {
      this.replyError(request, { error: NBD_ERROR.ESHUTDOWN, reason: 'the server is shutting down' });
      return;
    }
    const held = request.type === CMD.READ || request.type === CMD.WRITE ? request.length : 0;
    this.inFlight++;
    this.heldBytes += held;
    this.run(request, data, held).catch((error: unknown) => this.drop(`internal error: ${describeError(error)}`));
  }

  // Runs one request on the device and queues its reply; a device failure becomes an error reply.
  private async run(request: NbdRequest, data: Bytes, held: number): Promise<void> {
    try {
      const result = await this.execute(request, data);
      this.replySuccess(request, result);
    } catch (error) {
      this.replyError(request, this.faultOf(request, error));
    } finally {
      this.inFlight--;
      this.heldBytes -= held;
      if (this.ending) this.endWhenIdle();
      else this.resumeInput();
    }
  }

  // Requests of length 0 are allowed by proto.md ("behaviour unspecified") and succeed without the device.
  private async execute(request: NbdRequest, data: Bytes): Promise<Buffer> {
    const { device } = this.attached!.export;
    const { offset, length } = request;
    const fua = (request.flags & CMD_FLAG.FUA) !== 0;
    switch (request.type) {
      case CMD.READ: {
        if (length === 0) return EMPTY;
        const read = await device.read(offset, length);
        if (read.length !== length) throw new BlockIoError('EIO', `device returned ${read.length} bytes for a read of ${length}`);
        return read;
      }
      case CMD.WRITE:
        if (length > 0) await device.write(offset, data, { fua });
        return EMPTY;
      case CMD.FLUSH:
        await device.flush();
        return EMPTY;
      case CMD.TRIM:
        if (length > 0) await trimDurably(device, offset, length, fua);
        return EMPTY;
      case CMD.WRITE_ZEROES:
        if (length === 0) return EMPTY;
        if ((request.flags & CMD_FLAG.NO_HOLE) === 0) await trimDurably(device, offset, length, fua);
        else await writeZeroes(device, offset, length, fua);
        return EMPTY;
    }
    throw new Error(`${commandName(request.type)} passed the request checks`);
  }

  private faultOf(request: NbdRequest, error: unknown): RequestFault {
    const what = `${commandName(request.type)} of ${request.length} bytes at offset ${request.offset}`;
    if (error instanceof BlockIoError) {
      this.log.debug(`${what} failed: ${error.message}`);
      return { error: nbdErrorOf(error.code), reason: error.message };
    }
    this.log.error(`${what} failed unexpectedly: ${describeError(error)}`);
    return { error: NBD_ERROR.EIO, reason: describeError(error) };
  }

  private replySuccess(request: NbdRequest, data: Buffer): void {
    if (request.type !== CMD.READ) this.send(encodeSimpleReply(request.handle, 0));
    else if (!this.structuredReplies) this.send(encodeSimpleReply(request.handle, 0), data);
    else if (data.length === 0) this.send(encodeDoneChunk(request.handle));
    else this.send(encodeReadChunkHeader(request.handle, request.offset, data.length), data);
  }

  // With structured replies negotiated the error carries a message (and a read must not get a simple reply).
  private replyError(request: NbdRequest, fault: RequestFault): void {
    if (this.structuredReplies) this.send(encodeErrorChunk(request.handle, fault.error, fault.reason));
    else this.send(encodeSimpleReply(request.handle, fault.error));
  }

  // Queues a message; everything queued while the event loop is busy goes out in one corked write.
  private send(message: Buffer, data?: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.output.push(message);
    this.outputBytes += message.length;
    if (data !== undefined) {
      this.output.push(data);
      this.outputBytes += data.length;
    }
    if (!this.outputScheduled) {
      this.outputScheduled = true;
      setImmediate(this.flushOutput);
    }
  }

  private readonly flushOutput = (): void => {
    this.outputScheduled = false;
    const output = this.output;
    this.output = [];
    this.outputBytes = 0;
    if (output.length === 0 || this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.cork();
    for (const buffer of output) this.socket.write(buffer);
    this.socket.uncork();
  };

  // NBD_CMD_DISC, NBD_OPT_ABORT, the client's end of stream or a shutdown: nothing more is read.
  private stopReading(): void {
    clearTimeout(this.handshakeTimer);
    this.state = DONE;
    this.input.clear();
    this.endWhenIdle();
  }

  // Ends our side once every request started is answered; the client then closes its side.
  private endWhenIdle(): void {
    this.ending = true;
    if (this.inFlight > 0 || this.socket.destroyed || this.socket.writableEnded) return;
    this.flushOutput();
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS);
  }

  private onEnd(): void {
    if (this.state.phase === 'done') return;
    const midRequest = this.state.phase !== 'requestHeader' || this.input.length > 0;
    if (this.attached === undefined) this.report('client closed the connection before choosing an export');
    else if (midRequest) this.report('client closed the connection in the middle of a request');
    // fio's nbd engine closes without NBD_CMD_DISC: harmless unless there were requests it never waited for.
    else if (this.inFlight > 0) this.report(`client closed the connection without NBD_CMD_DISC, ${this.inFlight} requests in flight`);
    this.stopReading();
  }

  // Once nothing more is read, the client may close without waiting for what we still send (proto.md asks
  // servers to take that gracefully after NBD_OPT_ABORT); only errors before that make the connection bad.
  private onError(error: Error): void {
    if (this.state.phase === 'done') this.log.debug(`Connection failed after the client finished: ${describeError(error)}`);
    else this.report(`connection failed: ${describeError(error)}`);
  }

  private onClose(): void {
    this.state = DONE;
    this.input.clear();
    this.output = [];
    this.outputBytes = 0;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.lingerTimer);
  }

  // Logs why the connection is bad, once: a client that misbehaves gets one line, not one per symptom.
  private report(reason: string): void {
    if (this.reported) return;
    this.reported = true;
    this.log.warn(`Dropping NBD connection: ${reason}.`);
  }

  // Hard disconnect. Requests in flight still finish on the device; their replies are dropped.
  private drop(reason: string): void {
    if (this.socket.destroyed) return;
    this.report(reason);
    this.socket.destroy();
  }
}

// NBD_CMD_TRIM, or NBD_CMD_WRITE_ZEROES without NO_HOLE (BlockDevice.trim reads back as zeros). FUA asks
// for what the command wrote to be durable before the reply, which for a trim takes a flush.
async function trimDurably(device: BlockDevice, offset: number, length: number, fua: boolean): Promise<void> {
  await device.trim(offset, length);
  if (fua) await device.flush();
}

// NBD_CMD_WRITE_ZEROES with NO_HOLE: the range must stay allocated, so zeros are written, a maxRequest at a time.
async function writeZeroes(device: BlockDevice, offset: number, length: number, fua: boolean): Promise<void> {
  const zeros = Buffer.alloc(Math.min(length, device.maxRequest));
  for (let done = 0; done < length; done += zeros.length) {
    const size = Math.min(zeros.length, length - done);
    await device.write(offset + done, zeros.subarray(0, size), { fua });
  }
}

// Bytes received and not yet consumed. take() hands out a whole message, copying only when it spans chunks.
class InputQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  take(size: number): Buffer | undefined {
    if (size > this.length) return undefined;
    if (size === 0) return EMPTY;
    this.length -= size;
    const first = this.chunks[0]!;
    if (first.length >= size) {
      if (first.length === size) this.chunks.shift();
      else this.chunks[0] = first.subarray(size);
      return first.subarray(0, size);
    }
    const whole = Buffer.allocUnsafe(size);
    for (let filled = 0; filled < size; ) filled += this.consume(whole, filled, size - filled);
    return whole;
  }

  // Takes a whole message as views of the chunks that hold it, uncopied.
  takeViews(size: number): Bytes | undefined {
    if (size > this.length) return undefined;
    this.length -= size;
    const views: Buffer[] = [];
    for (let left = size; left > 0; ) {
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length, left);
      views.push(count === chunk.length ? chunk : chunk.subarray(0, count));
      if (count === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(count);
      left -= count;
    }
    return views.length === 1 ? views[0]! : views;
  }

  // Drops up to `size` bytes; returns how many there were.
  skip(size: number): number {
    const skipped = Math.min(size, this.length);
    this.length -= skipped;
    for (let left = skipped; left > 0; ) left -= this.consume(undefined, 0, left);
    return skipped;
  }

  clear(): void {
    this.chunks = [];
    this.length = 0;
  }

  // Moves up to `size` bytes of the first chunk into `target` (or nowhere); returns how many.
  private consume(target: Buffer | undefined, at: number, size: number): number {
    const chunk = this.chunks[0]!;
    const count = Math.min(chunk.length, size);
    if (target !== undefined) chunk.copy(target, at, 0, count);
    if (count === chunk.length) this.chunks.shift();
    else this.chunks[0] = chunk.subarray(count);
    return count;
  }
}
