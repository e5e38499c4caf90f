#!/usr/bin/env node
import { describeError } from '../common/errors.js';
import { EX_SOFTWARE, EX_USAGE } from '../common/sysexits.js';
import { runCommand, type Command } from './command.js';
import { checkConfigCommand } from './check-config.js';
import { hastdCommand } from './hastd.js';
import { hastctlCommand } from './hastctl.js';
import { labCommand } from './lab.js';
import { recoverCommand } from './recover.js';
import { statusCommand } from './status.js';
import { superviseCommand } from './supervise.js';
import { switchCommand } from './switch.js';

const COMMANDS: Command[] = [
  superviseCommand,
  switchCommand,
  statusCommand,
  recoverCommand,
  checkConfigCommand,
  hastdCommand,
  hastctlCommand,
  labCommand,
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
  return runCommand(command, rest);
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
