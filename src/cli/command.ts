import { describeError, ExitError } from '../common/errors.js';
import { EX_SOFTWARE, EX_USAGE } from '../common/sysexits.js';

// One subcommand of `carp-hast`: its name, its usage text and its body (main.ts keeps the overview's summaries).
export interface Command {
  name: string;
  usage: string;
  // How messages name the program when it is not `carp-hast <name>` (the carp-hast-switch drop-in).
  program?: string;
  // Runs with the arguments after the command name and resolves to the process exit code.
  run(args: string[]): Promise<number>;
}

// Runs a command, mapping its errors to sysexits codes; never shows a stack trace for expected failures.
// -h and --help anywhere print the command's usage, the same way for every command.
export async function runCommand(command: Command, args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(command.usage);
    return 0;
  }
  try {
    return await command.run(args);
  } catch (error) {
    if (error instanceof ExitError) {
      process.stderr.write(`${command.program ?? `carp-hast ${command.name}`}: ${describeError(error)}\n`);
      if (error.exitCode === EX_USAGE) process.stderr.write(command.usage);
      return error.exitCode;
    }
    process.stderr.write(`${command.program ?? `carp-hast ${command.name}`}: internal error: ${describeError(error)}\n`);
    if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return EX_SOFTWARE;
  }
}
