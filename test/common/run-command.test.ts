import t from 'tap';
import { CommandError, runCommand } from '../../src/common/run-command.js';

const QUICK = { timeoutMs: 10_000, killAfterMs: 1_000 };

t.test('a successful command returns its output and no shell is involved', async (t) => {
  const r = await runCommand(['echo', 'a;b', '$HOME'], QUICK);
  t.equal(r.stdout, 'a;b $HOME\n');
  t.equal(r.exitCode, 0);
  t.ok(r.durationMs >= 0);
});

t.test('a failing command rejects with its status and output in the message', async (t) => {
  const error = await runCommand(['sh', '-c', 'echo broken >&2; exit 3'], QUICK).catch((e: unknown) => e);
  t.ok(error instanceof CommandError);
  const e = error as CommandError;
  t.equal(e.exitCode, 3);
  t.equal(e.timedOut, false);
  t.equal(e.message, 'sh -c echo broken >&2; exit 3: exited with status 3: broken');
});

t.test('a command that overstays is terminated and reported as timed out', async (t) => {
  const e = (await runCommand(['sleep', '30'], { timeoutMs: 200, killAfterMs: 1_000 }).catch((x: unknown) => x)) as CommandError;
  t.ok(e instanceof CommandError);
  t.equal(e.timedOut, true);
  t.equal(e.signal, 'SIGTERM');
  t.match(e.message, /^sleep 30: timed out after 200 ms/);
});

t.test('a command that ignores SIGTERM is not SIGKILLed when the policy says never', async (t) => {
  // The timeout leaves sh time to set its trap even on a loaded machine.
  const script = 'trap "" TERM; sleep 2; echo survived';
  const e = (await runCommand(['sh', '-c', script], { timeoutMs: 1_000, killAfterMs: 'never' }).catch((x: unknown) => x)) as CommandError;
  t.ok(e instanceof CommandError);
  t.equal(e.timedOut, true);
  t.equal(e.stdout, 'survived\n');
});

t.test('a program that does not exist is a CommandError', async (t) => {
  const e = (await runCommand(['/nonexistent/program'], QUICK).catch((x: unknown) => x)) as CommandError;
  t.ok(e instanceof CommandError);
  t.match(e.message, /^\/nonexistent\/program: .*ENOENT/);
});

t.test('stdin carries the given input', async (t) => {
  const r = await runCommand(['cat'], { ...QUICK, input: 'yes\n' });
  t.equal(r.stdout, 'yes\n');
});

t.test('an empty argv is refused', async (t) => {
  await t.rejects(runCommand([], QUICK), /needs a program/);
});
