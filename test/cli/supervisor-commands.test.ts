import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SupervisorControlServer, type RequestHandler, type SupervisorRequest } from '../../src/supervisor/control-socket.js';
import { buildStatusReport, formatStatusReport } from '../../src/supervisor/status-report.js';
import { CLI_DIR, runCli, type CliResult } from '../fixtures/cli.js';
import { memoryLogger } from '../fixtures/memory-log.js';

interface Setup {
  dir: string;
  toml: string;
  socket: string;
  hastConf: string;
}

// hast.conf for two nodes told apart by name (engine.node picks hastb), and a supervisor configuration in the
// style of examples/carp-hast.toml. Everything lives in a short temporary directory: unix socket paths are
// limited to about 104 bytes, and no engine or supervisor answers there.
function setup(t: Test, resource = 'test'): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'carp-hast-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hastConf = join(dir, 'hast.conf');
  writeFileSync(
    hastConf,
    `control uds://${join(dir, 'hastctl')}
resource test {
	on hasta {
		local ${join(dir, 'a.img')}
		remote 172.16.0.2
	}
	on hastb {
		local ${join(dir, 'b.img')}
		remote 172.16.0.1
	}
}
`,
  );
  const socket = join(dir, 'supervisor.sock');
  const toml = join(dir, 'carp-hast.toml');
  writeFileSync(
    toml,
    `[engine]
hast_conf = "${hastConf}"
node = "hastb"
run_dir = "${join(dir, 'run')}"
[carp]
vhids = ["1@em0"]
[supervisor]
control_socket = "${socket}"
[[resource]]
name = "${resource}"
fstype = "ufs"
mountpoint = "/hast/test"
`,
  );
  return { dir, toml, socket, hastConf };
}

async function usageOf(args: string[], entry?: string): Promise<string> {
  const help = await runCli([...args, '--help'], entry);
  if (help.exitCode !== 0) throw new Error(`${args.join(' ')} --help exited ${help.exitCode}`);
  return help.stdout;
}

// A usage error: exit 64, the message, then the command's usage, nothing on stdout.
async function usageError(t: Test, r: CliResult, prefix: string, message: string, usage: string): Promise<void> {
  t.equal(r.stdout, '');
  t.equal(r.stderr, `${prefix}: ${message}\n${usage}`);
  t.equal(r.exitCode, 64);
}

// A supervisor stand-in on the configured socket, recording what the commands ask.
async function fakeSupervisor(t: Test, socket: string, handler: RequestHandler): Promise<SupervisorRequest[]> {
  const requests: SupervisorRequest[] = [];
  const server = await SupervisorControlServer.listen(
    socket,
    (request) => {
      requests.push(request);
      return handler(request);
    },
    memoryLogger().log,
  );
  t.teardown(() => server.close());
  return requests;
}

const OVERVIEW = `usage: carp-hast <command> [options]

Failover supervisor for HAST + CARP storage clusters, with a HAST-compatible engine.

Commands:
  supervise     run the failover supervisor daemon.
  switch        make this node primary or secondary, through the supervisor.
  status        show CARP state, roles, resources and recent transitions.
  recover       recover a resource from split-brain: discard this node's changes, or keep them.
  check-config  check hast.conf and the supervisor configuration and print the effective settings.
  hastd         the built-in HAST replication engine (hastd(8) compatible).
  hastctl       control the replication engine (hastctl(8) compatible).
  lab           run a two-node cluster on this machine and fail it over.

Run 'carp-hast <command> --help' for a command's options.
`;

t.test('--help lists every command with its summary; each command answers --help', async (t) => {
  const overview = await runCli(['--help']);
  t.equal(overview.exitCode, 0);
  t.equal(overview.stdout, OVERVIEW);
  t.equal(overview.stderr, '');
  const names = [...OVERVIEW.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1] ?? '');
  t.same(names, ['supervise', 'switch', 'status', 'recover', 'check-config', 'hastd', 'hastctl', 'lab']);
  const runs = names.flatMap((name) => ['--help', '-h'].map(async (flag) => ({ name, flag, r: await runCli([name, flag]) })));
  for (const { name, flag, r } of await Promise.all(runs)) {
    t.equal(r.exitCode, 0, `${name} ${flag} exits 0`);
    t.equal(r.stderr, '', `${name} ${flag} says nothing on stderr`);
    t.ok(r.stdout.startsWith(`usage: carp-hast ${name} `), `${name} ${flag} prints its usage`);
  }
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.exitCode, 64);
  t.equal(unknown.stderr, `carp-hast: unknown command 'frobnicate'.\n${OVERVIEW}`);
});

t.test('supervise: usage errors, a missing configuration, a resource hast.conf lacks', async (t) => {
  const usage = await usageOf(['supervise']);
  t.ok(usage.startsWith('usage: carp-hast supervise [-d] [-c config] [--log-format text|json]\n'));
  await usageError(t, await runCli(['supervise', 'extra']), 'carp-hast supervise', "unexpected argument 'extra'", usage);
  await usageError(t, await runCli(['supervise', '--log-format', 'xml']), 'carp-hast supervise', "--log-format must be text or json, not 'xml'", usage);
  await usageError(t, await runCli(['supervise', '--bogus']), 'carp-hast supervise', "Unknown option '--bogus'.", usage);

  const { dir } = setup(t);
  const missing = join(dir, 'missing.toml');
  const unreadable = await runCli(['supervise', '-c', missing]);
  t.equal(unreadable.exitCode, 72);
  t.equal(unreadable.stderr, `carp-hast supervise: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'\n`);

  const bad = setup(t, 'data');
  const mismatch = await runCli(['supervise', '-c', bad.toml]);
  t.equal(mismatch.exitCode, 78);
  t.equal(mismatch.stderr, `carp-hast supervise: ${bad.toml}:10:8: resource.name: "data" is not a resource of ${bad.hastConf} (known: test)\n`);
  t.equal(mismatch.stdout, '');
});

t.test('status: exit 69 naming the socket when no supervisor runs', async (t) => {
  const { toml, socket } = setup(t);
  const r = await runCli(['status', '-c', toml]);
  t.equal(r.exitCode, 69);
  t.equal(r.stdout, '');
  t.equal(r.stderr, `carp-hast status: no supervisor answers on ${socket}\n`);
  const fromEnv = await runCli(['status'], 'main.js', { env: { CARP_HAST_CONF: toml } });
  t.equal(fromEnv.stderr, r.stderr, 'CARP_HAST_CONF names the configuration');
  await usageError(t, await runCli(['status', '-c', toml, 'now']), 'carp-hast status', "unexpected argument 'now'", await usageOf(['status']));
});

t.test('status: the report of a running supervisor, as text and as JSON', async (t) => {
  const { toml, socket } = setup(t);
  const report = buildStatusReport(
    { snapshot: undefined, observedAt: undefined, decision: undefined, wanted: undefined, running: undefined, history: [], warnings: ['Something to see.'] },
    { node: 'hastb', pid: 77, startedAt: '2025-03-01T10:00:00.000Z', engine: { kind: 'builtin', pid: 78, running: true, restarts: 0 } },
  );
  const requests = await fakeSupervisor(t, socket, async () => ({ ok: true, message: 'status', data: report }));
  const text = await runCli(['status', '-c', toml]);
  t.equal(text.exitCode, 0);
  t.equal(text.stdout, formatStatusReport(report));
  const json = await runCli(['status', '-c', toml, '--json']);
  t.equal(json.exitCode, 0);
  t.same(JSON.parse(json.stdout), JSON.parse(JSON.stringify(report)));
  t.same(requests, [{ op: 'status' }, { op: 'status' }]);
});

t.test('status: a supervisor that cannot report says why', async (t) => {
  const { toml, socket } = setup(t);
  await fakeSupervisor(t, socket, async () => {
    throw new Error('reading the engine');
  });
  const r = await runCli(['status', '-c', toml]);
  t.equal(r.stdout, '');
  t.equal(r.stderr, `carp-hast status: the supervisor on ${socket} could not report its status: reading the engine\n`);
  t.equal(r.exitCode, 70);
});

for (const [program, entry, prefix] of [
  ['carp-hast switch', 'main.js', 'carp-hast switch'],
  ['carp-hast-switch', 'switch-main.js', 'carp-hast-switch'],
] as const) {
  const args = (...rest: string[]) => (entry === 'main.js' ? ['switch', ...rest] : rest);

  t.test(`${program}: usage errors`, async (t) => {
    const { toml } = setup(t);
    const usage = await usageOf(args(), entry);
    t.ok(usage.startsWith(`usage: ${program} [-c config] [--no-wait] [--timeout DURATION] primary|secondary\n`));
    await usageError(t, await runCli(args('-c', toml), entry), prefix, 'primary or secondary is required', usage);
    await usageError(t, await runCli(args('-c', toml, 'master'), entry), prefix, "expected primary or secondary, not 'master'", usage);
    await usageError(t, await runCli(args('-c', toml, 'primary', 'now'), entry), prefix, "unexpected argument 'now'", usage);
    await usageError(
      t,
      await runCli(args('-c', toml, '--timeout', '5x', 'primary'), entry),
      prefix,
      '--timeout: invalid duration "5x" (use a number with ms, s, m or h, e.g. "250ms", "20s", "5m")',
      usage,
    );
  });

  t.test(`${program}: exit 69 when no supervisor runs`, async (t) => {
    const { toml, socket } = setup(t);
    const handedOver = await runCli(args('-c', toml, '--no-wait', 'primary'), entry);
    t.equal(handedOver.exitCode, 69);
    t.equal(handedOver.stdout, '');
    t.equal(handedOver.stderr, `${prefix}: no supervisor answers on ${socket}; nothing was switched\n`);
    const here = await runCli(args('-c', toml, 'secondary'), entry);
    t.equal(here.exitCode, 69);
    t.equal(here.stdout, '');
    t.equal(here.stderr, `${prefix}: no supervisor runs and the engine does not answer hastctl; start one of them first\n`);
  });

  t.test(`${program}: the request and the supervisor's answer`, async (t) => {
    const { toml, socket } = setup(t);
    const requests = await fakeSupervisor(t, socket, async (request) =>
      request.op === 'switch' && request.role === 'primary'
        ? { ok: true, message: 'This node is primary.' }
        : { ok: false, message: 'Not switched to secondary: CARP 1@em0 MASTER (advskew 0).' },
    );
    const done = await runCli(args('-c', toml, 'primary'), entry);
    t.same(done, { exitCode: 0, stdout: 'This node is primary.\n', stderr: '' });
    const refused = await runCli(args('-c', toml, '--no-wait', 'secondary'), entry);
    t.same(refused, { exitCode: 1, stdout: '', stderr: 'Not switched to secondary: CARP 1@em0 MASTER (advskew 0).\n' });
    const operator = entry === 'main.js';
    t.same(requests, [
      { op: 'switch', role: 'primary', operator, wait: true },
      { op: 'switch', role: 'secondary', operator, wait: false },
    ]);
  });
}

t.test('recover: usage errors, and declining the confirmation', async (t) => {
  const { toml } = setup(t);
  const usage = await usageOf(['recover']);
  t.ok(usage.startsWith('usage: carp-hast recover [-c config] [--yes] <resource> --discard-local | --keep-local\n'));
  const prefix = 'carp-hast recover';
  const which = "say which copy goes: --discard-local (this node's) or --keep-local (the peer's, already discarded there)";
  await usageError(t, await runCli(['recover', '-c', toml, 'test']), prefix, which, usage);
  await usageError(t, await runCli(['recover', '-c', toml, '--discard-local', '--keep-local', 'test']), prefix, which, usage);
  await usageError(t, await runCli(['recover', '-c', toml, '--discard-local']), prefix, 'the resource to recover is required', usage);
  await usageError(t, await runCli(['recover', '-c', toml, '--discard-local', 'test', 'data']), prefix, "unexpected argument 'data'", usage);
  await usageError(t, await runCli(['recover', '-c', toml, '--discard-local', 'nope']), prefix, `'nope' is not a resource of ${toml} (known: test)`, usage);

  const declined = await runCli(['recover', '-c', toml, '--discard-local', 'test'], 'main.js', { input: 'no\n' });
  t.equal(declined.exitCode, 1);
  t.equal(declined.stdout, '');
  t.equal(
    declined.stderr,
    "This discards this node's copy of test; the peer's becomes the only one. Type the resource name to go on: Nothing done.\n",
  );
  const noAnswer = await runCli(['recover', '-c', toml, '--discard-local', 'test'], 'main.js', { input: '' });
  t.same(noAnswer, declined, 'input that ends without an answer declines too');
});

t.test('recover: exit 69 when neither a supervisor nor the engine answers', async (t) => {
  const { dir, toml, hastConf } = setup(t);
  const r = await runCli(['recover', '-c', toml, '--yes', '--discard-local', 'test']);
  t.equal(r.exitCode, 69);
  t.equal(r.stdout, '');
  const hastctl = `${process.execPath} ${CLI_DIR}main.js hastctl list -c ${hastConf} -n hastb test`;
  t.equal(
    r.stderr,
    'carp-hast recover: no supervisor runs and the engine does not answer hastctl: ' +
      `reading the engine's list: ${hastctl}: exited with status 71: ` +
      `[ERROR] Unable to connect to hastd via uds://${join(dir, 'hastctl')}: No such file or directory.\n`,
  );
});

t.test('recover: confirmed, it goes through the running supervisor', async (t) => {
  const { toml, socket } = setup(t);
  const requests = await fakeSupervisor(t, socket, async () => ({
    ok: true,
    message: 'test is secondary with fresh metadata; the peer will send it a full copy.',
  }));
  const typed = await runCli(['recover', '-c', toml, '--discard-local', 'test'], 'main.js', { input: 'test\n' });
  t.equal(typed.exitCode, 0);
  t.equal(typed.stdout, 'test is secondary with fresh metadata; the peer will send it a full copy.\n');
  const yes = await runCli(['recover', '-c', toml, '--yes', 'test', '--discard-local']);
  t.equal(yes.exitCode, 0);
  t.equal(yes.stderr, '', '--yes asks nothing');
  const keep = await runCli(['recover', '-c', toml, '--yes', 'test', '--keep-local']);
  t.equal(keep.exitCode, 0);
  t.same(requests, [
    { op: 'recover', resource: 'test', keep: 'peer' },
    { op: 'recover', resource: 'test', keep: 'peer' },
    { op: 'recover', resource: 'test', keep: 'local' },
  ]);
});
