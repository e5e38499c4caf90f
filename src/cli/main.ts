#!/usr/bin/env node
import { describeError } from '../common/errors.js';
import { EX_SOFTWARE, EX_USAGE } from '../common/sysexits.js';
import { runCommand, type Command } from './command.js';

// Each command's module is loaded only when it runs: hooks and the supervisor start `carp-hast` often, and
// loading every command (the engine, the supervisor) costs a few hundred milliseconds each time.
const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'supervise', summary: 'run the failover supervisor daemon.', load: async () => (await import('./supervise.js')).superviseCommand },
  { name: 'switch', summary: 'make this node primary or secondary, through the supervisor.', load: async () => (await import('./switch.js')).switchCommand },
  { name: 'status', summary: 'show CARP state, roles, resources and recent transitions.', load: async () => (await import('./status.js')).statusCommand },
  { name: 'recover', summary: "recover a resource from split-brain: discard this node's changes, or keep them.", load: async () => (await import('./recover.js')).recoverCommand },
  { name: 'check-config', summary: 'check hast.conf and the supervisor configuration and print the effective settings.', load: async () => (await import('./check-config.js')).checkConfigCommand },
  { name: 'hastd', summary: 'the built-in HAST replication engine (hastd(8) compatible).', load: async () => (await import('./hastd.js')).hastdCommand },
  { name: 'hastctl', summary: 'control the replication engine (hastctl(8) compatible).', load: async () => (await import('./hastctl.js')).hastctlCommand },
  { name: 'lab', summary: 'run a two-node cluster on this machine and fail it over.', load: async () => (await import('./lab.js')).labCommand },
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'usage: carp-hast <command> [options]',
    '',
    'Failover supervisor for HAST + CARP storage clusters, with a HAST-compatible engine.',
    '',
    'Commands:',
    ...lines,
    '',
    "Run 'carp-hast <command> --help' for a command's options.",
    '',
  ].join('\n');
}

// Runs one command line and resolves to the exit code; errors become a message on stderr.
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(overview());
    return name === undefined ? EX_USAGE : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`carp-hast: unknown command '${name}'.\n${overview()}`);
    return EX_USAGE;
  }
  return runCommand(await command.load(), rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`carp-hast: internal error: ${describeError(error)}\n`);
    process.exitCode = EX_SOFTWARE;
  },
);
