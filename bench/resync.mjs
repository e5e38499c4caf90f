// Benchmark: resynchronisation after the secondary was away (issue 7). Two `carp-hast hastd -F` engines,
// node a (127.0.0.1, primary) and node b (127.0.0.2, secondary), on file-backed components, with a TCP
// relay in this process between them that counts the bytes; all I/O goes through fio's nbd engine to the
// primary's export <run-dir>/test.nbd (the engines run with --no-attach).
//
// Usage: npm run build && node bench/resync.mjs [--runs N] [--dir DIR] [--dirty SIZE] [--fg-dirty SIZE]
//                                               [--fg-seconds N] [--replication fullsync|memsync|async] [--json]
//
// Each run measures, with both engines connected and in sync at the start:
//   reference   1 MiB sequential writes, 8 in flight, of --dirty bytes (default 256M) through the primary:
//               the rate of the same path (NBD → primary → relay → secondary) in normal operation.
//   resync      b is stopped (SIGTERM), the same --dirty bytes are written to a alone, b is started again.
//               The time runs from the primary's "Synchronization started." log line to its "Synchronization
//               complete." line (the engines' own clock), so the reconnect interval (up to 5 s) is left out.
//               Rate = dirty bytes (`hastctl list` before the reconnect) / that time; target ≥ 0.8 × reference.
//               Also shown: the time from b's start to the end, reconnect included.
//   wire        bytes the relay carried from a to b from b's start to the end of the resync, over the dirty
//               extents × extentsize; target ≤ 1.05.
//   foreground  4 KiB random writes, 32 in flight, for --fg-seconds (default 10) over a 128 MiB area past
//               the dirty one (see FOREGROUND_AREA): once idle and in sync, once while a resync of --fg-dirty
//               bytes (default 1G) runs; target during ≥ 0.5 × idle. Also shown: how fast the resync went
//               meanwhile (dirty bytes before and after fio). If the resync ends before fio does, the run
//               says so: use a larger --fg-dirty.
// The table shows medians over --runs (default 3); ratios are medians of each run's own ratio, since the
// reference moves with the machine's load. DIR (default /var/tmp, a real disk) holds the components; they are
// filled with zeros first, as a disk would be, so that writes do not measure the file system's allocation.
// Processes and files are removed at the end, also after a failure or Ctrl-C.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { expandNumber } from '../dist/common/expand-number.js';
import { runCommand } from '../dist/common/run-command.js';
import { isHastctlFailure, parseHastctlList } from '../dist/supervisor/hastctl-output.js';

const MiB = 1024 * 1024;
const CLI = [process.execPath, fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))];
const RESOURCE = 'test';
const ADDRESS = { a: '127.0.0.1', b: '127.0.0.2' };
const QUICK = { timeoutMs: 30_000, killAfterMs: 5_000 };
// Where the foreground writes land: right after the larger dirty area, and only keepdirty × extentsize
// (hastd's defaults, 64 × 2 MiB) wide, so the map keeps those extents marked and a write costs no map update
// either way. Over the whole device, the idle run would pay a map write and fdatasync for most writes while
// the run during a resync, on a device nearly all marked already, would not: that compares the map, not
// the resync's effect on the writes.
const FOREGROUND_AREA = 128 * MiB;
// The component's metadata and activemap come ahead of the data area.
const METADATA_ROOM = 4 * MiB;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/var/tmp' },
    dirty: { type: 'string', default: '256M' },
    'fg-dirty': { type: 'string', default: '1G' },
    'fg-seconds': { type: 'string', default: '10' },
    replication: { type: 'string', default: 'fullsync' },
    json: { type: 'boolean', default: false },
  },
});

function sizeOption(name) {
  const bytes = expandNumber(values[name]);
  if (bytes === undefined || bytes === 0 || bytes % MiB !== 0) throw new Error(`--${name} takes a size in whole MiB (256M, 1G), not '${values[name]}'`);
  return bytes;
}

function countOption(name) {
  const count = Number(values[name]);
  if (!Number.isInteger(count) || count <= 0) throw new Error(`--${name} takes a positive whole number, not '${values[name]}'`);
  return count;
}

// ---- the relay ------------------------------------------------------------------------------------------

// Stands in for the network between a and b and counts the bytes each way. It connects to b from a's address
// because b accepts a primary only from the address its `remote` names.
class CountingRelay {
  forwarded = 0;
  returned = 0;
  #server;
  #sockets = new Set();

  constructor(server, target) {
    this.#server = server;
    server.on('connection', (client) => this.#accept(client, target));
  }

  static async start(host, target) {
    const server = createServer({ pauseOnConnect: true });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    });
    return new CountingRelay(server, target);
  }

  get port() {
    return this.#server.address().port;
  }

  // Starts a new count; called while b is down, when no connection carries anything.
  reset() {
    this.forwarded = 0;
    this.returned = 0;
  }

  async close() {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(client, target) {
    const upstream = connect(target);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.#sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.once('connect', () => {
      // pipe() keeps TCP's flow control end to end: the relay must not buffer what b cannot take yet.
      client.on('data', (chunk) => (this.forwarded += chunk.length));
      upstream.on('data', (chunk) => (this.returned += chunk.length));
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }
}

// ---- the cluster ----------------------------------------------------------------------------------------

// Ports that are free now, for the engines' listen addresses.
async function freePort(host) {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, host, resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// One hast.conf for both nodes, as real clusters share it; a's `remote` is the relay.
function hastConf({ dir, replication, ports, relayPort }) {
  return `timeout 20
on a {
	control uds://${join(dir, 'a.ctl')}
	listen ${ADDRESS.a}:${ports.a}
}
on b {
	control uds://${join(dir, 'b.ctl')}
	listen ${ADDRESS.b}:${ports.b}
}
resource ${RESOURCE} {
	replication ${replication}
	on a {
		local ${join(dir, 'a.img')}
		remote ${ADDRESS.b}:${relayPort}
		source ${ADDRESS.a}
	}
	on b {
		local ${join(dir, 'b.img')}
		remote ${ADDRESS.a}:${ports.a}
		source ${ADDRESS.b}
	}
}
`;
}

// A file of `bytes` zeros, written and flushed, so that later writes find allocated blocks.
async function zeroFile(path, bytes) {
  const handle = await open(path, 'w');
  const zeros = Buffer.alloc(8 * MiB);
  for (let at = 0; at < bytes; at += zeros.length) await handle.write(zeros, 0, Math.min(zeros.length, bytes - at), at);
  await handle.sync();
  await handle.close();
}

function hastctl(cluster, node, ...args) {
  return runCommand([...CLI, 'hastctl', ...args, '-c', cluster.conf, '-n', node], QUICK);
}

// The primary's `hastctl list` entry for the resource.
async function listEntry(cluster, node) {
  const { stdout } = await hastctl(cluster, node, 'list', RESOURCE);
  const entry = parseHastctlList(stdout).find((e) => e.name === RESOURCE);
  if (entry === undefined || isHastctlFailure(entry)) throw new Error(`hastctl list on ${node} has no report on ${RESOURCE}:\n${stdout}`);
  return entry;
}

// A `carp-hast hastd -F` process. It logs JSON records on stderr; the benchmark times the resync by their
// `time` (the engine's Date.now()), and waits for lines instead of polling hastctl, which would take CPU from
// the engines while they are measured.
class Engine {
  records = [];
  #output = [];
  #waiters = new Set();
  #child;

  constructor(node, child) {
    this.node = node;
    this.#child = child;
    let partial = '';
    child.stderr.on('data', (chunk) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const line of lines) this.#line(line);
    });
    child.once('exit', () => {
      for (const waiter of this.#waiters) waiter.fail(new Error(`hastd ${node} exited (${child.exitCode ?? child.signalCode}):\n${this.tail()}`));
    });
  }

  static start(cluster, node) {
    const argv = [...CLI, 'hastd', '-F', '-c', cluster.conf, '-n', node, '--run-dir', cluster.runDir[node], '--no-attach', '--log-format', 'json'];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Engine(node, child);
  }

  get pid() {
    return this.#child.pid;
  }

  get running() {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  // The last lines it printed, for failure messages.
  tail() {
    return this.#output.slice(-15).join('\n');
  }

  // Index of the next record: a wait from here on sees only lines printed after this call.
  mark() {
    return this.records.length;
  }

  // The first record from index `from` whose message matches, as soon as it is printed.
  waitForLog(pattern, from, what, timeoutMs = 300_000) {
    const found = this.records.slice(from).find((r) => pattern.test(r.msg));
    if (found !== undefined) return Promise.resolve(found);
    if (!this.running) return Promise.reject(new Error(`hastd ${this.node} is not running, so ${what} will not come:\n${this.tail()}`));
    return new Promise((resolve, reject) => {
      const waiter = {
        pattern,
        timer: setTimeout(() => waiter.fail(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what} on ${this.node}:\n${this.tail()}`)), timeoutMs),
        done: (record) => {
          clearTimeout(waiter.timer);
          this.#waiters.delete(waiter);
          resolve(record);
        },
        fail: (error) => {
          clearTimeout(waiter.timer);
          this.#waiters.delete(waiter);
          reject(error);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  // SIGTERM, as an administrator stops hastd; SIGKILL if it has not exited within 20 s.
  async stop() {
    if (!this.running) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(20_000, false)])) === false) {
      console.error(`hastd ${this.node} did not stop within 20 s of SIGTERM; sending SIGKILL`);
      this.#child.kill('SIGKILL');
      await exited;
    }
  }

  #line(line) {
    if (line === '') return;
    this.#output.push(line);
    let record;
    try {
      record = JSON.parse(line);
    } catch {
      return;
    }
    this.records.push(record);
    for (const waiter of this.#waiters) if (waiter.pattern.test(record.msg)) waiter.done(record);
  }
}

// Starts an engine for `node` and waits until its control socket answers.
async function startEngine(cluster, node) {
  const engine = Engine.start(cluster, node);
  cluster.engines[node] = engine;
  for (let attempt = 0; attempt < 100; attempt++) {
    if (!engine.running) throw new Error(`hastd ${node} exited at start:\n${engine.tail()}`);
    if (await hastctl(cluster, node, 'status', RESOURCE).then(() => true, () => false)) return engine;
    await sleep(100);
  }
  throw new Error(`hastd ${node} did not answer on its control socket:\n${engine.tail()}`);
}

// b back as secondary; resolves with a's log index from before b came back, and when b was started.
async function startSecondary(cluster) {
  const from = cluster.engines.a.mark();
  const startedAt = Date.now();
  await startEngine(cluster, 'b');
  await hastctl(cluster, 'b', 'role', 'secondary', RESOURCE);
  return { from, startedAt };
}

async function stopSecondary(cluster) {
  const from = cluster.engines.a.mark();
  await cluster.engines.b.stop();
  await cluster.engines.a.waitForLog(/^Disconnected from /, from, "the primary's disconnect");
}

// Waits for a's sync after a connect from log index `from`: the started line (if anything was dirty) and the
// complete or in-sync line.
async function waitForSync(cluster, from) {
  const done = await cluster.engines.a.waitForLog(/^(Synchronization complete|Nodes are in sync)/, from, 'the end of the synchronisation');
  const failure = cluster.engines.a.records.slice(from).find((r) => /^Synchronization (failed|left|interrupted)/.test(r.msg));
  if (failure !== undefined) throw new Error(`the primary's synchronisation went wrong: ${failure.msg}`);
  return done;
}

// The layout in `dir`, the relay and the shared hast.conf; engines are added as they start, so that the
// cleanup finds whatever was started before a failure.
async function createCluster(dir, replication) {
  const ports = { a: await freePort(ADDRESS.a), b: await freePort(ADDRESS.b) };
  const relay = await CountingRelay.start(ADDRESS.b, { host: ADDRESS.b, port: ports.b, localAddress: ADDRESS.a });
  const cluster = {
    conf: join(dir, 'hast.conf'),
    runDir: { a: join(dir, 'run-a'), b: join(dir, 'run-b') },
    socket: join(dir, 'run-a', `${RESOURCE}.nbd`),
    relay,
    engines: {},
  };
  await writeFile(cluster.conf, hastConf({ dir, replication, ports, relayPort: relay.port }));
  return cluster;
}

// Both components zeroed and created (hastd's defaults: 2 MiB extents, keepdirty 64), both engines, a primary
// with b connected and in sync, and one pass of each workload; returns the primary's line that ended the
// first synchronisation.
async function setUp(cluster, dir, componentBytes, options) {
  for (const node of ['a', 'b']) {
    await mkdir(cluster.runDir[node]);
    await zeroFile(join(dir, `${node}.img`), componentBytes);
    await hastctl(cluster, node, 'create', RESOURCE);
  }
  await startEngine(cluster, 'a');
  await startSecondary(cluster);
  const from = cluster.engines.a.mark();
  await hastctl(cluster, 'a', 'role', 'primary', RESOURCE);
  const done = await waitForSync(cluster, from);
  if (!existsSync(cluster.socket)) throw new Error(`the primary serves no NBD export at ${cluster.socket}:\n${cluster.engines.a.tail()}`);
  // The engines' first pass runs cold code and grows their buffers: measured, it made the first run's
  // reference a third of the next runs'.
  await fio(cluster.socket, sequential(Math.max(options.dirty, options.fgDirty)));
  await fio(cluster.socket, foreground(options.fgDirty, 2));
  return done.msg;
}

// ---- measuring ------------------------------------------------------------------------------------------

// fio processes still running, stopped by the cleanup after a failure or a signal.
const runningFio = new Set();

// One fio job through the primary's NBD export; MiB/s and IOPS of its writes, and when it ended.
async function fio(socket, job) {
  const argv = [
    'fio',
    '--name=resync-bench',
    '--ioengine=nbd',
    `--uri=nbd+unix:///?socket=${socket}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    ...(job.offset === undefined ? [] : [`--offset=${job.offset}`]),
    `--size=${job.size}`,
    ...(job.seconds === undefined ? [] : [`--runtime=${job.seconds}`, '--time_based']),
    '--output-format=json',
  ];
  let pid;
  const result = await runCommand(argv, { timeoutMs: 600_000, killAfterMs: 5_000, onSpawn: (p) => runningFio.add((pid = p)) }).finally(() =>
    runningFio.delete(pid),
  );
  const endedAt = Date.now();
  // fio's nbd engine prints "fio: connected to NBD server" on stdout ahead of the JSON.
  const write = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))).jobs[0].write;
  return { mibps: write.bw_bytes / MiB, iops: write.iops, endedAt };
}

const sequential = (bytes) => ({ rw: 'write', bs: '1M', iodepth: 8, size: bytes });
const foreground = (offset, seconds) => ({ rw: 'randwrite', bs: '4k', iodepth: 32, offset, size: FOREGROUND_AREA, seconds });

// Resident memory now and at its peak, from /proc (Linux).
async function memoryOf(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

// Names the phase that failed in front of whatever failed inside it.
async function phase(name, work) {
  try {
    return await work();
  } catch (error) {
    throw new Error(`${name}: ${error.message}`, { cause: error });
  }
}

// b away while `bytes` are written from the start of the device; returns what the primary then marks dirty.
async function dirtyWhileAway(cluster, bytes) {
  await stopSecondary(cluster);
  await fio(cluster.socket, sequential(bytes));
  const entry = await listEntry(cluster, 'a');
  // Every written extent must be marked, or the resync would not copy them.
  if (entry.dirty < bytes) throw new Error(`hastctl list shows ${entry.dirty} bytes dirty after writing ${bytes} with b away`);
  return { dirty: entry.dirty, extents: entry.dirty / entry.extentsize, extentsize: entry.extentsize };
}

async function measureResync(cluster, bytes) {
  const marked = await dirtyWhileAway(cluster, bytes);
  const mapUpdatesBefore = (await listEntry(cluster, 'a')).statistics.activemapUpdates;
  cluster.relay.reset();
  const { from, startedAt } = await startSecondary(cluster);
  const a = cluster.engines.a;
  const started = await a.waitForLog(/^Synchronization started\./, from, 'the start of the synchronisation');
  const complete = await waitForSync(cluster, from);
  // Taken at once, before keepalives or anything else adds to the counts.
  const wire = { forwarded: cluster.relay.forwarded, returned: cluster.relay.returned };
  const memory = { a: await memoryOf(a.pid), b: await memoryOf(cluster.engines.b.pid) };
  const mapUpdates = (await listEntry(cluster, 'a')).statistics.activemapUpdates - mapUpdatesBefore;
  const seconds = (complete.time - started.time) / 1000;
  return {
    ...marked,
    seconds,
    mibps: marked.dirty / MiB / seconds,
    // What an administrator waits: b's start, the primary's next reconnect attempt (every 5 s), the copy.
    secondsFromStart: (complete.time - startedAt) / 1000,
    wire,
    wireRatio: wire.forwarded / marked.dirty,
    memory,
    mapUpdates,
    log: [started.msg, complete.msg],
  };
}

// fio's 4 KiB random writes in the foreground area, with the primary's map updates and how far a running
// resync got meanwhile: the map updates show whether two foreground runs paid the same map costs, the
// resync's progress whether the foreground writes starve it.
async function foregroundWrites(cluster, offset, seconds) {
  const before = await listEntry(cluster, 'a');
  const result = await fio(cluster.socket, foreground(offset, seconds));
  const after = await listEntry(cluster, 'a');
  return {
    ...result,
    mapUpdates: after.statistics.activemapUpdates - before.statistics.activemapUpdates,
    dirtyAfter: after.dirty,
    resyncMibps: (before.dirty - after.dirty) / MiB / seconds,
  };
}

// fio's 4 KiB random writes while a resync of `bytes` runs, started once the primary has begun the copy.
async function foregroundDuringResync(cluster, bytes, seconds) {
  await dirtyWhileAway(cluster, bytes);
  const { from } = await startSecondary(cluster);
  const a = cluster.engines.a;
  await a.waitForLog(/^Synchronization started\./, from, 'the start of the synchronisation');
  const result = await foregroundWrites(cluster, bytes, seconds);
  const complete = await waitForSync(cluster, from);
  // The engine logs the end of the copy with its own clock; fio's end is taken here, on the same host clock.
  const coveredRun = complete.time > result.endedAt;
  return { ...result, coveredRun, log: complete.msg };
}

async function measureRun(cluster, options) {
  const reference = await phase('reference (1 MiB sequential writes, in sync)', () => fio(cluster.socket, sequential(options.dirty)));
  const resync = await phase('resync', () => measureResync(cluster, options.dirty));
  const idle = await phase('foreground idle (4 KiB random writes, in sync)', () => foregroundWrites(cluster, options.fgDirty, options.fgSeconds));
  const during = await phase('foreground during resync', () => foregroundDuringResync(cluster, options.fgDirty, options.fgSeconds));
  return {
    reference: { mibps: reference.mibps },
    resync,
    resyncRatio: resync.mibps / reference.mibps,
    idle,
    during,
    foregroundRatio: during.iops / idle.iops,
  };
}

// ---- report ---------------------------------------------------------------------------------------------

function median(numbers) {
  const sorted = [...numbers].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// Each measure: its label, how to read it from a run, its decimals and its target.
const MEASURES = [
  { label: 'reference: 1 MiB seq write QD8, in sync (MiB/s)', of: (r) => r.reference.mibps, digits: 0 },
  { label: "dirty before the reconnect, primary's hastctl list (MiB)", of: (r) => r.resync.dirty / MiB, digits: 0 },
  { label: 'resync of the dirty area (MiB/s)', of: (r) => r.resync.mibps, digits: 0 },
  { label: 'resync / reference', of: (r) => r.resyncRatio, digits: 2, target: '≥ 0.8', met: (v) => v >= 0.8 },
  { label: "b's start to the end of the resync (s)", of: (r) => r.resync.secondsFromStart, digits: 1 },
  { label: 'bytes a→b / (dirty extents × extentsize)', of: (r) => r.resync.wireRatio, digits: 4, target: '≤ 1.05', met: (v) => v <= 1.05 },
  { label: '4 KiB rand write QD32, idle (IOPS)', of: (r) => r.idle.iops, digits: 0 },
  { label: '4 KiB rand write QD32, during resync (IOPS)', of: (r) => r.during.iops, digits: 0 },
  { label: 'during / idle', of: (r) => r.foregroundRatio, digits: 2, target: '≥ 0.5', met: (v) => v >= 0.5 },
  { label: 'resync progress meanwhile (MiB/s)', of: (r) => r.during.resyncMibps, digits: 0 },
  { label: 'RSS at the end of the resync, primary (MB)', of: (r) => r.resync.memory.a.rss / 1e6, digits: 0 },
  { label: 'RSS at the end of the resync, secondary (MB)', of: (r) => r.resync.memory.b.rss / 1e6, digits: 0 },
];

function summary(runs) {
  return Object.fromEntries(MEASURES.map((m) => [m.label, median(runs.map(m.of))]));
}

function printTable(runs, context) {
  console.log(
    `\n${runs.length} runs; ${context.replication}, components ${context.componentMiB} MiB in ${context.dir}, dirty ${context.dirtyMiB} MiB, ` +
      `foreground ${context.fgSeconds} s during a resync of ${context.fgDirtyMiB} MiB; node ${process.version}, ` +
      `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}; medians`,
  );
  console.log('\n| measure | median | runs | target |\n|---|---:|---|---|');
  for (const m of MEASURES) {
    const value = median(runs.map(m.of));
    const verdict = m.target === undefined ? '–' : `${m.target}: ${m.met(value) ? 'met' : 'missed'}`;
    console.log(`| ${m.label} | ${value.toFixed(m.digits)} | ${runs.map((r) => m.of(r).toFixed(m.digits)).join(', ')} | ${verdict} |`);
  }
  const uncovered = runs.filter((r) => !r.during.coveredRun).length;
  if (uncovered > 0) {
    console.log(`\nIn ${uncovered} of ${runs.length} runs the resync ended before fio did: the "during" figure is partly idle; use a larger --fg-dirty.`);
  }
}

function describe(run) {
  const r = run.resync;
  return (
    `reference ${run.reference.mibps.toFixed(0)} MiB/s; resync ${r.dirty / MiB} MiB (${r.extents} extents) in ${r.seconds.toFixed(2)} s = ` +
    `${r.mibps.toFixed(0)} MiB/s (${run.resyncRatio.toFixed(2)}x, ${r.mapUpdates} map updates); wire a→b ${r.wire.forwarded} B (${r.wireRatio.toFixed(4)}), b→a ${r.wire.returned} B; ` +
    `RSS a ${(r.memory.a.rss / 1e6).toFixed(0)} MB b ${(r.memory.b.rss / 1e6).toFixed(0)} MB; 4 KiB QD32 idle ${run.idle.iops.toFixed(0)} IOPS ` +
    `(${run.idle.mapUpdates} map updates), during ${run.during.iops.toFixed(0)} IOPS (${run.during.mapUpdates} map updates, ` +
    `${run.foregroundRatio.toFixed(2)}x, resync meanwhile ${run.during.resyncMibps.toFixed(0)} MiB/s, dirty after fio ${run.during.dirtyAfter / MiB} MiB` +
    `${run.during.coveredRun ? '' : ', RESYNC ENDED BEFORE FIO'}); "${r.log[1]}"`
  );
}

// ---- main -----------------------------------------------------------------------------------------------

async function main() {
  const options = {
    runs: countOption('runs'),
    dirty: sizeOption('dirty'),
    fgDirty: sizeOption('fg-dirty'),
    fgSeconds: countOption('fg-seconds'),
  };
  if (!['fullsync', 'memsync', 'async'].includes(values.replication)) throw new Error(`--replication takes fullsync, memsync or async, not '${values.replication}'`);
  const componentBytes = Math.max(options.dirty, options.fgDirty) + FOREGROUND_AREA + METADATA_ROOM;
  const dir = await mkdtemp(join(values.dir, 'resync-bench-'));
  let cluster;
  let cleaning;
  const cleanup = () => {
    cleaning ??= (async () => {
      for (const pid of runningFio) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // It ended on its own meanwhile.
        }
      }
      for (const engine of Object.values(cluster?.engines ?? {})) await engine.stop();
      await cluster?.relay.close();
      await rm(dir, { recursive: true, force: true });
    })();
    return cleaning;
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      console.error(`${signal}: stopping the engines and removing ${dir}`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    cluster = await phase('setup', () => createCluster(dir, values.replication));
    console.error(`setup: ${await phase('setup', () => setUp(cluster, dir, componentBytes, options))}`);
    const runs = [];
    for (let i = 0; i < options.runs; i++) {
      const run = await measureRun(cluster, options);
      runs.push(run);
      console.error(`run ${i + 1}/${options.runs}: ${describe(run)}`);
    }
    const context = {
      replication: values.replication,
      dir: values.dir,
      componentMiB: componentBytes / MiB,
      dirtyMiB: options.dirty / MiB,
      fgDirtyMiB: options.fgDirty / MiB,
      fgSeconds: options.fgSeconds,
    };
    if (values.json) console.log(JSON.stringify({ context, medians: summary(runs), runs }, null, 2));
    else printTable(runs, context);
  } finally {
    await cleanup();
  }
}

await main().catch((error) => {
  console.error(`resync benchmark: ${error.message}`);
  process.exitCode = 1;
});
