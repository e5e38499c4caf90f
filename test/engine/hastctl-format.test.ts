import t from 'tap';
import type { ResourceReply } from '../../src/engine/control-protocol.js';
import { formatDump, formatList, formatStatus } from '../../src/engine/hastctl-format.js';
import { layoutForCreate } from '../../src/engine/metadata.js';
import { primaryReply } from '../fixtures/resource-replies.js';

t.test('formatDump prints hastctl dump for a freshly created 1 GiB file', async (t) => {
  // `hastctl create` on a 1073741824-byte file (512-byte sectors, 2 MiB extents, keepdirty 64): the map
  // covers 1073741824 - 4096 bytes = 512 extents = 64 bytes, one 512-byte sector; so the data starts at
  // 4096 + 512 = 4608 and is 1073741824 - 4608 = 1073737216 bytes, which humanize_number shows as 1.0G.
  const metadata = layoutForCreate({
    mediasize: 1073741824n,
    extentsize: 2097152,
    keepdirty: 64,
    sectorsize: 512,
    resource: 'shared',
  });
  t.equal(
    formatDump(metadata),
    'resource: shared\n' +
      '    datasize: 1073737216 (1.0GB)\n' +
      '    extentsize: 2097152 (2.0MB)\n' +
      '    keepdirty: 64\n' +
      '    localoff: 4608\n' +
      '    resuid: 0\n' +
      '    localcnt: 0\n' +
      '    remotecnt: 0\n' +
      '    prevrole: init\n',
  );
});

t.test('formatDump prints 64-bit counters in full', async (t) => {
  const text = formatDump({
    resource: 'data',
    datasize: 134217728n,
    extentsize: 65536,
    keepdirty: 8,
    localoff: 8192n,
    resuid: 18446744073709551615n,
    localcnt: 12n,
    remotecnt: 9007199254740993n,
    prevrole: 'secondary',
  });
  t.equal(
    text,
    [
      'resource: data',
      '    datasize: 134217728 (128MB)',
      '    extentsize: 65536 (64KB)',
      '    keepdirty: 8',
      '    localoff: 8192',
      '    resuid: 18446744073709551615',
      '    localcnt: 12',
      '    remotecnt: 9007199254740993',
      '    prevrole: secondary',
      '',
    ].join('\n'),
  );
});

// A primary with a peer connected, a source address and a worker; as `hastctl status/list` would get it.
const primary: ResourceReply = { ...primaryReply, replication: 'fullsync' };

// A secondary no primary has connected to yet: no worker, so no status and zero counters.
const waiting: ResourceReply = {
  name: 'data',
  role: 'secondary',
  provname: 'data',
  localpath: '/dev/ada1',
  remoteaddr: 'tcp://10.0.0.2',
  replication: 'memsync',
  checksum: 'none',
  compression: 'hole',
  workerpid: 0,
};

const off: ResourceReply = { ...waiting, name: 'spare', provname: 'spare', role: 'init', localpath: '/dev/md0' };

const zeroCounters = [
  '  statistics:',
  '    reads: 0',
  '    writes: 0',
  '    deletes: 0',
  '    flushes: 0',
  '    activemap updates: 0',
  '    local errors: read: 0, write: 0, delete: 0, flush: 0',
  '    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0',
];

t.test('formatStatus: header once, %-9s status or -, %-15s role, then the components', async (t) => {
  t.equal(
    formatStatus([primary, waiting, off, { name: 'nope', error: 1 }]),
    'Name\tStatus\t Role\t\tComponents\n' +
      'shared\tcomplete primary        /dev/ada0p3\ttcp4://10.0.0.2:8457\n' +
      'data\t-        secondary      /dev/ada1\ttcp://10.0.0.2\n' +
      'spare\t-        init           /dev/md0\ttcp://10.0.0.2\n' +
      'nope\tERR1\n',
  );
  const degraded = { ...primary, worker: { ...primary.worker!, status: 'degraded' as const } };
  t.equal(formatStatus([degraded]), 'Name\tStatus\t Role\t\tComponents\nshared\tdegraded primary        /dev/ada0p3\ttcp4://10.0.0.2:8457\n');
  t.equal(formatStatus([]), '', 'no resources, no header');
});

t.test('formatList: a primary with a worker, source address and pid', async (t) => {
  t.equal(
    formatList([primary]),
    [
      'shared:',
      '  role: primary',
      '  provname: shared',
      '  localpath: /dev/ada0p3',
      '  extentsize: 2097152 (2.0MB)',
      '  keepdirty: 64',
      '  remoteaddr: tcp4://10.0.0.2:8457',
      '  sourceaddr: tcp4://10.0.0.1',
      '  replication: fullsync',
      '  status: complete',
      '  workerpid: 4242',
      '  dirty: 4194304 (4.0MB)',
      '  statistics:',
      '    reads: 11',
      '    writes: 22',
      '    deletes: 3',
      '    flushes: 4',
      '    activemap updates: 5',
      '    local errors: read: 6, write: 7, delete: 8, flush: 9',
      '    queues: local: 1, send: 2, recv: 3, done: 4, idle: 5',
      '',
    ].join('\n'),
  );
});

t.test('formatList: no worker means zeros and no status or workerpid; errors get two lines', async (t) => {
  t.equal(
    formatList([waiting, { name: 'nope', error: 1 }, off]),
    [
      'data:',
      '  role: secondary',
      '  provname: data',
      '  localpath: /dev/ada1',
      '  extentsize: 0 (0B)',
      '  keepdirty: 0',
      '  remoteaddr: tcp://10.0.0.2',
      '  replication: memsync',
      '  dirty: 0 (0B)',
      ...zeroCounters,
      'nope:',
      '  error: 1',
      'spare:',
      '  role: init',
      '  provname: spare',
      '  localpath: /dev/md0',
      '  extentsize: 0 (0B)',
      '  keepdirty: 0',
      '  remoteaddr: tcp://10.0.0.2',
      '  replication: memsync',
      '  dirty: 0 (0B)',
      ...zeroCounters,
      '',
    ].join('\n'),
  );
  t.equal(formatList([]), '');
});

t.test('formatList shows the negotiated replication mode of a running worker', async (t) => {
  const negotiated = { ...primary, replication: 'memsync' as const };
  t.match(formatList([negotiated]), /\n {2}replication: fullsync\n/);
});
