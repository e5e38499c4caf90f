import t, { type Test } from 'tap';
import { execa } from 'execa';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { EngineConfig } from '../../src/config/supervisor-conf.js';
import { sendControlRequest } from '../../src/engine/hastctl-client.js';
import { EngineChild, engineArgv, foldEngineLine, type EngineChildOptions, type EngineExit } from '../../src/supervisor/engine-child.js';
import { CLI_DIR } from '../fixtures/cli.js';
import { hastctl, pairLayout, waitFor } from '../fixtures/engine-pair.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const PARENT = fileURLToPath(new URL('../fixtures/engine-child-parent.mjs', import.meta.url));
// The built carp-hast, since the module's default points at dist/cli/main.js beside the built engine-child.js.
const CLI = [process.execPath, CLI_DIR + 'main.js'];

function engineConfig(overrides: Partial<EngineConfig> = {}): EngineConfig {
  return {
    kind: 'builtin',
    hastConf: '/etc/hast.conf',
    node: undefined,
    runDir: '/var/run/carp-hast',
    hastd: '/sbin/hastd',
    hastctl: '/sbin/hastctl',
    ...overrides,
  };
}

// An EngineChild with its handler calls recorded, stopped at the end of the test.
function managed(t: Test, argv: string[], options: Omit<EngineChildOptions, 'argv' | 'log'> = {}) {
  const memory = memoryLogger();
  const started: number[] = [];
  const exits: EngineExit[] = [];
  const engine = new EngineChild(
    { argv, log: memory.log, initialBackoffMs: 10, ...options },
    { onStarted: (pid) => started.push(pid), onExited: (info) => exits.push(info) },
  );
  t.teardown(() => engine.stop());
  return { engine, started, exits, ...memory };
}

// A `#!/bin/sh` stand-in for an engine.
function standIn(t: Test, body: string): string {
  const path = join(t.testdir(), 'engine');
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

// True once `pid` no longer exists. A process is only gone once its parent has reaped it.
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function controlAnswers(control: string): Promise<boolean> {
  return sendControlRequest(`uds://${control}`, { cmd: 'status', resources: ['all'] }, 1000).then(
    () => true,
    () => false,
  );
}

t.test('engineArgv runs the built-in engine in the foreground with JSON logs', async (t) => {
  const engine = engineConfig({ hastConf: '/etc/hast.conf', node: 'a', runDir: '/var/run/carp-hast' });
  t.same(engineArgv(engine, { cli: ['node', '/opt/carp-hast/dist/cli/main.js'] }), [
    'node',
    '/opt/carp-hast/dist/cli/main.js',
    'hastd',
    '-F',
    '--log-format',
    'json',
    '-c',
    '/etc/hast.conf',
    '-n',
    'a',
    '--run-dir',
    '/var/run/carp-hast',
  ]);
  t.same(engineArgv(engineConfig({ node: undefined }), { cli: ['carp-hast'] }), [
    'carp-hast',
    'hastd',
    '-F',
    '--log-format',
    'json',
    '-c',
    '/etc/hast.conf',
    '--run-dir',
    '/var/run/carp-hast',
  ]);
  t.same(engineArgv(engineConfig(), { cli: ['carp-hast'], logLevel: 'debug' }).slice(0, 4), ['carp-hast', 'hastd', '-F', '-d']);
  t.same(engineArgv(engineConfig(), { cli: ['carp-hast'], logLevel: 'trace' }).slice(0, 5), ['carp-hast', 'hastd', '-F', '-d', '-d']);
  t.same(engineArgv(engineConfig(), { cli: ['carp-hast'], logLevel: 'warn' }).slice(0, 4), ['carp-hast', 'hastd', '-F', '--log-format']);
  const [node, main, command] = engineArgv(engineConfig());
  t.equal(node, process.execPath);
  t.match(main, /\/cli\/main\.js$/);
  t.equal(command, 'hastd');
});

t.test('engineArgv runs FreeBSD hastd in the foreground, without the built-in options', async (t) => {
  const engine = engineConfig({ kind: 'freebsd', hastConf: '/etc/hast.conf', node: 'a', hastd: '/sbin/hastd' });
  t.same(engineArgv(engine), ['/sbin/hastd', '-F', '-c', '/etc/hast.conf']);
  t.same(engineArgv(engine, { logLevel: 'debug' }), ['/sbin/hastd', '-F', '-d', '-c', '/etc/hast.conf']);
});

t.test('foldEngineLine keeps a pino record’s level and fields, not the engine process’s', async (t) => {
  t.same(
    foldEngineLine(
      '{"level":40,"time":1700000000000,"pid":4242,"hostname":"node-a","name":"hastd","resource":"test","role":"primary","msg":"Unable to connect to 127.0.0.2:7772: Connection refused."}',
    ),
    { level: 'warn', msg: 'Unable to connect to 127.0.0.2:7772: Connection refused.', fields: { resource: 'test', role: 'primary' } },
  );
  t.same(
    foldEngineLine('{"level":50,"time":1,"pid":1,"name":"hastd","component":"control","err":{"type":"Error","message":"boom"},"msg":"Control request failed."}'),
    { level: 'error', msg: 'Control request failed.', fields: { engineComponent: 'control', err: { type: 'Error', message: 'boom' } } },
  );
  t.same(foldEngineLine('{"level":20,"msg":"d"}').level, 'debug');
  t.same(foldEngineLine('{"level":10,"msg":"t"}').level, 'trace');
  t.same(foldEngineLine('{"level":60,"msg":"f"}').level, 'fatal');
  t.same(foldEngineLine('{"level":"error","msg":"named level"}'), { level: 'error', msg: 'named level', fields: {} });
  t.same(foldEngineLine('{"level":35,"msg":"custom level"}'), { level: 'info', msg: 'custom level', fields: {} });
  t.same(foldEngineLine('{"level":"loud","msg":"unknown name"}').level, 'info');
  t.same(foldEngineLine('{"level":30,"bytes":4096}'), { level: 'info', msg: '', fields: { bytes: 4096 } });
});

t.test('foldEngineLine reads FreeBSD hastd’s text lines, lifting level, resource and role', async (t) => {
  t.same(foldEngineLine('[ERROR] [test] (primary) Unable to connect to 10.0.0.2: Connection refused.'), {
    level: 'error',
    msg: 'Unable to connect to 10.0.0.2: Connection refused.',
    fields: { resource: 'test', role: 'primary' },
  });
  t.same(foldEngineLine('[test] (primary) Unable to connect to 10.0.0.2: Connection refused.'), {
    level: 'info',
    msg: 'Unable to connect to 10.0.0.2: Connection refused.',
    fields: { resource: 'test', role: 'primary' },
  });
  t.same(foldEngineLine('[INFO] Started successfully, running protocol version 2.'), {
    level: 'info',
    msg: 'Started successfully, running protocol version 2.',
    fields: {},
  });
  t.same(foldEngineLine('[DEBUG][2] [shared] (secondary) Obtained request.'), {
    level: 'debug',
    msg: 'Obtained request.',
    fields: { resource: 'shared', role: 'secondary' },
  });
  t.same(foldEngineLine('[DEBUG1] Checking hooks.'), { level: 'debug', msg: 'Checking hooks.', fields: {} });
  t.same(foldEngineLine('[WARNING] [test] (init) Resource is not configured.').level, 'warn');
  t.same(foldEngineLine('[NOTICE] Reloading.').level, 'info');
  t.same(foldEngineLine('[CRIT] Out of memory.').level, 'fatal');
  t.same(foldEngineLine('carp-hast hastd: /etc/hast.conf:3:1: unknown keyword'), {
    level: 'info',
    msg: 'carp-hast hastd: /etc/hast.conf:3:1: unknown keyword',
    fields: {},
  });
  t.same(foldEngineLine('{"level":30,"msg":"cut off'), { level: 'info', msg: '{"level":30,"msg":"cut off', fields: {} });
  t.same(foldEngineLine('{"no":"level"}'), { level: 'info', msg: '{"no":"level"}', fields: {} });
  t.same(foldEngineLine('[1,2] (x)'), { level: 'info', msg: '[1,2] (x)', fields: {} });
});

t.test('the built-in engine runs, logs through us, is restarted after SIGKILL and stops on stop()', async (t) => {
  const layout = await pairLayout(t, 'fullsync');
  t.equal((await hastctl(layout, 'a', 'create', '-e', '1M', 'test')).exitCode, 0);
  const argv = engineArgv(engineConfig({ hastConf: layout.conf, node: 'a', runDir: join(layout.dir, 'run-a') }), { cli: CLI });
  const { engine, started, exits, records } = managed(t, argv, { initialBackoffMs: 50 });

  engine.start();
  await waitFor('the engine to start', () => started.length === 1);
  const firstPid = started[0]!;
  t.equal(engine.pid, firstPid);
  t.equal(engine.running, true);
  await waitFor('the control socket to answer', () => controlAnswers(layout.control.a));
  await waitFor('the start line', () => records.some((r) => r['msg'] === 'Started successfully, running protocol version 2.'));
  const startLine = records.find((r) => r['msg'] === 'Started successfully, running protocol version 2.')!;
  t.same(
    { component: startLine['component'], level: startLine['level'], pid: startLine['pid'], name: startLine['name'] },
    { component: 'engine', level: 30, pid: process.pid, name: undefined },
    "the record is ours: the engine's pid and name are not copied",
  );
  t.ok(records.some((r) => r['msg'] === `Engine started (pid ${firstPid}).` && r['component'] === undefined));

  t.equal((await hastctl(layout, 'a', 'role', 'secondary', 'test')).exitCode, 0);
  await waitFor('the role change line', () => records.some((r) => r['msg'] === 'Role changed to secondary.'));
  const roleLine = records.find((r) => r['msg'] === 'Role changed to secondary.')!;
  t.same({ component: roleLine['component'], resource: roleLine['resource'], level: roleLine['level'] }, { component: 'engine', resource: 'test', level: 30 });

  process.kill(firstPid, 'SIGKILL');
  await waitFor('the engine to restart', () => started.length === 2);
  t.same(exits[0]!.code, null);
  t.same({ signal: exits[0]!.signal, restartInMs: exits[0]!.restartInMs }, { signal: 'SIGKILL', restartInMs: 50 });
  t.ok(gone(firstPid), 'the killed engine was reaped');
  t.not(started[1], firstPid);
  t.equal(engine.restarts, 1);
  t.ok(records.some((r) => r['msg'] === 'Engine was killed by SIGKILL; restarting in 50 ms.' && r['level'] === 50));
  await waitFor('the restarted engine to answer', () => controlAnswers(layout.control.a));

  const secondPid = started[1]!;
  await engine.stop();
  t.equal(exits.length, 2);
  t.same({ ...exits[1]!, runMs: 0 }, { code: 0, signal: null, runMs: 0, restartInMs: undefined });
  t.ok(records.some((r) => r['msg'] === 'Received SIGTERM, exiting.' && r['component'] === 'engine'));
  t.ok(records.some((r) => r['msg'] === 'Engine stopped (exited with status 0).'));
  t.equal(engine.running, false);
  t.equal(engine.pid, undefined);
  t.ok(gone(secondPid), 'the stopped engine is gone');
  await sleep(200);
  t.equal(started.length, 2, 'no restart after stop()');
});

t.test('an engine exiting with EX_CONFIG is not restarted until start() is called again', async (t) => {
  const script = standIn(t, `echo "hast.conf:3:1: unknown keyword 'bogus'" >&2\nexit 78`);
  const { engine, started, exits, records } = managed(t, [script]);
  engine.start();
  await waitFor('the engine to exit', () => exits.length === 1);
  t.same({ ...exits[0]!, runMs: 0 }, { code: 78, signal: null, runMs: 0, restartInMs: undefined });
  const error = records.find((r) => r['level'] === 50)!;
  t.equal(
    error['msg'],
    "Engine exited with status 78: hast.conf:3:1: unknown keyword 'bogus'; a restart cannot help, so it stays down until started again.",
  );
  t.same(error['stderr'], ["hast.conf:3:1: unknown keyword 'bogus'"]);
  t.ok(records.some((r) => r['msg'] === "hast.conf:3:1: unknown keyword 'bogus'" && r['component'] === 'engine'));
  await sleep(100);
  t.equal(started.length, 1, 'not restarted');
  t.equal(engine.running, false);

  engine.start();
  await waitFor('the second exit', () => exits.length === 2);
  t.equal(started.length, 2, 'start() runs it again');
  t.equal(engine.restarts, 0, 'a start by hand is not a restart');
});

t.test('an engine exiting with EX_USAGE is not restarted', async (t) => {
  const { engine, started, exits } = managed(t, [standIn(t, 'echo "usage: hastd [-dFh]" >&2\nexit 64')]);
  engine.start();
  await waitFor('the engine to exit', () => exits.length === 1);
  t.same([exits[0]!.code, exits[0]!.restartInMs], [64, undefined]);
  await sleep(100);
  t.equal(started.length, 1);
});

t.test('an engine that keeps failing is restarted with a growing backoff, capped', async (t) => {
  const { engine, started, exits, records } = managed(t, [standIn(t, 'echo boom >&2\nexit 1')], { initialBackoffMs: 10, maxBackoffMs: 30 });
  engine.start();
  await waitFor('four exits', () => exits.length >= 4);
  t.same(
    exits.slice(0, 4).map((e) => [e.code, e.restartInMs]),
    [
      [1, 10],
      [1, 20],
      [1, 30],
      [1, 30],
    ],
  );
  t.ok(records.some((r) => r['msg'] === 'Engine exited with status 1: boom; restarting in 20 ms.'));
  await engine.stop();
  const count = started.length;
  await sleep(100);
  t.equal(started.length, count, 'stop() cancels a scheduled restart');
});

t.test('a run longer than stableAfterMs resets the backoff', async (t) => {
  const { engine, exits } = managed(t, [standIn(t, 'sleep 0.3\nexit 1')], { initialBackoffMs: 10, stableAfterMs: 200 });
  engine.start();
  await waitFor('three exits', () => exits.length >= 3);
  t.same(
    exits.slice(0, 3).map((e) => e.restartInMs),
    [10, 10, 10],
  );
  t.ok(exits.every((e) => e.runMs >= 200));
});

t.test('EX_TEMPFAIL (another hastd is running) is retried', async (t) => {
  const { engine, started, exits } = managed(t, [standIn(t, 'echo "Another hastd is already running, pidfile: /var/run/hastd.pid, pid: 1." >&2\nexit 75')]);
  engine.start();
  await waitFor('a retry', () => started.length >= 2);
  t.same([exits[0]!.code, exits[0]!.restartInMs], [75, 10]);
});

t.test('stop() SIGKILLs an engine that ignores SIGTERM after stopTimeoutMs', async (t) => {
  const argv = [
    process.execPath,
    '-e',
    "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 1000);",
  ];
  const { engine, started, exits, records } = managed(t, argv, { stopTimeoutMs: 1_000 });
  engine.start();
  await waitFor('the stand-in to be ready', () => records.some((r) => r['msg'] === 'ready'));
  const pid = started[0]!;
  const before = performance.now();
  await engine.stop();
  t.ok(performance.now() - before >= 990, 'waited for stopTimeoutMs first');
  t.same([exits[0]!.signal, exits[0]!.restartInMs], ['SIGKILL', undefined]);
  t.ok(records.some((r) => r['msg'] === 'ignoring SIGTERM'), 'SIGTERM came first');
  t.ok(records.some((r) => r['msg'] === 'The engine did not stop within 1000 ms; sending SIGKILL.' && r['level'] === 40));
  t.ok(gone(pid));
});

t.test('output lines are folded from both streams and cut at 64 KiB', async (t) => {
  const script = standIn(
    t,
    [
      'echo "[INFO] [test] (secondary) Obtained request."',
      'echo',
      `printf '%070000d\\n' 0`,
      `printf '%0200000d\\n' 0`,
      'echo after',
      'echo "[ERROR] [test] (primary) Unable to connect to 10.0.0.2: Connection refused." >&2',
      'printf "no newline at the end"',
      'exit 1',
    ].join('\n'),
  );
  const { engine, exits, records } = managed(t, [script], { initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
  engine.start();
  await waitFor('the exit', () => exits.length === 1);
  const folded = records.filter((r) => r['component'] === 'engine');
  const summary = (r: Record<string, unknown>) => {
    const msg = String(r['msg']);
    return [r['level'], msg.length > 80 ? `${msg.length} chars` : msg, r['resource'], r['role'], r['truncated']];
  };
  const fromStderr = (r: Record<string, unknown>) => String(r['msg']).startsWith('Unable to connect');
  t.same(folded.filter((r) => !fromStderr(r)).map(summary), [
    [30, 'Obtained request.', 'test', 'secondary', undefined],
    [30, '65536 chars', undefined, undefined, true],
    [30, '65536 chars', undefined, undefined, true],
    [30, 'after', undefined, undefined, undefined],
    [30, 'no newline at the end', undefined, undefined, undefined],
  ]);
  t.same(folded.filter(fromStderr).map(summary), [[50, 'Unable to connect to 10.0.0.2: Connection refused.', 'test', 'primary', undefined]]);
  const exitLine = records.find((r) => r['level'] === 50 && r['component'] === undefined)!;
  t.same(exitLine['stderr'], ['Unable to connect to 10.0.0.2: Connection refused.'], 'only stderr lines are quoted at the exit');
  t.equal(exits[0]!.restartInMs, 60_000);
});

t.test('a grandchild holding the output pipes does not hold back the exit report', async (t) => {
  // The sleep outlives the stand-in and ends by itself; this sandbox's init leaves it a zombie, which is harmless.
  const script = standIn(t, 'sleep 10 &\necho "leaving the pipes to a grandchild"\nexit 1');
  const { engine, exits, records } = managed(t, [script], { initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
  const before = performance.now();
  engine.start();
  await waitFor('the exit report', () => exits.length === 1);
  t.ok(performance.now() - before < 6_000, 'reported well before the grandchild ends');
  t.same([exits[0]!.code, exits[0]!.restartInMs], [1, 60_000]);
  t.ok(records.some((r) => r['msg'] === 'leaving the pipes to a grandchild'));
});

t.test('a program that cannot be started is retried with backoff', async (t) => {
  const { engine, started, exits, records } = managed(t, ['/nonexistent/hastd', '-F'], { initialBackoffMs: 20 });
  engine.start();
  await waitFor('two failed starts', () => exits.length >= 2);
  t.same(exits.slice(0, 2).map((e) => [e.code, e.signal, e.restartInMs]), [
    [null, null, 20],
    [null, null, 40],
  ]);
  t.equal(started.length, 0);
  t.ok(records.some((r) => r['msg'] === 'Unable to start the engine: spawn /nonexistent/hastd ENOENT; retrying in 20 ms.'));
  await engine.stop();
});

t.test('start() while the engine runs starts nothing more; stop() before start() does nothing', async (t) => {
  const { engine, started } = managed(t, [process.execPath, '-e', 'setInterval(() => {}, 1000)']);
  await engine.stop();
  engine.start();
  engine.start();
  await waitFor('the engine to start', () => started.length === 1);
  engine.start();
  await sleep(100);
  t.equal(started.length, 1);
  await engine.stop();
  t.ok(gone(started[0]!));
});

t.test('an EngineChild needs a program', async (t) => {
  t.throws(() => new EngineChild({ argv: [], log: memoryLogger().log }, { onStarted() {}, onExited() {} }), {
    message: 'EngineChild needs a program to run.',
  });
});

t.test('the engine does not outlive a supervisor that exits normally', async (t) => {
  const parent = await execa(process.execPath, [PARENT, process.execPath, '-e', 'setInterval(() => {}, 1000)'], { timeout: 10_000 });
  const pid = Number(parent.stdout.trim());
  t.ok(pid > 0, `the parent printed the engine's pid: ${parent.stdout}`);
  // The engine is now an orphan, and this sandbox's init does not reap orphans: a zombie has exited too.
  const exited = () => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] === 'Z';
    } catch {
      return gone(pid);
    }
  };
  await waitFor('the engine to exit', exited, 5000);
  t.ok(exited());
});
