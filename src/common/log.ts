import { writeSync } from 'node:fs';
import { destination, pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

// json: one pino record per line, for a supervising process; text: hastd-style lines for a person at a terminal.
export type LogFormat = 'json' | 'text';

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARNING', 50: 'ERROR', 60: 'CRIT' };
const RESERVED = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'resource', 'role', 'component']);

// One pino record as hastd would print it in the foreground: `TIME [LEVEL] [resource] (role) message key=value`.
export function formatRecord(record: Record<string, unknown>): string {
  const time = new Date(Number(record['time'])).toISOString().replace('T', ' ').replace('Z', '');
  const level = LEVEL_NAMES[Number(record['level'])] ?? String(record['level']);
  const parts = [time, `[${level}]`];
  if (record['component'] !== undefined) parts.push(`${String(record['component'])}:`);
  if (record['resource'] !== undefined) parts.push(`[${String(record['resource'])}]`);
  if (record['role'] !== undefined) parts.push(`(${String(record['role'])})`);
  parts.push(String(record['msg'] ?? ''));
  for (const [key, value] of Object.entries(record)) {
    if (RESERVED.has(key)) continue;
    const shown = typeof value === 'object' && value !== null && 'message' in value ? (value as { message: unknown }).message : value;
    parts.push(`${key}=${typeof shown === 'string' ? shown : JSON.stringify(shown)}`);
  }
  return `${parts.join(' ')}\n`;
}

function textDestination(fd: number): DestinationStream {
  return {
    write(line: string) {
      writeSync(fd, formatRecord(JSON.parse(line) as Record<string, unknown>));
    },
  };
}

// The process-wide logger on stderr, so stdout stays free for command output.
export function createLogger(options: { level?: string; name?: string; format?: LogFormat } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'carp-hast',
      level: options.level ?? process.env['CARP_HAST_LOG_LEVEL'] ?? 'info',
      base: { pid: process.pid },
    },
    options.format === 'text' ? textDestination(2) : destination({ fd: 2, sync: true }),
  );
}
