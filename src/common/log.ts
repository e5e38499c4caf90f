import { destination, pino, type Logger } from 'pino';

export type { Logger };

// The process-wide logger: JSON lines on stderr, so stdout stays free for command output.
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'carp-hast',
      level: options.level ?? process.env['CARP_HAST_LOG_LEVEL'] ?? 'info',
      base: { pid: process.pid },
    },
    destination({ fd: 2, sync: true }),
  );
}
