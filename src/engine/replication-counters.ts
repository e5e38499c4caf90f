import { randomBytes } from 'node:crypto';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { NodeCounters, PrimaryHello } from './handshake.js';
import type { ResourceComponent } from './resource-component.js';

// The primary's side of split-brain detection (research §7): resuid, localcnt and remotecnt in its metadata.
// localcnt grows by one when the secondary misses a write; a sync sets both counters to the secondary's mirror
// image. The secondary compares them at the next handshake: each node having counted writes the other missed
// is split-brain.
export class ReplicationCounters {
  private readonly component: ResourceComponent;
  private readonly log: Logger;
  // The secondary's counters as last learned. hastd starts them at 0 in every worker, so a primary restarted
  // while the peer is down never bumps localcnt unless it is 0, and split-brain goes undetected (defect #10).
  // After a sync localcnt equals the secondary's remotecnt, and after a bump it exceeds it, so starting from
  // our own localcnt bumps at the first missed write of every worker lifetime: at worst one bump too many,
  // which only makes the secondary look further behind, never hides a divergence.
  private secondary: NodeCounters;

  constructor(component: ResourceComponent, log: Logger) {
    this.component = component;
    this.log = log;
    this.secondary = { localcnt: component.metadata.remotecnt, remotecnt: component.metadata.localcnt };
  }

  private get localcnt(): bigint {
    return this.component.metadata.localcnt;
  }

  // Worker start (init_local): a never-connected resource starts counting from zero.
  async start(): Promise<void> {
    const { resuid } = this.component.metadata;
    await this.component.update({ prevrole: 'primary', ...(resuid === 0n ? { localcnt: 0n, remotecnt: 0n } : {}) });
  }

  // A write arrived (ggate_recv): the first write of a resource that never connected counts as one. hastd only
  // keeps that in memory; writing it costs one metadata write per resource and survives a restart.
  async noteWrite(): Promise<void> {
    const { resuid, localcnt } = this.component.metadata;
    if (resuid !== 0n || localcnt !== 0n) return;
    try {
      await this.component.update({ localcnt: 1n });
    } catch (error) {
      // The count stands in memory, which is all hastd keeps; the write itself may still succeed.
      this.log.warn(describeError(error));
    }
  }

  // What the second handshake message says about us. The first handshake of a resource creates its resuid and
  // tells the secondary we are virgin (init_resuid).
  async hello(): Promise<PrimaryHello> {
    let virgin = false;
    if (this.component.metadata.resuid === 0n) {
      await this.component.update({ resuid: randomResuid() });
      virgin = true;
    }
    const { resuid, localcnt, remotecnt } = this.component.metadata;
    return { resuid, localcnt, remotecnt, virgin };
  }

  // The secondary accepted: remember its counters; a freshly created secondary means only we have data.
  async learn(answer: NodeCounters & { virgin: boolean }): Promise<void> {
    this.secondary = { localcnt: answer.localcnt, remotecnt: answer.remotecnt };
    if (answer.virgin && this.localcnt === 0n) {
      this.log.debug('Increasing localcnt to 1.');
      await this.component.update({ localcnt: 1n });
    }
  }

  // The secondary missed a write: the first such write since the counters last matched bumps localcnt. A
  // failure to store it is logged, not passed on: the write is on disk and marked for sync either way.
  async peerMissedWrite(): Promise<void> {
    if (this.localcnt !== this.secondary.remotecnt) return;
    const localcnt = this.localcnt + 1n;
    this.log.debug(`Increasing localcnt to ${localcnt}.`);
    try {
      await this.component.update({ localcnt });
    } catch (error) {
      this.log.error(`${describeError(error)} Split-brain may go undetected until it is written.`);
    }
  }

  // A sync finished with the peer still connected: both nodes hold the same data again.
  async synchronized(): Promise<void> {
    const localcnt = this.secondary.remotecnt;
    const remotecnt = this.secondary.localcnt;
    this.log.debug(`Setting localcnt to ${localcnt} and remotecnt to ${remotecnt}.`);
    await this.component.update({ localcnt, remotecnt });
  }
}

// A random, non-zero resource id (hastd uses arc4random_buf).
function randomResuid(): bigint {
  for (;;) {
    const resuid = randomBytes(8).readBigUInt64LE();
    if (resuid !== 0n) return resuid;
  }
}
