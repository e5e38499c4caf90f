import t from 'tap';
import { expandNumber } from '../../src/common/expand-number.js';

t.test('plain numbers and power-of-1024 suffixes', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['64', 64],
    ['512k', 524288],
    ['2M', 2097152],
    ['2m', 2097152],
    ['1G', 1073741824],
    ['1gb', 1073741824],
    ['3T', 3 * 1024 ** 4],
    ['1P', 1024 ** 5],
  ];
  for (const [text, value] of cases) t.equal(expandNumber(text), value, text);
});

t.test('anything else is refused', async (t) => {
  for (const text of ['', 'M', '-1', '1.5M', '2X', '2 M', '0x10', '1MM', '99999999999E'])
    t.equal(expandNumber(text), undefined, JSON.stringify(text));
});
