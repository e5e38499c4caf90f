// Benchmark: what replication costs a primary's block device, per replication mode.
//
// Usage: npm run build && node bench/replication.mjs [--dir DIR] [--size MiB] [--seconds N] [--reps N] [--metaflush on|off]
//
// The primary's BlockDevice runs in this process; the secondary (a PeerListener with one resource) runs in a
// separate process started from this file with --secondary, both over loopback TCP. For each of `remote
// none`, fullsync, memsync and async, on freshly created components (hastd's defaults: 2 MiB extents,
// keepdirty 64, metaflush on unless --metaflush off), it runs two workloads for N seconds each:
//   seq   1 MiB sequential writes, 8 in flight (each split into MAXPHYS device writes, as GEOM would)
//   rand  4 KiB random writes, 32 in flight
// and prints MiB/s, IOPS, p50/p99 latency, the throughput ratio to `remote none`, and the peak resident
// memory of both processes. Modes are interleaved and repeated (--reps); the table shows medians. DIR should
// be on the disk you care about (default: the OS temp directory). The component files are filled with zeros
// once, as a disk would be: writes into a sparse file would measure the file system's block allocation.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createComponent } from '../dist/engine/component-metadata.js';
import { PeerListener } from '../dist/engine/peer-listener.js';
import { PrimaryWorker } from '../dist/engine/primary.js';

const MiB = 1024 * 1024;
// USER_HZ: the unit of /proc/<pid>/stat's times on every Linux architecture Node runs on.
const CLOCK_TICKS = 100;
const ALL_WORKLOADS = [
  { name: 'seq', size: MiB, depth: 8, random: false },
  { name: 'rand', size: 4096, depth: 32, random: true },
];

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    size: { type: 'string', default: '1024' },
    seconds: { type: 'string', default: '5' },
    reps: { type: 'string', default: '3' },
    metaflush: { type: 'string', default: 'on' },
    modes: { type: 'string', default: 'none,fullsync,memsync,async' },
    workloads: { type: 'string', default: 'seq,rand' },
    secondary: { type: 'boolean', default: false },
    component: { type: 'string' },
    port: { type: 'string' },
  },
});

const log = pino({ level: 'warn' });
const MODES = values.modes.split(',');
const WORKLOADS = ALL_WORKLOADS.filter((workload) => values.workloads.split(',').includes(workload.name));

function resource(local, remote, replication) {
  return {
    name: 'bench',
    provname: 'bench',
    local,
    remote,
    source: null,
    replication,
    checksum: 'none',
    compression: 'none',
    timeout: 20,
    exec: null,
    metaflush: values.metaflush !== 'off',
    position: { file: 'bench', line: 1, col: 1 },
  };
}

// The secondary process: serves one resource until SIGTERM.
async function runSecondary() {
  const target = {
    resource: resource(values.component, 'tcp4://127.0.0.1', 'fullsync'),
    role: 'secondary',
    worker: undefined,
    workerContext: () => ({ log, onEvent: () => undefined }),
    async stopSecondary() {
      const worker = target.worker;
      target.worker = undefined;
      await worker?.stop();
    },
    adoptSecondary(worker) {
      target.worker = worker;
    },
  };
  const listener = new PeerListener({ log, lookup: (name) => (name === 'bench' ? target : undefined) });
  await listener.listen(`tcp4://127.0.0.1:${values.port}`);
  process.on('SIGTERM', async () => {
    await listener.close();
    await target.stopSecondary();
    process.exit(0);
  });
  process.stdout.write('ready\n');
}

// A component file of `bytes` zeros, written and flushed, so that later writes find allocated blocks.
async function fillComponent(path, bytes) {
  const handle = await open(path, 'w');
  const zeros = Buffer.alloc(8 * MiB);
  for (let at = 0; at < bytes; at += zeros.length) await handle.write(zeros, 0, Math.min(zeros.length, bytes - at), at);
  await handle.sync();
  await handle.close();
}

// Fresh metadata and a clean activemap, as `hastctl create` writes them.
async function freshComponent(path) {
  await createComponent(resource(path, 'none', 'fullsync'));
}

function startSecondary(path, port) {
  // The same node flags (e.g. --cpu-prof) for the secondary as for this process.
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--secondary', '--component', path, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve(child));
  });
}

// Resident memory of a process from /proc (Linux): cheaper than running ps, which would itself take CPU
// from the two engines on a small machine.
async function rssOf(pid) {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

// CPU seconds (user + system, all threads) a process has used so far, from /proc (Linux).
async function cpuOf(pid) {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

// Peak RSS of some processes, sampled every 200 ms until stopped.
function sampleRss(pids) {
  const peaks = new Map(pids.map((pid) => [pid, 0]));
  const timer = setInterval(async () => {
    for (const pid of pids) peaks.set(pid, Math.max(peaks.get(pid), await rssOf(pid)));
  }, 200);
  return () => {
    clearInterval(timer);
    return pids.map((pid) => peaks.get(pid));
  };
}

async function waitFor(check, what, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// A seeded generator (mulberry32), so every mode writes the same random offsets.
function randomSequence(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function runWorkload(device, workload, seconds) {
  const data = randomBytes(workload.size);
  const blocks = Math.floor(device.size / workload.size);
  const random = randomSequence(42);
  const latencies = [];
  let next = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  async function issuer() {
    while (performance.now() < deadline) {
      const offset = (workload.random ? Math.floor(random() * blocks) : next++ % blocks) * workload.size;
      const begin = performance.now();
      const parts = [];
      for (let at = 0; at < workload.size; at += device.maxRequest) {
        const length = Math.min(device.maxRequest, workload.size - at);
        parts.push(device.write(offset + at, data.subarray(at, at + length)));
      }
      await Promise.all(parts);
      latencies.push(performance.now() - begin);
    }
  }
  await Promise.all(Array.from({ length: workload.depth }, issuer));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const percentile = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return {
    elapsed,
    mibps: (latencies.length * workload.size) / MiB / elapsed,
    iops: latencies.length / elapsed,
    p50: percentile(50),
    p99: percentile(99),
  };
}

async function runMode(dir, mode, seconds, port) {
  const primaryPath = join(dir, 'primary');
  const secondaryPath = join(dir, 'secondary');
  await freshComponent(primaryPath);
  let child;
  if (mode !== 'none') {
    await freshComponent(secondaryPath);
    child = await startSecondary(secondaryPath, port);
  }
  const messages = [];
  const context = {
    log: pino({ level: 'info' }, { write: (line) => messages.push(JSON.parse(line).msg) }),
    onEvent: () => undefined,
  };
  const remote = mode === 'none' ? 'none' : `tcp4://127.0.0.1:${port}`;
  const worker = await PrimaryWorker.start(resource(primaryPath, remote, mode === 'none' ? 'fullsync' : mode), context);
  if (mode !== 'none') {
    await waitFor(() => worker.status().status === 'complete', 'the connection');
    await waitFor(() => messages.some((m) => /^(Nodes are in sync|Synchronization complete)/.test(m)), 'the first sync');
  }
  const stopSampling = sampleRss([process.pid, ...(child ? [child.pid] : [])]);
  const results = {};
  for (const workload of WORKLOADS) {
    const pids = [process.pid, ...(child ? [child.pid] : [])];
    const cpuBefore = await Promise.all(pids.map(cpuOf));
    const result = await runWorkload(worker.device, workload, seconds);
    const cpuAfter = await Promise.all(pids.map(cpuOf));
    // CPU seconds per GiB written, for each process: what bounds throughput when both share a small machine.
    const gib = (result.mibps * result.elapsed) / 1024;
    const [primaryCpu, secondaryCpu = 0] = cpuAfter.map((after, i) => (after - cpuBefore[i]) / gib);
    results[workload.name] = { ...result, primaryCpu, secondaryCpu };
  }
  const [primaryRss, secondaryRss = 0] = stopSampling();
  await worker.stop();
  if (child) {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }
  return { results, primaryRss, secondaryRss };
}

function median(numbers) {
  const sorted = [...numbers].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  const seconds = Number(values.seconds);
  const reps = Number(values.reps);
  const bytes = Number(values.size) * MiB;
  const dir = await mkdtemp(join(values.dir, 'replication-bench-'));
  const runs = Object.fromEntries(MODES.map((mode) => [mode, []]));
  try {
    for (const name of ['primary', 'secondary']) await fillComponent(join(dir, name), bytes);
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of MODES) {
        const run = await runMode(dir, mode, seconds, 20000 + Math.floor(Math.random() * 20000));
        runs[mode].push(run);
        const figures = Object.entries(run.results).map(([name, r]) => `${name} ${r.mibps.toFixed(0)} MiB/s ${r.iops.toFixed(0)} IOPS`);
        console.error(`rep ${rep + 1} ${mode}: ${figures.join(', ')}`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const mb = (n) => (n / MiB).toFixed(0);
  console.log(`node ${process.version}, ${reps} reps x ${seconds} s per workload, ${values.size} MiB components in ${values.dir}, metaflush ${values.metaflush}; medians`);
  console.log('mode      workload   MiB/s     IOPS   p50 ms   p99 ms  vs none  rss primary  rss secondary  cpu-s/GiB primary  secondary');
  for (const workload of WORKLOADS) {
    const baseline = runs.none ? median(runs.none.map((run) => run.results[workload.name].mibps)) : NaN;
    for (const mode of MODES) {
      const pick = (key) => median(runs[mode].map((run) => run.results[workload.name][key]));
      const mibps = pick('mibps');
      console.log(
        [
          mode.padEnd(9),
          workload.name.padEnd(8),
          mibps.toFixed(1).padStart(7),
          pick('iops').toFixed(0).padStart(8),
          pick('p50').toFixed(2).padStart(8),
          pick('p99').toFixed(2).padStart(8),
          (mibps / baseline).toFixed(2).padStart(8),
          `${mb(median(runs[mode].map((run) => run.primaryRss)))} MB`.padStart(12),
          `${mode === 'none' ? '-' : `${mb(median(runs[mode].map((run) => run.secondaryRss)))} MB`}`.padStart(14),
          pick('primaryCpu').toFixed(2).padStart(18),
          (mode === 'none' ? '-' : pick('secondaryCpu').toFixed(2)).padStart(10),
        ].join(' '),
      );
    }
  }
}

if (values.secondary) await runSecondary();
else await main();
