import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { Pidfile } from '../../src/engine/pidfile.js';
import { ExitError } from '../../src/common/errors.js';

t.test('the pid file holds our pid, mode 0600, and goes away on release', async (t) => {
  const path = join(t.testdir(), 'hastd.pid');
  const pidfile = await Pidfile.acquire(path);
  t.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  t.equal(statSync(path).mode & 0o777, 0o600);
  await pidfile.release();
  t.equal(existsSync(path), false);
});

t.test('a stale file from a crashed daemon does not block a restart', async (t) => {
  const path = join(t.testdir(), 'hastd.pid');
  writeFileSync(path, '99999999\n');
  const pidfile = await Pidfile.acquire(path);
  t.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  await pidfile.release();
});

t.test('a second daemon is refused with hastd message and exit 75', async (t) => {
  const path = join(t.testdir(), 'hastd.pid');
  // Another process holds the lock, as a running daemon would.
  const holder = execa({ reject: false })(process.execPath, [
    '--input-type=module',
    '-e',
    `import fsExt from 'fs-ext'; import { openSync, writeFileSync } from 'node:fs';
     const fd = openSync(${JSON.stringify(path)}, 'a+'); fsExt.flockSync(fd, 'exnb');
     writeFileSync(${JSON.stringify(path)}, process.pid + '\\n'); console.log('held'); setTimeout(() => {}, 30000);`,
  ]);
  t.teardown(async () => {
    holder.kill();
    await holder.catch(() => undefined);
  });
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  const error = await Pidfile.acquire(path).catch((e: unknown) => e);
  t.ok(error instanceof ExitError);
  t.equal((error as ExitError).exitCode, 75);
  t.equal((error as Error).message, `Another hastd is already running, pidfile: ${path}, pid: ${holder.pid}.`);
});

t.test('an unusable path is an OS error', async (t) => {
  const error = await Pidfile.acquire('/nonexistent/dir/hastd.pid').catch((e: unknown) => e);
  t.equal((error as ExitError).exitCode, 71);
  t.match((error as Error).message, /^Unable to open pidfile \/nonexistent\/dir\/hastd.pid: ENOENT/);
});
