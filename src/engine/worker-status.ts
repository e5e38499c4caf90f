import type { ReplicationMode } from '../config/hast-conf.js';

// Per-resource counters, as hastctl list prints them (hastd's stat_* fields).
export interface WorkerStatistics {
  reads: bigint;
  writes: bigint;
  deletes: bigint;
  flushes: bigint;
  activemapUpdates: bigint;
  readErrors: bigint;
  writeErrors: bigint;
  deleteErrors: bigint;
  flushErrors: bigint;
}

// Requests waiting at each stage (hastd's queue sizes).
export interface WorkerQueues {
  local: number;
  send: number;
  recv: number;
  done: number;
  idle: number;
}

// What each node changed since the two parted, when a handshake found split-brain: bytes of the extents
// marked in its activemap. `peer` is undefined when the peer did not say (hastd does not).
export interface SplitBrainChanges {
  local: number;
  peer: number | undefined;
}

// What a running primary or secondary worker reports to `hastctl status` and `list`.
export interface WorkerStatus {
  // complete: both connections to the peer are up (even while synchronising); degraded otherwise;
  // split-brain: the last handshake was refused because both nodes wrote while apart (this engine only).
  status: 'complete' | 'degraded' | 'split-brain';
  // The mode in force (hastd shows the negotiated one).
  replication: ReplicationMode;
  // Bytes in extents dirty in memory; 0 on a secondary.
  dirty: number;
  extentsize: number;
  keepdirty: number;
  statistics: WorkerStatistics;
  queues: WorkerQueues;
  // Set with status split-brain.
  splitBrain?: SplitBrainChanges;
}

// Events a worker reports; the daemon runs the `exec` hook with them (hast.conf(5) lists the arguments).
export type WorkerEvent = 'connect' | 'disconnect' | 'syncstart' | 'syncdone' | 'syncintr' | 'split-brain';

// Zeroed counters for a worker that has just started.
export function emptyStatistics(): WorkerStatistics {
  return {
    reads: 0n,
    writes: 0n,
    deletes: 0n,
    flushes: 0n,
    activemapUpdates: 0n,
    readErrors: 0n,
    writeErrors: 0n,
    deleteErrors: 0n,
    flushErrors: 0n,
  };
}
