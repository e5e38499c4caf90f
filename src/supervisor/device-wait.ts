// Waiting for /dev/hast/<name> to appear after the engine has made the resource primary.
import { access } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { watch } from 'chokidar';
import type { Logger } from '../common/log.js';

// A missed watch event costs at most this long (whether FreeBSD's devfs reports new nodes through kqueue, which
// chokidar relies on there, is not checked yet).
const RECHECK_INTERVAL_MS = 1_000;

// The device did not appear in time; the promotion cannot go on without it.
export class DeviceTimeoutError extends Error {
  readonly path: string;
  readonly timeoutMs: number;

  constructor(path: string, timeoutMs: number) {
    super(`${path} did not appear within ${timeoutMs / 1000} s`);
    this.name = 'DeviceTimeoutError';
    this.path = path;
    this.timeoutMs = timeoutMs;
  }
}

// Resolves with the milliseconds waited once `path` exists; rejects with DeviceTimeoutError after timeoutMs, or
// with the signal's reason when a newer transition aborts the wait. recheckMs is how often it looks without the
// watch (tests set it beyond the timeout to show that the watch alone sees the device).
export async function waitForDevice(
  path: string,
  options: { timeoutMs: number; signal?: AbortSignal; log: Logger; recheckMs?: number },
): Promise<number> {
  const target = resolve(path);
  const log = options.log.child({ step: 'wait-device' });
  const started = performance.now();
  options.signal?.throwIfAborted();
  log.info({ timeoutMs: options.timeoutMs }, `Waiting for ${target}.`);
  if (!(await exists(target))) await watchUntilExists(target, options.timeoutMs, options.recheckMs ?? RECHECK_INTERVAL_MS, options.signal);
  const durationMs = Math.round(performance.now() - started);
  log.info({ durationMs }, `${target} is there.`);
  return durationMs;
}

// Watches the nearest existing ancestor of `target`, descending only along the path to it, so that directories
// created later (/dev/hast itself) are followed without watching anything else.
async function watchUntilExists(target: string, timeoutMs: number, recheckMs: number, signal: AbortSignal | undefined): Promise<void> {
  const ancestor = await nearestExistingAncestor(target);
  const onTheWay = (path: string) => path === ancestor || path === target || target.startsWith(path + sep);
  const depth = relative(ancestor, target).split(sep).length - 1;
  const watcher = watch(ancestor, { depth, ignored: (path: string) => !onTheWay(path) });
  let timer: NodeJS.Timeout | undefined;
  let recheck: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolvePromise, reject) => {
      const check = () => void exists(target).then((yes) => yes && resolvePromise());
      timer = setTimeout(() => reject(new DeviceTimeoutError(target, timeoutMs)), timeoutMs);
      recheck = setInterval(check, recheckMs);
      onAbort = () => reject(signal?.reason);
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      watcher.on('all', check);
      // The device may have appeared between the first look and the watch being set up.
      watcher.on('ready', check);
      watcher.on('error', (error) => reject(new Error(`watching ${ancestor} for ${target}`, { cause: error })));
    });
  } finally {
    clearTimeout(timer);
    clearInterval(recheck);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    await watcher.close();
  }
}

async function nearestExistingAncestor(path: string): Promise<string> {
  let current = dirname(path);
  while (!(await exists(current)) && dirname(current) !== current) current = dirname(current);
  return current;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
