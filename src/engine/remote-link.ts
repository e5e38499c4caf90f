import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { parseHastAddress, type TcpAddress } from '../config/address.js';
import type { HastResource, ReplicationMode } from '../config/hast-conf.js';
import type { Bytes } from './bytes.js';
import { DEFAULT_PACKET_LIMITS, HAST_PROTO_VERSION, PacketConnection, ProtocolError, type Packet, type PacketLimits } from './hast-proto.js';
import type { Nv } from './nv.js';
import {
  helloMessage,
  openingMessage,
  parseAnswer,
  parseTokenAnswer,
  type PrimaryHello,
  type SecondaryAnswer,
} from './handshake.js';
import { encodePayload } from './payload-codec.js';
import { ERRNO, HIO, WIRE_PACKET_LIMITS, connectionFailure, errnoText, keepaliveNv, parseReply, requestName, requestNv, type WireRequest } from './wire.js';
import type { WorkerEvent } from './worker-status.js';

// HAST_KEEPALIVE: an idle primary sends a keepalive this often; the secondary gives up after twice as long.
export const HAST_KEEPALIVE_MS = 10_000;

// How long the primary waits before trying to reach its peer again. hastd's guard thread checks every 10 s;
// a supervisor waiting for a returning secondary is better served by a shorter pause.
export const RECONNECT_INTERVAL_MS = 5_000;

// While the other node still acts as primary it asks us to wait; hastd retries every second (up to `timeout`).
const WAIT_RETRY_MS = 1_000;

// What became of one request on the secondary: `error` is a FreeBSD errno number, 0 for success.
export interface RemoteReply {
  error: number;
  data: Buffer | undefined;
}

const NOT_CONNECTED: RemoteReply = { error: ERRNO.ENOTCONN, data: undefined };

// A request handed to the secondary.
export interface RemoteCall {
  // A memsync write's early acknowledgement (the data is in the secondary's memory); for every other request
  // the final reply. A failure resolves it too.
  readonly received: Promise<RemoteReply>;
  // The final reply; ENOTCONN when the connection was lost first. Never rejects.
  readonly done: Promise<RemoteReply>;
  // The final reply if it is already known, e.g. a request refused at once because the peer is not connected.
  outcome(): RemoteReply | undefined;
}

// A request without its sequence number, which the link assigns.
export type PeerRequest = Omit<WireRequest, 'seq'>;

// The secondary as the primary's request pipeline and synchronisation see it.
export interface Peer {
  readonly connected: boolean;
  send(request: PeerRequest): RemoteCall;
}

// The peer of a resource with `remote none`: every remote part fails with ENOTCONN.
export const ABSENT_PEER: Peer = { connected: false, send: () => new PendingCall('', 0, 0, false).settle(NOT_CONNECTED) };

// What the link asks of the primary worker while it connects.
export interface HandshakeHandlers {
  // The counters and resuid for the second handshake message.
  hello(): Promise<PrimaryHello>;
  // The secondary accepted; resolves once its map is merged and on disk, before any request is sent.
  accept(answer: SecondaryAnswer): Promise<void>;
  // Requests may flow now (the worker starts synchronising).
  connected(): void;
  // The secondary refused: both nodes wrote while apart. `peerDirty` is what it changed, when it says.
  splitBrain(peerDirty: number | undefined): void;
}

// Everything a RemoteLink needs.
export interface RemoteLinkOptions {
  resource: HastResource;
  // Must match the secondary's, or the handshake is refused.
  geometry: { datasize: bigint; extentsize: number };
  log: Logger;
  onEvent(event: WorkerEvent): void;
  handlers: HandshakeHandlers;
  keepaliveMs?: number;
  reconnectMs?: number;
}

// The primary's two TCP connections to its secondary (research §6.3-§6.5): it connects and handshakes,
// sends requests on the first connection and matches the replies arriving on the second by sequence number,
// sends keepalives when idle, and on any failure closes both, fails every request in flight with ENOTCONN and
// reconnects. It never throws: failures are logged and reported as ENOTCONN replies and events.
export class RemoteLink implements Peer {
  private readonly resource: HastResource;
  private readonly target: TcpAddress;
  private readonly source: TcpAddress | undefined;
  private readonly geometry: { datasize: bigint; extentsize: number };
  private readonly log: Logger;
  private readonly onEvent: (event: WorkerEvent) => void;
  private readonly handlers: HandshakeHandlers;
  private readonly keepaliveMs: number;
  private readonly reconnectMs: number;
  private readonly timeoutMs: number;
  private readonly stopping = new AbortController();
  private session: Session | undefined;
  private nextSeq = 1;
  private loop: Promise<void> | undefined;
  // The last connection failure, so that a peer staying away is reported once, not at every retry.
  private lastFailure: string | undefined;

  constructor(options: RemoteLinkOptions) {
    this.resource = options.resource;
    this.target = tcpAddress(options.resource.remote, 'remote');
    const { source } = options.resource;
    this.source = source === null ? undefined : tcpAddress(source, 'source', 0);
    this.geometry = options.geometry;
    this.log = options.log;
    this.onEvent = options.onEvent;
    this.handlers = options.handlers;
    this.keepaliveMs = options.keepaliveMs ?? HAST_KEEPALIVE_MS;
    this.reconnectMs = options.reconnectMs ?? RECONNECT_INTERVAL_MS;
    this.timeoutMs = options.resource.timeout * 1000;
  }

  // Both connections are up and the handshake is done (hastctl's `complete`).
  get connected(): boolean {
    return this.session !== undefined;
  }

  // The mode requests use now: memsync needs protocol version 2 on the peer.
  get replication(): ReplicationMode {
    const configured = this.resource.replication;
    return configured === 'memsync' && (this.session?.version ?? HAST_PROTO_VERSION) < 2 ? 'fullsync' : configured;
  }

  // Starts connecting in the background; the worker does not wait for the peer.
  start(): void {
    this.loop ??= this.run();
  }

  // Sends a request now, in call order; a disconnected link answers ENOTCONN at once.
  send(request: PeerRequest): RemoteCall {
    const what = requestName(request.cmd, request.offset, request.length);
    const session = this.session;
    if (session === undefined) return new PendingCall(what, request.cmd, request.length, false).settle(NOT_CONNECTED);
    const memsync = request.memsync === true && session.version >= 2;
    const seq = this.nextSeq++;
    const call = new PendingCall(what, request.cmd, request.length, memsync);
    if (session.pending.size === 0) session.lastProgress = Date.now();
    session.pending.set(seq, call);
    const nv = requestNv({ ...request, seq, memsync });
    const payload = request.data === undefined ? undefined : encodePayload(nv, request.data, this.resource);
    this.transmit(session, nv, payload, what);
    return call;
  }

  // Stops reconnecting and closes the connections; requests still in flight fail with ENOTCONN.
  async close(): Promise<void> {
    this.stopping.abort();
    if (this.session !== undefined) this.drop(this.session, undefined, false);
    await this.loop;
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private get remote(): string {
    return this.resource.remote;
  }

  private async run(): Promise<void> {
    let result = await this.connect();
    if (result === 'wait') result = await this.waitForSecondary();
    while (!this.stopped) {
      const session = this.session;
      if (session !== undefined) {
        await session.ended;
        continue;
      }
      if (!(await this.pause(this.reconnectMs))) return;
      if ((await this.connect()) === 'connected') this.log.info(`Successfully reconnected to ${this.remote}.`);
    }
  }

  // The other node is still primary (it may be finishing a switchover): retry every second for `timeout`.
  private async waitForSecondary(): Promise<Attempt> {
    this.log.warn(`Waiting for remote node to become secondary for ${this.resource.timeout}s.`);
    const deadline = Date.now() + this.timeoutMs;
    let result: Attempt = 'wait';
    while (result === 'wait' && Date.now() <= deadline) {
      if (!(await this.pause(WAIT_RETRY_MS))) return result;
      result = await this.connect();
    }
    if (result === 'wait') this.log.warn('Remote node is still primary, starting anyway.');
    return result;
  }

  // One connection attempt with the full handshake.
  private async connect(): Promise<Attempt> {
    const opened: PacketConnection[] = [];
    // close() must not wait for a handshake to time out.
    const abort = (): void => opened.forEach((connection) => connection.close('Link closed.'));
    this.stopping.signal.addEventListener('abort', abort);
    try {
      const requests = await this.dial(DEFAULT_PACKET_LIMITS);
      opened.push(requests);
      // Nothing is negotiated yet, so the first packet goes out as version 1, as hastd sends it.
      requests.send(openingMessage(this.resource.name), undefined, 1);
      const first = parseTokenAnswer((await this.receiveHandshake(requests)).nv, this.remote);
      if (first.kind === 'refused') return this.refused(first.errmsg, first.wait ? 'wait' : 'failed');
      if (first.kind === 'invalid') return this.refused(first.reason, 'failed');
      const replies = await this.dial(WIRE_PACKET_LIMITS);
      opened.push(replies);
      replies.send(helloMessage(this.resource.name, first.token, await this.handlers.hello()), undefined, first.version);
      const second = parseAnswer(await this.receiveHandshake(requests), this.geometry);
      if (second.kind === 'refused') {
        if (second.splitBrain) this.handlers.splitBrain(second.peerDirty);
        return this.refused(second.errmsg, 'failed');
      }
      if (second.kind === 'invalid') return this.refused(second.reason, 'failed');
      if (this.stopped) return 'failed';
      await this.handlers.accept(second.answer);
      opened.length = 0;
      this.establish(requests, replies, first.version);
      return 'connected';
    } catch (error) {
      this.failed(`Unable to connect to ${this.remote}: ${describeError(error)}`);
      return 'failed';
    } finally {
      this.stopping.signal.removeEventListener('abort', abort);
      for (const connection of opened) connection.close();
    }
  }

  private async receiveHandshake(connection: PacketConnection): Promise<Packet> {
    try {
      return await connection.receive(this.timeoutMs);
    } catch (error) {
      throw new Error('unable to receive handshake header', { cause: error });
    }
  }

  private refused(message: string, result: Attempt): Attempt {
    this.failed(message);
    return result;
  }

  // Reports a failed attempt; the same failure again is only a debug line.
  private failed(message: string): void {
    if (message === this.lastFailure) this.log.debug(message);
    else this.log.warn(message);
    this.lastFailure = message;
  }

  private dial(limits: PacketLimits): Promise<PacketConnection> {
    const { host, port, family } = this.target;
    return new Promise((resolve, reject) => {
      const socket = connect({
        host,
        port,
        signal: this.stopping.signal,
        family: family === 'any' ? undefined : family,
        localAddress: this.source?.host,
        localPort: this.source?.port || undefined,
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${this.resource.timeout} s`));
      }, this.timeoutMs);
      const fail = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(new PacketConnection(socket, limits));
      });
    });
  }

  private establish(requests: PacketConnection, replies: PacketConnection, version: number): void {
    const session = new Session(requests, replies, version);
    this.session = session;
    this.lastFailure = undefined;
    // The secondary never writes on the request connection; anything arriving there, or its closing, ends the session.
    requests.receive().then(
      () => this.drop(session, 'Unexpected packet on the request connection.'),
      (error: unknown) => this.drop(session, `Request connection failed: ${connectionFailure(error)}`),
    );
    void this.readReplies(session);
    session.timer = setInterval(() => this.tick(session), Math.min(1000, this.keepaliveMs));
    this.log.info(`Connected to ${this.remote}.`);
    if (this.resource.replication === 'memsync' && version < 2) {
      this.log.warn("The 'memsync' replication mode is not supported by the remote node, falling back to 'fullsync' mode.");
    }
    this.onEvent('connect');
    this.handlers.connected();
  }

  private async readReplies(session: Session): Promise<void> {
    for (;;) {
      let packet: Packet;
      try {
        packet = await session.replies.receive();
      } catch (error) {
        this.drop(session, `Unable to receive reply header: ${connectionFailure(error)}`);
        return;
      }
      try {
        this.handleReply(session, packet);
      } catch (error) {
        this.drop(session, `Unable to receive reply: ${connectionFailure(error)}`);
        return;
      }
    }
  }

  // Matches a reply to its request (remote_recv_thread); a memsync write gets two replies.
  private handleReply(session: Session, packet: Packet): void {
    const reply = parseReply(packet);
    session.lastProgress = Date.now();
    if (reply.seq === 0n) {
      this.log.error("Header contains no 'seq' field.");
      return;
    }
    const seq = Number(reply.seq);
    const call = session.pending.get(seq);
    if (call === undefined) {
      this.log.error(`Found no request matching received 'seq' field (${reply.seq}).`);
      return;
    }
    if (reply.error === 0 && reply.received && call.memsync && !call.acknowledged) {
      call.acknowledge();
      return;
    }
    if (reply.error === 0 && call.cmd === HIO.READ && reply.data?.length !== call.length) {
      throw new ProtocolError(`Reply to ${call.what} carries ${reply.data?.length ?? 0} bytes of data.`);
    }
    session.pending.delete(seq);
    if (reply.error !== 0) this.log.warn(`Remote request failed (${errnoText(reply.error)}): ${call.what}.`);
    call.settle({ error: reply.error, data: reply.error === 0 ? reply.data : undefined });
  }

  // Keepalive when idle; a secondary that stops answering for `timeout` seconds counts as gone.
  private tick(session: Session): void {
    const now = Date.now();
    if (session.pending.size > 0 && now - session.lastProgress >= this.timeoutMs) {
      this.drop(session, `No reply from ${this.remote} within ${this.resource.timeout} s.`);
      return;
    }
    if (now - session.lastSend >= this.keepaliveMs) this.transmit(session, keepaliveNv(), undefined, 'KEEPALIVE');
  }

  private transmit(session: Session, nv: Nv, data: Bytes | undefined, what: string): void {
    try {
      session.requests.send(nv, data, session.version);
      session.lastSend = Date.now();
    } catch (error) {
      this.drop(session, `Unable to send request (${connectionFailure(error)}): ${what}.`);
    }
  }

  // Closes both connections and fails whatever was in flight (remote_close); `event` is false when stopping.
  private drop(session: Session, reason: string | undefined, event = true): void {
    if (this.session !== session) return;
    this.session = undefined;
    clearInterval(session.timer);
    session.requests.close();
    session.replies.close();
    if (reason !== undefined) this.log.error(reason);
    this.log.warn(`Disconnected from ${this.remote}.`);
    const pending = [...session.pending.values()];
    session.pending.clear();
    for (const call of pending) call.settle(NOT_CONNECTED);
    if (event) this.onEvent('disconnect');
    session.end();
  }

  // Resolves true after `ms`, or false as soon as the link is closed.
  private async pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal: this.stopping.signal });
      return true;
    } catch {
      return false;
    }
  }
}

type Attempt = 'connected' | 'wait' | 'failed';

// One established pair of connections and the requests sent on it.
class Session {
  readonly requests: PacketConnection;
  readonly replies: PacketConnection;
  readonly version: number;
  readonly pending = new Map<number, PendingCall>();
  readonly ended: Promise<void>;
  lastSend = Date.now();
  // When a reply last arrived, or the first request went out after a quiet spell.
  lastProgress = Date.now();
  timer: NodeJS.Timeout | undefined;
  private resolveEnded!: () => void;

  constructor(requests: PacketConnection, replies: PacketConnection, version: number) {
    this.requests = requests;
    this.replies = replies;
    this.version = version;
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  end(): void {
    this.resolveEnded();
  }
}

// A request waiting for its replies.
class PendingCall implements RemoteCall {
  readonly what: string;
  readonly cmd: number;
  readonly length: number;
  readonly memsync: boolean;
  readonly received: Promise<RemoteReply>;
  readonly done: Promise<RemoteReply>;
  acknowledged = false;
  private final: RemoteReply | undefined;
  private resolveReceived!: (reply: RemoteReply) => void;
  private resolveDone!: (reply: RemoteReply) => void;

  constructor(what: string, cmd: number, length: number, memsync: boolean) {
    this.what = what;
    this.cmd = cmd;
    this.length = length;
    this.memsync = memsync;
    this.received = new Promise((resolve) => (this.resolveReceived = resolve));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  outcome(): RemoteReply | undefined {
    return this.final;
  }

  acknowledge(): void {
    this.acknowledged = true;
    this.resolveReceived({ error: 0, data: undefined });
  }

  settle(reply: RemoteReply): this {
    this.final = reply;
    this.resolveReceived(reply);
    this.resolveDone(reply);
    return this;
  }
}

function tcpAddress(text: string, keyword: string, defaultPort?: number): TcpAddress {
  const address = parseHastAddress(text, defaultPort);
  if (address.kind !== 'tcp') throw new Error(`${keyword} address ${text} is not a TCP address`);
  return address;
}
