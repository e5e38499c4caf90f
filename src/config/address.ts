import { isIPv4, isIPv6 } from 'node:net';

// The port hastd listens on and connects to when an address names none.
export const DEFAULT_HAST_PORT = 8457;

// hastd copies addresses into char[1024] buffers (HAST_ADDRSIZE), so 1023 bytes is the longest that fits.
const MAX_ADDRESS_BYTES = 1023;
// sockaddr_un.sun_path is char[104] on FreeBSD.
const MAX_SOCKET_PATH_BYTES = 103;
// proto_tcp.c copies the host into char[MAXHOSTNAMELEN], 256 on FreeBSD.
const MAX_HOST_BYTES = 255;
// What getaddrinfo(3) could take for a host name, given that hast.conf words cannot hold anything else anyway.
const HOST_NAME = /^[A-Za-z0-9._-]+$/;

// A UNIX-domain socket address: `uds://PATH`, `unix://PATH` or a bare absolute path.
export interface UdsAddress {
  kind: 'uds';
  path: string;
}

// A TCP address: `tcp://`, `tcp4://` or `tcp6://` (or no prefix), then a host or IP address and maybe a port.
export interface TcpAddress {
  kind: 'tcp';
  family: 'any' | 4 | 6;
  host: string;
  port: number;
}

// An address as hastd's proto layer reads it (proto_uds.c tried first, then proto_tcp.c).
export type HastAddress = UdsAddress | TcpAddress;

// An address hastd could not use; the message says what is wrong with it.
export class AddressError extends Error {
  readonly address: string;
  readonly problem: string;

  constructor(address: string, problem: string) {
    super(`invalid address '${address}': ${problem}`);
    this.name = 'AddressError';
    this.address = address;
    this.problem = problem;
  }
}

const TCP_PREFIXES: ReadonlyArray<[string, TcpAddress['family']]> = [
  ['tcp4://', 4],
  ['tcp6://', 6],
  ['tcp://', 'any'],
];

// Parses an address the way hastd's uds_addr() and tcp_addr() do, minus the name lookup, which stays for
// when a connection is made. `defaultPort` is used when a TCP address names no port (hastd uses 0 for `source`).
export function parseHastAddress(text: string, defaultPort = DEFAULT_HAST_PORT): HastAddress {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_ADDRESS_BYTES) {
    // Cut down in the message: this is usually junk, and at least 256 characters of it.
    const problem = `it is ${bytes} bytes long; hastd takes at most ${MAX_ADDRESS_BYTES}`;
    throw new AddressError(`${text.slice(0, 40)}...`, problem);
  }
  const lower = text.toLowerCase();
  for (const prefix of ['uds://', 'unix://']) {
    if (lower.startsWith(prefix)) return udsAddress(text, text.slice(prefix.length));
  }
  if (text.startsWith('/') && !text.includes('://')) return udsAddress(text, text);
  for (const [prefix, family] of TCP_PREFIXES) {
    if (lower.startsWith(prefix)) return tcpAddress(text, text.slice(prefix.length), family, defaultPort);
  }
  const scheme = text.indexOf('://');
  if (scheme !== -1) {
    throw new AddressError(
      text,
      `unknown protocol '${text.slice(0, scheme + 3)}'; use tcp://, tcp4://, tcp6://, uds:// or unix://`,
    );
  }
  return tcpAddress(text, text, 'any', defaultPort);
}

// The canonical text of a TCP address, with the port always written and IPv6 literals in brackets.
export function formatTcpAddress(address: TcpAddress): string {
  const prefix = address.family === 'any' ? 'tcp://' : `tcp${address.family}://`;
  const host = isIPv6(address.host) ? `[${address.host}]` : address.host;
  return `${prefix}${host}:${address.port}`;
}

function udsAddress(text: string, path: string): UdsAddress {
  if (path === '') throw new AddressError(text, 'the socket path is empty');
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    const problem = `the socket path is ${bytes} bytes long; a UNIX socket path takes at most ${MAX_SOCKET_PATH_BYTES}`;
    throw new AddressError(text, problem);
  }
  return { kind: 'uds', path };
}

// proto_tcp.c's rule: with more than one ':' the text is an IPv6 address, which carries a port only in
// the `[ADDRESS]:PORT` form; with one ':' the part after it is the port.
function tcpAddress(text: string, rest: string, family: TcpAddress['family'], defaultPort: number): TcpAddress {
  const firstColon = rest.indexOf(':');
  const lastColon = rest.lastIndexOf(':');
  const hasPort = lastColon !== -1 && (firstColon === lastColon || rest.startsWith('['));
  let host = hasPort ? rest.slice(0, lastColon) : rest;
  if (rest.startsWith('[')) {
    if (!hasPort || !host.endsWith(']')) {
      throw new AddressError(text, 'a bracketed address must be written [ADDRESS]:PORT');
    }
    host = host.slice(1, -1);
  }
  const port = hasPort ? parsePort(text, rest.slice(lastColon + 1)) : defaultPort;
  checkHost(text, host, family);
  return { kind: 'tcp', family, host, port };
}

function parsePort(text: string, digits: string): number {
  const port = /^[0-9]+$/.test(digits) ? Number(digits) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new AddressError(text, `the port '${digits}' is not a number from 1 to 65535`);
  }
  return port;
}

function checkHost(text: string, host: string, family: TcpAddress['family']): void {
  if (host === '') throw new AddressError(text, 'the host is empty');
  if (Buffer.byteLength(host) > MAX_HOST_BYTES) {
    throw new AddressError(text, `the host is longer than ${MAX_HOST_BYTES} bytes`);
  }
  if (isIPv4(host)) {
    if (family === 6) throw new AddressError(text, `tcp6:// cannot use the IPv4 address ${host}`);
    return;
  }
  if (host.includes(':')) {
    if (!isIPv6(host)) {
      const hint = host.includes('/') ? '; hastd takes no prefix length such as /64' : '';
      throw new AddressError(text, `'${host}' is not an IPv6 address${hint}`);
    }
    if (family === 4) throw new AddressError(text, `tcp4:// cannot use the IPv6 address ${host}`);
    return;
  }
  if (!HOST_NAME.test(host)) throw new AddressError(text, `'${host}' is not a host name or IP address`);
}
