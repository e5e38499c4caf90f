import t, { type Test } from 'tap';
import type { ResourceReply } from '../../src/engine/control-protocol.js';
import { formatList, formatStatus } from '../../src/engine/hastctl-format.js';
import { emptyStatistics } from '../../src/engine/worker-status.js';
import {
  HastctlOutputError,
  isHastctlFailure,
  parseHastctlList,
  parseHastctlStatus,
  type HastList,
} from '../../src/supervisor/hastctl-output.js';
import { primaryReply } from '../fixtures/resource-replies.js';

// A primary with its peer connected and some traffic behind it.
const primaryComplete = primaryReply;

// A secondary whose primary went away: a worker, degraded.
const secondaryDegraded: ResourceReply = {
  name: 'data',
  role: 'secondary',
  provname: 'data',
  localpath: '/dev/ada1',
  remoteaddr: 'tcp://10.0.0.1',
  replication: 'async',
  checksum: 'none',
  compression: 'hole',
  workerpid: 777,
  worker: {
    status: 'degraded',
    replication: 'async',
    dirty: 0,
    extentsize: 1048576,
    keepdirty: 0,
    statistics: emptyStatistics(),
    queues: { local: 0, send: 0, recv: 0, done: 0, idle: 128 },
  },
};

// A resource in role init: no worker at all.
const initNoWorker: ResourceReply = {
  name: 'spare',
  role: 'init',
  provname: 'spare',
  localpath: '/dev/md0',
  remoteaddr: '10.0.0.2',
  replication: 'fullsync',
  checksum: 'none',
  compression: 'hole',
  workerpid: 0,
};

const zeroStatistics = {
  reads: 0,
  writes: 0,
  deletes: 0,
  flushes: 0,
  activemapUpdates: 0,
  localErrors: { read: 0, write: 0, delete: 0, flush: 0 },
  queues: { local: 0, send: 0, recv: 0, done: 0, idle: 0 },
};

t.test('status round-trips through our engine formatter', async (t) => {
  const text = formatStatus([primaryComplete, secondaryDegraded, initNoWorker, { name: 'nope', error: 1 }]);
  t.same(parseHastctlStatus(text), [
    { name: 'shared', status: 'complete', role: 'primary', localpath: '/dev/ada0p3', remoteaddr: 'tcp4://10.0.0.2:8457' },
    { name: 'data', status: 'degraded', role: 'secondary', localpath: '/dev/ada1', remoteaddr: 'tcp://10.0.0.1' },
    { name: 'spare', status: undefined, role: 'init', localpath: '/dev/md0', remoteaddr: '10.0.0.2' },
    { name: 'nope', error: 1 },
  ]);
  t.same(parseHastctlStatus(formatStatus([])), [], 'no resources, no lines');
});

t.test('list round-trips through our engine formatter', async (t) => {
  const entries = parseHastctlList(
    formatList([primaryComplete, secondaryDegraded, initNoWorker, { name: 'nope', error: 1 }, { name: 'odd', error: 3 }]),
  );
  t.same(entries, [
    {
      name: 'shared',
      role: 'primary',
      status: 'complete',
      provname: 'shared',
      localpath: '/dev/ada0p3',
      extentsize: 2097152,
      keepdirty: 64,
      remoteaddr: 'tcp4://10.0.0.2:8457',
      sourceaddr: 'tcp4://10.0.0.1',
      replication: 'fullsync',
      workerpid: 4242,
      dirty: 4194304,
      splitBrain: undefined,
      statistics: {
        reads: 11,
        writes: 22,
        deletes: 3,
        flushes: 4,
        activemapUpdates: 5,
        localErrors: { read: 6, write: 7, delete: 8, flush: 9 },
        queues: { local: 1, send: 2, recv: 3, done: 4, idle: 5 },
      },
    },
    {
      name: 'data',
      role: 'secondary',
      status: 'degraded',
      provname: 'data',
      localpath: '/dev/ada1',
      extentsize: 1048576,
      keepdirty: 0,
      remoteaddr: 'tcp://10.0.0.1',
      sourceaddr: undefined,
      replication: 'async',
      workerpid: 777,
      dirty: 0,
      splitBrain: undefined,
      statistics: { ...zeroStatistics, queues: { ...zeroStatistics.queues, idle: 128 } },
    },
    {
      name: 'spare',
      role: 'init',
      status: undefined,
      provname: 'spare',
      localpath: '/dev/md0',
      extentsize: 0,
      keepdirty: 0,
      remoteaddr: '10.0.0.2',
      sourceaddr: undefined,
      replication: 'fullsync',
      workerpid: undefined,
      dirty: 0,
      splitBrain: undefined,
      statistics: zeroStatistics,
    },
    { name: 'nope', error: 1 },
    { name: 'odd', error: 3 },
  ]);
  t.same(
    entries.map((entry) => isHastctlFailure(entry)),
    [false, false, false, true, true],
  );
  t.same(parseHastctlList(formatList([])), []);
});

// FreeBSD 10 and later (hastctl.c control_status()), as in hast-internals.md §2.1.
const FREEBSD_STATUS = [
  'Name\tStatus\t Role\t\tComponents',
  'shared\tcomplete primary        /dev/ada0p3\ttcp4://10.0.0.2:8457',
  'data\t-        secondary      /dev/ada1\t10.0.0.1',
  'nope\tERR1',
  '',
].join('\n');

t.test('FreeBSD status: the table with a resource hastd does not know', async (t) => {
  t.same(parseHastctlStatus(FREEBSD_STATUS), [
    { name: 'shared', status: 'complete', role: 'primary', localpath: '/dev/ada0p3', remoteaddr: 'tcp4://10.0.0.2:8457' },
    { name: 'data', status: undefined, role: 'secondary', localpath: '/dev/ada1', remoteaddr: '10.0.0.1' },
    { name: 'nope', error: 1 },
  ]);
});

// FreeBSD 13/14 `hastctl list` of a primary: workerpid and queues (hast-internals.md §2.1).
const FREEBSD_LIST_CURRENT = `shared:
  role: primary
  provname: shared
  localpath: /dev/ada0p3
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: tcp4://10.0.0.2:8457
  replication: memsync
  status: complete
  workerpid: 1234
  dirty: 0 (0B)
  statistics:
    reads: 19
    writes: 1024
    deletes: 0
    flushes: 8
    activemap updates: 6
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 255
`;

// `hastctl list` when it first appeared (2013): local errors, but neither workerpid nor queues.
const FREEBSD_LIST_FIRST = `shared:
  role: secondary
  provname: shared
  localpath: /dev/ada0p3
  extentsize: 2097152 (2.0MB)
  keepdirty: 0
  remoteaddr: tcp4://10.0.0.1:8457
  replication: fullsync
  status: complete
  dirty: 0 (0B)
  statistics:
    reads: 0
    writes: 1024
    deletes: 0
    flushes: 8
    activemap updates: 0
    local errors: read: 0, write: 0, delete: 0, flush: 0
`;

// FreeBSD 9 `hastctl status`: the verbose block, without local errors, queues or workerpid.
const FREEBSD_9_STATUS = `shared:
  role: primary
  provname: shared
  localpath: /dev/ada0p3
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: tcp4://10.0.0.2:8457
  sourceaddr: tcp4://10.0.0.1
  replication: fullsync
  status: degraded
  dirty: 6291456 (6.0MB)
  statistics:
    reads: 1
    writes: 2
    deletes: 3
    flushes: 4
    activemap updates: 5
nope:
  error: 1
`;

t.test('FreeBSD list of current releases', async (t) => {
  const [entry] = parseHastctlList(FREEBSD_LIST_CURRENT) as HastList[];
  t.equal(entry?.role, 'primary');
  t.equal(entry?.replication, 'memsync');
  t.equal(entry?.workerpid, 1234);
  t.equal(entry?.dirty, 0);
  t.same(entry?.statistics, {
    reads: 19,
    writes: 1024,
    deletes: 0,
    flushes: 8,
    activemapUpdates: 6,
    localErrors: { read: 0, write: 0, delete: 0, flush: 0 },
    queues: { local: 0, send: 0, recv: 0, done: 0, idle: 255 },
  });
});

t.test('FreeBSD list as it first appeared: no workerpid, no queues', async (t) => {
  const [entry] = parseHastctlList(FREEBSD_LIST_FIRST) as HastList[];
  t.equal(entry?.role, 'secondary');
  t.equal(entry?.status, 'complete');
  t.equal(entry?.workerpid, undefined);
  t.same(entry?.statistics.localErrors, { read: 0, write: 0, delete: 0, flush: 0 });
  t.equal(entry?.statistics.queues, undefined);
});

t.test('FreeBSD 9 status: the verbose blocks are read as status', async (t) => {
  t.same(parseHastctlStatus(FREEBSD_9_STATUS), [
    { name: 'shared', role: 'primary', status: 'degraded', localpath: '/dev/ada0p3', remoteaddr: 'tcp4://10.0.0.2:8457' },
    { name: 'nope', error: 1 },
  ]);
  const [entry] = parseHastctlList(FREEBSD_9_STATUS) as HastList[];
  t.equal(entry?.dirty, 6291456);
  t.equal(entry?.sourceaddr, 'tcp4://10.0.0.1');
  t.same(entry?.statistics, {
    reads: 1,
    writes: 2,
    deletes: 3,
    flushes: 4,
    activemapUpdates: 5,
    localErrors: undefined,
    queues: undefined,
  });
});

t.test('lines that are not part of the format are skipped', async (t) => {
  const status = `hastctl: some warning\n${FREEBSD_STATUS}trailing words\n`;
  t.equal(parseHastctlStatus(status).length, 3);
  const extra = '  statistics:\n    future counter: 7\n  checksum: crc32\n';
  const list = `preamble: ignored\n  role: stray\n${FREEBSD_LIST_FIRST.replace('  statistics:\n', extra)}`;
  t.same(parseHastctlList(list), parseHastctlList(FREEBSD_LIST_FIRST));
  t.same(parseHastctlList(''), []);
});

// tap's throws() matches messages as substrings; these errors are checked whole.
function throwsOutputError(t: Test, parse: () => unknown, line: number, text: string, problem: string): void {
  const error: unknown = t.throws(parse);
  t.type(error, HastctlOutputError);
  t.equal((error as Error).message, `hastctl output line ${line}: ${problem}: ${JSON.stringify(text)}`);
  t.equal((error as HastctlOutputError).line, line);
}

const HEADER = 'Name\tStatus\t Role\t\tComponents\n';

t.test('malformed status rows name the line', async (t) => {
  const rowShape = 'expected "<name>\\t<status> <role> <localpath>\\t<remoteaddr>"';
  throwsOutputError(t, () => parseHastctlStatus(`${HEADER}shared\tcomplete\n`), 2, 'shared\tcomplete', rowShape);
  const badStatus = 'shared\tbroken   primary        /dev/x\t10.0.0.2';
  const statusProblem = 'unknown status "broken" (known: complete, degraded, split-brain)';
  throwsOutputError(t, () => parseHastctlStatus(`${HEADER}${badStatus}\n`), 2, badStatus, statusProblem);
  const badRole = 'shared\t-        boss           /dev/x\t10.0.0.2';
  const roleProblem = 'unknown role "boss" (known: init, primary, secondary)';
  const text = `${HEADER}a\t-        init           /dev/y\tb\n${badRole}\n`;
  throwsOutputError(t, () => parseHastctlStatus(text), 3, badRole, roleProblem);
});

t.test('malformed list values and missing fields name the line', async (t) => {
  const lines = FREEBSD_LIST_CURRENT.split('\n');
  // [line number, replacement text, problem]
  const cases: [number, string, string][] = [
    [2, '  role: boss', 'unknown role "boss" (known: init, primary, secondary)'],
    [9, '  status: sad', 'unknown status "sad" (known: complete, degraded, split-brain)'],
    [8, '  replication: sometimes', 'unknown replication "sometimes" (known: fullsync, memsync, async)'],
    [6, '  keepdirty: many', 'keepdirty is not a number'],
    [10, '  workerpid: -1', 'workerpid is not a number'],
    [11, '  dirty: 12', 'dirty is not "<bytes> (<size>)"'],
    [5, '  extentsize: big (2.0MB)', 'extentsize is not "<bytes> (<size>)"'],
    [
      18,
      '    local errors: read: 0, write: 0, flush: 0',
      'local errors is not "read: <n>, write: <n>, delete: <n>, flush: <n>"',
    ],
    [
      19,
      '    queues: local: 0, send: 0, recv: 0, done: 0, idle: x',
      'queues is not "local: <n>, send: <n>, recv: <n>, done: <n>, idle: <n>"',
    ],
  ];
  for (const [line, replacement, problem] of cases) {
    const text = lines.map((original, index) => (index === line - 1 ? replacement : original)).join('\n');
    throwsOutputError(t, () => parseHastctlList(text), line, replacement, problem);
  }
  const noLocalpath = FREEBSD_LIST_CURRENT.replace('  localpath: /dev/ada0p3\n', '');
  throwsOutputError(t, () => parseHastctlList(noLocalpath), 1, 'shared:', 'resource shared has no "localpath" line');
  throwsOutputError(t, () => parseHastctlList('gone:\n  error: none\n'), 2, '  error: none', 'error is not a number');
  throwsOutputError(t, () => parseHastctlStatus('x:\n  role: init\n'), 1, 'x:', 'resource x has no "provname" line');
});

// Our engine after a handshake refused for split-brain: the primary, whose peer said what it changed.
const SPLIT_BRAIN_PRIMARY_LIST = `test:
  role: primary
  provname: test
  localpath: /lab/a.img
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 10.213.0.2
  sourceaddr: 10.213.0.1
  replication: fullsync
  status: split-brain
  workerpid: 5150
  dirty: 12582912 (12MB)
  split-brain: local changes: 12582912 (12MB), peer changes: 3145728 (3.0MB)
  statistics:
    reads: 40
    writes: 96
    deletes: 0
    flushes: 3
    activemap updates: 7
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 255
`;

// ...and the secondary that refused it, with no worker left and a primary that did not say.
const SPLIT_BRAIN_SECONDARY_LIST = `test:
  role: secondary
  provname: test
  localpath: /lab/b.img
  extentsize: 0 (0B)
  keepdirty: 0
  remoteaddr: 10.213.0.1
  sourceaddr: 10.213.0.2
  replication: fullsync
  status: split-brain
  dirty: 0 (0B)
  split-brain: local changes: 3145728 (3.0MB), peer changes: unknown
  statistics:
    reads: 0
    writes: 0
    deletes: 0
    flushes: 0
    activemap updates: 0
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0
`;

t.test('split-brain in our engine\'s list: the status and what each node changed', async (t) => {
  const [primary] = parseHastctlList(SPLIT_BRAIN_PRIMARY_LIST) as HastList[];
  t.equal(primary?.status, 'split-brain');
  t.equal(primary?.dirty, 12582912);
  t.same(primary?.splitBrain, { local: 12582912, peer: 3145728 });
  t.equal(primary?.statistics.activemapUpdates, 7, 'the statistics after the extra line are read');
  const [secondary] = parseHastctlList(SPLIT_BRAIN_SECONDARY_LIST) as HastList[];
  t.equal(secondary?.role, 'secondary');
  t.equal(secondary?.status, 'split-brain');
  t.same(secondary?.splitBrain, { local: 3145728, peer: undefined });
  t.same(parseHastctlStatus(SPLIT_BRAIN_SECONDARY_LIST), [
    { name: 'test', role: 'secondary', status: 'split-brain', localpath: '/lab/b.img', remoteaddr: '10.213.0.1' },
  ]);
});

t.test('split-brain in our engine\'s status table: the longer value keeps its separating space', async (t) => {
  const text = `${'Name\tStatus\t Role\t\tComponents'}
test\tsplit-brain primary        /lab/a.img\t10.213.0.2
data\tsplit-brain secondary      /lab/c.img\t10.213.0.2
`;
  t.same(parseHastctlStatus(text), [
    { name: 'test', status: 'split-brain', role: 'primary', localpath: '/lab/a.img', remoteaddr: '10.213.0.2' },
    { name: 'data', status: 'split-brain', role: 'secondary', localpath: '/lab/c.img', remoteaddr: '10.213.0.2' },
  ]);
});

t.test('split-brain round-trips through our engine formatter', async (t) => {
  const worker = { ...primaryComplete.worker!, status: 'split-brain' as const, splitBrain: { local: 6291456, peer: undefined } };
  const reply: ResourceReply = { ...primaryComplete, worker };
  const [entry] = parseHastctlList(formatList([reply])) as HastList[];
  t.equal(entry?.status, 'split-brain');
  t.same(entry?.splitBrain, { local: 6291456, peer: undefined });
  const known: ResourceReply = { ...reply, worker: { ...worker, splitBrain: { local: 0, peer: 2097152 } } };
  t.same((parseHastctlList(formatList([known]))[0] as HastList).splitBrain, { local: 0, peer: 2097152 });
  t.same(parseHastctlStatus(formatStatus([known])), [
    { name: 'shared', status: 'split-brain', role: 'primary', localpath: '/dev/ada0p3', remoteaddr: 'tcp4://10.0.0.2:8457' },
  ]);
});

t.test('a malformed split-brain line names the line', async (t) => {
  const problem = 'split-brain is not "local changes: <bytes> (<size>), peer changes: <bytes> (<size>)|unknown"';
  const original = '  split-brain: local changes: 12582912 (12MB), peer changes: 3145728 (3.0MB)';
  const replacements = [
    '  split-brain: local changes: 12582912 (12MB)',
    '  split-brain: local changes: unknown, peer changes: 3145728 (3.0MB)',
    '  split-brain: local changes: 12582912, peer changes: unknown',
    '  split-brain: peer changes: 3145728 (3.0MB), local changes: 12582912 (12MB)',
    '  split-brain: yes',
  ];
  for (const replacement of replacements) {
    throwsOutputError(t, () => parseHastctlList(SPLIT_BRAIN_PRIMARY_LIST.replace(original, replacement)), 13, replacement, problem);
  }
});
