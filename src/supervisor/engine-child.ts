// The replication engine as the supervisor's managed child: run in the foreground, its output folded into our
// log, restarted with backoff when it dies unless its exit status says a restart cannot help.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Level } from 'pino';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { EX_CONFIG, EX_USAGE } from '../common/sysexits.js';
import type { EngineConfig } from '../config/supervisor-conf.js';

// A line longer than this is cut: a runaway writer must not grow our memory.
const MAX_LINE_CHARS = 64 * 1024;
// How many of the engine's last stderr lines an exit report quotes.
const STDERR_TAIL_LINES = 10;
// After the engine exits, how long its last output may take to drain: a grandchild that inherited the pipes
// must not hold back the exit report and the restart.
const OUTPUT_DRAIN_MS = 1000;
// Exit statuses that a restart cannot fix (hastd's own convention, research §10): a broken hast.conf or command
// line stays broken until someone changes it.
const FATAL_EXIT_CODES = new Set([EX_CONFIG, EX_USAGE]);

// The command line that runs the engine in the foreground. `cli` is how to run carp-hast itself (node and
// dist/cli/main.js by default); `logLevel` debug or trace adds hastd's -d flags.
export function engineArgv(engine: EngineConfig, options: { cli?: string[]; logLevel?: string } = {}): string[] {
  const debug = options.logLevel === 'trace' ? ['-d', '-d'] : options.logLevel === 'debug' ? ['-d'] : [];
  // FreeBSD's hastd logs text lines to stdout and stderr in the foreground and has no -n.
  if (engine.kind === 'freebsd') return [engine.hastd, '-F', ...debug, '-c', engine.hastConf];
  const cli = options.cli ?? [process.execPath, fileURLToPath(new URL('../cli/main.js', import.meta.url))];
  return [
    ...cli,
    'hastd',
    '-F',
    ...debug,
    '--log-format',
    'json',
    '-c',
    engine.hastConf,
    ...(engine.node === undefined ? [] : ['-n', engine.node]),
    '--run-dir',
    engine.runDir,
  ];
}

// One engine output line as it goes into our log: its level, its message and the fields worth keeping.
export interface FoldedLine {
  level: Level;
  msg: string;
  fields: Record<string, unknown>;
}

const PINO_LEVELS: Record<number, Level> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const LEVEL_NAMES = new Set<string>(Object.values(PINO_LEVELS));
const PJDLOG_LEVELS: Record<string, Level> = {
  EMERG: 'fatal',
  ALERT: 'fatal',
  CRIT: 'fatal',
  ERROR: 'error',
  WARNING: 'warn',
  NOTICE: 'info',
  INFO: 'info',
  DEBUG: 'debug',
};
// Keys that describe the engine process rather than the event; our own records carry ours.
const PROCESS_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);
// hastd's pjdlog in the foreground: `[LEVEL] ` (debug: `[DEBUG][n] `), then a worker's `[resource] (role) `
// prefix. Newer libpjdlog writes `[DEBUG1] `, which the optional digits accept too.
const PJDLOG_LINE = /^(?:\[(EMERG|ALERT|CRIT|ERROR|WARNING|NOTICE|INFO|DEBUG)\d*\](?:\[\d+\])? )?(?:\[([^\]\s]+)\] \(([a-z]+)\) )?/;

// Reads one line of engine output: a pino record from our engine keeps its level and fields (not its
// time/pid/hostname; its `component` becomes `engineComponent` so it does not clash with ours); any other line
// is text, with FreeBSD hastd's level tag and `[resource] (role)` prefix lifted into level and fields.
export function foldEngineLine(line: string): FoldedLine {
  const record = parseRecord(line);
  if (record !== undefined) {
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(record)) {
      if (!PROCESS_KEYS.has(key)) fields[key === 'component' ? 'engineComponent' : key] = value;
    }
    const msg = record['msg'];
    return { level: recordLevel(record['level']), msg: msg === undefined ? '' : String(msg), fields };
  }
  const [matched = '', tag = '', resource, role] = PJDLOG_LINE.exec(line) ?? [];
  const fields = resource === undefined ? {} : { resource, role };
  return { level: PJDLOG_LEVELS[tag] ?? 'info', msg: line.slice(matched.length), fields };
}

function parseRecord(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || !('level' in value)) return undefined;
  return value as Record<string, unknown>;
}

function recordLevel(level: unknown): Level {
  if (typeof level === 'number') return PINO_LEVELS[level] ?? 'info';
  return typeof level === 'string' && LEVEL_NAMES.has(level) ? (level as Level) : 'info';
}

// How a managed engine behaves; times in milliseconds.
export interface EngineChildOptions {
  argv: string[];
  log: Logger;
  // First delay before a restart; it doubles with each exit that follows a short run (default 1 s).
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  // A run at least this long counts as healthy and resets the backoff (default 60 s).
  stableAfterMs?: number;
  // How long stop() waits after SIGTERM before SIGKILL (default 20 s: the engine finishes in-flight I/O first).
  stopTimeoutMs?: number;
}

// How one engine run ended. `restartInMs` is undefined when no restart follows: after stop(), or after an exit
// status that a restart cannot fix. A program that could not be started at all has code and signal null.
export interface EngineExit {
  code: number | null;
  signal: string | null;
  runMs: number;
  restartInMs: number | undefined;
}

// What the supervisor hears about the engine: each start (to re-apply roles) and each exit.
export interface EngineChildHandlers {
  onStarted(pid: number): void;
  onExited(info: EngineExit): void;
  // Every line the engine printed, after folding (the supervisor watches for split-brain reports).
  onLine?(line: FoldedLine): void;
}

// The engine process, kept running from start() until stop(). It is spawned directly rather than through
// runCommand: runCommand waits for a command to finish and hands back its output at the end, while the engine
// runs for the supervisor's whole life and its output must be read as it comes. It stays in our process
// group, so a supervisor killed under daemon(8) or systemd takes it down too; a normal exit of ours sends it
// SIGTERM.
export class EngineChild {
  private readonly argv: string[];
  private readonly log: Logger;
  private readonly engineLog: Logger;
  private readonly handlers: EngineChildHandlers;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly stableAfterMs: number;
  private readonly stopTimeoutMs: number;
  private child: ChildProcess | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  // False after stop() and after an exit that a restart cannot fix: an exit then is not restarted.
  private wanted = false;
  // Short runs in a row, for the backoff.
  private failures = 0;
  private restartCount = 0;
  private startedAt = 0;
  private stderrTail: string[] = [];
  private readonly killOnExit = () => {
    this.child?.kill('SIGTERM');
  };

  constructor(options: EngineChildOptions, handlers: EngineChildHandlers) {
    if (options.argv.length === 0) throw new Error('EngineChild needs a program to run.');
    this.argv = options.argv;
    this.log = options.log;
    this.engineLog = options.log.child({ component: 'engine' });
    this.handlers = handlers;
    this.initialBackoffMs = options.initialBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.stableAfterMs = options.stableAfterMs ?? 60_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 20_000;
  }

  // The running engine's process id.
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  // True from the engine's start until it exits.
  get running(): boolean {
    const child = this.child;
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }

  // How many times the engine was started again after an exit.
  get restarts(): number {
    return this.restartCount;
  }

  // Starts the engine unless it runs or a restart is already scheduled; after an exit that a restart cannot
  // fix, this is how to try again (with a fresh backoff).
  start(): void {
    this.wanted = true;
    if (this.child !== undefined || this.restartTimer !== undefined) return;
    this.failures = 0;
    this.spawnChild();
  }

  // SIGTERM, then SIGKILL after stopTimeoutMs; resolves once the engine is gone. No restart follows.
  async stop(): Promise<void> {
    this.wanted = false;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (child === undefined) return;
    const gone = new Promise((resolve) => child.once('close', resolve));
    child.kill('SIGTERM');
    const killer = setTimeout(() => {
      this.log.warn({ pid: child.pid }, `The engine did not stop within ${this.stopTimeoutMs} ms; sending SIGKILL.`);
      child.kill('SIGKILL');
    }, this.stopTimeoutMs);
    await gone;
    clearTimeout(killer);
  }

  private spawnChild(): void {
    const [file = '', ...args] = this.argv;
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.startedAt = performance.now();
    this.stderrTail = [];
    let spawnError: Error | undefined;
    child.once('spawn', () => {
      const pid = child.pid ?? 0;
      process.on('exit', this.killOnExit);
      this.log.info({ pid, argv: this.argv }, `Engine started (pid ${pid}).`);
      this.handlers.onStarted(pid);
    });
    child.on('error', (error) => {
      if (child.pid === undefined) spawnError = error;
      else this.log.warn({ pid: child.pid, err: error }, `Unable to signal the engine: ${describeError(error)}`);
    });
    readLines(child.stdout, (line, cut) => this.relay(line, cut, false));
    readLines(child.stderr, (line, cut) => this.relay(line, cut, true));
    let drain: NodeJS.Timeout | undefined;
    child.once('exit', () => {
      drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, OUTPUT_DRAIN_MS);
    });
    child.once('close', (code, signal) => {
      clearTimeout(drain);
      this.childGone(spawnError === undefined ? code : null, signal, spawnError);
    });
  }

  private relay(line: string, cut: boolean, fromStderr: boolean): void {
    if (line.trim() === '') return;
    const folded = foldEngineLine(line);
    this.engineLog[folded.level](cut ? { ...folded.fields, truncated: true } : folded.fields, folded.msg);
    this.handlers.onLine?.(folded);
    if (!fromStderr) return;
    this.stderrTail.push(folded.msg);
    if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
  }

  private childGone(code: number | null, signal: string | null, spawnError: Error | undefined): void {
    process.off('exit', this.killOnExit);
    this.child = undefined;
    const runMs = Math.round(performance.now() - this.startedAt);
    const fields = { code, signal, runMs, stderr: this.stderrTail };
    const ended = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
    const lastLine = this.stderrTail.at(-1);
    const reason = signal === null && lastLine !== undefined ? `: ${lastLine}` : '';
    let restartInMs: number | undefined;
    if (!this.wanted) {
      this.log.info(fields, `Engine stopped (${ended}).`);
    } else if (code !== null && FATAL_EXIT_CODES.has(code)) {
      this.wanted = false;
      this.log.error(fields, `Engine ${ended}${reason}; a restart cannot help, so it stays down until started again.`);
    } else {
      restartInMs = this.nextBackoff(runMs);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        this.restartCount++;
        this.spawnChild();
      }, restartInMs);
      if (spawnError !== undefined) {
        this.log.error({ ...fields, err: spawnError }, `Unable to start the engine: ${describeError(spawnError)}; retrying in ${restartInMs} ms.`);
      } else {
        this.log.error({ ...fields, restartInMs }, `Engine ${ended}${reason}; restarting in ${restartInMs} ms.`);
      }
    }
    this.handlers.onExited({ code, signal, runMs, restartInMs });
  }

  // Doubles the delay for each short run in a row, up to maxBackoffMs; a stable run starts over.
  private nextBackoff(runMs: number): number {
    if (runMs >= this.stableAfterMs) this.failures = 0;
    const delay = Math.min(this.initialBackoffMs * 2 ** this.failures, this.maxBackoffMs);
    if (delay < this.maxBackoffMs) this.failures++;
    return delay;
  }
}

// Calls `onLine` for each line of a stream; the part of a line beyond MAX_LINE_CHARS is dropped, and `cut`
// says so.
function readLines(stream: Readable, onLine: (line: string, cut: boolean) => void): void {
  let pending = '';
  let dropping = false;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const pieces = chunk.split('\n');
    const unfinished = pieces.pop() ?? '';
    for (const piece of pieces) {
      if (dropping) {
        dropping = false;
      } else {
        const line = pending + piece;
        onLine(line.slice(0, MAX_LINE_CHARS), line.length > MAX_LINE_CHARS);
      }
      pending = '';
    }
    if (dropping) return;
    pending += unfinished;
    if (pending.length > MAX_LINE_CHARS) {
      onLine(pending.slice(0, MAX_LINE_CHARS), true);
      pending = '';
      dropping = true;
    }
  });
  stream.on('end', () => {
    if (pending !== '') onLine(pending, false);
  });
}
