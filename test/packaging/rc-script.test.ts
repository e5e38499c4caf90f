import t, { type Test } from 'tap';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

const RC_SCRIPT = readFileSync(join(REPO_ROOT, 'rc.d/carp_hast'), 'utf8');
const SOURCE_RC_SUBR = '. /etc/rc.subr\n';

t.test('has what rc.subr and rcorder need', async (t) => {
  const lines = RC_SCRIPT.split('\n');
  t.equal(lines[0], '#!/bin/sh');
  for (const line of [
    '# PROVIDE: carp_hast',
    '# REQUIRE: hastd devd NETWORKING syslogd',
    '# KEYWORD: shutdown',
    '. /etc/rc.subr',
    'name="carp_hast"',
    'rcvar="carp_hast_enable"',
    'load_rc_config "$name"',
    ': "${carp_hast_enable:=NO}"',
    ': "${carp_hast_config:=/usr/local/etc/carp-hast.toml}"',
  ]) {
    t.ok(lines.includes(line), line);
  }
  t.equal(lines.filter((line) => line !== '').at(-1), 'run_rc_command "$1"');
});

// The rc script run against a stand-in rc.subr: load_rc_config reads $STUB_RC_CONF, and run_rc_command
// either prints the variables rc.subr acts on (with ${name}_program replacing command, as rc.subr does),
// or runs the method named by a variable (configtest_cmd, start_precmd, reload_cmd) with the carp-hast
// program and the child pid file replaced.
const RC_SUBR = `load_rc_config() { if [ -n "\${STUB_RC_CONF:-}" ]; then . "$STUB_RC_CONF"; fi; }
run_rc_command()
{
	case $1 in
	variables)
		eval "command=\\"\\\${\${name}_program:-$command}\\""
		for _v in name rcvar command command_args pidfile required_files extra_commands start_precmd \\
		    configtest_cmd reload_cmd carp_hast_enable carp_hast_config PATH; do
			eval "_value=\\"\\\${$_v}\\""
			printf '%s=%s\\n' "$_v" "$_value"
		done
		;;
	*)
		carp_hast_cli=$STUB_CLI
		child_pidfile=$STUB_CHILD_PIDFILE
		eval "_method=\\"\\\${$1}\\""
		$_method
		;;
	esac
}
`;

// A stand-in carp-hast: writes its arguments to $CLI_ARGS, says something on both outputs, exits $STATUS.
const CLI = `#!/bin/sh
printf '%s\\n' "$@" >"$CLI_ARGS"
echo "effective settings"
echo "check-config says" >&2
exit "\${STATUS:-0}"
`;

function rcHarness(t: Test) {
  t.equal(RC_SCRIPT.split(SOURCE_RC_SUBR).length, 2, 'the script sources /etc/rc.subr once');
  const dir = t.testdir({ 'rc.subr': RC_SUBR, 'carp-hast': CLI });
  chmodSync(join(dir, 'carp-hast'), 0o755);
  const script = join(dir, 'carp_hast');
  writeFileSync(script, RC_SCRIPT.replace(SOURCE_RC_SUBR, `. ${join(dir, 'rc.subr')}\n`));
  const env = {
    PATH: '/sbin:/bin:/usr/sbin:/usr/bin',
    STUB_CLI: join(dir, 'carp-hast'),
    STUB_CHILD_PIDFILE: join(dir, 'child.pid'),
    CLI_ARGS: join(dir, 'cli-args'),
  };
  const run = async (argument: string, extra: Record<string, string> = {}) => {
    const result = await execa('sh', [script, argument], {
      env: { ...env, ...extra },
      extendEnv: false,
      reject: false,
      stripFinalNewline: false,
    });
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  };
  const cliArgs = () => readFileSync(env.CLI_ARGS, 'utf8').split('\n').slice(0, -1);
  return { dir, env, run, cliArgs };
}

// The stand-in's `name=value` lines as an object.
function variables(stdout: string): Record<string, string> {
  const lines = stdout.split('\n').filter((line) => line !== '');
  return Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

t.test('runs the supervisor under daemon(8) with the default configuration', async (t) => {
  const { run } = rcHarness(t);
  const result = await run('variables');
  t.equal(result.exitCode, 0);
  t.same(variables(result.stdout), {
    name: 'carp_hast',
    rcvar: 'carp_hast_enable',
    command: '/usr/sbin/daemon',
    command_args:
      '-P /var/run/carp_hast.pid -p /var/run/carp_hast_child.pid -r -R 5 -S -T carp-hast ' +
      '/usr/local/bin/carp-hast supervise -c /usr/local/etc/carp-hast.toml --log-format text',
    pidfile: '/var/run/carp_hast.pid',
    required_files: '/usr/local/etc/carp-hast.toml',
    extra_commands: 'configtest reload',
    start_precmd: 'carp_hast_prestart',
    configtest_cmd: 'carp_hast_configtest',
    reload_cmd: 'carp_hast_reload',
    carp_hast_enable: 'NO',
    carp_hast_config: '/usr/local/etc/carp-hast.toml',
    PATH: '/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin',
  });
});

t.test('takes carp_hast_enable and carp_hast_config from rc.conf', async (t) => {
  const { dir, run } = rcHarness(t);
  writeFileSync(join(dir, 'rc.conf'), 'carp_hast_enable="YES"\ncarp_hast_config="/etc/ha/carp-hast.toml"\n');
  const found = variables((await run('variables', { STUB_RC_CONF: join(dir, 'rc.conf') })).stdout);
  t.equal(found['carp_hast_enable'], 'YES');
  t.equal(found['required_files'], '/etc/ha/carp-hast.toml');
  t.match(found['command_args'], / supervise -c \/etc\/ha\/carp-hast\.toml --log-format text$/);
});

t.test('configtest runs check-config on the configuration and shows its output', async (t) => {
  const { run, cliArgs } = rcHarness(t);
  const result = await run('configtest_cmd');
  t.equal(result.exitCode, 0);
  t.same(cliArgs(), ['check-config', '-s', '/usr/local/etc/carp-hast.toml']);
  t.equal(result.stdout, 'effective settings\n');
  t.equal(result.stderr, 'check-config says\n');
});

t.test('start refuses a configuration check-config rejects, showing only the errors', async (t) => {
  const { run } = rcHarness(t);
  const bad = await run('start_precmd', { STATUS: '78' });
  t.equal(bad.exitCode, 78);
  t.equal(bad.stdout, '');
  t.equal(bad.stderr, 'check-config says\n');
  const good = await run('start_precmd');
  t.equal(good.exitCode, 0);
  t.equal(good.stdout, '');
});

t.test('reload sends SIGHUP to the supervisor, not to daemon(8)', async (t) => {
  const { dir, env, run } = rcHarness(t);
  const marker = join(dir, 'got-hup');
  const ready = join(dir, 'ready');
  // Stands in for the supervisor: waits up to 10 s for SIGHUP, saying when its trap is set.
  const supervisor = execa('sh', ['-c', `trap 'echo hup >"${marker}"; exit 0' HUP; : >"${ready}"; while :; do sleep 0.1; done`], {
    timeout: 10_000,
    reject: false,
  });
  for (let waited = 0; !existsSync(ready) && waited < 10_000; waited += 20) await sleep(20);
  writeFileSync(env.STUB_CHILD_PIDFILE, `${supervisor.pid}\n`);
  const result = await run('reload_cmd');
  t.equal(result.exitCode, 0);
  t.equal(result.stdout, 'Reloading carp_hast configuration.\n');
  t.equal((await supervisor).exitCode, 0);
  t.equal(readFileSync(marker, 'utf8'), 'hup\n');
});

t.test('reload refuses a configuration check-config rejects, before signalling anything', async (t) => {
  const { env, run } = rcHarness(t);
  writeFileSync(env.STUB_CHILD_PIDFILE, 'not a pid\n');
  const result = await run('reload_cmd', { STATUS: '78' });
  t.equal(result.exitCode, 1);
  t.equal(result.stderr, 'check-config says\n');
});

t.test('reload says so when the supervisor is not running', async (t) => {
  const { env, run } = rcHarness(t);
  t.notOk(existsSync(env.STUB_CHILD_PIDFILE));
  const missing = await run('reload_cmd');
  t.equal(missing.exitCode, 1);
  t.equal(missing.stderr, `check-config says\ncarp_hast is not running (no ${env.STUB_CHILD_PIDFILE}).\n`);
  writeFileSync(env.STUB_CHILD_PIDFILE, '12ab\n');
  const garbage = await run('reload_cmd');
  t.equal(garbage.exitCode, 1);
  t.equal(garbage.stderr, `check-config says\n${env.STUB_CHILD_PIDFILE} holds no pid.\n`);
});
