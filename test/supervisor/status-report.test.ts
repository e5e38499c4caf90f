import t from 'tap';
import { parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import type { ResourceSnapshot } from '../../src/supervisor/reconcile.js';
import { buildStatusReport, formatStatusReport, type StatusReport } from '../../src/supervisor/status-report.js';
import { Supervisor, type SupervisorView } from '../../src/supervisor/supervisor.js';
import type { TransitionRecord } from '../../src/supervisor/transition.js';
import { listBlock, ListedNode } from '../fixtures/listed-node.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const SELF = {
  node: 'hasta',
  pid: 4242,
  startedAt: '2025-03-01T09:59:58.000Z',
  engine: { kind: 'builtin', pid: 4250, running: true, restarts: 1 },
};

const MASTER = { state: 'MASTER' as const, detail: '1@em0 MASTER (advskew 0)' };

// The report's fields of a resource that is not in split-brain.
const NO_SPLIT_BRAIN = { splitBrain: false, localChanges: null, peerChanges: null };

// A UFS resource mounted from its device, as a complete primary holds it.
const TEST_PRIMARY: ResourceSnapshot = {
  name: 'test',
  engine: { name: 'test', role: 'primary', status: 'degraded', dirty: 3 * 1024 * 1024, splitBrain: false },
  device: '/dev/hast/test',
  mountpoint: '/hast/test',
  mountedFrom: '/dev/hast/test',
  pool: undefined,
  poolImported: undefined,
  fsckRunning: undefined,
};

// A ZFS resource whose pool is imported.
const TANK_PRIMARY: ResourceSnapshot = {
  name: 'tank',
  engine: { name: 'tank', role: 'primary', status: 'complete', dirty: 0, splitBrain: false },
  device: '/dev/hast/tank',
  mountpoint: undefined,
  mountedFrom: undefined,
  pool: 'tank',
  poolImported: true,
  fsckRunning: undefined,
};

const PROMOTION: TransitionRecord = {
  id: 3,
  direction: 'promote',
  reason: 'CARP 1@em0 MASTER (advskew 0)',
  startedAt: '2025-03-01T10:00:05.000Z',
  durationMs: 1530,
  outcome: 'done',
  steps: [
    { name: 'engine check', target: 'test', outcome: 'done', durationMs: 35 },
    { name: 'role primary', target: 'test', outcome: 'done', durationMs: 210 },
    { name: 'fsck', target: 'test', outcome: 'done', durationMs: 1204, detail: 'clean' },
    { name: 'mount', target: 'test', outcome: 'done', durationMs: 41 },
    { name: 'pool import', target: 'tank', outcome: 'done', durationMs: 2, detail: 'pool tank already imported' },
    { name: 'service start', target: 'nfsd', outcome: 'done', durationMs: 38 },
  ],
};

const SPLIT_BRAIN = 'split-brain on test: not promoting; see carp-hast status for the recovery';

const REFUSAL: TransitionRecord = {
  id: 2,
  direction: 'promote',
  reason: SPLIT_BRAIN,
  startedAt: '2025-03-01T10:00:01.000Z',
  durationMs: 0,
  outcome: 'refused',
  steps: [],
  error: SPLIT_BRAIN,
};

const FAILED_DEMOTION: TransitionRecord = {
  id: 1,
  direction: 'demote',
  reason: 'CARP 1@em0 BACKUP (advskew 100)',
  startedAt: '2025-03-01T09:59:59.000Z',
  durationMs: 60012,
  outcome: 'failed',
  steps: [
    { name: 'service stop', target: 'nfsd', outcome: 'failed', durationMs: 60000, detail: 'service nfsd onestop timed out after 60 s' },
    { name: 'unmount', target: 'test', outcome: 'failed', durationMs: 12, detail: 'umount: /hast/test: target is busy' },
  ],
  error: 'unmount of test: umount: /hast/test: target is busy',
};

const PRIMARY_VIEW: SupervisorView = {
  snapshot: {
    carp: MASTER,
    carpError: undefined,
    engineError: undefined,
    mountsError: undefined,
    resources: [TEST_PRIMARY, TANK_PRIMARY],
    services: [
      { name: 'nfsd', running: true },
      { name: 'mountd', running: undefined },
    ],
  },
  observedAt: '2025-03-01T10:00:07.000Z',
  decision: { action: 'none', reason: 'primary as wanted (CARP 1@em0 MASTER (advskew 0))' },
  wanted: { role: 'primary', why: 'CARP 1@em0 MASTER (advskew 0)' },
  running: undefined,
  history: [PROMOTION, REFUSAL, FAILED_DEMOTION],
  warnings: [
    'test is degraded: the peer is not connected; 3145728 bytes to synchronise.',
    'This node could not let go of its resources: unmount of test: umount: /hast/test: target is busy.',
  ],
};

t.test('a primary: resources, a pool, services, transitions with their steps, warnings', async (t) => {
  const report = buildStatusReport(PRIMARY_VIEW, SELF);
  t.same(report, {
    ...SELF,
    observedAt: '2025-03-01T10:00:07.000Z',
    carp: MASTER,
    wanted: { role: 'primary', why: 'CARP 1@em0 MASTER (advskew 0)' },
    actual: 'primary',
    decision: 'none: primary as wanted (CARP 1@em0 MASTER (advskew 0))',
    running: undefined,
    resources: [
      { name: 'test', role: 'primary', status: 'degraded', dirty: 3145728, ...NO_SPLIT_BRAIN, device: '/dev/hast/test', mounted: '/hast/test' },
      { name: 'tank', role: 'primary', status: 'complete', dirty: 0, ...NO_SPLIT_BRAIN, device: '/dev/hast/tank', mounted: 'pool tank' },
    ],
    services: [
      { name: 'nfsd', status: 'running' },
      { name: 'mountd', status: 'not checked' },
    ],
    transitions: [PROMOTION, REFUSAL, FAILED_DEMOTION],
    warnings: PRIMARY_VIEW.warnings,
  } satisfies StatusReport);
  t.equal(
    formatStatusReport(report),
    `carp-hast supervisor on hasta (pid 4242, up since 2025-03-01T09:59:58.000Z)
  CARP:     1@em0 MASTER (advskew 0)
  wanted:   primary (CARP 1@em0 MASTER (advskew 0))
  actual:   primary
  engine:   builtin, running, pid 4250, 1 restart

  Resource  Role     Status    Dirty  Device          Mounted
  test      primary  degraded  3.0MB  /dev/hast/test  /hast/test
  tank      primary  complete  0B     /dev/hast/tank  pool tank

  Service  Status
  nfsd     running
  mountd   not checked

Last transitions:
  2025-03-01T10:00:05.000Z  promote done in 1530 ms: CARP 1@em0 MASTER (advskew 0)
      engine check test: 35 ms
      role primary test: 210 ms
      fsck test: 1204 ms (clean)
      mount test: 41 ms
      pool import tank: 2 ms (pool tank already imported)
      service start nfsd: 38 ms
  2025-03-01T10:00:01.000Z  promote refused in 0 ms: ${SPLIT_BRAIN}
      ${SPLIT_BRAIN}
  2025-03-01T09:59:59.000Z  demote failed in 60012 ms: CARP 1@em0 BACKUP (advskew 100)
      service stop nfsd: 60000 ms FAILED (service nfsd onestop timed out after 60 s)
      unmount test: 12 ms FAILED (umount: /hast/test: target is busy)

Warnings:
  ! test is degraded: the peer is not connected; 3145728 bytes to synchronise.
  ! This node could not let go of its resources: unmount of test: umount: /hast/test: target is busy.
`,
  );
});

t.test('a secondary with nothing to report: no services, no transitions, no warnings', async (t) => {
  const view: SupervisorView = {
    snapshot: {
      carp: { state: 'BACKUP', detail: '1@em0 BACKUP (advskew 100)' },
      carpError: undefined,
      engineError: undefined,
      mountsError: undefined,
      resources: [
        {
          name: 'test',
          engine: { name: 'test', role: 'secondary', status: 'complete', dirty: 0, splitBrain: false },
          device: undefined,
          mountpoint: '/hast/test',
          mountedFrom: undefined,
          pool: undefined,
          poolImported: undefined,
          fsckRunning: undefined,
        },
      ],
      services: [],
    },
    observedAt: '2025-03-01T10:01:00.000Z',
    decision: { action: 'none', reason: 'secondary as wanted (CARP 1@em0 BACKUP (advskew 100))' },
    wanted: { role: 'secondary', why: 'CARP 1@em0 BACKUP (advskew 100)' },
    running: undefined,
    history: [],
    warnings: [],
  };
  const report = buildStatusReport(view, { ...SELF, node: 'hastb', engine: { kind: 'freebsd', pid: undefined, running: true, restarts: 0 } });
  t.same(report.resources, [{ name: 'test', role: 'secondary', status: 'complete', dirty: 0, ...NO_SPLIT_BRAIN, device: '-', mounted: '-' }]);
  t.equal(report.actual, 'secondary');
  t.equal(
    formatStatusReport(report),
    `carp-hast supervisor on hastb (pid 4242, up since 2025-03-01T09:59:58.000Z)
  CARP:     1@em0 BACKUP (advskew 100)
  wanted:   secondary (CARP 1@em0 BACKUP (advskew 100))
  actual:   secondary
  engine:   freebsd, running, 0 restarts

  Resource  Role       Status    Dirty  Device  Mounted
  test      secondary  complete  0B     -       -
`,
  );
});

t.test('just started: nothing read yet, the engine not running', async (t) => {
  const view: SupervisorView = { snapshot: undefined, observedAt: undefined, decision: undefined, wanted: undefined, running: undefined, history: [], warnings: [] };
  const report = buildStatusReport(view, { ...SELF, engine: { kind: 'builtin', pid: undefined, running: false, restarts: 0 } });
  t.same(report, {
    ...SELF,
    engine: { kind: 'builtin', pid: undefined, running: false, restarts: 0 },
    carp: undefined,
    wanted: undefined,
    actual: 'unknown (not read yet)',
    decision: undefined,
    running: undefined,
    resources: [],
    services: [],
    transitions: [],
    warnings: [],
  });
  t.equal(
    formatStatusReport(report),
    `carp-hast supervisor on hasta (pid 4242, up since 2025-03-01T09:59:58.000Z)
  CARP:     not read yet
  wanted:   unknown
  actual:   unknown (not read yet)
  engine:   builtin, not running, 0 restarts

  Resource  Role  Status  Dirty  Device  Mounted
`,
  );
});

t.test('an unreadable CARP, a promotion half done, an engine error and a pool not imported', async (t) => {
  const carpError = "reading the CARP state on linux needs carp.vip: only FreeBSD's ifconfig shows CARP";
  const view: SupervisorView = {
    snapshot: {
      carp: undefined,
      carpError,
      engineError: undefined,
      mountsError: undefined,
      resources: [
        { ...TEST_PRIMARY, engine: { name: 'test', role: 'primary', status: 'complete', dirty: 0, splitBrain: false }, mountedFrom: undefined },
        { ...TANK_PRIMARY, engine: { name: 'tank', role: 'unknown', status: undefined, dirty: 0, splitBrain: false, error: 'hastctl error 1' }, device: undefined, poolImported: false },
      ],
      services: [
        { name: 'nfsd', running: undefined, error: 'nfsd-status timed out after 60 s' },
        { name: 'mountd', running: false },
      ],
    },
    observedAt: '2025-03-01T10:02:00.000Z',
    decision: undefined,
    wanted: { role: 'primary', why: 'switch primary requested' },
    running: { direction: 'promote', reason: 'switch primary requested', startedAt: '2025-03-01T10:02:00.000Z' },
    history: [],
    warnings: [`CARP cannot be read: ${carpError}.`, 'The status of service nfsd cannot be read: nfsd-status timed out after 60 s.'],
  };
  const report = buildStatusReport(view, SELF);
  t.same(report.carp, { error: carpError });
  t.equal(
    report.actual,
    'in between: test: role primary, tank: role unknown, test: not mounted on /hast/test, tank: pool tank not imported, ' +
      'service mountd not running',
  );
  t.same(report.resources, [
    { name: 'test', role: 'primary', status: 'complete', dirty: 0, ...NO_SPLIT_BRAIN, device: '/dev/hast/test', mounted: '-' },
    { name: 'tank', role: 'unknown', status: 'error: hastctl error 1', dirty: 0, ...NO_SPLIT_BRAIN, device: '-', mounted: '-' },
  ]);
  t.same(report.services, [
    { name: 'nfsd', status: 'unknown' },
    { name: 'mountd', status: 'stopped' },
  ]);
  t.equal(
    formatStatusReport(report),
    `carp-hast supervisor on hasta (pid 4242, up since 2025-03-01T09:59:58.000Z)
  CARP:     unreadable: ${carpError}
  wanted:   primary (switch primary requested)
  actual:   ${report.actual}
  engine:   builtin, running, pid 4250, 1 restart
  now:      promote since 2025-03-01T10:02:00.000Z: switch primary requested

  Resource  Role     Status                  Dirty  Device          Mounted
  test      primary  complete                0B     /dev/hast/test  -
  tank      unknown  error: hastctl error 1  0B     -               -

  Service  Status
  nfsd     unknown
  mountd   stopped

Warnings:
  ! CARP cannot be read: ${carpError}.
  ! The status of service nfsd cannot be read: nfsd-status timed out after 60 s.
`,
  );
});

t.test('a stale mount is named first; a resource the engine does not list is unknown', async (t) => {
  const view: SupervisorView = {
    ...PRIMARY_VIEW,
    snapshot: {
      carp: MASTER,
      carpError: undefined,
      engineError: undefined,
      mountsError: undefined,
      resources: [{ ...TEST_PRIMARY, engine: undefined, device: undefined }],
      services: [],
    },
  };
  const report = buildStatusReport(view, SELF);
  t.equal(
    report.actual,
    'in between: /hast/test is mounted from /dev/hast/test but test is unknown in the engine, test: role unknown, test: mounted on /hast/test',
  );
  t.same(report.resources, [{ name: 'test', role: 'unknown', status: '-', dirty: 0, ...NO_SPLIT_BRAIN, device: '-', mounted: '/hast/test' }]);
});

t.test('the text lists the last five transitions; JSON keeps them all', async (t) => {
  const history = [6, 5, 4, 3, 2, 1].map((id): TransitionRecord => ({
    id,
    direction: id % 2 === 0 ? 'promote' : 'demote',
    reason: `reason ${id}`,
    startedAt: `2025-03-01T10:00:0${id}.000Z`,
    durationMs: id,
    outcome: 'cancelled',
    steps: [{ name: 'device wait', target: 'test', outcome: 'cancelled', durationMs: id }],
  }));
  const report = buildStatusReport({ ...PRIMARY_VIEW, history, warnings: [] }, SELF);
  t.equal(report.transitions.length, 6);
  const text = formatStatusReport(report);
  t.equal(
    text.slice(text.indexOf('Last transitions:')),
    `Last transitions:
  2025-03-01T10:00:06.000Z  promote cancelled in 6 ms: reason 6
      device wait test: 6 ms CANCELLED
  2025-03-01T10:00:05.000Z  demote cancelled in 5 ms: reason 5
      device wait test: 5 ms CANCELLED
  2025-03-01T10:00:04.000Z  promote cancelled in 4 ms: reason 4
      device wait test: 4 ms CANCELLED
  2025-03-01T10:00:03.000Z  demote cancelled in 3 ms: reason 3
      device wait test: 3 ms CANCELLED
  2025-03-01T10:00:02.000Z  promote cancelled in 2 ms: reason 2
      device wait test: 2 ms CANCELLED
`,
  );
});

const SPLIT_BRAIN_CONF = parseSupervisorConf(
  `[engine]
node = "b"
[carp]
vhids = ["1@em0"]
[supervisor]
min_promote_interval = "0s"
[[resource]]
name = "test"
fstype = "ext4"
mountpoint = "/hast/test"
[[resource]]
name = "data"
fstype = "none"
`,
  '/etc/carp-hast.toml',
);

const B = { ...SELF, node: 'b' };

t.test('split-brain on a secondary: which node holds which changes, how to recover, and the refused promotion', async (t) => {
  const node = new ListedNode([]);
  // test: our engine with both amounts; data: FreeBSD's hastd, which said it in its log only.
  node.list =
    listBlock('test', 'secondary', 'split-brain', {
      splitBrainLine: '  split-brain: local changes: 3145728 (3.0MB), peer changes: 12582912 (12MB)\n',
    }) +
    listBlock('data', 'secondary', 'degraded');
  node.logged.add('data');
  const supervisor = new Supervisor({ config: SPLIT_BRAIN_CONF, ops: node, log: memoryLogger().log });
  supervisor.reconcile('test');
  await supervisor.idle();
  const report = buildStatusReport(supervisor.view(), B);
  t.same(report.resources, [
    { name: 'test', role: 'secondary', status: 'split-brain', dirty: 0, splitBrain: true, localChanges: 3145728, peerChanges: 12582912, device: '-', mounted: '-' },
    { name: 'data', role: 'secondary', status: 'split-brain', dirty: 0, splitBrain: true, localChanges: null, peerChanges: null, device: '-', mounted: '-' },
  ]);
  const json = JSON.parse(JSON.stringify(report)) as StatusReport;
  t.same(json.resources[1], { name: 'data', role: 'secondary', status: 'split-brain', dirty: 0, splitBrain: true, localChanges: null, peerChanges: null, device: '-', mounted: '-' }, 'unknown amounts are null in JSON');
  const testWarning =
    'Split-brain on test: both nodes wrote while apart. This node (b) changed 3.0MB, the peer 12MB. ' +
    'To keep this node\'s data, run on the other node: carp-hast recover test --discard-local, then here: carp-hast recover test --keep-local. ' +
    'To keep the other node\'s data, run it here. The node that runs --discard-local receives a full copy.';
  const dataWarning =
    'Split-brain on data: both nodes wrote while apart. This node (b) changed an unknown amount, the peer an unknown amount. ' +
    'To keep this node\'s data, run on the other node: carp-hast recover data --discard-local, then here: carp-hast recover data --keep-local. ' +
    'To keep the other node\'s data, run it here. The node that runs --discard-local receives a full copy.';
  t.strictSame(report.warnings, [testWarning, dataWarning]);
  t.equal(
    formatStatusReport(report),
    `carp-hast supervisor on b (pid 4242, up since 2025-03-01T09:59:58.000Z)
  CARP:     1@em0 BACKUP
  wanted:   secondary (CARP 1@em0 BACKUP)
  actual:   secondary
  engine:   builtin, running, pid 4250, 1 restart

  Resource  Role       Status       Dirty  Device  Mounted
  test      secondary  split-brain  0B     -       -
  data      secondary  split-brain  0B     -       -

Warnings:
  ! ${testWarning}
  ! ${dataWarning}
`,
  );

  node.carp = 'MASTER';
  supervisor.reconcile('test');
  await supervisor.idle();
  t.strictSame(node.calls, [], 'nothing was touched');
  const refused = buildStatusReport(supervisor.view(), B);
  const reason = 'split-brain on test, data: not promoting; see carp-hast status for the recovery';
  t.match(refused.transitions, [{ direction: 'promote', outcome: 'refused', error: reason }]);
  t.equal(refused.warnings.at(-1), `Promotion refused: ${reason}.`);
});

t.test('split-brain on a primary: its own data is given up only once CARP has made it secondary', async (t) => {
  const node = new ListedNode([]);
  node.list = listBlock('data', 'primary', 'split-brain', {
    splitBrainLine: '  split-brain: local changes: 0 (0B), peer changes: unknown\n',
  });
  node.devices.add('/dev/hast/data');
  node.carp = 'MASTER';
  const config = { ...SPLIT_BRAIN_CONF, resources: SPLIT_BRAIN_CONF.resources.filter((r) => r.name === 'data') };
  const supervisor = new Supervisor({ config, ops: node, log: memoryLogger().log });
  supervisor.reconcile('test');
  await supervisor.idle();
  const report = buildStatusReport(supervisor.view(), B);
  t.equal(report.actual, 'primary');
  t.strictSame(report.warnings, [
    'Split-brain on data: both nodes wrote while apart. This node (b) changed 0B, the peer an unknown amount. ' +
      'To keep this node\'s data, run on the other node: carp-hast recover data --discard-local. ' +
      'To keep the other node\'s data, run it here once CARP has made this node secondary. The node that runs --discard-local receives a full copy.',
  ]);
});
