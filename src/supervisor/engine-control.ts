// The hastctl contract: the supervisor changes roles and reads status of either engine with the same hastctl
// command lines, FreeBSD's /sbin/hastctl or `carp-hast hastctl`, so one code path serves both and the built-in
// engine is held to hastctl's interface. The built-in engine's hastctl runs in this process by default, its
// output captured and read exactly as a started one's.
import { fileURLToPath } from 'node:url';
import { CommandError, runCommand, type CommandPolicy, type CommandResult } from '../common/run-command.js';
import type { EngineConfig } from '../config/supervisor-conf.js';
import type { HastRole } from '../engine/metadata.js';
import {
  isHastctlFailure,
  parseHastctlList,
  parseHastctlStatus,
  type HastListEntry,
  type HastStatusEntry,
} from './hastctl-output.js';

// hastd answers `role` only once the old worker has exited and the new one started; a secondary that is
// synchronising or a primary flushing its writes can take a while.
const ROLE_POLICY: CommandPolicy = { timeoutMs: 60_000, killAfterMs: 5_000 };
// Status is answered from memory; 10 s means hastd is stuck, which the caller reports.
const QUERY_POLICY: CommandPolicy = { timeoutMs: 10_000, killAfterMs: 2_000 };
// create writes the metadata and a zeroed activemap to the local component, which may be a slow disk.
const CREATE_POLICY: CommandPolicy = { timeoutMs: 60_000, killAfterMs: 5_000 };

// A hastctl command that failed, timed out or printed output that does not read as hastctl's; `output` is
// what it printed (stderr, else stdout) and the cause is the CommandError or HastctlOutputError.
export class EngineControlError extends Error {
  readonly output: string;

  constructor(message: string, output: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'EngineControlError';
    this.output = output;
  }
}

// Runs `carp-hast hastctl ARGS` in this process and settles as runCommand would for `argv`, the command line
// it stands for: its output on exit 0, else a CommandError. A call that overstays the policy's timeout cannot
// be killed; it is left to end on the control client's own socket timeouts.
export async function runHastctlInProcess(argv: string[], args: string[], policy: CommandPolicy): Promise<CommandResult> {
  // Loaded on first use: a supervisor of FreeBSD's hastd never needs the built-in engine's modules.
  const { runHastctl } = await import('../cli/hastctl.js');
  const started = performance.now();
  let stdout = '';
  let stderr = '';
  const out = {
    stdout(text: string) {
      stdout += text;
    },
    stderr(text: string) {
      stderr += text;
    },
  };
  let timer: NodeJS.Timeout | undefined;
  const overstayed = new Promise<'timed out'>((resolve) => {
    if (policy.timeoutMs !== 'none') timer = setTimeout(resolve, policy.timeoutMs, 'timed out');
  });
  const exitCode = await Promise.race([runHastctl(args, out), overstayed]).finally(() => clearTimeout(timer));
  const timedOut = exitCode === 'timed out';
  const fields = {
    argv,
    exitCode: timedOut ? undefined : exitCode,
    signal: undefined,
    timedOut,
    stdout,
    stderr,
    durationMs: performance.now() - started,
  };
  if (exitCode === 'timed out') throw new CommandError(fields, `timed out after ${policy.timeoutMs} ms`);
  if (exitCode !== 0) throw new CommandError(fields, `exited with status ${exitCode}`);
  return { ...fields, exitCode };
}

// Changes roles, creates metadata and reads status through the engine's hastctl.
export class EngineControl {
  private readonly cli: string[];
  private readonly inProcess: boolean;

  // `cli` is how to run carp-hast for the built-in engine; by default this Node and the installed main.js.
  // Without `cli` the built-in engine's hastctl runs in this process (starting one costs 100-250 ms, several
  // times on a failover's critical path); with it every call starts that command line (tests, stand-ins).
  constructor(
    private readonly engine: EngineConfig,
    options: { cli?: string[] } = {},
  ) {
    this.cli = options.cli ?? [process.execPath, fileURLToPath(new URL('../cli/main.js', import.meta.url))];
    this.inProcess = engine.kind === 'builtin' && options.cli === undefined;
  }

  // The command line of `hastctl VERB ARGS...` for this engine.
  argv(verb: string, ...args: string[]): string[] {
    const { engine } = this;
    if (engine.kind === 'freebsd') return [engine.hastctl, verb, '-c', engine.hastConf, ...args];
    const node = engine.node === undefined ? [] : ['-n', engine.node];
    return [...this.cli, 'hastctl', verb, '-c', engine.hastConf, ...node, ...args];
  }

  // `hastctl role ROLE NAMES...`; resolves once the engine has switched every named resource.
  async role(role: HastRole, names: string[]): Promise<void> {
    await this.run(this.argv('role', role, ...names), ROLE_POLICY, `setting ${names.join(', ')} to ${role}`);
  }

  // `hastctl create NAME`: writes fresh metadata to the local component (the split-brain recovery).
  async create(name: string): Promise<void> {
    await this.run(this.argv('create', name), CREATE_POLICY, `creating the metadata of ${name}`);
  }

  // `hastctl list [NAMES...]` (every resource when none are named).
  async list(names: string[] = []): Promise<HastListEntry[]> {
    return this.query('list', names, parseHastctlList);
  }

  // `hastctl status [NAMES...]` (every resource when none are named).
  async status(names: string[] = []): Promise<HastStatusEntry[]> {
    return this.query('status', names, parseHastctlStatus);
  }

  // hastctl prints every entry and then exits with the first per-resource error (1 for a resource hastd does
  // not know). Those entries are answers about the resources, so they come back as failures in the list;
  // any other failure is the command's.
  private async query<Entry extends HastStatusEntry | HastListEntry>(
    verb: 'list' | 'status',
    names: string[],
    parse: (text: string) => Entry[],
  ): Promise<Entry[]> {
    const argv = this.argv(verb, ...names);
    const what = `reading the engine's ${verb}`;
    let stdout: string;
    try {
      stdout = (await this.execute(argv, QUERY_POLICY)).stdout;
    } catch (error) {
      const answered = error instanceof CommandError ? reportedResourceErrors(error, parse) : undefined;
      if (answered !== undefined) return answered;
      throw commandFailure(what, error);
    }
    try {
      return parse(stdout);
    } catch (error) {
      throw new EngineControlError(`${what}: ${argv.join(' ')} printed output that is not hastctl's`, stdout, {
        cause: error,
      });
    }
  }

  private async run(argv: string[], policy: CommandPolicy, what: string): Promise<void> {
    try {
      await this.execute(argv, policy);
    } catch (error) {
      throw commandFailure(what, error);
    }
  }

  // Runs a command line from argv(), in this process when it is the built-in engine's own hastctl.
  private execute(argv: string[], policy: CommandPolicy): Promise<CommandResult> {
    if (!this.inProcess) return runCommand(argv, policy);
    return runHastctlInProcess(argv, argv.slice(this.cli.length + 1), policy);
  }
}

// The entries of a hastctl that exited with the error of one of the entries it printed; undefined otherwise.
function reportedResourceErrors<Entry extends HastStatusEntry | HastListEntry>(
  error: CommandError,
  parse: (text: string) => Entry[],
): Entry[] | undefined {
  if (error.timedOut || error.exitCode === undefined) return undefined;
  let entries: Entry[];
  try {
    entries = parse(error.stdout);
  } catch {
    return undefined;
  }
  return entries.some((entry) => isHastctlFailure(entry) && entry.error === error.exitCode) ? entries : undefined;
}

function commandFailure(what: string, error: unknown): EngineControlError {
  const output = error instanceof CommandError ? (error.stderr.trim() || error.stdout.trim()) : '';
  return new EngineControlError(what, output, { cause: error });
}
