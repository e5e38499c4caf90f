// The control protocol between hastctl and hastd (sbin/hastd/control.c, hastctl.c): one nv request, one nv
// reply, over the `control` UNIX socket. Pure encode/decode; the socket ends live in control-server.ts and
// hastctl-client.ts.

import type { ChecksumAlgorithm, CompressionAlgorithm, ReplicationMode } from '../config/hast-conf.js';
import type { HastRole } from './metadata.js';
import { Nv, NvError } from './nv.js';
import type { WorkerStatus } from './worker-status.js';

// hast.h's EHAST_* codes, sent as `error<i>` for one resource or as the global `error`.
export const EHAST_OK = 0;
export const EHAST_NOENTRY = 1;
export const EHAST_INVALID = 2;
export const EHAST_NOMEMORY = 3;
export const EHAST_UNIMPLEMENTED = 4;

// hast.h's HASTCTL_CMD_* codes, the request's `cmd` field.
export const HASTCTL_CMD_SETROLE = 1;
export const HASTCTL_CMD_STATUS = 2;

// hast.h's HAST_ROLE_* codes, the request's `role` field (replies spell roles out).
export const ROLE_CODES: Readonly<Record<HastRole, number>> = { init: 1, primary: 2, secondary: 3 };

// The resource name that stands for every configured resource when it comes first.
export const ALL_RESOURCES = 'all';

// What hastctl asks: change the role of the named resources, or report on them.
export type ControlRequest =
  | { cmd: 'setrole'; role: HastRole; resources: string[] }
  | { cmd: 'status'; resources: string[] };

// What hastd reports about one configured resource (control_status()).
export interface ResourceReply {
  name: string;
  role: HastRole;
  provname: string;
  localpath: string;
  // The configured strings, verbatim.
  remoteaddr: string;
  sourceaddr?: string;
  // The configured mode; a running worker's negotiated mode replaces it on the wire (see replicationInForce).
  replication: ReplicationMode;
  checksum: ChecksumAlgorithm;
  compression: CompressionAlgorithm;
  // 0 when no worker process runs.
  workerpid: number;
  // Present only when a worker runs and answered (a primary, or a secondary with a primary connected).
  worker?: WorkerStatus;
}

// A SETROLE answer for one resource: the role it had before the request.
export interface RoleReply {
  name: string;
  previousRole: HastRole;
}

// A resource hastd could not act on; `error` is non-zero (EHAST_NOENTRY for a name not configured).
export interface ResourceFailure {
  name: string;
  error: number;
}

// The answer to a SETROLE request. `error` is the global error (EHAST_OK when none); per-resource entries
// come in request order (configuration order for "all").
export interface SetRoleReply {
  cmd: 'setrole';
  error: number;
  resources: (RoleReply | ResourceFailure)[];
}

// The answer to a STATUS request, laid out as SetRoleReply.
export interface StatusReply {
  cmd: 'status';
  error: number;
  resources: (ResourceReply | ResourceFailure)[];
}

// The whole answer to one request.
export type ControlReply = SetRoleReply | StatusReply;

// A request or reply that breaks the protocol. `hastError` is the global error hastd answers a bad request
// with (EHAST_INVALID, EHAST_UNIMPLEMENTED); undefined when hastd would close without answering.
export class ControlProtocolError extends Error {
  readonly hastError: number | undefined;

  constructor(message: string, hastError?: number) {
    super(message);
    this.name = 'ControlProtocolError';
    this.hastError = hastError;
  }
}

const REPLICATION_MODES: readonly ReplicationMode[] = ['fullsync', 'memsync', 'async'];
const CHECKSUMS: readonly ChecksumAlgorithm[] = ['none', 'crc32', 'sha256'];
const COMPRESSIONS: readonly CompressionAlgorithm[] = ['none', 'hole', 'lzf'];
const ROLES = Object.keys(ROLE_CODES) as HastRole[];
const WORKER_STATES: readonly WorkerStatus['status'][] = ['complete', 'degraded', 'split-brain'];

// True for an entry that carries an error instead of an answer.
export function isFailure(entry: RoleReply | ResourceReply | ResourceFailure): entry is ResourceFailure {
  return 'error' in entry;
}

// hastctl's exit status for a reply: the first non-zero per-resource error, or 0.
export function firstResourceError(entries: readonly (RoleReply | ResourceReply | ResourceFailure)[]): number {
  return entries.find(isFailure)?.error ?? EHAST_OK;
}

// The replication mode hastd reports: it keeps only the negotiated mode, which a running worker knows.
export function replicationInForce(reply: ResourceReply): ReplicationMode {
  return reply.worker?.replication ?? reply.replication;
}

// The request as hastctl builds it: cmd, role (SETROLE only), resource0..N.
export function encodeControlRequest(request: ControlRequest): Nv {
  const nv = new Nv();
  if (request.cmd === 'setrole') {
    nv.addUint8('cmd', HASTCTL_CMD_SETROLE).addUint8('role', ROLE_CODES[request.role]);
  } else {
    nv.addUint8('cmd', HASTCTL_CMD_STATUS);
  }
  request.resources.forEach((name, i) => nv.addString(`resource${i}`, name));
  return nv;
}

// Reads a request with control_handle()'s checks, in its order: no cmd → close unanswered; no resource0 or
// a bad role → EHAST_INVALID; an unknown cmd → EHAST_UNIMPLEMENTED.
export function decodeControlRequest(nv: Nv): ControlRequest {
  const cmd = nv.getUint8('cmd') ?? 0;
  if (cmd === 0) throw new ControlProtocolError("Control header is missing 'cmd' field.");
  const resources = indexedStrings(nv, 'resource');
  if (resources.length === 0) throw new ControlProtocolError("Control header is missing 'resource0' field.", EHAST_INVALID);
  if (cmd === HASTCTL_CMD_SETROLE) {
    const code = nv.getUint8('role') ?? 0;
    const role = ROLES.find((r) => ROLE_CODES[r] === code);
    if (role === undefined) throw new ControlProtocolError(`Invalid role received (${code}).`, EHAST_INVALID);
    return { cmd: 'setrole', role, resources };
  }
  if (cmd === HASTCTL_CMD_STATUS) return { cmd: 'status', resources };
  throw new ControlProtocolError(`Invalid command received (${cmd}).`, EHAST_UNIMPLEMENTED);
}

// The reply with control.c's fields in control.c's order; entries absent from hastd's reply stay absent.
export function encodeControlReply(reply: ControlReply): Nv {
  const nv = new Nv();
  reply.resources.forEach((entry, i) => {
    nv.addString(`resource${i}`, entry.name);
    if (isFailure(entry)) nv.addInt16(`error${i}`, entry.error);
    else if ('previousRole' in entry) nv.addString(`role${i}`, entry.previousRole);
    else addResourceStatus(nv, entry, i);
  });
  if (reply.error !== EHAST_OK) nv.addInt16('error', reply.error);
  return nv;
}

function addResourceStatus(nv: Nv, reply: ResourceReply, i: number): void {
  nv.addString(`provname${i}`, reply.provname);
  nv.addString(`localpath${i}`, reply.localpath);
  nv.addString(`remoteaddr${i}`, reply.remoteaddr);
  if (reply.sourceaddr !== undefined) nv.addString(`sourceaddr${i}`, reply.sourceaddr);
  nv.addString(`replication${i}`, replicationInForce(reply));
  nv.addString(`checksum${i}`, reply.checksum);
  nv.addString(`compression${i}`, reply.compression);
  nv.addString(`role${i}`, reply.role);
  nv.addInt32(`workerpid${i}`, reply.workerpid);
  const worker = reply.worker;
  if (worker === undefined) return;
  const { statistics: stats, queues } = worker;
  nv.addString(`status${i}`, worker.status);
  nv.addUint64(`dirty${i}`, BigInt(worker.dirty));
  nv.addUint32(`extentsize${i}`, worker.extentsize);
  nv.addUint32(`keepdirty${i}`, worker.keepdirty);
  nv.addUint64(`stat_read${i}`, stats.reads);
  nv.addUint64(`stat_write${i}`, stats.writes);
  nv.addUint64(`stat_delete${i}`, stats.deletes);
  nv.addUint64(`stat_flush${i}`, stats.flushes);
  nv.addUint64(`stat_activemap_update${i}`, stats.activemapUpdates);
  nv.addUint64(`stat_read_error${i}`, stats.readErrors);
  nv.addUint64(`stat_write_error${i}`, stats.writeErrors);
  nv.addUint64(`stat_delete_error${i}`, stats.deleteErrors);
  nv.addUint64(`stat_flush_error${i}`, stats.flushErrors);
  nv.addUint64(`idle_queue_size${i}`, BigInt(queues.idle));
  nv.addUint64(`local_queue_size${i}`, BigInt(queues.local));
  nv.addUint64(`send_queue_size${i}`, BigInt(queues.send));
  nv.addUint64(`recv_queue_size${i}`, BigInt(queues.recv));
  nv.addUint64(`done_queue_size${i}`, BigInt(queues.done));
  // Our own fields: hastctl(8) ignores them.
  if (worker.splitBrain !== undefined) {
    nv.addUint64(`localchanges${i}`, BigInt(worker.splitBrain.local));
    if (worker.splitBrain.peer !== undefined) nv.addUint64(`peerchanges${i}`, BigInt(worker.splitBrain.peer));
  }
}

// Reads the reply to a request of kind `cmd`. Numbers hastd may leave out read as 0, as hastctl's nv_get_*
// do; strings hastctl prints must be there.
export function decodeControlReply(nv: Nv, cmd: 'setrole'): SetRoleReply;
export function decodeControlReply(nv: Nv, cmd: 'status'): StatusReply;
export function decodeControlReply(nv: Nv, cmd: ControlRequest['cmd']): ControlReply;
export function decodeControlReply(nv: Nv, cmd: ControlRequest['cmd']): ControlReply {
  const error = nv.getInt16('error') ?? EHAST_OK;
  const names = indexedStrings(nv, 'resource');
  if (cmd === 'setrole') {
    const resources = names.map((name, i) => {
      const failure = failureAt(nv, name, i);
      return failure ?? { name, previousRole: oneOf(nv, `role${i}`, ROLES) };
    });
    return { cmd, error, resources };
  }
  const resources = names.map((name, i) => failureAt(nv, name, i) ?? resourceStatusAt(nv, name, i));
  return { cmd, error, resources };
}

function failureAt(nv: Nv, name: string, i: number): ResourceFailure | undefined {
  const error = nv.getInt16(`error${i}`) ?? EHAST_OK;
  return error === EHAST_OK ? undefined : { name, error };
}

function resourceStatusAt(nv: Nv, name: string, i: number): ResourceReply {
  const reply: ResourceReply = {
    name,
    role: oneOf(nv, `role${i}`, ROLES),
    provname: requiredString(nv, `provname${i}`),
    localpath: requiredString(nv, `localpath${i}`),
    remoteaddr: requiredString(nv, `remoteaddr${i}`),
    replication: oneOf(nv, `replication${i}`, REPLICATION_MODES),
    checksum: oneOf(nv, `checksum${i}`, CHECKSUMS),
    compression: oneOf(nv, `compression${i}`, COMPRESSIONS),
    workerpid: nv.getInt32(`workerpid${i}`) ?? 0,
  };
  const sourceaddr = nv.getString(`sourceaddr${i}`);
  if (sourceaddr !== undefined) reply.sourceaddr = sourceaddr;
  if (nv.getString(`status${i}`) !== undefined) reply.worker = workerStatusAt(nv, i, reply.replication);
  return reply;
}

function workerStatusAt(nv: Nv, i: number, replication: ReplicationMode): WorkerStatus {
  const count = (field: string) => nv.getUint64(`${field}${i}`) ?? 0n;
  const size = (field: string) => {
    const value = count(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ControlProtocolError(`Field '${field}${i}' is too large (${value}).`);
    return Number(value);
  };
  const status: WorkerStatus = {
    status: oneOf(nv, `status${i}`, WORKER_STATES),
    replication,
    dirty: size('dirty'),
    extentsize: nv.getUint32(`extentsize${i}`) ?? 0,
    keepdirty: nv.getUint32(`keepdirty${i}`) ?? 0,
    statistics: {
      reads: count('stat_read'),
      writes: count('stat_write'),
      deletes: count('stat_delete'),
      flushes: count('stat_flush'),
      activemapUpdates: count('stat_activemap_update'),
      readErrors: count('stat_read_error'),
      writeErrors: count('stat_write_error'),
      deleteErrors: count('stat_delete_error'),
      flushErrors: count('stat_flush_error'),
    },
    queues: {
      local: size('local_queue_size'),
      send: size('send_queue_size'),
      recv: size('recv_queue_size'),
      done: size('done_queue_size'),
      idle: size('idle_queue_size'),
    },
  };
  if (nv.getUint64(`localchanges${i}`) !== undefined) {
    status.splitBrain = { local: size('localchanges'), peer: nv.getUint64(`peerchanges${i}`) === undefined ? undefined : size('peerchanges') };
  }
  return status;
}

// `<prefix>0`, `<prefix>1`, ... up to the first one missing, as hastd and hastctl loop over them.
function indexedStrings(nv: Nv, prefix: string): string[] {
  const values: string[] = [];
  for (let i = 0; ; i++) {
    const value = nv.getString(`${prefix}${i}`);
    if (value === undefined) return values;
    values.push(value);
  }
}

function requiredString(nv: Nv, field: string): string {
  try {
    return nv.requireString(field);
  } catch (error) {
    if (error instanceof NvError) throw new ControlProtocolError(`Invalid control reply: ${error.message}.`);
    throw error;
  }
}

function oneOf<T extends string>(nv: Nv, field: string, allowed: readonly T[]): T {
  const value = requiredString(nv, field);
  const match = allowed.find((a) => a === value);
  if (match === undefined) throw new ControlProtocolError(`Invalid control reply: field "${field}" is '${value}'.`);
  return match;
}
