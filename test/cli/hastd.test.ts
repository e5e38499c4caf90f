import t, { type Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadHastConf, type ReplicationMode } from '../../src/config/hast-conf.js';
import { createLogger } from '../../src/common/log.js';
import { Engine } from '../../src/engine/engine.js';
import { METADATA_SIZE, decodeMetadata } from '../../src/engine/metadata.js';
import { sendControlRequest } from '../../src/engine/hastctl-client.js';
import { runCli } from '../fixtures/cli.js';
import { hastctl, MiB, pairConf, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';
import { lockHastDevices } from '../fixtures/hast-device-lock.js';

// Node a runs in this process so the test can drive its primary's block device (the NBD export is built on
// it); node b is a real `carp-hast hastd -F` process.
async function startEngineA(t: Test, layout: PairLayout): Promise<Engine> {
  process.env['HOOK_LOG'] = layout.hookLog.a;
  const config = await loadHastConf(layout.conf, { hostname: 'x', hostuuid: null, hostid: null, nodeName: 'a' });
  const engine = await Engine.start(config, { log: createLogger({ level: 'warn' }), runDir: join(layout.dir, 'run-a'), attach: false });
  t.teardown(() => engine.stop());
  return engine;
}

function dataArea(path: string): Buffer {
  const file = readFileSync(path);
  const metadata = decodeMetadata(file.subarray(0, METADATA_SIZE), { path, resource: 'test' });
  return file.subarray(Number(metadata.localoff));
}

function pattern(seed: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) buf.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
  return buf;
}

async function createBoth(t: Test, layout: PairLayout): Promise<void> {
  for (const node of ['a', 'b'] as const) {
    const r = await hastctl(layout, node, 'create', '-e', '1M', 'test');
    t.equal(r.exitCode, 0, `create on ${node}: ${r.stderr}`);
  }
}

async function connectedPair(t: Test, replication: ReplicationMode) {
  const layout = await pairLayout(t, replication);
  await createBoth(t, layout);
  const b = await startDaemon(t, layout, 'b');
  t.equal((await hastctl(layout, 'b', 'role', 'secondary', 'test')).exitCode, 0);
  const engine = await startEngineA(t, layout);
  await engine.setRole('test', 'primary');
  const device = engine.resource('test')!.primaryWorker!.device;
  await waitFor('the primary to connect', () => engine.describe('test')?.worker?.status === 'complete');
  return { layout, b, engine, device };
}

for (const mode of ['fullsync', 'memsync', 'async'] as const) {
  t.test(`${mode}: writes through the primary reach the secondary byte for byte`, async (t) => {
    const { layout, engine, device } = await connectedPair(t, mode);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 64; i++) {
      const offset = ((i * 7919) % 60) * MiB + (i % 8) * 4096;
      writes.push(device.write(offset, pattern(i, i % 3 === 0 ? 128 * 1024 : 4096)));
    }
    await Promise.all(writes);
    await device.flush();
    const read = await device.read(5 * MiB, 4096);
    t.equal(read.length, 4096);
    await engine.setRole('test', 'init');
    t.equal((await hastctl(layout, 'b', 'role', 'init', 'test')).exitCode, 0);
    t.ok(dataArea(layout.local.a).equals(dataArea(layout.local.b)), 'data areas are identical');
    t.ok(dataArea(layout.local.a).some((byte) => byte !== 0), 'something was written');
  });
}

t.test('hastctl status and list show both nodes exactly', async (t) => {
  const { layout, engine, device } = await connectedPair(t, 'fullsync');
  await device.write(0, pattern(1, 4096));
  const statusA = await hastctl(layout, 'a', 'status');
  t.equal(statusA.exitCode, 0);
  t.equal(
    statusA.stdout,
    `Name\tStatus\t Role\t\tComponents\ntest\tcomplete primary        ${layout.local.a}\t127.0.0.2:${layout.ports.b}\n`,
  );
  const statusB = await hastctl(layout, 'b', 'status', 'test');
  t.equal(
    statusB.stdout,
    `Name\tStatus\t Role\t\tComponents\ntest\tcomplete secondary      ${layout.local.b}\t127.0.0.1:${layout.ports.a}\n`,
  );
  // The write's marking map write, then the tidy's a second later: listed once both are done, so that the
  // numbers below, read after the list, are the ones it printed.
  await waitFor('the activemap tidy', () => engine.describe('test')!.worker!.statistics.activemapUpdates === 2n);
  const list = await hastctl(layout, 'a', 'list', 'test');
  t.equal(
    list.stdout,
    `test:
  role: primary
  provname: test
  localpath: ${layout.local.a}
  extentsize: 1048576 (1.0MB)
  keepdirty: 64
  remoteaddr: 127.0.0.2:${layout.ports.b}
  sourceaddr: 127.0.0.1
  replication: fullsync
  status: complete
  workerpid: ${process.pid}
  dirty: ${engine.describe('test')!.worker!.dirty} (${list.stdout.match(/dirty: \d+ \((.*)\)/)![1]})
  statistics:
    reads: 0
    writes: 1
    deletes: 0
    flushes: 0
    activemap updates: ${engine.describe('test')!.worker!.statistics.activemapUpdates}
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: ${engine.describe('test')!.worker!.queues.idle}
`,
  );
  const unknown = await hastctl(layout, 'a', 'status', 'nope');
  t.equal(unknown.exitCode, 1);
  t.equal(unknown.stdout, 'Name\tStatus\t Role\t\tComponents\nnope\tERR1\n');
});

t.test('the role and connect hooks run with hastd arguments on both nodes', async (t) => {
  const { layout } = await connectedPair(t, 'memsync');
  await waitFor('hooks to run', () => existsSync(layout.hookLog.a) && existsSync(layout.hookLog.b));
  await waitFor('connect hooks', () => {
    const a = readFileSync(layout.hookLog.a, 'utf8');
    const b = readFileSync(layout.hookLog.b, 'utf8');
    return a.includes('connect test') && b.includes('connect test');
  });
  t.match(readFileSync(layout.hookLog.a, 'utf8'), /^role test init primary\n/m);
  t.match(readFileSync(layout.hookLog.b, 'utf8'), /^role test init secondary\n/m);
});

t.test('SIGKILL of the secondary: the primary degrades, marks what it wrote, and resyncs on return', async (t) => {
  const { layout, b, engine, device } = await connectedPair(t, 'fullsync');
  await device.write(0, pattern(0, 4096));
  b.process.kill('SIGKILL');
  await b.process;
  // Writes while the peer is gone succeed locally.
  const touched = [3, 17, 42];
  for (const extent of touched) await device.write(extent * MiB + 8192, pattern(extent, 8192));
  await waitFor('status degraded', () => engine.describe('test')?.worker?.status === 'degraded');
  const status = await hastctl(layout, 'a', 'status');
  t.match(status.stdout, /\ntest\tdegraded primary {2}/);
  t.equal(engine.describe('test')!.worker!.dirty, touched.length * MiB, 'exactly the touched extents are dirty');
  const restarted = await startDaemon(t, layout, 'b');
  t.equal((await hastctl(layout, 'b', 'role', 'secondary', 'test')).exitCode, 0);
  await waitFor('reconnect and sync', () => {
    const worker = engine.describe('test')?.worker;
    return worker?.status === 'complete' && worker.dirty === 0;
  }, 30_000);
  await engine.setRole('test', 'init');
  t.equal((await hastctl(layout, 'b', 'role', 'init', 'test')).exitCode, 0);
  t.ok(dataArea(layout.local.a).equals(dataArea(layout.local.b)), 'identical after the resync');
  t.match(restarted.output(), /Connected|connect/i);
});

t.test('garbage on the listen port drops that connection; the daemon keeps serving', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  await createBoth(t, layout);
  const b = await startDaemon(t, layout, 'b');
  for (let i = 0; i < 50; i++) {
    const socket = connect({ host: '127.0.0.2', port: layout.ports.b, localAddress: '127.0.0.1' });
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.end(Buffer.from(Array.from({ length: 64 + i * 13 }, (_, j) => (j * 31 + i) & 0xff)));
  }
  await sleep(200);
  const status = await hastctl(layout, 'b', 'status');
  t.equal(status.exitCode, 0);
  t.equal(b.process.exitCode, null, 'still running');
});

t.test('SIGHUP reloads; an invalid file keeps the old configuration; SIGTERM stops cleanly', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  await createBoth(t, layout);
  const b = await startDaemon(t, layout, 'b');
  writeFileSync(layout.conf, readFileSync(layout.conf, 'utf8') + 'resource extra {\n\ton b {\n\t\tlocal /nonexistent\n\t\tremote none\n\t}\n\ton a {\n\t\tlocal /x\n\t\tremote none\n\t}\n}\n');
  b.process.kill('SIGHUP');
  await waitFor('the new resource', async () => (await hastctl(layout, 'b', 'status')).stdout.includes('\nextra\t'));
  writeFileSync(layout.conf, 'resource broken {');
  b.process.kill('SIGHUP');
  await waitFor('the reload to fail', () => b.output().includes('Configuration not reloaded'));
  // hastctl itself would stop at the broken file, so ask the control socket directly.
  const reply = await sendControlRequest(`uds://${layout.control.b}`, { cmd: 'status', resources: ['all'] });
  t.same(
    reply.resources.map((r) => r.name),
    ['test', 'extra'],
    'the old configuration is still served',
  );
  b.process.kill('SIGTERM');
  const result = await b.process;
  t.equal(result.exitCode, 0);
  t.equal(existsSync(layout.control.b), false, 'the control socket is removed');
});

t.test(
  'SIGTERM stops an attached primary cleanly: the device is removed',
  { skip: process.getuid?.() === 0 ? false : 'needs root: losetup and nbdfuse' },
  async (t) => {
    // Stopping an attached primary runs commands (umount of the FUSE file, losetup -d) after the signal.
    await lockHastDevices(t);
    const layout = await pairLayout(t, 'memsync', 8 * MiB);
    await createBoth(t, layout);
    const b = await startDaemon(t, layout, 'b', { attach: true });
    t.equal((await hastctl(layout, 'b', 'role', 'primary', 'test')).exitCode, 0);
    await waitFor('/dev/hast/test', () => existsSync('/dev/hast/test'));
    b.process.kill('SIGTERM');
    const result = await b.process;
    t.equal(result.signal, undefined, 'not killed by the signal');
    t.equal(result.exitCode, 0);
    t.match(b.output(), 'Received SIGTERM, exiting.');
    t.equal(existsSync('/dev/hast/test'), false, 'the device is removed');
  },
);

t.test('a second daemon with the same pid file is refused with exit 75', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  const pidfile = join(layout.dir, 'b.pid');
  await startDaemon(t, layout, 'b', { args: ['-P', pidfile] });
  const second = await runCli(['hastd', '-F', '-c', layout.conf, '-n', 'b', '-P', pidfile, '--run-dir', layout.dir]);
  t.equal(second.exitCode, 75);
  t.match(second.stderr, `Another hastd is already running, pidfile: ${pidfile}, pid: `);
});

t.test('configuration and usage errors exit 78 and 64', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  writeFileSync(layout.conf, pairConf({ ...layout, replication: 'memsync', extra: 'replication sideways' }));
  const bad = await runCli(['hastd', '-F', '-c', layout.conf, '-n', 'b']);
  t.equal(bad.exitCode, 78);
  t.match(bad.stderr, `${layout.conf}:`);
  const usage = await runCli(['hastd', '-F', '--frob']);
  t.equal(usage.exitCode, 64);
  const rate = await runCli(['hastd', '-F', '--sync-rate', 'fast']);
  t.equal(rate.exitCode, 64);
  t.match(rate.stderr, "--sync-rate takes bytes per second (e.g. 50M), not 'fast'");
});

t.test('without -F the engine detaches, writes its pid file and logs JSON in the run directory', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  const runDir = join(layout.dir, 'run-detached');
  const started = await runCli(['hastd', '-c', layout.conf, '-n', 'b', '--run-dir', runDir, '--no-attach']);
  t.equal(started.exitCode, 0, started.stderr);
  const pid = Number(readFileSync(join(runDir, 'hastd.pid'), 'utf8'));
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone, as it should be.
    }
  });
  t.not(pid, 0);
  const reply = await sendControlRequest(`uds://${layout.control.b}`, { cmd: 'status', resources: ['all'] });
  t.same(reply.resources.map((r) => r.name), ['test']);
  process.kill(pid, 'SIGTERM');
  await waitFor('the detached engine to exit', () => !existsSync(join(runDir, 'hastd.pid')));
  const records = readFileSync(join(runDir, 'hastd.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { msg: string });
  t.ok(records.some((r) => r.msg === 'Started successfully, running protocol version 2.'));
  t.ok(records.some((r) => r.msg === 'Received SIGTERM, exiting.'));
});
