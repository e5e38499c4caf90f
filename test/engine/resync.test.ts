// Resynchronisation and split-brain between two real `carp-hast hastd` processes, with a relay standing in for
// the network in each direction: it counts the bytes, partitions the nodes and slows them down.
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type DaemonProcess, type PairLayout } from '../fixtures/engine-pair.js';
import { NbdBlockClient } from '../fixtures/nbd-block-client.js';
import { dataOf, pattern } from '../fixtures/replication-pair.js';
import { TcpRelay } from '../fixtures/tcp-relay.js';

type NodeName = 'a' | 'b';

const EXTENT = MiB;

// A pair whose traffic goes through relays: a reaches b through `relays.a` (127.0.0.3) and b reaches a
// through `relays.b` (127.0.0.4). Each node sees the relay's address as its peer's.
async function relayedPair(t: Test): Promise<{ layout: PairLayout; relays: Record<NodeName, TcpRelay> }> {
  const layout = await pairLayout(t, 'fullsync');
  const relays = {
    a: await TcpRelay.start('127.0.0.3', 0, { host: '127.0.0.2', port: layout.ports.b, localAddress: '127.0.0.4' }),
    b: await TcpRelay.start('127.0.0.4', 0, { host: '127.0.0.1', port: layout.ports.a, localAddress: '127.0.0.3' }),
  };
  t.teardown(() => Promise.all([relays.a.close(), relays.b.close()]));
  // hastd's default compression (hole) would shrink the zeros of partly written extents: byte counts and
  // the throttled sync's duration are only meaningful without it.
  const conf = readFileSync(layout.conf, 'utf8')
    .replace('replication fullsync', 'replication fullsync\n\tcompression none')
    .replace(`remote 127.0.0.2:${layout.ports.b}`, `remote 127.0.0.3:${relays.a.port}`)
    .replace(`remote 127.0.0.1:${layout.ports.a}`, `remote 127.0.0.4:${relays.b.port}`);
  writeFileSync(layout.conf, conf);
  for (const node of ['a', 'b'] as const) {
    const created = await hastctl(layout, node, 'create', '-e', '1M', 'test');
    t.equal(created.exitCode, 0, `create on ${node}: ${created.stderr}`);
  }
  return { layout, relays };
}

async function role(t: Test, layout: PairLayout, node: NodeName, wanted: string): Promise<void> {
  const result = await hastctl(layout, node, 'role', wanted, 'test');
  t.equal(result.exitCode, 0, `role ${wanted} on ${node}: ${result.stderr}`);
}

// The `status:` and `dirty:` lines of `hastctl list`, and the split-brain line if any.
async function listed(layout: PairLayout, node: NodeName): Promise<{ status: string; dirty: number; splitBrain: string | undefined; text: string }> {
  const { stdout } = await hastctl(layout, node, 'list', 'test');
  return {
    status: /^ {2}status: (\S+)$/m.exec(stdout)?.[1] ?? '-',
    dirty: Number(/^ {2}dirty: (\d+) /m.exec(stdout)?.[1] ?? NaN),
    splitBrain: /^ {2}split-brain: (.*)$/m.exec(stdout)?.[1],
    text: stdout,
  };
}

async function device(t: Test, layout: PairLayout, node: NodeName): Promise<NbdBlockClient> {
  const client = await NbdBlockClient.open(join(layout.dir, `run-${node}`, 'test.nbd'), 'test');
  t.teardown(() => client.close());
  return client;
}



// Both nodes up, a primary and in sync with b.
async function syncedPair(t: Test) {
  const { layout, relays } = await relayedPair(t);
  const daemons: Record<NodeName, DaemonProcess> = { a: await startDaemon(t, layout, 'a'), b: await startDaemon(t, layout, 'b') };
  await role(t, layout, 'b', 'secondary');
  await role(t, layout, 'a', 'primary');
  await waitFor('a to connect and sync', async () => {
    const a = await listed(layout, 'a');
    return a.status === 'complete' && a.dirty === 0;
  });
  return { layout, relays, daemons };
}

async function identicalAfterInit(t: Test, layout: PairLayout): Promise<Buffer> {
  await role(t, layout, 'a', 'init');
  await role(t, layout, 'b', 'init');
  const a = await dataOf(layout.local.a, 'test');
  t.ok(a.equals(await dataOf(layout.local.b, 'test')), 'the data areas are byte-identical');
  return a;
}

t.test('after an outage only the extents written meanwhile travel, then the nodes are identical', async (t) => {
  const { layout, relays, daemons } = await syncedPair(t);
  const a = await device(t, layout, 'a');
  await a.write(0, pattern(64 * 1024, 1));
  await a.write(30 * EXTENT, pattern(128 * 1024, 5));
  daemons.b.process.kill('SIGKILL');
  await daemons.b.process;
  // D: writes inside extents 5 and 9, one across the boundary of extents 20 and 21, and a trim in extent 30.
  await a.write(5 * EXTENT + 4096, pattern(4096, 2));
  await a.write(9 * EXTENT, pattern(128 * 1024, 3));
  await a.write(21 * EXTENT - 64 * 1024, pattern(128 * 1024, 4));
  await a.trim(30 * EXTENT, 128 * 1024);
  const degraded = await listed(layout, 'a');
  t.equal(degraded.status, 'degraded');
  t.equal(degraded.dirty, 5 * EXTENT, 'the five touched extents are dirty');

  relays.a.forwarded = 0;
  daemons.b = await startDaemon(t, layout, 'b');
  await role(t, layout, 'b', 'secondary');
  await waitFor('the resync', async () => (await listed(layout, 'a')).dirty === 0);
  const sent = relays.a.forwarded;
  t.ok(sent >= 5 * EXTENT, `at least the dirty extents were sent (${sent} bytes)`);
  t.ok(sent <= 5 * EXTENT * 1.02 + 16 * 1024, `no more than the dirty extents and protocol overhead were sent (${sent} bytes)`);
  t.match(daemons.a.output(), /Synchronization complete\. 5\.0MB synchronized in \S+ \(\S+\/sec\)\./);
  const data = await identicalAfterInit(t, layout);
  t.ok(data.subarray(9 * EXTENT, 9 * EXTENT + 128 * 1024).equals(pattern(128 * 1024, 3)), 'the data written during the outage is there');
  t.ok(data.subarray(30 * EXTENT, 30 * EXTENT + 128 * 1024).equals(Buffer.alloc(128 * 1024)), 'the trim reached b as zeros');
});

t.test('split-brain: refused on both nodes, nothing moves, and the recovery makes one node a full copy', async (t) => {
  const { layout, relays, daemons } = await syncedPair(t);
  const a = await device(t, layout, 'a');
  await a.write(0, pattern(128 * 1024, 1));
  relays.a.partition();
  relays.b.partition();
  await waitFor('a to notice', async () => (await listed(layout, 'a')).status === 'degraded');
  // Both nodes act as primary while apart and both write.
  await a.write(2 * EXTENT, pattern(128 * 1024, 2));
  await a.write(3 * EXTENT, pattern(128 * 1024, 3));
  await role(t, layout, 'b', 'primary');
  const b = await device(t, layout, 'b');
  await b.write(7 * EXTENT, pattern(4096, 7));
  await b.flush();
  b.close();
  await role(t, layout, 'b', 'secondary');
  const before = { a: Buffer.from(await dataOf(layout.local.a, 'test')), b: Buffer.from(await dataOf(layout.local.b, 'test')) };

  relays.a.heal();
  relays.b.heal();
  await waitFor('both nodes to report split-brain', async () => (await listed(layout, 'a')).status === 'split-brain' && (await listed(layout, 'b')).status === 'split-brain');
  const status = await hastctl(layout, 'a', 'status');
  t.match(status.stdout, /\ntest\tsplit-brain primary {8}/);
  t.equal((await listed(layout, 'a')).splitBrain, 'local changes: 2097152 (2.0MB), peer changes: 1048576 (1.0MB)');
  t.equal((await listed(layout, 'b')).splitBrain, 'local changes: 1048576 (1.0MB), peer changes: 2097152 (2.0MB)');
  t.match(daemons.b.output(), /Split-brain detected, exiting\./);
  t.match(daemons.a.output(), /Split-brain: both nodes wrote while apart \(this node changed 2\.0MB, the peer 1\.0MB\)/);
  t.same(readFileSync(layout.hookLog.a, 'utf8').match(/^split-brain test$/gm), ['split-brain test'], 'the hook ran once on a');
  t.match(readFileSync(layout.hookLog.b, 'utf8'), /^split-brain test$/m);
  await a.flush();
  t.ok((await dataOf(layout.local.b, 'test')).equals(before.b), "b's data did not move");
  t.ok((await dataOf(layout.local.a, 'test')).subarray(7 * EXTENT, 8 * EXTENT).equals(before.a.subarray(7 * EXTENT, 8 * EXTENT)), "b's change did not reach a");

  // The documented recovery on b: its changes are discarded and it receives a full copy of a.
  await role(t, layout, 'b', 'init');
  const created = await hastctl(layout, 'b', 'create', '-e', '1M', 'test');
  t.equal(created.exitCode, 0, created.stderr);
  await role(t, layout, 'b', 'secondary');
  await waitFor('the full sync', async () => {
    const listing = await listed(layout, 'a');
    return listing.status === 'complete' && listing.dirty === 0;
  });
  t.equal((await listed(layout, 'a')).splitBrain, undefined, 'split-brain is over');
  const data = await identicalAfterInit(t, layout);
  t.ok(data.subarray(2 * EXTENT, 2 * EXTENT + 128 * 1024).equals(pattern(128 * 1024, 2)), "a's data won");
});

t.test('a stale node promoted reads the fresh data from its peer while the sync runs', async (t) => {
  const { layout, relays, daemons } = await syncedPair(t);
  const a = await device(t, layout, 'a');
  await a.write(0, pattern(128 * 1024, 1));
  daemons.b.process.kill('SIGKILL');
  await daemons.b.process;
  // Fresh data only a holds: 16 extents, and a marker to read back.
  for (let extent = 10; extent < 26; extent++) await a.write(extent * EXTENT, pattern(128 * 1024, extent));
  await a.flush();
  a.close();
  await role(t, layout, 'a', 'secondary');

  // b, out of date, becomes primary; the slowed-down link keeps the sync running for seconds.
  relays.b.throttle(1 * MiB);
  daemons.b = await startDaemon(t, layout, 'b');
  await role(t, layout, 'b', 'primary');
  await waitFor('b to connect', async () => (await listed(layout, 'b')).status === 'complete');
  const b = await device(t, layout, 'b');
  t.ok((await b.read(25 * EXTENT, 128 * 1024)).equals(pattern(128 * 1024, 25)), 'the last extent reads fresh');
  t.ok((await b.read(10 * EXTENT, 4096)).equals(pattern(4096, 10)), 'the first extent reads fresh');
  t.ok((await listed(layout, 'b')).dirty > 0, 'the sync was still running');
  relays.b.throttle(0);
  await waitFor('the sync from a', async () => (await listed(layout, 'b')).dirty === 0, 60_000);
  t.match(daemons.b.output(), /Synchronization complete\./);
  b.close();
  const data = await identicalAfterInit(t, layout);
  t.ok(data.subarray(17 * EXTENT, 17 * EXTENT + 128 * 1024).equals(pattern(128 * 1024, 17)));
});

t.test('an interrupted sync resumes where it stopped; SIGKILL of the primary mid-sync still ends identical', async (t) => {
  const { layout, relays, daemons } = await syncedPair(t);
  const a = await device(t, layout, 'a');
  daemons.b.process.kill('SIGKILL');
  await daemons.b.process;
  for (let extent = 0; extent < 24; extent++) await a.write(extent * EXTENT, pattern(128 * 1024, 100 + extent));
  t.equal((await listed(layout, 'a')).dirty, 24 * EXTENT);

  relays.a.throttle(4 * MiB);
  daemons.b = await startDaemon(t, layout, 'b');
  await role(t, layout, 'b', 'secondary');
  await waitFor('part of the sync', async () => (await listed(layout, 'a')).dirty <= 20 * EXTENT);
  relays.a.partition();
  await waitFor('the interruption', () => /Synchronization interrupted after/.test(daemons.a.output()));
  const left = (await listed(layout, 'a')).dirty;
  t.ok(left < 24 * EXTENT && left > 0, `${left} bytes left to copy`);
  relays.a.forwarded = 0;
  relays.a.heal();
  await waitFor('part of the resumed sync', async () => (await listed(layout, 'a')).dirty < left);
  t.ok(relays.a.forwarded < left + EXTENT, 'the resumed sync did not start over');

  // The primary dies mid-sync; restarted, it finishes the job.
  daemons.a.process.kill('SIGKILL');
  await daemons.a.process;
  relays.a.throttle(0);
  daemons.a = await startDaemon(t, layout, 'a');
  await role(t, layout, 'a', 'primary');
  await waitFor('the sync to finish', async () => {
    const listing = await listed(layout, 'a');
    return listing.status === 'complete' && listing.dirty === 0;
  }, 60_000);
  const data = await identicalAfterInit(t, layout);
  t.ok(data.subarray(23 * EXTENT, 23 * EXTENT + 128 * 1024).equals(pattern(128 * 1024, 123)));
});
