
// How long a command may run and what happens when it overstays: storage commands get a policy each.
export interface CommandPolicy {
  // Milliseconds before SIGTERM, or 'none' for programs we must not kill (hastd's hooks are only reported);
  // a command that overstays is reported with timedOut set.
  timeoutMs: number | 'none';
  // Milliseconds between SIGTERM and SIGKILL, or 'never' for commands that must not be killed mid-way (fsck).
  killAfterMs: number | 'never';
  // Bytes to feed on stdin; none by default so a command never waits on our terminal.
  input?: string;
  // Extra environment on top of ours.
  env?: Record<string, string>;
  // Told the process id once the program has started, for callers that report on long runners.
  onSpawn?: (pid: number) => void;
}

// A finished command: what it printed and how long it took.
export interface CommandResult {
  argv: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

// A command that failed, timed out or could not start; the message carries its argv and output.
export class CommandError extends Error {
  readonly argv: string[];
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;

  constructor(fields: Omit<CommandError, keyof Error>, reason: string) {
    const output = (fields.stderr.trim() || fields.stdout.trim()).split('\n').slice(-10).join('\n');
    super(`${fields.argv.join(' ')}: ${reason}${output ? `: ${output}` : ''}`);
    this.name = 'CommandError';
    this.argv = fields.argv;
    this.exitCode = fields.exitCode;
    this.signal = fields.signal;
    this.timedOut = fields.timedOut;
    this.stdout = fields.stdout;
    this.stderr = fields.stderr;
    this.durationMs = fields.durationMs;
  }
}

// Runs argv (never through a shell) under a policy; resolves on exit 0, rejects with CommandError otherwise.
export async function runCommand(argv: string[], policy: CommandPolicy): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('runCommand needs a program to run.');
  // execa is loaded on first use: it takes a quarter of a second, which short commands (hastctl) that never
  // run a program should not pay at every start.
  const { execa } = await import('execa');
  const started = performance.now();
  const subprocess = execa(file, args, {
    reject: false,
    timeout: policy.timeoutMs === 'none' ? undefined : policy.timeoutMs,
    forceKillAfterDelay: policy.killAfterMs === 'never' ? false : policy.killAfterMs,
    cleanup: policy.killAfterMs !== 'never',
    input: policy.input ?? '',
    env: policy.env,
    stripFinalNewline: false,
  });
  if (policy.onSpawn !== undefined && subprocess.pid !== undefined) policy.onSpawn(subprocess.pid);
  const result = await subprocess;
  const fields = {
    argv,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    durationMs: performance.now() - started,
  };
  if (result.failed) {
    let reason: string;
    if (result.timedOut) reason = `timed out after ${policy.timeoutMs} ms`;
    else if (result.signal) reason = `killed by ${result.signal}`;
    else if (result.exitCode !== undefined) reason = `exited with status ${result.exitCode}`;
    else reason = result.shortMessage ?? 'could not be run';
    throw new CommandError(fields, reason);
  }
  return { argv, exitCode: 0, stdout: fields.stdout, stderr: fields.stderr, durationMs: fields.durationMs };
}
