// hastctl(8)'s output formats (sbin/hastctl/hastctl.c), reproduced exactly because scripts parse them.

import { humanizeBytes } from '../common/humanize.js';
import { isFailure, replicationInForce, type ResourceFailure, type ResourceReply } from './control-protocol.js';
import type { HastMetadata } from './metadata.js';
import { emptyStatistics, type SplitBrainChanges } from './worker-status.js';

// `hastctl dump` for one resource (dump_one()), newline-terminated.
export function formatDump(md: HastMetadata): string {
  return [
    `resource: ${md.resource}`,
    `    datasize: ${md.datasize} (${humanizeBytes(md.datasize)})`,
    `    extentsize: ${md.extentsize} (${humanizeBytes(md.extentsize)})`,
    `    keepdirty: ${md.keepdirty}`,
    `    localoff: ${md.localoff}`,
    `    resuid: ${md.resuid}`,
    `    localcnt: ${md.localcnt}`,
    `    remotecnt: ${md.remotecnt}`,
    `    prevrole: ${md.prevrole}`,
    '',
  ].join('\n');
}

// `hastctl status` (control_status()): a header, then one line per resource, `ERR<n>` for a failed one.
export function formatStatus(entries: readonly (ResourceReply | ResourceFailure)[]): string {
  if (entries.length === 0) return '';
  const lines = entries.map((entry) => {
    if (isFailure(entry)) return `${entry.name}\tERR${entry.error}`;
    // hastd pads to 9 columns; split-brain, our longer value, still gets its separating space.
    const status = `${entry.worker?.status ?? '-'} `.padEnd(9);
    return `${entry.name}\t${status}${entry.role.padEnd(15)}${entry.localpath}\t${entry.remoteaddr}`;
  });
  return ['Name\tStatus\t Role\t\tComponents', ...lines, ''].join('\n');
}

// `hastctl list` (control_list()): one block per resource; without a worker the sizes and counters are 0.
export function formatList(entries: readonly (ResourceReply | ResourceFailure)[]): string {
  return entries.map((entry) => (isFailure(entry) ? `${entry.name}:\n  error: ${entry.error}\n` : listBlock(entry))).join('');
}

function listBlock(reply: ResourceReply): string {
  const worker = reply.worker;
  const stats = worker?.statistics ?? emptyStatistics();
  const queues = worker?.queues ?? { local: 0, send: 0, recv: 0, done: 0, idle: 0 };
  const extentsize = worker?.extentsize ?? 0;
  const dirty = worker?.dirty ?? 0;
  const lines = [
    `${reply.name}:`,
    `  role: ${reply.role}`,
    `  provname: ${reply.provname}`,
    `  localpath: ${reply.localpath}`,
    `  extentsize: ${extentsize} (${humanizeBytes(extentsize)})`,
    `  keepdirty: ${worker?.keepdirty ?? 0}`,
    `  remoteaddr: ${reply.remoteaddr}`,
    ...(reply.sourceaddr === undefined ? [] : [`  sourceaddr: ${reply.sourceaddr}`]),
    `  replication: ${replicationInForce(reply)}`,
    ...(worker === undefined ? [] : [`  status: ${worker.status}`]),
    ...(reply.workerpid === 0 ? [] : [`  workerpid: ${reply.workerpid}`]),
    `  dirty: ${dirty} (${humanizeBytes(dirty)})`,
    ...(worker?.splitBrain === undefined ? [] : [splitBrainLine(worker.splitBrain)]),
    '  statistics:',
    `    reads: ${stats.reads}`,
    `    writes: ${stats.writes}`,
    `    deletes: ${stats.deletes}`,
    `    flushes: ${stats.flushes}`,
    `    activemap updates: ${stats.activemapUpdates}`,
    `    local errors: read: ${stats.readErrors}, write: ${stats.writeErrors}, delete: ${stats.deleteErrors}, flush: ${stats.flushErrors}`,
    `    queues: local: ${queues.local}, send: ${queues.send}, recv: ${queues.recv}, done: ${queues.done}, idle: ${queues.idle}`,
    '',
  ];
  return lines.join('\n');
}

// Our addition to the list block: what each node changed while apart, so the admin can choose which to keep.
function splitBrainLine(changes: SplitBrainChanges): string {
  const amount = (bytes: number | undefined) => (bytes === undefined ? 'unknown' : `${bytes} (${humanizeBytes(bytes)})`);
  return `  split-brain: local changes: ${amount(changes.local)}, peer changes: ${amount(changes.peer)}`;
}
