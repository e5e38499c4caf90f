import { describeError, ExitError } from '../common/errors.js';
import { EX_SOFTWARE, EX_USAGE } from '../common/sysexits.js';

// Where a command's text goes: the process's streams, or buffers when the supervisor runs hastctl in-process.
export interface CommandOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}

// The process's own standard output and error.
export const PROCESS_OUTPUT: CommandOutput = {
  stdout(text) {
    process.stdout.write(text);
  },
  stderr(text) {
    process.stderr.write(text);
  },
};

// One subcommand of `carp-hast`: its name, its usage text and its body (main.ts keeps the overview's summaries).
export interface Command {
  name: string;
  usage: string;
  // How messages name the program when it is not `carp-hast <name>` (the carp-hast-switch drop-in).
  program?: string;
  // Runs with the arguments after the command name and resolves to the process exit code. Commands that are only
  // ever run as a process of their own may ignore `out` and write to process.stdout and stderr.
  run(args: string[], out: CommandOutput): Promise<number>;
}

// Runs a command, mapping its errors to sysexits codes; never shows a stack trace for expected failures.
// -h and --help anywhere print the command's usage, the same way for every command.
export async function runCommand(command: Command, args: string[], out: CommandOutput = PROCESS_OUTPUT): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.stdout(command.usage);
    return 0;
  }
  try {
    return await command.run(args, out);
  } catch (error) {
    if (error instanceof ExitError) {
      out.stderr(`${command.program ?? `carp-hast ${command.name}`}: ${describeError(error)}\n`);
      if (error.exitCode === EX_USAGE) out.stderr(command.usage);
      return error.exitCode;
    }
    out.stderr(`${command.program ?? `carp-hast ${command.name}`}: internal error: ${describeError(error)}\n`);
    if (error instanceof Error && error.stack) out.stderr(`${error.stack}\n`);
    return EX_SOFTWARE;
  }
}
