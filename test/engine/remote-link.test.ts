import t from 'tap';
import type { Test } from 'tap';
import { BlockIoError } from '../../src/engine/block-device.js';
import { LocalComponent } from '../../src/engine/local-component.js';
import { Nv } from '../../src/engine/nv.js';
import { PrimaryWorker, type PrimaryOptions } from '../../src/engine/primary.js';
import { HIO, replyNv } from '../../src/engine/wire.js';
import { FaultyStore } from '../fixtures/faulty-store.js';
import { fakeSecondary, type RequestHandler } from '../fixtures/fake-secondary.js';
import {
  EXTENT,
  KiB,
  createComponentFile,
  hastResource,
  metadataOf,
  pattern,
  recordingContext,
  scratchDir,
  waitFor,
} from '../fixtures/replication-pair.js';
import { freePort } from '../fixtures/free-port.js';

// A primary connected to a fake secondary that handles requests as the test says.
async function primaryWithFake(
  t: Test,
  options: { onRequest?: RequestHandler; version?: number; timeout?: number; primary?: PrimaryOptions; replication?: 'memsync' } = {},
) {
  const path = await createComponentFile(await scratchDir(t), 'primary');
  const fake = await fakeSecondary(t, { datasize: (await metadataOf(path)).datasize, version: options.version, onRequest: options.onRequest });
  const context = recordingContext();
  const resource = hastResource({
    local: path,
    remote: `tcp4://127.0.0.2:${fake.port}`,
    source: 'tcp4://127.0.0.1',
    timeout: options.timeout ?? 5,
    replication: options.replication ?? 'fullsync',
  });
  const primary = await PrimaryWorker.start(resource, context, { reconnectMs: 60_000, ...options.primary });
  t.teardown(() => primary.stop());
  await waitFor('the connection', () => primary.status().status === 'complete');
  return { primary, fake, context, path };
}

// Replies to every request with success (reads get zeros).
const answerAll: RequestHandler = (request, replies) => {
  const seq = request.nv.getUint64('seq')!;
  const length = Number(request.nv.getUint64('length'));
  replies.send(replyNv(seq), request.nv.getUint8('cmd') === HIO.READ ? Buffer.alloc(length) : undefined);
};

t.test('an idle primary sends keepalives; a secondary that stops answering is dropped', async (t) => {
  const { primary, fake, context } = await primaryWithFake(t, { timeout: 1, primary: { keepaliveMs: 50 } });
  await waitFor('keepalives', () => fake.keepalives() >= 3);
  const started = Date.now();
  await primary.device.write(EXTENT, pattern(4 * KiB, 1));
  t.ok(Date.now() - started >= 900, 'the write waited for the reply timeout');
  t.equal(fake.requests.length, 1);
  t.equal(primary.status().status, 'degraded');
  t.equal(primary.status().dirty, EXTENT, 'the unanswered write is recorded for sync');
  t.ok(context.messages().includes(`No reply from tcp4://127.0.0.2:${fake.port} within 1 s.`));
  t.same(context.events, ['connect', 'disconnect']);
});

t.test('stray replies are logged and ignored; a malformed one ends the session', async (t) => {
  let disk: FaultyStore | undefined;
  const { primary, context, path } = await primaryWithFake(t, {
    primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) },
    onRequest: (request, replies) => {
      const seq = request.nv.getUint64('seq')!;
      replies.send(new Nv().addUint8('cmd', 1));
      replies.send(replyNv(seq + 1000n));
      if (request.nv.getUint8('cmd') === HIO.READ) replies.send(replyNv(seq), Buffer.alloc(10));
      else replies.send(replyNv(seq));
    },
  });
  await primary.device.write(0, pattern(4 * KiB, 1));
  t.ok(context.messages().includes("Header contains no 'seq' field."));
  t.ok(context.messages().some((m) => /^Found no request matching received 'seq' field \(\d+\)\.$/.test(m)));
  t.equal(primary.status().status, 'complete', 'stray replies do not end the session');
  disk!.failReadsAt(Number((await metadataOf(path)).localoff));
  await t.rejects(primary.device.read(0, 4 * KiB), new BlockIoError('EIO', 'READ(0, 4096) failed on the peer: Socket is not connected'));
  t.ok(context.messages().includes('Unable to receive reply: Reply to READ(0, 4096) carries 10 bytes of data.'));
  t.equal(primary.status().status, 'degraded');
});

t.test('an error reply fails a remote read with its errno', async (t) => {
  let disk: FaultyStore | undefined;
  const { primary, path } = await primaryWithFake(t, {
    primary: { openComponent: async (file) => (disk = new FaultyStore(await LocalComponent.open(file))) },
    onRequest: (request, replies) => replies.send(replyNv(request.nv.getUint64('seq')!, { error: 22 })),
  });
  disk!.failReadsAt(Number((await metadataOf(path)).localoff));
  await t.rejects(primary.device.read(0, 512), new BlockIoError('EINVAL', 'READ(0, 512) failed on the peer: Invalid argument'));
});

t.test('a version 1 peer gets fullsync instead of memsync', async (t) => {
  const { primary, fake, context } = await primaryWithFake(t, { version: 1, replication: 'memsync', onRequest: answerAll });
  t.ok(context.messages().includes("The 'memsync' replication mode is not supported by the remote node, falling back to 'fullsync' mode."));
  t.equal(primary.status().replication, 'fullsync');
  await primary.device.write(0, pattern(512, 1));
  t.equal(fake.requests[0]!.nv.getUint8('memsync'), undefined, 'no memsync flag on the wire');
  t.equal(fake.requests[0]!.version, 1, 'packets carry the negotiated version');
});

t.test('a peer that cannot be reached is reported once, then retried quietly', async (t) => {
  const path = await createComponentFile(await scratchDir(t), 'primary');
  const port = await freePort();
  const context = recordingContext();
  const primary = await PrimaryWorker.start(hastResource({ local: path, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1' }), context, {
    reconnectMs: 20,
  });
  t.teardown(() => primary.stop());
  await waitFor('a few attempts', () => context.messages().length >= 1);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const failures = context.records.filter((r) => String(r['msg']).startsWith(`Unable to connect to tcp4://127.0.0.2:${port}:`));
  t.ok(failures.length > 2, 'several attempts were made');
  t.same(
    failures.map((r) => r['level']),
    [40, ...Array<number>(failures.length - 1).fill(20)],
    'one warning, then debug lines',
  );
  t.match(failures[0]!['msg'], /ECONNREFUSED/);
  await primary.device.write(0, pattern(512, 1));
  t.equal(primary.status().status, 'degraded');
});

t.test('stopping while the handshake is pending does not wait for its timeout', async (t) => {
  const path = await createComponentFile(await scratchDir(t), 'primary');
  // A server that accepts and never answers.
  const { createServer } = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.2', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const primary = await PrimaryWorker.start(
    hastResource({ local: path, remote: `tcp4://127.0.0.2:${port}`, source: 'tcp4://127.0.0.1', timeout: 30 }),
    recordingContext(),
  );
  await waitFor('the connection', () => sockets.length === 1);
  const started = Date.now();
  await primary.stop();
  t.ok(Date.now() - started < 2000, 'stopped without waiting 30 s');
});
