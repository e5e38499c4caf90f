import t from 'tap';
import fc from 'fast-check';
import { inspect, isDeepStrictEqual } from 'node:util';
import {
  ControlProtocolError,
  decodeControlReply,
  decodeControlRequest,
  EHAST_INVALID,
  EHAST_NOENTRY,
  EHAST_UNIMPLEMENTED,
  encodeControlReply,
  encodeControlRequest,
  firstResourceError,
  type ControlReply,
  type ControlRequest,
  type ResourceReply,
} from '../../src/engine/control-protocol.js';
import { encodePacket } from '../../src/engine/hast-proto.js';
import { Nv } from '../../src/engine/nv.js';
import { primaryReply as primary } from '../fixtures/resource-replies.js';


t.test('a SETROLE request is byte for byte what hastctl sends', async (t) => {
  const request: ControlRequest = { cmd: 'setrole', role: 'primary', resources: ['shared'] };
  const bytes = Buffer.concat(encodePacket(encodeControlRequest(request)));
  // version 2, 74 bytes of nv; then records: type, namesize, dsize (LE), name padded to 8, data padded to 8.
  const expected = [
    '02 4a000000',
    '02 04 01000000 636d640000000000 0100000000000000', // uint8 cmd = 1 (SETROLE)
    '02 05 01000000 726f6c6500000000 0200000000000000', // uint8 role = 2 (primary)
    '11 0a 07000000 7265736f75726365 3000000000000000 7368617265640000', // string resource0 = "shared"
  ].join('');
  t.equal(bytes.toString('hex'), expected.replaceAll(' ', ''));
});

t.test('a STATUS request carries cmd 2 and the names, nothing else', async (t) => {
  const nv = encodeControlRequest({ cmd: 'status', resources: ['all'] });
  const expected = new Nv().addUint8('cmd', 2).addString('resource0', 'all');
  t.same(nv.encode(), expected.encode());
});

t.test('requests decode as hastd reads them', async (t) => {
  const requests: ControlRequest[] = [
    { cmd: 'setrole', role: 'init', resources: ['all'] },
    { cmd: 'setrole', role: 'secondary', resources: ['a', 'b', 'c'] },
    { cmd: 'status', resources: ['x'] },
  ];
  for (const request of requests) t.same(decodeControlRequest(encodeControlRequest(request)), request);
  const gap = new Nv().addUint8('cmd', 2).addString('resource0', 'a').addString('resource2', 'c');
  t.same(decodeControlRequest(gap), { cmd: 'status', resources: ['a'] }, 'names stop at the first missing index');
  const extraRole = new Nv().addUint8('cmd', 2).addUint8('role', 9).addString('resource0', 'a');
  t.same(decodeControlRequest(extraRole), { cmd: 'status', resources: ['a'] }, 'STATUS ignores role');
});

t.test('bad requests: the global error hastd answers with, or none', async (t) => {
  const cases: [string, Nv, string, number | undefined][] = [
    ['no cmd', new Nv().addString('resource0', 'a'), "Control header is missing 'cmd' field.", undefined],
    ['cmd 0', new Nv().addUint8('cmd', 0).addString('resource0', 'a'), "Control header is missing 'cmd' field.", undefined],
    ['cmd of the wrong type', new Nv().addUint16('cmd', 2).addString('resource0', 'a'), "Control header is missing 'cmd' field.", undefined],
    ['no resource0', new Nv().addUint8('cmd', 2), "Control header is missing 'resource0' field.", EHAST_INVALID],
    ['resource0 not a string', new Nv().addUint8('cmd', 2).addUint8('resource0', 1), "Control header is missing 'resource0' field.", EHAST_INVALID],
    ['SETROLE without role', new Nv().addUint8('cmd', 1).addString('resource0', 'a'), 'Invalid role received (0).', EHAST_INVALID],
    ['SETROLE role 4', new Nv().addUint8('cmd', 1).addUint8('role', 4).addString('resource0', 'a'), 'Invalid role received (4).', EHAST_INVALID],
    ['unknown cmd', new Nv().addUint8('cmd', 3).addString('resource0', 'a'), 'Invalid command received (3).', EHAST_UNIMPLEMENTED],
    ['unknown cmd, no resource0', new Nv().addUint8('cmd', 3), "Control header is missing 'resource0' field.", EHAST_INVALID],
  ];
  for (const [what, nv, message, hastError] of cases) {
    const error = t.throws(() => decodeControlRequest(nv), ControlProtocolError, what) as ControlProtocolError;
    t.equal(error.message, message, what);
    t.equal(error.hastError, hastError, what);
  }
});

t.test('a STATUS reply has control.c fields, types and order', async (t) => {
  const { worker: _worker, sourceaddr: _sourceaddr, ...configured } = primary;
  const idle: ResourceReply = { ...configured, name: 'idle', role: 'init', workerpid: 0 };
  const reply: ControlReply = { cmd: 'status', error: 0, resources: [primary, { name: 'nope', error: EHAST_NOENTRY }, idle] };
  const expected = new Nv()
    .addString('resource0', 'shared')
    .addString('provname0', 'shared')
    .addString('localpath0', '/dev/ada0p3')
    .addString('remoteaddr0', 'tcp4://10.0.0.2:8457')
    .addString('sourceaddr0', 'tcp4://10.0.0.1')
    .addString('replication0', 'fullsync')
    .addString('checksum0', 'crc32')
    .addString('compression0', 'lzf')
    .addString('role0', 'primary')
    .addInt32('workerpid0', 4242)
    .addString('status0', 'complete')
    .addUint64('dirty0', 4194304n)
    .addUint32('extentsize0', 2097152)
    .addUint32('keepdirty0', 64)
    .addUint64('stat_read0', 11n)
    .addUint64('stat_write0', 22n)
    .addUint64('stat_delete0', 3n)
    .addUint64('stat_flush0', 4n)
    .addUint64('stat_activemap_update0', 5n)
    .addUint64('stat_read_error0', 6n)
    .addUint64('stat_write_error0', 7n)
    .addUint64('stat_delete_error0', 8n)
    .addUint64('stat_flush_error0', 9n)
    .addUint64('idle_queue_size0', 5n)
    .addUint64('local_queue_size0', 1n)
    .addUint64('send_queue_size0', 2n)
    .addUint64('recv_queue_size0', 3n)
    .addUint64('done_queue_size0', 4n)
    .addString('resource1', 'nope')
    .addInt16('error1', 1)
    .addString('resource2', 'idle')
    .addString('provname2', 'shared')
    .addString('localpath2', '/dev/ada0p3')
    .addString('remoteaddr2', 'tcp4://10.0.0.2:8457')
    .addString('replication2', 'memsync')
    .addString('checksum2', 'crc32')
    .addString('compression2', 'lzf')
    .addString('role2', 'init')
    .addInt32('workerpid2', 0);
  t.same(encodeControlReply(reply).encode().toString('hex'), expected.encode().toString('hex'));
  const decoded = decodeControlReply(expected, 'status');
  t.same(decoded.resources[0], { ...primary, replication: 'fullsync' }, 'the negotiated mode is what comes back');
  t.same(decoded.resources[1], { name: 'nope', error: 1 });
  t.same(decoded.resources[2], idle);
  t.equal(firstResourceError(decoded.resources), 1);
});

t.test('a SETROLE reply carries the previous roles; a global error comes last', async (t) => {
  const reply: ControlReply = {
    cmd: 'setrole',
    error: EHAST_INVALID,
    resources: [
      { name: 'a', previousRole: 'secondary' },
      { name: 'b', error: EHAST_NOENTRY },
    ],
  };
  const expected = new Nv()
    .addString('resource0', 'a')
    .addString('role0', 'secondary')
    .addString('resource1', 'b')
    .addInt16('error1', 1)
    .addInt16('error', 2);
  t.same(encodeControlReply(reply).encode(), expected.encode());
  t.same(decodeControlReply(expected, 'setrole'), reply);
  t.same(decodeControlReply(new Nv(), 'setrole'), { cmd: 'setrole', error: 0, resources: [] });
  t.equal(firstResourceError([{ name: 'a', previousRole: 'init' }]), 0);
});

t.test('worker numbers hastd leaves out read as 0, as hastctl reads them', async (t) => {
  const nv = new Nv()
    .addString('resource0', 'r')
    .addString('provname0', 'r')
    .addString('localpath0', '/dev/x')
    .addString('remoteaddr0', 'none')
    .addString('replication0', 'async')
    .addString('checksum0', 'none')
    .addString('compression0', 'hole')
    .addString('role0', 'secondary')
    .addString('status0', 'degraded');
  const [entry] = decodeControlReply(nv, 'status').resources;
  t.same(entry, {
    name: 'r',
    role: 'secondary',
    provname: 'r',
    localpath: '/dev/x',
    remoteaddr: 'none',
    replication: 'async',
    checksum: 'none',
    compression: 'hole',
    workerpid: 0,
    worker: {
      status: 'degraded',
      replication: 'async',
      dirty: 0,
      extentsize: 0,
      keepdirty: 0,
      statistics: {
        reads: 0n,
        writes: 0n,
        deletes: 0n,
        flushes: 0n,
        activemapUpdates: 0n,
        readErrors: 0n,
        writeErrors: 0n,
        deleteErrors: 0n,
        flushErrors: 0n,
      },
      queues: { local: 0, send: 0, recv: 0, done: 0, idle: 0 },
    },
  });
});

t.test('malformed replies are ControlProtocolErrors naming the field', async (t) => {
  const base = () =>
    new Nv()
      .addString('resource0', 'r')
      .addString('provname0', 'r')
      .addString('localpath0', '/dev/x')
      .addString('remoteaddr0', 'none')
      .addString('checksum0', 'none')
      .addString('compression0', 'hole')
      .addString('role0', 'init');
  const cases: [string, Nv, 'setrole' | 'status', string][] = [
    ['no replication', base(), 'status', 'Invalid control reply: nv field "replication0" (string) is missing.'],
    ['bad replication', base().addString('replication0', 'unknown'), 'status', `Invalid control reply: field "replication0" is 'unknown'.`],
    [
      'bad worker status',
      base().addString('replication0', 'async').addString('status0', 'sleepy'),
      'status',
      `Invalid control reply: field "status0" is 'sleepy'.`,
    ],
    [
      'dirty past 2^53',
      base().addString('replication0', 'async').addString('status0', 'complete').addUint64('dirty0', 1n << 60n),
      'status',
      "Field 'dirty0' is too large (1152921504606846976).",
    ],
    ['SETROLE without role', new Nv().addString('resource0', 'r'), 'setrole', 'Invalid control reply: nv field "role0" (string) is missing.'],
    ['SETROLE role as a number', new Nv().addString('resource0', 'r').addUint8('role0', 2), 'setrole', 'Invalid control reply: nv field "role0" is uint8, expected string.'],
  ];
  for (const [what, nv, cmd, message] of cases) {
    t.throws(() => decodeControlReply(nv, cmd), new ControlProtocolError(message), what);
  }
});

// Plain objects, as the decoder builds them (fast-check's default has a null prototype).
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true });
}
const name = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0'));
const role = fc.constantFrom('init' as const, 'primary' as const, 'secondary' as const);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const size = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const worker = record({
  status: fc.constantFrom('complete' as const, 'degraded' as const),
  replication: fc.constantFrom('fullsync' as const, 'memsync' as const, 'async' as const),
  dirty: size,
  extentsize: fc.nat({ max: 0xffffffff }),
  keepdirty: fc.nat({ max: 0xffffffff }),
  statistics: record({
    reads: u64,
    writes: u64,
    deletes: u64,
    flushes: u64,
    activemapUpdates: u64,
    readErrors: u64,
    writeErrors: u64,
    deleteErrors: u64,
    flushErrors: u64,
  }),
  queues: record({ local: size, send: size, recv: size, done: size, idle: size }),
});
const resourceReply = fc
  .record(
    {
      name,
      role,
      provname: name,
      localpath: name,
      remoteaddr: name,
      sourceaddr: name,
      replication: fc.constantFrom('fullsync' as const, 'memsync' as const, 'async' as const),
      checksum: fc.constantFrom('none' as const, 'crc32' as const, 'sha256' as const),
      compression: fc.constantFrom('none' as const, 'hole' as const, 'lzf' as const),
      workerpid: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      worker,
    },
    {
      requiredKeys: ['name', 'role', 'provname', 'localpath', 'remoteaddr', 'replication', 'checksum', 'compression', 'workerpid'],
      noNullPrototype: true,
    },
  )
  // On the wire there is one replication field; with a worker it is the worker's.
  .map((r): ResourceReply => (r.worker === undefined ? r : { ...r, replication: r.worker.replication }));
const failure = record({ name, error: fc.integer({ min: -32768, max: 32767 }).filter((e) => e !== 0) });
const globalError = fc.integer({ min: -32768, max: 32767 });

t.test('requests and replies survive encode and decode', async () => {
  fc.assert(
    fc.property(
      fc.oneof(
        record({ cmd: fc.constant('setrole' as const), role, resources: fc.array(name, { minLength: 1, maxLength: 5 }) }),
        record({ cmd: fc.constant('status' as const), resources: fc.array(name, { minLength: 1, maxLength: 5 }) }),
      ),
      (request) => {
        const decoded = decodeControlRequest(Nv.decode(encodeControlRequest(request).encode()));
        if (!isDeepStrictEqual(decoded, request)) throw new Error(inspect(decoded));
      },
    ),
    { numRuns: 500 },
  );
  const same = (a: unknown, b: unknown) => {
    if (!isDeepStrictEqual(a, b)) throw new Error(`${inspect(a)} !== ${inspect(b)}`);
  };
  fc.assert(
    fc.property(fc.array(fc.oneof(resourceReply, failure), { maxLength: 4 }), globalError, (resources, error) => {
      const reply: ControlReply = { cmd: 'status', error, resources };
      same(decodeControlReply(Nv.decode(encodeControlReply(reply).encode()), 'status'), reply);
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.array(fc.oneof(record({ name, previousRole: role }), failure), { maxLength: 4 }), globalError, (resources, error) => {
      const reply: ControlReply = { cmd: 'setrole', error, resources };
      same(decodeControlReply(Nv.decode(encodeControlReply(reply).encode()), 'setrole'), reply);
    }),
    { numRuns: 500 },
  );
});

// Random nv lists built from the field names the protocol uses, with random types and values.
const fieldName = fc.oneof(
  fc.constantFrom('cmd', 'role', 'error', 'resource'),
  fc.tuple(
    fc.constantFrom('resource', 'error', 'role', 'provname', 'localpath', 'remoteaddr', 'replication', 'checksum', 'compression', 'status', 'dirty', 'workerpid'),
    fc.nat({ max: 2 }),
  ).map(([n, i]) => `${n}${i}`),
);
const field = fc.tuple(
  fieldName,
  fc.oneof(
    fc.nat({ max: 255 }).map((v) => (nv: Nv, n: string) => nv.addUint8(n, v)),
    fc.integer({ min: -32768, max: 32767 }).map((v) => (nv: Nv, n: string) => nv.addInt16(n, v)),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v) => (nv: Nv, n: string) => nv.addInt32(n, v)),
    u64.map((v) => (nv: Nv, n: string) => nv.addUint64(n, v)),
    fc.constantFrom('all', 'init', 'primary', 'complete', 'async', 'none', 'x').map((v) => (nv: Nv, n: string) => nv.addString(n, v)),
  ),
);

t.test('random nv lists decode or fail with ControlProtocolError, nothing else', async () => {
  fc.assert(
    fc.property(fc.array(field, { maxLength: 12 }), fc.constantFrom('setrole' as const, 'status' as const), (fields, cmd) => {
      const nv = new Nv();
      for (const [n, add] of fields) add(nv, n);
      for (const decode of [() => decodeControlRequest(nv), () => decodeControlReply(nv, cmd)]) {
        try {
          decode();
        } catch (error) {
          if (!(error instanceof ControlProtocolError)) throw error;
        }
      }
    }),
    { numRuns: 5000 },
  );
});
