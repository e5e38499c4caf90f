import t, { type Test } from 'tap';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runScript } from '../fixtures/stand-ins.js';

const SCRIPT = 'scripts/carp-hast-switch';

// A stand-in `carp-hast` that writes its arguments NUL-separated to $ARGS, says something on both outputs
// and exits with $STATUS.
const CARP_HAST = `#!/bin/sh
printf '%s\\0' "$@" >"$ARGS"
echo "switch: out"
echo "switch: err" >&2
exit "\${STATUS:-0}"
`;

function standIn(t: Test) {
  const dir = t.testdir({ bin: { 'carp-hast': CARP_HAST } });
  chmodSync(join(dir, 'bin', 'carp-hast'), 0o755);
  const argsFile = join(dir, 'args');
  return {
    env: { PATH: join(dir, 'bin'), ARGS: argsFile },
    args: () => readFileSync(argsFile, 'utf8').split('\0').slice(0, -1),
  };
}

t.test('passes its arguments to `carp-hast switch` unchanged', async (t) => {
  const cases = [
    ['primary'],
    ['--no-wait', 'secondary'],
    ['--timeout', '5 m', 'primary'],
    ['-c', '/etc/my conf.toml', 'secondary'],
  ];
  for (const args of cases) {
    const { env, args: received } = standIn(t);
    const run = await runScript(SCRIPT, args, env);
    t.equal(run.exitCode, 0, args.join(' '));
    t.same(received(), ['switch', ...args]);
    t.equal(run.stdout, 'switch: out\n');
    t.equal(run.stderr, 'switch: err\n');
  }
});

t.test('exits with the status of `carp-hast switch`', async (t) => {
  for (const status of ['1', '69', '78']) {
    const { env } = standIn(t);
    const run = await runScript(SCRIPT, ['primary'], { ...env, STATUS: status });
    t.equal(run.exitCode, Number(status));
  }
});

t.test('names the configuration in $CARP_HAST_CONF', async (t) => {
  const { env, args } = standIn(t);
  const run = await runScript(SCRIPT, ['--no-wait', 'primary'], { ...env, CARP_HAST_CONF: '/srv/ha/carp hast.toml' });
  t.equal(run.exitCode, 0);
  t.same(args(), ['switch', '-c', '/srv/ha/carp hast.toml', '--no-wait', 'primary']);
});

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const installed = SYSTEM_DIRS.find((dir) => existsSync(join(dir, 'carp-hast')));

t.test(
  'says carp-hast is missing and exits 69 when it is not installed',
  { skip: installed === undefined ? false : `carp-hast is installed in ${installed}, which the script also searches` },
  async (t) => {
    const empty = t.testdir();
    const run = await runScript(SCRIPT, ['primary'], { PATH: empty });
    t.equal(run.exitCode, 69);
    const searched = [empty, ...SYSTEM_DIRS].join(':');
    const message = `carp-hast-switch: carp-hast is not installed (not found in ${searched}); see docs/install.md\n`;
    t.equal(run.stderr, message);
  },
);
