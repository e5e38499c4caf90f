import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { parseHastAddress, type HastAddress } from '../config/address.js';
import type { HastResource } from '../config/hast-conf.js';
import { HAST_PROTO_VERSION, PacketConnection, type Packet } from './hast-proto.js';
import { parseOpening, refusalMessage, TOKEN_SIZE, tokenMessage, type OpeningRequest } from './handshake.js';
import type { HastRole } from './metadata.js';
import type { Nv } from './nv.js';
import type { WorkerContext } from './primary.js';
import type { OpenComponent } from './resource-component.js';
import { SecondaryWorker } from './secondary.js';
import { WIRE_PACKET_LIMITS, connectionFailure } from './wire.js';

// HAST_TIMEOUT: how long an accepted connection may take to send its first packet, and how long the first
// connection of a primary waits for its second.
export const HANDSHAKE_TIMEOUT_MS = 20_000;

// A resource as the listener sees it: its configuration, its current role, and its secondary worker.
export interface SecondaryTarget {
  readonly resource: HastResource;
  readonly role: HastRole;
  // The logger and hook event sink for a secondary worker of this resource.
  workerContext(): WorkerContext;
  // A primary (re)connects: the session of any earlier primary ends first.
  stopSecondary(): Promise<void>;
  // Takes over a worker whose two connections are validated; its handshake is starting.
  adoptSecondary(worker: SecondaryWorker): void;
}

// What a PeerListener works with.
export interface PeerListenerOptions {
  log: Logger;
  lookup(name: string): SecondaryTarget | undefined;
  // Whether any resource names this IP as its remote (see isKnownPeer); without it every peer may send a
  // first packet, and the per-resource check still refuses strangers.
  peerAllowed?(ip: string): boolean | Promise<boolean>;
  // How secondary workers open their components (default: LocalComponent.open).
  openComponent?: OpenComponent;
  handshakeTimeoutMs?: number;
}

// The first connection of a primary, answered with a token, waiting for the second one.
interface HalfOpenSession {
  token: Buffer;
  connection: PacketConnection;
  version: number;
  peer: string;
  timer: NodeJS.Timeout;
}

// The secondary side of connection setup (hastd.c listen_accept, research §6.3): accepts primaries on the
// `listen` addresses, checks who they are and what they ask for, pairs their two connections by token, and
// hands each validated pair to a SecondaryWorker. A peer that misbehaves loses its connection with one log
// line; nothing it sends can throw out of the listener.
export class PeerListener {
  private readonly log: Logger;
  private readonly options: PeerListenerOptions;
  private readonly timeoutMs: number;
  private readonly servers: Server[] = [];
  // Connections still in their handshake (not yet half-open or handed to a worker).
  private readonly handshaking = new Set<PacketConnection>();
  private readonly halfOpen = new Map<string, HalfOpenSession>();
  // Handshakes for one resource run one at a time, so two primaries cannot interleave their steps.
  private readonly queues = new Map<string, Promise<void>>();
  private closed = false;

  constructor(options: PeerListenerOptions) {
    this.log = options.log;
    this.options = options;
    this.timeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  }

  // Listens on a hast.conf `listen` address (tcp4://, tcp6:// or tcp://, host and port).
  async listen(address: string): Promise<void> {
    const parsed = parseHastAddress(address);
    if (parsed.kind !== 'tcp') throw new Error(`Unable to listen on address ${address}: only TCP addresses can be listened on.`);
    const server = createServer((socket) => this.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // tcp6 listens on IPv6 only, so tcp4 and tcp6 can share a port as with hastd's defaults.
        server.listen({ host: parsed.host, port: parsed.port, ipv6Only: parsed.family === 6 }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      throw new Error(`Unable to listen on address ${address}`, { cause: error });
    }
    server.on('error', (error) => this.log.error(`Listener on ${address} failed: ${describeError(error)}`));
    this.servers.push(server);
  }

  // Stops listening and drops connections still in their handshake; sessions handed to workers go on.
  async close(): Promise<void> {
    this.closed = true;
    for (const name of [...this.halfOpen.keys()]) this.dropHalfOpen(name);
    for (const connection of this.handshaking) connection.close('Listener closed.');
    // server.close() releases the port at once; its callback would wait for every worker's connections.
    for (const server of this.servers.splice(0)) server.close();
    await Promise.allSettled([...this.queues.values()]);
  }

  private accept(socket: Socket): void {
    const connection = new PacketConnection(socket, WIRE_PACKET_LIMITS);
    const peer = peerAddress(socket);
    if (this.closed) {
      connection.close();
      return;
    }
    this.handshaking.add(connection);
    this.handshake(connection, peer)
      .catch((error: unknown) => {
        this.log.error(`Connection from ${peer} failed: ${describeError(error)}`);
        connection.close();
      })
      .finally(() => this.handshaking.delete(connection));
  }

  private async handshake(connection: PacketConnection, peer: string): Promise<void> {
    const { peerAllowed } = this.options;
    if (peerAllowed !== undefined && !(await peerAllowed(peer))) {
      this.log.error(`Client ${peer} isn't known.`);
      connection.close();
      return;
    }
    let packet: Packet;
    try {
      packet = await connection.receive(this.timeoutMs);
    } catch (error) {
      this.log.error(`Unable to receive header from ${peer}: ${connectionFailure(error)}`);
      connection.close();
      return;
    }
    const opening = parseOpening(packet.nv, peer);
    if (typeof opening === 'string') {
      this.log.error(opening);
      connection.close();
      return;
    }
    await this.serialized(opening.resource, () => this.admit(connection, peer, opening, packet.nv));
  }

  // The checks of listen_accept(), in hastd's order, with its refusals.
  private async admit(connection: PacketConnection, peer: string, opening: OpeningRequest, nv: Nv): Promise<void> {
    const name = opening.resource;
    const log = this.log.child({ resource: name });
    const refuse = (logLine: string, errmsg: string, wait = false): void => {
      log.error(logLine);
      connection.sendAndClose(refusalMessage(errmsg, wait));
    };
    const target = this.options.lookup(name);
    if (target === undefined) return refuse(`No resource '${name}' as requested by ${peer}.`, 'Resource not configured.');
    if (!(await isRemote(target.resource.remote, peer))) {
      return refuse(`Client ${peer} has no access to the resource.`, 'No access to the resource.');
    }
    if (target.role !== 'secondary') {
      const role = target.role;
      return refuse(
        `We act as ${role} for the resource and not as secondary as requested by ${peer}.`,
        `Remote node acts as ${role} for the resource and not as secondary.`,
        // The other node may be finishing a switchover: it asks us to wait rather than give up.
        role === 'primary',
      );
    }
    if (opening.token === undefined) await this.openSession(target, connection, peer, opening.version);
    else this.completeSession(target, connection, peer, opening.token, nv, refuse);
  }

  // A primary's first connection: ends the previous session, answers with the version and a fresh token.
  private async openSession(target: SecondaryTarget, connection: PacketConnection, peer: string, peerVersion: number): Promise<void> {
    const name = target.resource.name;
    await target.stopSecondary();
    if (this.halfOpen.has(name)) this.dropHalfOpen(name);
    if (this.closed) {
      connection.close();
      return;
    }
    const version = Math.min(peerVersion, HAST_PROTO_VERSION);
    const token = randomBytes(TOKEN_SIZE);
    connection.send(tokenMessage(version, token), undefined, version);
    const timer = setTimeout(() => {
      if (this.halfOpen.get(name)?.connection !== connection) return;
      this.log.warn({ resource: name }, `No second connection from ${peer} within ${this.timeoutMs / 1000} s.`);
      this.dropHalfOpen(name);
    }, this.timeoutMs);
    this.halfOpen.set(name, { token, connection, version, peer, timer });
  }

  // A primary's second connection: the token pairs it with the first, and the session starts.
  private completeSession(
    target: SecondaryTarget,
    connection: PacketConnection,
    peer: string,
    token: Buffer,
    hello: Nv,
    refuse: (logLine: string, errmsg: string) => void,
  ): void {
    const name = target.resource.name;
    const session = this.halfOpen.get(name);
    if (session === undefined || !timingSafeEqual(session.token, token)) {
      return refuse(`Token received from ${peer} doesn't match.`, "Token doesn't match.");
    }
    clearTimeout(session.timer);
    this.halfOpen.delete(name);
    this.handshaking.delete(connection);
    const worker = SecondaryWorker.start(
      target.resource,
      { inbound: session.connection, outbound: connection, hello, version: session.version, peer },
      target.workerContext(),
      { openComponent: this.options.openComponent },
    );
    target.adoptSecondary(worker);
  }

  private dropHalfOpen(name: string): void {
    const session = this.halfOpen.get(name);
    if (session === undefined) return;
    clearTimeout(session.timer);
    this.halfOpen.delete(name);
    session.connection.close('Half-open connection dropped.');
  }

  private serialized(name: string, task: () => Promise<void>): Promise<void> {
    const run = (this.queues.get(name) ?? Promise.resolve()).then(task);
    const settled = run.catch(() => undefined);
    this.queues.set(name, settled);
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name);
    });
    return run;
  }
}

// Whether a hast.conf `remote` names this IP: only the address counts, not the port. A host name is resolved.
export async function isRemote(remote: string, ip: string): Promise<boolean> {
  if (remote === 'none' || ip === '') return false;
  let address: HastAddress;
  try {
    address = parseHastAddress(remote);
  } catch {
    return false;
  }
  if (address.kind !== 'tcp') return false;
  const candidates = isIP(address.host) !== 0 ? [address.host] : await resolve(address.host);
  return candidates.some((candidate) => sameIp(candidate, ip));
}

// Whether any of the resources names this IP as its remote: the listener's `peerAllowed`.
export async function isKnownPeer(resources: Iterable<HastResource>, ip: string): Promise<boolean> {
  for (const resource of resources) if (await isRemote(resource.remote, ip)) return true;
  return false;
}

// An IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d; hast.conf writes it as a.b.c.d.
export function normalizeIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] ?? ip;
}

function peerAddress(socket: Socket): string {
  return normalizeIp(socket.remoteAddress ?? '');
}

async function resolve(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true })).map((entry) => entry.address);
  } catch {
    return [];
  }
}

// Compares two IP addresses whatever their spelling (IPv6 has many).
function sameIp(a: string, b: string): boolean {
  const left = normalizeIp(a);
  const right = normalizeIp(b);
  const family = isIP(left);
  if (family === 0 || family !== isIP(right)) return false;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  list.addAddress(left, type);
  return list.check(right, type);
}
