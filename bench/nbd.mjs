// Benchmark: the NBD export against nbdkit's file plugin, both serving a file of the same size, driven by
// fio's nbd engine (libnbd, one connection).
//
// Usage: npm run build && node bench/nbd.mjs [--dir DIR] [--size MIB] [--runtime SECONDS] [--rounds N]
//
// Each round runs every workload once against NbdServer (exporting a file-backed BlockDevice from this
// process) and once against `nbdkit -U SOCKET file FILE`, alternating which goes first, because this kind of
// machine drifts between runs. It prints the median of each and the ratio ours/nbdkit per workload:
// 1 MiB sequential write QD8 (MiB/s), 4 KiB random write QD32 (IOPS), 4 KiB random write QD1 (IOPS, mean and
// p99 latency), 4 KiB random read QD32 (IOPS). DIR should be on the disk you care about (default: the OS
// temp directory, often tmpfs or page cache: then this measures the servers, not the disk).
import { spawn } from 'node:child_process';
import { close, fdatasync, ftruncate, open, read, write } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { NbdServer } from '../dist/engine/nbd-server.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    size: { type: 'string', default: '256' },
    runtime: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
  },
});
const size = Number(values.size) * 1024 * 1024;
const runtime = Number(values.runtime);
const rounds = Number(values.rounds);

const WORKLOADS = [
  { name: '1 MiB seq write QD8', rw: 'write', bs: '1M', iodepth: 8, unit: 'MiB/s' },
  { name: '4 KiB rand write QD32', rw: 'randwrite', bs: '4k', iodepth: 32, unit: 'IOPS' },
  { name: '4 KiB rand write QD1', rw: 'randwrite', bs: '4k', iodepth: 1, unit: 'IOPS', latency: true },
  { name: '4 KiB rand read QD32', rw: 'randread', bs: '4k', iodepth: 32, unit: 'IOPS' },
];

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

  async write(offset, data, options = {}) {
    await new Promise((resolve, reject) => {
      write(this.fd, data, 0, data.length, offset, (error, n) => {
        if (error || n !== data.length) reject(error ?? new Error('short write'));
        else resolve();
      });
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

const dir = await mkdtemp(join(values.dir, 'nbd-bench-'));
const ourSocket = join(dir, 'ours.sock');
const theirSocket = join(dir, 'nbdkit.sock');
const theirFile = join(dir, 'nbdkit.img');
const device = await FileBlockDevice.create(join(dir, 'ours.img'), size);
await writeFile(theirFile, '');
await truncate(theirFile, size);
const exported = { name: 'bench', device };
const server = await NbdServer.listen(ourSocket, (name) => (name === 'bench' ? exported : undefined), pino({ level: 'warn' }), {
  defaultExport: 'bench',
});
const nbdkit = await startNbdkit(theirSocket, theirFile);

const results = new Map(WORKLOADS.map((w) => [w.name, { ours: [], nbdkit: [] }]));
try {
  for (let round = 0; round < rounds; round++) {
    for (const workload of WORKLOADS) {
      const order = round % 2 === 0 ? ['ours', 'nbdkit'] : ['nbdkit', 'ours'];
      for (const who of order) {
        const result = await fio(who === 'ours' ? ourSocket : theirSocket, workload);
        results.get(workload.name)[who].push(result);
        const latency = workload.latency ? ` mean ${result.meanUs.toFixed(1)} µs p99 ${result.p99Us.toFixed(1)} µs` : '';
        console.log(`round ${round + 1} ${workload.name} ${who}: ${result.value.toFixed(0)} ${workload.unit}${latency}`);
      }
    }
  }
} finally {
  nbdkit.kill();
  await server.close();
  await device.close();
  await rm(dir, { recursive: true, force: true });
}

console.log(`\nmedians over ${rounds} rounds of ${runtime} s, ${size / 1024 / 1024} MiB file in ${values.dir}:`);
for (const workload of WORKLOADS) {
  const { ours, nbdkit: theirs } = results.get(workload.name);
  const a = median(ours.map((r) => r.value));
  const b = median(theirs.map((r) => r.value));
  const value = (v) => `${v.toFixed(0).padStart(7)} ${workload.unit}`;
  let line = `${workload.name.padEnd(24)} ours ${value(a)}  nbdkit ${value(b)}  ratio ${(a / b).toFixed(2)}`;
  if (workload.latency) {
    const latency = (rs, key) => median(rs.map((r) => r[key])).toFixed(1);
    line += `  mean ${latency(ours, 'meanUs')} vs ${latency(theirs, 'meanUs')} µs,`;
    line += ` p99 ${latency(ours, 'p99Us')} vs ${latency(theirs, 'p99Us')} µs`;
  }
  console.log(line);
}
