// `carp-hast supervise` put together: the engine as a managed child, devd's socket, the control socket and
// the health schedule, all feeding the Supervisor's reconcile.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../common/log.js';
import type { SupervisorConfig } from '../config/supervisor-conf.js';
import { SupervisorControlServer, type SupervisorReply, type SupervisorRequest } from './control-socket.js';
import { DevdSource } from './devd-source.js';
import { EngineChild, engineArgv, type FoldedLine } from './engine-child.js';
import { EngineControl } from './engine-control.js';
import { keptMessage, recoverDiscardLocal, recoverKeepLocal } from './recover.js';
import { buildStatusReport, type StatusReport } from './status-report.js';
import { Supervisor } from './supervisor.js';
import { systemOps } from './system-ops.js';

// How long the daemon waits for a (re)started engine to answer hastctl before reconciling anyway.
const ENGINE_READY_TIMEOUT_MS = 30_000;
const ENGINE_POLL_MS = 200;

// What differs between a real installation and a test: the platform's tools, a PATH with stand-ins, the
// `carp-hast` command line the built-in engine runs from.
export interface DaemonOptions {
  config: SupervisorConfig;
  log: Logger;
  platform?: NodeJS.Platform;
  env?: Record<string, string>;
  cli?: string[];
  // Engine restart backoff (tests shorten it).
  engineBackoffMs?: number;
}

// A running supervisor daemon.
export class SupervisorDaemon {
  private readonly startedAt = new Date().toISOString();
  private readonly splitBrain = new Set<string>();
  private readonly engineControl: EngineControl;
  private readonly supervisor: Supervisor;
  private engineChild: EngineChild | undefined;
  private adoptedEngine = false;
  // Health checks in a row in which the adopted engine did not answer.
  private adoptedSilent = 0;
  // The health check of an adopted engine in flight, which stop() waits for: it may start an engine.
  private adoptedCheck: Promise<void> | undefined;
  private stopping = false;
  private devd: DevdSource | undefined;
  private control: SupervisorControlServer | undefined;
  private health: ScheduledTask | undefined;
  private config: SupervisorConfig;

  private constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.engineControl = new EngineControl(options.config.engine, options.cli === undefined ? {} : { cli: options.cli });
    this.supervisor = new Supervisor({
      config: options.config,
      log: options.log,
      ops: systemOps({ ...options, splitBrain: this.splitBrain }),
    });
    this.supervisor.addWarningSource(() => this.engineWarnings());
    this.supervisor.setEngineRunning(() => this.engineRunning());
  }

  // Starts everything; the first reconcile runs once the engine answers.
  static async start(options: DaemonOptions): Promise<SupervisorDaemon> {
    const daemon = new SupervisorDaemon(options);
    await daemon.startEngine();
    daemon.control = await SupervisorControlServer.listen(
      options.config.supervisor.controlSocket,
      (request) => daemon.answer(request),
      options.log.child({ component: 'control' }),
    );
    daemon.startDevd();
    daemon.health = cron.schedule(options.config.supervisor.healthSchedule, () => {
      daemon.supervisor.reconcile('the health check');
      daemon.adoptedCheck ??= daemon.checkAdoptedEngine().finally(() => (daemon.adoptedCheck = undefined));
    });
    void daemon.reconcileWhenEngineAnswers('start');
    options.log.info({ config: options.config.file }, 'Supervisor started.');
    return daemon;
  }

  // Takes a new configuration (SIGHUP). Engine, sockets and schedule keep the settings they started with;
  // changing those needs a restart, which the log says.
  reload(config: SupervisorConfig): void {
    const pending = settingsNeedingRestart(this.config, config);
    if (pending.length > 0) this.options.log.warn({ settings: pending }, `These settings take effect after a restart: ${pending.join(', ')}.`);
    this.config = config;
    this.supervisor.reconfigure(config);
    this.options.log.info({ config: config.file }, 'Configuration reloaded.');
  }

  // The status report.
  status(): StatusReport {
    return buildStatusReport(this.supervisor.view(), {
      node: this.config.engine.node ?? hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      engine: {
        kind: this.config.engine.kind,
        pid: this.engineChild?.pid,
        running: this.engineRunning(),
        restarts: this.engineChild?.restarts ?? 0,
      },
    });
  }

  // Lets go of the node and stops (SIGTERM): demote, then stop the engine, devd, the schedule and the socket.
  async stop(): Promise<void> {
    this.stopping = true;
    this.health?.stop();
    await this.devd?.stop();
    const record = await this.supervisor.shutdown();
    if (record.outcome !== 'done') this.options.log.error({ err: record.error }, 'Stopping without having let go cleanly.');
    await this.control?.close();
    await this.adoptedCheck;
    await this.engineChild?.stop();
    this.options.log.info('Supervisor stopped.');
  }

  private async answer(request: SupervisorRequest): Promise<SupervisorReply> {
    switch (request.op) {
      case 'status':
        return { ok: true, message: 'status', data: this.status() };
      case 'switch': {
        const outcome = await this.supervisor.requestSwitch(request.role, { operator: request.operator, wait: request.wait });
        return { ok: outcome.ok, message: outcome.message };
      }
      case 'recover':
        return request.keep === 'local' ? this.keepLocal(request.resource) : this.discardLocal(request.resource);
    }
  }

  private async discardLocal(resource: string): Promise<SupervisorReply> {
    this.options.log.warn({ resource }, `Recovery of ${resource} requested: discarding this node's copy.`);
    const record = await this.supervisor.exclusive(() => recoverDiscardLocal(this.engineControl, resource, this.options.log));
    if (record.outcome === 'done') this.splitBrain.delete(resource);
    return record.outcome === 'done'
      ? { ok: true, message: `${resource} is secondary with fresh metadata; the peer will send it a full copy.`, data: record }
      : { ok: false, message: `Recovery of ${resource} failed: ${record.error}.`, data: record };
  }

  private async keepLocal(resource: string): Promise<SupervisorReply> {
    this.options.log.warn({ resource }, `Recovery of ${resource} requested: keeping this node's copy.`);
    const record = await this.supervisor.exclusive(() => recoverKeepLocal(this.engineControl, resource, this.options.log));
    if (record.outcome !== 'done') return { ok: false, message: `Recovery of ${resource} failed: ${record.error}.`, data: record };
    this.splitBrain.delete(resource);
    return { ok: true, message: keptMessage(resource, record), data: record };
  }

  // Adopts an engine that already answers (a supervisor restart leaves the storage alone), else starts one.
  private async startEngine(): Promise<void> {
    const log = this.options.log;
    if (await this.engineAnswers()) {
      this.adoptedEngine = true;
      log.info('The engine is already running; supervising it through hastctl without restarting it.');
      return;
    }
    if (this.stopping) return;
    const argv = engineArgv(this.config.engine, this.options.cli === undefined ? {} : { cli: this.options.cli });
    const backoff = this.options.engineBackoffMs;
    this.engineChild = new EngineChild(
      { argv, log, ...(backoff === undefined ? {} : { initialBackoffMs: backoff, maxBackoffMs: backoff * 8 }) },
      {
        onStarted: () => void this.reconcileWhenEngineAnswers('the engine starting'),
        onExited: (info) => {
          log.warn({ code: info.code, signal: info.signal }, 'The engine exited; its resources are back in init when it restarts.');
          this.supervisor.reconcile('the engine exiting');
        },
        onLine: (line) => this.watchEngineLine(line),
      },
    );
    this.engineChild.start();
  }

  // An adopted engine that stops answering is replaced by one of this supervisor's own, as a child would be
  // restarted. Two silent checks in a row, not one: a second engine next to a slow but live one would only fail
  // to take the resources. Whether it answered is the last reconcile's reading, not a query of its own.
  private async checkAdoptedEngine(): Promise<void> {
    const snapshot = this.supervisor.view().snapshot;
    if (!this.adoptedEngine || snapshot === undefined) return;
    if (snapshot.engineError === undefined) {
      this.adoptedSilent = 0;
      return;
    }
    this.adoptedSilent++;
    if (this.adoptedSilent < 2 || this.stopping) return;
    this.options.log.error('The engine this supervisor adopted no longer answers; starting one of its own.');
    this.adoptedEngine = false;
    this.adoptedSilent = 0;
    await this.startEngine();
  }

  private startDevd(): void {
    const { carp } = this.config;
    if (carp.source !== 'devd') return;
    this.devd = new DevdSource(
      { socketPath: carp.devdSocket, log: this.options.log, vhids: carp.vhids },
      {
        onCarp: (t) => this.supervisor.reconcile(`devd: CARP ${t.vhid}@${t.interface} ${t.state}`),
        onConnected: () => this.supervisor.reconcile('connecting to devd'),
        onDisconnected: () => undefined,
      },
    );
    this.devd.start();
  }

  // FreeBSD's hastd reports a split-brain only in its log ("Split-brain condition!", "Split-brain detected,
  // exiting."); the built-in engine also says so in hastctl status, and its line only makes the reconcile early.
  private watchEngineLine(line: FoldedLine): void {
    const resource = line.fields['resource'];
    if (typeof resource !== 'string' || !/split-brain/i.test(line.msg)) return;
    if (!this.splitBrain.has(resource)) this.options.log.error({ resource }, `The engine reports split-brain on ${resource}.`);
    this.splitBrain.add(resource);
    this.supervisor.reconcile('a split-brain report');
  }

  private async engineAnswers(): Promise<boolean> {
    return this.engineControl.list().then(
      () => true,
      () => false,
    );
  }

  private async reconcileWhenEngineAnswers(trigger: string): Promise<void> {
    const deadline = Date.now() + ENGINE_READY_TIMEOUT_MS;
    while (!(await this.engineAnswers()) && Date.now() < deadline) await sleep(ENGINE_POLL_MS);
    this.supervisor.reconcile(trigger);
  }

  private engineRunning(): boolean {
    return this.adoptedEngine ? this.adoptedSilent === 0 : this.engineChild?.running === true;
  }

  private engineWarnings(): string[] {
    if (this.adoptedEngine) return this.adoptedSilent > 0 ? ['The engine this supervisor adopted did not answer the last health check.'] : [];
    const child = this.engineChild;
    if (child === undefined || child.running) return [];
    return [`The engine is not running${child.restarts > 0 ? ` (restarted ${child.restarts} times)` : ''}.`];
  }
}

// The settings a running daemon cannot change in place: the engine it started, the sockets it listens on
// and the schedule it set.
function settingsNeedingRestart(before: SupervisorConfig, after: SupervisorConfig): string[] {
  const pick = (c: SupervisorConfig) => ({
    engine: c.engine,
    'carp.source': c.carp.source,
    'carp.devd_socket': c.carp.devdSocket,
    'carp.vhids': c.carp.vhids,
    // Read and run by the node operations, which keep the configuration they were made with.
    'carp.vip': c.carp.vip,
    'carp.step_down': c.carp.stepDown,
    'supervisor.control_socket': c.supervisor.controlSocket,
    'supervisor.health_schedule': c.supervisor.healthSchedule,
  });
  const [old, now] = [pick(before), pick(after)];
  return (Object.keys(old) as (keyof typeof old)[]).filter((key) => JSON.stringify(old[key]) !== JSON.stringify(now[key]));
}
