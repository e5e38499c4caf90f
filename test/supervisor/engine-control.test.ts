import t, { type Test } from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { CommandError } from '../../src/common/run-command.js';
import type { EngineConfig } from '../../src/config/supervisor-conf.js';
import { EngineControl, EngineControlError, runHastctlInProcess } from '../../src/supervisor/engine-control.js';
import { HastctlOutputError, isHastctlFailure, type HastList } from '../../src/supervisor/hastctl-output.js';
import { CLI_DIR, runCli } from '../fixtures/cli.js';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';

// The built CLI (npm test builds it first): under test this module is loaded from src/, where no main.js is.
const CLI = [process.execPath, join(CLI_DIR, 'main.js')];

function builtinEngine(layout: PairLayout): EngineConfig {
  return { kind: 'builtin', hastConf: layout.conf, node: 'a', runDir: join(layout.dir, 'run-a'), hastd: '', hastctl: '' };
}

// The built-in engine's hastctl both ways: in this process (the default) and started as the built CLI.
const WAYS: [string, { cli?: string[] }][] = [
  ['in-process', {}],
  ['started', { cli: CLI }],
];

t.test('argv: the built-in engine runs carp-hast hastctl with -n, FreeBSD runs its hastctl', async (t) => {
  const builtin: EngineConfig = {
    kind: 'builtin',
    hastConf: '/etc/hast.conf',
    node: 'a',
    runDir: '/var/run/carp-hast',
    hastd: '/sbin/hastd',
    hastctl: '/sbin/hastctl',
  };
  t.same(new EngineControl(builtin, { cli: ['/usr/local/bin/node', '/opt/main.js'] }).argv('role', 'primary', 'test'), [
    '/usr/local/bin/node',
    '/opt/main.js',
    'hastctl',
    'role',
    '-c',
    '/etc/hast.conf',
    '-n',
    'a',
    'primary',
    'test',
  ]);
  t.same(new EngineControl({ ...builtin, node: undefined }, { cli: ['carp-hast'] }).argv('list'), [
    'carp-hast',
    'hastctl',
    'list',
    '-c',
    '/etc/hast.conf',
  ]);
  const [node, main, ...rest] = new EngineControl(builtin).argv('status');
  t.equal(node, process.execPath, 'by default this Node runs the CLI');
  t.match(main, /\/cli\/main\.js$/, 'the main.js next to this module');
  t.same(rest, ['hastctl', 'status', '-c', '/etc/hast.conf', '-n', 'a']);
  t.same(new EngineControl({ ...builtin, kind: 'freebsd' }).argv('role', 'secondary', 'all'), [
    '/sbin/hastctl',
    'role',
    '-c',
    '/etc/hast.conf',
    'secondary',
    'all',
  ]);
});

for (const [way, options] of WAYS) {
  t.test(`${way}: drives our engine: role, list and status through the hastctl contract`, async (t) => {
    const layout = await pairLayout(t, 'fullsync', 8 * MiB);
    const control = new EngineControl(builtinEngine(layout), options);
    await control.create('test');
    t.equal((await hastctl(layout, 'b', 'create', 'test')).exitCode, 0);
    const a = await startDaemon(t, layout, 'a');
    await startDaemon(t, layout, 'b');

    const [initial] = (await control.list(['test'])) as HastList[];
    t.equal(initial?.role, 'init');
    t.equal(initial?.status, undefined, 'no worker in init');
    t.equal(initial?.workerpid, undefined);
    t.equal(initial?.localpath, layout.local.a);

    t.equal((await hastctl(layout, 'b', 'role', 'secondary', 'test')).exitCode, 0);
    await control.role('primary', ['test']);
    await waitFor('the primary to reach the secondary', async () => {
      const [entry] = await control.list();
      return entry !== undefined && !isHastctlFailure(entry) && entry.status === 'complete';
    });
    const [primary] = (await control.list(['test'])) as HastList[];
    t.equal(primary?.role, 'primary');
    t.equal(primary?.status, 'complete');
    t.equal(primary?.dirty, 0);
    t.equal(primary?.workerpid, a.process.pid, 'the built-in engine runs its workers in the daemon');
    t.equal(primary?.remoteaddr, `127.0.0.2:${layout.ports.b}`);
    t.equal(primary?.replication, 'fullsync');
    const components = { localpath: layout.local.a, remoteaddr: `127.0.0.2:${layout.ports.b}` };
    t.same(await control.status(), [{ name: 'test', status: 'complete', role: 'primary', ...components }]);

    await control.role('secondary', ['test']);
    const [secondary] = (await control.list(['test'])) as HastList[];
    t.equal(secondary?.role, 'secondary');
    await control.role('init', ['test']);
    const [init] = await control.status(['test']);
    t.same(init, { name: 'test', status: undefined, role: 'init', ...components });
  });

  t.test(`${way}: a resource the engine does not know comes back as a failure entry`, async (t) => {
    const layout = await pairLayout(t, 'memsync', 8 * MiB);
    const control = new EngineControl(builtinEngine(layout), options);
    await startDaemon(t, layout, 'a');
    const entries = await control.list(['test', 'nope']);
    t.equal(entries.length, 2);
    t.same(entries[1], { name: 'nope', error: 1 });
    t.same((await control.status(['nope'])), [{ name: 'nope', error: 1 }]);
  });

  t.test(`${way}: failures are EngineControlErrors carrying the command and its output`, async (t) => {
    const layout = await pairLayout(t, 'memsync', 8 * MiB);
    const control = new EngineControl(builtinEngine(layout), options);
    const down = await t.rejects(control.list());
    t.type(down, EngineControlError);
    t.equal((down as Error).message, "reading the engine's list");
    t.match((down as EngineControlError).output, /^\[ERROR\] .*Unable to connect to hastd via uds:\/\//);
    t.type((down as Error).cause, CommandError);
    t.same(((down as Error).cause as CommandError).argv, control.argv('list'));
    t.equal(((down as Error).cause as CommandError).exitCode, 71, "hastctl's EX_OSERR");
    t.equal(((down as Error).cause as CommandError).timedOut, false);

    await startDaemon(t, layout, 'a');
    const unknown = await t.rejects(control.role('primary', ['nope']));
    t.type(unknown, EngineControlError);
    t.equal((unknown as Error).message, 'setting nope to primary');
    t.equal((unknown as EngineControlError).output, '[WARNING] [nope] Received error 1 from hastd.');
    const create = await t.rejects(control.create('nope'));
    t.equal((create as Error).message, 'creating the metadata of nope');
    t.equal((create as EngineControlError).output, '[ERROR] Unknown resource nope.');
  });
}

t.test('in-process: a usage error prints and exits as the started command does', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  const control = new EngineControl(builtinEngine(layout));
  const args = ['role', '-c', layout.conf, '-n', 'a', 'boss', 'test'];
  const started = await runCli(['hastctl', ...args]);
  t.equal(started.exitCode, 64);
  const policy = { timeoutMs: 5_000, killAfterMs: 0 };
  const error = await t.rejects(runHastctlInProcess(control.argv('role', 'boss', 'test'), args, policy));
  t.type(error, CommandError);
  t.equal((error as CommandError).exitCode, 64);
  t.equal((error as CommandError).stderr, started.stderr);
  t.equal((error as CommandError).stdout, '');
  t.match((error as Error).message, /hastctl role -c .* -n a boss test: exited with status 64: carp-hast hastctl: role needs init/);
});

t.test('in-process: a hastd that never answers times out under the policy', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  const held = new Set<Socket>();
  const stuck = createServer((socket) => held.add(socket));
  await new Promise<void>((resolve) => stuck.listen(layout.control.a, resolve));
  t.teardown(() => {
    // Hanging up ends the abandoned call, which would otherwise wait out hastctl's 20 s reply timeout.
    for (const socket of held) socket.destroy();
    stuck.close();
  });
  const control = new EngineControl(builtinEngine(layout));
  const argv = control.argv('status');
  const started = performance.now();
  const error = await t.rejects(runHastctlInProcess(argv, argv.slice(3), { timeoutMs: 300, killAfterMs: 0 }));
  const took = performance.now() - started;
  t.ok(took >= 290 && took < 2_000, `rejected after the timeout (${Math.round(took)} ms)`);
  t.type(error, CommandError);
  t.equal((error as CommandError).timedOut, true);
  t.equal((error as CommandError).exitCode, undefined);
  t.equal((error as Error).message, `${argv.join(' ')}: timed out after 300 ms`);
  t.equal(held.size, 1, 'it was waiting on the control socket');
});

// A stand-in for FreeBSD's hastctl: records its arguments and prints `output` with exit status `status`.
function fakeHastctl(t: Test, output: string, status = 0): { engine: EngineConfig; calls: () => string } {
  const dir = t.testdir({ 'output.txt': output });
  const script = join(dir, 'hastctl');
  const here = '"$(dirname "$0")"';
  writeFileSync(script, `#!/bin/sh\necho "$@" >> ${here}/argv\ncat ${here}/output.txt\nexit ${status}\n`);
  chmodSync(script, 0o755);
  const engine: EngineConfig = {
    kind: 'freebsd',
    hastConf: '/etc/hast.conf',
    node: undefined,
    runDir: '/var/run/carp-hast',
    hastd: '/sbin/hastd',
    hastctl: script,
  };
  return { engine, calls: () => readFileSync(join(dir, 'argv'), 'utf8') };
}

// FreeBSD 14 `hastctl status` of a secondary whose primary is connected, and of one it does not know.
const FREEBSD_STATUS = [
  'Name\tStatus\t Role\t\tComponents',
  'shared\tcomplete secondary      /dev/ada0p3\ttcp4://10.0.0.1',
  'nope\tERR1',
  '',
].join('\n');

t.test("FreeBSD's hastctl: the same calls, its output parsed", async (t) => {
  const { engine, calls } = fakeHastctl(t, FREEBSD_STATUS, 1);
  const control = new EngineControl(engine);
  t.same(await control.status(['shared', 'nope']), [
    { name: 'shared', status: 'complete', role: 'secondary', localpath: '/dev/ada0p3', remoteaddr: 'tcp4://10.0.0.1' },
    { name: 'nope', error: 1 },
  ]);
  t.equal(calls(), 'status -c /etc/hast.conf shared nope\n');
});

t.test("FreeBSD's hastctl: role and create pass their arguments", async (t) => {
  const { engine, calls } = fakeHastctl(t, '');
  const control = new EngineControl(engine);
  await control.role('primary', ['shared', 'data']);
  await control.create('shared');
  t.equal(calls(), 'role -c /etc/hast.conf primary shared data\ncreate -c /etc/hast.conf shared\n');
});

t.test("FreeBSD's hastctl: a failure with no matching entry, or output that is not hastctl's", async (t) => {
  const failed = fakeHastctl(t, FREEBSD_STATUS, 70);
  const error = await t.rejects(new EngineControl(failed.engine).status());
  t.equal((error as Error).message, "reading the engine's status", 'exit 70 is not a per-resource error');
  const garbage = fakeHastctl(t, 'shared:\n  role: boss\n');
  const parse = await t.rejects(new EngineControl(garbage.engine).list());
  t.type(parse, EngineControlError);
  const command = `${garbage.engine.hastctl} list -c /etc/hast.conf`;
  t.equal((parse as Error).message, `reading the engine's list: ${command} printed output that is not hastctl's`);
  t.equal((parse as EngineControlError).output, 'shared:\n  role: boss\n');
  t.type((parse as Error).cause, HastctlOutputError);
  const unparsable = fakeHastctl(t, 'shared:\n  role: boss\n', 1);
  t.equal(((await t.rejects(new EngineControl(unparsable.engine).list())) as Error).message, "reading the engine's list");
});
