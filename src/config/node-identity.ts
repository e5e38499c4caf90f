import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { runCommand } from '../common/run-command.js';

// The names this machine answers to in hast.conf `on` blocks (see hast.conf(5), node matching).
export interface NodeIdentity {
  hostname: string;
  // FreeBSD kern.hostuuid, or /etc/machine-id elsewhere; compared case-insensitively.
  hostuuid: string | null;
  // FreeBSD kern.hostid, matched as `hostid<N>`; null where there is none.
  hostid: number | null;
  // When set, `on` blocks match only this exact name, so two nodes can run on one host.
  nodeName: string | null;
}

const SYSCTL_POLICY = { timeoutMs: 10_000, killAfterMs: 1_000 };

// Reads this machine's host name, host UUID and host id, as hastd's isitme() does.
export async function localNodeIdentity(nodeName?: string): Promise<NodeIdentity> {
  const identity = { hostname: hostname(), nodeName: nodeName ?? null };
  if (process.platform === 'freebsd') {
    const [hostuuid, hostid] = await Promise.all([sysctl('kern.hostuuid'), sysctl('kern.hostid')]);
    return { ...identity, hostuuid: hostuuid === '' ? null : hostuuid, hostid: parseHostId(hostid) };
  }
  return { ...identity, hostuuid: await readMachineId(), hostid: null };
}

async function sysctl(name: string): Promise<string> {
  const { stdout } = await runCommand(['sysctl', '-n', name], SYSCTL_POLICY);
  return stdout.trim();
}

function parseHostId(text: string): number {
  const hostid = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(hostid)) throw new Error(`sysctl kern.hostid printed '${text}', not a host id`);
  return hostid;
}

// systemd and dbus keep the host's UUID here; a system without one simply has no UUID to match.
async function readMachineId(): Promise<string | null> {
  try {
    const id = (await readFile('/etc/machine-id', 'utf8')).trim();
    return id === '' ? null : id;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error('reading /etc/machine-id', { cause: error });
  }
}
