import t from 'tap';
import { runCli } from '../fixtures/cli.js';

t.test('no command prints the overview and exits 64', async (t) => {
  const r = await runCli([]);
  t.equal(r.exitCode, 64);
  t.match(r.stdout, /usage: carp-hast <command>/);
  t.match(r.stdout, /check-config/);
});

t.test('--help prints the overview and exits 0', async (t) => {
  const r = await runCli(['--help']);
  t.equal(r.exitCode, 0);
  t.match(r.stdout, /Commands:/);
});

t.test('an unknown command is a usage error', async (t) => {
  const r = await runCli(['frobnicate']);
  t.equal(r.exitCode, 64);
  t.match(r.stderr, /unknown command 'frobnicate'/);
});

for (const name of ['supervise', 'switch', 'status', 'recover', 'lab']) {
  t.test(`${name} --help prints its usage`, async (t) => {
    const r = await runCli([name, '--help']);
    t.equal(r.exitCode, 0);
    t.match(r.stdout, new RegExp(`usage: carp-hast ${name}`));
  });
}

t.test('carp-hast-switch is the switch command under the Handbook script\'s name', async (t) => {
  const r = await runCli(['--help'], 'switch-main.js');
  t.equal(r.exitCode, 0);
  t.match(r.stdout, /^usage: carp-hast-switch \[-c config\] \[--no-wait\] \[--timeout DURATION\] primary\|secondary\n/);
});
