import t from 'tap';
import type { Test } from 'tap';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import { ControlServer } from '../../src/engine/control-server.js';
import { encodePacket } from '../../src/engine/hast-proto.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { Nv } from '../../src/engine/nv.js';
import { emptyStatistics, type WorkerStatus } from '../../src/engine/worker-status.js';
import { runCli } from '../fixtures/cli.js';
import { FakeTarget, socketDir } from '../fixtures/control-target.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

// A hast.conf whose resources live in `dir` on node "a"; the peer is not needed offline.
function hastConf(dir: string, resources: Record<string, string>): string {
  const path = join(dir, 'hast.conf');
  const blocks = Object.entries(resources).map(
    ([name, local]) => `resource ${name} {\n\ton a {\n\t\tlocal ${local}\n\t\tremote none\n\t}\n}\n`,
  );
  writeFileSync(path, blocks.join(''));
  return path;
}

function hastctl(conf: string, ...args: string[]) {
  const [verb = '', ...rest] = args;
  return runCli(['hastctl', verb, '-c', conf, '-n', 'a', ...rest]);
}

function sparseFile(dir: string, name: string, size: number): string {
  const path = join(dir, name);
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

t.test('create then dump a 1 GiB file with the defaults', async (t) => {
  const dir = t.testdir();
  const conf = hastConf(dir, { test: sparseFile(dir, 'disk', 1024 * MiB) });
  const created = await hastctl(conf, 'create', 'test');
  t.equal(created.stderr, '');
  t.equal(created.exitCode, 0);
  t.equal(created.stdout, '');
  const dump = await hastctl(conf, 'dump', 'test');
  t.equal(dump.exitCode, 0);
  // 512 extents of 2 MiB need 64 bytes of bitmap, rounded up to one 512-byte sector:
  // localoff = 4096 + 512, datasize = 1 GiB - 4608.
  t.equal(
    dump.stdout,
    `resource: test
    datasize: 1073737216 (1.0GB)
    extentsize: 2097152 (2.0MB)
    keepdirty: 64
    localoff: 4608
    resuid: 0
    localcnt: 0
    remotecnt: 0
    prevrole: init
`,
  );
});

t.test('-e, -k and -m with size suffixes', async (t) => {
  const dir = t.testdir();
  const conf = hastConf(dir, { test: sparseFile(dir, 'disk', 1024 * MiB) });
  t.equal((await hastctl(conf, 'create', '-e', '64k', '-k', '128', '-m', '512M', 'test')).exitCode, 0);
  const dump = await hastctl(conf, 'dump', 'test');
  // (512 MiB - 4096) / 64 KiB rounds up to 8192 extents: 1024 bytes of bitmap, already whole sectors.
  t.equal(
    dump.stdout,
    `resource: test
    datasize: 536865792 (512MB)
    extentsize: 65536 (64KB)
    keepdirty: 128
    localoff: 5120
    resuid: 0
    localcnt: 0
    remotecnt: 0
    prevrole: init
`,
  );
});

t.test('create writes metadata and a zeroed bitmap, and nothing past them', async (t) => {
  const dir = t.testdir();
  const disk = sparseFile(dir, 'disk', 8 * MiB);
  writeFileSync(disk, Buffer.alloc(8 * MiB, 0xaa));
  const conf = hastConf(dir, { test: disk });
  t.equal((await hastctl(conf, 'create', 'test')).exitCode, 0);
  const bytes = readFileSync(disk);
  t.equal(bytes.subarray(4096, 4608).every((b) => b === 0), true, 'the bitmap is cleared');
  t.equal(bytes.subarray(4608).every((b) => b === 0xaa), true, 'the data area is untouched');
});

t.test('dump all prints every resource in configuration order', async (t) => {
  const dir = t.testdir();
  const conf = hastConf(dir, { one: sparseFile(dir, 'd1', 4 * MiB), two: sparseFile(dir, 'd2', 4 * MiB) });
  t.equal((await hastctl(conf, 'create', 'one', 'two')).exitCode, 0);
  const dump = await hastctl(conf, 'dump', 'all');
  t.equal(dump.exitCode, 0);
  t.match(dump.stdout, /^resource: one\n( {4}.*\n){8}resource: two\n( {4}.*\n){8}$/);
  t.equal((await hastctl(conf, 'dump')).stdout, dump.stdout, 'no names means all');
});

t.test('errors: hastctl texts and exit codes, nothing written', async (t) => {
  const dir = t.testdir();
  const disk = sparseFile(dir, 'disk', 4 * MiB);
  const small = sparseFile(dir, 'small', 4608);
  const conf = hastConf(dir, { test: disk, tiny: small, gone: join(dir, 'missing') });
  const cases: { args: string[]; exitCode: number; stderr: string }[] = [
    { args: ['create', 'nope'], exitCode: 65, stderr: '[ERROR] Unknown resource nope.\n' },
    {
      args: ['create', '-m', '8M', 'test'],
      exitCode: 65,
      stderr: `[ERROR] [test] Provided mediasize is larger than provider ${disk} size.\n`,
    },
    { args: ['create', '-e', '3000', 'test'], exitCode: 65, stderr: '[ERROR] [test] Extent size (3000) is not a power of 2.\n' },
    {
      args: ['create', '-e', '256', 'test'],
      exitCode: 65,
      stderr: '[ERROR] [test] Extent size (256) is less than sector size (512).\n',
    },
    {
      args: ['create', 'tiny'],
      exitCode: 65,
      stderr: `[ERROR] [tiny] Provider ${small} is too small (4608 bytes) for metadata and activemap (4608 bytes) and data.\n`,
    },
    {
      args: ['create', 'gone'],
      exitCode: 66,
      stderr: `[ERROR] [gone] Unable to open ${join(dir, 'missing')}: No such file or directory.\n`,
    },
    { args: ['dump', 'test'], exitCode: 66, stderr: `[ERROR] [test] Unable to read metadata from ${disk}.\n` },
    { args: ['dump', 'nope', 'test'], exitCode: 65, stderr: `[ERROR] Unknown resource nope.\n[ERROR] [test] Unable to read metadata from ${disk}.\n` },
  ];
  for (const c of cases) {
    const r = await hastctl(conf, ...c.args);
    t.equal(r.stderr, c.stderr, c.args.join(' '));
    t.equal(r.exitCode, c.exitCode, c.args.join(' '));
  }
  t.equal(readFileSync(disk).every((b) => b === 0), true, 'the refused creates wrote nothing');
});

t.test('dump refuses garbage, truncated and foreign metadata', async (t) => {
  const dir = t.testdir();
  const garbage = sparseFile(dir, 'garbage', MiB);
  writeFileSync(garbage, Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 7919 + 13) & 0xff)));
  const short = join(dir, 'short');
  writeFileSync(short, Buffer.alloc(100));
  const other = sparseFile(dir, 'other', 4 * MiB);
  const first = hastConf(dir, { data: other });
  t.equal((await hastctl(first, 'create', 'data')).exitCode, 0);
  const conf = hastConf(dir, { garbage, short, test: other });
  const cases: [string, string][] = [
    ['garbage', `[ERROR] [garbage] Metadata read from ${garbage} is invalid.`],
    ['short', `[ERROR] [short] Unable to read metadata from ${short}: component is smaller than 4096 bytes.`],
    ['test', `[ERROR] [test] Provider ${other} is not part of resource test.`],
  ];
  for (const [name, message] of cases) {
    const r = await hastctl(conf, 'dump', name);
    t.equal(r.exitCode, 66, name);
    t.equal(r.stdout, '', name);
    t.equal(r.stderr.split('\n')[0], message, name);
  }
});

t.test('a component held by another engine is not created over', async (t) => {
  const dir = t.testdir();
  const disk = sparseFile(dir, 'disk', 4 * MiB);
  const conf = hastConf(dir, { test: disk });
  t.equal((await hastctl(conf, 'create', '-k', '16', 'test')).exitCode, 0);
  const before = readFileSync(disk);
  const holder = await LocalComponent.open(disk);
  t.teardown(() => holder.close());
  const r = await hastctl(conf, 'create', 'test');
  t.equal(r.exitCode, 66);
  t.equal(r.stderr, `[ERROR] [test] Unable to lock ${disk} (another hastd/engine holds it)\n`);
  t.same(readFileSync(disk), before, 'nothing written');
  const dump = await hastctl(conf, 'dump', 'test');
  t.equal(dump.exitCode, 0, 'dump reads a component an engine holds, as hastctl does');
  t.match(dump.stdout, '    keepdirty: 16\n');
});

t.test('usage errors exit 64', async (t) => {
  const dir = t.testdir();
  const conf = hastConf(dir, { test: sparseFile(dir, 'disk', MiB) });
  for (const args of [['create'], ['create', '-e', 'lots', 'test'], ['create', '-x', 'test'], ['frob']]) {
    const r = await hastctl(conf, ...args);
    t.equal(r.exitCode, 64, args.join(' '));
    t.match(r.stderr, 'usage: carp-hast hastctl create', args.join(' '));
  }
  t.equal((await runCli(['hastctl'])).exitCode, 64);
  const help = await runCli(['hastctl', '--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, 'carp-hast hastctl dump');
  const verbHelp = await runCli(['hastctl', 'create', '-c', '/nonexistent', '-h']);
  t.equal(verbHelp.exitCode, 0, 'a verb with -h prints the usage, whatever else it got');
  t.equal(verbHelp.stdout, help.stdout);
});

// A hast.conf naming `control` for resources the fake daemon knows; their disks are never opened.
function daemonConf(dir: string, control: string): string {
  const path = join(dir, 'hast.conf');
  const resource = (name: string) => `resource ${name} {\n\ton a {\n\t\tlocal /dev/${name}\n\t\tremote tcp://10.0.0.2\n\t}\n}\n`;
  writeFileSync(path, `control ${control}\n${resource('shared')}${resource('data')}`);
  return path;
}

async function fakeDaemon(t: Test) {
  const dir = socketDir(t);
  const control = `uds://${join(dir, 'ctl')}`;
  const target = new FakeTarget(['shared', 'data']);
  const memory = memoryLogger();
  const server = await ControlServer.listen(join(dir, 'ctl'), target, memory.log);
  t.teardown(() => server.close());
  return { conf: daemonConf(dir, control), control, target, dir };
}

const worker: WorkerStatus = {
  status: 'complete',
  replication: 'memsync',
  dirty: 6291456,
  extentsize: 2097152,
  keepdirty: 64,
  statistics: { ...emptyStatistics(), reads: 120n, writes: 77n, flushes: 3n, activemapUpdates: 9n },
  queues: { local: 0, send: 1, recv: 0, done: 0, idle: 255 },
};

t.test('role then status and list against a running daemon', async (t) => {
  const { conf, target } = await fakeDaemon(t);
  const role = await hastctl(conf, 'role', 'primary', 'shared');
  t.same(role, { exitCode: 0, stdout: '', stderr: '' }, 'role prints nothing on success');
  t.equal(target.roles.get('shared'), 'primary');
  target.workers.set('shared', { pid: 31337, status: worker });

  const status = await hastctl(conf, 'status');
  t.equal(status.stderr, '');
  t.equal(status.exitCode, 0);
  t.equal(
    status.stdout,
    'Name\tStatus\t Role\t\tComponents\n' +
      'shared\tcomplete primary        /dev/shared\ttcp://10.0.0.2\n' +
      'data\t-        init           /dev/data\ttcp://10.0.0.2\n',
  );
  t.equal((await hastctl(conf, 'status', 'all')).stdout, status.stdout, 'all is the same as nothing');

  const list = await hastctl(conf, 'list', 'shared', 'data');
  t.equal(list.exitCode, 0);
  t.equal(
    list.stdout,
    `shared:
  role: primary
  provname: shared
  localpath: /dev/shared
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: tcp://10.0.0.2
  replication: memsync
  status: complete
  workerpid: 31337
  dirty: 6291456 (6.0MB)
  statistics:
    reads: 120
    writes: 77
    deletes: 0
    flushes: 3
    activemap updates: 9
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 1, recv: 0, done: 0, idle: 255
data:
  role: init
  provname: data
  localpath: /dev/data
  extentsize: 0 (0B)
  keepdirty: 0
  remoteaddr: tcp://10.0.0.2
  replication: memsync
  dirty: 0 (0B)
  statistics:
    reads: 0
    writes: 0
    deletes: 0
    flushes: 0
    activemap updates: 0
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0
`,
  );
});

t.test('unknown resources: ERR1 / error: 1 / a warning, and exit 1', async (t) => {
  const { conf, target } = await fakeDaemon(t);
  const status = await hastctl(conf, 'status', 'nope', 'data');
  t.equal(status.exitCode, 1);
  t.equal(status.stdout, 'Name\tStatus\t Role\t\tComponents\nnope\tERR1\ndata\t-        init           /dev/data\ttcp://10.0.0.2\n');
  const list = await hastctl(conf, 'list', 'nope');
  t.same(list, { exitCode: 1, stdout: 'nope:\n  error: 1\n', stderr: '' });
  const role = await hastctl(conf, 'role', 'secondary', 'nope', 'all');
  t.same(role, {
    exitCode: 1,
    stdout: '',
    stderr: '[WARNING] [nope] Received error 1 from hastd.\n[WARNING] [all] Received error 1 from hastd.\n',
  }, '"all" after a name is just a name');
  t.same(target.calls, []);
  t.equal((await hastctl(conf, 'role', 'secondary', 'all')).exitCode, 0);
  t.same(target.calls, ['shared:secondary', 'data:secondary']);
});

t.test('no daemon listening: exit 71', async (t) => {
  const dir = socketDir(t);
  const control = `uds://${join(dir, 'ctl')}`;
  const conf = daemonConf(dir, control);
  for (const args of [['status'], ['list', 'shared'], ['role', 'init', 'all']]) {
    const r = await hastctl(conf, ...args);
    t.same(r, { exitCode: 71, stdout: '', stderr: `[ERROR] Unable to connect to hastd via ${control}: No such file or directory.\n` }, args.join(' '));
  }
});

t.test('a global error from hastd: exit 70', async (t) => {
  const dir = socketDir(t);
  const path = join(dir, 'ctl');
  const server = createServer((socket) => socket.once('data', () => socket.end(Buffer.concat(encodePacket(new Nv().addInt16('error', 2))))));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const r = await hastctl(daemonConf(dir, path), 'status');
  t.same(r, { exitCode: 70, stdout: '', stderr: '[ERROR] Error 2 received from hastd.\n' });
});

t.test('role usage errors exit 64 before anything is sent', async (t) => {
  const { conf, target } = await fakeDaemon(t);
  for (const args of [['role'], ['role', 'primary'], ['role', 'master', 'all'], ['role', '-x', 'init', 'all'], ['status', '-q']]) {
    const r = await hastctl(conf, ...args);
    t.equal(r.exitCode, 64, args.join(' '));
    t.match(r.stderr, 'usage: carp-hast hastctl create', args.join(' '));
  }
  t.same(target.calls, []);
});

t.test('create and dump on loop devices', { skip: isRoot ? false : 'losetup needs root' }, async (t) => {
  const policy = { timeoutMs: 30_000, killAfterMs: 5_000 };
  for (const [sector, dumpText] of [
    [
      512,
      // 32 extents: 4 bytes of bitmap in one 512-byte sector.
      'datasize: 67104256 (64MB)\n    extentsize: 2097152 (2.0MB)\n    keepdirty: 64\n    localoff: 4608\n',
    ],
    [
      4096,
      // The same 4 bytes take a whole 4096-byte sector.
      'datasize: 67100672 (64MB)\n    extentsize: 2097152 (2.0MB)\n    keepdirty: 64\n    localoff: 8192\n',
    ],
  ] as const) {
    const dir = t.testdir();
    const backing = sparseFile(dir, 'backing', 64 * MiB);
    const loop = (await runCommand(['losetup', '--find', '--show', '--sector-size', String(sector), backing], policy)).stdout.trim();
    t.teardown(() => runCommand(['losetup', '--detach', loop], policy));
    const conf = hastConf(dir, { test: loop });
    const created = await hastctl(conf, 'create', 'test');
    t.equal(created.stderr, '', `create on ${sector}-byte sectors`);
    t.equal(created.exitCode, 0);
    const dump = await hastctl(conf, 'dump', 'test');
    t.equal(dump.stdout, `resource: test\n    ${dumpText}    resuid: 0\n    localcnt: 0\n    remotecnt: 0\n    prevrole: init\n`);
  }
});
