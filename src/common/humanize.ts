// hastctl's `%NB`: pjdlog renders `%N` with humanize_number(3) into a 5-byte buffer (HN_AUTOSCALE,
// HN_NOSPACE | HN_DECIMAL, no suffix) and the format string adds a literal `B`. This is libutil's
// humanize_number.c for exactly those arguments, so the text matches hastctl(8) byte for byte.

const PREFIXES = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
const BUFFER_SIZE = 5;
const DIVISOR = 1024n;
// ceil(0.95 * 1024): from 9.95 up, one decimal would round to "10.0", which does not fit.
const DECIMAL_CUT = 973n;

// A byte count as hastctl prints it in parentheses: 2097152 → "2.0MB", 134217728 → "128MB", 0 → "0B".
export function humanizeBytes(n: bigint | number): string {
  return `${humanizeNumber(BigInt.asIntN(64, BigInt(n)))}B`;
}

// humanize_number() on an int64 (hastctl passes its uint64 sizes through an intmax_t cast).
function humanizeNumber(value: bigint): string {
  const sign = value < 0n ? -1n : 1n;
  let quotient = value * sign;
  // The buffer holds digits plus a NUL, and a minus sign takes one more place.
  const max = sign < 0n ? 100n : 1000n;
  let remainder = 0n;
  let scale = 0;
  // Divide until the number fits; if rounding would carry it to `max`, divide once more.
  while ((quotient >= max || (quotient === max - 1n && remainder >= DIVISOR / 2n)) && scale < PREFIXES.length - 1) {
    remainder = quotient % DIVISOR;
    quotient /= DIVISOR;
    scale++;
  }
  let text: string;
  if (scale > 0 && (quotient < 9n || (quotient === 9n && remainder < DECIMAL_CUT))) {
    const tenths = (remainder * 10n + DIVISOR / 2n) / DIVISOR;
    text = `${sign * (quotient + tenths / 10n)}.${tenths % 10n}${PREFIXES[scale]}`;
  } else {
    text = `${sign * (quotient + (remainder + DIVISOR / 2n) / DIVISOR)}${PREFIXES[scale]}`;
  }
  // snprintf() into the 5-byte buffer keeps at most 4 characters.
  return text.slice(0, BUFFER_SIZE - 1);
}
