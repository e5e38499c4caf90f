// The connection handshake between a primary and a secondary (hastd.c listen_accept, primary.c and
// secondary.c init_remote): the messages of both sides and the secondary's synchronisation decision. Pure
// functions over nv lists; the listener and the workers do the I/O.
//
//   primary, conn A  -> {resource, version}             secondary -> {version, token} or {errmsg[, wait]}
//   primary, conn B  -> {resource, token, [virgin], resuid, localcnt, remotecnt}
//   secondary, conn A -> {datasize, extentsize, localcnt, remotecnt, [virgin], syncsrc, mapsize} + map, or {errmsg}

import { describeError } from '../common/errors.js';
import { byteLength, joinBytes, type Bytes } from './bytes.js';
import { DEFAULT_PACKET_LIMITS, HAST_PROTO_VERSION, type Packet } from './hast-proto.js';
import { decodePayload } from './payload-codec.js';
import { Nv } from './nv.js';

// Bytes of the random token that ties the second connection to the first.
export const TOKEN_SIZE = 16;

// The errmsg a secondary sends on split-brain; the primary recognises it by this exact text.
export const SPLIT_BRAIN_ERRMSG = 'Split-brain condition!';

// Which node holds the data to copy (the `syncsrc` field: 0 undef, 1 primary, 2 secondary).
export type SyncSource = 'primary' | 'secondary';

const SYNCSRC_CODES: Record<SyncSource, number> = { primary: 1, secondary: 2 };

// A node's pair of counters from its metadata.
export interface NodeCounters {
  localcnt: bigint;
  remotecnt: bigint;
}

// What the primary says about itself on the second connection.
export interface PrimaryHello extends NodeCounters {
  resuid: bigint;
  // The primary's resuid was 0 and has just been generated: it has never completed a handshake.
  virgin: boolean;
  // Bytes in the primary's dirty extents, for a split-brain report (our field; hastd sends none).
  dirty?: number;
}

// The first message, on conn A. hastd sends it with header version 1 because nothing is negotiated yet.
export function openingMessage(resource: string): Nv {
  return new Nv().addString('resource', resource).addUint8('version', HAST_PROTO_VERSION);
}

// What the first packet on an accepted connection asks for.
export interface OpeningRequest {
  resource: string;
  // Protocol version the peer speaks (1 when it sends none).
  version: number;
  // Present on the second connection only.
  token: Buffer | undefined;
}

// Reads the first packet a listener receives; a string is the reason to drop the connection (hastd's text).
export function parseOpening(nv: Nv, peer: string): OpeningRequest | string {
  const resource = nv.getString('resource');
  if (resource === undefined) return `No 'resource' field in the header received from ${peer}.`;
  const version = nv.getUint8('version') || 1;
  const token = nv.getUint8Array('token');
  if (token !== undefined && token.length !== TOKEN_SIZE) {
    return `Received token of invalid size from ${peer} (expected ${TOKEN_SIZE}, got ${token.length}).`;
  }
  return { resource, version, token: token === undefined ? undefined : Buffer.from(token) };
}

// The listener's answer to a first connection: the negotiated version and the token for the second one.
export function tokenMessage(version: number, token: Buffer): Nv {
  return new Nv().addUint8('version', version).addUint8Array('token', token);
}

// A refusal, on either connection; `wait` asks the primary to retry (the other node is still primary).
export function refusalMessage(errmsg: string, wait = false): Nv {
  const nv = new Nv().addString('errmsg', errmsg);
  if (wait) nv.addUint8('wait', 1);
  return nv;
}

// The primary's reading of the answer to its first message.
export type TokenAnswer =
  | { kind: 'token'; version: number; token: Buffer }
  | { kind: 'refused'; errmsg: string; wait: boolean }
  | { kind: 'invalid'; reason: string };

// Reads the listener's answer to the first message, with hastd's warnings for a malformed one.
export function parseTokenAnswer(nv: Nv, remote: string): TokenAnswer {
  const errmsg = nv.getString('errmsg');
  if (errmsg !== undefined) return { kind: 'refused', errmsg, wait: nv.getUint8('wait') !== undefined };
  const version = nv.getUint8('version') || 1;
  if (version > HAST_PROTO_VERSION) return { kind: 'invalid', reason: `Invalid version received (${version}).` };
  const token = nv.getUint8Array('token');
  if (token === undefined) return { kind: 'invalid', reason: `Handshake header from ${remote} has no 'token' field.` };
  if (token.length !== TOKEN_SIZE) {
    return {
      kind: 'invalid',
      reason: `Handshake header from ${remote} contains 'token' of wrong size (got ${token.length}, expected ${TOKEN_SIZE}).`,
    };
  }
  return { kind: 'token', version, token: Buffer.from(token) };
}

// The second message, on conn B.
export function helloMessage(resource: string, token: Buffer, hello: PrimaryHello): Nv {
  const nv = new Nv().addString('resource', resource).addUint8Array('token', token);
  if (hello.virgin) nv.addInt8('virgin', 1);
  nv.addUint64('resuid', hello.resuid).addUint64('localcnt', hello.localcnt).addUint64('remotecnt', hello.remotecnt);
  if (hello.dirty !== undefined) nv.addUint64('dirty', BigInt(hello.dirty));
  return nv;
}

// The secondary's reading of the second message; absent counters read as 0, as in hastd.
export function parseHello(nv: Nv): PrimaryHello {
  return {
    resuid: nv.getUint64('resuid') ?? 0n,
    localcnt: nv.getUint64('localcnt') ?? 0n,
    remotecnt: nv.getUint64('remotecnt') ?? 0n,
    virgin: nv.getInt8('virgin') !== undefined,
    dirty: safeNumber(nv.getUint64('dirty')),
  };
}

// The secondary's split-brain refusal, with the bytes this node changed while apart (our field).
export function splitBrainRefusal(dirty: number): Nv {
  return refusalMessage(SPLIT_BRAIN_ERRMSG).addUint64('dirty', BigInt(dirty));
}

// The secondary's decision on a primary's hello (secondary.c init_remote, research §7).
export type SyncDecision =
  // A freshly created secondary takes the primary's resuid; a virgin primary has nothing to copy, any other
  // primary must copy everything.
  | { kind: 'adopt'; resuid: bigint; map: 'none' | 'full' }
  // The nodes belong to different resources or have both been written independently.
  | { kind: 'refuse'; errmsg: string; splitBrain: boolean }
  // Copy the extents dirty on either node from `syncsrc`; `full` when the counters make no sense.
  | { kind: 'sync'; syncsrc: SyncSource; map: 'ondisk' | 'full'; warning?: string };

// Compares the secondary's metadata (S) with the primary's hello (P) the way hastd does.
export function decideSync(secondary: NodeCounters & { resuid: bigint }, primary: PrimaryHello): SyncDecision {
  if (secondary.resuid === 0n) return { kind: 'adopt', resuid: primary.resuid, map: primary.virgin ? 'none' : 'full' };
  if (secondary.resuid !== primary.resuid) {
    const errmsg = `Resource unique ID mismatch (primary=${primary.resuid}, secondary=${secondary.resuid}).`;
    return { kind: 'refuse', errmsg, splitBrain: false };
  }
  const sLocal = secondary.localcnt;
  const sRemote = secondary.remotecnt;
  const pLocal = primary.localcnt;
  const pRemote = primary.remotecnt;
  if (sLocal > pRemote && sRemote === pLocal) return { kind: 'sync', syncsrc: 'secondary', map: 'ondisk' };
  if (sLocal === pRemote && sRemote <= pLocal) return { kind: 'sync', syncsrc: 'primary', map: 'ondisk' };
  if (sLocal > pRemote && pLocal > sRemote) return { kind: 'refuse', errmsg: SPLIT_BRAIN_ERRMSG, splitBrain: true };
  const warning =
    'This should never happen, asking for full synchronization ' +
    `(primary(local=${pLocal}, remote=${pRemote}), secondary(local=${sLocal}, remote=${sRemote})).`;
  return { kind: 'sync', syncsrc: sLocal > pRemote ? 'secondary' : 'primary', map: 'full', warning };
}

// What the secondary answers when it accepts: its geometry, its own counters, and the map to merge.
export interface SecondaryAnswer extends NodeCounters {
  datasize: bigint;
  extentsize: number;
  virgin: boolean;
  syncsrc: SyncSource | undefined;
  // The secondary's dirty extents (or all ones); undefined when it sends none.
  map: Buffer | undefined;
}

// The accepting answer's nv header; the map goes as the payload.
export function answerMessage(answer: Omit<SecondaryAnswer, 'map'> & { mapsize: number }): Nv {
  const nv = new Nv()
    .addInt64('datasize', answer.datasize)
    .addInt32('extentsize', answer.extentsize)
    .addUint64('localcnt', answer.localcnt)
    .addUint64('remotecnt', answer.remotecnt);
  if (answer.virgin) nv.addInt8('virgin', 1);
  nv.addUint8('syncsrc', answer.syncsrc === undefined ? 0 : SYNCSRC_CODES[answer.syncsrc]);
  return nv.addUint32('mapsize', answer.mapsize);
}

// The primary's reading of the secondary's answer.
export type AnswerResult =
  | { kind: 'accepted'; answer: SecondaryAnswer }
  // peerDirty: what the secondary changed while apart, when it says (only with split-brain).
  | { kind: 'refused'; errmsg: string; splitBrain: boolean; peerDirty: number | undefined }
  | { kind: 'invalid'; reason: string };

// Reads the secondary's answer and checks it against this node's geometry, with hastd's messages.
export function parseAnswer(packet: Packet, local: { datasize: bigint; extentsize: number }): AnswerResult {
  const { nv } = packet;
  const errmsg = nv.getString('errmsg');
  if (errmsg !== undefined) {
    return { kind: 'refused', errmsg, splitBrain: errmsg === SPLIT_BRAIN_ERRMSG, peerDirty: safeNumber(nv.getUint64('dirty')) };
  }
  const datasize = nv.getInt64('datasize') ?? 0n;
  if (datasize !== local.datasize) {
    return { kind: 'invalid', reason: `Data size differs between nodes (local=${local.datasize}, remote=${datasize}).` };
  }
  const extentsize = nv.getInt32('extentsize') ?? 0;
  if (extentsize !== local.extentsize) {
    return { kind: 'invalid', reason: `Extent size differs between nodes (local=${local.extentsize}, remote=${extentsize}).` };
  }
  const mapsize = nv.getUint32('mapsize') ?? 0;
  let payload: Bytes | undefined;
  try {
    payload = decodePayload(nv, packet.payload, DEFAULT_PACKET_LIMITS.maxPayloadSize);
  } catch (error) {
    return { kind: 'invalid', reason: `Unable to receive remote activemap: ${describeError(error)}` };
  }
  const map = mapsize > 0 && payload !== undefined ? joinBytes(payload) : undefined;
  if ((map?.length ?? 0) !== mapsize) {
    const received = payload === undefined ? 0 : byteLength(payload);
    return { kind: 'invalid', reason: `Remote activemap has ${received} bytes, not the announced ${mapsize}.` };
  }
  const code = nv.getUint8('syncsrc') ?? 0;
  const syncsrc = code === 1 ? 'primary' : code === 2 ? 'secondary' : undefined;
  return {
    kind: 'accepted',
    answer: {
      datasize,
      extentsize,
      localcnt: nv.getUint64('localcnt') ?? 0n,
      remotecnt: nv.getUint64('remotecnt') ?? 0n,
      virgin: nv.getInt8('virgin') !== undefined,
      syncsrc,
      map,
    },
  };
}

// A byte count from the peer, if present and representable; an absurd one is as good as none.
function safeNumber(value: bigint | undefined): number | undefined {
  return value === undefined || value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}
