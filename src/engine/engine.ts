import { mkdir } from 'node:fs/promises';
import type { HastConfig } from '../config/hast-conf.js';
import type { Logger } from '../common/log.js';
import { ControlServer, type ControlTarget } from './control-server.js';
import type { ResourceReply } from './control-protocol.js';
import type { ExportPolicy } from './device-export.js';
import { attachUnavailableReason } from './hast-device.js';
import { HookRunner } from './hooks.js';
import { ManagedResource } from './managed-resource.js';
import type { HastRole } from './metadata.js';
import { isKnownPeer, PeerListener } from './peer-listener.js';
import { HAST_PROTO_VERSION } from './hast-proto.js';

// Where the engine keeps its runtime files, besides what hast.conf names.
export interface EngineOptions {
  log: Logger;
  // Per-resource sockets (NBD exports) live here.
  runDir: string;
  // Whether to make /dev/hast/<name> for primaries when the machine allows (default true).
  attach?: boolean;
  // Bytes per second each resource's resynchronisation may copy (default: no cap).
  syncRate?: number;
}

function addressOf(control: string): string {
  return control.replace(/^(uds|unix):\/\//i, '');
}

// The built-in hastd: every resource of one hast.conf in one process, the control socket hastctl talks to,
// and the listeners a peer primary connects to.
export class Engine implements ControlTarget {
  private config: HastConfig;
  private readonly options: EngineOptions;
  private readonly log: Logger;
  private readonly hooks: HookRunner;
  private readonly exportPolicy: ExportPolicy;
  private readonly resources = new Map<string, ManagedResource>();
  private control: ControlServer | undefined;
  private listener: PeerListener | undefined;
  private roleChanges: Promise<unknown> = Promise.resolve();

  private constructor(config: HastConfig, options: EngineOptions, attachUnavailable: string | undefined) {
    this.config = config;
    this.options = options;
    this.log = options.log;
    this.exportPolicy = { runDir: options.runDir, attachUnavailable };
    this.hooks = new HookRunner(options.log.child({ component: 'hooks' }));
    for (const resource of config.resources) this.resources.set(resource.name, this.newResource(resource));
  }

  // Starts serving: control socket first (so a second engine is refused early), then the peer listeners.
  static async start(config: HastConfig, options: EngineOptions): Promise<Engine> {
    const attachUnavailable = options.attach === false ? 'attaching was turned off' : await attachUnavailableReason();
    if (attachUnavailable !== undefined) {
      options.log.warn(`/dev/hast/<name> will not be created (${attachUnavailable}); primaries are served over NBD only.`);
    }
    const engine = new Engine(config, options, attachUnavailable);
    await mkdir(options.runDir, { recursive: true, mode: 0o755 });
    try {
      engine.control = await ControlServer.listen(addressOf(config.control), engine, options.log.child({ component: 'control' }));
      engine.listener = await engine.startListener(config.listen);
    } catch (error) {
      await engine.stop();
      throw error;
    }
    engine.log.info(`Started successfully, running protocol version ${HAST_PROTO_VERSION}.`);
    return engine;
  }

  get configuration(): HastConfig {
    return this.config;
  }

  // ControlTarget: resource names in configuration order.
  resourceNames(): string[] {
    return [...this.resources.keys()];
  }

  // ControlTarget: what hastctl status/list shows for one resource.
  describe(name: string): ResourceReply | undefined {
    return this.resources.get(name)?.describe();
  }

  // ControlTarget: one role change at a time across the engine, as hastd's parent serialises them.
  setRole(name: string, role: HastRole): Promise<HastRole> {
    const resource = this.resources.get(name);
    if (resource === undefined) return Promise.reject(new Error(`Unknown resource ${name}.`));
    const change = this.roleChanges.then(() => resource.setRole(role));
    this.roleChanges = change.catch(() => undefined);
    return change;
  }

  // The resource object, for the parts of the engine (the NBD export) that serve a primary's device.
  resource(name: string): ManagedResource | undefined {
    return this.resources.get(name);
  }

  // SIGHUP: the new configuration was parsed already; apply it resource by resource. The control socket and
  // listeners are replaced when their addresses changed.
  async reload(config: HastConfig): Promise<void> {
    const old = this.config;
    this.config = config;
    await this.roleChanges;
    for (const [name, managed] of this.resources) {
      if (config.resources.some((r) => r.name === name)) continue;
      this.log.info({ resource: name }, `Resource ${name} removed.`);
      await managed.shutdown();
      this.resources.delete(name);
    }
    for (const resource of config.resources) {
      const managed = this.resources.get(resource.name);
      if (managed === undefined) {
        this.resources.set(resource.name, this.newResource(resource));
        this.log.info({ resource: resource.name }, `Resource ${resource.name} added.`);
      } else if (JSON.stringify({ ...managed.resource, position: 0 }) !== JSON.stringify({ ...resource, position: 0 })) {
        await managed.reconfigure(resource);
      } else {
        managed.resource = resource;
      }
    }
    if (config.control !== old.control) {
      const previous = this.control;
      this.control = await ControlServer.listen(addressOf(config.control), this, this.log.child({ component: 'control' }));
      await previous?.close();
    }
    if (JSON.stringify(config.listen) !== JSON.stringify(old.listen)) {
      await this.listener?.close();
      this.listener = await this.startListener(config.listen);
    }
    this.log.info('Configuration reloaded successfully.');
  }

  // SIGTERM: every resource to init (workers stopped, connections closed), then the sockets removed.
  async stop(): Promise<void> {
    await this.roleChanges;
    await this.listener?.close();
    for (const managed of this.resources.values()) await managed.shutdown();
    await this.control?.close();
    this.log.info('Exiting.');
  }

  private async startListener(addresses: string[]): Promise<PeerListener> {
    const listener = new PeerListener({
      log: this.log.child({ component: 'listener' }),
      lookup: (name) => this.resources.get(name),
      peerAllowed: (ip) => isKnownPeer([...this.resources.values()].map((r) => r.resource), ip),
    });
    try {
      for (const address of addresses) {
        await listener.listen(address);
        this.log.info(`Listening on address ${address}.`);
      }
    } catch (error) {
      await listener.close();
      throw error;
    }
    return listener;
  }

  private newResource(resource: HastConfig['resources'][number]): ManagedResource {
    return new ManagedResource(resource, { log: this.log, hooks: this.hooks, exportPolicy: this.exportPolicy, syncRate: this.options.syncRate });
  }
}
