import fc from 'fast-check';
import t from 'tap';
import type { Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CarpVhid } from '../../src/config/supervisor-conf.js';
import { parseDevdLine, type CarpTransition } from '../../src/supervisor/devd-event.js';
import { DevdSource, MAX_DEVD_LINE_BYTES, type DevdHandlers } from '../../src/supervisor/devd-source.js';
import { startDevdServer, type DevdServer } from '../../src/lab/devd-server.js';
import { memoryLogger } from '../fixtures/memory-log.js';

// UNIX socket paths are short (104 bytes on FreeBSD), too short for tap's fixture directories.
function socketPath(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'devd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'devd.pipe');
}

async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

interface Harness {
  path: string;
  source: DevdSource;
  events: string[];
  transitions: CarpTransition[];
  records: Record<string, unknown>[];
  messages: () => string[];
}

// A source on a fresh socket path (no server yet), recording everything its handlers see, in order.
function makeSource(t: Test, options: { vhids?: CarpVhid[]; handlers?: Partial<DevdHandlers>; maxBackoffMs?: number } = {}): Harness {
  const path = socketPath(t);
  const { log, records, messages } = memoryLogger();
  const events: string[] = [];
  const transitions: CarpTransition[] = [];
  const source = new DevdSource(
    { socketPath: path, log, vhids: options.vhids ?? [], initialBackoffMs: 10, maxBackoffMs: options.maxBackoffMs ?? 40 },
    {
      onCarp(transition) {
        transitions.push(transition);
        events.push(`carp ${transition.vhid}@${transition.interface} ${transition.state}`);
        options.handlers?.onCarp?.(transition);
      },
      onConnected() {
        events.push('connected');
        options.handlers?.onConnected?.();
      },
      onDisconnected(reason) {
        events.push(`disconnected: ${reason}`);
        options.handlers?.onDisconnected?.(reason);
      },
    },
  );
  t.teardown(() => source.stop());
  return { path, source, events, transitions, records, messages };
}

async function serve(t: Test, path: string): Promise<DevdServer> {
  const server = await startDevdServer(path);
  t.teardown(() => server.close());
  return server;
}

// A harness whose source is connected to a running server.
async function connected(t: Test, options?: Parameters<typeof makeSource>[1]) {
  const harness = makeSource(t, options);
  const server = await serve(t, harness.path);
  harness.source.start();
  await server.waitForClients(1);
  await until('onConnected', () => harness.events.includes('connected'));
  return { ...harness, server };
}

function warnings(records: Record<string, unknown>[]): Record<string, unknown>[] {
  return records.filter((record) => record['level'] === 40);
}

t.test('delivers CARP transitions in order and ignores every other event', async (t) => {
  const { server, source, events, transitions, records } = await connected(t);
  t.equal(source.connected, true);
  server.emit('!system=CARP subsystem=1@em0 type=BACKUP');
  server.emit('!system=IFNET subsystem=em0 type=LINK_UP');
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  server.emit('+uhub0 at bus=0 sernum="" on usbus0');
  server.emit('!system=ACPI subsystem=ACAD type=ACPI_NOTIFY notify=0x01');
  server.emit('!system=CARP subsystem=50@vlan50 type=INIT');
  server.emit('!system=CARP subsystem=1@em0 type=BACKUP');
  await until('four transitions', () => transitions.length === 4);
  t.same(events, ['connected', 'carp 1@em0 BACKUP', 'carp 1@em0 MASTER', 'carp 50@vlan50 INIT', 'carp 1@em0 BACKUP']);
  t.same(transitions[0], { vhid: 1, interface: 'em0', state: 'BACKUP' });
  t.same(warnings(records), [], 'other systems are not worth a warning');
});

t.test('reports only the configured vhids; the others are logged at debug', async (t) => {
  const { server, events, transitions, records } = await connected(t, {
    vhids: [
      { vhid: 1, interface: 'em0' },
      { vhid: 2, interface: 'em1' },
    ],
  });
  server.emit('!system=CARP subsystem=1@em1 type=MASTER');
  server.emit('!system=CARP subsystem=3@em0 type=MASTER');
  server.emit('!system=CARP subsystem=2@em1 type=MASTER');
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  await until('two transitions', () => transitions.length === 2);
  t.same(events, ['connected', 'carp 2@em1 MASTER', 'carp 1@em0 MASTER']);
  const ignored = records.filter((record) => record['msg'] === 'Ignored a CARP transition of a vhid this node does not follow.');
  t.same(
    ignored.map((record) => [record['level'], record['vhid'], record['interface'], record['state']]),
    [
      [20, 1, 'em1', 'MASTER'],
      [20, 3, 'em0', 'MASTER'],
    ],
  );
});

t.test('skips malformed lines with a warning and carries on', async (t) => {
  const { server, events, transitions, records } = await connected(t);
  server.emit('!system=CARP subsystem=1@em0 type=PRIMARY');
  server.emit('garbage');
  server.emit('');
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  await until('one transition', () => transitions.length === 1);
  t.same(events, ['connected', 'carp 1@em0 MASTER']);
  t.same(
    warnings(records).map((record) => [record['msg'], record['error'], record['component']]),
    [
      ['Skipped a malformed devd line.', 'malformed devd line "!system=CARP subsystem=1@em0 type=PRIMARY": type "PRIMARY" is not MASTER, BACKUP or INIT', 'devd'],
      ['Skipped a malformed devd line.', 'malformed devd line "garbage": starts with "g", not !, +, - or ?', 'devd'],
      ['Skipped a malformed devd line.', 'malformed devd line "": empty line', 'devd'],
    ],
  );
});

t.test('puts lines together from writes of one byte each', async (t) => {
  const { server, events, transitions } = await connected(t);
  const stream = Buffer.from('!system=CARP subsystem=1@em0 type=MASTER\n!system=IFNET subsystem=em0 type=LINK_UP\n!system=CARP subsystem=2@re0 type=BACKUP\n');
  for (let at = 0; at < stream.length; at++) await server.emitRaw(stream.subarray(at, at + 1));
  await until('two transitions', () => transitions.length === 2);
  t.same(events, ['connected', 'carp 1@em0 MASTER', 'carp 2@re0 BACKUP']);
});

t.test('a line split inside a multi-byte character still decodes', async (t) => {
  const { server, records } = await connected(t);
  const stream = Buffer.from('!system=CARP subsystem=1@é type=MASTER\n');
  const split = stream.indexOf('é') + 1;
  await server.emitRaw(stream.subarray(0, split));
  await server.emitRaw(stream.subarray(split));
  await until('a warning', () => warnings(records).length === 1);
  t.same(
    warnings(records)[0]?.['error'],
    'malformed devd line "!system=CARP subsystem=1@é type=MASTER": interface name "é" has characters other than letters, digits, ".", "_" and "-"',
  );
});

t.test('discards a line longer than 8 KiB with one warning, whatever the chunking', async (t) => {
  const { server, events, transitions, records } = await connected(t);
  const long = `!system=CARP subsystem=9@em0 type=MASTER ${'x'.repeat(MAX_DEVD_LINE_BYTES)}`;
  server.emit(long);
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  for (let at = 0; at < long.length; at += 1000) await server.emitRaw(long.slice(at, at + 1000));
  await server.emitRaw('\n!system=CARP subsystem=1@em0 type=BACKUP\n');
  const exactlyAtLimit = `!system=CARP subsystem=2@em0 type=INIT ${'y'.repeat(MAX_DEVD_LINE_BYTES - 39)}`;
  t.equal(Buffer.byteLength(exactlyAtLimit), MAX_DEVD_LINE_BYTES);
  server.emit(exactlyAtLimit);
  await until('three transitions', () => transitions.length === 3);
  t.same(events, ['connected', 'carp 1@em0 MASTER', 'carp 1@em0 BACKUP', 'carp 2@em0 INIT']);
  t.same(
    warnings(records).map((record) => [record['msg'], record['maxBytes']]),
    [
      ['Discarded a devd line longer than 8192 bytes.', 8192],
      ['Discarded a devd line longer than 8192 bytes.', 8192],
    ],
  );
});

t.test('a devd restart: onDisconnected, then reconnects and onConnected again', async (t) => {
  const { server, source, events, transitions, records } = await connected(t);
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  await until('first transition', () => transitions.length === 1);
  await server.restart();
  await until('a second onConnected', () => events.filter((event) => event === 'connected').length === 2);
  t.equal(source.connected, true);
  server.emit('!system=CARP subsystem=1@em0 type=BACKUP');
  await until('second transition', () => transitions.length === 2);
  t.same(events, ['connected', 'carp 1@em0 MASTER', 'disconnected: devd closed the connection', 'connected', 'carp 1@em0 BACKUP']);
  const lost = warnings(records).find((record) => record['msg'] === 'Lost the connection to devd; reconnecting.');
  t.same(lost?.['reason'], 'devd closed the connection');
});

t.test('a partial line is not carried over into the next connection', async (t) => {
  const { server, events, transitions } = await connected(t);
  await server.emitRaw('!system=CARP subsystem=1@em0 ');
  await server.restart();
  await server.waitForClients(1);
  await until('reconnected', () => events.filter((event) => event === 'connected').length === 2);
  server.emit('!system=CARP subsystem=2@em0 type=MASTER');
  await until('one transition', () => transitions.length === 1);
  t.same(transitions, [{ vhid: 2, interface: 'em0', state: 'MASTER' }]);
});

t.test('started before devd exists: warns once, retries quietly, connects when it appears', async (t) => {
  const { path, source, events, transitions, records } = makeSource(t, { maxBackoffMs: 20 });
  source.start();
  await until('several attempts', () => records.filter((record) => record['msg'] === 'Still cannot connect to devd.').length >= 3);
  t.equal(source.connected, false);
  const failures = records.filter((record) => String(record['msg']).includes('connect to devd'));
  t.same(failures[0]?.['msg'], 'Cannot connect to devd; retrying until it answers.');
  t.equal(failures[0]?.['level'], 40);
  t.match(String(failures[0]?.['error']), /ENOENT/);
  t.same(failures[0]?.['retryInMs'], 10);
  t.same(
    failures.slice(1, 3).map((record) => [record['level'], record['retryInMs'], record['attempts']]),
    [
      [20, 20, 2],
      [20, 20, 3],
    ],
    'later failures at debug, backoff doubled and capped',
  );
  const server = await serve(t, path);
  await until('onConnected', () => source.connected);
  server.emit('!system=CARP subsystem=1@em0 type=INIT');
  await until('a transition', () => transitions.length === 1);
  t.same(events, ['connected', 'carp 1@em0 INIT']);
  t.equal(warnings(records).length, 1, 'one warning for the whole outage');
});

t.test('by default the first retry comes after 100 ms', async (t) => {
  const { log, records } = memoryLogger();
  const source = new DevdSource(
    { socketPath: socketPath(t), log, vhids: [] },
    { onCarp: () => undefined, onConnected: () => undefined, onDisconnected: () => undefined },
  );
  t.teardown(() => source.stop());
  source.start();
  await until('a failure', () => records.length > 0);
  t.same(
    records.map((record) => [record['msg'], record['retryInMs']]),
    [['Cannot connect to devd; retrying until it answers.', 100]],
  );
});

t.test('after a successful connection the backoff and the warning start over', async (t) => {
  const { server, events, records } = await connected(t, { maxBackoffMs: 10_000 });
  await server.close();
  await until('disconnected', () => events.length === 2);
  await until('two failed attempts', () => records.filter((record) => record['msg'] === 'Still cannot connect to devd.').length === 1);
  await server.restart();
  await until('reconnected', () => events.length === 3);
  await server.close();
  await until('failed again', () => records.filter((record) => record['msg'] === 'Cannot connect to devd; retrying until it answers.').length === 2);
  const firstFailures = records.filter((record) => record['msg'] === 'Cannot connect to devd; retrying until it answers.');
  t.same(
    firstFailures.map((record) => record['retryInMs']),
    [20, 20],
    'first retry after the reconnect delay, not the backoff reached before',
  );
  t.same(events, ['connected', 'disconnected: devd closed the connection', 'connected', 'disconnected: devd closed the connection']);
});

t.test('stop() during backoff: no more attempts, and the stop resolves', async (t) => {
  const { path, source, events, records } = makeSource(t, { maxBackoffMs: 50 });
  source.start();
  await until('a failure', () => records.length > 0);
  await source.stop();
  const attempts = records.length;
  const server = await serve(t, path);
  await sleep(200);
  t.equal(server.clients(), 0);
  t.equal(records.length, attempts, 'nothing logged after stop');
  t.same(events, []);
  t.equal(source.connected, false);
});

t.test('stop() while connected closes the socket without onDisconnected; start() twice is a bug', async (t) => {
  const { server, source, events } = await connected(t);
  t.throws(() => source.start(), { message: /^DevdSource for .*devd\.pipe was already started$/ });
  await source.stop();
  t.equal(source.connected, false);
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  await until('the server dropped the client', () => server.clients() === 0);
  await source.stop();
  t.same(events, ['connected']);
});

t.test('a handler that throws is logged and the stream goes on', async (t) => {
  const { server, events, transitions, records } = await connected(t, {
    handlers: {
      onCarp(transition) {
        if (transition.state === 'MASTER') throw new Error('promotion exploded');
      },
      onDisconnected() {
        throw new Error('cleanup exploded');
      },
    },
  });
  server.emit('!system=CARP subsystem=1@em0 type=MASTER');
  server.emit('!system=CARP subsystem=1@em0 type=BACKUP');
  await until('two transitions', () => transitions.length === 2);
  await server.restart();
  await until('reconnected', () => events.filter((event) => event === 'connected').length === 2);
  const errors = records.filter((record) => record['level'] === 50);
  t.same(
    errors.map((record) => [record['msg'], record['handler'], record['error']]),
    [
      ['The devd onCarp handler failed.', 'onCarp', 'promotion exploded'],
      ['The devd onDisconnected handler failed.', 'onDisconnected', 'cleanup exploded'],
    ],
  );
});

t.test('a handler that stops the source gets nothing more from the same chunk', async (t) => {
  const harness = await connected(t, {
    handlers: {
      onCarp() {
        void harness.source.stop();
      },
    },
  });
  await harness.server.emitRaw('!system=CARP subsystem=1@em0 type=MASTER\n!system=CARP subsystem=1@em0 type=BACKUP\n');
  await until('the first transition', () => harness.transitions.length === 1);
  await sleep(50);
  t.same(harness.events, ['connected', 'carp 1@em0 MASTER']);
});

t.test('fuzz: garbage lines and random chunking never break the source, and every CARP line arrives', async (t) => {
  const { server, transitions, records } = await connected(t);
  const carpLine = fc
    .tuple(fc.integer({ min: 1, max: 255 }), fc.stringMatching(/^[a-z]{1,6}[0-9]{1,3}$/), fc.constantFrom('MASTER', 'BACKUP', 'INIT'))
    .map(([vhid, ifname, state]) => Buffer.from(`!system=CARP subsystem=${vhid}@${ifname} type=${state}`));
  const garbage = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
    fc.string({ unit: 'binary', maxLength: 200 }).map((text) => Buffer.from(text)),
    fc.constantFrom('!system=IFNET subsystem=em0 type=LINK_UP', '!system=CARP subsystem=1@em0', '+attach', '').map((text) => Buffer.from(text)),
    fc.integer({ min: MAX_DEVD_LINE_BYTES - 10, max: MAX_DEVD_LINE_BYTES + 3000 }).map((length) => Buffer.alloc(length, 0x21)),
  );
  const items = fc.sample(
    fc.oneof(
      { arbitrary: carpLine.map((bytes) => ({ bytes, carp: true })), weight: 1 },
      { arbitrary: garbage.map((bytes) => ({ bytes, carp: false })), weight: 3 },
    ),
    { numRuns: 10_000, seed: 6 },
  );
  const stream = Buffer.concat(items.flatMap((item) => [item.bytes, Buffer.from('\n')]));
  // What must arrive is what reading the stream line by line finds, in order: the CARP lines written, plus any
  // the garbage happens to contain.
  const wanted: CarpTransition[] = [];
  for (let offset = 0; offset < stream.length; ) {
    const newline = stream.indexOf(0x0a, offset);
    const bytes = stream.subarray(offset, newline);
    offset = newline + 1;
    if (bytes.length > MAX_DEVD_LINE_BYTES) continue;
    try {
      const parsed = parseDevdLine(bytes.toString('utf8'));
      if (parsed.kind === 'carp') wanted.push(parsed.transition);
    } catch {
      // Garbage: the source skips it too.
    }
  }
  const written = items.filter((item) => item.carp).length;
  t.ok(written > 2000 && wanted.length >= written, `${written} CARP lines written, ${wanted.length} in the stream`);

  const chunkSizes = fc.sample(fc.integer({ min: 1, max: 4096 }), { numRuns: 10_000, seed: 7 });
  let at = 0;
  for (let chunk = 0; at < stream.length; chunk++) {
    const size = chunkSizes[chunk % chunkSizes.length]!;
    await server.emitRaw(stream.subarray(at, at + size));
    at += size;
  }
  server.emit('!system=CARP subsystem=255@end0 type=INIT');
  await until('the end marker', () => transitions.at(-1)?.interface === 'end0', 30_000);
  t.same(transitions.slice(0, -1), wanted);
  t.ok(warnings(records).length > 1000, 'the garbage was reported');
});
