// The kernel's mount table, read fresh every time: what is mounted decides what a demotion must undo.
// Linux lists it in /proc/self/mounts; FreeBSD prints it with `mount -p`, in fstab(5) form.
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { runCommand } from '../common/run-command.js';

// One mounted filesystem.
export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
  options: string[];
}

// A mount table that cannot be read, or a line of it that is not `source target fstype options ...`.
export class MountTableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'MountTableError';
  }
}

const PROC_MOUNTS = '/proc/self/mounts';

// `mount -p` prints what the kernel already holds in memory; 10 s only bounds a system in trouble.
const MOUNT_P_POLICY = { timeoutMs: 10_000, killAfterMs: 2_000 };

// Reads /proc/self/mounts: `source target fstype options dump pass`, with space, tab, newline and backslash in
// names written as octal escapes (\040, \011, \012, \134) by the kernel's mangle().
export function parseProcMounts(text: string): MountEntry[] {
  return parseTable(text, PROC_MOUNTS, decodeOctalEscapes);
}

// Reads FreeBSD's `mount -p` (mount.c putfsent()): fstab lines whose fields are padded with tabs, or a space
// once a field is long. putfsent() prints names as they are, so nothing is decoded.
export function parseMountP(text: string): MountEntry[] {
  return parseTable(text, 'mount -p', (field) => field);
}

// The mount table of this system: /proc/self/mounts, or `mount -p` when `platform` is FreeBSD (`env` is added
// to its environment). Throws MountTableError.
export async function readMounts(
  options: { platform?: NodeJS.Platform; env?: Record<string, string> } = {},
): Promise<MountEntry[]> {
  if ((options.platform ?? process.platform) === 'freebsd') {
    let output: string;
    try {
      output = (await runCommand(['mount', '-p'], { ...MOUNT_P_POLICY, env: options.env })).stdout;
    } catch (error) {
      throw new MountTableError('reading the mount table with mount -p', { cause: error });
    }
    return parseMountP(output);
  }
  let text: string;
  try {
    text = await readFile(PROC_MOUNTS, 'utf8');
  } catch (error) {
    throw new MountTableError(`reading the mount table from ${PROC_MOUNTS}`, { cause: error });
  }
  return parseProcMounts(text);
}

// What is mounted on `mountpoint` now: the last entry for it, since a later mount hides the earlier ones.
export function findMount(entries: readonly MountEntry[], mountpoint: string): MountEntry | undefined {
  const wanted = normalisePath(mountpoint);
  return entries.filter((entry) => normalisePath(entry.target) === wanted).at(-1);
}

function parseTable(text: string, source: string, decode: (field: string) => string): MountEntry[] {
  const entries: MountEntry[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    const [device = '', target = '', fstype = '', options] = line.trim().split(/[ \t]+/);
    if (options === undefined) {
      const shape = 'expected "source target fstype options"';
      throw new MountTableError(`${source} line ${index + 1}: ${shape}: ${JSON.stringify(line)}`);
    }
    entries.push({ source: decode(device), target: decode(target), fstype, options: options.split(',') });
  });
  return entries;
}

function decodeOctalEscapes(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_escape, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

// `/hast/test/` and `/hast//test` name the mount point `/hast/test` the kernel reports.
function normalisePath(path: string): string {
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}
