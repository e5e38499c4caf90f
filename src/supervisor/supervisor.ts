// The supervisor's core: it turns hints (CARP events, switch requests, health ticks, engine restarts) into
// reconciles, and reconciles into at most one running transition, cancelling it when the wish changes.
import { hostname } from 'node:os';
import { humanizeBytes } from '../common/humanize.js';
import type { Logger } from '../common/log.js';
import { describeError } from '../common/errors.js';
import type { SupervisorConfig } from '../config/supervisor-conf.js';
import type { EngineResourceState, NodeOps } from './node-ops.js';
import { demotionSteps, devicePath, promotionSteps, SecondaryClock } from './plans.js';
import {
  assess,
  decide,
  isCompletePrimary,
  isCompleteSecondary,
  readSnapshot,
  wantedRole,
  type Decision,
  type NodeSnapshot,
  type SwitchHint,
} from './reconcile.js';
import { refusedPromotion, runSteps, type TransitionRecord } from './transition.js';

// What the supervisor itself runs; a recovery is run by an operator's request through exclusive().
type Move = 'promote' | 'demote';

// How many finished transitions status keeps.
const HISTORY = 20;

// The answer to a switch request.
export interface SwitchOutcome {
  ok: boolean;
  message: string;
}

// The supervisor's view of itself, for `carp-hast status`.
export interface SupervisorView {
  snapshot: NodeSnapshot | undefined;
  // When the snapshot was read (ISO 8601).
  observedAt: string | undefined;
  decision: Decision | undefined;
  wanted: { role: 'primary' | 'secondary'; why: string } | undefined;
  running: { direction: Move; reason: string; startedAt: string } | undefined;
  history: TransitionRecord[];
  warnings: string[];
}

interface Running {
  direction: Move;
  toward: 'primary' | 'secondary';
  reason: string;
  startedAt: string;
  controller: AbortController;
}

interface Waiter {
  role: 'primary' | 'secondary';
  resolve(outcome: SwitchOutcome): void;
}

// One supervisor per node; every decision goes through reconcile().
export class Supervisor {
  private config: SupervisorConfig;
  private readonly ops: NodeOps;
  private readonly log: Logger;
  private readonly now: () => number;
  private running: Running | undefined;
  private reconciling = false;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private held = false;
  // Counts transition starts and ends, so a reconcile can tell its snapshot straddled one.
  private generation = 0;
  private snapshot: NodeSnapshot | undefined;
  private observedAt: string | undefined;
  private decision: Decision | undefined;
  private hint: SwitchHint | undefined;
  private masterSince: number | undefined;
  private lastPromotionAt: number | undefined;
  private handedOver = false;
  // A CARP step-down not yet taken back (there is at most one: FreeBSD's demotion sysctl adds up).
  private steppedDown = false;
  private engineUnreadableSince: number | undefined;
  private lastRefusal: string | undefined;
  private demotionFailure: string | undefined;
  private readonly history: TransitionRecord[] = [];
  private waiters: Waiter[] = [];
  private idleWaiters: (() => void)[] = [];
  private extraWarnings: () => string[] = () => [];
  // Not known unless told: counted as not running, so that an engine that stays unreadable is given up on.
  private engineRunning: () => boolean = () => false;
  // Real time, not `now`: the promotion polls against it while the peer has its chance to connect.
  private readonly secondaryClock = new SecondaryClock();

  constructor(options: { config: SupervisorConfig; ops: NodeOps; log: Logger; now?: () => number }) {
    this.config = options.config;
    this.ops = options.ops;
    this.log = options.log;
    this.now = options.now ?? Date.now;
  }

  // Tells whether the engine's process runs, for those who know (the daemon with its child or adopted engine).
  setEngineRunning(probe: () => boolean): void {
    this.engineRunning = probe;
  }

  // Adds warnings that others know about (the managed engine's restarts) to the status view.
  addWarningSource(source: () => string[]): void {
    this.extraWarnings = source;
  }

  // Takes a new configuration (SIGHUP); the next reconcile and the next transition use it.
  reconfigure(config: SupervisorConfig): void {
    this.config = config;
    this.reconcile('configuration reloaded');
  }

  // Asks for a reconcile; several requests while one runs fold into one more pass.
  reconcile(trigger: string): void {
    if (this.stopped || this.held) {
      this.notifyIdle();
      return;
    }
    this.log.debug({ trigger }, `Reconciling after ${trigger}.`);
    if (this.reconciling) {
      this.again = true;
      return;
    }
    void this.reconcileLoop();
  }

  // A `carp-hast switch` (operator) or `carp-hast-switch` (hook) request. An operator asking for primary also
  // lifts the failback guard and undoes an earlier CARP step-down.
  async requestSwitch(role: 'primary' | 'secondary', options: { operator: boolean; wait: boolean }): Promise<SwitchOutcome> {
    this.log.info({ role, operator: options.operator }, `Switch to ${role} requested${options.operator ? ' by an operator' : ''}.`);
    if (options.operator && role === 'primary') {
      this.handedOver = false;
      this.lastRefusal = undefined;
      await this.restoreCarp();
    }
    this.hint = { role, at: this.now() };
    const outcome = options.wait ? new Promise<SwitchOutcome>((resolve) => this.waiters.push({ role, resolve })) : undefined;
    this.reconcile(`switch ${role} request`);
    return outcome ?? { ok: true, message: `Switch to ${role} handed to the supervisor.` };
  }

  // Runs `work` (a split-brain recovery) with reconciling held off, once nothing else runs; its record goes
  // into the history. Reconciles afterwards.
  async exclusive(work: () => Promise<TransitionRecord>): Promise<TransitionRecord> {
    this.held = true;
    try {
      await this.idle();
      const record = await work();
      this.remember(record);
      return record;
    } finally {
      this.held = false;
      this.reconcile('an operator request ending');
    }
  }

  // Resolves once no reconcile, transition or retry timer is pending.
  async idle(): Promise<void> {
    if (this.isIdle()) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  // The current state for status.
  view(): SupervisorView {
    return {
      snapshot: this.snapshot,
      observedAt: this.observedAt,
      decision: this.decision,
      wanted: this.snapshot === undefined ? undefined : wantedRole(this.snapshot, this.hint),
      running:
        this.running === undefined
          ? undefined
          : { direction: this.running.direction, reason: this.running.reason, startedAt: this.running.startedAt },
      history: [...this.history],
      warnings: this.warnings(),
    };
  }

  // Lets go of the node (SIGTERM): cancels a running transition, then demotes and stops reconciling.
  async shutdown(): Promise<TransitionRecord> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.running?.controller.abort();
    await this.idle();
    const record = await runSteps('demote', 'the supervisor is stopping', demotionSteps(this.config, this.ops, this.secondaryClock), {
      log: this.log,
      signal: new AbortController().signal,
    });
    this.remember(record);
    this.settleWaiters({ ok: false, message: 'The supervisor is stopping.' });
    return record;
  }

  private isIdle(): boolean {
    return !this.reconciling && this.running === undefined && this.retryTimer === undefined;
  }

  private async reconcileLoop(): Promise<void> {
    this.reconciling = true;
    try {
      do {
        this.again = false;
        const generation = this.generation;
        const snapshot = await readSnapshot(this.config, this.ops);
        // A transition that started or ended while the system was read makes the snapshot half old.
        if (generation !== this.generation) {
          this.again = true;
          continue;
        }
        this.observe(snapshot);
        if (this.running !== undefined) this.cancelIfUnwanted(snapshot);
        else await this.apply(decide(snapshot, assess(snapshot), this.context()), snapshot);
      } while (this.again && !this.stopped);
    } catch (error) {
      this.log.error({ err: describeError(error) }, 'Reconcile failed.');
    } finally {
      this.reconciling = false;
      this.notifyIdle();
    }
  }

  private context() {
    const s = this.config.supervisor;
    return {
      now: this.now(),
      hint: this.hint,
      masterSince: this.masterSince,
      lastPromotionAt: this.lastPromotionAt,
      handedOver: this.handedOver,
      failback: s.failback,
      settleMs: s.settleMs,
      minPromoteIntervalMs: s.minPromoteIntervalMs,
      engineUnreadableSince: this.engineUnreadableSince,
      engineRunning: this.engineRunning(),
    };
  }

  // Keeps what the decision needs from one snapshot to the next, and logs what changed.
  private observe(snapshot: NodeSnapshot): void {
    const wasMaster = this.snapshot?.carp?.state === 'MASTER';
    const isMaster = snapshot.carp?.state === 'MASTER';
    if (isMaster && !wasMaster) this.masterSince = this.now();
    if (!isMaster) this.masterSince = undefined;
    if (snapshot.engineError === undefined) this.engineUnreadableSince = undefined;
    else this.engineUnreadableSince ??= this.now();
    if (snapshot.carp !== undefined && snapshot.carp.state !== this.snapshot?.carp?.state) {
      this.log.info({ carp: snapshot.carp.detail }, `CARP is ${snapshot.carp.state} on this node.`);
    }
    for (const line of healthChanges(this.snapshot, snapshot)) this.log.info(line);
    for (const r of snapshot.resources) if (r.engine !== undefined) this.secondaryClock.observe(r.name, r.engine.role, r.engine.status);
    this.snapshot = snapshot;
    this.observedAt = new Date(this.now()).toISOString();
  }

  private cancelIfUnwanted(snapshot: NodeSnapshot): void {
    const wanted = wantedRole(snapshot, this.hint);
    const running = this.running;
    if (wanted === undefined || running === undefined || running.controller.signal.aborted) return;
    // A demotion gives up what secondary gives up too, whichever role it worked toward.
    if (wanted.role === running.toward || (wanted.role === 'secondary' && running.direction === 'demote')) return;
    this.log.warn({ wanted: wanted.role, why: wanted.why }, `Cancelling the running ${running.direction} at the next step: ${wanted.why}.`);
    running.controller.abort();
  }

  private async apply(decision: Decision, snapshot: NodeSnapshot): Promise<void> {
    // A shutdown or an operator's request that began while the system was read owns the node now.
    if (this.stopped || this.held) return;
    this.decision = decision;
    // Any decision replaces the one a pending retry was for.
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    switch (decision.action) {
      case 'none':
        this.log.debug({ reason: decision.reason }, 'Nothing to do.');
        this.answerWaiters(snapshot, decision.reason);
        return;
      case 'wait':
        this.log.info({ retryInMs: decision.retryInMs }, `Waiting before promoting: ${decision.reason}.`);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.reconcile('a wait ending');
        }, decision.retryInMs);
        return;
      case 'refuse':
        await this.refuse(decision.reason, decision.stepDown);
        return;
      case 'promote':
      case 'demote':
        this.start(decision.action, decision.toward, decision.reason, snapshot);
    }
  }

  private async refuse(reason: string, stepDown: boolean): Promise<void> {
    if (this.lastRefusal !== reason) {
      this.lastRefusal = reason;
      this.log.error({ reason }, `Refusing to promote: ${reason}.`);
      this.remember(refusedPromotion(reason));
      if (stepDown) await this.stepDown();
    }
    this.resolveWaiters('primary', { ok: false, message: `Refused: ${reason}.` });
  }

  private start(direction: Move, toward: Running['toward'], reason: string, snapshot: NodeSnapshot): void {
    const running: Running = { direction, toward, reason, startedAt: new Date(this.now()).toISOString(), controller: new AbortController() };
    this.running = running;
    this.generation++;
    const heldPrimary = snapshot.resources.some((r) => r.engine?.role === 'primary' || r.mountedFrom !== undefined || r.poolImported === true);
    if (direction === 'promote') this.lastPromotionAt = this.now();
    const carpTookItAway = heldPrimary && snapshot.carp !== undefined && snapshot.carp.state !== 'MASTER';
    void this.runTransition(running, carpTookItAway).then((retryNow) => {
      this.running = undefined;
      this.generation++;
      // A demotion that could not let go is tried again on the next health tick or event, not in a tight loop.
      if (retryNow && !this.stopped) this.reconcile(`the ${direction} ending`);
      else this.notifyIdle();
    });
  }

  // Runs one transition and what follows from its outcome; resolves to whether to reconcile at once.
  private async runTransition(running: Running, carpTookItAway: boolean): Promise<boolean> {
    const { direction, reason, controller } = running;
    const steps = direction === 'promote' ? promotionSteps(this.config, this.ops, this.secondaryClock) : demotionSteps(this.config, this.ops, this.secondaryClock);
    const record = await runSteps(direction, reason, steps, { log: this.log, signal: controller.signal });
    this.remember(record);
    if (direction === 'promote') {
      if (record.outcome === 'done') {
        this.handedOver = false;
        this.lastRefusal = undefined;
        // Serving now: a step-down left from before would hand MASTER away at the next preemption.
        await this.restoreCarp();
      } else if (record.outcome !== 'cancelled') {
        this.resolveWaiters('primary', { ok: false, message: `Promotion ${record.outcome}: ${record.error}.` });
        return this.rollBack(record);
      }
      return true;
    }
    if (record.outcome === 'failed') {
      this.resolveWaiters('secondary', { ok: false, message: `Demotion failed: ${record.error}.` });
      await this.demotionFailed(record);
      return false;
    }
    if (record.outcome !== 'done') return true;
    if (carpTookItAway) this.handedOver = true;
    const failed = record.steps.filter((step) => step.outcome === 'failed');
    this.demotionFailure = failed.length === 0 ? undefined : failed.map((s) => `${s.name} of ${s.target}: ${s.detail}`).join('; ');
    if (failed.length === 0) return true;
    // No reconcile follows at once (the next tick tries again), so a waiting switch is answered here; a clearing
    // before a promotion goes on to the promotion at once.
    this.resolveWaiters('secondary', { ok: false, message: `Demotion left work undone: ${this.demotionFailure}.` });
    return running.toward === 'primary';
  }

  // A failed promotion is undone by a demotion, then CARP is told to let the peer be MASTER.
  private async rollBack(failed: TransitionRecord): Promise<boolean> {
    const rollback = await runSteps('demote', `rolling back promotion ${failed.id}`, demotionSteps(this.config, this.ops, this.secondaryClock), {
      log: this.log,
      signal: new AbortController().signal,
    });
    this.remember(rollback);
    if (failed.outcome === 'failed') await this.stepDown();
    if (rollback.outcome !== 'failed') return true;
    await this.demotionFailed(rollback);
    return false;
  }

  private async restoreCarp(): Promise<void> {
    if (!this.steppedDown) return;
    // Cleared before the wait, so that two requests at once never undo one step-down twice.
    this.steppedDown = false;
    try {
      await this.ops.restoreCarp();
      this.log.info('Took back the earlier CARP step-down.');
    } catch (error) {
      this.steppedDown = true;
      this.log.error({ err: describeError(error) }, 'Could not undo the earlier CARP step-down.');
    }
  }

  private async stepDown(): Promise<void> {
    // FreeBSD's demotion adds up: a second one for a CARP that stayed MASTER (no peer to take over) would only
    // make the node lose MASTER for longer once it is the one that serves.
    if (this.steppedDown) {
      this.log.warn('CARP was already told to step down; not again.');
      return;
    }
    try {
      const argv = await this.ops.stepDownCarp();
      this.steppedDown = true;
      this.log.warn({ argv }, 'Told CARP to step down so the peer becomes MASTER.');
    } catch (error) {
      this.log.error({ err: describeError(error) }, 'Could not tell CARP to step down.');
    }
  }

  private async demotionFailed(record: TransitionRecord): Promise<void> {
    this.demotionFailure = record.error ?? 'unknown error';
    const checking = this.config.resources.flatMap((r) => this.ops.fsckStillRunning(devicePath(r.name)) ?? []);
    if (checking.length > 0) {
      // A reboot would cut the repair short, which is what keeping the role protects against.
      this.log.error({ fsck: checking }, `This node keeps its resources while ${checking.join(', ')} runs; the next health check tries again.`);
      return;
    }
    if (this.config.supervisor.onDemoteFailure === 'reboot') {
      const reason = `carp-hast could not release the storage: ${this.demotionFailure}`;
      this.log.fatal({ reason }, 'This node cannot let go of its resources; rebooting as on_demote_failure says.');
      await this.ops.reboot(reason).catch((error: unknown) => {
        this.log.error({ err: describeError(error) }, 'The reboot failed.');
      });
      return;
    }
    this.log.error('This node cannot let go of its resources; the next health check tries again (on_demote_failure = "none").');
  }

  private answerWaiters(snapshot: NodeSnapshot, reason: string): void {
    const assessment = assess(snapshot);
    for (const role of ['primary', 'secondary'] as const) {
      const complete = role === 'primary' ? isCompletePrimary(assessment) : isCompleteSecondary(assessment);
      const message = complete ? `This node is ${role}.` : `Not switched to ${role}: ${reason}.`;
      this.resolveWaiters(role, { ok: complete, message });
    }
  }

  private resolveWaiters(role: 'primary' | 'secondary', outcome: SwitchOutcome): void {
    const [matching, others] = partition(this.waiters, (w) => w.role === role);
    this.waiters = others;
    for (const waiter of matching) waiter.resolve(outcome);
  }

  private settleWaiters(outcome: SwitchOutcome): void {
    for (const waiter of this.waiters.splice(0)) waiter.resolve(outcome);
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private remember(record: TransitionRecord): void {
    this.history.unshift(record);
    this.history.length = Math.min(this.history.length, HISTORY);
  }

  private warnings(): string[] {
    const warnings: string[] = [];
    const snapshot = this.snapshot;
    if (snapshot?.engineError !== undefined) warnings.push(`The engine cannot be read: ${snapshot.engineError}.`);
    if (snapshot?.mountsError !== undefined) warnings.push(`The mount table cannot be read: ${snapshot.mountsError}.`);
    if (snapshot?.carpError !== undefined) warnings.push(`CARP cannot be read: ${snapshot.carpError}.`);
    for (const r of snapshot?.resources ?? []) {
      if (r.engine?.splitBrain === true) warnings.push(splitBrainWarning(r.engine, this.config.engine.node ?? hostname()));
      if (r.engine?.role === 'primary' && r.engine.status === 'degraded') {
        warnings.push(`${r.name} is degraded: the peer is not connected; ${r.engine.dirty} bytes to synchronise.`);
      }
    }
    for (const s of snapshot?.services ?? []) {
      if (s.error !== undefined) warnings.push(`The status of service ${s.name} cannot be read: ${s.error}.`);
    }
    if (this.lastRefusal !== undefined) warnings.push(`Promotion refused: ${this.lastRefusal}.`);
    if (this.demotionFailure !== undefined) warnings.push(`This node could not let go of its resources: ${this.demotionFailure}.`);
    if (this.steppedDown) {
      warnings.push('carp-hast told CARP to step down after a failed or refused promotion; `carp-hast switch primary` undoes it.');
    }
    return [...warnings, ...this.extraWarnings()];
  }
}

// Which node holds which changes and how to keep either; `node` is this node's name in hast.conf.
function splitBrainWarning(engine: EngineResourceState, node: string): string {
  const amount = (bytes: number | undefined) => (bytes === undefined ? 'an unknown amount' : humanizeBytes(bytes));
  const { name } = engine;
  // recover refuses on a primary: giving up its data would pull the storage from under the services.
  const here = engine.role === 'primary' ? 'run it here once CARP has made this node secondary' : 'run it here';
  // A secondary remembers the split-brain until told the peer gave in; a primary learns it when the peer connects.
  const keepHere = engine.role === 'primary' ? '' : `, then here: carp-hast recover ${name} --keep-local`;
  return (
    `Split-brain on ${name}: both nodes wrote while apart. ` +
    `This node (${node}) changed ${amount(engine.localChanges)}, the peer ${amount(engine.peerChanges)}. ` +
    `To keep this node's data, run on the other node: carp-hast recover ${name} --discard-local${keepHere}. ` +
    `To keep the other node's data, ${here}. The node that runs --discard-local receives a full copy.`
  );
}

function partition<T>(items: T[], test: (item: T) => boolean): [T[], T[]] {
  return [items.filter(test), items.filter((item) => !test(item))];
}

// Log lines for what changed between two snapshots: engine role and status, dirty data, mounts, services.
export function healthChanges(before: NodeSnapshot | undefined, after: NodeSnapshot): string[] {
  if (before === undefined) return [];
  const lines: string[] = [];
  for (const r of after.resources) {
    const old = before.resources.find((b) => b.name === r.name);
    const was = old?.engine;
    const now = r.engine;
    if (was?.role !== now?.role) lines.push(`Resource ${r.name} is now ${now?.role ?? 'unknown to the engine'}.`);
    if (was?.status !== now?.status && now?.status !== undefined) lines.push(`Resource ${r.name} is now ${now.status}.`);
    if ((was?.dirty ?? 0) === 0 && (now?.dirty ?? 0) > 0) lines.push(`Resource ${r.name} has ${now?.dirty} bytes to synchronise.`);
    if ((was?.dirty ?? 0) > 0 && now?.dirty === 0) lines.push(`Resource ${r.name} is synchronised.`);
    if (old?.mountedFrom !== r.mountedFrom && r.mountpoint !== undefined) {
      lines.push(r.mountedFrom === undefined ? `${r.mountpoint} is no longer mounted.` : `${r.mountpoint} is mounted from ${r.mountedFrom}.`);
    }
  }
  for (const s of after.services) {
    const was = before.services.find((b) => b.name === s.name)?.running;
    if (was !== s.running && s.running !== undefined) lines.push(`Service ${s.name} is ${s.running ? 'running' : 'not running'}.`);
  }
  return lines;
}
