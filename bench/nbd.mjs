// Benchmark: the NBD export against nbdkit's file plugin, both serving a file of the same size, driven by
// fio's nbd engine (libnbd, one connection).
//
// Usage: npm run build && node bench/nbd.mjs [--dir DIR] [--size MIB] [--runtime SECONDS] [--rounds N]
//                                            [--targets file,none,fullsync,memsync]
//                                            [--workloads seq,rand32,rand1,read32]
//
// Targets (what our NbdServer exports):
//   file      a file-backed BlockDevice in this process (the NBD server alone, no engine)
//   none      a real primary (PrimaryWorker, hastd's defaults: 2 MiB extents, keepdirty 64, metaflush on) with
//             `remote none`, exported as the engine does it (DeviceExport: <run-dir>/<name>.nbd)
//   fullsync  the same primary replicating to a secondary engine in another process over loopback TCP
//   memsync   likewise, in memsync mode
// Each round runs every workload once against each target and once against `nbdkit -U SOCKET file FILE`,
// alternating the order, because this kind of machine drifts between runs. It prints the median of each and
// the ratio ours/nbdkit per workload and target: 1 MiB sequential write QD8 (MiB/s), 4 KiB random write QD32
// (IOPS), 4 KiB random write QD1 (IOPS, mean and p99 latency), 4 KiB random read QD32 (IOPS). DIR should be
// on the disk you care about (default: the OS temp directory; files there sit in the page cache, so this
// measures the servers more than the disk). Component files are filled with zeros first, as a disk would be.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { close, fdatasync, ftruncate, open, read, write, writev } from 'node:fs';
import { mkdir, mkdtemp, open as openFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createComponent } from '../dist/engine/component-metadata.js';
import { DeviceExport } from '../dist/engine/device-export.js';
import { NbdServer } from '../dist/engine/nbd-server.js';
import { PrimaryWorker } from '../dist/engine/primary.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    size: { type: 'string', default: '256' },
    runtime: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    targets: { type: 'string', default: 'none,fullsync,memsync' },
    workloads: { type: 'string', default: 'seq,rand32,rand1,read32' },
  },
});
const TARGETS = values.targets.split(',');
const size = Number(values.size) * 1024 * 1024;
const runtime = Number(values.runtime);
const rounds = Number(values.rounds);

const WORKLOADS = [
  { key: 'seq', name: '1 MiB seq write QD8', rw: 'write', bs: '1M', iodepth: 8, unit: 'MiB/s' },
  { key: 'rand32', name: '4 KiB rand write QD32', rw: 'randwrite', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { key: 'rand1', name: '4 KiB rand write QD1', rw: 'randwrite', bs: '4k', iodepth: 1, unit: 'IOPS', latency: true },
  { key: 'read32', name: '4 KiB rand read QD32', rw: 'randread', bs: '4k', iodepth: 32, unit: 'IOPS' },
].filter((workload) => values.workloads.split(',').includes(workload.key));

// The test suite's FileBlockDevice (test/fixtures/file-block-device.ts) in plain JS: positional reads and
// writes through callback fs calls, fdatasync for flush and FUA, trim as written zeros.
class FileBlockDevice {
  constructor(fd, size) {
    this.fd = fd;
    this.size = size;
    this.blockSize = 512;
    // fio's nbd engine does not split requests: 1 MiB writes need a maximum of at least that.
    this.maxRequest = 32 * 1024 * 1024;
  }

  static async create(path, size) {
    const fd = await new Promise((resolve, reject) => open(path, 'w+', (error, fd) => (error ? reject(error) : resolve(fd))));
    await new Promise((resolve, reject) => ftruncate(fd, size, (error) => (error ? reject(error) : resolve())));
    return new FileBlockDevice(fd, size);
  }

  read(offset, length) {
    const buffer = Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) => {
      read(this.fd, buffer, 0, length, offset, (error, n) => {
        if (error || n !== length) reject(error ?? new Error('short read'));
        else resolve(buffer);
      });
    });
  }

  // The NBD server hands over a write's data as the socket chunks it came in.
  async write(offset, data, options = {}) {
    const length = Buffer.isBuffer(data) ? data.length : data.reduce((sum, buffer) => sum + buffer.length, 0);
    await new Promise((resolve, reject) => {
      const done = (error, n) => {
        if (error || n !== length) reject(error ?? new Error('short write'));
        else resolve();
      };
      if (Buffer.isBuffer(data)) write(this.fd, data, 0, length, offset, done);
      else writev(this.fd, data, offset, done);
    });
    if (options.fua) await this.flush();
  }

  flush() {
    return new Promise((resolve, reject) => fdatasync(this.fd, (error) => (error ? reject(error) : resolve())));
  }

  async trim(offset, length) {
    const zeros = Buffer.alloc(Math.min(length, this.maxRequest));
    for (let done = 0; done < length; done += zeros.length) {
      await this.write(offset + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
    }
  }

  close() {
    return new Promise((resolve, reject) => close(this.fd, (error) => (error ? reject(error) : resolve())));
  }
}

// Runs a program to completion; resolves with its stdout, rejects with its stderr.
function run(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${argv.join(' ')}: exit ${code}: ${stderr}`))));
  });
}

async function fio(socket, workload) {
  const argv = [
    'fio',
    '--name=bench',
    '--ioengine=nbd',
    `--uri=nbd+unix:///?socket=${socket}`,
    `--rw=${workload.rw}`,
    `--bs=${workload.bs}`,
    `--iodepth=${workload.iodepth}`,
    `--size=${size}`,
    `--runtime=${runtime}`,
    '--time_based',
    '--lat_percentiles=1',
    '--output-format=json',
  ];
  // fio's nbd engine prints "fio: connected to NBD server" on stdout ahead of the JSON.
  const output = await run(argv);
  const job = JSON.parse(output.slice(output.indexOf('{'))).jobs[0];
  const side = workload.rw.includes('read') ? job.read : job.write;
  return {
    value: workload.unit === 'MiB/s' ? side.bw_bytes / 1024 / 1024 : side.iops,
    meanUs: side.lat_ns.mean / 1000,
    p99Us: side.lat_ns.percentile['99.000000'] / 1000,
  };
}

// nbdkit in the foreground on its own socket; resolves once the socket answers.
async function startNbdkit(socket, file) {
  const child = spawn('nbdkit', ['-f', '-U', socket, 'file', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    try {
      await run(['nbdinfo', '--size', `nbd+unix:///?socket=${socket}`]);
      return child;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  child.kill();
  throw new Error('nbdkit did not start');
}

function median(numbers) {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const MiB = 1024 * 1024;
const quiet = pino({ level: 'warn' });

// A hast.conf resource as the parser would produce it, with hastd's defaults.
function resource(name, local, remote, replication) {
  return {
    name,
    provname: name,
    local,
    remote,
    source: null,
    replication,
    checksum: 'none',
    compression: 'none',
    timeout: 20,
    exec: null,
    metaflush: true,
    position: { file: 'bench', line: 1, col: 1 },
  };
}

// A file of `size` zeros, written and flushed, so that later writes find allocated blocks.
async function zeroFile(path) {
  const handle = await openFile(path, 'w');
  const zeros = Buffer.alloc(8 * MiB);
  for (let at = 0; at < size + MiB; at += zeros.length) await handle.write(zeros, 0, zeros.length, at);
  await handle.sync();
  await handle.close();
}

async function waitFor(check, what, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// The secondary engine for a replicated target: bench/replication.mjs in its --secondary mode, which serves
// the resource `bench` on one component until SIGTERM.
async function startSecondary(component, port) {
  const replication = fileURLToPath(new URL('./replication.mjs', import.meta.url));
  const child = spawn(process.execPath, [replication, '--secondary', '--component', component, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout, 'data');
  return child;
}

// One target: an NBD socket of ours and how to stop what serves it.
async function startTarget(kind, dir) {
  if (kind === 'file') {
    const device = await FileBlockDevice.create(join(dir, 'file.img'), size);
    const exported = { name: 'bench', device };
    const socket = join(dir, 'file.sock');
    const server = await NbdServer.listen(socket, (name) => (name === 'bench' ? exported : undefined), quiet, { defaultExport: 'bench' });
    return { socket, stop: async () => (await server.close(), await device.close()) };
  }
  // The secondary's component holds the resource `bench` (what replication.mjs serves); each primary has its
  // own resource name so that every export gets its own socket in the run directory.
  const primary = join(dir, `${kind}-primary.img`);
  await zeroFile(primary);
  let child;
  let remote = 'none';
  if (kind !== 'none') {
    const secondary = join(dir, `${kind}-secondary.img`);
    await zeroFile(secondary);
    await createComponent(resource('bench', secondary, 'none', 'fullsync'));
    const port = 20000 + Math.floor(Math.random() * 20000);
    child = await startSecondary(secondary, port);
    remote = `tcp4://127.0.0.1:${port}`;
  }
  await createComponent(resource('bench', primary, 'none', 'fullsync'));
  const messages = [];
  const log = pino({ level: 'info' }, { write: (line) => messages.push(JSON.parse(line).msg) });
  const worker = await PrimaryWorker.start(resource('bench', primary, remote, kind === 'none' ? 'fullsync' : kind), { log, onEvent: () => undefined });
  if (child) {
    await waitFor(() => worker.status().status === 'complete', `${kind}: the connection`);
    await waitFor(() => messages.some((m) => /^(Nodes are in sync|Synchronization complete)/.test(m)), `${kind}: the first sync`);
  }
  const runDir = join(dir, kind);
  await mkdir(runDir);
  const exported = await DeviceExport.start('bench', worker.device, { runDir, attachUnavailable: 'benchmark' }, quiet);
  return {
    socket: exported.socketPath,
    mapWrites: () => worker.status().statistics.activemapUpdates,
    async stop() {
      await exported.close();
      await worker.stop();
      if (child) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

const dir = await mkdtemp(join(values.dir, 'nbd-bench-'));
const theirSocket = join(dir, 'nbdkit.sock');
const theirFile = join(dir, 'nbdkit.img');
await zeroFile(theirFile);
await truncate(theirFile, size);
const targets = new Map();
const nbdkit = await startNbdkit(theirSocket, theirFile);
const results = new Map(WORKLOADS.map((w) => [w.name, Object.fromEntries(['nbdkit', ...TARGETS].map((who) => [who, []]))]));
try {
  for (const kind of TARGETS) targets.set(kind, await startTarget(kind, dir));
  for (let round = 0; round < rounds; round++) {
    for (const workload of WORKLOADS) {
      const order = round % 2 === 0 ? [...TARGETS, 'nbdkit'] : ['nbdkit', ...TARGETS];
      for (const who of order) {
        const target = targets.get(who);
        const mapWritesBefore = target?.mapWrites?.();
        const result = await fio(who === 'nbdkit' ? theirSocket : target.socket, workload);
        results.get(workload.name)[who].push(result);
        const latency = workload.latency ? ` mean ${result.meanUs.toFixed(1)} µs p99 ${result.p99Us.toFixed(1)} µs` : '';
        // Activemap writes during this fio run, for the targets that have an activemap.
        const mapWrites = mapWritesBefore === undefined ? '' : `, ${target.mapWrites() - mapWritesBefore} map writes`;
        console.log(`round ${round + 1} ${workload.name} ${who}: ${result.value.toFixed(0)} ${workload.unit}${latency}${mapWrites}`);
      }
    }
  }
} finally {
  nbdkit.kill();
  for (const target of targets.values()) await target.stop();
  await rm(dir, { recursive: true, force: true });
}

console.log(`\nmedians over ${rounds} rounds of ${runtime} s, ${size / MiB} MiB files in ${values.dir}; ratio = target / nbdkit:`);
for (const workload of WORKLOADS) {
  const byWho = results.get(workload.name);
  const theirs = median(byWho.nbdkit.map((r) => r.value));
  const latency = (rs) => (workload.latency ? ` (mean ${median(rs.map((r) => r.meanUs)).toFixed(0)} µs, p99 ${median(rs.map((r) => r.p99Us)).toFixed(0)} µs)` : '');
  console.log(`${workload.name}: nbdkit ${theirs.toFixed(0)} ${workload.unit}${latency(byWho.nbdkit)}`);
  for (const kind of TARGETS) {
    const ours = median(byWho[kind].map((r) => r.value));
    console.log(`  ${kind.padEnd(9)} ${ours.toFixed(0).padStart(7)} ${workload.unit}  ratio ${(ours / theirs).toFixed(2)}${latency(byWho[kind])}`);
  }
}
