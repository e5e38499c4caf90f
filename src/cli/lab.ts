import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExitError, UsageError } from '../common/errors.js';
import { runCommand } from '../common/run-command.js';
import { EX_NOPERM } from '../common/sysexits.js';
import { Lab, type LabNode } from '../lab/lab.js';
import { formatStatusReport } from '../supervisor/status-report.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';

const USAGE = `usage: carp-hast lab [--size MiB]

Builds a two-node cluster on this machine and fails it over, to show what carp-hast does: nodes a and b in
their own network namespaces, each with \`carp-hast supervise\` running the built-in engine, ext4 on
/dev/hast/test, a stand-in service that holds the mount like an NFS server would. CARP is played by the lab:
it moves the shared address and sends devd's lines. The lab makes a MASTER, writes a file, moves MASTER to b,
reads the file back there, prints each node's \`carp-hast status\`, and removes everything. Needs root
(network namespaces, losetup, nbdfuse, mount) and the packages of scripts/install-deps.sh.
`;

const OPTIONS = { size: { type: 'string' } } as const;

// `carp-hast lab`: run a two-node cluster on this machine and fail it over.
export const labCommand: Command = {
  name: 'lab',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, OPTIONS);
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const sizeMiB = Number(values.size ?? '64');
    if (!Number.isInteger(sizeMiB) || sizeMiB < 16 || sizeMiB > 65536) throw new UsageError('--size must be a whole number of MiB from 16 to 65536');
    if (process.getuid?.() !== 0) throw new ExitError('the lab needs root: network namespaces, losetup, nbdfuse and mount', EX_NOPERM);
    const say = (line: string) => process.stdout.write(`lab: ${line}\n`);
    say('building two nodes (network namespaces, hast.conf, components, ext4 through a primary)...');
    const lab = await Lab.create({ dir: await mkdtemp(join(tmpdir(), 'carp-hast-lab-')), sizeMiB });
    try {
      await lab.startSupervisor('a');
      await lab.startSupervisor('b');
      say('both supervisors run; both nodes are secondary.');
      await lab.waitForRole('a', 'secondary');
      await lab.waitForRole('b', 'secondary');
      await moveMaster(lab, undefined, 'a', say);
      const file = join(lab.mountpoint('a'), 'hello.txt');
      await writeFile(file, `written on a at ${new Date().toISOString()}\n`);
      await runCommand(['sync', '-f', file], { timeoutMs: 30_000, killAfterMs: 1_000 });
      say(`wrote ${file} and synced it.`);
      await moveMaster(lab, 'a', 'b', say);
      say(`read on b: ${(await readFile(join(lab.mountpoint('b'), 'hello.txt'), 'utf8')).trim()}`);
      for (const node of ['b', 'a'] as const) {
        process.stdout.write(`\n$ carp-hast status   # on ${node}\n${formatStatusReport(await lab.status(node))}`);
      }
    } finally {
      say('removing the lab.');
      await lab.destroy();
    }
    return 0;
  },
};

// CARP moves MASTER from one node to the other, as it does when the old master fails or is demoted.
async function moveMaster(lab: Lab, from: LabNode | undefined, to: LabNode, say: (line: string) => void): Promise<void> {
  const started = performance.now();
  if (from !== undefined) await lab.carp(from, 'BACKUP');
  await lab.carp(to, 'MASTER');
  say(`CARP: ${from === undefined ? '' : `${from} BACKUP, `}${to} MASTER.`);
  const report = await lab.waitForRole(to, 'primary');
  const promotion = report.transitions.find((t) => t.direction === 'promote');
  const steps = promotion?.steps.map((s) => `${s.name} ${s.durationMs} ms`).join(', ');
  say(`${to} is primary, mounted and serving ${Math.round(performance.now() - started)} ms after the event (${steps}).`);
}
