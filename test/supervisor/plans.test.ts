import t from 'tap';
import { parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import { peerHoldsPrimary, promotionSteps, SecondaryClock } from '../../src/supervisor/plans.js';
import { runSteps } from '../../src/supervisor/transition.js';
import type { NodeOps } from '../../src/supervisor/node-ops.js';
import { FakeNode } from '../fixtures/fake-node.js';
import { listBlock, ListedNode } from '../fixtures/listed-node.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const CONFIG = parseSupervisorConf(
  '[carp]\nvhids = ["1@em0"]\n[[resource]]\nname = "test"\nfstype = "ext4"\nmountpoint = "/hast/test"\n',
  '/etc/carp-hast.toml',
);

function withGrace(grace: string) {
  return parseSupervisorConf(
    `[carp]\nvhids = ["1@em0"]\n[supervisor]\npeer_connect_grace = "${grace}"\n[[resource]]\nname = "test"\nfstype = "ext4"\nmountpoint = "/hast/test"\n`,
    '/etc/carp-hast.toml',
  );
}

function promote(node: NodeOps, config = CONFIG, clock = new SecondaryClock()) {
  return runSteps('promote', 'CARP 1@em0 MASTER', promotionSteps(config, node, clock), {
    log: memoryLogger().log,
    signal: new AbortController().signal,
  });
}

// The decision refuses a split-brain promotion up front; the engine check catches one that appears after it.
t.test('the engine check refuses a promotion while our engine reports split-brain', async (t) => {
  const node = new ListedNode([]);
  node.list = listBlock('test', 'secondary', 'split-brain', {
    splitBrainLine: '  split-brain: local changes: 2097152 (2.0MB), peer changes: unknown\n',
  });
  const record = await promote(node);
  t.equal(record.outcome, 'refused');
  t.strictSame(record.steps.map((s) => `${s.name} ${s.outcome}`), ['engine check failed']);
  t.equal(
    record.error,
    'engine check of test: the engine reports split-brain for test: both nodes changed the data while apart; ' +
      'keep one node\'s changes with `carp-hast recover test --discard-local` on the other node',
  );
  t.strictSame(node.calls, [], 'no role was set, nothing mounted');
});

t.test('the same with FreeBSD\'s hastd, whose log said it', async (t) => {
  const node = new ListedNode([]);
  node.list = listBlock('test', 'secondary', 'degraded');
  node.logged.add('test');
  const record = await promote(node);
  t.equal(record.outcome, 'refused');
  t.match(record.error, /^engine check of test: the engine reports split-brain for test: /);
});

t.test('a split-brain secondary is not a peer holding the resource', async (t) => {
  const node = new ListedNode([]);
  node.list = listBlock('test', 'secondary', 'split-brain') + listBlock('busy', 'secondary', 'complete');
  const [splitBrain, busy] = await node.engineResources();
  t.equal(splitBrain !== undefined && peerHoldsPrimary(splitBrain), false);
  t.equal(busy !== undefined && peerHoldsPrimary(busy), true);
});

// A resource the engine has just started (role init) cannot tell whether the peer is primary.
t.test('from init, the resource is made secondary first and a primary peer gets its chance to connect', async (t) => {
  const node = new FakeNode(['test']);
  node.roles.set('test', 'init');
  // The peer's primary connects 100 ms after we became secondary, and lets go 150 ms later.
  const connect = setInterval(() => {
    if (node.roles.get('test') !== 'secondary') return;
    clearInterval(connect);
    setTimeout(() => node.status.set('test', 'complete'), 100);
    setTimeout(() => node.status.delete('test'), 250);
  }, 5);
  const record = await promote(node, withGrace('5s'));
  t.equal(record.outcome, 'done');
  t.strictSame(node.calls.slice(0, 2), ['role test secondary', 'role test primary']);
  const release = record.steps.find((s) => s.name === 'peer release');
  t.match(release?.detail, /^peer let go after \d+ ms$/);
  t.ok((release?.durationMs ?? 0) >= 200, `waited ${release?.durationMs} ms, until the peer let go`);
  t.ok((release?.durationMs ?? 0) < 4_000, 'not the whole grace: the peer was seen and let go');
});

t.test('from init with no primary peer, the promotion goes on after peer_connect_grace', async (t) => {
  const node = new FakeNode(['test']);
  node.roles.set('test', 'init');
  const record = await promote(node, withGrace('300ms'));
  t.equal(record.outcome, 'done');
  const release = record.steps.find((s) => s.name === 'peer release');
  t.match(release?.detail, /^no primary peer connected in \d+ ms \(made secondary first\)$/);
  t.ok((release?.durationMs ?? 0) >= 290, `waited ${release?.durationMs} ms`);
  t.strictSame(node.calls.slice(0, 2), ['role test secondary', 'role test primary']);
});

t.test('a resource secondary for longer than the grace promotes at once; one just seen secondary waits', async (t) => {
  let now = 0;
  const clock = new SecondaryClock(() => now);
  clock.observe('test', 'secondary', 'degraded');
  now = 6_000;
  const known = await promote(new FakeNode(['test']), withGrace('6s'), clock);
  t.match(known.steps.find((s) => s.name === 'peer release'), { detail: 'peer not primary' });

  const fresh = await promote(new FakeNode(['test']), withGrace('300ms'));
  t.match(fresh.steps.find((s) => s.name === 'peer release'), { detail: /^no primary peer connected in \d+ ms$/ });
});

t.test('a resource in init waits the grace even when a primary peer was seen connected before the restart', async (t) => {
  const clock = new SecondaryClock();
  clock.observe('test', 'secondary', 'complete');
  const node = new FakeNode(['test']);
  node.roles.set('test', 'init');
  const record = await promote(node, withGrace('300ms'), clock);
  t.match(record.steps.find((s) => s.name === 'peer release'), { detail: /^no primary peer connected in \d+ ms \(made secondary first\)$/ });
});

t.test('with peer_connect_grace "0s", an init resource goes straight to primary', async (t) => {
  const node = new FakeNode(['test']);
  node.roles.set('test', 'init');
  const record = await promote(node, withGrace('0s'));
  t.match(record.steps.find((s) => s.name === 'peer release'), { detail: 'peer not primary' });
  t.equal(node.calls[0], 'role test primary');
});

t.test('the clock: another role stops it, the first secondary reading starts it, a role set by us starts it', async (t) => {
  let now = 1_000;
  const clock = new SecondaryClock(() => now);
  t.equal(clock.graceLeft('test', 500), 500, 'unknown counts as just now');
  clock.observe('test', 'secondary', 'degraded');
  now = 1_400;
  clock.observe('test', 'secondary', 'degraded');
  t.equal(clock.graceLeft('test', 500), 100, 'a later reading of the same role does not restart it');
  clock.observe('test', 'primary', 'complete');
  clock.madeSecondary('test');
  t.equal(clock.graceLeft('test', 500), 500);
  now = 2_000;
  clock.madeSecondary('test');
  t.equal(clock.graceLeft('test', 500), -100, 'setting the role it already has does not restart it');
  clock.observe('test', 'init', undefined);
  clock.observe('test', 'secondary', 'complete');
  t.equal(clock.graceLeft('test', 500), Number.NEGATIVE_INFINITY, 'a primary peer was seen: no grace');
  clock.observe('test', 'secondary', 'degraded');
  t.equal(clock.graceLeft('test', 500), Number.NEGATIVE_INFINITY, 'and its leaving does not start one');
});
