// Ground truth and the decision taken from it: what this node holds right now (engine roles, mounts, pools,
// services, CARP), and whether to promote, demote, wait or refuse. Events only trigger a reconcile; this
// decides, so a missed or reordered event cannot leave the node wrong.
import type { SupervisorConfig } from '../config/supervisor-conf.js';
import { describeError } from '../common/errors.js';
import { findMount } from './mounts.js';
import type { CarpReading, EngineResourceState, NodeOps } from './node-ops.js';
import { devicePath, peerHoldsPrimary } from './plans.js';

// One resource as found on the system.
export interface ResourceSnapshot {
  name: string;
  engine: EngineResourceState | undefined;
  // The canonical path of /dev/hast/<name>, undefined while it does not exist.
  device: string | undefined;
  mountpoint: string | undefined;
  // The canonical path of what is mounted on the mountpoint (or the raw source if it no longer resolves).
  mountedFrom: string | undefined;
  pool: string | undefined;
  poolImported: boolean | undefined;
  // An fsck an earlier promotion stopped waiting for, still checking the device ("fsck.ext4 (pid 123)").
  fsckRunning: string | undefined;
}

// Everything the supervisor reads before it decides.
export interface NodeSnapshot {
  carp: CarpReading | undefined;
  carpError: string | undefined;
  engineError: string | undefined;
  mountsError: string | undefined;
  resources: ResourceSnapshot[];
  services: { name: string; running: boolean | undefined; error?: string }[];
}

// Reads the system; a failing reader is recorded in the snapshot, not thrown, so the rest is still known.
export async function readSnapshot(config: SupervisorConfig, ops: NodeOps): Promise<NodeSnapshot> {
  const [carp, engine, mounts] = await Promise.all([
    settle(ops.readCarp()),
    settle(ops.engineResources()),
    settle(ops.mounts()),
  ]);
  const resources = await Promise.all(
    config.resources.map(async (resource): Promise<ResourceSnapshot> => {
      const mountpoint = resource.fstype === 'zfs' || resource.fstype === 'none' ? undefined : resource.mountpoint;
      const mount = mountpoint !== undefined && mounts.value !== undefined ? findMount(mounts.value, mountpoint) : undefined;
      const pool = resource.fstype === 'zfs' ? (resource.pool ?? resource.name) : undefined;
      return {
        name: resource.name,
        engine: engine.value?.find((entry) => entry.name === resource.name),
        device: await ops.resolveDevice(devicePath(resource.name)),
        mountpoint,
        mountedFrom: mount === undefined ? undefined : ((await ops.resolveDevice(mount.source)) ?? mount.source),
        pool,
        poolImported: pool === undefined ? undefined : (await settle(ops.poolImported(pool))).value,
        fsckRunning: ops.fsckStillRunning(devicePath(resource.name)),
      };
    }),
  );
  const services = await Promise.all(
    config.services.map(async (service) => {
      const running = await settle(ops.serviceRunning(service));
      return { name: service.name, running: running.value, ...(running.error ? { error: running.error } : {}) };
    }),
  );
  return { carp: carp.value, carpError: carp.error, engineError: engine.error, mountsError: mounts.error, resources, services };
}

async function settle<T>(promise: Promise<T>): Promise<{ value: T | undefined; error: string | undefined }> {
  try {
    return { value: await promise, error: undefined };
  } catch (error) {
    return { value: undefined, error: describeError(error) };
  }
}

// What the snapshot says about the node, in plain words.
export interface Assessment {
  // What keeps the node from being a complete primary ("test: role secondary", "service nfsd not running").
  primaryGaps: string[];
  // What keeps it from being a complete secondary, ready for the peer ("test: mounted on /hast/test").
  secondaryGaps: string[];
  // Mounts or pools left without the device under them (the engine restarted underneath): cleared first.
  stale: string[];
  // Resources the peer holds as primary (our secondary is connected to it).
  peerPrimary: string[];
  splitBrain: string[];
}

// Compares the snapshot with a complete primary and a complete secondary.
export function assess(snapshot: NodeSnapshot): Assessment {
  const result: Assessment = { primaryGaps: [], secondaryGaps: [], stale: [], peerPrimary: [], splitBrain: [] };
  for (const r of snapshot.resources) {
    const role = r.engine?.role ?? 'unknown';
    if (role !== 'primary') result.primaryGaps.push(`${r.name}: role ${role}`);
    if (role !== 'secondary') result.secondaryGaps.push(`${r.name}: role ${role}`);
    if (r.engine !== undefined && peerHoldsPrimary(r.engine)) result.peerPrimary.push(r.name);
    if (r.engine?.splitBrain === true) result.splitBrain.push(r.name);
    if (r.mountpoint !== undefined) {
      if (r.mountedFrom === undefined) result.primaryGaps.push(`${r.name}: not mounted on ${r.mountpoint}`);
      else result.secondaryGaps.push(`${r.name}: mounted on ${r.mountpoint}`);
      // A killed engine leaves /dev/hast/<name> pointing at its dead device, so the role is checked first.
      if (r.mountedFrom !== undefined && role !== 'primary') {
        result.stale.push(`${r.mountpoint} is mounted from ${r.mountedFrom} but ${r.name} is ${role} in the engine`);
      } else if (r.mountedFrom !== undefined && r.device === undefined) {
        result.stale.push(`${r.mountpoint} is mounted from ${r.mountedFrom} but ${devicePath(r.name)} is gone`);
      } else if (r.mountedFrom !== undefined && r.mountedFrom !== r.device) {
        result.stale.push(`${r.mountpoint} is mounted from ${r.mountedFrom}, not from ${devicePath(r.name)} (${r.device})`);
      }
    }
    if (r.pool !== undefined) {
      if (r.poolImported === true) result.secondaryGaps.push(`${r.name}: pool ${r.pool} imported`);
      else result.primaryGaps.push(`${r.name}: pool ${r.pool} not imported`);
      if (r.poolImported === true && role !== 'primary') result.stale.push(`pool ${r.pool} is imported but ${r.name} is not primary`);
    }
  }
  for (const s of snapshot.services) {
    if (s.running === true) result.secondaryGaps.push(`service ${s.name} running`);
    if (s.running === false) result.primaryGaps.push(`service ${s.name} not running`);
  }
  return result;
}

// True when every resource is primary, mounted from its device and every checkable service runs.
export function isCompletePrimary(a: Assessment): boolean {
  return a.primaryGaps.length === 0 && a.stale.length === 0;
}

// True when every resource is secondary and the node holds no mount, pool or running service.
export function isCompleteSecondary(a: Assessment): boolean {
  return a.secondaryGaps.length === 0;
}

// The role asked for by a `carp-hast switch` or `carp-hast-switch` call.
export interface SwitchHint {
  role: 'primary' | 'secondary';
  at: number;
}

// The memory the decision needs beside the snapshot.
export interface DecisionContext {
  now: number;
  // Used only when nothing on this node can read CARP (carp.source = "notify" without vhids or vip).
  hint: SwitchHint | undefined;
  // When CARP was first seen MASTER in the current run of MASTER readings.
  masterSince: number | undefined;
  lastPromotionAt: number | undefined;
  // This node gave the resources up because CARP left MASTER, and no promotion has succeeded since.
  handedOver: boolean;
  failback: boolean;
  settleMs: number;
  minPromoteIntervalMs: number;
  // Since when every reading of the engine has failed; undefined while it answers.
  engineUnreadableSince: number | undefined;
  // Whether the engine's process runs (a hung engine is not a dead one: its primary may still replicate).
  engineRunning: boolean;
}

// How long the engine may stay down and unreadable (while it is restarted) before a CARP MASTER gives the address
// to the peer: the engine child restarts within seconds, so a minute without it is an engine that stays down.
export const ENGINE_LOST_MS = 60_000;

// What to do now.
export type Decision =
  | { action: 'none'; reason: string }
  // toward is the role the move works for: a demotion that clears a stale mount before a promotion works for primary.
  | { action: 'promote' | 'demote'; reason: string; toward: 'primary' | 'secondary' }
  | { action: 'wait'; reason: string; retryInMs: number }
  | { action: 'refuse'; reason: string; stepDown: boolean };

// The role this node should have, and why; undefined when nothing says (no CARP reading and no hint yet). A
// failed CARP reading says nothing: an old switch hint only stands in where CARP cannot be read at all.
export function wantedRole(snapshot: NodeSnapshot, hint: SwitchHint | undefined): { role: 'primary' | 'secondary'; why: string } | undefined {
  if (snapshot.carp !== undefined) {
    return { role: snapshot.carp.state === 'MASTER' ? 'primary' : 'secondary', why: `CARP ${snapshot.carp.detail}` };
  }
  if (snapshot.carpError !== undefined) return undefined;
  if (hint !== undefined) return { role: hint.role, why: `switch ${hint.role} requested` };
  return undefined;
}

// The decision: converge on the wanted role, guarded by settle, min_promote_interval, split-brain and failback.
export function decide(snapshot: NodeSnapshot, assessment: Assessment, ctx: DecisionContext): Decision {
  if (snapshot.engineError !== undefined) {
    const lost = ctx.engineUnreadableSince !== undefined && ctx.now - ctx.engineUnreadableSince >= ENGINE_LOST_MS;
    if (lost && !ctx.engineRunning && snapshot.carp?.state === 'MASTER') {
      // The storage is not served from here; the peer holds a copy of every acknowledged write.
      const reason = `the engine has not answered for ${ENGINE_LOST_MS / 1000} s; letting the peer take over`;
      return { action: 'refuse', reason, stepDown: true };
    }
    return { action: 'none', reason: `the engine cannot be read: ${snapshot.engineError}` };
  }
  if (snapshot.mountsError !== undefined) return { action: 'none', reason: `the mount table cannot be read: ${snapshot.mountsError}` };
  // Neither role may be taken while an earlier fsck repairs a device: not primary (a second fsck, a mount under
  // the repair), not secondary (the device would go from under it).
  const checking = snapshot.resources.filter((r) => r.fsckRunning !== undefined);
  if (checking.length > 0) {
    const what = checking.map((r) => `${r.fsckRunning} on ${devicePath(r.name)}`).join(', ');
    return { action: 'none', reason: `waiting for ${what}, left running by an earlier promotion` };
  }
  const wanted = wantedRole(snapshot, ctx.hint);
  if (wanted === undefined) {
    const why = snapshot.carpError === undefined ? 'no switch hint yet' : `CARP cannot be read: ${snapshot.carpError}`;
    return { action: 'none', reason: `nothing says which role this node should have (${why})` };
  }
  if (wanted.role === 'secondary') {
    return isCompleteSecondary(assessment)
      ? { action: 'none', reason: `secondary as wanted (${wanted.why})` }
      : { action: 'demote', reason: wanted.why, toward: 'secondary' };
  }
  if (assessment.stale.length > 0) return { action: 'demote', reason: `clearing a stale state first: ${assessment.stale.join('; ')}`, toward: 'primary' };
  if (isCompletePrimary(assessment)) return { action: 'none', reason: `primary as wanted (${wanted.why})` };
  if (assessment.splitBrain.length > 0) {
    return {
      action: 'refuse',
      reason: `split-brain on ${assessment.splitBrain.join(', ')}: not promoting; see carp-hast status for the recovery`,
      stepDown: false,
    };
  }
  if (!ctx.failback && ctx.handedOver && assessment.peerPrimary.length > 0) {
    return {
      action: 'refuse',
      reason:
        'failback is off and the peer is primary: not taking the resources back; ' +
        'run `carp-hast switch primary` on this node to move them on purpose',
      stepDown: true,
    };
  }
  if (snapshot.carp !== undefined && ctx.masterSince !== undefined && ctx.settleMs > 0) {
    const left = ctx.masterSince + ctx.settleMs - ctx.now;
    if (left > 0) return { action: 'wait', reason: `CARP must stay MASTER for the settle time (${left} ms left)`, retryInMs: left };
  }
  if (ctx.lastPromotionAt !== undefined) {
    const left = ctx.lastPromotionAt + ctx.minPromoteIntervalMs - ctx.now;
    if (left > 0) return { action: 'wait', reason: `the last promotion was less than min_promote_interval ago (${left} ms left)`, retryInMs: left };
  }
  return { action: 'promote', reason: wanted.why, toward: 'primary' };
}
