import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { AddressError, parseHastAddress } from './address.js';
import { ConfigError, type SourcePosition } from './config-error.js';
import {
  parseHastConfSyntax,
  type ChecksumAlgorithm,
  type CompressionAlgorithm,
  type HastNodeBlock,
  type HastResourceBlock,
  type HastSetting,
  type HastSettingValues,
  type ReplicationMode,
} from './hast-parser.js';
import type { NodeIdentity } from './node-identity.js';

// The value types of HastResource, defined with the grammar that spells them.
export type { ChecksumAlgorithm, CompressionAlgorithm, ReplicationMode } from './hast-parser.js';

// Where hastd and hastctl look for their configuration unless told otherwise (-c).
export const DEFAULT_HAST_CONF = '/etc/hast.conf';

// hastd's built-in values for everything hast.conf may leave out.
export const HAST_DEFAULTS = {
  control: 'uds:///var/run/hastctl',
  pidfile: '/var/run/hastd.pid',
  listen: ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457'],
  replication: 'memsync',
  checksum: 'none',
  compression: 'hole',
  timeout: 20,
  metaflush: true,
} as const satisfies {
  control: string;
  pidfile: string;
  listen: readonly string[];
  replication: ReplicationMode;
  checksum: ChecksumAlgorithm;
  compression: CompressionAlgorithm;
  timeout: number;
  metaflush: boolean;
};

// One resource as this node runs it: its own `on` block, the resource section, global settings and defaults merged.
export interface HastResource {
  name: string;
  // `name` keyword: the provider appears as /dev/hast/<provname>; defaults to the resource name.
  provname: string;
  local: string;
  // Exactly as written; 'none' means the peer is not known yet.
  remote: string;
  source: string | null;
  replication: ReplicationMode;
  checksum: ChecksumAlgorithm;
  compression: CompressionAlgorithm;
  // Seconds.
  timeout: number;
  exec: string | null;
  metaflush: boolean;
  // Of the `resource` keyword.
  position: SourcePosition;
}

// hast.conf as it applies to one node.
export interface HastConfig {
  file: string;
  control: string;
  pidfile: string;
  listen: string[];
  resources: HastResource[];
}

// One resource in the JSON that `check-config --json` prints: its settings, with `name` the provider name.
export type HastResourceJson = Omit<HastResource, 'provname' | 'position'>;

// The effective hast.conf as `check-config --json` prints it; resources are keyed by resource name.
export interface HastConfigJson {
  control: string;
  pidfile: string;
  listen: string[];
  resources: Record<string, HastResourceJson>;
}

// A hast.conf is a few kilobytes. A file past 1 MiB is the wrong file (a disk image, a log), and parsing it would
// only spend time and memory to report a syntax error somewhere deep inside it.
const MAX_HAST_CONF_BYTES = 1024 * 1024;

// hastd's buffers: char[NAME_MAX] (255) for names and char[PATH_MAX] (1024) for paths, NUL included.
const MAX_VALUE_BYTES: Partial<Record<keyof HastSettingValues, number>> = {
  name: 254,
  local: 1023,
  pidfile: 1023,
  exec: 1023,
};
const MAX_RESOURCE_NAME_BYTES = 254;

type ListenSetting = Extract<HastSetting, { keyword: 'listen' }>;

// Reads and parses hast.conf for this node; an unreadable file is a ConfigError with exit code 72.
export async function loadHastConf(file: string, node: NodeIdentity): Promise<HastConfig> {
  return parseHastConf(decodeUtf8(await readConfigFile(file), file), file, node);
}

// Parses hast.conf text for the node `node` and checks it as hastd would, plus the mistakes hastd lets through.
export function parseHastConf(text: string, file: string, node: NodeIdentity): HastConfig {
  const syntax = parseHastConfSyntax(text, file);
  const myNodes = syntax.nodes.filter((block) => nodeMatches(block.node, node));
  checkSettings(syntax.settings);
  for (const block of syntax.nodes) checkSettings(block.settings);

  const global = valuesOf(syntax.settings);
  // A matching `on` block overrides control and pidfile; listen lines add up, in file order.
  const mine = valuesOf(myNodes.flatMap((block) => block.settings));
  const listen = [syntax.settings, ...myNodes.map((block) => block.settings)]
    .flat()
    .filter((setting): setting is ListenSetting => setting.keyword === 'listen')
    .sort((a, b) => a.position.line - b.position.line || a.position.col - b.position.col)
    .map((setting) => setting.value);

  const resources: HastResource[] = [];
  for (const block of syntax.resources) {
    if (resources.some((resource) => resource.name === block.name)) {
      throw new ConfigError(`Resource ${block.name} configured more than once.`, block.position);
    }
    resources.push(resolveResource(block, global, node));
  }
  return {
    file,
    control: mine.control ?? global.control ?? HAST_DEFAULTS.control,
    pidfile: mine.pidfile ?? global.pidfile ?? HAST_DEFAULTS.pidfile,
    listen: listen.length > 0 ? listen : [...HAST_DEFAULTS.listen],
    resources,
  };
}

// The effective configuration in the shape `check-config --json` prints.
export function hastConfigToJson(config: HastConfig): HastConfigJson {
  return {
    control: config.control,
    pidfile: config.pidfile,
    listen: [...config.listen],
    // fromEntries defines own properties, so even a resource called __proto__ comes out as a plain key.
    resources: Object.fromEntries(
      config.resources.map((r) => [
        r.name,
        {
          name: r.provname,
          local: r.local,
          remote: r.remote,
          source: r.source,
          replication: r.replication,
          checksum: r.checksum,
          compression: r.compression,
          timeout: r.timeout,
          exec: r.exec,
          metaflush: r.metaflush,
        },
      ]),
    ),
  };
}

// hastd's isitme(): full host name, host name up to the first '.', host UUID (any case), then `hostid<N>`.
// A configured node name replaces all of them, so two nodes can share one host.
function nodeMatches(name: string, node: NodeIdentity): boolean {
  if (node.nodeName !== null) return name === node.nodeName;
  if (name === node.hostname) return true;
  const dot = node.hostname.indexOf('.');
  if (dot !== -1 && name === node.hostname.slice(0, dot)) return true;
  if (node.hostuuid !== null && name.toLowerCase() === node.hostuuid.toLowerCase()) return true;
  return node.hostid !== null && name === `hostid${node.hostid}`;
}

// The names hastd lists when no `on` block matches, in its order.
function acceptableNodeNames(node: NodeIdentity): string {
  if (node.nodeName !== null) return node.nodeName;
  const names: string[] = [];
  const dot = node.hostname.indexOf('.');
  if (dot > 0) names.push(node.hostname.slice(0, dot));
  names.push(node.hostname);
  if (node.hostuuid !== null) names.push(node.hostuuid);
  if (node.hostid !== null) names.push(`hostid${node.hostid}`);
  return names.join(', ');
}

function resolveResource(
  block: HastResourceBlock,
  global: Partial<HastSettingValues>,
  node: NodeIdentity,
): HastResource {
  const { name, position } = block;
  const nameBytes = Buffer.byteLength(name);
  if (nameBytes > MAX_RESOURCE_NAME_BYTES) {
    const detail = `Resource name is too long (${nameBytes} bytes; at most ${MAX_RESOURCE_NAME_BYTES}).`;
    throw new ConfigError(detail, position);
  }
  checkSettings(block.settings);
  const seen = new Map<string, HastNodeBlock>();
  for (const nodeBlock of block.nodes) {
    checkSettings(nodeBlock.settings);
    const first = seen.get(nodeBlock.node);
    if (first !== undefined) {
      throw new ConfigError(
        `Node ${nodeBlock.node} has more than one 'on' block in resource ${name} (first at ${at(first.position)}).`,
        nodeBlock.position,
      );
    }
    seen.set(nodeBlock.node, nodeBlock);
  }

  const [match, second] = block.nodes.filter((nodeBlock) => nodeMatches(nodeBlock.node, node));
  if (match === undefined) {
    throw new ConfigError(
      `No resource ${name} configuration for this node (acceptable node names: ${acceptableNodeNames(node)}).`,
      position,
    );
  }
  // hastd would merge both blocks, later lines winning; which of two names is meant cannot be guessed safely.
  if (second !== undefined) {
    throw new ConfigError(
      `Both 'on ${match.node}' (at ${at(match.position)}) and 'on ${second.node}' in resource ${name} match this node.`,
      second.position,
    );
  }

  const own = valuesOf(block.settings);
  const onNode = valuesOf(match.settings);
  const remote = onNode.remote;
  if (remote === undefined) throw new ConfigError(`Remote address not configured for resource ${name}.`, position);
  const local = onNode.local ?? own.local;
  if (local === undefined) {
    throw new ConfigError(`Path to local component not configured for resource ${name}.`, position);
  }
  return {
    name,
    provname: onNode.name ?? own.name ?? name,
    local,
    remote,
    source: onNode.source ?? null,
    replication: own.replication ?? global.replication ?? HAST_DEFAULTS.replication,
    checksum: own.checksum ?? global.checksum ?? HAST_DEFAULTS.checksum,
    compression: own.compression ?? global.compression ?? HAST_DEFAULTS.compression,
    timeout: own.timeout ?? global.timeout ?? HAST_DEFAULTS.timeout,
    exec: own.exec ?? global.exec ?? null,
    metaflush: onNode.metaflush ?? own.metaflush ?? global.metaflush ?? HAST_DEFAULTS.metaflush,
    position,
  };
}

// Each keyword's value. A block holds each keyword once (the parser sees to that); where the settings of
// several blocks are merged (top-level `on` blocks matching one node), the later block wins, as in hastd.
function valuesOf(settings: readonly HastSetting[]): Partial<HastSettingValues> {
  const entries = settings.map((setting) => [setting.keyword, setting.value]);
  return Object.fromEntries(entries) as Partial<HastSettingValues>;
}

// Checks values hastd would only trip over later (a bad address when it listens or connects, a relative
// hook path when an event fires). Blocks for other nodes are checked too: the file is shared by both nodes,
// so a mistake in the peer's block is better reported here than discovered on the peer during a failover.
function checkSettings(settings: readonly HastSetting[]): void {
  for (const setting of settings) {
    const { keyword, value, position } = setting;
    const limit = MAX_VALUE_BYTES[keyword];
    const bytes = Buffer.byteLength(String(value));
    if (limit !== undefined && bytes > limit) {
      throw new ConfigError(`${keyword} argument is too long (${bytes} bytes; at most ${limit}).`, position);
    }
    if (keyword === 'exec' && !value.startsWith('/')) {
      const detail = `exec must be an absolute path (hastd runs it without a shell or PATH); found '${value}'`;
      throw new ConfigError(detail, position);
    }
    if (keyword === 'control') checkAddress(keyword, value, 'uds', position);
    if (keyword === 'listen' || keyword === 'source') checkAddress(keyword, value, 'tcp', position);
    if (keyword === 'remote' && value !== 'none') checkAddress(keyword, value, 'tcp', position);
  }
}

function checkAddress(keyword: string, text: string, kind: 'uds' | 'tcp', position: SourcePosition): void {
  let address;
  try {
    address = parseHastAddress(text);
  } catch (error) {
    if (!(error instanceof AddressError)) throw error;
    throw new ConfigError(`invalid ${keyword} address '${error.address}': ${error.problem}`, position);
  }
  if (address.kind === kind) return;
  const detail =
    kind === 'uds'
      ? `control must be a UNIX socket address such as ${HAST_DEFAULTS.control}; found '${text}'`
      : `${keyword} must be a TCP address such as tcp://192.0.2.1:8457; found the UNIX socket '${text}'`;
  throw new ConfigError(detail, position);
}

// Reads at most one byte past the size limit, so a huge file (or an endless device) costs no more than that.
async function readConfigFile(file: string): Promise<Buffer> {
  const buffer = Buffer.alloc(MAX_HAST_CONF_BYTES + 1);
  let length = 0;
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, 'r');
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
  } catch (error) {
    // No `cause`: the message already carries the system error, and describeError() would print it twice.
    throw new ConfigError(`cannot read ${file}: ${systemErrorText(error)}`, undefined, { unreadable: true });
  } finally {
    await handle?.close();
  }
  if (length > MAX_HAST_CONF_BYTES) {
    throw new ConfigError(`${file} is larger than 1 MiB; a hast.conf is a few kilobytes, so this cannot be one`);
  }
  return buffer.subarray(0, length);
}

// "ENOENT: no such file or directory" without Node's ", open '/etc/hast.conf'" tail, since the caller names the file.
function systemErrorText(error: unknown): string {
  const { message, syscall } = error as NodeJS.ErrnoException;
  return message.split(`, ${syscall}`)[0] as string;
}

// hast.conf is text; a byte that is not UTF-8 is reported where it is rather than turned into U+FFFD.
function decodeUtf8(bytes: Buffer, file: string): string {
  const bad = firstInvalidUtf8Byte(bytes);
  if (bad === -1) return bytes.toString('utf8');
  const before = bytes.subarray(0, bad).toString('utf8');
  const lineStart = before.lastIndexOf('\n') + 1;
  const line = before.split('\n').length;
  const col = [...before.slice(lineStart)].length + 1;
  const byte = (bytes[bad] as number).toString(16).toUpperCase().padStart(2, '0');
  const detail = `the file is not UTF-8 text: byte 0x${byte} does not start a valid character`;
  throw new ConfigError(detail, { file, line, col });
}

// Offset of the first byte that does not begin a well-formed UTF-8 sequence (Unicode table 3-7), or -1.
function firstInvalidUtf8Byte(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i] as number;
    let size: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead < 0x80) size = 1;
    else if (lead >= 0xc2 && lead <= 0xdf) size = 2;
    else if (lead >= 0xe0 && lead <= 0xef) size = 3;
    else if (lead >= 0xf0 && lead <= 0xf4) size = 4;
    else return i;
    // Second-byte ranges that rule out overlong forms, surrogates and code points past U+10FFFF.
    if (lead === 0xe0) low = 0xa0;
    else if (lead === 0xed) high = 0x9f;
    else if (lead === 0xf0) low = 0x90;
    else if (lead === 0xf4) high = 0x8f;
    for (let k = 1; k < size; k++) {
      const next = bytes[i + k];
      if (next === undefined || next < (k === 1 ? low : 0x80) || next > (k === 1 ? high : 0xbf)) return i;
    }
    i += size;
  }
  return -1;
}

function at(position: SourcePosition): string {
  return `${position.line}:${position.col}`;
}
