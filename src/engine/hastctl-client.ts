// hastctl's end of the control socket: connect, send one request, read one reply, with hastctl's messages
// and exit codes for each way that can fail.

import { createConnection, type Socket } from 'node:net';
import { ExitError, strerror } from '../common/errors.js';
import { EX_OSERR, EX_SOFTWARE, EX_UNAVAILABLE } from '../common/sysexits.js';
import { AddressError, parseHastAddress } from '../config/address.js';
import {
  decodeControlReply,
  EHAST_OK,
  encodeControlRequest,
  type ControlReply,
  type ControlRequest,
  type SetRoleReply,
  type StatusReply,
} from './control-protocol.js';
import { encodePacket, PacketConnection } from './hast-proto.js';

// hastctl's HAST_TIMEOUT, for connecting and again for the reply.
export const CONTROL_TIMEOUT_MS = 20_000;

// A status reply grows by about a kilobyte per resource; no real configuration comes near 16 MiB.
const REPLY_LIMITS = { maxNvSize: 16 * 1024 * 1024, maxPayloadSize: 0 };

// hastd cannot be reached: a control address we cannot use, or nothing listening (exit 71, EX_OSERR).
export class HastdUnreachableError extends ExitError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EX_OSERR, options);
    this.name = 'HastdUnreachableError';
  }
}

// The request could not be sent or the reply not read (exit 69, EX_UNAVAILABLE).
export class HastdCommunicationError extends ExitError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EX_UNAVAILABLE, options);
    this.name = 'HastdCommunicationError';
  }
}

// hastd answered with a global error (exit 70, EX_SOFTWARE); `hastError` is its EHAST_* code or errno.
export class HastdErrorReply extends ExitError {
  readonly hastError: number;

  constructor(hastError: number) {
    super(`Error ${hastError} received from hastd.`, EX_SOFTWARE);
    this.name = 'HastdErrorReply';
    this.hastError = hastError;
  }
}

// Sends `request` to the daemon at `controlAddress` (uds://PATH, unix://PATH or /PATH) and returns its
// reply; every failure is one of the three errors above, with hastctl's message.
export function sendControlRequest(
  controlAddress: string,
  request: Extract<ControlRequest, { cmd: 'setrole' }>,
  timeoutMs?: number,
): Promise<SetRoleReply>;
export function sendControlRequest(
  controlAddress: string,
  request: Extract<ControlRequest, { cmd: 'status' }>,
  timeoutMs?: number,
): Promise<StatusReply>;
export async function sendControlRequest(
  controlAddress: string,
  request: ControlRequest,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<ControlReply> {
  const socket = await connectTo(controlAddress, timeoutMs);
  const connection = new PacketConnection(socket, REPLY_LIMITS);
  try {
    try {
      await write(socket, Buffer.concat(encodePacket(encodeControlRequest(request))));
    } catch (error) {
      throw new HastdCommunicationError(`Unable to send command to hastd via ${controlAddress}: ${reason(error)}.`, { cause: error });
    }
    let reply: ControlReply;
    try {
      reply = decodeControlReply((await connection.receive(timeoutMs)).nv, request.cmd);
    } catch (error) {
      throw new HastdCommunicationError(`cannot receive reply from hastd via ${controlAddress}: ${reason(error)}.`, { cause: error });
    }
    if (reply.error !== EHAST_OK) throw new HastdErrorReply(reply.error);
    return reply;
  } finally {
    connection.close();
  }
}

async function connectTo(controlAddress: string, timeoutMs: number): Promise<Socket> {
  let path: string;
  try {
    const address = parseHastAddress(controlAddress);
    if (address.kind !== 'uds') throw new AddressError(controlAddress, 'the control address must be a UNIX socket');
    path = address.path;
  } catch (error) {
    if (!(error instanceof AddressError)) throw error;
    throw new HastdUnreachableError(`Unable to setup control connection to ${controlAddress}: ${error.problem}.`, { cause: error });
  }
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const fail = (why: string, cause?: unknown) => {
      socket.destroy();
      reject(new HastdUnreachableError(`Unable to connect to hastd via ${controlAddress}: ${why}.`, { cause }));
    };
    const timer = setTimeout(() => fail('Operation timed out'), timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      fail(reason(error), error);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

// Resolves once the bytes are with the kernel. A peer that hangs up mid-write surfaces as a socket error
// while Node still calls the write back without one, so the socket's own error state is checked too.
function write(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write(bytes, (error) => {
      const failure = error ?? socket.errored;
      if (failure) reject(failure);
      else resolve();
    });
  });
}

// FreeBSD's strerror(3) texts for what a UNIX socket connect, write or read fails with; Node's socket
// errors carry only the code ("connect ENOENT /var/run/hastctl").
const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  ECONNREFUSED: 'Connection refused',
  EACCES: 'Permission denied',
  ENOTSOCK: 'Socket operation on non-socket',
  EPIPE: 'Broken pipe',
  ECONNRESET: 'Connection reset by peer',
};

// The cause as pjdlog prints it after a colon, without the final period it adds itself.
function reason(error: unknown): string {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  return (code === undefined ? undefined : SOCKET_ERRORS[code]) ?? strerror(error).replace(/\.$/, '');
}
