import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { HastResource } from '../config/hast-conf.js';
import type { PacketConnection } from './hast-proto.js';
import { isExtentMarked, setBit } from './activemap.js';
import { answerMessage, decideSync, parseHello, refusalMessage, splitBrainRefusal, type SyncDecision } from './handshake.js';
import { isNotSupported } from './local-component.js';
import { METADATA_SIZE, ondiskMapSize } from './metadata.js';
import type { Nv } from './nv.js';
import { encodePayload } from './payload-codec.js';
import type { WorkerContext } from './primary.js';
import { HAST_KEEPALIVE_MS } from './remote-link.js';
import { RangeLock } from './range-lock.js';
import { RequestSlots } from './request-slots.js';
import { ResourceComponent, type OpenComponent } from './resource-component.js';
import { ERRNO, HIO, connectionFailure, errnoOf, errnoText, parseRequest, replyNv, requestName, type ParsedRequest } from './wire.js';
import { emptyStatistics, type WorkerStatistics, type WorkerStatus } from './worker-status.js';

// The secondary gives up on a primary that has sent nothing, not even a keepalive, for this long.
export const SECONDARY_RECEIVE_TIMEOUT_MS = 2 * HAST_KEEPALIVE_MS;

// The two connections of a primary, validated by the listener, and what the primary said on the second.
export interface SecondarySession {
  // Conn A: the handshake answer goes out here, then requests come in.
  inbound: PacketConnection;
  // Conn B: replies go out.
  outbound: PacketConnection;
  // The primary's second handshake message (resuid and counters).
  hello: Nv;
  // Negotiated protocol version; packet headers carry it.
  version: number;
  // The primary's address, for log lines.
  peer: string;
}

// A request to execute, in arrival order.
type DiskRequest = Extract<ParsedRequest, { kind: 'valid' }>;

// One primary's session with this node (secondary.c): answers the handshake with the §7 decision, then
// applies the primary's requests to the local component strictly in arrival order, one at a time, while the
// next requests are read off the socket. memsync writes are acknowledged as soon as their data is in memory.
// The session ends when either connection fails (event 'disconnect'), on split-brain, or on stop().
export class SecondaryWorker {
  // Resolves when the session has ended, for whatever reason; never rejects.
  readonly done: Promise<void>;
  private readonly resource: HastResource;
  private readonly session: SecondarySession;
  private readonly log: Logger;
  private readonly ctx: WorkerContext;
  private readonly statistics: WorkerStatistics = emptyStatistics();
  private readonly slots = new RequestSlots();
  private component: ResourceComponent | undefined;
  // Requests executing or waiting for their turn.
  private readonly inFlight = new Set<Promise<void>>();
  private readonly locks = new RangeLock();
  private clearing: Promise<void> | undefined;
  private flushUnsupported = false;
  private running = false;
  private stopped = false;
  // Why the session ended, when it was not stop().
  private failure: string | undefined;

  private constructor(resource: HastResource, session: SecondarySession, ctx: WorkerContext, openComponent?: OpenComponent) {
    this.resource = resource;
    this.session = session;
    this.log = ctx.log;
    this.ctx = ctx;
    this.done = this.run(openComponent);
  }

  // Starts the session at once; `done` tells when it is over.
  static start(resource: HastResource, session: SecondarySession, ctx: WorkerContext, options: { openComponent?: OpenComponent } = {}): SecondaryWorker {
    return new SecondaryWorker(resource, session, ctx, options.openComponent);
  }

  // Ends the session without a 'disconnect' event (the primary reconnected, or the role changed).
  async stop(): Promise<void> {
    this.stopped = true;
    this.closeConnections('Secondary stopped.');
    await this.done;
  }

  // What hastctl status and list show while this session runs.
  status(): WorkerStatus {
    const metadata = this.component?.metadata;
    return {
      status: this.running ? 'complete' : 'degraded',
      replication: this.resource.replication,
      dirty: 0,
      extentsize: metadata?.extentsize ?? 0,
      keepdirty: metadata?.keepdirty ?? 0,
      statistics: { ...this.statistics },
      queues: { local: this.inFlight.size, send: 0, recv: 0, done: 0, idle: this.slots.size - this.slots.inUse },
    };
  }

  private async run(openComponent: OpenComponent | undefined): Promise<void> {
    try {
      this.component = await ResourceComponent.open(this.resource, openComponent);
    } catch (error) {
      const message = describeError(error);
      this.log.error(message);
      this.sendFinal(refusalMessage(message));
      return;
    }
    try {
      if (await this.answerHandshake(this.component)) {
        this.running = true;
        this.ctx.onEvent('connect');
        await this.serve(this.component);
      }
    } catch (error) {
      this.failure ??= describeError(error);
    } finally {
      this.running = false;
      this.closeConnections('Session ended.');
      await Promise.all(this.inFlight);
      await this.component.close();
    }
    if (this.failure !== undefined && !this.stopped) {
      this.log.error(this.failure);
      this.ctx.onEvent('disconnect');
    }
  }

  // Decides how the nodes synchronise and answers on the request connection; false if the primary was refused.
  private async answerHandshake(component: ResourceComponent): Promise<boolean> {
    const metadata = component.metadata;
    const hello = parseHello(this.session.hello);
    const decision = decideSync(metadata, hello);
    if (decision.kind === 'refuse' && decision.splitBrain) {
      this.log.error('Split-brain detected, exiting.');
      const changed = await this.changedBytes(component);
      this.sendFinal(splitBrainRefusal(changed));
      this.ctx.onSplitBrain({ local: changed, peer: hello.dirty });
      return false;
    }
    if (decision.kind === 'refuse') {
      this.log.error(decision.errmsg);
      this.sendFinal(refusalMessage(decision.errmsg));
      return false;
    }
    if (decision.kind === 'adopt') await component.update({ resuid: decision.resuid, prevrole: 'secondary' });
    if (decision.kind === 'sync' && decision.warning !== undefined) this.log.warn(decision.warning);
    const map = await this.handshakeMap(component, decision);
    const answer = answerMessage({
      datasize: metadata.datasize,
      extentsize: metadata.extentsize,
      localcnt: metadata.localcnt,
      remotecnt: metadata.remotecnt,
      virgin: decision.kind === 'adopt',
      syncsrc: decision.kind === 'sync' ? decision.syncsrc : 'primary',
      mapsize: map?.length ?? 0,
    });
    // hastd sends the map through the configured compression and checksum, as any payload.
    this.session.inbound.send(answer, map === undefined ? undefined : encodePayload(answer, map, this.resource), this.session.version);
    return true;
  }

  // The map the primary merges: none, all ones, or this node's on-disk dirty extents. Its size follows the
  // component size, as hastd computes it on this side.
  private async handshakeMap(component: ResourceComponent, decision: Exclude<SyncDecision, { kind: 'refuse' }>): Promise<Buffer | undefined> {
    if (decision.map === 'none') return undefined;
    const { extentsize } = component.metadata;
    const size = ondiskMapSize(BigInt(component.store.mediasize - METADATA_SIZE), extentsize, component.store.sectorsize);
    if (decision.map === 'full') return Buffer.alloc(size, 0xff);
    const map = await component.readActivemap(size);
    // Extents this node failed to write while it was primary: the new primary must copy them here.
    for (const extent of component.metadata.peerExtents ?? []) if (extent >> 3 < map.length) setBit(map, extent);
    return map;
  }

  // Bytes in the extents this node's on-disk activemap marks: what it changed while the nodes were apart.
  private async changedBytes(component: ResourceComponent): Promise<number> {
    const { extentsize, datasize } = component.metadata;
    const size = ondiskMapSize(BigInt(component.store.mediasize - METADATA_SIZE), extentsize, component.store.sectorsize);
    try {
      const image = await component.readActivemap(size);
      const extents = Math.ceil(Number(datasize) / extentsize);
      let marked = 0;
      for (let extent = 0; extent < extents; extent++) if (isExtentMarked(image, extent)) marked++;
      return marked * extentsize;
    } catch (error) {
      this.log.warn(`Unable to read the activemap for the split-brain report: ${describeError(error)}`);
      return 0;
    }
  }

  // Reads requests until a connection fails or the session is stopped; disk work runs behind.
  private async serve(component: ResourceComponent): Promise<void> {
    const { inbound, outbound } = this.session;
    // Nothing may arrive on the reply connection; anything that does, or its closing, ends the session.
    outbound.receive().then(
      () => this.end('Unexpected packet on the reply connection.'),
      (error: unknown) => this.end(`Reply connection failed: ${connectionFailure(error)}`),
    );
    const limits = { sectorsize: component.store.sectorsize, datasize: component.metadata.datasize };
    for (;;) {
      const release = await this.slots.acquire();
      let request: ParsedRequest;
      try {
        request = parseRequest(await inbound.receive(SECONDARY_RECEIVE_TIMEOUT_MS), limits);
      } catch (error) {
        release();
        this.end(`Unable to receive request header: ${connectionFailure(error)}`);
        return;
      }
      this.accept(component, request, release);
    }
  }

  // Counts a request and starts its way through: refused at once, acknowledged early (memsync), or queued.
  private accept(component: ResourceComponent, request: ParsedRequest, release: () => void): void {
    if (request.kind === 'keepalive') {
      release();
      return;
    }
    if (request.kind === 'invalid') {
      this.log.error(request.reason);
      this.countError(request.cmd);
      this.reply(replyNv(request.seq, { error: ERRNO.EINVAL, received: request.memsync }));
      release();
      return;
    }
    this.count(request.cmd);
    if (request.memsync) this.reply(replyNv(request.seq, { received: true }));
    // Taken now, in arrival order: the request runs once every earlier one it could see or be seen by is done.
    const turn = this.waitForTurn(request);
    const work = (async () => {
      const done = await turn;
      try {
        const { error, data } = await this.execute(component, request);
        this.reply(replyNv(request.seq, { error }), data);
      } finally {
        done();
        release();
      }
    })();
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  // Requests take effect in arrival order, as if run one at a time: each waits for the earlier requests on
  // overlapping ranges, and a FLUSH for every earlier request. Requests that cannot observe each other run
  // side by side, because one thread-pool round trip per request would cap the secondary far below the disk.
  private async waitForTurn(request: DiskRequest): Promise<() => void> {
    if (request.cmd !== HIO.FLUSH) return this.locks.lock(request.offset, request.length);
    await Promise.all(this.inFlight);
    return () => undefined;
  }

  // Runs one request against the local component; the reply carries a FreeBSD errno on failure.
  private async execute(component: ResourceComponent, request: DiskRequest): Promise<{ error: number; data?: Buffer }> {
    const { store } = component;
    const at = component.localoff + request.offset;
    await (this.clearing ??= this.clearActivemap(component));
    try {
      switch (request.cmd) {
        case HIO.READ: {
          const data = Buffer.allocUnsafe(request.length);
          await store.read(data, at);
          return { error: 0, data };
        }
        case HIO.WRITE:
          await store.write(request.data ?? Buffer.alloc(0), at);
          return { error: 0 };
        case HIO.DELETE:
          await store.delete(at, request.length);
          return { error: 0 };
        case HIO.FLUSH:
          // After one EOPNOTSUPP every flush fails at once, without a log line, as in hastd.
          if (this.flushUnsupported) {
            this.countError(HIO.FLUSH);
            return { error: ERRNO.EOPNOTSUPP };
          }
          await store.flush();
          return { error: 0 };
      }
    } catch (error) {
      if (request.cmd === HIO.FLUSH && isNotSupported(error)) this.flushUnsupported = true;
      const errno = errnoOf(error);
      this.log.error(`Request failed (${errnoText(errno)}): ${requestName(request.cmd, request.offset, request.length)}: ${describeError(error)}`);
      this.countError(request.cmd);
      return { error: errno };
    }
  }

  // The primary has merged our map by the time its first request arrives, so it can be cleared on disk.
  private async clearActivemap(component: ResourceComponent): Promise<void> {
    const size = ondiskMapSize(BigInt(component.store.mediasize - METADATA_SIZE), component.metadata.extentsize, component.store.sectorsize);
    try {
      await component.store.write(Buffer.alloc(size), METADATA_SIZE);
      if ((component.metadata.peerExtents ?? []).length > 0) await component.update({ peerExtents: [] });
    } catch (error) {
      this.log.warn(`Unable to store cleared activemap: ${describeError(error)}`);
      // hastd tries again with the next request.
      this.clearing = undefined;
    }
  }

  private reply(nv: Nv, data?: Buffer): void {
    try {
      const payload = data === undefined ? undefined : encodePayload(nv, data, this.resource);
      this.session.outbound.send(nv, payload, this.session.version);
    } catch (error) {
      this.end(`Unable to send reply: ${connectionFailure(error)}`);
    }
  }

  // Sends a last message on the request connection (a refusal) and lets it close once written.
  private sendFinal(nv: Nv): void {
    this.session.inbound.sendAndClose(nv, this.session.version);
    this.session.outbound.close();
  }

  // Ends the session because of a failure; the first reason is the one reported.
  private end(reason: string): void {
    this.failure ??= reason;
    this.closeConnections(reason);
  }

  private closeConnections(reason: string): void {
    this.session.inbound.close(reason);
    this.session.outbound.close(reason);
  }

  private count(cmd: number): void {
    if (cmd === HIO.READ) this.statistics.reads++;
    else if (cmd === HIO.WRITE) this.statistics.writes++;
    else if (cmd === HIO.DELETE) this.statistics.deletes++;
    else if (cmd === HIO.FLUSH) this.statistics.flushes++;
  }

  private countError(cmd: number): void {
    if (cmd === HIO.READ) this.statistics.readErrors++;
    else if (cmd === HIO.WRITE) this.statistics.writeErrors++;
    else if (cmd === HIO.DELETE) this.statistics.deleteErrors++;
    else if (cmd === HIO.FLUSH) this.statistics.flushErrors++;
  }
}
