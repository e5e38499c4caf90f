import t from 'tap';
import { parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import { peerHoldsPrimary, promotionSteps } from '../../src/supervisor/plans.js';
import { runSteps } from '../../src/supervisor/transition.js';
import { listBlock, ListedNode } from '../fixtures/listed-node.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const CONFIG = parseSupervisorConf(
  '[carp]\nvhids = ["1@em0"]\n[[resource]]\nname = "test"\nfstype = "ext4"\nmountpoint = "/hast/test"\n',
  '/etc/carp-hast.toml',
);

function promote(node: ListedNode) {
  return runSteps('promote', 'CARP 1@em0 MASTER', promotionSteps(CONFIG, node), {
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
