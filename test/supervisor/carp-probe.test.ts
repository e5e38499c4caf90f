import t, { type Test } from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../src/common/run-command.js';
import type { CarpConfig } from '../../src/config/supervisor-conf.js';
import {
  CarpProbeError,
  combineCarpStates,
  parseIfconfigAddresses,
  parseIfconfigCarp,
  parseIpAddrJson,
  readCarpState,
  restoreCarp,
  stepDownCarp,
} from '../../src/supervisor/carp-probe.js';
import { installFreebsdTools } from '../fixtures/freebsd-tools.js';

// `ifconfig em0` on FreeBSD 13: carp: lines only (carp.c's SIOCGVH carp_status()).
const IFCONFIG_13 = `em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
	options=481009b<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,VLAN_HWCSUM,VLAN_HWFILTER,NOMAP>
	ether 08:00:27:8a:3b:1c
	inet 10.0.0.2 netmask 0xffffff00 broadcast 10.0.0.255
	inet 10.0.0.5 netmask 0xffffffff broadcast 10.0.0.5 vhid 1
	inet 10.0.0.6 netmask 0xffffffff broadcast 10.0.0.6 vhid 2
	carp: MASTER vhid 1 advbase 1 advskew 0
	carp: BACKUP vhid 2 advbase 3 advskew 100
	media: Ethernet autoselect (1000baseT <full-duplex>)
	status: active
	nd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
`;

// `ifconfig -k vlan50` on FreeBSD 14: each carp: line followed by its peer line, keys shown.
const IFCONFIG_14 = `vlan50: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
	options=4600703<RXCSUM,TXCSUM,TSO4,TSO6,LRO,RXCSUM_IPV6,TXCSUM_IPV6,MEXTPG>
	ether 58:9c:fc:00:00:32
	inet 192.168.50.2 netmask 0xffffff00 broadcast 192.168.50.255
	inet 192.168.50.10 netmask 0xffffffff broadcast 192.168.50.10 vhid 50
	groups: vlan
	carp: INIT vhid 50 advbase 1 advskew 20 key "s3cret key"
	      peer 224.0.0.18 peer6 ff02::12
	vlan: 50 vlanproto: 802.1q vlanpcp: 0 parent interface: em1
	media: Ethernet autoselect (1000baseT <full-duplex>)
	status: no carrier
	nd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>
`;

t.test('parseIfconfigCarp reads FreeBSD 13 and 14 carp: lines', async (t) => {
  t.same(parseIfconfigCarp(IFCONFIG_13), [
    { vhid: 1, state: 'MASTER', advbase: 1, advskew: 0 },
    { vhid: 2, state: 'BACKUP', advbase: 3, advskew: 100 },
  ]);
  t.same(parseIfconfigCarp(IFCONFIG_14), [{ vhid: 50, state: 'INIT', advbase: 1, advskew: 20 }]);
  t.same(parseIfconfigCarp('lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384\n'), []);
});

t.test('parseIfconfigCarp refuses unknown states and other shapes, naming the line', async (t) => {
  const unknown = t.throws(() => parseIfconfigCarp('em0: flags=8843<UP>\n\tcarp: <UNKNOWN> vhid 1 advbase 1 advskew 0\n'));
  t.type(unknown, CarpProbeError);
  t.equal(
    (unknown as Error).message,
    'ifconfig line 2 "\\tcarp: <UNKNOWN> vhid 1 advbase 1 advskew 0": unknown CARP state "<UNKNOWN>"',
  );
  const shape = t.throws(() => parseIfconfigCarp('\tcarp: MASTER carpdev em0 vhid 1 advbase 1 advskew 0\n'));
  const expected = 'expected "carp: <state> vhid <n> advbase <n> advskew <n>"';
  t.equal((shape as Error).message, `ifconfig line 1 "\\tcarp: MASTER carpdev em0 vhid 1 advbase 1 advskew 0": ${expected}`);
});

// `ip -j addr show` of iproute2 6.x, trimmed to the fields that matter, and an empty object as older
// iproute2 prints for a filtered-out link.
const IP_ADDR_JSON = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    addr_info: [
      { family: 'inet', local: '127.0.0.1', prefixlen: 8 },
      { family: 'inet6', local: '::1', prefixlen: 128 },
    ],
  },
  {},
  { ifindex: 3, ifname: 'dummy0', flags: ['BROADCAST', 'NOARP'] },
  {
    ifindex: 2,
    ifname: 'eth0',
    addr_info: [
      { family: 'inet', local: '10.0.0.2', prefixlen: 24 },
      { family: 'inet', local: '10.0.0.5', prefixlen: 32 },
      { family: 'inet6', local: '2001:db8::5', prefixlen: 64 },
      { family: 'inet6' },
    ],
  },
]);

t.test('parseIpAddrJson lists every address with its interface', async (t) => {
  t.same(parseIpAddrJson(IP_ADDR_JSON), [
    { ifname: 'lo', address: '127.0.0.1' },
    { ifname: 'lo', address: '::1' },
    { ifname: 'eth0', address: '10.0.0.2' },
    { ifname: 'eth0', address: '10.0.0.5' },
    { ifname: 'eth0', address: '2001:db8::5' },
  ]);
  t.same(parseIpAddrJson('[]'), []);
});

t.test('parseIpAddrJson refuses what is not a JSON array of links', async (t) => {
  const notJson = t.throws(() => parseIpAddrJson('Object "addr" is unknown, try "ip help".'));
  t.type(notJson, CarpProbeError);
  t.equal((notJson as Error).message, 'ip -j addr printed something that is not JSON');
  t.type((notJson as Error).cause, SyntaxError);
  const notArray = t.throws(() => parseIpAddrJson('{"ifname":"lo"}'));
  t.equal((notArray as Error).message, 'ip -j addr printed JSON that is not an array of links');
  const notObject = t.throws(() => parseIpAddrJson('["lo"]'));
  t.equal((notObject as Error).message, 'ip -j addr printed a link that is not an object: "lo"');
});

t.test('combineCarpStates: MASTER only when every vhid is', async (t) => {
  t.equal(combineCarpStates(['MASTER']), 'MASTER');
  t.equal(combineCarpStates(['MASTER', 'MASTER']), 'MASTER');
  t.equal(combineCarpStates(['MASTER', 'BACKUP']), 'BACKUP');
  t.equal(combineCarpStates(['BACKUP', 'BACKUP']), 'BACKUP');
  t.equal(combineCarpStates(['MASTER', 'INIT']), 'INIT');
  t.equal(combineCarpStates(['BACKUP', 'INIT']), 'INIT');
  t.equal(combineCarpStates(['MASTER', undefined]), 'INIT', 'a vhid ifconfig does not list');
  t.equal(combineCarpStates([]), 'INIT');
});

function carpConfig(overrides: Partial<CarpConfig>): CarpConfig {
  return { source: 'devd', devdSocket: '/var/run/devd.pipe', vhids: [], vip: undefined, stepDown: undefined, ...overrides };
}

// The FreeBSD stand-ins, and options that make readCarpState and friends use them.
function freebsd(t: Test) {
  const tools = installFreebsdTools(t.testdir());
  const options = { platform: 'freebsd' as const, env: { PATH: `${tools.binDir}:${process.env['PATH'] ?? ''}` } };
  return { tools, options };
}

t.test('readCarpState reads ifconfig once per interface and follows changes', async (t) => {
  const { tools, options } = freebsd(t);
  const carp = carpConfig({ vhids: [{ vhid: 1, interface: 'em0' }] });
  tools.setCarp('em0', [{ vhid: 1, state: 'MASTER' }]);
  t.same(await readCarpState(carp, options), { state: 'MASTER', detail: '1@em0 MASTER (advskew 0)' });
  tools.setCarp('em0', [{ vhid: 1, state: 'BACKUP', advskew: 100 }]);
  t.same(await readCarpState(carp, options), { state: 'BACKUP', detail: '1@em0 BACKUP (advskew 100)' });
});

t.test('readCarpState combines vhids on several interfaces', async (t) => {
  const { tools, options } = freebsd(t);
  const carp = carpConfig({
    vhids: [
      { vhid: 1, interface: 'em0' },
      { vhid: 2, interface: 'em0' },
      { vhid: 3, interface: 'em1' },
    ],
  });
  tools.setCarp('em0', [
    { vhid: 1, state: 'MASTER' },
    { vhid: 2, state: 'MASTER' },
  ]);
  tools.setCarp('em1', [{ vhid: 3, state: 'MASTER', advskew: 10 }]);
  t.same(await readCarpState(carp, options), {
    state: 'MASTER',
    detail: '1@em0 MASTER (advskew 0), 2@em0 MASTER (advskew 0), 3@em1 MASTER (advskew 10)',
  });
  tools.setCarp('em1', [{ vhid: 3, state: 'BACKUP' }]);
  t.equal((await readCarpState(carp, options)).state, 'BACKUP');
  tools.setCarp('em0', [{ vhid: 1, state: 'MASTER' }]);
  t.same(await readCarpState(carp, options), {
    state: 'INIT',
    detail: '1@em0 MASTER (advskew 0), 2@em0 not configured, 3@em1 BACKUP (advskew 0)',
  });
});

t.test('readCarpState wraps a failing or unreadable ifconfig', async (t) => {
  const { tools, options } = freebsd(t);
  tools.setCarp('em0', [{ vhid: 1, state: 'MASTER' }]);
  const missing = await t.rejects(readCarpState(carpConfig({ vhids: [{ vhid: 1, interface: 'em9' }] }), options));
  t.type(missing, CarpProbeError);
  t.equal((missing as Error).message, 'reading CARP state of em9');
  t.match(String((missing as Error).cause), /ifconfig em9: exited with status 1: ifconfig: interface em9 does not exist$/);
  tools.setCarp('em0', [{ vhid: 1, state: 'BOGUS' }]);
  const bogus = await t.rejects(readCarpState(carpConfig({ vhids: [{ vhid: 1, interface: 'em0' }] }), options));
  t.equal((bogus as Error).message, 'reading CARP state of em0');
  t.equal(
    ((bogus as Error).cause as Error).message,
    'ifconfig line 7 "\\tcarp: BOGUS vhid 1 advbase 1 advskew 0": unknown CARP state "BOGUS"',
  );
});

t.test('readCarpState needs vhids on FreeBSD and a vip elsewhere', async (t) => {
  const none = await t.rejects(readCarpState(carpConfig({}), { platform: 'freebsd' }));
  t.equal((none as Error).message, 'reading the CARP state needs carp.vhids or carp.vip');
  const vhids = [{ vhid: 1, interface: 'em0' }];
  const linux = await t.rejects(readCarpState(carpConfig({ vhids }), { platform: 'linux' }));
  t.type(linux, CarpProbeError);
  t.equal((linux as Error).message, "reading the CARP state on linux needs carp.vip: only FreeBSD's ifconfig shows CARP");
});

// A stand-in `ip` that prints IP_ADDR_JSON, or fails as iproute2 does without the right privileges.
function fakeIp(t: Test, script: string): Record<string, string> {
  const dir = t.testdir({ 'addr.json': IP_ADDR_JSON });
  writeFileSync(join(dir, 'ip'), `#!/bin/sh\n${script}\n`);
  chmodSync(join(dir, 'ip'), 0o755);
  return { PATH: `${dir}:${process.env['PATH'] ?? ''}` };
}

t.test('readCarpState with a vip: MASTER when an interface holds it, IPv6 compared normalised', async (t) => {
  const env = fakeIp(t, '[ "$*" = "-j addr show" ] || exit 2\ncat "$(dirname "$0")/addr.json"');
  const read = (vip: string) => readCarpState(carpConfig({ source: 'notify', vip }), { platform: 'linux', env });
  t.same(await read('10.0.0.5'), { state: 'MASTER', detail: '10.0.0.5 present on eth0' });
  t.same(await read('2001:DB8:0:0::5'), { state: 'MASTER', detail: '2001:DB8:0:0::5 present on eth0' });
  t.same(await read('10.0.0.50'), { state: 'BACKUP', detail: '10.0.0.50 not on this node' });
  t.same(await read('2001:db8::50'), { state: 'BACKUP', detail: '2001:db8::50 not on this node' });
});

t.test('readCarpState with a vip wraps a failing ip', async (t) => {
  const env = fakeIp(t, 'echo "Cannot open netlink socket: Permission denied" >&2\nexit 1');
  const error = await t.rejects(readCarpState(carpConfig({ vip: '10.0.0.5' }), { env }));
  t.type(error, CarpProbeError);
  t.equal((error as Error).message, 'reading whether 10.0.0.5 is on this node');
  const cause = /ip -j addr show: exited with status 1: Cannot open netlink socket: Permission denied$/;
  t.match(String((error as Error).cause), cause);
  const garbage = fakeIp(t, 'echo "not json"');
  const parse = await t.rejects(readCarpState(carpConfig({ vip: '10.0.0.5' }), { env: garbage }));
  t.equal(((parse as Error).cause as Error).message, 'ip -j addr printed something that is not JSON');
});

const realIp = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].some((path) => existsSync(path));

const skipWithoutIp = { skip: !realIp && "needs iproute2's ip" };

t.test('readCarpState with a vip against the real ip: the loopback addresses', skipWithoutIp, async (t) => {
  const read = (vip: string) => readCarpState(carpConfig({ source: 'notify', vip }), { platform: 'linux' });
  t.same(await read('127.0.0.1'), { state: 'MASTER', detail: '127.0.0.1 present on lo' });
  t.same(await read('192.0.2.77'), { state: 'BACKUP', detail: '192.0.2.77 not on this node' });
});

t.test('stepDownCarp and restoreCarp on FreeBSD move net.inet.carp.demotion by 240 each way', async (t) => {
  const { tools, options } = freebsd(t);
  const carp = carpConfig({ vhids: [{ vhid: 1, interface: 'em0' }] });
  t.same(await stepDownCarp(carp, options), ['sysctl', 'net.inet.carp.demotion=240']);
  t.same(tools.sysctlCalls(), ['net.inet.carp.demotion=240']);
  t.same(await restoreCarp(carp, options), ['sysctl', 'net.inet.carp.demotion=-240']);
  t.same(tools.sysctlCalls(), ['net.inet.carp.demotion=240', 'net.inet.carp.demotion=-240']);
  const policy = { timeoutMs: 5000, killAfterMs: 1000, env: options.env };
  const now = await runCommand(['sysctl', 'net.inet.carp.demotion'], policy);
  t.equal(now.stdout, 'net.inet.carp.demotion: 0\n', 'the demotion is back where it was');
});

t.test('a configured step-down command runs instead, and leaves nothing to restore', async (t) => {
  const { tools, options } = freebsd(t);
  const dir = t.testdir();
  const script = join(dir, 'give-up-master');
  writeFileSync(script, `#!/bin/sh\necho "$@" > "${join(dir, 'ran')}"\n`);
  chmodSync(script, 0o755);
  const carp = carpConfig({ source: 'notify', vip: '10.0.0.5', stepDown: [script, 'now'] });
  t.same(await stepDownCarp(carp, options), [script, 'now']);
  t.equal(readFileSync(join(dir, 'ran'), 'utf8'), 'now\n');
  t.same(await restoreCarp(carp, options), []);
  t.same(tools.sysctlCalls(), [], 'no sysctl either way');
});

t.test('step-down failures are CarpProbeErrors', async (t) => {
  const failing = carpConfig({ stepDown: ['/bin/sh', '-c', 'echo keepalived is masked >&2; exit 3'] });
  const error = await t.rejects(stepDownCarp(failing, { platform: 'linux' }));
  t.type(error, CarpProbeError);
  t.equal((error as Error).message, 'stepping down from CARP MASTER');
  t.match(String((error as Error).cause), /exited with status 3: keepalived is masked$/);
  const unconfigured = await t.rejects(stepDownCarp(carpConfig({ vip: '10.0.0.5' }), { platform: 'linux' }));
  t.equal((unconfigured as Error).message, 'stepping down from CARP MASTER on linux needs carp.step_down');
  t.same(await restoreCarp(carpConfig({ vip: '10.0.0.5' }), { platform: 'linux' }), [], 'nothing to restore on linux');
});

t.test('a failing sysctl is a CarpProbeError naming the step', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, 'sysctl'), "#!/bin/sh\necho \"sysctl: unknown oid 'net.inet.carp.demotion'\" >&2\nexit 1\n");
  chmodSync(join(dir, 'sysctl'), 0o755);
  const options = { platform: 'freebsd' as const, env: { PATH: `${dir}:${process.env['PATH'] ?? ''}` } };
  const carp = carpConfig({ vhids: [{ vhid: 1, interface: 'em0' }] });
  const down = await t.rejects(stepDownCarp(carp, options));
  t.equal((down as Error).message, 'stepping down from CARP MASTER');
  t.match(String((down as Error).cause), /unknown oid 'net.inet.carp.demotion'$/);
  const restore = await t.rejects(restoreCarp(carp, options));
  t.equal((restore as Error).message, 'removing the CARP demotion');
});

// `ifconfig -a` of FreeBSD 14 with an address that ucarp added as an alias.
const IFCONFIG_A = [
  'em0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500',
  '\toptions=4e524bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,LRO,WOL_MAGIC>',
  '\tether 08:00:27:3c:12:5a',
  '\tinet 192.168.1.11 netmask 0xffffff00 broadcast 192.168.1.255',
  '\tinet 192.168.1.50 netmask 0xffffffff broadcast 192.168.1.50',
  '\tinet6 fe80::a00:27ff:fe3c:125a%em0 prefixlen 64 scopeid 0x1',
  '\tmedia: Ethernet autoselect (1000baseT <full-duplex>)',
  '\tstatus: active',
  '\tnd6 options=23<PERFORMNUD,ACCEPT_RTADV,AUTO_LINKLOCAL>',
  'lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384',
  '\tinet 127.0.0.1 netmask 0xff000000',
  '\tinet6 ::1 prefixlen 128',
  '',
].join('\n');

t.test('parseIfconfigAddresses reads the inet and inet6 lines of FreeBSD ifconfig -a', async (t) => {
  t.strictSame(parseIfconfigAddresses(IFCONFIG_A), [
    { ifname: 'em0', address: '192.168.1.11' },
    { ifname: 'em0', address: '192.168.1.50' },
    { ifname: 'em0', address: 'fe80::a00:27ff:fe3c:125a%em0' },
    { ifname: 'lo0', address: '127.0.0.1' },
    { ifname: 'lo0', address: '::1' },
  ]);
  t.strictSame(parseIfconfigAddresses(''), []);
});

t.test('on FreeBSD a vip (ucarp) is looked for in ifconfig -a', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ifconfig-a-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ifconfig'), `#!/bin/sh\n[ "$1" = "-a" ] || exit 2\ncat <<'END'\n${IFCONFIG_A}END\n`, { mode: 0o755 });
  const env = { PATH: `${dir}:${process.env['PATH'] ?? ''}` };
  const carp = (vip: string) => ({ source: 'notify' as const, devdSocket: '/var/run/devd.pipe', vhids: [], vip, stepDown: undefined });
  t.strictSame(await readCarpState(carp('192.168.1.50'), { platform: 'freebsd', env }), { state: 'MASTER', detail: '192.168.1.50 present on em0' });
  t.strictSame(await readCarpState(carp('192.168.1.51'), { platform: 'freebsd', env }), { state: 'BACKUP', detail: '192.168.1.51 not on this node' });
});
