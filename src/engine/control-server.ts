// The daemon's end of the control socket (hastd's control_handle()): one request per connection, one reply,
// then the connection is closed. The daemon supplies the resources through ControlTarget.

import { createServer, type Server, type Socket } from 'node:net';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { listenPrivate } from '../common/unix-socket.js';
import {
  ALL_RESOURCES,
  ControlProtocolError,
  decodeControlRequest,
  EHAST_NOENTRY,
  EHAST_OK,
  encodeControlReply,
  type ControlReply,
  type ControlRequest,
  type ResourceFailure,
  type ResourceReply,
  type RoleReply,
} from './control-protocol.js';
import { encodePacket, PacketDecoder, type Packet } from './hast-proto.js';
import type { HastRole } from './metadata.js';

// What the control server needs from the daemon.
export interface ControlTarget {
  // Configured resources, in configuration order ("all").
  resourceNames(): string[];
  // The status of one resource, or undefined if it is not configured.
  describe(name: string): ResourceReply | undefined;
  // Switches a configured resource to `role` and resolves to the role it had before.
  setRole(name: string, role: HastRole): Promise<HastRole>;
}

// Tunables of the control server.
export interface ControlServerOptions {
  // How long a client may take to send its request, and to take the reply, before it is dropped.
  requestTimeoutMs?: number;
}

// hastctl waits HAST_TIMEOUT (20 s) for hastd; a client of ours gets as long.
const DEFAULT_REQUEST_TIMEOUT_MS = 20_000;

// A request names a few resources; 256 KiB holds hundreds of the longest names hast.conf allows.
// Control messages never carry a payload.
const REQUEST_LIMITS = { maxNvSize: 256 * 1024, maxPayloadSize: 0 };

// errno EIO: what a resource is answered with when the daemon failed on it. hastd passes on an errno the
// same way when it cannot get a worker's status.
const EIO = 5;

// The socket file is in the way and a daemon is behind it.
export class ControlSocketInUseError extends Error {
  constructor(path: string) {
    super(`control socket ${path} is in use: another hastd answers on it`);
    this.name = 'ControlSocketInUseError';
  }
}

// A listening control socket; `close()` stops it and removes the socket file.
export class ControlServer {
  private readonly server: Server;
  private readonly target: ControlTarget;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly connections = new Set<Socket>();
  // Role changes run one at a time, across connections, as in hastd's single-threaded parent.
  private roleChanges: Promise<unknown> = Promise.resolve();

  private constructor(server: Server, target: ControlTarget, log: Logger, timeoutMs: number) {
    this.server = server;
    this.target = target;
    this.log = log;
    this.timeoutMs = timeoutMs;
    server.on('connection', (socket) => this.accept(socket));
  }

  // Listens on `path` (mode 0600). A stale socket file is removed first; a live one is refused.
  static async listen(path: string, target: ControlTarget, log: Logger, options: ControlServerOptions = {}): Promise<ControlServer> {
    // allowHalfOpen: a client that shuts down its sending side after the request still gets the reply.
    const server = createServer({ allowHalfOpen: true });
    const controlServer = new ControlServer(server, target, log, options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    await listenPrivate(server, path, 'control socket', () => new ControlSocketInUseError(path));
    server.on('error', (error) => log.error(`Control socket ${path}: ${describeError(error)}`));
    return controlServer;
  }

  // Stops listening, drops open connections and waits for a role change in progress to finish.
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
    await this.roleChanges;
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    const decoder = new PacketDecoder(REQUEST_LIMITS);
    let received = false;
    const drop = (reason: string) => {
      if (socket.destroyed) return;
      this.log.warn(`Dropping control connection: ${reason}`);
      socket.destroy();
    };
    const seconds = this.timeoutMs / 1000;
    const timer = setTimeout(() => drop(received ? `reply not taken within ${seconds} s.` : `no request within ${seconds} s.`), this.timeoutMs);
    socket.on('close', () => {
      clearTimeout(timer);
      this.connections.delete(socket);
    });
    socket.on('error', (error) => drop(describeError(error)));
    socket.on('end', () => {
      if (!received) drop('closed before sending a whole request.');
    });
    socket.on('data', (chunk: Buffer) => {
      if (received) return;
      let packet: Packet | undefined;
      try {
        packet = decoder.push(chunk)[0];
      } catch (error) {
        drop(error instanceof Error ? error.message : String(error));
        return;
      }
      if (packet === undefined) return;
      received = true;
      this.answer(packet)
        .then((reply) => {
          if (socket.destroyed) return;
          if (reply === undefined) socket.destroy();
          // Once the reply is in the client's socket buffer our end can go; the client reads it from there.
          else socket.end(Buffer.concat(encodePacket(encodeControlReply(reply))), () => socket.destroy());
        })
        .catch((error: unknown) => {
          this.log.error(`Unable to answer control request: ${describeError(error)}`);
          socket.destroy();
        });
    });
  }

  // The reply to one request, or undefined when hastd would close without one (no `cmd`).
  private async answer(packet: Packet): Promise<ControlReply | undefined> {
    let request: ControlRequest;
    try {
      request = decodeControlRequest(packet.nv);
    } catch (error) {
      if (!(error instanceof ControlProtocolError)) throw error;
      this.log.error(error.message);
      if (error.hastError === undefined) return undefined;
      // The request did not say what it was; either shape encodes a bare global error the same way.
      return { cmd: 'status', error: error.hastError, resources: [] };
    }
    if (request.cmd === 'status') {
      return { cmd: 'status', error: EHAST_OK, resources: this.names(request).map((name) => this.describe(name)) };
    }
    const changes = this.roleChanges.then(() => this.setRoles(this.names(request), request.role));
    // A failed batch must not stop the ones queued behind it; its own request gets the error.
    this.roleChanges = changes.catch(() => undefined);
    return { cmd: 'setrole', error: EHAST_OK, resources: await changes };
  }

  private names(request: ControlRequest): string[] {
    return request.resources[0] === ALL_RESOURCES ? this.target.resourceNames() : request.resources;
  }

  private describe(name: string): ResourceReply | ResourceFailure {
    try {
      return this.target.describe(name) ?? { name, error: EHAST_NOENTRY };
    } catch (error) {
      this.log.error(`[${name}] Unable to obtain status: ${describeError(error)}`);
      return { name, error: EIO };
    }
  }

  private async setRoles(names: string[], role: HastRole): Promise<(RoleReply | ResourceFailure)[]> {
    const known = new Set(this.target.resourceNames());
    const results: (RoleReply | ResourceFailure)[] = [];
    for (const name of names) {
      if (!known.has(name)) {
        results.push({ name, error: EHAST_NOENTRY });
        continue;
      }
      try {
        results.push({ name, previousRole: await this.target.setRole(name, role) });
      } catch (error) {
        this.log.error(`[${name}] Unable to change role to ${role}: ${describeError(error)}`);
        results.push({ name, error: EIO });
      }
    }
    return results;
  }
}
