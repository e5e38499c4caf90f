// Benchmark: how long a failover takes from the CARP MASTER event to a mounted file system with its services
// started on the new primary, for `carp-hast supervise` and for the FreeBSD Handbook's carp-hast-switch script
// (bench/handbook-carp-hast-switch.sh) against the same built-in engine and the same ext4 file system.
//
// Usage: npm run build && node bench/failover.mjs [--runs N] [--dir DIR] [--pause MS] [--peer-poll S]
//                                                 [--only supervisor|handbook]
//
// Needs root: it builds the lab (src/lab/lab.ts): two nodes in network namespaces joined by a veth pair, ext4
// on /dev/hast/test, CARP played by moving the shared address and sending devd lines. Failovers alternate
// a→b and b→a; each starts from a quiet cluster (the new secondary connected and in sync, then --pause ms).
//
// The supervisor: each node runs `carp-hast supervise` with its engine. The old primary gets BACKUP, then the
// new one MASTER, as CARP does. Three figures per run:
//   event → serving   from the MASTER line's emission to the end of the promotion record (startedAt +
//                      durationMs): mounted and services started. Same machine, same clock.
//   promotion          the record's own durationMs (from the decision to promote; the reconcile before it is
//                      the difference to the figure above)
//   wall clock         from the emission until `status` first shows the node primary with nothing running
//                      (polled every 25 ms; includes the reconcile after the promotion)
// The promotion's fsck step is reported apart.
//
// The Handbook: the supervisors are stopped and each node runs a plain `carp-hast hastd -F`. On each failover
// the script runs `slave` on the old primary and `master` on the new one, inside the nodes' namespaces, as
// devd would; the figure is the master hook's run, from its start until mount has returned.
//
// The lab is always taken down at the end (namespaces, mounts, loop devices, FUSE attachments), also after a
// failure or Ctrl-C.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runCommand } from '../dist/common/run-command.js';
import { Lab, LAB_NODES } from '../dist/lab/lab.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    dir: { type: 'string', default: tmpdir() },
    pause: { type: 'string', default: '1000' },
    'peer-poll': { type: 'string', default: '1' },
    only: { type: 'string' },
  },
});

const RUNS = Number(values.runs);
const PAUSE_MS = Number(values.pause);
const CLI = [process.execPath, fileURLToPath(new URL('../dist/cli/main.js', import.meta.url))];
const SCRIPT = fileURLToPath(new URL('./handbook-carp-hast-switch.sh', import.meta.url));
const DEVICE = '/dev/hast/test';
const QUICK = { timeoutMs: 30_000, killAfterMs: 5_000 };
const STATUS_POLL_MS = 25;

// The loop devices /dev/hast/test pointed at while the benchmark held it: the only ones cleanup may detach.
const ourLoops = new Set();

function noteDevice() {
  const loop = safeReadlink(DEVICE);
  if (loop !== undefined) ourLoops.add(loop);
}

const other = (node) => (node === 'a' ? 'b' : 'a');
// Run i fails over from `from` to `to`: a→b first, then back.
const direction = (i) => (i % 2 === 0 ? { from: 'a', to: 'b' } : { from: 'b', to: 'a' });

// Set on SIGINT, SIGTERM or SIGHUP: the measuring stops at its next wait, and the lab is taken down.
let interrupted = false;

async function waitUntil(check, what, timeoutMs = 60_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (interrupted) throw new Error(`interrupted while waiting for ${what}`);
    last = await check().catch((error) => ({ error: String(error) }));
    if (last === true) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

// ---- the supervisor ------------------------------------------------------------------------------------

// Waits until `primary` serves with its peer connected and in sync, and `secondary` is a complete secondary.
async function supervisorQuiet(lab, primary) {
  await lab.waitForRole(other(primary), 'secondary');
  await waitUntil(async () => {
    const report = await lab.status(primary);
    const test = report.resources.find((r) => r.name === 'test');
    return report.actual === 'primary' && report.running === undefined && test?.status === 'complete' && test.dirty === 0 ? true : test;
  }, `${primary} primary with its peer in sync`);
}

async function supervisorRun(lab, { from, to }) {
  await lab.carp(from, 'BACKUP');
  await lab.carp(to, 'MASTER');
  // carp() sends the devd line as its last act, so this is when the MASTER event left.
  const emittedAt = Date.now();
  const emittedPerf = performance.now();
  let wallMs;
  let record;
  await waitUntil(
    async () => {
      const report = await lab.status(to);
      record = report.transitions.find((r) => r.direction === 'promote' && Date.parse(r.startedAt) >= emittedAt);
      if (report.actual !== 'primary' || report.running !== undefined || record === undefined) return false;
      wallMs = performance.now() - emittedPerf;
      return true;
    },
    `${to} to become primary`,
    60_000,
    STATUS_POLL_MS,
  );
  noteDevice();
  if (record.outcome !== 'done') throw new Error(`promotion of ${to} ended ${record.outcome}: ${JSON.stringify(record)}`);
  const demotion = (await lab.status(from)).transitions.find((r) => r.direction === 'demote');
  const steps = Object.fromEntries(record.steps.map((s) => [s.name, s.durationMs]));
  return {
    servingMs: Date.parse(record.startedAt) + record.durationMs - emittedAt,
    promotionMs: record.durationMs,
    wallMs,
    fsckMs: steps.fsck ?? 0,
    peerRelease: record.steps.find((s) => s.name === 'peer release')?.detail,
    steps: { 'event to decision': Date.parse(record.startedAt) - emittedAt, ...steps },
    demotion,
  };
}

async function benchSupervisor(lab) {
  for (const node of LAB_NODES) await lab.startSupervisor(node);
  for (const node of LAB_NODES) await lab.waitForRole(node, 'secondary');
  await lab.carp('a', 'MASTER');
  await supervisorQuiet(lab, 'a');
  noteDevice();
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const way = direction(i);
    await sleep(PAUSE_MS);
    if (interrupted) throw new Error('interrupted');
    const run = await supervisorRun(lab, way);
    runs.push(run);
    const d = run.demotion;
    console.error(
      `supervisor ${i + 1}/${RUNS} ${way.from}→${way.to}: event→serving ${run.servingMs} ms, promotion ${run.promotionMs} ms, ` +
        `wall ${run.wallMs.toFixed(0)} ms, fsck ${run.fsckMs} ms (${run.peerRelease}); steps ${JSON.stringify(run.steps)}; ` +
        `old primary's demotion ${d?.durationMs} ms ${JSON.stringify(Object.fromEntries((d?.steps ?? []).map((s) => [s.name, s.durationMs])))}`,
    );
    await supervisorQuiet(lab, way.to);
  }
  await stopSupervisors(lab);
  return runs;
}

// ---- the Handbook's script -----------------------------------------------------------------------------

function inNamespace(lab, node, argv, options = {}) {
  return execa('nsenter', [`--net=/var/run/netns/${lab.namespace(node)}`, ...argv], { reject: false, all: true, ...options });
}

function startEngines(lab) {
  const conf = join(lab.dir, 'hast.conf');
  return LAB_NODES.map((node) =>
    inNamespace(lab, node, [...CLI, 'hastd', '-F', '-c', conf, '-n', node, '--run-dir', join(lab.dir, `handbook-run-${node}`)]),
  );
}

async function hastctl(lab, node, ...args) {
  return (await runCommand([...CLI, 'hastctl', ...args, '-c', join(lab.dir, 'hast.conf'), '-n', node], QUICK)).stdout;
}

// Hooks still running, stopped by the cleanup after an interruption.
const runningHooks = new Set();

// Runs the script's `master` or `slave` branch on a node, as devd would run the hook.
function hook(lab, node, branch) {
  const env = {
    CARP_HAST: CLI.join(' '),
    HAST_CONF: join(lab.dir, 'hast.conf'),
    NODE: node,
    MOUNTPOINT: lab.mountpoint(node),
    PEER_POLL: values['peer-poll'],
  };
  const started = performance.now();
  const child = inNamespace(lab, node, ['/bin/sh', SCRIPT, branch], { env });
  runningHooks.add(child);
  return child.then((result) => {
    runningHooks.delete(child);
    return { result, ms: performance.now() - started };
  });
}

function hookFailure(node, branch, { result }) {
  return new Error(`the Handbook's ${branch} hook on ${node} exited ${result.exitCode}:\n${result.all}`);
}

// The step times the script printed ("<epoch-ns> <step>" lines on stderr).
function scriptSteps(output) {
  const at = new Map();
  for (const line of output.split('\n')) {
    const match = /^(\d{19}) (.*)$/.exec(line);
    if (match) at.set(match[2], Number(BigInt(match[1]) / 1000n) / 1000);
  }
  const start = at.get('Switching to primary provider for test.');
  const span = (from, to) => Math.round(at.get(to) - at.get(from));
  return {
    'sleep 3': span('Switching to primary provider for test.', 'slept'),
    'old secondary gone': span('slept', 'secondary gone'),
    'role primary': span('secondary gone', 'role primary'),
    'device wait': span('role primary', 'device'),
    fsck: span('Mounting disks.', 'fsck'),
    mount: span('fsck', 'mounted'),
    total: Math.round(at.get('mounted') - start),
  };
}

async function handbookQuiet(lab, primary) {
  await waitUntil(async () => {
    const status = await hastctl(lab, primary, 'status', 'test');
    const list = await hastctl(lab, primary, 'list', 'test');
    return /^test\s+complete\s+primary/m.test(status) && /^ {2}dirty: 0 /m.test(list) ? true : status;
  }, `${primary} primary with its peer in sync`);
}

async function handbookRun(lab, { from, to }) {
  await lab.carp(from, 'BACKUP');
  const slave = hook(lab, from, 'slave');
  await lab.carp(to, 'MASTER');
  const master = hook(lab, to, 'master');
  const [down, up] = await Promise.all([slave, master]);
  noteDevice();
  if (down.result.exitCode !== 0) throw hookFailure(from, 'slave', down);
  if (up.result.exitCode !== 0) throw hookFailure(to, 'master', up);
  if (!readFileSync('/proc/self/mounts', 'utf8').includes(` ${lab.mountpoint(to)} `)) {
    throw new Error(`the Handbook's master hook on ${to} exited 0 but nothing is mounted:\n${up.result.all}`);
  }
  const steps = scriptSteps(up.result.stderr);
  return { hookMs: up.ms, fsckMs: steps.fsck, steps };
}

async function benchHandbook(lab, engines) {
  engines.push(...startEngines(lab));
  await waitUntil(async () => {
    for (const node of LAB_NODES) await hastctl(lab, node, 'status', 'test');
    return true;
  }, 'the engines to answer');
  const [down, up] = await Promise.all([hook(lab, 'b', 'slave'), hook(lab, 'a', 'master')]);
  noteDevice();
  if (down.result.exitCode !== 0) throw hookFailure('b', 'slave', down);
  if (up.result.exitCode !== 0) throw hookFailure('a', 'master', up);
  await handbookQuiet(lab, 'a');
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    const way = direction(i);
    await sleep(PAUSE_MS);
    if (interrupted) throw new Error('interrupted');
    const run = await handbookRun(lab, way);
    runs.push(run);
    console.error(`handbook ${i + 1}/${RUNS} ${way.from}→${way.to}: hook ${run.hookMs.toFixed(0)} ms; steps ${JSON.stringify(run.steps)}`);
    await handbookQuiet(lab, way.to);
  }
  return runs;
}

// ---- cleanup -------------------------------------------------------------------------------------------

// Stops the supervisors, and the engines they ran if those outlive them: a supervisor that gets SIGTERM while
// one of its commands runs can die at once, without letting go and leaving its engine behind. So both nodes
// are first made secondary through CARP.
async function stopSupervisors(lab) {
  const pids = [];
  for (const node of LAB_NODES) {
    const pid = await lab.enginePid(node).catch(() => undefined);
    if (pid !== undefined) pids.push(pid);
  }
  if (pids.length > 0) {
    for (const node of LAB_NODES) await lab.carp(node, 'BACKUP').catch(() => undefined);
    for (const node of LAB_NODES) await lab.waitForRole(node, 'secondary', 20_000).catch(() => undefined);
  }
  for (const node of LAB_NODES) await lab.stopSupervisor(node).catch(() => undefined);
  for (const pid of pids.filter(alive)) {
    console.error(`the engine ${pid} outlived its supervisor; stopping it`);
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 20_000;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Stops the lab's service where a supervisor that died did not: it holds the mount, and with it the loop device.
function stopLabServices(lab) {
  for (const node of LAB_NODES) {
    const pid = Number(safeRead(lab.servicePidFile(node)));
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGTERM');
  }
}

function safeRead(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

// Unmounts what the Handbook's script left mounted and sets both resources to init, so that the engines let
// go of /dev/hast/test before they are stopped.
async function releaseHandbook(lab) {
  for (const node of LAB_NODES) {
    if (!readFileSync('/proc/self/mounts', 'utf8').includes(` ${lab.mountpoint(node)} `)) continue;
    await runCommand(['umount', lab.mountpoint(node)], QUICK).catch(() => runCommand(['umount', '-l', lab.mountpoint(node)], QUICK));
  }
  for (const node of LAB_NODES) await hastctl(lab, node, 'role', 'init', 'test').catch(() => undefined);
}

async function stopEngines(engines) {
  for (const engine of engines) engine.kill('SIGTERM');
  const stopped = Promise.all(engines);
  if ((await Promise.race([stopped.then(() => true), sleep(20_000, false)])) === false) {
    console.error('the engines did not stop within 20 s of SIGTERM; sending SIGKILL');
    for (const engine of engines) engine.kill('SIGKILL');
    await stopped;
  }
}

// Whatever a killed engine or supervisor may have left: mounts under `dir` (ext4 and FUSE), loop devices on
// files under `dir` or on one of our FUSE files already lazily unmounted (losetup then shows "/disk"), and
// /dev/hast/test if it points at one of those.
async function sweep(dir) {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((point) => point?.startsWith(`${dir}/`));
  const { stdout } = await runCommand(['losetup', '-l', '-n', '-O', 'NAME,BACK-FILE'], QUICK);
  const loops = stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, file]) => file?.startsWith(`${dir}/`) || (ourLoops.has(name) && file === '/disk'))
    .map(([name]) => name);
  const fuse = mounts.filter((point) => point.endsWith('.fuse'));
  for (const point of mounts.filter((p) => !fuse.includes(p))) {
    await runCommand(['umount', point], QUICK)
      .catch(() => runCommand(['umount', '-l', point], QUICK))
      .catch(() => undefined);
  }
  for (const loop of loops) await runCommand(['losetup', '-d', loop], QUICK).catch(() => undefined);
  for (const point of fuse) await runCommand(['umount', '-l', point], QUICK).catch(() => undefined);
  const link = safeReadlink(DEVICE);
  if (link !== undefined && ourLoops.has(link)) rmSync(DEVICE, { force: true });
  return { mounts, loops, device: link !== undefined && ourLoops.has(link) ? link : undefined };
}

function safeReadlink(path) {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

// ---- report --------------------------------------------------------------------------------------------

// Nearest-rank percentile.
function percentile(numbers, p) {
  const sorted = [...numbers].sort((x, y) => x - y);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

const ms = (n) => (n === undefined ? '–' : `${Math.round(n)} ms`);

function stepTable(title, runs) {
  const names = [...new Set(runs.flatMap((run) => Object.keys(run.steps)))];
  console.log(`\n${title} (ms)\n| step | p50 | p99 |\n|---|---:|---:|`);
  for (const name of names) {
    const values = runs.map((run) => run.steps[name]).filter((v) => v !== undefined);
    console.log(`| ${name} | ${percentile(values, 50)} | ${percentile(values, 99)} |`);
  }
}

function report(supervisor, handbook) {
  console.log(
    `\n${RUNS} failovers each, alternating a→b and b→a, pause ${PAUSE_MS} ms; node ${process.version}, ` +
      `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Linux ${release()}; nearest-rank p50/p99`,
  );
  console.log('\n| measure | p50 | p99 | fsck p50 | fsck p99 |\n|---|---:|---:|---:|---:|');
  const row = (name, runs, key) => {
    const figures = runs.map((run) => run[key]);
    const fsck = runs.map((run) => run.fsckMs);
    console.log(`| ${name} | ${ms(percentile(figures, 50))} | ${ms(percentile(figures, 99))} | ${ms(percentile(fsck, 50))} | ${ms(percentile(fsck, 99))} |`);
  };
  if (supervisor.length > 0) {
    row('supervisor: event → serving (record end)', supervisor, 'servingMs');
    row('supervisor: promotion record durationMs', supervisor, 'promotionMs');
    row('supervisor: wall clock, event → status primary', supervisor, 'wallMs');
  }
  if (handbook.length > 0) row(`Handbook script: master hook start → mounted (peer poll ${values['peer-poll']} s)`, handbook, 'hookMs');
  if (supervisor.length > 0 && handbook.length > 0) {
    const ratio = (p) => (percentile(handbook.map((r) => r.hookMs), p) / percentile(supervisor.map((r) => r.servingMs), p)).toFixed(1);
    console.log(`\nHandbook / supervisor (event → serving): p50 ${ratio(50)}×, p99 ${ratio(99)}×`);
  }
  if (supervisor.length > 0) stepTable('Supervisor promotion steps', supervisor);
  if (handbook.length > 0) stepTable("Handbook script's steps", handbook);
}

// ---- main ----------------------------------------------------------------------------------------------

async function main() {
  if (process.getuid?.() !== 0) throw new Error('the failover benchmark needs root (network namespaces, losetup, nbdfuse, mount)');
  if (![undefined, 'supervisor', 'handbook'].includes(values.only)) throw new Error(`--only takes supervisor or handbook, not ${values.only}`);
  if (existsSync(DEVICE)) throw new Error(`${DEVICE} exists: another lab or engine holds it; the benchmark needs it free`);
  let lab;
  const engines = [];
  let cleaning;
  const cleanup = () => {
    cleaning ??= (async () => {
      await stopSupervisors(lab);
      stopLabServices(lab);
      for (const child of runningHooks) child.kill('SIGTERM');
      await Promise.all(runningHooks);
      if (engines.length > 0) await releaseHandbook(lab);
      await stopEngines(engines);
      const left = await sweep(lab.dir);
      if (left.mounts.length + left.loops.length > 0 || left.device !== undefined) {
        console.error(`cleaned up what was left: ${JSON.stringify(left)}`);
      }
      await lab.destroy();
    })();
    return cleaning;
  };
  const stop = () => cleanup().finally(() => process.exit(130));
  // `on`, not `once`: execa's signal-exit kills the process on a signal that has no listener left but its own.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      console.error(`${signal}: taking the lab down`);
      interrupted = true;
      // A signal while the lab is being built is acted on once it is built (a failed build removes itself).
      if (lab !== undefined) void stop();
    });
  }
  lab = await Lab.create({ dir: mkdtempSync(join(values.dir, 'fo-')) });
  if (interrupted) return stop();
  try {
    const supervisor = values.only === 'handbook' ? [] : await benchSupervisor(lab);
    const handbook = values.only === 'supervisor' ? [] : await benchHandbook(lab, engines);
    report(supervisor, handbook);
  } finally {
    await cleanup();
  }
}

await main();
