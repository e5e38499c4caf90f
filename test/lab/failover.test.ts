// The whole system on one machine, as root: two nodes in network namespaces, each with `carp-hast supervise`
// managing its built-in engine, ext4 on /dev/hast/test, CARP played by moving the shared address and sending
// devd lines. Every scenario of the supervisor issue runs here against real processes.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { runCommand } from '../../src/common/run-command.js';
import { Lab, LAB_VIP } from '../../src/lab/lab.js';
import type { StatusReport } from '../../src/supervisor/status-report.js';
import { CLI_DIR, runCli } from '../fixtures/cli.js';

const isRoot = process.getuid?.() === 0;
const CLI = [process.execPath, `${CLI_DIR}main.js`];

async function vipOn(lab: Lab, node: 'a' | 'b'): Promise<boolean> {
  const { stdout } = await runCommand(['ip', '-n', lab.namespace(node), '-j', 'addr', 'show'], { timeoutMs: 10_000, killAfterMs: 1_000 });
  return stdout.includes(LAB_VIP);
}

function lastTransition(report: StatusReport, direction: string) {
  return report.transitions.find((record) => record.direction === direction);
}

t.test('failover between two supervised nodes', { skip: isRoot ? false : 'needs root: network namespaces, losetup, nbdfuse and mount' }, async (t) => {
  const lab = await Lab.create({ dir: mkdtempSync(join(tmpdir(), 'lab-')), cli: CLI });
  t.teardown(() => lab.destroy());
  await lab.startSupervisor('a');
  await lab.startSupervisor('b');
  await lab.waitForRole('a', 'secondary');
  await lab.waitForRole('b', 'secondary');

  await t.test('CARP MASTER promotes: role, device, fsck, mount, service', async (t) => {
    await lab.carp('a', 'MASTER');
    const report = await lab.waitForRole('a', 'primary');
    const promotion = lastTransition(report, 'promote');
    t.equal(promotion?.outcome, 'done');
    t.strictSame(
      promotion?.steps.map((s) => s.name),
      ['engine check', 'peer release', 'role primary', 'device wait', 'fsck', 'mount', 'service start'],
    );
    t.match(promotion?.steps.find((s) => s.name === 'fsck'), { detail: 'clean' });
    // Complete once a's engine has connected to b's, which the promotion does not wait for.
    t.match(report.resources, [{ name: 'test', role: 'primary', status: /^(complete|degraded)$/, mounted: lab.mountpoint('a') }]);
    t.match(report.services, [{ name: 'share', status: 'running' }]);
    t.ok(existsSync(lab.servicePidFile('a')));
    writeFileSync(join(lab.mountpoint('a'), 'hello.txt'), 'written on a\n');
  });

  await t.test('carp-hast status prints the report for people and as JSON', async (t) => {
    const text = await runCli(['status', '-c', lab.configPath('a')]);
    t.equal(text.exitCode, 0, text.stderr);
    t.match(text.stdout, /^carp-hast supervisor on a \(pid \d+, up since /);
    t.match(text.stdout, new RegExp(`CARP:     1@${lab.iface('a')} MASTER|CARP:     ${LAB_VIP.replaceAll('.', '\\.')} present`));
    t.match(text.stdout, /actual: {3}primary\n/);
    t.match(text.stdout, / {2}test +primary +(complete|degraded) +\S+ +\/dev\/loop\d+ +\S+mnt-a\n/);
    t.match(text.stdout, / {2}share +running\n/);
    t.match(text.stdout, /Last transitions:\n {2}\S+ {2}promote done in \d+ ms: CARP /);
    t.match(text.stdout, / {6}fsck test: \d+ ms \(clean\)\n/);
    const json = await runCli(['status', '-c', lab.configPath('a'), '--json']);
    const report = JSON.parse(json.stdout) as StatusReport;
    t.equal(report.actual, 'primary');
    t.equal(report.engine.kind, 'builtin');
  });

  await t.test('a switch that CARP contradicts is answered with the reason', async (t) => {
    const result = (await lab.switchCommand('a', ['secondary'])) as { exitCode?: number; stderr?: string };
    t.equal(result.exitCode, 1);
    t.match(result.stderr, /Not switched to secondary: primary as wanted \(CARP /);
  });

  await t.test('failover: a lets go (a holder of the mount is stopped), b takes over with the data', async (t) => {
    const holder = execa('sleep', ['1000'], { cwd: lab.mountpoint('a'), reject: false });
    await sleep(100);
    await lab.carp('a', 'BACKUP');
    await lab.carp('b', 'MASTER');
    const a = await lab.waitForRole('a', 'secondary');
    const unmount = lastTransition(a, 'demote')?.steps.find((s) => s.name === 'unmount');
    t.match(unmount, { outcome: 'done', detail: new RegExp(`killed-holders, stopped pids .*${holder.pid}`) });
    t.equal((await holder).signal, 'SIGTERM', 'the holder was stopped');
    const b = await lab.waitForRole('b', 'primary');
    t.match(lastTransition(b, 'promote')?.steps.find((s) => s.name === 'peer release'), { outcome: 'done' });
    t.equal(readFileSync(join(lab.mountpoint('b'), 'hello.txt'), 'utf8'), 'written on a\n');
    writeFileSync(join(lab.mountpoint('b'), 'second.txt'), 'written on b\n');
    // Written through the page cache: only a sync makes it an acknowledged write that must survive a crash.
    await runCommand(['sync', '-f', join(lab.mountpoint('b'), 'second.txt')], { timeoutMs: 30_000, killAfterMs: 1_000 });
  });

  await t.test('the engine SIGKILLed while primary: restarted, the stale mount cleared, primary again', async (t) => {
    const before = await lab.status('b');
    const pid = before.engine.pid;
    t.ok(pid);
    process.kill(pid as number, 'SIGKILL');
    await sleep(500);
    const deadline = Date.now() + 60_000;
    let report = await lab.status('b');
    while (Date.now() < deadline && !(report.engine.restarts >= 1 && report.actual === 'primary' && report.running === undefined)) {
      await sleep(200);
      report = await lab.status('b');
    }
    t.equal(report.actual, 'primary', JSON.stringify(report, null, 2));
    t.not(report.engine.pid, pid);
    t.match(report.transitions.map((r) => `${r.direction} ${r.outcome}`).slice(0, 2), ['promote done', 'demote done']);
    t.equal(readFileSync(join(lab.mountpoint('b'), 'second.txt'), 'utf8'), 'written on b\n');
  });

  await t.test('devd restarts: the supervisor reconnects and still follows CARP', async (t) => {
    await lab.restartDevd('b');
    await lab.restartDevd('a');
    await sleep(500);
    await lab.carp('b', 'BACKUP');
    await lab.carp('a', 'MASTER');
    await lab.waitForRole('b', 'secondary');
    await lab.waitForRole('a', 'primary');
    t.equal(readFileSync(join(lab.mountpoint('a'), 'second.txt'), 'utf8'), 'written on b\n');
  });

  await t.test('BACKUP during a promotion cancels it at the next step; never two primaries', async (t) => {
    // a is primary. CARP wrongly makes b MASTER too: b's promotion waits for a to let go...
    const seen = lab.output('b').length;
    await lab.carp('b', 'MASTER');
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !lab.output('b').slice(seen).includes('Starting peer release of test.')) await sleep(20);
    await sleep(500);
    t.equal((await lab.status('b')).running?.direction, 'promote', 'b waits for the peer');
    // ...until CARP settles on BACKUP for b, which cancels the wait.
    await lab.carp('b', 'BACKUP');
    const report = await lab.waitForRole('b', 'secondary');
    const cancelled = report.transitions.find((r) => r.direction === 'promote');
    t.match(cancelled, { outcome: 'cancelled' });
    t.strictSame(cancelled?.steps.map((s) => `${s.name} ${s.outcome}`), ['engine check done', 'peer release cancelled']);
    t.equal((await lab.status('a')).actual, 'primary', 'a was never disturbed');
    await lab.carp('a', 'BACKUP');
    await lab.waitForRole('a', 'secondary');
    t.equal(existsSync('/dev/hast/test'), false, 'no device left');
  });

  await t.test('a service that fails to start: rollback, and CARP is told to step down', async (t) => {
    writeFileSync(join(lab.dir, 'share-a.fail'), '');
    t.teardown(() => runCommand(['rm', '-f', join(lab.dir, 'share-a.fail')], { timeoutMs: 5000, killAfterMs: 1000 }));
    await lab.carp('a', 'MASTER');
    const deadline = Date.now() + 60_000;
    let report = await lab.status('a');
    while (Date.now() < deadline && !report.transitions.some((r) => r.outcome === 'failed')) {
      await sleep(100);
      report = await lab.status('a');
    }
    report = await lab.waitForRole('a', 'secondary');
    const failed = report.transitions.find((r) => r.outcome === 'failed');
    t.match(failed?.error, /service start of share: .*share: refusing to start \(lab fault\)/);
    t.match(report.transitions[0], { direction: 'demote', outcome: 'done', reason: /rolling back promotion/ });
    t.equal(readFileSync(join(lab.dir, 'step-downs.log'), 'utf8').trim().split('\n').at(-1), 'a');
    t.equal(await vipOn(lab, 'a'), false, 'the step-down command gave the address up');
    t.match(report.warnings.join('\n'), /told CARP to step down after a failed or refused promotion/);
  });

  await t.test('carp-hast recover discards a secondary\'s copy; the primary sends a full copy', async (t) => {
    await lab.carp('b', 'MASTER');
    await lab.waitForRole('b', 'primary');
    const refused = await runCli(['recover', '-c', lab.configPath('b'), '--yes', 'test', '--discard-local']);
    t.equal(refused.exitCode, 1);
    t.match(refused.stderr, /test is primary on this node/);
    const done = await runCli(['recover', '-c', lab.configPath('a'), '--yes', 'test', '--discard-local']);
    t.equal(done.exitCode, 0, done.stderr);
    t.equal(done.stdout, 'test is secondary with fresh metadata; the peer will send it a full copy.\n');
    const report = await lab.status('a');
    t.match(report.transitions[0], { direction: 'recover', outcome: 'done' });
    t.strictSame(report.transitions[0]?.steps.map((s) => s.name), ['role init', 'metadata create', 'role secondary']);
  });

  await t.test('SIGTERM lets go of everything', async (t) => {
    await lab.stopSupervisor('b');
    t.equal(existsSync('/dev/hast/test'), false);
    t.notOk(readFileSync('/proc/self/mounts', 'utf8').includes(lab.mountpoint('b')));
    t.match(lab.output('b'), /Received SIGTERM; letting go of the storage and exiting\./);
  });
});
