// The lab: a two-node carp-hast cluster on one Linux machine, for trying failover and for the tests and the
// failover benchmark. Each node is a network namespace joined to the other by a veth pair; each runs
// `carp-hast supervise`, which runs its own engine. CARP is played by the lab: it moves the shared address
// between the namespaces and sends devd's lines to each node's devd socket. Needs root.
import { execa, type ResultPromise } from 'execa';
import { chmod, mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../common/run-command.js';
import { sendSupervisorRequest } from '../supervisor/control-socket.js';
import type { StatusReport } from '../supervisor/status-report.js';
import { startDevdServer, type DevdServer } from './devd-server.js';
import { lockHastDevices } from './machine-lock.js';

// The two nodes.
export type LabNode = 'a' | 'b';
export const LAB_NODES: readonly LabNode[] = ['a', 'b'];

const QUICK = { timeoutMs: 30_000, killAfterMs: 5_000 };
const MKFS = { timeoutMs: 120_000, killAfterMs: 5_000 };
// Addresses live inside the lab's own namespaces, so every lab can use the same ones.
const ADDRESS: Record<LabNode, string> = { a: '10.213.0.1', b: '10.213.0.2' };
export const LAB_VIP = '10.213.0.100';
const VHID = 1;
const DEFAULT_CLI = [process.execPath, fileURLToPath(new URL('../cli/main.js', import.meta.url))];

// How the lab is built.
export interface LabOptions {
  // An empty directory for the lab's files (configurations, components, sockets, mountpoints); short, since
  // unix socket paths are limited to about 100 bytes.
  dir: string;
  sizeMiB?: number;
  // ext4 on /dev/hast/test, or none (a raw device).
  fstype?: 'ext4' | 'none';
  // Extra lines for each node's [supervisor] table.
  supervisorSettings?: string;
  // The `carp-hast` command line (default: this installation's).
  cli?: string[];
}

// A built lab. Call destroy() when done, whatever happened.
export class Lab {
  readonly dir: string;
  readonly id: string;
  private readonly cli: string[];
  private readonly devd = new Map<LabNode, DevdServer>();
  private readonly supervisors = new Map<LabNode, ResultPromise>();
  // What each node's supervisors printed, kept after they exit.
  private readonly outputs = new Map<LabNode, string>();
  private unlock: (() => void) | undefined;

  private constructor(options: LabOptions, id: string) {
    this.dir = options.dir;
    this.id = id;
    this.cli = options.cli ?? DEFAULT_CLI;
  }

  // Creates namespaces, configurations and components, and (ext4) makes the file system through a primary.
  static async create(options: LabOptions): Promise<Lab> {
    const lab = new Lab(options, Math.random().toString(16).slice(2, 6));
    lab.unlock = await lockHastDevices();
    try {
      await lab.build(options);
    } catch (error) {
      await lab.destroy();
      throw new Error('building the lab', { cause: error });
    }
    return lab;
  }

  namespace(node: LabNode): string {
    return `chlab-${this.id}-${node}`;
  }

  iface(node: LabNode): string {
    return `chl${this.id}${node}`;
  }

  configPath(node: LabNode): string {
    return join(this.dir, `carp-hast-${node}.toml`);
  }

  controlSocket(node: LabNode): string {
    return join(this.dir, `sup-${node}.sock`);
  }

  mountpoint(node: LabNode): string {
    return join(this.dir, `mnt-${node}`);
  }

  // A node's local component: the image file under its HAST resource.
  componentPath(node: LabNode): string {
    return join(this.dir, `${node}.img`);
  }

  // A file the lab's service writes its pid into while it runs.
  servicePidFile(node: LabNode): string {
    return join(this.dir, `share-${node}.pid`);
  }

  // Starts `carp-hast supervise` for a node and waits until it answers status.
  async startSupervisor(node: LabNode): Promise<void> {
    // A supervisor runs for the lab's whole life, so it is a child process here, not a runCommand.
    const child = execa(
      'nsenter',
      [`--net=/var/run/netns/${this.namespace(node)}`, ...this.cli, 'supervise', '-c', this.configPath(node), '--log-format', 'json'],
      { reject: false, all: true, buffer: false, env: { CARP_HAST_LOG_LEVEL: 'debug' } },
    );
    this.outputs.set(node, '');
    child.all?.on('data', (chunk: Buffer) => this.outputs.set(node, `${this.outputs.get(node) ?? ''}${chunk.toString()}`));
    this.supervisors.set(node, child);
    const output = () => this.output(node);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`the supervisor of ${node} exited early:\n${output()}`);
      if (await this.status(node).then(() => true, () => false)) return;
      await sleep(100);
    }
    throw new Error(`the supervisor of ${node} did not answer:\n${output()}`);
  }

  // Stops a node's supervisor with `signal` (SIGTERM lets go of the storage) and waits for it to exit.
  async stopSupervisor(node: LabNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const supervisor = this.supervisors.get(node);
    if (supervisor === undefined) return;
    this.supervisors.delete(node);
    supervisor.kill(signal);
    await supervisor;
  }

  // What a node's supervisors printed so far.
  output(node: LabNode): string {
    return this.outputs.get(node) ?? '';
  }

  // The pid of the engine a node's supervisor runs.
  async enginePid(node: LabNode): Promise<number | undefined> {
    return (await this.status(node)).engine.pid;
  }

  // CARP changes state on a node: the shared address comes or goes, then devd reports it.
  async carp(node: LabNode, state: 'MASTER' | 'BACKUP' | 'INIT'): Promise<void> {
    const verb = state === 'MASTER' ? 'add' : 'del';
    await runCommand(['ip', '-n', this.namespace(node), 'addr', verb, `${LAB_VIP}/32`, 'dev', this.iface(node)], QUICK).catch(
      (error: unknown) => {
        if (verb === 'add') throw error;
      },
    );
    this.devd.get(node)?.emit(`!system=CARP subsystem=${VHID}@${this.iface(node)} type=${state}`);
  }

  // Cuts the link between the nodes: a's end of the veth goes down, so b's loses its carrier. Connections
  // between the engines are not closed; each engine finds out through its own timeouts, as in a real partition.
  async partition(): Promise<void> {
    await runCommand(['ip', '-n', this.namespace('a'), 'link', 'set', this.iface('a'), 'down'], QUICK);
  }

  // Restores the link cut by partition().
  async heal(): Promise<void> {
    await runCommand(['ip', '-n', this.namespace('a'), 'link', 'set', this.iface('a'), 'up'], QUICK);
  }

  // `carp-hast hastctl ARGS` against a node's engine (or, for create and dump, its component); resolves to
  // what it printed.
  async hastctl(node: LabNode, ...args: string[]): Promise<string> {
    return (await runCommand([...this.cli, 'hastctl', ...args, '-c', join(this.dir, 'hast.conf'), '-n', node], QUICK)).stdout;
  }

  // devd restarts on a node: its clients are dropped and must reconnect.
  async restartDevd(node: LabNode): Promise<void> {
    await this.devd.get(node)?.restart();
  }

  // A node's status report, from its supervisor.
  async status(node: LabNode): Promise<StatusReport> {
    const reply = await sendSupervisorRequest(this.controlSocket(node), { op: 'status' }, 10_000);
    return reply.data as StatusReport;
  }

  // `carp-hast switch` or `carp-hast-switch` on a node, as a separate process.
  switchCommand(node: LabNode, args: string[]) {
    return runCommand(['nsenter', `--net=/var/run/netns/${this.namespace(node)}`, ...this.cli, 'switch', '-c', this.configPath(node), ...args], {
      ...QUICK,
      timeoutMs: 120_000,
    }).catch((error: unknown) => error);
  }

  // Waits until a node's supervisor reports `role` as its actual state with nothing running, read after the
  // newest transition ended (a report taken between a transition and the next reading shows the one before).
  async waitForRole(node: LabNode, role: 'primary' | 'secondary', timeoutMs = 60_000): Promise<StatusReport> {
    const deadline = Date.now() + timeoutMs;
    let last: StatusReport | undefined;
    while (Date.now() < deadline) {
      last = await this.status(node).catch(() => undefined);
      if (last?.actual === role && last.running === undefined && readAfterLastTransition(last)) return last;
      await sleep(100);
    }
    throw new Error(`${node} did not become ${role}; last status: ${JSON.stringify(last, null, 2)}\n${this.output(node)}`);
  }

  // Stops everything the lab started and removes its namespaces and files.
  async destroy(): Promise<void> {
    for (const node of LAB_NODES) await this.stopSupervisor(node).catch(() => undefined);
    for (const server of this.devd.values()) await server.close();
    for (const node of LAB_NODES) {
      await runCommand(['umount', '-l', this.mountpoint(node)], QUICK).catch(() => undefined);
      await runCommand(['ip', 'netns', 'del', this.namespace(node)], QUICK).catch(() => undefined);
    }
    await rm(this.dir, { recursive: true, force: true });
    this.unlock?.();
    this.unlock = undefined;
  }

  private async build(options: LabOptions): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.buildNetwork();
    const fstype = options.fstype ?? 'ext4';
    await writeFile(join(this.dir, 'hast.conf'), this.hastConf());
    for (const node of LAB_NODES) {
      const image = this.componentPath(node);
      await writeFile(image, '');
      await truncate(image, (options.sizeMiB ?? 64) * 1024 * 1024);
      await runCommand([...this.cli, 'hastctl', 'create', '-c', join(this.dir, 'hast.conf'), '-n', node, 'test'], QUICK);
      await writeFile(this.configPath(node), this.supervisorConf(node, fstype, options.supervisorSettings ?? ''));
      await this.writeScripts(node, fstype);
      this.devd.set(node, await startDevdServer(join(this.dir, `devd-${node}.sock`)));
    }
    if (fstype === 'ext4') await this.makeFileSystem();
  }

  private async buildNetwork(): Promise<void> {
    const [a, b] = [this.namespace('a'), this.namespace('b')];
    const steps = [
      ['ip', 'netns', 'add', a],
      ['ip', 'netns', 'add', b],
      ['ip', 'link', 'add', this.iface('a'), 'netns', a, 'type', 'veth', 'peer', 'name', this.iface('b'), 'netns', b],
    ];
    for (const node of LAB_NODES) {
      const ns = this.namespace(node);
      steps.push(
        ['ip', '-n', ns, 'link', 'set', 'lo', 'up'],
        ['ip', '-n', ns, 'addr', 'add', `${ADDRESS[node]}/24`, 'dev', this.iface(node)],
        ['ip', '-n', ns, 'link', 'set', this.iface(node), 'up'],
      );
    }
    for (const argv of steps) await runCommand(argv, QUICK);
  }

  private hastConf(): string {
    const on = (node: LabNode) => `on ${node} {\n\tcontrol uds://${join(this.dir, `${node}.ctl`)}\n\tlisten ${ADDRESS[node]}\n}\n`;
    const local = (node: LabNode, peer: LabNode) =>
      `\ton ${node} {\n\t\tlocal ${this.componentPath(node)}\n\t\tremote ${ADDRESS[peer]}\n\t\tsource ${ADDRESS[node]}\n\t}\n`;
    return `# The lab's two nodes, a and b, each in its own network namespace.\ntimeout 5\n${on('a')}${on('b')}resource test {\n\treplication fullsync\n${local('a', 'b')}${local('b', 'a')}}\n`;
  }

  private supervisorConf(node: LabNode, fstype: 'ext4' | 'none', settings: string): string {
    const mount = fstype === 'ext4' ? `mountpoint = "${this.mountpoint(node)}"\n` : '';
    const script = (name: string) => JSON.stringify([join(this.dir, `${name}-${node}`)]);
    return `# The lab's node ${node}.
[engine]
kind = "builtin"
hast_conf = "${join(this.dir, 'hast.conf')}"
node = "${node}"
run_dir = "${join(this.dir, `run-${node}`)}"

[carp]
source = "devd"
devd_socket = "${join(this.dir, `devd-${node}.sock`)}"
vhids = ["${VHID}@${this.iface(node)}"]
vip = "${LAB_VIP}"
step_down = ${script('step-down')}

[supervisor]
control_socket = "${this.controlSocket(node)}"
min_promote_interval = "0s"
peer_release_timeout = "20s"
# The lab moves the address back and forth on purpose.
failback = true
health_schedule = "*/2 * * * * *"
${settings}

[[resource]]
name = "test"
fstype = "${fstype}"
${mount}device_timeout = "20s"

[[service]]
name = "share"
start = ${script('share-start')}
stop = ${script('share-stop')}
status = ${script('share-status')}
timeout = "10s"
`;
  }

  // The step-down command (CARP gives up the address) and a service that holds the mount like a file server.
  private async writeScripts(node: LabNode, fstype: 'ext4' | 'none'): Promise<void> {
    const pidFile = this.servicePidFile(node);
    // The service works inside the mount, holding it busy as a file server would.
    const where = fstype === 'ext4' ? this.mountpoint(node) : this.dir;
    const scripts: Record<string, string> = {
      'step-down': `ip addr del ${LAB_VIP}/32 dev ${this.iface(node)} 2>/dev/null\necho "${node}" >> ${join(this.dir, 'step-downs.log')}\n`,
      'share-start': `[ -e ${join(this.dir, `share-${node}.fail`)} ] && { echo "share: refusing to start (lab fault)" >&2; exit 1; }\ncd ${where} || exit 1\nsetsid sleep 100000 </dev/null >/dev/null 2>&1 &\necho $! > ${pidFile}\n`,
      'share-stop': `[ -e ${pidFile} ] || exit 0\nkill "$(cat ${pidFile})" 2>/dev/null\nrm -f ${pidFile}\n`,
      'share-status': `[ -e ${pidFile} ] && kill -0 "$(cat ${pidFile})" 2>/dev/null\n`,
    };
    for (const [name, body] of Object.entries(scripts)) {
      const path = join(this.dir, `${name}-${node}`);
      await writeFile(path, `#!/bin/sh\n${body}`);
      await chmod(path, 0o755);
    }
  }

  // ext4 goes on the device through a primary whose peer is connected, so both components carry it.
  private async makeFileSystem(): Promise<void> {
    const conf = join(this.dir, 'hast.conf');
    const engines = LAB_NODES.map((node) =>
      execa('nsenter', [`--net=/var/run/netns/${this.namespace(node)}`, ...this.cli, 'hastd', '-F', '-c', conf, '-n', node, '--run-dir', join(this.dir, `run-${node}`)], {
        reject: false,
        all: true,
      }),
    );
    try {
      await retry(() => this.hastctl('b', 'role', 'secondary', 'test'));
      await retry(() => this.hastctl('a', 'role', 'primary', 'test'));
      await retry(async () => {
        const stdout = await this.hastctl('a', 'status', 'test');
        if (!/complete/.test(stdout)) throw new Error(`not connected yet: ${stdout}`);
      });
      await runCommand(['mkfs.ext4', '-q', '-F', '/dev/hast/test'], MKFS);
      await this.hastctl('a', 'role', 'init', 'test');
      await this.hastctl('b', 'role', 'init', 'test');
    } finally {
      for (const engine of engines) engine.kill('SIGTERM');
      await Promise.all(engines);
    }
  }
}

async function retry<T>(work: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

function readAfterLastTransition(report: StatusReport): boolean {
  const newest = report.transitions[0];
  if (newest === undefined) return true;
  if (report.observedAt === undefined) return false;
  return Date.parse(report.observedAt) >= Date.parse(newest.startedAt) + newest.durationMs;
}
