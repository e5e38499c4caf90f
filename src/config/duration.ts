// Durations as the configuration writes them ("250ms", "20s", "5m", "1.5h"), held as whole milliseconds.

const MS_PER_UNIT = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

type DurationUnit = keyof typeof MS_PER_UNIT;

// The longest duration accepted: a week. Anything longer in a failover timer is a typo, and capping it keeps
// every value far inside what setTimeout and exact integer arithmetic can hold.
export const MAX_DURATION_MS = 7 * 24 * MS_PER_UNIT.h;

// Up to three decimals: enough for "1.5s" or "0.25h", and it keeps the arithmetic below exact.
const DURATION_SYNTAX = /^(\d+)(?:\.(\d{1,3}))?(ms|s|m|h)$/;

const HINT = '(use a number with ms, s, m or h, e.g. "250ms", "20s", "5m")';

// A duration text that is not one; the message names the text and says what would be accepted.
export class DurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurationError';
  }
}

// Reads a duration such as "20s" or "1.5m" into milliseconds; throws DurationError for anything else.
export function parseDuration(text: string): number {
  const quoted = JSON.stringify(text);
  if (text.startsWith('-')) throw new DurationError(`invalid duration ${quoted}: durations cannot be negative`);
  const match = DURATION_SYNTAX.exec(text);
  if (match === null) throw new DurationError(`invalid duration ${quoted} ${HINT}`);
  const [, whole = '', fraction = '', unit = ''] = match;
  // Scale to an integer before multiplying so "1.1s" is exactly 1100, not 1100.0000000000002.
  const scale = 10 ** fraction.length;
  const scaled = Number(whole) * scale + Number(fraction || '0');
  const ms = (scaled * MS_PER_UNIT[unit as DurationUnit]) / scale;
  if (ms > MAX_DURATION_MS) {
    throw new DurationError(`duration ${quoted} is too long (at most ${formatDuration(MAX_DURATION_MS)}, a week)`);
  }
  if (!Number.isInteger(ms)) throw new DurationError(`invalid duration ${quoted}: finer than a millisecond`);
  return ms;
}

// Writes milliseconds back in the largest unit that holds them exactly ("20s", "1h", "1500ms"); parseDuration
// reads the result back to the same number.
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['h', 'm', 's'] as const) {
    if (ms % MS_PER_UNIT[unit] === 0) return `${ms / MS_PER_UNIT[unit]}${unit}`;
  }
  return `${ms}ms`;
}
