// Split-brain on the whole system, as root: both nodes of the lab write while the link between them is cut,
// the engines find out when it comes back, the supervisors refuse to promote and say how to recover, and
// `carp-hast recover` on the node whose changes are given up makes the two copies one again.
//
// /dev/hast/test is one path for the whole machine, so the lab cannot hold two primaries at once: the nodes
// take turns while apart (a writes, then b, then a again). What each node holds when the link returns is the
// same as after two simultaneous primaries.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { humanizeBytes } from '../../src/common/humanize.js';
import { runCommand } from '../../src/common/run-command.js';
import { Lab, type LabNode } from '../../src/lab/lab.js';
import { parseHastctlList, parseHastctlStatus, type HastList, type HastStatus } from '../../src/supervisor/hastctl-output.js';
import type { StatusReport } from '../../src/supervisor/status-report.js';
import { CLI_DIR, runCli } from '../fixtures/cli.js';

const isRoot = process.getuid?.() === 0;
const CLI = [process.execPath, `${CLI_DIR}main.js`];

// Reads `probe` until `done` accepts what it read; on timeout the error shows the last reading.
async function waitFor<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let seen: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (done(value)) return value;
      seen = value;
    } catch (error) {
      seen = String(error);
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last seen: ${JSON.stringify(seen, null, 2)}`);
}

async function engineStatus(lab: Lab, node: LabNode): Promise<HastStatus> {
  return parseHastctlStatus(await lab.hastctl(node, 'status', 'test'))[0] as HastStatus;
}

async function engineList(lab: Lab, node: LabNode): Promise<HastList> {
  return parseHastctlList(await lab.hastctl(node, 'list', 'test'))[0] as HastList;
}

// The component's data area (after the metadata and activemap), where the file system lives.
async function dataArea(lab: Lab, node: LabNode): Promise<Buffer> {
  const localoff = /localoff: (\d+)/.exec(await lab.hastctl(node, 'dump', 'test'))?.[1];
  if (localoff === undefined) throw new Error(`no localoff in hastctl dump of ${node}`);
  return readFileSync(lab.componentPath(node)).subarray(Number(localoff));
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

// Writes a file on a node's mounted file system and makes it an acknowledged write.
async function writeAndSync(lab: Lab, node: LabNode, name: string, text: string): Promise<void> {
  const path = join(lab.mountpoint(node), name);
  writeFileSync(path, text);
  await runCommand(['sync', '-f', path], { timeoutMs: 60_000, killAfterMs: 1_000 });
}

function files(lab: Lab, node: LabNode): Record<string, string> {
  const read = (name: string) => {
    const path = join(lab.mountpoint(node), name);
    return existsSync(path) ? readFileSync(path, 'utf8') : '(missing)';
  };
  return { 'before.txt': read('before.txt'), 'a-apart.txt': read('a-apart.txt'), 'b-apart.txt': read('b-apart.txt') };
}

function resourceReport(report: StatusReport) {
  const resource = report.resources.find((r) => r.name === 'test');
  if (resource === undefined) throw new Error(`no resource test in the status of ${report.node}`);
  return resource;
}

// The warning `carp-hast status` gives for test on `node`, from the amounts its JSON carries.
function expectedWarning(node: LabNode, report: StatusReport, here: string): string {
  const { localChanges, peerChanges } = resourceReport(report);
  const amount = (bytes: number | null) => (bytes === null ? 'an unknown amount' : humanizeBytes(bytes));
  const keepHere = resourceReport(report).role === 'primary' ? '' : ', then here: carp-hast recover test --keep-local';
  return (
    `Split-brain on test: both nodes wrote while apart. This node (${node}) changed ${amount(localChanges)}, the peer ${amount(peerChanges)}. ` +
    `To keep this node's data, run on the other node: carp-hast recover test --discard-local${keepHere}. ` +
    `To keep the other node's data, ${here}. The node that runs --discard-local receives a full copy.`
  );
}

t.test('split-brain: detected, refused, explained and recovered', { skip: isRoot ? false : 'needs root: network namespaces, losetup, nbdfuse and mount' }, async (t) => {
  const lab = await Lab.create({ dir: mkdtempSync(join(tmpdir(), 'lab-')), cli: CLI });
  t.teardown(() => lab.destroy());
  // Each step runs only if everything before it passed; a failure shows what the supervisors said.
  const step = async (name: string, body: (t: Test) => Promise<void>) => {
    if (!t.passing()) return;
    await t.test(name, body);
    if (!t.passing()) for (const node of ['a', 'b'] as const) t.comment(`supervisor ${node} said:\n${lab.output(node).split('\n').slice(-60).join('\n')}`);
  };
  await lab.startSupervisor('a');
  await lab.startSupervisor('b');
  await lab.waitForRole('a', 'secondary');
  await lab.waitForRole('b', 'secondary');
  let bDataBeforeHeal = '';

  await step('a serves with b connected', async (t) => {
    await lab.carp('a', 'MASTER');
    await lab.waitForRole('a', 'primary');
    await waitFor('a to reach b', () => engineStatus(lab, 'a'), (status) => status.status === 'complete');
    await writeAndSync(lab, 'a', 'before.txt', 'written on a with b connected\n');
    t.pass('before.txt written and replicated');
  });

  await step('the link is cut: a goes on writing, then b takes over and writes too', async (t) => {
    await lab.partition();
    // fullsync: the write waits for b until the engine's timeout (5 s), then goes on degraded.
    await writeAndSync(lab, 'a', 'a-apart.txt', 'written on a while apart\n');
    t.equal((await engineStatus(lab, 'a')).status, 'degraded');
    await lab.carp('a', 'BACKUP');
    await lab.waitForRole('a', 'secondary');
    // b's secondary notices the silence only after twice the keepalive (20 s); until then it would wait for
    // a to let go.
    await waitFor('b to notice that a is gone', () => engineStatus(lab, 'b'), (status) => status.status === undefined);
    await lab.carp('b', 'MASTER');
    await lab.waitForRole('b', 'primary');
    await writeAndSync(lab, 'b', 'b-apart.txt', 'written on b while apart\n');
    t.strictSame(files(lab, 'b'), { 'before.txt': 'written on a with b connected\n', 'a-apart.txt': '(missing)', 'b-apart.txt': 'written on b while apart\n' });
    await lab.carp('b', 'BACKUP');
    await lab.waitForRole('b', 'secondary');
    await lab.carp('a', 'MASTER');
    await lab.waitForRole('a', 'primary');
    t.strictSame(files(lab, 'a'), { 'before.txt': 'written on a with b connected\n', 'a-apart.txt': 'written on a while apart\n', 'b-apart.txt': '(missing)' });
    bDataBeforeHeal = sha256(await dataArea(lab, 'b'));
  });

  await step('the link returns: both engines report split-brain and nothing moves', async (t) => {
    await lab.heal();
    const [a, b] = await Promise.all(
      (['a', 'b'] as const).map((node) =>
        waitFor(`${node}'s engine to report split-brain`, () => engineStatus(lab, node), (status) => status.status === 'split-brain'),
      ),
    );
    t.match(a, { role: 'primary', status: 'split-brain' });
    t.match(b, { role: 'secondary', status: 'split-brain' });
    const [listA, listB] = [await engineList(lab, 'a'), await engineList(lab, 'b')];
    t.ok((listA.splitBrain?.local ?? 0) > 0, `a's engine counts its own changes: ${JSON.stringify(listA.splitBrain)}`);
    t.ok((listB.splitBrain?.local ?? 0) > 0, `b's engine counts its own changes: ${JSON.stringify(listB.splitBrain)}`);
    t.equal(listA.splitBrain?.peer, listB.splitBrain?.local, 'a knows what b changed (b is idle, so it stays put)');
    t.ok((listB.splitBrain?.peer ?? 0) > 0, 'b knows what a changed');
    t.strictSame(files(lab, 'a'), { 'before.txt': 'written on a with b connected\n', 'a-apart.txt': 'written on a while apart\n', 'b-apart.txt': '(missing)' });
    t.equal(sha256(await dataArea(lab, 'b')), bDataBeforeHeal, "b's data area is untouched");
  });

  await step('carp-hast status on both nodes says who holds which changes and how to recover', async (t) => {
    for (const node of ['a', 'b'] as const) {
      const report = await waitFor(`the supervisor of ${node} to see the split-brain`, () => lab.status(node), (status) => resourceReport(status).splitBrain);
      const json = await runCli(['status', '-c', lab.configPath(node), '--json']);
      t.equal(json.exitCode, 0, json.stderr);
      const parsed = JSON.parse(json.stdout) as StatusReport;
      const resource = resourceReport(parsed);
      t.match(resource, { status: 'split-brain', splitBrain: true, localChanges: Number, peerChanges: Number }, `${node}: JSON fields`);
      const here = node === 'a' ? 'run it here once CARP has made this node secondary' : 'run it here';
      t.ok(parsed.warnings.includes(expectedWarning(node, parsed, here)), `${node}: the warning in words:\n${parsed.warnings.join('\n')}`);
      t.equal(report.actual, node === 'a' ? 'primary' : 'secondary');
      const text = await runCli(['status', '-c', lab.configPath(node)]);
      t.match(text.stdout, new RegExp(`  test +${node === 'a' ? 'primary' : 'secondary'} +split-brain `));
      t.match(text.stdout, /! Split-brain on test: both nodes wrote while apart\. This node/);
    }
  });

  await step('b made MASTER refuses to promote', async (t) => {
    await lab.carp('b', 'MASTER');
    const report = await waitFor('b to refuse the promotion', () => lab.status('b'), (status) => status.transitions[0]?.outcome === 'refused');
    t.match(report.transitions[0], { direction: 'promote', reason: 'split-brain on test: not promoting; see carp-hast status for the recovery', steps: [] });
    t.ok(report.warnings.includes('Promotion refused: split-brain on test: not promoting; see carp-hast status for the recovery.'));
    t.equal((await engineStatus(lab, 'b')).role, 'secondary');
    await lab.carp('b', 'BACKUP');
    await lab.waitForRole('b', 'secondary');
    t.equal((await lab.status('a')).actual, 'primary', 'a kept serving');
  });

  await step('carp-hast recover on b discards its changes; a sends it a full copy', async (t) => {
    const done = await runCli(['recover', '-c', lab.configPath('b'), '--yes', 'test', '--discard-local']);
    t.equal(done.exitCode, 0, done.stderr);
    t.equal(done.stdout, 'test is secondary with fresh metadata; the peer will send it a full copy.\n');
    t.strictSame((await lab.status('b')).transitions[0]?.steps.map((s) => `${s.name} ${s.outcome}`), ['role init done', 'metadata create done', 'role secondary done']);
    const synced = await waitFor('a to finish synchronising b', () => engineList(lab, 'a'), (list) => list.status === 'complete' && list.dirty === 0);
    t.equal(synced.splitBrain, undefined, "a's engine no longer reports split-brain");
    t.match(await engineStatus(lab, 'b'), { role: 'secondary', status: 'complete' });
    for (const node of ['a', 'b'] as const) {
      const report = await waitFor(`the supervisor of ${node} to see the end of the split-brain`, () => lab.status(node), (status) => !resourceReport(status).splitBrain);
      t.notOk(report.warnings.some((w) => w.startsWith('Split-brain')), `${node}: no split-brain warning`);
    }
    t.strictSame(files(lab, 'a'), { 'before.txt': 'written on a with b connected\n', 'a-apart.txt': 'written on a while apart\n', 'b-apart.txt': '(missing)' });
  });

  await step('a lets go: the two components hold the same data', async (t) => {
    await lab.carp('a', 'BACKUP');
    await lab.waitForRole('a', 'secondary');
    const [a, b] = [await dataArea(lab, 'a'), await dataArea(lab, 'b')];
    t.equal(a.length, b.length);
    t.ok(a.equals(b), 'byte-identical data areas');
  });
});
