import t, { type Test } from 'tap';
import { recordedCalls, recordingStandIns, runScript } from '../fixtures/stand-ins.js';

const NOTIFY = 'examples/keepalived/keepalived-notify.sh';

// The ucarp and keepalived hooks, run with stand-ins for `ip` and `carp-hast-switch` first on PATH.
function hookEnv(t: Test, extra: Record<string, string> = {}) {
  const { bin, log } = recordingStandIns(t.testdir(), ['ip', 'carp-hast-switch']);
  return { env: { PATH: bin, CALLS: log, ...extra }, calls: () => recordedCalls(log) };
}

t.test('ucarp vip-up.sh adds the address, then hands "primary" over without waiting', async (t) => {
  const { env, calls } = hookEnv(t);
  const run = await runScript('examples/ucarp/vip-up.sh', ['eth0', '192.168.10.10', '24'], env);
  t.equal(run.exitCode, 0);
  t.same(calls(), ['ip address replace 192.168.10.10/24 dev eth0', 'carp-hast-switch --no-wait primary']);
});

t.test('ucarp vip-up.sh without xparam adds a /32', async (t) => {
  const { env, calls } = hookEnv(t);
  const run = await runScript('examples/ucarp/vip-up.sh', ['eth1', '10.1.1.252'], env);
  t.equal(run.exitCode, 0);
  t.same(calls(), ['ip address replace 10.1.1.252/32 dev eth1', 'carp-hast-switch --no-wait primary']);
});

t.test('ucarp vip-up.sh does not ask for a promotion when the address cannot be added', async (t) => {
  const { env, calls } = hookEnv(t, { STATUS_ip: '2' });
  const run = await runScript('examples/ucarp/vip-up.sh', ['eth0', '192.168.10.10', '24'], env);
  t.equal(run.exitCode, 2);
  t.same(calls(), ['ip address replace 192.168.10.10/24 dev eth0']);
});

t.test("ucarp vip-up.sh exits with carp-hast-switch's status", async (t) => {
  const { env } = hookEnv(t, { STATUS_carp_hast_switch: '69' });
  const run = await runScript('examples/ucarp/vip-up.sh', ['eth0', '192.168.10.10', '24'], env);
  t.equal(run.exitCode, 69);
});

t.test('ucarp vip-down.sh removes the address, then hands "secondary" over', async (t) => {
  const { env, calls } = hookEnv(t);
  const run = await runScript('examples/ucarp/vip-down.sh', ['eth0', '192.168.10.10', '24'], env);
  t.equal(run.exitCode, 0);
  t.same(calls(), ['ip address del 192.168.10.10/24 dev eth0', 'carp-hast-switch --no-wait secondary']);
});

t.test('ucarp vip-down.sh demotes even when the address was not there', async (t) => {
  const { env, calls } = hookEnv(t, { STATUS_ip: '2' });
  const run = await runScript('examples/ucarp/vip-down.sh', ['eth0', '192.168.10.10'], env);
  t.equal(run.exitCode, 0);
  t.same(calls(), ['ip address del 192.168.10.10/32 dev eth0', 'carp-hast-switch --no-wait secondary']);
});

t.test('the ucarp scripts refuse to run without an interface and an address', async (t) => {
  for (const script of ['vip-up.sh', 'vip-down.sh']) {
    const { env, calls } = hookEnv(t);
    const run = await runScript(`examples/ucarp/${script}`, ['eth0'], env);
    t.equal(run.exitCode, 64, script);
    t.equal(run.stderr, `usage: ${script} interface address [prefix-length]\n`);
    t.same(calls(), []);
  }
});

t.test('keepalived-notify.sh maps MASTER to primary and everything that loses the address to secondary', async (t) => {
  const cases: [string[], string][] = [
    [['INSTANCE', 'storage', 'MASTER', '150'], 'carp-hast-switch --no-wait primary'],
    [['INSTANCE', 'storage', 'BACKUP', '150'], 'carp-hast-switch --no-wait secondary'],
    [['INSTANCE', 'storage', 'FAULT', '150'], 'carp-hast-switch --no-wait secondary'],
    [['INSTANCE', 'storage', 'STOP', '150'], 'carp-hast-switch --no-wait secondary'],
    [['INSTANCE', 'storage', 'DELETED', '150'], 'carp-hast-switch --no-wait secondary'],
    [['GROUP', 'storage-group', 'MASTER', '0'], 'carp-hast-switch --no-wait primary'],
  ];
  for (const [args, call] of cases) {
    const { env, calls } = hookEnv(t);
    const run = await runScript(NOTIFY, args, env);
    t.equal(run.exitCode, 0, args.join(' '));
    t.same(calls(), [call], args.join(' '));
  }
});

t.test("keepalived-notify.sh exits with carp-hast-switch's status", async (t) => {
  const { env } = hookEnv(t, { STATUS_carp_hast_switch: '69' });
  const run = await runScript(NOTIFY, ['INSTANCE', 'storage', 'MASTER', '150'], env);
  t.equal(run.exitCode, 69);
});

t.test('keepalived-notify.sh ignores other states and refuses too few arguments', async (t) => {
  const { env, calls } = hookEnv(t);
  const ignored = await runScript(NOTIFY, ['INSTANCE', 'storage', 'MASTER_RX_LOWER_PRI', '150'], env);
  t.equal(ignored.exitCode, 0);
  t.equal(ignored.stderr, 'keepalived-notify.sh: INSTANCE storage: ignoring state MASTER_RX_LOWER_PRI\n');
  const short = await runScript(NOTIFY, ['INSTANCE', 'storage'], env);
  t.equal(short.exitCode, 64);
  t.equal(short.stderr, 'usage: keepalived-notify.sh INSTANCE|GROUP name state [priority]\n');
  t.same(calls(), []);
});
