import { EX_USAGE } from './sysexits.js';

// An error a command line reports to a person, with the exit code the process should end with.
export class ExitError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ExitError';
    this.exitCode = exitCode;
  }
}

// Bad command-line arguments: exit 64 and show the usage text.
export class UsageError extends ExitError {
  constructor(message: string) {
    super(message, EX_USAGE);
    this.name = 'UsageError';
  }
}

// The messages of an error and all its causes, outermost first, joined for one log or stderr line.
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 10; depth++) {
    if (current instanceof Error) {
      parts.push(current.message);
      current = current.cause;
    } else {
      parts.push(String(current));
      current = undefined;
    }
  }
  return parts.join(': ');
}

// strerror(3)-style text for a Node system error ("No such file or directory"), as hastd's messages end with.
export function strerror(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  const match = code === undefined ? null : new RegExp(`^${code}: ([^,]+)`).exec(error.message);
  const text = match?.[1] ?? error.message;
  return text.charAt(0).toUpperCase() + text.slice(1);
}
