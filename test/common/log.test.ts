import t from 'tap';
import { formatRecord } from '../../src/common/log.js';

t.test('a record reads like a hastd log line', async (t) => {
  const line = formatRecord({
    level: 30,
    time: Date.UTC(2026, 10, 25, 13, 0, 1, 250),
    pid: 4242,
    name: 'carp-hast',
    resource: 'test',
    role: 'primary',
    msg: 'Connected to 127.0.0.2:8457.',
    remote: '127.0.0.2:8457',
    attempts: 3,
  });
  t.equal(line, '2026-11-25 13:00:01.250 [INFO] [test] (primary) Connected to 127.0.0.2:8457. remote=127.0.0.2:8457 attempts=3\n');
});

t.test('errors show their message, components and unknown levels still print', async (t) => {
  const line = formatRecord({
    level: 50,
    time: 0,
    component: 'control',
    msg: 'Unable to accept.',
    err: { type: 'Error', message: 'EMFILE: too many open files', stack: 'x' },
  });
  t.equal(line, '1970-01-01 00:00:00.000 [ERROR] control: Unable to accept. err=EMFILE: too many open files\n');
  t.match(formatRecord({ level: 35, time: 0, msg: 'x' }), '[35] x');
});
