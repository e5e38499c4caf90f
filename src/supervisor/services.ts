// The services that use the resources (nfsd, samba, a database), driven through their configured start, stop
// and status commands.
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { CommandError, runCommand } from '../common/run-command.js';
import type { ServiceConfig } from '../config/supervisor-conf.js';

// Which of a service's commands ran.
export type ServiceAction = 'start' | 'stop' | 'status';

// A service command that failed, timed out or could not run; `output` is what it printed.
export class ServiceError extends Error {
  readonly service: string;
  readonly action: ServiceAction;
  readonly output: string;

  constructor(service: string, action: ServiceAction, cause: unknown) {
    super(`${action} of service ${service} failed: ${describeError(cause)}`, { cause });
    this.name = 'ServiceError';
    this.service = service;
    this.action = action;
    this.output = cause instanceof CommandError ? [cause.stderr.trim(), cause.stdout.trim()].filter(Boolean).join('\n') : '';
  }
}

// A start or stop script that overstays its timeout gets SIGTERM, then SIGKILL this much later.
const KILL_AFTER_MS = 5_000;

// Runs the service's start command. Throws ServiceError.
export async function startService(
  service: ServiceConfig,
  options: { log: Logger; signal?: AbortSignal },
): Promise<{ durationMs: number }> {
  return runAction(service, 'start', service.start, options);
}

// Runs the service's stop command. Throws ServiceError.
export async function stopService(
  service: ServiceConfig,
  options: { log: Logger; signal?: AbortSignal },
): Promise<{ durationMs: number }> {
  return runAction(service, 'stop', service.stop, options);
}

// Whether the service runs, by its status command's exit status (0: running); undefined without a status
// command. A status command that times out or cannot run says nothing either way: ServiceError.
export async function serviceRunning(
  service: ServiceConfig,
  options: { log: Logger; signal?: AbortSignal },
): Promise<boolean | undefined> {
  if (service.status === undefined) return undefined;
  options.signal?.throwIfAborted();
  const log = options.log.child({ service: service.name });
  try {
    const { durationMs } = await runCommand(service.status, { timeoutMs: service.timeoutMs, killAfterMs: KILL_AFTER_MS });
    log.debug({ durationMs: Math.round(durationMs) }, `Service ${service.name} is running.`);
    return true;
  } catch (error) {
    if (error instanceof CommandError && !error.timedOut && error.exitCode !== undefined) {
      log.debug({ exitCode: error.exitCode }, `Service ${service.name} is not running.`);
      return false;
    }
    throw new ServiceError(service.name, 'status', error);
  }
}

async function runAction(
  service: ServiceConfig,
  action: 'start' | 'stop',
  argv: string[],
  options: { log: Logger; signal?: AbortSignal },
): Promise<{ durationMs: number }> {
  options.signal?.throwIfAborted();
  const log = options.log.child({ service: service.name });
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  log.info({ argv }, `${action === 'start' ? 'Starting' : 'Stopping'} service ${service.name}.`);
  try {
    await runCommand(argv, { timeoutMs: service.timeoutMs, killAfterMs: KILL_AFTER_MS });
  } catch (cause) {
    const error = new ServiceError(service.name, action, cause);
    log.error({ durationMs: elapsed(), output: error.output }, `${error.message}.`);
    throw error;
  }
  const durationMs = elapsed();
  log.info({ durationMs }, `Service ${service.name} ${action === 'start' ? 'started' : 'stopped'}.`);
  return { durationMs };
}
