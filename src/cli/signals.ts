import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';

// What a daemon command does on signals: SIGHUP reloads (each time it comes), the first SIGTERM or SIGINT stops.
export interface SignalHandlers {
  reload(): void;
  // Resolves once stopped; a rejection is logged and becomes `failureCode`.
  stop(signal: string): Promise<void>;
  failureCode: number;
}

// Serves until SIGTERM or SIGINT and resolves to the exit code: 0 after a clean stop.
export function serveUntilSignalled(log: Logger, handlers: SignalHandlers): Promise<number> {
  return new Promise((resolveExit) => {
    const reload = () => handlers.reload();
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.off('SIGHUP', reload);
      // Still handled: with no listener, a SIGHUP would end the process in the middle of letting go.
      process.on('SIGHUP', () => log.info('Ignoring SIGHUP while stopping.'));
      handlers.stop(signal).then(
        () => resolveExit(0),
        (error: unknown) => {
          log.error(`Unable to stop cleanly: ${describeError(error)}`);
          resolveExit(handlers.failureCode);
        },
      );
    };
    process.on('SIGHUP', reload);
    // `on`, never `once`: while a command runs, execa's exit hook (signal-exit) re-raises a signal that no
    // other listener handles, and a `once` listener is already gone when the hook looks.
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
