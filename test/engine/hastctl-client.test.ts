import t from 'tap';
import type { Test } from 'tap';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { encodePacket } from '../../src/engine/hast-proto.js';
import {
  HastdCommunicationError,
  HastdErrorReply,
  HastdUnreachableError,
  sendControlRequest,
} from '../../src/engine/hastctl-client.js';
import { Nv } from '../../src/engine/nv.js';
import { socketDir } from '../fixtures/control-target.js';

function socketPath(t: Test): string {
  return join(socketDir(t), 'sock');
}

// A stand-in hastd that does `onRequest` with each connection once its first bytes arrive.
async function fakeHastd(t: Test, onRequest: (socket: Socket) => void): Promise<string> {
  const path = socketPath(t);
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => onRequest(socket));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return path;
}

const status = { cmd: 'status' as const, resources: ['all'] };

t.test('nothing listening: hastctl exit 71', async (t) => {
  const path = socketPath(t);
  for (const address of [`uds://${path}`, `unix://${path}`, path]) {
    const error = await sendControlRequest(address, status).catch((e: unknown) => e);
    t.type(error, HastdUnreachableError);
    t.match(error, { message: `Unable to connect to hastd via ${address}: No such file or directory.`, exitCode: 71 });
  }
});

t.test('an address that is not a UNIX socket cannot be set up: exit 71', async (t) => {
  await t.rejects(sendControlRequest('tcp://127.0.0.1:8457', status), {
    name: 'HastdUnreachableError',
    message: 'Unable to setup control connection to tcp://127.0.0.1:8457: the control address must be a UNIX socket.',
    exitCode: 71,
  });
  await t.rejects(sendControlRequest('ftp://x', status), {
    message: "Unable to setup control connection to ftp://x: unknown protocol 'ftp://'; use tcp://, tcp4://, tcp6://, uds:// or unix://.",
    exitCode: 71,
  });
});

t.test('hastd closes without a reply: exit 69', async (t) => {
  const path = await fakeHastd(t, (socket) => socket.destroy());
  const error = await sendControlRequest(`uds://${path}`, status).catch((e: unknown) => e);
  t.type(error, HastdCommunicationError);
  t.match(error, { message: `cannot receive reply from hastd via uds://${path}: Connection closed by peer.`, exitCode: 69 });
});

t.test('a reply that breaks framing or the protocol: exit 69 naming the problem', async (t) => {
  const garbage = await fakeHastd(t, (socket) => socket.end(Buffer.from('HTTP/1.0 400 Bad Request\r\n')));
  await t.rejects(sendControlRequest(garbage, status), {
    message: `cannot receive reply from hastd via ${garbage}: Unsupported protocol version 72 in packet header.`,
    exitCode: 69,
  });
  const noRole = await fakeHastd(t, (socket) => socket.end(Buffer.concat(encodePacket(new Nv().addString('resource0', 'r')))));
  await t.rejects(sendControlRequest(noRole, { cmd: 'setrole', role: 'init', resources: ['r'] }), {
    message: `cannot receive reply from hastd via ${noRole}: Invalid control reply: nv field "role0" (string) is missing.`,
    exitCode: 69,
  });
});

t.test('no reply within the timeout: exit 69', async (t) => {
  const path = await fakeHastd(t, () => undefined);
  await t.rejects(sendControlRequest(path, status, 100), {
    message: `cannot receive reply from hastd via ${path}: No packet received within 0.1 s.`,
    exitCode: 69,
  });
});

t.test('a global error in the reply: "Error <n> received from hastd." exit 70', async (t) => {
  const path = await fakeHastd(t, (socket) => socket.end(Buffer.concat(encodePacket(new Nv().addInt16('error', 4)))));
  const error = await sendControlRequest(path, status).catch((e: unknown) => e);
  t.type(error, HastdErrorReply);
  t.match(error, { message: 'Error 4 received from hastd.', exitCode: 70, hastError: 4 });
});

t.test('the request cannot be written: exit 69', async (t) => {
  // Hang up on the first bytes of a request far larger than the socket buffer, so the write fails.
  const path = await fakeHastd(t, (socket) => socket.destroy());
  const resources = Array.from({ length: 20_000 }, (_, i) => `resource-with-a-long-name-${i}`);
  const error = await sendControlRequest(path, { cmd: 'status', resources }).catch((e: unknown) => e);
  t.type(error, HastdCommunicationError);
  t.match(error, {
    message: new RegExp(`^Unable to send command to hastd via ${path}: (Broken pipe|Connection reset by peer)\\.$`),
    exitCode: 69,
  });
});

t.test('the reply is decoded for the command that was sent', async (t) => {
  const reply = new Nv().addString('resource0', 'r').addString('role0', 'secondary');
  const path = await fakeHastd(t, (socket) => socket.end(Buffer.concat(encodePacket(reply))));
  t.same(await sendControlRequest(path, { cmd: 'setrole', role: 'primary', resources: ['r'] }), {
    cmd: 'setrole',
    error: 0,
    resources: [{ name: 'r', previousRole: 'secondary' }],
  });
});
