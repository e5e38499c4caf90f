import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../fixtures/cli.js';

const HANDBOOK = `# The Handbook's two-node example.
resource test {
	on hasta {
		local /dev/ad6
		remote 172.16.0.2
	}
	on hastb {
		local /dev/ad6
		remote 172.16.0.1
	}
}
`;

function supervisorToml(hastConf: string, resource = 'test'): string {
  return `[engine]
hast_conf = "${hastConf}"
node = "hastb"
[carp]
vhids = ["1@em0"]
[[resource]]
name = "${resource}"
fstype = "ufs"
mountpoint = "/hast/test"
`;
}

t.test('prints the effective hast.conf for the named node', async (t) => {
  const dir = t.testdir({ 'hast.conf': HANDBOOK });
  const r = await runCli(['check-config', '-c', join(dir, 'hast.conf'), '-n', 'hasta']);
  t.equal(r.stderr, '');
  t.equal(r.exitCode, 0);
  t.equal(
    r.stdout,
    `# ${join(dir, 'hast.conf')}: effective configuration for node hasta
control uds:///var/run/hastctl
pidfile /var/run/hastd.pid
listen tcp4://0.0.0.0:8457
listen tcp6://[::]:8457

resource test {
	name test
	local /dev/ad6
	remote 172.16.0.2
	replication memsync
	checksum none
	compression hole
	timeout 20
	metaflush on
}
`,
  );
});

t.test('--json gives the documented shape with defaults filled in', async (t) => {
  const dir = t.testdir({ 'hast.conf': HANDBOOK });
  const r = await runCli(['check-config', '-c', join(dir, 'hast.conf'), '-n', 'hastb', '--json']);
  t.equal(r.exitCode, 0);
  t.same(JSON.parse(r.stdout), {
    control: 'uds:///var/run/hastctl',
    pidfile: '/var/run/hastd.pid',
    listen: ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457'],
    resources: {
      test: {
        name: 'test',
        local: '/dev/ad6',
        remote: '172.16.0.1',
        source: null,
        replication: 'memsync',
        checksum: 'none',
        compression: 'hole',
        timeout: 20,
        exec: null,
        metaflush: true,
      },
    },
  });
});

t.test('with -s, both files are checked and hast.conf comes from engine.hast_conf', async (t) => {
  const dir = t.testdir({ 'hast.conf': HANDBOOK });
  writeFileSync(join(dir, 'carp-hast.toml'), supervisorToml(join(dir, 'hast.conf')));
  const r = await runCli(['check-config', '-s', join(dir, 'carp-hast.toml'), '--json']);
  t.equal(r.stderr, '');
  t.equal(r.exitCode, 0);
  const out = JSON.parse(r.stdout);
  t.same(Object.keys(out), ['hast', 'supervisor']);
  t.equal(out.hast.resources.test.remote, '172.16.0.1', 'engine.node picked hastb');
  t.equal(out.supervisor.engine.node, 'hastb');
  t.equal(out.supervisor.supervisor.min_promote_interval, '20s');
  t.same(out.supervisor.resource[0].mount_options, []);
});

t.test('the text form shows the supervisor settings as TOML', async (t) => {
  const dir = t.testdir({ 'hast.conf': HANDBOOK });
  writeFileSync(join(dir, 'carp-hast.toml'), supervisorToml(join(dir, 'hast.conf')));
  const r = await runCli(['check-config', '-s', join(dir, 'carp-hast.toml')]);
  t.equal(r.exitCode, 0);
  t.match(r.stdout, '\n[[resource]]\nname = "test"\nfstype = "ufs"\nmountpoint = "/hast/test"\n');
  t.match(r.stdout, '\n[supervisor]\ncontrol_socket = "/var/run/carp-hast/supervisor.sock"\n');
});

t.test('a supervisor resource that hast.conf lacks is a configuration error at its line', async (t) => {
  const dir = t.testdir({ 'hast.conf': HANDBOOK });
  const toml = join(dir, 'carp-hast.toml');
  writeFileSync(toml, supervisorToml(join(dir, 'hast.conf'), 'data'));
  const r = await runCli(['check-config', '-s', toml]);
  t.equal(r.exitCode, 78);
  t.equal(r.stdout, '');
  t.match(r.stderr, `${toml}:7:8: resource.name: "data" is not a resource of ${join(dir, 'hast.conf')}`);
});

t.test('a malformed hast.conf exits 78 with file, line and column and no stack trace', async (t) => {
  const dir = t.testdir({ 'hast.conf': 'resource test {\n\ton hasta {\n\t\tlocal "/dev/ad6"\n' });
  const r = await runCli(['check-config', '-c', join(dir, 'hast.conf'), '-n', 'hasta']);
  t.equal(r.exitCode, 78);
  t.match(r.stderr, new RegExp(`^carp-hast check-config: ${join(dir, 'hast.conf')}:3:9: `));
  t.notMatch(r.stderr, /\n\s+at /);
});

t.test('an unreadable hast.conf exits 72', async (t) => {
  const r = await runCli(['check-config', '-c', '/nonexistent/hast.conf']);
  t.equal(r.exitCode, 72);
  t.match(r.stderr, '/nonexistent/hast.conf');
});

t.test('an unknown option is a usage error', async (t) => {
  const r = await runCli(['check-config', '--frob']);
  t.equal(r.exitCode, 64);
  t.match(r.stderr, "Unknown option '--frob'");
  t.match(r.stderr, 'usage: carp-hast check-config');
});

t.test('--help prints the usage', async (t) => {
  const r = await runCli(['check-config', '--help']);
  t.equal(r.exitCode, 0);
  t.match(r.stdout, 'usage: carp-hast check-config');
});
