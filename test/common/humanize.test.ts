import t from 'tap';
import { humanizeBytes } from '../../src/common/humanize.js';

// Expected texts worked out by hand from libutil's humanize_number.c with len 5, HN_AUTOSCALE and
// HN_NOSPACE | HN_DECIMAL: divide by 1024 while the value is >= 1000, then print one decimal if the
// result is below 9.95 and was scaled, else the rounded integer.
const TABLE: [bigint | number, string][] = [
  [0, '0B'],
  [1, '1B'],
  [512, '512B'],
  [999, '999B'],
  [1000, '1.0KB'], // 0 K remainder 1000: tenths = (10000 + 512) / 1024 = 10 -> 1.0
  [1023, '1.0KB'],
  [1024, '1.0KB'],
  [1536, '1.5KB'],
  [9 * 1024 + 972, '9.9KB'], // remainder 972 < 973 still gets a decimal
  [9 * 1024 + 973, '10KB'], // remainder 973 would round to 10.0: integer form, 9 + 1
  [10240, '10KB'],
  [999 * 1024 + 511, '999KB'], // 999 remainder 511 rounds down, stays in K
  [999 * 1024 + 512, '1.0MB'], // 999 remainder 512 would round to 1000: divided once more
  [1048575, '1.0MB'],
  [1048576, '1.0MB'],
  [2097152, '2.0MB'],
  [10485760, '10MB'],
  [134217728, '128MB'],
  [1073741824, '1.0GB'],
  [1073737216, '1.0GB'], // a 1 GiB component's datasize
  [2n ** 40n, '1.0TB'],
  [5n * 2n ** 50n, '5.0PB'],
  [2n ** 60n, '1.0EB'],
  [2n ** 63n - 1n, '8.0EB'], // 7 E remainder 1023: tenths round to 10
  [2n ** 64n - 1n, '-1B'], // hastctl casts its uint64 to intmax_t
  [2n ** 64n - 1000n, '-1.0B'], // -1000 -> "-1.0K", which snprintf cuts to 4 characters
  [2n ** 64n - 600n, '0.6KB'], // sign * 0 prints no minus sign in C either
];

t.test('humanizeBytes matches hastctl %NB', async (t) => {
  for (const [value, text] of TABLE) t.equal(humanizeBytes(value), text, `${value}`);
});
