import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Activemap } from './activemap.js';
import { MAX_PEER_EXTENTS } from './metadata.js';
import type { ResourceComponent } from './resource-component.js';

// The extents whose only good copy is on the peer, because the local disk failed to write them after the
// peer had taken the data (research §8; hastd acknowledges such writes and forgets them, defect #9). Reads of
// them go to the peer, the sync copies them back from the peer, and the list is kept in the metadata so that a
// restart does not copy the stale local data over the good copy. A disk that cannot even write its metadata
// will not be opened again either.
export class PeerHeldExtents {
  private readonly component: ResourceComponent;
  private readonly map: Activemap;
  private readonly log: Logger;
  private readonly extents: Set<number>;

  constructor(component: ResourceComponent, map: Activemap, log: Logger) {
    this.component = component;
    this.map = map;
    this.log = log;
    this.extents = new Set(component.metadata.peerExtents ?? []);
  }

  get size(): number {
    return this.extents.size;
  }

  // The extents as a sorted list.
  list(): number[] {
    return [...this.extents].sort((a, b) => a - b);
  }

  // True when only the peer holds the extent.
  has(extent: number): boolean {
    return this.extents.has(extent);
  }

  // True when the range touches an extent only the peer holds.
  overlaps(offset: number, length: number): boolean {
    if (this.extents.size === 0) return false;
    const { first, last } = this.map.extentRange(offset, length);
    for (let extent = first; extent <= last; extent++) if (this.extents.has(extent)) return true;
    return false;
  }

  // Records the extents of a range the peer holds; false, with nothing recorded, when that would exceed
  // MAX_PEER_EXTENTS (the disk is failing too widely for the list to help).
  async add(offset: number, length: number): Promise<boolean> {
    const { first, last } = this.map.extentRange(offset, length);
    const added: number[] = [];
    for (let extent = first; extent <= last; extent++) if (!this.extents.has(extent)) added.push(extent);
    if (added.length === 0) return true;
    if (this.extents.size + added.length > MAX_PEER_EXTENTS) return false;
    for (const extent of added) this.extents.add(extent);
    await this.store();
    return true;
  }

  // The extent was copied back from the peer: the local copy is good again.
  async repaired(extent: number): Promise<void> {
    if (this.extents.delete(extent)) await this.store();
  }

  private async store(): Promise<void> {
    try {
      await this.component.update({ peerExtents: this.list() });
    } catch (error) {
      this.log.error(`Unable to record the extents only the peer holds: ${describeError(error)}`);
    }
  }
}
