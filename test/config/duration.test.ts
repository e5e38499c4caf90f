import fc from 'fast-check';
import t from 'tap';
import { DurationError, formatDuration, MAX_DURATION_MS, parseDuration } from '../../src/config/duration.js';

const HINT = '(use a number with ms, s, m or h, e.g. "250ms", "20s", "5m")';

const VALID: [string, number][] = [
  ['0s', 0],
  ['0ms', 0],
  ['0h', 0],
  ['1ms', 1],
  ['250ms', 250],
  ['20s', 20_000],
  ['5m', 300_000],
  ['1h', 3_600_000],
  ['1.5s', 1_500],
  ['1.1s', 1_100], // 1.1 * 1000 is 1100.0000000000002 in floating point
  ['0.001s', 1],
  ['2.25m', 135_000],
  ['0.5h', 1_800_000],
  ['007s', 7_000],
  ['168h', MAX_DURATION_MS],
  ['10080m', MAX_DURATION_MS],
  ['604800s', MAX_DURATION_MS],
  ['604800000ms', MAX_DURATION_MS],
];

const INVALID: [string, string][] = [
  ['', `invalid duration "" ${HINT}`],
  ['20', `invalid duration "20" ${HINT}`],
  ['20 seconds', `invalid duration "20 seconds" ${HINT}`],
  ['20 s', `invalid duration "20 s" ${HINT}`],
  [' 20s', `invalid duration " 20s" ${HINT}`],
  ['20S', `invalid duration "20S" ${HINT}`],
  ['2d', `invalid duration "2d" ${HINT}`],
  ['1us', `invalid duration "1us" ${HINT}`],
  ['s', `invalid duration "s" ${HINT}`],
  ['.5s', `invalid duration ".5s" ${HINT}`],
  ['1.s', `invalid duration "1.s" ${HINT}`],
  ['1e3ms', `invalid duration "1e3ms" ${HINT}`],
  ['1.2345s', `invalid duration "1.2345s" ${HINT}`],
  ['+5s', `invalid duration "+5s" ${HINT}`],
  ['1h30m', `invalid duration "1h30m" ${HINT}`],
  ['-5s', 'invalid duration "-5s": durations cannot be negative'],
  ['-0s', 'invalid duration "-0s": durations cannot be negative'],
  ['1.5ms', 'invalid duration "1.5ms": finer than a millisecond'],
  ['0.0005s', `invalid duration "0.0005s" ${HINT}`],
  ['168.001h', 'duration "168.001h" is too long (at most 168h, a week)'],
  ['604800001ms', 'duration "604800001ms" is too long (at most 168h, a week)'],
  ['169h', 'duration "169h" is too long (at most 168h, a week)'],
  ['99999999999999999999999h', 'duration "99999999999999999999999h" is too long (at most 168h, a week)'],
  [`${'9'.repeat(400)}s`, `duration "${'9'.repeat(400)}s" is too long (at most 168h, a week)`],
];

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

t.test('parseDuration reads numbers with a unit into milliseconds', async (t) => {
  for (const [text, ms] of VALID) t.equal(parseDuration(text), ms, text);
});

t.test('parseDuration refuses anything else with a DurationError that says why', async (t) => {
  for (const [text, message] of INVALID) {
    const error = thrownBy(() => parseDuration(text));
    t.ok(error instanceof DurationError, `${text} throws a DurationError`);
    t.equal((error as Error).message, message, text);
  }
});

t.test('formatDuration picks the largest unit that holds the value exactly', async (t) => {
  const table: [number, string][] = [
    [0, '0s'],
    [1, '1ms'],
    [250, '250ms'],
    [1_500, '1500ms'],
    [20_000, '20s'],
    [90_000, '90s'],
    [300_000, '5m'],
    [5_400_000, '90m'],
    [3_600_000, '1h'],
    [MAX_DURATION_MS, '168h'],
  ];
  for (const [ms, text] of table) t.equal(formatDuration(ms), text, `${ms}`);
});

t.test('parseDuration reads back what formatDuration writes', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => parseDuration(formatDuration(ms)) === ms),
    { numRuns: 2000 },
  );
  t.pass('round trip holds');
});

t.test('parseDuration never throws anything but DurationError', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'0123456789.-+smh u') }), (text) => {
      try {
        const ms = parseDuration(text);
        return Number.isInteger(ms) && ms >= 0 && ms <= MAX_DURATION_MS;
      } catch (error) {
        return error instanceof DurationError;
      }
    }),
    { numRuns: 2000 },
  );
  t.pass('only DurationError or a whole number of milliseconds within the cap');
});
