import type { Logger } from '../common/log.js';
import { CommandError, runCommand } from '../common/run-command.js';

// hastd reports a hook still running every minute; it never kills one.
export const HOOK_REPORT_INTERVAL_MS = 60_000;

// Runs hast.conf `exec` hooks the way hastd does: the program with its arguments, no shell and no PATH lookup,
// without waiting for it; the exit status is logged when it ends and long runners are reported.
export class HookRunner {
  private readonly log: Logger;
  private readonly reportIntervalMs: number;
  private readonly running = new Set<Promise<void>>();

  constructor(log: Logger, reportIntervalMs = HOOK_REPORT_INTERVAL_MS) {
    this.log = log;
    this.reportIntervalMs = reportIntervalMs;
  }

  // Starts `exec args...` if a hook is configured; returns at once.
  run(exec: string | null, args: string[]): void {
    if (exec === null || exec === '') return;
    const argv = [exec, ...args];
    const cmd = argv.join(' ');
    const started = Date.now();
    let pid = 0;
    let report: NodeJS.Timeout | undefined;
    const done = runCommand(argv, {
      timeoutMs: 'none',
      killAfterMs: 'never',
      onSpawn: (spawned) => {
        pid = spawned;
        this.log.debug({ pid, cmd }, `Hook started (pid=${pid}, cmd=[${cmd}]).`);
        report = setInterval(() => {
          const seconds = Math.round((Date.now() - started) / 1000);
          this.log.warn({ pid, cmd }, `Hook is running for ${seconds} seconds (pid=${pid}, cmd=[${cmd}]).`);
        }, this.reportIntervalMs);
        report.unref();
      },
    })
      .then(() => this.log.debug({ pid, cmd }, `Hook exited gracefully (pid=${pid}, cmd=[${cmd}]).`))
      .catch((error: unknown) => {
        if (error instanceof CommandError && error.signal !== undefined) {
          this.log.error({ pid, cmd }, `Hook was killed (pid=${pid}, signal=${error.signal}, cmd=[${cmd}]).`);
        } else if (error instanceof CommandError && error.exitCode !== undefined) {
          const output = (error.stderr || error.stdout).trim().split('\n').slice(-5).join(' | ');
          this.log.error(
            { pid, cmd, output },
            `Hook exited ungracefully (pid=${pid}, exitcode=${error.exitCode}, cmd=[${cmd}]).`,
          );
        } else {
          this.log.error({ cmd, err: error }, `Unable to execute hook (cmd=[${cmd}]).`);
        }
      })
      .finally(() => {
        clearInterval(report);
        this.running.delete(done);
      });
    this.running.add(done);
  }

  // Resolves when every hook started so far has ended (for tests and an orderly shutdown log).
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }
}
