// CARP transitions from devd's stream socket (/var/run/devd.pipe): connects, splits the byte stream into lines,
// reports the transitions of the vhids this node follows, and reconnects with backoff when devd goes away.
// Node cannot open devd's seqpacket socket (libuv is SOCK_STREAM only), hence the deprecated stream one.
import { createConnection, type Socket } from 'node:net';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { CarpVhid } from '../config/supervisor-conf.js';
import { parseDevdLine, type CarpTransition, type DevdLine } from './devd-event.js';

// Kernel devctl messages are far shorter (DEVCTL_MAXBUF is 1025 bytes); a longer line is not devd's and is
// dropped rather than buffered, so a stream without newlines cannot grow our memory.
export const MAX_DEVD_LINE_BYTES = 8 * 1024;

const NEWLINE = 0x0a;

// How a DevdSource is set up.
export interface DevdSourceOptions {
  socketPath: string;
  log: Logger;
  // The vhids to report (carp.vhids); transitions of others are logged at debug. Empty: report every vhid.
  vhids: CarpVhid[];
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

// What a DevdSource tells its owner. Events are hints: after onConnected the owner should re-read the real CARP
// state, since devd does not replay what happened while we were away.
export interface DevdHandlers {
  onCarp(transition: CarpTransition): void;
  onConnected(): void;
  onDisconnected(reason: string): void;
}

type SourceState = 'new' | 'running' | 'stopped';

// The devd event source: a client of devd's stream socket that never gives up until stopped. It never throws
// into the event loop: bad lines, lost connections and failing handlers are logged.
export class DevdSource {
  private readonly socketPath: string;
  private readonly log: Logger;
  private readonly vhids: CarpVhid[];
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly handlers: DevdHandlers;
  private state: SourceState = 'new';
  private socket: Socket | undefined;
  private isConnected = false;
  private backoffMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  // Failed connection attempts since the last success: only the first is worth a warning.
  private failedAttempts = 0;

  constructor(options: DevdSourceOptions, handlers: DevdHandlers) {
    this.socketPath = options.socketPath;
    this.log = options.log.child({ component: 'devd' });
    this.vhids = options.vhids;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.handlers = handlers;
    this.backoffMs = this.initialBackoffMs;
  }

  // Whether the socket to devd is open right now.
  get connected(): boolean {
    return this.isConnected;
  }

  // Connects, and keeps reconnecting until stop().
  start(): void {
    if (this.state !== 'new') throw new Error(`DevdSource for ${this.socketPath} was already started`);
    this.state = 'running';
    this.connect();
  }

  // Closes the connection and cancels any reconnect; resolves once the socket is closed. onDisconnected is not
  // called for a stop the owner asked for.
  async stop(): Promise<void> {
    this.state = 'stopped';
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    if (socket === undefined || socket.closed) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  private connect(): void {
    const socket = createConnection(this.socketPath);
    const lines = new LineSplitter(MAX_DEVD_LINE_BYTES, () => {
      this.log.warn({ maxBytes: MAX_DEVD_LINE_BYTES }, `Discarded a devd line longer than ${MAX_DEVD_LINE_BYTES} bytes.`);
    });
    let failure: Error | undefined;
    this.socket = socket;
    socket.on('connect', () => {
      this.isConnected = true;
      this.failedAttempts = 0;
      this.backoffMs = this.initialBackoffMs;
      this.log.info({ socketPath: this.socketPath }, 'Connected to devd.');
      this.call('onConnected', () => this.handlers.onConnected());
    });
    socket.on('data', (chunk: Buffer) => {
      for (const line of lines.push(chunk)) {
        // A handler may have stopped the source halfway through a chunk.
        if (this.state !== 'running') return;
        this.handleLine(line);
      }
    });
    socket.on('error', (error) => {
      failure = error;
    });
    socket.on('close', () => this.closed(failure));
  }

  private closed(failure: Error | undefined): void {
    this.socket = undefined;
    if (this.state === 'stopped') {
      this.isConnected = false;
      return;
    }
    if (this.isConnected) {
      this.isConnected = false;
      const reason = failure === undefined ? 'devd closed the connection' : describeError(failure);
      this.log.warn({ socketPath: this.socketPath, reason }, 'Lost the connection to devd; reconnecting.');
      this.call('onDisconnected', () => this.handlers.onDisconnected(reason));
    } else {
      this.failedAttempts++;
      const fields = { socketPath: this.socketPath, error: describeError(failure), retryInMs: this.backoffMs };
      if (this.failedAttempts === 1) this.log.warn(fields, 'Cannot connect to devd; retrying until it answers.');
      else this.log.debug({ ...fields, attempts: this.failedAttempts }, 'Still cannot connect to devd.');
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === 'running') this.connect();
    }, delay);
  }

  private handleLine(line: string): void {
    const parsed = this.parse(line);
    if (parsed?.kind !== 'carp') return;
    const transition = parsed.transition;
    if (!this.follows(transition)) {
      this.log.debug({ ...transition }, 'Ignored a CARP transition of a vhid this node does not follow.');
      return;
    }
    this.call('onCarp', () => this.handlers.onCarp(transition));
  }

  // The line's meaning, or undefined (and a warning) for a malformed one: one bad line must not end the stream.
  private parse(line: string): DevdLine | undefined {
    try {
      return parseDevdLine(line);
    } catch (error) {
      this.log.warn({ error: describeError(error) }, 'Skipped a malformed devd line.');
      return undefined;
    }
  }

  private follows(transition: CarpTransition): boolean {
    if (this.vhids.length === 0) return true;
    return this.vhids.some((followed) => followed.vhid === transition.vhid && followed.interface === transition.interface);
  }

  // A handler's failure is its owner's bug; it must not take the event source (or the process) down with it.
  private call(handler: keyof DevdHandlers, run: () => void): void {
    try {
      run();
    } catch (error) {
      this.log.error({ handler, error: describeError(error) }, `The devd ${handler} handler failed.`);
    }
  }
}

// Splits a byte stream into newline-terminated lines, holding at most `maxBytes` of an unfinished line. A longer
// line is reported once through `onOversized` and dropped up to its newline.
class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private discarding = false;

  constructor(
    private readonly maxBytes: number,
    private readonly onOversized: () => void,
  ) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline < 0 ? chunk.length : newline;
      if (!this.discarding) this.hold(chunk.subarray(start, end));
      if (newline < 0) break;
      if (!this.discarding) lines.push(Buffer.concat(this.pending).toString('utf8'));
      this.discarding = false;
      this.pending = [];
      this.pendingBytes = 0;
      start = newline + 1;
    }
    return lines;
  }

  private hold(piece: Buffer): void {
    if (this.pendingBytes + piece.length <= this.maxBytes) {
      this.pending.push(piece);
      this.pendingBytes += piece.length;
      return;
    }
    this.discarding = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.onOversized();
  }
}
