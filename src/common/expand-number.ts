// expand_number(3): "64", "2M", "1g", "512k" (powers of 1024, optional trailing "b"), as hastctl's -e/-k/-m take.
export function expandNumber(text: string): number | undefined {
  const match = /^(\d+)([kmgtpe]?)b?$/i.exec(text);
  if (match === null) return undefined;
  const [, digits = '', unit = ''] = match;
  const shift = unit === '' ? 0 : 'kmgtpe'.indexOf(unit.toLowerCase()) + 1;
  const value = BigInt(digits) * 1024n ** BigInt(shift);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}
