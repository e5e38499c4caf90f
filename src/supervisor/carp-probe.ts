// CARP's verdict on this node read from the system, not remembered from events (devd drops events, and a
// restarted supervisor has seen none): FreeBSD's `ifconfig <if>` carp: lines, or on Linux whether the shared
// address is on an interface. Also the switch that makes CARP hand MASTER to the peer, and back.
import { isIP } from 'node:net';
import { runCommand } from '../common/run-command.js';
import type { CarpConfig } from '../config/supervisor-conf.js';
import type { CarpState } from './devd-event.js';

// The kernel's CARP_STATES, in netinet/ip_carp.h's order.
const CARP_STATES: readonly CarpState[] = ['INIT', 'BACKUP', 'MASTER'];

// ifconfig and ip answer from the kernel at once; 5 s means the system is in trouble, and the caller retries.
const PROBE_POLICY = { timeoutMs: 5_000, killAfterMs: 1_000 };
// A configured step-down command may restart a VRRP daemon (`systemctl restart keepalived`), which takes longer.
const STEP_DOWN_POLICY = { timeoutMs: 30_000, killAfterMs: 5_000 };

// CARP_MAXSKEW, which is also the kernel's own demotion for a downed interface (ifdown_demotion_factor). The
// kernel adds net.inet.carp.demotion to every vhid's advskew and caps the sum at 240 (DEMOTE_ADVSKEW in
// ip_carp.c), so this node then advertises as slowly as CARP allows. The peer takes MASTER over if it has
// net.inet.carp.preempt=1; the sysctl adds to the current value, so every step-down needs its own restore.
const STEP_DOWN_DEMOTION = 240;

// The CARP state could not be read (a command failed, its output did not parse), or could not be changed.
export class CarpProbeError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CarpProbeError';
  }
}

// One vhid as `ifconfig <if>` reports it.
export interface CarpVhidStatus {
  vhid: number;
  state: CarpState;
  advbase: number;
  advskew: number;
}

// An address on an interface, as `ip -j addr show` lists it.
export interface InterfaceAddress {
  ifname: string;
  address: string;
}

// `platform` decides between FreeBSD's tools and Linux's; `env` is added to the commands' environment (its
// PATH decides which ifconfig, ip and sysctl run).
export interface CarpProbeOptions {
  platform?: NodeJS.Platform;
  env?: Record<string, string>;
}

// ifconfig's carp_status() (sbin/ifconfig/carp.c) prints one line per vhid, alike in the SIOCGVH-ioctl version
// (FreeBSD 10 to 13) and the libifconfig one:
//   printf("\tcarp: %s vhid %d advbase %d advskew %d", state, vhid, advbase, advskew);
// then ` key "%s"` when run with -k, then "\n". Releases with unicast CARP (14 on) print a second line,
//   printf("\t      peer %s peer6 %s\n", ...), which names no state and is skipped here.
const CARP_LINE = /^carp: (\S+) vhid (\d+) advbase (\d+) advskew (\d+)(?: key ".*")?$/;

// Reads the carp: lines of `ifconfig <if>`. Throws CarpProbeError for a carp: line of another shape or an
// unknown state.
export function parseIfconfigCarp(text: string): CarpVhidStatus[] {
  const vhids: CarpVhidStatus[] = [];
  text.split('\n').forEach((line, index) => {
    const words = line.trim();
    if (!words.startsWith('carp:')) return;
    const where = `ifconfig line ${index + 1} ${JSON.stringify(line)}`;
    const match = CARP_LINE.exec(words);
    if (match === null) throw new CarpProbeError(`${where}: expected "carp: <state> vhid <n> advbase <n> advskew <n>"`);
    const [, state = '', vhid, advbase, advskew] = match;
    const known = CARP_STATES.find((candidate) => candidate === state);
    if (known === undefined) throw new CarpProbeError(`${where}: unknown CARP state "${state}"`);
    vhids.push({ vhid: Number(vhid), state: known, advbase: Number(advbase), advskew: Number(advskew) });
  });
  return vhids;
}

// Reads the addresses in iproute2's JSON (`ip -j addr show`). Links without addresses, and the empty objects
// older iproute2 prints for links a filter left out, give none. Throws CarpProbeError for text that is not
// a JSON array of links.
export function parseIpAddrJson(text: string): InterfaceAddress[] {
  let links: unknown;
  try {
    links = JSON.parse(text);
  } catch (error) {
    throw new CarpProbeError('ip -j addr printed something that is not JSON', { cause: error });
  }
  if (!Array.isArray(links)) throw new CarpProbeError('ip -j addr printed JSON that is not an array of links');
  return links.flatMap((link: unknown) => {
    if (!isObject(link)) {
      throw new CarpProbeError(`ip -j addr printed a link that is not an object: ${JSON.stringify(link)}`);
    }
    const { ifname, addr_info: addresses } = link;
    if (typeof ifname !== 'string' || !Array.isArray(addresses)) return [];
    return addresses.flatMap((info: unknown) =>
      isObject(info) && typeof info['local'] === 'string' ? [{ ifname, address: info['local'] }] : [],
    );
  });
}

// The node's CARP state over all the vhids it follows; undefined stands for a vhid ifconfig did not list.
// The node is MASTER for the storage only when it is MASTER for every address clients use: with one vhid
// MASTER here and another MASTER on the peer, clients reach both nodes and only one may hold the storage. A vhid
// in INIT (or gone) cannot serve its address at all, so it makes the whole node INIT; anything else is BACKUP.
// No vhids at all says nothing about MASTER, so that is INIT too.
export function combineCarpStates(states: readonly (CarpState | undefined)[]): CarpState {
  if (states.length === 0 || states.some((state) => state === undefined || state === 'INIT')) return 'INIT';
  return states.every((state) => state === 'MASTER') ? 'MASTER' : 'BACKUP';
}

// The CARP state of this node, with a few words for status. With carp.vip: MASTER when the address is on one
// of this node's interfaces (`ip -j addr show`; on FreeBSD, where ucarp may move it, `ifconfig -a`).
// Otherwise FreeBSD's `ifconfig <if>` once per interface of carp.vhids, combined as combineCarpStates says.
// Throws CarpProbeError.
export async function readCarpState(
  carp: CarpConfig,
  options: CarpProbeOptions = {},
): Promise<{ state: CarpState; detail: string }> {
  if (carp.vip !== undefined) return readVipState(carp.vip, options);
  const platform = options.platform ?? process.platform;
  if (platform !== 'freebsd') {
    const why = "only FreeBSD's ifconfig shows CARP";
    throw new CarpProbeError(`reading the CARP state on ${platform} needs carp.vip: ${why}`);
  }
  if (carp.vhids.length === 0) throw new CarpProbeError('reading the CARP state needs carp.vhids or carp.vip');
  const interfaces = [...new Set(carp.vhids.map((vhid) => vhid.interface))];
  const byInterface = new Map(
    await Promise.all(interfaces.map(async (ifname) => [ifname, await readInterfaceCarp(ifname, options)] as const)),
  );
  const found = carp.vhids.map(({ vhid, interface: ifname }) => ({
    name: `${vhid}@${ifname}`,
    status: byInterface.get(ifname)?.find((status) => status.vhid === vhid),
  }));
  const detail = found
    .map(({ name, status }) =>
      status === undefined ? `${name} not configured` : `${name} ${status.state} (advskew ${status.advskew})`,
    )
    .join(', ');
  return { state: combineCarpStates(found.map(({ status }) => status?.state)), detail };
}

// Makes CARP give MASTER to the peer: carp.step_down if configured, else FreeBSD's demotion sysctl. Resolves
// to the command it ran. Throws CarpProbeError.
export async function stepDownCarp(carp: CarpConfig, options: CarpProbeOptions = {}): Promise<string[]> {
  if (carp.stepDown !== undefined) {
    await steer(carp.stepDown, 'stepping down from CARP MASTER', STEP_DOWN_POLICY, options);
    return carp.stepDown;
  }
  const platform = options.platform ?? process.platform;
  if (platform !== 'freebsd') {
    throw new CarpProbeError(`stepping down from CARP MASTER on ${platform} needs carp.step_down`);
  }
  const argv = demotionArgv(STEP_DOWN_DEMOTION);
  await steer(argv, 'stepping down from CARP MASTER', PROBE_POLICY, options);
  return argv;
}

// Takes back one stepDownCarp, for an operator who asks for primary again: on FreeBSD without carp.step_down
// it removes the demotion; a configured step-down command leaves nothing to undo. Resolves to the command it
// ran, or [] for none. Throws CarpProbeError.
export async function restoreCarp(carp: CarpConfig, options: CarpProbeOptions = {}): Promise<string[]> {
  if (carp.stepDown !== undefined || (options.platform ?? process.platform) !== 'freebsd') return [];
  const argv = demotionArgv(-STEP_DOWN_DEMOTION);
  await steer(argv, 'removing the CARP demotion', PROBE_POLICY, options);
  return argv;
}

async function readVipState(vip: string, options: CarpProbeOptions): Promise<{ state: CarpState; detail: string }> {
  let addresses: InterfaceAddress[];
  try {
    if ((options.platform ?? process.platform) === 'freebsd') {
      addresses = parseIfconfigAddresses((await runCommand(['ifconfig', '-a'], { ...PROBE_POLICY, env: options.env })).stdout);
    } else {
      addresses = parseIpAddrJson((await runCommand(['ip', '-j', 'addr', 'show'], { ...PROBE_POLICY, env: options.env })).stdout);
    }
  } catch (error) {
    throw new CarpProbeError(`reading whether ${vip} is on this node`, { cause: error });
  }
  const wanted = normaliseAddress(vip);
  const held = addresses.find(({ address }) => normaliseAddress(address) === wanted);
  if (held === undefined) return { state: 'BACKUP', detail: `${vip} not on this node` };
  return { state: 'MASTER', detail: `${vip} present on ${held.ifname}` };
}

async function readInterfaceCarp(ifname: string, options: CarpProbeOptions): Promise<CarpVhidStatus[]> {
  try {
    const { stdout } = await runCommand(['ifconfig', ifname], { ...PROBE_POLICY, env: options.env });
    return parseIfconfigCarp(stdout);
  } catch (error) {
    throw new CarpProbeError(`reading CARP state of ${ifname}`, { cause: error });
  }
}

function demotionArgv(change: number): string[] {
  return ['sysctl', `net.inet.carp.demotion=${change}`];
}

async function steer(
  argv: string[],
  what: string,
  policy: { timeoutMs: number; killAfterMs: number },
  options: CarpProbeOptions,
): Promise<void> {
  try {
    await runCommand(argv, { ...policy, env: options.env });
  } catch (error) {
    throw new CarpProbeError(what, { cause: error });
  }
}

// FreeBSD's `ifconfig -a` (ucarp moves the address there too): an interface block starts with `<name>: flags=`,
// its addresses are `\tinet <address> netmask ...` and `\tinet6 <address>%<zone>? prefixlen ...` lines.
export function parseIfconfigAddresses(text: string): InterfaceAddress[] {
  const addresses: InterfaceAddress[] = [];
  let ifname: string | undefined;
  for (const line of text.split('\n')) {
    const block = /^([^\s:]+): flags=/.exec(line);
    if (block !== null) ifname = block[1];
    const inet = /^\s+inet6? (\S+)/.exec(line);
    if (inet !== null && ifname !== undefined) addresses.push({ ifname, address: inet[1] ?? '' });
  }
  return addresses;
}

// One spelling per address, so "2001:DB8:0::5" matches the "2001:db8::5" that ip prints; a zone (%eth0) is
// not part of the address.
function normaliseAddress(address: string): string {
  const [bare = ''] = address.split('%');
  return isIP(bare) === 6 ? new URL(`http://[${bare}]`).hostname.slice(1, -1) : bare;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
